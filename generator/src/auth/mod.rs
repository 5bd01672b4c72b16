//! The auth modes: one file each, behind [`AuthMode`], listed once in
//! [`AUTH_MODES`]. The facts' `auth:` string is compared here only ([`by_name`]);
//! the checked [`Auth`] reaches its mode through [`of`].

pub mod microk8s_join;
pub mod token;
pub mod x509;

use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use mk8s_bootstrap::plan::{Credential, JoinSpec, LoadBalancerSpec, ServingPair};
use serde::Serialize;

use crate::facts::RawCluster;
use crate::model::{Auth, Channel, ControlPlaneNode, Facts, Worker};
use crate::pki::CaCert;
use crate::report::Report;
use crate::secrets::Secrets;
use crate::values::quote_value;
use crate::{selfcheck, templates};

pub use microk8s_join::MicroK8sJoin;
pub use token::Token;
pub use x509::X509;

/// What a mode's checks may read besides the cluster section.
pub struct CheckCx<'a> {
    /// The channel, when it is valid.
    pub channel: Option<&'a Channel>,
    /// The CA, when it loaded.
    pub ca: Option<&'a CaCert>,
}

/// What a mode's cross-axis rules may read: the rest of the checked facts.
pub struct CrossCx<'a> {
    pub channel: Option<&'a Channel>,
    pub control_plane: &'a [ControlPlaneNode],
    pub workers: &'a [Worker],
}

/// What rendering a node's credentials may read.
pub struct NodeCx<'a> {
    pub facts: &'a Facts,
    pub secrets: &'a Secrets,
    pub worker: &'a Worker,
    /// The URL the node's kubeconfigs name.
    pub server: &'a str,
    /// Set once a node's kubeconfigs were parsed back in full. Every later node's
    /// kubeconfigs come from the same template and differ only in escaped values
    /// of restricted alphabets (hex tokens, base64 certificates), so they get the
    /// cheaper check that those values are what was meant.
    pub kubeconfig_parsed: &'a AtomicBool,
}

/// A file staged in the user-data for the bootstrap to install into the snap's data
/// directory.
pub struct Staged {
    /// Its name under the staging directory.
    pub name: &'static str,
    /// Where it goes, relative to the snap's data directory.
    pub target: &'static str,
    pub mode: u32,
    /// Never shown or logged (keys, tokens, kubeconfigs).
    pub secret: bool,
    pub text: String,
}

/// A node's credentials: the files staged for them and what the plan carries.
pub struct NodeCredentials {
    pub staged: Vec<Staged>,
    pub kubelet: Credential,
    /// `None`: kube-proxy's credential comes from elsewhere (MicroK8s's join).
    pub kube_proxy: Option<Credential>,
    /// The kubelet's first serving pair, seeded into its serving store.
    pub kubelet_serving: Option<ServingPair>,
}

/// What MicroK8s's own join brings a worker, for a mode that uses it.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The cluster-agents the node may join through.
    pub spec: JoinSpec,
    /// MicroK8s's own proxy, which the join configures, is the balancer.
    pub balancer: LoadBalancerSpec,
    /// The unit of that proxy, which the worker keeps running.
    pub proxy_unit: String,
}

/// A file of the control-plane bundle: name, text, mode.
pub type BundleFile = (&'static str, String, u32);

/// One way workers authenticate to the apiserver.
pub trait AuthMode: Sync {
    /// `auth:` in the facts.
    fn name(&self) -> &'static str;
    /// What it is, for the help of an unknown mode.
    fn summary(&self) -> &'static str;
    /// Check the mode's own settings; warn about other modes' settings it ignores.
    fn check(&self, c: &RawCluster, cx: &CheckCx, report: &mut Report) -> Option<Auth>;
    /// The node's credentials and the files staged for them.
    fn credentials(&self, auth: &Auth, cx: &NodeCx) -> anyhow::Result<NodeCredentials>;
    /// The join through MicroK8s's own cluster-agent, for a mode that uses it.
    fn joined(&self, facts: &Facts) -> Option<Joined> {
        let _ = facts;
        None
    }
    /// Rules the mode imposes on the rest of the facts.
    fn cross_check(&self, cx: &CrossCx, report: &mut Report) {
        let _ = (cx, report);
    }
    /// Lines the mode adds to the kubelet's arguments.
    fn kubelet_args(&self) -> &'static [&'static str] {
        &[]
    }
    /// `workers[].generation` changes this mode's credentials.
    fn uses_worker_generation(&self) -> bool {
        false
    }
    /// The mode's own files in the control-plane bundle.
    fn bundle(&self, facts: &Facts, secrets: &Secrets, workers: &[&Worker]) -> anyhow::Result<Vec<BundleFile>>;
    /// Which bundle scripts the operator runs on every control-plane node.
    fn operator_steps(&self) -> &'static str;
    /// What revokes a retired worker's credentials on the control plane, after
    /// `mk8s-ctl retire` (which has deleted the Node and denylisted its identity).
    fn retire_steps(&self) -> &'static str;
    /// The secrets file must hold the cluster CA's key.
    fn needs_ca_key(&self) -> bool {
        false
    }
    /// A bundle for no worker would only invite mistakes: refuse it.
    fn bundle_needs_workers(&self) -> bool {
        false
    }
}

