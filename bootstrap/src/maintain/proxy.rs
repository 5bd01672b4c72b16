//! kube-proxy's client certificate renews itself (`auth: x509`): when less than
//! [`DUE_PERCENT`] % of its lifetime is left (or it has ended), a new ECDSA P-256
//! key is made on the node and a `kubernetes.io/kube-apiserver-client` request
//! for `CN=system:kube-proxy` is filed with the kubelet's credential (the one the
//! report uses; the Node authorizer lets a node create and get requests). The
//! request is approved by `mk8s-ctl approve` and signed by kube-controller-manager;
//! once it carries a certificate for that key, from the pinned CA, kube-proxy's
//! kubeconfig gets the new pair (atomically, 0600) and kube-proxy restarts.
//!
//! The key waits in [`PENDING_FILE`] (0600) with the request's name, which is
//! derived from the node and the key, so a run that finds the request still
//! pending leaves everything as it is and the next run asks about the same
//! request; nothing is filed twice for one key. A request that is gone (the
//! controller-manager deletes unanswered ones after a day) is filed anew with a
//! new key. The working kubeconfig is replaced only by a checked one.

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::checks::Cx;
use crate::api::Api;
use crate::certs::{chains_to_at, Cert};
use crate::fs::write_atomic;
use crate::plan::Credential;
use crate::retry::Failure;

/// kube-proxy's kubeconfig, under `$SNAP_DATA`.
pub const PROXY_KUBECONFIG: &str = "credentials/proxy.config";
/// The key and name of the request in flight.
pub const PENDING_FILE: &str = "/var/lib/mk8s-worker/kube-proxy-renewal.json";
/// Renew when less than this share of the lifetime is left.
pub const DUE_PERCENT: i64 = 30;
/// The lifetime asked for (the controller-manager's `--cluster-signing-duration`
/// caps it; its default is a year too).
pub const EXPIRATION_SECONDS: i64 = 365 * 86_400;
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client";
pub const SUBJECT_CN: &str = "system:kube-proxy";
pub const USAGES: &[&str] = &["digital signature", "key encipherment", "client auth"];
/// How long one run waits for a certificate on a request it asked about.
const WAIT_FOR: Duration = Duration::from_secs(10);

/// What a run did about kube-proxy's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// Not a certificate this agent renews (a token, paths of MicroK8s's join).
    NotOurs,
    NotDue,
    /// Filed or still waiting: approval (or signing) has not come yet.
    Pending(String),
    /// The new certificate is in kube-proxy's kubeconfig, ending then (Unix s).
    Installed(String, i64),
    /// The request was denied (or failed); it stays until someone deletes it.
    Denied(String, String),
    /// Something else went wrong; the next run tries again.
    Failed(String),
}

impl Renewal {
    /// One line for the status file and the log; None when there is nothing to say.
    pub fn describe(&self) -> Option<String> {
        match self {
            Renewal::NotOurs | Renewal::NotDue => None,
            Renewal::Pending(csr) => Some(format!("pending: request {csr} is not approved and signed yet")),
            Renewal::Installed(csr, end) => Some(format!(
                "renewed: kube-proxy has the certificate of request {csr}, until {}",
                crate::clock::rfc3339(u64::try_from(*end).unwrap_or(0))
            )),
            Renewal::Denied(csr, why) => {
                Some(format!("denied: request {csr}: {why}; delete it (kubectl delete csr {csr}) for a new one"))
            }
            Renewal::Failed(why) => Some(format!("failed: {why}")),
        }
    }

