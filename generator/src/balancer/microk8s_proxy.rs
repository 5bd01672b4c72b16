//! `kind: microk8s-proxy`: MicroK8s 1.25+'s own `apiserver-proxy`, fed our endpoints.

use anyhow::{ensure, Context};
use mk8s_bootstrap::plan::{self, Flavour, InstallFile, LoadBalancerSpec};
use serde::Deserialize;
use serde_json::json;

use super::traefik::{TcpRouterTls, TcpServer, TraefikEntryPoint, TraefikProviders};
use super::{Balancer, CheckCx, RenderCx, Rendered, BASE};
use crate::facts::RawLoadBalancer;
use crate::files::{FileContent, NodeFile, STAGE_DIR};
use crate::model::release::apiserver_proxy_unit;
use crate::model::LoadBalancer;
use crate::report::Report;
use crate::templates;

pub struct MicroK8sProxy;

impl Balancer for MicroK8sProxy {
    fn kind(&self) -> &'static str {
        "microk8s-proxy"
    }

    fn check(&self, raw: &RawLoadBalancer, cx: &CheckCx, report: &mut Report) -> Option<LoadBalancer> {
        if raw.traefik.is_some() || raw.health_check.is_some() {
            report.error(
                format!("{BASE}.kind"),
                "`traefik` and `health-check` do not apply to `kind: microk8s-proxy`",
                "remove them: MicroK8s's proxy has its own behaviour",
            );
        }
        if !cx.release.is_some_and(|r| r.flavour == Flavour::KubeliteApiserverProxy) {
            report.error(
                format!("{BASE}.kind"),
                "`kind: microk8s-proxy` needs MicroK8s 1.25 or later",
                "use `kind: traefik` or `kind: haproxy` for older channels",
            );
            return None;
        }
        Some(LoadBalancer::MicroK8sProxy)
    }

    /// G6: the proxy replaces our servers with the `kubernetes` Endpoints every 30 s
    /// and, before 1.34, writes an IPv6 one unbracketed, which it cannot dial.
    fn cross_check(&self, cx: &super::CrossCx, report: &mut Report) {
        if cx.release.is_some_and(|r| r.proxy_keeps_ipv6) {
            return;
        }
        if let Some(i) = cx.control_plane.iter().position(|c| c.address.is_ipv6()) {
            report.error(
                format!("$.cluster.control-plane[{i}]"),
                "IPv6 with `kind: microk8s-proxy`: before MicroK8s 1.34 the proxy rewrites its servers from the `kubernetes` Endpoints every 30 s and writes an IPv6 address unbracketed (fd00::2:16443), which it cannot dial: the worker loses the apiserver",
                "use `kind: builtin`, `traefik` or `haproxy` (they keep the facts' addresses), or MicroK8s 1.34+",
            );
        }
    }

    /// MicroK8s's proxy reads our endpoints from the files its wrapper reads
    /// (`args/traefik/`), which the bootstrap installs.
    fn render(&self, _: &LoadBalancer, cx: &RenderCx) -> anyhow::Result<Rendered> {
        let provider = templates::render("apiserver-proxy-provider.yaml", json!({"servers": cx.endpoints}))?;
        let template = templates::render("apiserver-proxy-traefik-template.yaml", json!({"listen": cx.listen}))?;
        parse_back(&provider, &template, cx.listen, cx.endpoints)?;
        let mut out =
            Rendered::spec(LoadBalancerSpec::Microk8sProxy { unit: apiserver_proxy_unit(), listen: cx.listen.into() });
        for (name, text) in [("provider.yaml", provider), ("traefik-template.yaml", template)] {
            let staged = format!("{STAGE_DIR}/apiserver-proxy/{name}");
            out.install.push(InstallFile {
                staged: staged.clone(),
                target: format!("args/traefik/{name}"),
                mode: 0o644,
                sha256: plan::sha256_hex(text.as_bytes()),
                secret: false,
            });
            out.files.push(NodeFile { path: staged, content: FileContent::Text(text), mode: 0o644 });
        }
        Ok(out)
    }

    fn keeps_apiserver_proxy(&self) -> bool {
        true
    }

    /// The proxy replaces the provider file's servers with the `kubernetes`
    /// Endpoints every `--refresh-interval` (G6).
    fn rewrites(&self) -> &'static [&'static str] {
        &["args/traefik/provider.yaml"]
    }
}

// The two files MicroK8s's apiserver-proxy reads.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxyTraefikConfiguration {
    pub entry_points: ProxyEntryPoints,
    pub providers: TraefikProviders,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyEntryPoints {
    pub apiserver: TraefikEntryPoint,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProvider {
    pub tcp: ProxyTcp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyTcp {
    pub routers: ProxyRouters,
    pub services: ProxyServices,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyRouters {
    #[serde(rename = "Router-1")]
    pub router: ProxyRouter,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyRouter {
    pub rule: String,
    pub service: String,
    pub tls: TcpRouterTls,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyServices {
    #[serde(rename = "kube-apiserver")]
    pub apiserver: ProxyService,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxyService {
    pub load_balancer: ProxyLoadBalancer,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyLoadBalancer {
    pub servers: Vec<TcpServer>,
}

/// The two files MicroK8s's apiserver-proxy reads, checked against the shape of its
/// own structs (`config_traefik.go`, `config_provider.go`): it reads the listen
/// address and `tcp.services.kube-apiserver.loadBalancer.servers`.
pub fn parse_back(provider: &str, template: &str, listen: &str, servers: &[String]) -> anyhow::Result<()> {
    let p: ProxyProvider = crate::input::from_str(provider)
        .context("internal error: apiserver-proxy provider.yaml does not parse back")?;
    let t: ProxyTraefikConfiguration = crate::input::from_str(template)
        .context("internal error: apiserver-proxy traefik-template.yaml does not parse back")?;
    let got: Vec<_> = p.tcp.services.apiserver.load_balancer.servers.iter().map(|s| s.address.clone()).collect();
    ensure!(got == servers, "internal error: apiserver-proxy servers differ from the control plane");
    ensure!(
        p.tcp.routers.router.tls.passthrough && p.tcp.routers.router.service == "kube-apiserver",
        "internal error: apiserver-proxy router"
    );
    ensure!(t.entry_points.apiserver.address == listen, "internal error: apiserver-proxy listen address");
    ensure!(
        t.providers.file.filename == "${SNAP_DATA}/args/traefik/provider.yaml",
        "internal error: apiserver-proxy provider file"
    );
    Ok(())
}
