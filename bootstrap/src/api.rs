//! Talking to the kube-apiserver through the load balancer: TLS verified against the
//! plan's CA only (never the system roots), authenticated with the kubelet's
//! credential. Every answer is classified as retryable or fatal.

use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use crate::plan::{Credential, JoinPlan};
use crate::retry::Failure;

pub struct Api {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
    node: String,
    /// Whose credential this is, for messages ("kubelet", "kube-proxy").
    who: &'static str,
    /// The client certificate, to explain a 401 (clock skew).
    cert_pem: Option<String>,
    ca_pem: String,
}

/// What the apiserver says about our Node object.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeState {
    Absent,
    NotReady(String),
    /// Ready, with the kubelet's last heartbeat (Unix seconds) when the Node says.
    Ready(Option<u64>),
}

impl Api {
    /// A client of the plan's apiserver URL with the kubelet's credential.
    pub fn new(plan: &JoinPlan) -> Result<Api, Failure> {
        Api::with(plan, &plan.apiserver.url, &plan.credentials.kubelet, "kubelet")
    }

    /// A client of `url` (TLS verified against the plan's CA only) with `cred`.
    pub fn with(plan: &JoinPlan, url: &str, cred: &Credential, who: &'static str) -> Result<Api, Failure> {
        let ca = Certificate::from_pem(plan.ca.pem.as_bytes())
            .map_err(|e| Failure::Fatal(format!("the plan's CA is not PEM: {e}")))?;
        let mut tls =
            TlsConfig::builder().provider(TlsProvider::Rustls).root_certs(RootCerts::Specific(Arc::new(vec![ca])));
        let mut token = None;
        let mut cert_pem = None;
        match cred {
            Credential::Token { token: t } => token = Some(t.clone()),
            Credential::ClientCertificate { cert_pem: c, key_pem } => {
                let cert = Certificate::from_pem(c.as_bytes())
                    .map_err(|e| Failure::Fatal(format!("client certificate: {e}")))?;
                let key = PrivateKey::from_pem(key_pem.as_bytes())
                    .map_err(|_| Failure::Fatal("client key is not PEM".into()))?;
                tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
                cert_pem = Some(c.clone());
            }
            Credential::JoinToken { .. } | Credential::Removed => {}
        }
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(15)))
            .max_redirects(0)
            .user_agent(concat!("mk8s-bootstrap/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Api {
            agent,
            base: url.trim_end_matches('/').to_string(),
            token,
            node: plan.node.name.clone(),
            who,
            cert_pem,
            ca_pem: plan.ca.pem.clone(),
        })
    }

    /// Who holds the port: nobody, an apiserver of this cluster (through our
    /// balancer, or the balancer itself is up), or something else. Any HTTP answer to
    /// an anonymous `GET /readyz` over TLS verified against the pinned CA proves an
    /// apiserver of this cluster; a TCP connect would be answered by anything holding
    /// the port, such as the node's own control plane, whose certificate comes from
    /// the node's own CA.
    pub fn holder(&self) -> Holder {
        let url = format!("{}/readyz", self.base);
        match self.agent.get(&url).call() {
            Ok(resp) => Holder::Cluster(resp.status().as_u16()),
            Err(ureq::Error::ConnectionFailed) => Holder::Free,
            Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Holder::Free,
            Err(e) if is_tls_trust_error(&e.to_string()) => Holder::Foreign(e.to_string()),
            Err(e) => Holder::Unknown(describe(&e, &self.base)),
        }
    }

    fn get(&self, path: &str, auth: bool) -> Result<(u16, String), Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.get(&url);
        if let (true, Some(t)) = (auth, &self.token) {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        match req.call() {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let body = resp.body_mut().with_config().limit(1 << 20).read_to_string().unwrap_or_default();
                Ok((status, body))
            }
            Err(e) => Err(Failure::Retry(describe(&e, &self.base))),
        }
    }

    /// Why the apiserver answered 401 to our credential, as far as we can tell.
    fn rejected(&self) -> String {
        match crate::pin::not_yet_valid(self.cert_pem.as_deref(), &self.ca_pem) {
            Some(why) => format!(
                "the apiserver rejected the {} certificate for {} (401): {why}. \
                 This node's clock is behind: fix it (NTP), then restart this unit",
                self.who, self.node
            ),
            None => format!(
                "the apiserver rejected the {} credential for {} (401): the control plane does not know it. \
                 Token auth: run `mk8s-gen control-plane` and merge-known-tokens.sh on every control-plane node \
                 (a control-plane node added later needs it too), then restart this unit; \
                 x509: the client certificate is not signed by the cluster CA",
                self.who, self.node
            ),
        }
    }

    /// `GET /readyz` (anonymous, as kube-apiserver allows): Ok when 200. A client
    /// certificate is presented in the TLS handshake all the same, and kube-apiserver
    /// answers 401 to one it rejects, whatever the path.
    pub fn readyz(&self) -> Result<(), Failure> {
        match self.get("/readyz", false)? {
            (200, _) => Ok(()),
            (401, _) => Err(Failure::Fatal(self.rejected())),
            (code, body) => Err(Failure::Retry(format!("GET /readyz answered {code}: {}", first_line(&body)))),
        }
    }

    /// Our Node object, if it exists (`GET /api/v1/nodes/NAME`).
    pub fn node_object(&self) -> Result<Option<serde_json::Value>, Failure> {
        let path = format!("/api/v1/nodes/{}", self.node);
        match self.get(&path, true)? {
            (200, body) => serde_json::from_str(&body)
                .map(Some)
                .map_err(|e| Failure::Retry(format!("GET {path}: not a Node object: {e}"))),
            (404, _) => Ok(None),
            (code, body) => Err(Failure::Retry(format!("GET {path} answered {code}: {}", first_line(&body)))),
        }
    }

    /// `PATCH /api/v1/nodes/NAME` (JSON merge patch) with our credential: a kubelet
    /// may patch its own Node (the Node authorizer's rules; `system:node`).
    pub fn patch_node(&self, patch: &serde_json::Value) -> Result<(), Failure> {
        let url = format!("{}/api/v1/nodes/{}", self.base, self.node);
        let mut req = self.agent.patch(&url).header("Content-Type", "application/merge-patch+json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        match req.send(patch.to_string()) {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Err(Failure::Fatal(format!(
                "the apiserver refused to let the kubelet credential patch node {} ({})",
                self.node,
                r.status().as_u16()
            ))),
            Ok(r) => Err(Failure::Retry(format!("PATCH node {} answered {}", self.node, r.status().as_u16()))),
            Err(e) => Err(Failure::Retry(describe(&e, &self.base))),
        }
    }

    /// `GET /api/v1/nodes/NAME` with our credential.
    pub fn node(&self) -> Result<NodeState, Failure> {
        let path = format!("/api/v1/nodes/{}", self.node);
        let (code, body) = self.get(&path, true)?;
        match code {
            200 => Ok(node_state(&body)),
            404 => Ok(NodeState::Absent),
            // Fatal here; the caller retries these for the plan's grace period first.
            401 => Err(Failure::Fatal(self.rejected())),
            403 => Err(Failure::Fatal(format!(
                "the apiserver authenticated the {} credential but forbids reading node {} (403): \
                 the credential belongs to another identity, or RBAC does not grant it yet; \
                 regenerate this node's user-data if it persists",
                self.who, self.node
            ))),
            429 | 500..=599 => Err(Failure::Retry(format!("GET {path} answered {code}"))),
            other => Err(Failure::Retry(format!("GET {path} answered {other}: {}", first_line(&body)))),
        }
    }
}

