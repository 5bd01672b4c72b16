//! `auth: token` (the original method's): static tokens, merged into the control
//! plane's `known_tokens.csv`.

use mk8s_bootstrap::plan::Credential;

use super::{kubeconfigs, AuthMode, BundleFile, CheckCx, NodeCredentials, NodeCx};
use crate::facts::RawCluster;
use crate::model::release::{apiserver_unit, KUBELET_VERIFIED};
use crate::model::{Auth, Facts, Worker};
use crate::pki::Identity;
use crate::report::Report;
use crate::secrets::Secrets;
use crate::templates;

pub struct Token;

impl AuthMode for Token {
    fn name(&self) -> &'static str {
        "token"
    }

    fn summary(&self) -> &'static str {
        "static tokens merged into known_tokens.csv"
    }

    fn check(&self, c: &RawCluster, cx: &CheckCx, report: &mut Report) -> Option<Auth> {
        // canonical/microk8s 805dfe59 (first in 1.28): new installations use
        // certificate auth and no longer pass --token-auth-file.
        if cx.channel.is_some_and(|ch| ch.release.fresh_is_x509_only) {
            report.warning(
                "$.cluster.microk8s.channel",
                "with `auth: token`: MicroK8s 1.28 and later, installed fresh, do not read known_tokens.csv (no --token-auth-file)",
                "use `auth: x509`, or check that args/kube-apiserver on the control plane has --token-auth-file (merge-known-tokens.sh refuses otherwise)",
            );
            report.warning(
                "$.cluster.microk8s.channel",
                format!("with `auth: token`: {KUBELET_VERIFIED}; with tokens a worker's kubelet serves a certificate of the worker's own CA, so kubectl logs, exec and port-forward to pods on token-authenticated workers fail with x509 errors"),
                "use `auth: x509` (the generator then issues each kubelet a serving certificate from the cluster CA), or `auth: microk8s-join` (1.23+: the control plane signs the kubelet's certificates)",
            );
        }
        if c.client_certificates.is_some() {
            report.warning(
                "$.cluster.client-certificates",
                "ignored with `auth: token`",
                "remove it, or set `auth: x509`",
            );
        }
        Some(Auth::Token)
    }

    fn credentials(&self, _: &Auth, cx: &NodeCx) -> anyhow::Result<NodeCredentials> {
        let token = |identity| Credential::Token { token: cx.secrets.token(&cx.facts.name, identity, cx.worker.id()) };
        let (kubelet, kube_proxy) = (token(Identity::Kubelet), token(Identity::KubeProxy));
        let staged = kubeconfigs(cx, &kubelet, &kube_proxy)?;
        Ok(NodeCredentials { staged, kubelet, kube_proxy: Some(kube_proxy), kubelet_serving: None })
    }

    fn bundle(&self, facts: &Facts, secrets: &Secrets, workers: &[&Worker]) -> anyhow::Result<Vec<BundleFile>> {
        // An empty bundle merges nothing and only invites mistakes on a root shell
        // of a control plane; the script refuses one too.
        anyhow::ensure!(
            !workers.is_empty() || !facts.retired.is_empty(),
            "the facts list no workers: there are no token lines to give the control plane"
        );
        let csv: String = workers.iter().map(|w| token_lines(facts, secrets, w)).collect();
        let retired: String = facts.retired.iter().map(|r| retired_lines(&r.name)).collect();
        let script = templates::render(
            "merge-known-tokens.sh",
            serde_json::json!({
                "cluster": facts.name,
                "apiserver_service": apiserver_unit(facts.channel.release.flavour),
                "apiserver_port": facts.apiserver_port,
            }),
        )?;
        Ok(vec![
            ("known-tokens.csv", csv, 0o600),
            ("retired-known-tokens.txt", retired, 0o644),
            ("merge-known-tokens.sh", script, 0o755),
        ])
    }

    fn operator_steps(&self) -> &'static str {
        "merge-known-tokens.sh (one node at a time) and hosts-entries.sh"
    }

    fn retire_steps(&self) -> &'static str {
        "the worker's token lines stay valid until every apiserver has restarted without them: \
         regenerate the bundle (mk8s-gen control-plane) and run merge-known-tokens.sh on each \
         control-plane node, one node at a time (it removes the retired worker's two lines, only \
         those, restarts the apiserver and waits for /readyz); until then the denylist refuses \
         the kubelet token's writes, not kube-proxy's (every worker's kube-proxy is system:kube-proxy)"
    }

    fn bundle_needs_workers(&self) -> bool {
        true
    }
}

/// User-id column values; prefixed so they cannot collide with MicroK8s's own lines
/// (`kubelet-0`, `kube-proxy`, `admin`, ...), whatever the node is called.
pub fn uid(identity: Identity, node: &str) -> String {
    match identity {
        Identity::Kubelet => format!("mk8s-kubelet-{node}"),
        Identity::KubeProxy => format!("mk8s-kube-proxy-{node}"),
    }
}

/// What follows the token in a retired worker's two lines (as [`token_lines`]
/// writes them): `merge-known-tokens.sh` removes exactly the lines that end so.
pub fn retired_lines(node: &str) -> String {
    format!(
        "system:kube-proxy,{}\nsystem:node:{node},{},\"system:nodes\"\n",
        uid(Identity::KubeProxy, node),
        uid(Identity::Kubelet, node)
    )
}

/// The two lines for one worker, in the seed's format:
/// `TOKEN,system:kube-proxy,UID` and `TOKEN,system:node:NAME,UID,"system:nodes"`.
/// Every field is validated upstream (hex tokens, RFC 1123 names), so no field can
/// hold a comma, quote or newline; the assertion keeps it that way.
pub fn token_lines(facts: &Facts, secrets: &Secrets, w: &Worker) -> String {
    let proxy = secrets.token(&facts.name, Identity::KubeProxy, w.id());
    let kubelet = secrets.token(&facts.name, Identity::Kubelet, w.id());
    let lines = format!(
        "{proxy},system:kube-proxy,{}\n{kubelet},system:node:{},{},\"system:nodes\"\n",
        uid(Identity::KubeProxy, &w.name),
        w.name,
        uid(Identity::Kubelet, &w.name)
    );
    assert!(
        lines.lines().all(|l| l.matches(',').count() == 2 + usize::from(l.contains("system:nodes"))),
        "token lines must have exactly their own fields"
    );
    lines
}
