//! Validate what we generate: every rendered YAML file is parsed back into typed
//! structs that reject unknown keys, and the values the consumer will see are
//! compared with what was meant. A mis-nested traefik `tcp:` block (the original
//! method's bug: traefik silently loads nothing) can never be emitted.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context};
use serde::Deserialize;

// ---- traefik static configuration (the subset we write) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TraefikStatic {
    pub global: TraefikGlobal,
    pub log: TraefikLog,
    pub entry_points: BTreeMap<String, TraefikEntryPoint>,
    pub providers: TraefikProviders,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TraefikGlobal {
    pub check_new_version: bool,
    pub send_anonymous_usage: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct TraefikLog {
    pub level: String,
    /// Plain text for the journal (traefik colours its log by default).
    pub no_color: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraefikEntryPoint {
    pub address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraefikProviders {
    pub file: TraefikFileProvider,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraefikFileProvider {
    pub filename: String,
    pub watch: bool,
}

// ---- traefik dynamic configuration ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraefikDynamic {
    pub tcp: TraefikTcp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TraefikTcp {
    pub routers: BTreeMap<String, TcpRouter>,
    pub services: BTreeMap<String, TcpService>,
    pub servers_transports: BTreeMap<String, TcpServersTransport>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpRouter {
    pub entry_points: Vec<String>,
    pub rule: String,
    pub service: String,
    pub tls: TcpRouterTls,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpRouterTls {
    pub passthrough: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpService {
    pub load_balancer: TcpLoadBalancer,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpLoadBalancer {
    pub servers_transport: String,
    pub health_check: TcpHealthCheck,
    pub servers: Vec<TcpServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpHealthCheck {
    pub interval: String,
    pub timeout: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpServer {
    pub address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpServersTransport {
    pub dial_timeout: String,
    pub dial_keep_alive: String,
}

/// Parse both traefik files back and check they mean what we intended.
pub fn traefik(
    static_cfg: &str,
    provider: &str,
    listen: &str,
    provider_path: &str,
    servers: &[String],
) -> anyhow::Result<()> {
    let s: TraefikStatic =
        serde_yaml::from_str(static_cfg).context("internal error: generated traefik.yaml does not parse back")?;
    let d: TraefikDynamic =
        serde_yaml::from_str(provider).context("internal error: generated provider.yaml does not parse back")?;
    ensure!(!s.global.check_new_version && !s.global.send_anonymous_usage, "internal error: traefik would phone home");
    ensure!(
        s.providers.file.filename == provider_path,
        "internal error: traefik.yaml names a provider file that is not written"
    );
    let ep: Vec<_> = s.entry_points.keys().cloned().collect();
    ensure!(
        s.entry_points.values().all(|e| e.address == listen),
        "internal error: traefik listens on the wrong address"
    );
    ensure!(
        d.tcp.routers.len() == 1 && d.tcp.services.len() == 1,
        "internal error: unexpected traefik routers/services"
    );
    for r in d.tcp.routers.values() {
        ensure!(r.tls.passthrough, "internal error: traefik would terminate TLS");
        ensure!(r.entry_points == ep, "internal error: router is not bound to the entry point");
        let svc = d.tcp.services.get(&r.service).context("internal error: router names a missing service")?;
        let got: Vec<_> = svc.load_balancer.servers.iter().map(|s| s.address.clone()).collect();
        ensure!(got == servers, "internal error: traefik servers differ from the control plane");
        ensure!(
            d.tcp.servers_transports.contains_key(&svc.load_balancer.servers_transport),
            "internal error: service names a missing serversTransport"
        );
    }
    // traefik runs the file provider's files through Go templates.
    if static_cfg.contains("{{") || provider.contains("{{") {
        bail!("internal error: traefik configuration contains a Go template marker");
    }
    Ok(())
}

// ---- HAProxy ----

/// HAProxy's configuration is not YAML; check its structure line by line: the
/// sections we write, TCP mode, the loopback bind, a TLS /readyz check with
/// shutdown-sessions, and exactly the control-plane servers. Tests also run the
/// real `haproxy -c`.
pub fn haproxy(cfg: &str, listen: &str, servers: &[String]) -> anyhow::Result<()> {
    let mut section = String::new();
    let mut sections = Vec::new();
    let mut got_servers = Vec::new();
    let mut has = std::collections::BTreeSet::new();
    for line in cfg.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "global" | "defaults" | "frontend" | "backend" => {
                section = line.to_string();
                sections.push(section.clone());
            }
            "server" if section == "backend kube-apiserver" => {
                got_servers.push(words.get(2).copied().unwrap_or("").to_string())
            }
            _ => {
                has.insert(format!("{section}|{line}"));
            }
        }
    }
    ensure!(
        sections == ["global", "defaults", "frontend kube-apiserver", "backend kube-apiserver"],
        "internal error: haproxy.cfg sections: {sections:?}"
    );
    ensure!(has.contains("defaults|mode tcp"), "internal error: haproxy must pass TLS through (mode tcp)");
    ensure!(
        has.contains(&format!("frontend kube-apiserver|bind {listen}")),
        "internal error: haproxy must listen on {listen}"
    );
    ensure!(has.contains("backend kube-apiserver|option httpchk GET /readyz"), "internal error: haproxy health check");
    ensure!(
        has.iter().any(|l| l.starts_with("backend kube-apiserver|default-server check check-ssl verify none")
            && l.contains("on-marked-down shutdown-sessions")),
        "internal error: haproxy server defaults"
    );
    ensure!(got_servers == servers, "internal error: haproxy servers differ from the control plane");
    Ok(())
}

// ---- MicroK8s apiserver-proxy (canonical/microk8s-cluster-agent, pkg/proxy/internal) ----

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
pub fn apiserver_proxy(provider: &str, template: &str, listen: &str, servers: &[String]) -> anyhow::Result<()> {
    let p: ProxyProvider =
        serde_yaml::from_str(provider).context("internal error: apiserver-proxy provider.yaml does not parse back")?;
    let t: ProxyTraefikConfiguration = serde_yaml::from_str(template)
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

// ---- MicroK8s launch configuration (canonical/microk8s-cluster-agent pkg/k8sinit) ----

/// The subset of the cluster-agent's `Configuration` we write: the format version
/// and nothing else (no addons, no join, no arguments).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfiguration {
    pub version: String,
}

/// `/etc/microk8s.yaml`: one document, version 0.1.0 (the only version every
/// cluster-agent from 1.27, whose maximum is 0.1.0, to 1.34 accepts), nothing that
/// enables an addon.
pub fn launch_configuration(text: &str) -> anyhow::Result<()> {
    let c: LaunchConfiguration =
        serde_yaml::from_str(text).context("internal error: generated microk8s.yaml does not parse back")?;
    ensure!(c.version == "0.1.0", "internal error: launch configuration version {}", c.version);
    ensure!(!text.contains("\n---"), "internal error: launch configuration has more than one document");
    Ok(())
}

/// The two-part launch configuration of `--format launch-config`, parsed back:
/// part 1 only the join (worker), part 2 only arguments, both version 0.1.0.
pub fn launch_configuration_join(text: &str, url: &str) -> anyhow::Result<()> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Part {
        version: String,
        #[serde(default)]
        join: Option<Join>,
        #[serde(default)]
        extra_kubelet_args: Option<BTreeMap<String, String>>,
        #[serde(default)]
        extra_kube_proxy_args: Option<BTreeMap<String, String>>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Join {
        url: String,
        worker: bool,
    }
    let parts: Vec<Part> = serde_yaml::Deserializer::from_str(text)
        .map(Part::deserialize)
        .collect::<Result<_, _>>()
        .context("internal error: the launch configuration does not parse back")?;
    ensure!(parts.len() == 2, "internal error: the launch configuration has {} parts", parts.len());
    ensure!(parts.iter().all(|p| p.version == "0.1.0"), "internal error: launch configuration version");
    let j = parts[0].join.as_ref().context("internal error: part 1 has no join")?;
    ensure!(j.url == url && j.worker, "internal error: the join part is not this worker's");
    ensure!(parts[0].extra_kubelet_args.is_none(), "internal error: kubelet args in the join part would be lost");
    ensure!(parts[1].join.is_none() && parts[1].extra_kubelet_args.is_some(), "internal error: part 2");
    let _ = &parts[1].extra_kube_proxy_args;
    Ok(())
}

// ---- kubeconfig ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub clusters: Vec<Named<KubeCluster>>,
    pub users: Vec<Named<KubeUser>>,
    pub contexts: Vec<Named<KubeContext>>,
    pub current_context: String,
    pub preferences: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Named<T> {
    pub name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    pub value: T,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KubeCluster {
    pub certificate_authority_data: String,
    pub server: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KubeUser {
    pub token: Option<String>,
    pub client_certificate_data: Option<String>,
    pub client_key_data: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeContext {
    pub cluster: String,
    pub user: String,
}

pub fn kubeconfig(text: &str, server: &str, ca_b64: &str, user: &str) -> anyhow::Result<()> {
    let k: Kubeconfig =
        serde_yaml::from_str(text).context("internal error: generated kubeconfig does not parse back")?;
    ensure!(k.api_version == "v1" && k.kind == "Config", "internal error: kubeconfig header");
    let [c] = k.clusters.as_slice() else { bail!("internal error: kubeconfig must have one cluster") };
    let [u] = k.users.as_slice() else { bail!("internal error: kubeconfig must have one user") };
    let [x] = k.contexts.as_slice() else { bail!("internal error: kubeconfig must have one context") };
    ensure!(
        c.value.server == server && c.value.certificate_authority_data == ca_b64,
        "internal error: kubeconfig cluster"
    );
    ensure!(
        u.name == user && x.value.user == user && x.value.cluster == c.name,
        "internal error: kubeconfig user/context"
    );
    ensure!(k.current_context == x.name, "internal error: kubeconfig current-context");
    ensure!(
        u.value.token.is_some() || u.value.client_certificate_data.is_some(),
        "internal error: kubeconfig has no credential"
    );
    Ok(())
}

/// The cheaper check for a kubeconfig from a template already parsed back in full
/// in this run: the node's own values are present, quoted, on their lines.
pub fn kubeconfig_values(
    text: &str,
    server: &str,
    user: &str,
    token: Option<&str>,
    cert: Option<&str>,
) -> anyhow::Result<()> {
    let q = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let has = |key: &str, v: &str| text.lines().any(|l| l.trim_start() == format!("{key}: {}", q(v)));
    ensure!(has("server", server) && has("user", user) && has("- name", user), "internal error: kubeconfig values");
    match (token, cert) {
        (Some(t), None) => ensure!(has("token", t), "internal error: kubeconfig token"),
        (None, Some(c)) => ensure!(has("client-certificate-data", c), "internal error: kubeconfig certificate"),
        _ => bail!("internal error: kubeconfig needs exactly one credential"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original method's provider file: `routers:` and `services:` are not under
    /// `tcp:`. Our typed parse-back refuses it.
    #[test]
    fn the_seed_mis_nesting_is_refused() {
        let seed = include_str!("../../fixtures/seed-original/provider.yaml");
        let err = serde_yaml::from_str::<TraefikDynamic>(seed).err().expect("seed provider must not parse");
        assert!(err.to_string().contains("routers"), "{err}");
    }
}