/// The certificate (DER) a control plane's cluster-agent at `agent` (`IP:PORT`)
/// presents, after a TLS handshake verified against the plan's CA for that IP: the
/// agent serves the node's `server.crt`, signed by the cluster CA with the node's
/// IPs as SANs (canonical/microk8s `default-args/cluster-agent`, `gen_server_cert` in
/// `microk8s-resources/actions/common/utils.sh`). Nothing is sent: a server of
/// another CA never sees the join token.
pub fn agent_certificate(ca_pem: &str, agent: &str) -> Result<Vec<u8>, Failure> {
    use std::io::Write as _;
    let addr: std::net::SocketAddr =
        agent.parse().map_err(|e| Failure::Fatal(format!("bad cluster-agent endpoint {agent:?}: {e}")))?;
    let ca = crate::pin::pem_to_der(ca_pem).ok_or_else(|| Failure::Fatal("the plan's CA is not PEM".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|e| Failure::Fatal(format!("the plan's CA: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::Fatal(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(|e| Failure::Fatal(e.to_string()))?;
    let mut sock = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| Failure::Retry(format!("cluster-agent {agent}: {e}")))?;
    let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = sock.set_write_timeout(Some(Duration::from_secs(10)));
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| {
            let text = e.to_string();
            if is_tls_trust_error(&text) {
                Failure::Retry(format!(
                    "cluster-agent {agent}: its certificate does not verify against the cluster CA ({text}):                      not this cluster's agent; the join token was not sent"
                ))
            } else {
                Failure::Retry(format!("cluster-agent {agent}: TLS: {text}"))
            }
        })?;
    }
    let leaf = conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
    conn.send_close_notify();
    let _ = conn.write_tls(&mut sock);
    let _ = sock.flush();
    leaf.ok_or_else(|| Failure::Retry(format!("cluster-agent {agent} presented no certificate")))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

/// See [`Api::holder`].
#[derive(Debug, PartialEq, Eq)]
pub enum Holder {
    Free,
    /// With the status of its `/readyz`.
    Cluster(u16),
    /// A TLS server whose certificate does not chain to the pinned CA.
    Foreign(String),
    Unknown(String),
}

fn is_tls_trust_error(text: &str) -> bool {
    text.contains("UnknownIssuer") || text.contains("certificate") || text.contains("Certificate")
}

fn describe(e: &ureq::Error, base: &str) -> String {
    let text = e.to_string();
    if is_tls_trust_error(&text) {
        format!("TLS to {base}: the server's certificate does not verify against the cluster CA ({text}); retrying, since a starting load balancer can present its own certificate briefly")
    } else {
        format!("{base}: {text}")
    }
}

/// Read the Ready condition out of a Node object.
pub fn node_state(body: &str) -> NodeState {
    let v: serde_json::Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return NodeState::NotReady("the Node object is not JSON".into()),
    };
    let conds = v.pointer("/status/conditions").and_then(|c| c.as_array()).cloned().unwrap_or_default();
    match conds.iter().find(|c| c["type"] == "Ready") {
        Some(c) if c["status"] == "True" => {
            NodeState::Ready(c["lastHeartbeatTime"].as_str().and_then(crate::clock::unix_of_rfc3339))
        }
        Some(c) => NodeState::NotReady(format!(
            "Ready={} ({})",
            c["status"].as_str().unwrap_or("?"),
            c["reason"].as_str().unwrap_or("")
        )),
        None => NodeState::NotReady("no Ready condition yet".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_condition_is_read() {
        let ready = r#"{"kind":"Node","status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"True","lastHeartbeatTime":"2026-11-25T15:40:07Z"}]}}"#;
        assert_eq!(node_state(ready), NodeState::Ready(Some(1_795_621_207)));
        let no_heartbeat = r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#;
        assert_eq!(node_state(no_heartbeat), NodeState::Ready(None));
        let not = r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"KubeletNotReady"}]}}"#;
        assert_eq!(node_state(not), NodeState::NotReady("Ready=False (KubeletNotReady)".into()));
        assert!(matches!(node_state("{}"), NodeState::NotReady(_)));
    }
}