    /// A problem the report lists as drift (denied, failed).
    pub fn problem(&self) -> Option<String> {
        matches!(self, Renewal::Denied(..) | Renewal::Failed(_)).then(|| self.describe()).flatten()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Pending {
    csr: String,
    key_pem: String,
}

/// Less than [`DUE_PERCENT`] % of `[not_before, not_after]` left at `now`, or past it.
pub fn due(not_before: i64, not_after: i64, now: i64) -> bool {
    let lifetime = (not_after - not_before).max(0);
    now >= not_after || (not_after - now) * 100 < lifetime * DUE_PERCENT
}

/// The request's name: the node's, and the key's (its SHA-256, 16 hex digits).
pub fn request_name(node: &str, public_key: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(public_key));
    format!("mk8s-kube-proxy-{node}-{}", &digest[..16])
}

/// Renew kube-proxy's certificate if it is due, through `api` (the kubelet's).
pub fn renew(cx: &Cx, api: impl Fn() -> Result<Api, Failure>, out: &mut dyn Write) -> Renewal {
    if cx.plan.join.is_some() {
        return Renewal::NotOurs;
    }
    let text = fs::read_to_string(cx.node.snap_data(PROXY_KUBECONFIG)).unwrap_or_default();
    if !text.contains("client-certificate-data:") || !text.contains("client-key-data:") {
        return Renewal::NotOurs;
    }
    let Ok(Credential::ClientCertificate { cert_pem, .. }) =
        crate::phases::kubeconfig::kubeconfig_credential(cx.node, PROXY_KUBECONFIG)
    else {
        return Renewal::NotOurs;
    };
    let pending_path = cx.node.path(PENDING_FILE);
    let current = Cert::from_pem(&cert_pem);
    if current.as_ref().is_some_and(|c| !due(c.not_before, c.not_after, cx.now)) {
        let _ = fs::remove_file(&pending_path);
        return Renewal::NotDue;
    }
    let api = match api() {
        Ok(api) => api,
        Err(e) => return Renewal::Failed(format!("no client for the apiserver: {e}")),
    };
    match step(cx, &api, &text, out) {
        Ok(r) => r,
        Err(e) => Renewal::Failed(e),
    }
}

/// The pending request (filed now when there is none), waited on; installed when signed.
fn step(cx: &Cx, api: &Api, kubeconfig: &str, out: &mut dyn Write) -> Result<Renewal, String> {
    let pending_path = cx.node.path(PENDING_FILE);
    let pending = match fs::read(&pending_path).ok().and_then(|b| serde_json::from_slice::<Pending>(&b).ok()) {
        Some(p) => p,
        None => file_new(cx, api, out)?,
    };
    let Some(csr) = wait(api, &pending.csr)? else {
        let _ = fs::remove_file(&pending_path);
        return Ok(Renewal::Failed(format!("request {} is gone; the next run files a new one", pending.csr)));
    };
    if let Some(why) = refusal(&csr) {
        return Ok(Renewal::Denied(pending.csr, why));
    }
    let Some(cert_pem) = issued(&csr) else { return Ok(Renewal::Pending(pending.csr)) };
    let end = check(cx, &cert_pem, &pending.key_pem).map_err(|e| format!("request {}: {e}", pending.csr))?;
    let updated = with_pair(kubeconfig, &cert_pem, &pending.key_pem)?;
    write_atomic(&cx.node.snap_data(PROXY_KUBECONFIG), updated.as_bytes(), 0o600)
        .map_err(|e| format!("cannot write {PROXY_KUBECONFIG}: {e}"))?;
    let _ = fs::remove_file(&pending_path);
    restart(cx, out);
    Ok(Renewal::Installed(pending.csr, end))
}

/// A new key and request: the key is saved (0600) before the request is filed.
fn file_new(cx: &Cx, api: &Api, out: &mut dyn Write) -> Result<Pending, String> {
    let (key_pem, csr_pem) = crate::csr::new_key_and_request(SUBJECT_CN)?;
    let der = crate::csr::key_der(&key_pem).ok_or("the new key's PEM does not read back")?;
    let name = request_name(&cx.plan.node.name, &crate::csr::public_key(&der)?);
    let pending = Pending { csr: name.clone(), key_pem };
    let bytes = serde_json::to_vec(&pending).map_err(|e| e.to_string())?;
    write_atomic(&cx.node.path(PENDING_FILE), &bytes, 0o600).map_err(|e| format!("cannot save the new key: {e}"))?;
    use base64::Engine as _;
    let body = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": { "name": name },
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(csr_pem),
            "signerName": SIGNER,
            "usages": USAGES,
            "expirationSeconds": EXPIRATION_SECONDS,
        }
    });
    api.create_csr(&body).map_err(|e| format!("cannot file request {name}: {e}"))?;
    let _ = writeln!(out, "mk8s-bootstrap[maintain]: kube-proxy's certificate is due: filed request {name}");
    Ok(pending)
}