/// Every mode; the first is the default.
pub const AUTH_MODES: &[&dyn AuthMode] = &[&Token, &X509, &MicroK8sJoin];

/// The mode named `name`.
pub fn by_name(name: &str) -> Option<&'static dyn AuthMode> {
    AUTH_MODES.iter().copied().find(|m| m.name() == name)
}

/// The mode of checked facts: the one match on [`Auth`].
pub fn of(auth: &Auth) -> &'static dyn AuthMode {
    match auth {
        Auth::Token => &Token,
        Auth::X509(_) => &X509,
        Auth::MicroK8sJoin { .. } => &MicroK8sJoin,
    }
}

/// `cluster.auth` (default: the first mode), checked with its settings.
pub fn check(c: &RawCluster, cx: &CheckCx, report: &mut Report) -> Option<Auth> {
    let name = c.auth.as_deref().unwrap_or(AUTH_MODES[0].name());
    let auth = match by_name(name) {
        Some(mode) => mode.check(c, cx, report),
        None => {
            let modes: Vec<String> =
                AUTH_MODES.iter().map(|m| format!("`auth: {}` ({})", m.name(), m.summary())).collect();
            let help = match modes.split_last() {
                Some((last, rest)) => format!("use {} or {last}", rest.join(", ")),
                None => String::new(),
            };
            report.error("$.cluster.auth", format!("auth mode {} is not supported", quote_value(name)), &help);
            None
        }
    };
    if c.microk8s_join.is_some() && !matches!(auth, Some(Auth::MicroK8sJoin { .. })) {
        report.warning("$.cluster.microk8s-join", "ignored unless `auth: microk8s-join`", "remove it");
    }
    auth
}

/// `check-control-plane.sh`: for the modes without a merge script, which checks
/// the authorization mode and the HA state itself.
fn check_script(facts: &Facts) -> anyhow::Result<BundleFile> {
    let text = templates::render("check-control-plane.sh", serde_json::json!({ "cluster": facts.name }))?;
    Ok(("check-control-plane.sh", text, 0o755))
}

#[derive(Serialize)]
struct KubeconfigCtx<'a> {
    user: &'a str,
    node: &'a str,
    ca_data: &'a str,
    server: &'a str,
    token: Option<&'a str>,
    client_certificate_data: Option<String>,
    client_key_data: Option<String>,
}

/// The files of a mode whose credentials go into kubeconfigs the bootstrap installs:
/// the cluster CA, then kubelet's and kube-proxy's kubeconfigs, each parsed back.
fn kubeconfigs(cx: &NodeCx, kubelet: &Credential, kube_proxy: &Credential) -> anyhow::Result<Vec<Staged>> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let ca_b64 = b64(&cx.facts.ca.pem);
    let mut staged = vec![Staged {
        name: "ca.crt",
        target: "certs/ca.remote.crt",
        mode: 0o644,
        secret: false,
        text: cx.facts.ca.pem.clone(),
    }];
    for (user, file, target, cred) in [
        ("kubelet", "kubelet.config", "credentials/kubelet.config", kubelet),
        ("kube-proxy", "proxy.config", "credentials/proxy.config", kube_proxy),
    ] {
        let (token, cert, key) = match cred {
            Credential::Token { token } => (Some(token.as_str()), None, None),
            Credential::ClientCertificate { cert_pem, key_pem } => (None, Some(b64(cert_pem)), Some(b64(key_pem))),
            Credential::JoinToken { .. } | Credential::Removed => {
                anyhow::bail!("internal error: only a token or a certificate goes into a kubeconfig")
            }
        };
        let ctx = KubeconfigCtx {
            user,
            node: &cx.worker.name,
            ca_data: &ca_b64,
            server: cx.server,
            token,
            client_certificate_data: cert.clone(),
            client_key_data: key,
        };
        let text = templates::render("kubeconfig.yaml", ctx)?;
        if cx.kubeconfig_parsed.load(Ordering::Relaxed) {
            selfcheck::kubeconfig_values(&text, cx.server, user, token, cert.as_deref())?;
        } else {
            selfcheck::kubeconfig(&text, cx.server, &ca_b64, user)?;
            cx.kubeconfig_parsed.store(true, Ordering::Relaxed);
        }
        staged.push(Staged { name: file, target, mode: 0o600, secret: true, text });
    }
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_mode_once() {
        let names: Vec<&str> = AUTH_MODES.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["token", "x509", "microk8s-join"]);
        for m in AUTH_MODES {
            assert_eq!(by_name(m.name()).map(|b| b.name()), Some(m.name()));
        }
        assert!(by_name("Token").is_none());
    }
}
