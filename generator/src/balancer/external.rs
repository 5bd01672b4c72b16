//! `mode: external`: a load balancer the operator runs; the node runs none.

use std::net::IpAddr;

use mk8s_bootstrap::plan::LoadBalancerSpec;

use super::{Balancer, CheckCx, RenderCx, Rendered, BASE};
use crate::facts::RawLoadBalancer;
use crate::model::{host_port, LoadBalancer};
use crate::report::Report;
use crate::values::{is_dns_name, port, quote_value};

pub struct External;

impl Balancer for External {
    fn kind(&self) -> &'static str {
        "external"
    }

    fn mode(&self) -> &'static str {
        "external"
    }

    fn check(&self, raw: &RawLoadBalancer, cx: &CheckCx, report: &mut Report) -> Option<LoadBalancer> {
        if raw.kind.is_some() || raw.traefik.is_some() || raw.health_check.is_some() {
            report.error(
                format!("{BASE}.kind"),
                "`kind`, `traefik` and `health-check` belong to `mode: node-local`",
                "remove them for an external load balancer",
            );
        }
        let port = port(raw.port, cx.apiserver_port, &format!("{BASE}.port"), report);
        let Some(addr) = &raw.address else {
            report.error(BASE, "`mode: external` needs `address`", "give the load balancer's IP address or DNS name");
            return None;
        };
        check_address(addr, report)?;
        Some(LoadBalancer::External { host: addr.clone(), port })
    }

    fn render(&self, _: &LoadBalancer, _: &RenderCx) -> anyhow::Result<Rendered> {
        Ok(Rendered::spec(LoadBalancerSpec::External))
    }

    fn server_url(&self, lb: &LoadBalancer, listen: &str) -> String {
        match lb {
            LoadBalancer::External { host, port } => format!("https://{}", host_port(host, *port)),
            _ => format!("https://{listen}"),
        }
    }
}

/// A unicast IP address or a DNS name.
fn check_address(addr: &str, report: &mut Report) -> Option<()> {
    if let Ok(ip) = addr.parse::<IpAddr>() {
        let why = match ip {
            _ if ip.is_unspecified() => Some("the unspecified address"),
            _ if ip.is_multicast() => Some("a multicast address"),
            IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
            _ => None,
        };
        if let Some(why) = why {
            report.error(
                format!("{BASE}.address"),
                format!("{ip} is {why}, not a load balancer's address"),
                "give the load balancer's unicast IP address or DNS name, e.g. 167.172.5.46 or api.example.com",
            );
            return None;
        }
        return Some(());
    }
    // `10.0.0.300` is no address, and no name either (every label digits).
    let looks_numeric = addr.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !is_dns_name(addr) || looks_numeric {
        report.error(
            format!("{BASE}.address"),
            format!("{} is not an IP address or DNS name", quote_value(addr)),
            "e.g. 167.172.5.46 or api.example.com",
        );
        return None;
    }
    Some(())
}
