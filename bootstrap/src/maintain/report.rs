//! The verdict: the status file, and the annotations on the node's own Node (a
//! JSON merge patch of `metadata.annotations` only, with the kubelet's own
//! credential through the node-local balancer: the Node authorizer lets a node
//! write its own Node object).

use std::fs;
use std::io::Write;

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::checks::Cx;
use super::{certs, CheckResult, Exit, PLAN_SHA_FILE, STATUS_FILE};
use crate::annotations as a;
use crate::api::Api;
use crate::clock::rfc3339;
use crate::fs::write_atomic;
use crate::node::Node;
use crate::phases::kubeconfig::{kubeconfig_credential, kubeconfig_server, KUBELET};
use crate::plan::{sha256_hex, Credential, JoinPlan};
use crate::retry::Failure;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub node: String,
    /// `clean`, `drift`, or `not-joined`.
    pub result: &'static str,
    pub checked_at: String,
    pub plan_sha256: Option<String>,
    pub agent_version: &'static str,
    /// The names of the checks that failed, in check order.
    pub drift: Vec<&'static str>,
    pub client_not_after: Option<String>,
    pub serving_not_after: Option<String>,
    pub proxy_not_after: Option<String>,
    /// What this run did about kube-proxy's certificate, when it did something
    /// (`pending: …`, `renewed: …`, `denied: …`, `failed: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_renewal: Option<String>,
    pub checks: Vec<CheckResult>,
    /// The channel MicroK8s tracks (`snap list microk8s`).
    pub channel: Option<String>,
    /// What this run did about the operator's desired channel, when asked
    /// (`done: …`, `refused: …`, `failed: …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<String>,
    /// Whether the Node got the annotations, or why not.
    pub reported: String,
}

fn at(unix: i64) -> String {
    rfc3339(u64::try_from(unix).unwrap_or(0))
}

/// The plan's sha256 as mk8s-gen wrote it: kept by the join before it stripped
/// the credentials, or the file's own while it still has them.
fn plan_sha256(node: &Node, plan: &JoinPlan, bytes: &[u8]) -> Option<String> {
    let kept = fs::read_to_string(node.path(PLAN_SHA_FILE)).unwrap_or_default().trim().to_string();
    if kept.len() == 64 && kept.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(kept);
    }
    (!matches!(plan.credentials.kubelet, Credential::Removed)).then(|| sha256_hex(bytes))
}

impl Verdict {
    pub fn new(cx: &Cx, plan_bytes: &[u8], checks: Vec<CheckResult>) -> Verdict {
        let e = certs::expiries(cx.node);
        let drift: Vec<&'static str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
        Verdict {
            node: cx.plan.node.name.clone(),
            result: if drift.is_empty() { "clean" } else { "drift" },
            checked_at: at(cx.now),
            plan_sha256: plan_sha256(cx.node, cx.plan, plan_bytes),
            agent_version: env!("CARGO_PKG_VERSION"),
            drift,
            client_not_after: e.client.map(|v| at(v.not_after)),
            serving_not_after: e.serving.map(|v| at(v.not_after)),
            proxy_not_after: e.proxy.map(|v| at(v.not_after)),
            proxy_renewal: None,
            checks,
            channel: super::upgrade::installed_channel(cx.node),
            upgrade: None,
            reported: String::new(),
        }
    }

    /// The merge patch of the Node's annotations: ours only, a value absent here
    /// (a token instead of a certificate) removed (`null`).
    pub fn patch(&self) -> Value {
        let mut ann = Map::new();
        let mut put = |k: &str, v: Option<String>| {
            ann.insert(k.to_string(), v.map_or(Value::Null, Value::String));
        };
        put(a::PLAN_SHA256, self.plan_sha256.clone());
        put(a::AGENT_VERSION, Some(self.agent_version.to_string()));
        put(a::CLIENT_NOT_AFTER, self.client_not_after.clone());
        put(a::SERVING_NOT_AFTER, self.serving_not_after.clone());
        put(a::PROXY_NOT_AFTER, self.proxy_not_after.clone());
        put(a::DRIFT, Some(self.drift.join(",")));
        put(a::CHECKED_AT, Some(self.checked_at.clone()));
        put(a::OBSERVED_CHANNEL, self.channel.clone());
        put(a::UPGRADE, self.upgrade.clone());
        json!({ "metadata": { "annotations": ann } })
    }
}

