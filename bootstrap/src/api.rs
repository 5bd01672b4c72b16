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
}

/// What the apiserver says about our Node object.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeState {
    Absent,
    NotReady(String),
    Ready,
}

impl Api {
    pub fn new(plan: &JoinPlan) -> Result<Api, Failure> {
        let ca = Certificate::from_pem(plan.ca.pem.as_bytes())
            .map_err(|e| Failure::Fatal(format!("the plan's CA is not PEM: {e}")))?;
        let mut tls =
            TlsConfig::builder().provider(TlsProvider::Rustls).root_certs(RootCerts::Specific(Arc::new(vec![ca])));
        let mut token = None;
        match &plan.credentials.kubelet {
            Credential::Token { token: t } => token = Some(t.clone()),
            Credential::ClientCertificate { cert_pem, key_pem } => {
                let cert = Certificate::from_pem(cert_pem.as_bytes())
                    .map_err(|e| Failure::Fatal(format!("client certificate: {e}")))?;
                let key = PrivateKey::from_pem(key_pem.as_bytes())
                    .map_err(|_| Failure::Fatal("client key is not PEM".into()))?;
                tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
            }
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
            base: plan.apiserver.url.trim_end_matches('/').to_string(),
            token,
            node: plan.node.name.clone(),
        })
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

    /// `GET /readyz` (anonymous, as kube-apiserver allows): Ok when 200.
    pub fn readyz(&self) -> Result<(), Failure> {
        match self.get("/readyz", false)? {
            (200, _) => Ok(()),
            (code, body) => Err(Failure::Retry(format!("GET /readyz answered {code}: {}", first_line(&body)))),
        }
    }

    /// `GET /api/v1/nodes/NAME` with our credential.
    pub fn node(&self) -> Result<NodeState, Failure> {
        let path = format!("/api/v1/nodes/{}", self.node);
        let (code, body) = self.get(&path, true)?;
        match code {
            200 => Ok(node_state(&body)),
            404 => Ok(NodeState::Absent),
            401 => Err(Failure::Fatal(format!(
                "the apiserver rejected the kubelet credential for {} (401): the control plane does not know it. \
                 Token auth: run `mk8s-gen control-plane` and merge-known-tokens.sh on every control-plane node, \
                 then restart this unit; x509: the client certificate is not signed by the cluster CA",
                self.node
            ))),
            403 => Err(Failure::Fatal(format!(
                "the apiserver authenticated the kubelet credential but forbids reading node {} (403): \
                 the credential belongs to another identity; regenerate this node's user-data",
                self.node
            ))),
            429 | 500..=599 => Err(Failure::Retry(format!("GET {path} answered {code}"))),
            other => Err(Failure::Retry(format!("GET {path} answered {other}: {}", first_line(&body)))),
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

fn describe(e: &ureq::Error, base: &str) -> String {
    let text = e.to_string();
    if text.contains("UnknownIssuer") || text.contains("certificate") || text.contains("Certificate") {
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
        Some(c) if c["status"] == "True" => NodeState::Ready,
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
        let ready = r#"{"kind":"Node","status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"True"}]}}"#;
        assert_eq!(node_state(ready), NodeState::Ready);
        let not = r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"KubeletNotReady"}]}}"#;
        assert_eq!(node_state(not), NodeState::NotReady("Ready=False (KubeletNotReady)".into()));
        assert!(matches!(node_state("{}"), NodeState::NotReady(_)));
    }
}