/// The request, once it is decided or signed, or after [`WAIT_FOR`]; None: gone.
fn wait(api: &Api, name: &str) -> Result<Option<Value>, String> {
    let end = Instant::now() + WAIT_FOR;
    loop {
        let csr = api.csr(name).map_err(|e| format!("cannot read request {name}: {e}"))?;
        let settled = csr.as_ref().is_none_or(|c| refusal(c).is_some() || issued(c).is_some());
        if settled || Instant::now() >= end {
            return Ok(csr);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Why the request was denied or failed, if it was.
fn refusal(csr: &Value) -> Option<String> {
    let conditions = csr.pointer("/status/conditions")?.as_array()?;
    conditions.iter().find_map(|c| {
        let kind = c.get("type")?.as_str()?;
        matches!(kind, "Denied" | "Failed").then(|| {
            let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            format!("{kind} ({}): {}", text("reason"), text("message"))
        })
    })
}

/// The issued certificate (PEM), if there is one.
fn issued(csr: &Value) -> Option<String> {
    use base64::Engine as _;
    let b64 = csr.pointer("/status/certificate")?.as_str()?;
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(der).ok().filter(|s| !s.is_empty())
}

/// The certificate is for our key, `CN=system:kube-proxy` with no organisation,
/// from the pinned CA and valid now; its end.
fn check(cx: &Cx, cert_pem: &str, key_pem: &str) -> Result<i64, String> {
    crate::api::check_key_pair(cert_pem, key_pem)?;
    let cert = Cert::from_pem(cert_pem).ok_or("the issued certificate does not parse")?;
    if cert.common_name.as_deref() != Some(SUBJECT_CN) || !cert.organizations.is_empty() {
        return Err(format!(
            "the issued certificate is for {:?} {:?}, not {SUBJECT_CN}",
            cert.common_name, cert.organizations
        ));
    }
    if !chains_to_at(cert_pem, &cx.plan.ca.pem, cx.now) {
        return Err("the issued certificate is not from the pinned CA, or not valid now".into());
    }
    Ok(cert.not_after)
}

/// The kubeconfig with the client pair replaced (`client-certificate-data`,
/// `client-key-data`; every other line kept).
fn with_pair(kubeconfig: &str, cert_pem: &str, key_pem: &str) -> Result<String, String> {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let (mut cert_done, mut key_done) = (false, false);
    let mut out = String::new();
    for line in kubeconfig.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        match line.trim_start().split_once(':').map(|(k, _)| k) {
            Some("client-certificate-data") => {
                out.push_str(&format!("{indent}client-certificate-data: {}", b64(cert_pem)));
                cert_done = true;
            }
            Some("client-key-data") => {
                out.push_str(&format!("{indent}client-key-data: {}", b64(key_pem)));
                key_done = true;
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    if !(cert_done && key_done) {
        return Err(format!("{PROXY_KUBECONFIG} has no client-certificate-data and client-key-data lines"));
    }
    Ok(out)
}

/// kube-proxy re-reads its kubeconfig only on start: its own unit where the
/// worker has one (1.20), else kubelite.
fn restart(cx: &Cx, out: &mut dyn Write) {
    let units = &cx.plan.microk8s.start_services;
    let proxy: Vec<&String> = units.iter().filter(|u| u.contains("proxy")).collect();
    let targets: Vec<&String> = if proxy.is_empty() { units.iter().collect() } else { proxy };
    for unit in targets {
        let said = match cx.node.systemctl(&["restart", unit]) {
            Ok(r) if r.ok => format!("systemctl restart {unit} (kube-proxy's certificate was renewed)"),
            Ok(r) => format!("systemctl restart {unit} failed: {}", r.output),
            Err(e) => format!("systemctl restart {unit} failed: {e}"),
        };
        let _ = writeln!(out, "mk8s-bootstrap[maintain]: {said}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_at_thirty_percent_left_or_past_the_end() {
        assert!(!due(0, 1000, 699), "30.1 % left");
        assert!(due(0, 1000, 701), "29.9 % left");
        assert!(due(0, 1000, 5000), "past its end");
        assert!(due(0, 0, 0), "no lifetime");
    }

    #[test]
    fn the_name_is_the_nodes_and_the_keys() {
        let a = request_name("worker-1", b"key-a");
        assert!(a.starts_with("mk8s-kube-proxy-worker-1-") && a.len() == "mk8s-kube-proxy-worker-1-".len() + 16);
        assert_eq!(a, request_name("worker-1", b"key-a"));
        assert_ne!(a, request_name("worker-1", b"key-b"));
    }

    #[test]
    fn only_the_client_pair_is_replaced() {
        let k =
            "apiVersion: v1\nusers:\n- name: u\n  user:\n    client-certificate-data: OLD\n    client-key-data: OLDK\n";
        let new = with_pair(k, "C", "K").unwrap();
        assert_eq!(new, "apiVersion: v1\nusers:\n- name: u\n  user:\n    client-certificate-data: Qw==\n    client-key-data: Sw==\n");
        assert!(with_pair("users: []\n", "C", "K").is_err());
    }

    #[test]
    fn denied_and_failed_are_refusals() {
        let denied = json!({"status": {"conditions": [{"type": "Denied", "reason": "WrongSubject", "message": "m"}]}});
        assert_eq!(refusal(&denied).as_deref(), Some("Denied (WrongSubject): m"));
        let approved = json!({"status": {"conditions": [{"type": "Approved"}]}});
        assert_eq!(refusal(&approved), None);
        assert_eq!(issued(&approved), None);
    }
}
