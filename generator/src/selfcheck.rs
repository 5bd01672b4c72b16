//! Validate what we generate: every rendered YAML file is parsed back into typed
//! structs that reject unknown keys, and the values the consumer will see are
//! compared with what was meant. The load balancers' files are parsed back by their
//! kinds (`balancer/`); here are the launch configuration and the kubeconfigs.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context};
use serde::Deserialize;

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
        crate::input::from_str(text).context("internal error: generated microk8s.yaml does not parse back")?;
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
    let parts: Vec<Part> =
        crate::input::from_str_all(text).context("internal error: the launch configuration does not parse back")?;
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
        crate::input::from_str(text).context("internal error: generated kubeconfig does not parse back")?;
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