/// A node that has not joined: said in the status file only.
pub fn not_joined(plan: &JoinPlan) -> Verdict {
    Verdict {
        node: plan.node.name.clone(),
        result: "not-joined",
        checked_at: rfc3339(crate::clock::unix_now()),
        plan_sha256: None,
        agent_version: env!("CARGO_PKG_VERSION"),
        drift: Vec::new(),
        client_not_after: None,
        serving_not_after: None,
        proxy_not_after: None,
        proxy_renewal: None,
        checks: Vec::new(),
        channel: None,
        upgrade: None,
        reported: "not reported: the node has not joined".into(),
    }
}

/// Patch the Node's annotations with the kubelet's credential, through the
/// plan's apiserver URL (the node-local balancer); with `auth: microk8s-join`
/// through the server the join wrote in the kubelet's kubeconfig, as the join
/// itself waits for the Node (G4). Returns the Node as the apiserver stored it.
pub fn patch_node(node: &Node, plan: &JoinPlan, verdict: &Verdict) -> Result<Value, Failure> {
    kubelet_api(node, plan)?.patch_node_returning(&verdict.patch())
}

/// A client of the apiserver with the kubelet's current credential, the way
/// [`patch_node`] reaches it: the pair the kubelet rotated into its store when it
/// rotates (the kubeconfig's first certificate ends), else its kubeconfig's.
pub fn kubelet_api(node: &Node, plan: &JoinPlan) -> Result<Api, Failure> {
    let url = match plan.join {
        Some(_) => kubeconfig_server(node, KUBELET).map_err(Failure::Retry)?,
        None => plan.apiserver.url.clone(),
    };
    kubelet_api_at(node, plan, &url)
}

/// [`kubelet_api`] at another URL (one control plane's own endpoint).
pub fn kubelet_api_at(node: &Node, plan: &JoinPlan, url: &str) -> Result<Api, Failure> {
    let cred = match crate::store::current_client_pair(node) {
        Some((cert_pem, key_pem)) => Credential::ClientCertificate { cert_pem, key_pem },
        None => kubeconfig_credential(node, KUBELET).map_err(Failure::Retry)?,
    };
    Api::for_node(&plan.ca.pem, &plan.node.name, url, &cred, "kubelet")
}

pub fn save(node: &Node, verdict: &Verdict) {
    let mut text = serde_json::to_string_pretty(verdict).unwrap_or_default();
    text.push('\n');
    // The verdict is also in the log and on the Node: losing the file is no failure.
    let _ = write_atomic(&node.path(STATUS_FILE), text.as_bytes(), 0o644);
}

/// Write the status file and pick the exit code.
pub fn finish(node: &Node, mut verdict: Verdict, delivered: Result<(), Failure>, out: &mut dyn Write) -> Exit {
    let refused = matches!(delivered, Err(Failure::Fatal(_)));
    verdict.reported = match &delivered {
        Ok(()) => format!("annotations patched on Node {}", verdict.node),
        Err(e) => format!("not reported: {e}"),
    };
    let _ = writeln!(out, "mk8s-bootstrap[maintain]: {}", verdict.reported);
    let exit = match (verdict.drift.is_empty(), delivered.is_ok()) {
        (false, _) => Exit::Drift,
        (true, true) => Exit::Clean,
        (true, false) if refused => Exit::Bad,
        (true, false) => Exit::Retryable,
    };
    save(node, &verdict);
    exit
}
