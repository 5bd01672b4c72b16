//! `kind: haproxy`: HAProxy from the distribution (installed by cloud-init's
//! `packages`), with HTTP checks of `/readyz`.

use super::{health_check, Balancer, CheckCx, BASE};
use crate::facts::RawLoadBalancer;
use crate::model::{LoadBalancer, DEFAULT_HAPROXY_PATH};
use crate::report::Report;

pub struct Haproxy;

impl Balancer for Haproxy {
    fn kind(&self) -> &'static str {
        "haproxy"
    }

    fn check(&self, raw: &RawLoadBalancer, _: &CheckCx, report: &mut Report) -> Option<LoadBalancer> {
        if raw.traefik.is_some() {
            report.error(
                format!("{BASE}.traefik"),
                "`traefik` settings do not apply to `kind: haproxy`",
                "remove them",
            );
        }
        let (health_interval, health_timeout) = health_check(raw, report)?;
        Some(LoadBalancer::Haproxy { path: DEFAULT_HAPROXY_PATH.into(), health_interval, health_timeout })
    }
}
