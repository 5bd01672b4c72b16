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

const CSR_PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// What the apiserver says about our Node object.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        Api::for_node(&plan.ca.pem, &plan.node.name, url, cred, who)
    }

    /// A client of `url` (TLS verified against `ca_pem` only) with `cred`, asking
    /// about Node `node`.
    pub fn for_node(ca_pem: &str, node: &str, url: &str, cred: &Credential, who: &'static str) -> Result<Api, Failure> {
        let ca = Certificate::from_pem(ca_pem.as_bytes())
            .map_err(|e| Failure::Fatal(format!("the plan's CA is not PEM: {e}")))?;
        let mut tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(Arc::new(vec![ca])))
            .unversioned_rustls_crypto_provider(Arc::new(any_version_provider()));
        let mut token = None;
        let mut cert_pem = None;
        match cred {
            Credential::Token { token: t } => token = Some(t.clone()),
            Credential::ClientCertificate { cert_pem: c, key_pem } => {
                let cert = Certificate::from_pem(c.as_bytes())
                    .map_err(|e| Failure::Fatal(format!("client certificate: {e}")))?;
                let key = PrivateKey::from_pem(key_pem.as_bytes())
                    .map_err(|_| Failure::Fatal("client key is not PEM".into()))?;
                check_key_pair(c, key_pem).map_err(|why| Failure::Fatal(format!("the {who} credential: {why}")))?;
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
            node: node.to_string(),
            who,
            cert_pem,
            ca_pem: ca_pem.to_string(),
        })
    }

    /// Who holds the port: nobody, an apiserver of this cluster (through our
    /// balancer, or the balancer itself is up), or something else. Any HTTP answer to
    /// an anonymous `GET /readyz` over TLS verified against the pinned CA proves an
    /// apiserver of this cluster; a TCP connect would be answered by anything holding
    /// the port, such as the node's own control plane, whose certificate comes from
    /// the node's own CA.
    pub fn holder(&self) -> PortHolder {
        let url = format!("{}/readyz", self.base);
        match self.agent.get(&url).call() {
            Ok(resp) => PortHolder::Cluster(resp.status().as_u16()),
            Err(ureq::Error::ConnectionFailed) => PortHolder::Free,
            Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => PortHolder::Free,
            Err(e) if is_tls_trust_error(&e.to_string()) => PortHolder::Foreign(e.to_string()),
            Err(e) => PortHolder::Unknown(describe(&e, &self.base)),
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
        use crate::certs::OutsideValidity;
        match crate::certs::outside_validity(self.cert_pem.as_deref(), &self.ca_pem) {
            Some(OutsideValidity::Ended(why)) => format!(
                "the apiserver rejected the {} certificate for {} (401): {why}. \
                 Render this node's user-data again with a later `client-certificates.not-before` \
                 in the cluster facts (or, if this node's clock is ahead, fix it), then restart this unit",
                self.who, self.node
            ),
            Some(OutsideValidity::NotYet(why)) => format!(
                "the apiserver rejected the {} certificate for {} (401): {why}. \
                 This node's clock is behind: fix it (NTP), then restart this unit",
                self.who, self.node
            ),
            None if self.token.is_some() => format!(
                "the apiserver rejected the {} token for {} (401): the control plane does not know it. \
                 Run `mk8s-gen control-plane` and merge-known-tokens.sh on every control-plane node \
                 (a control-plane node added later needs it too), then restart this unit",
                self.who, self.node
            ),
            None => format!(
                "the apiserver rejected the {} certificate for {} (401): the control plane does not know it: \
                 it is not signed by the cluster CA the apiserver trusts (--client-ca-file), or it has expired",
                self.who, self.node
            ),
        }
    }

    /// `GET /readyz` with our credential: Ok when 200. Never anonymous: every
    /// MicroK8s version runs kube-apiserver with `--authorization-mode=AlwaysAllow`
    /// (canonical/microk8s, any branch, `microk8s-resources/default-args/kube-apiserver`),
    /// and under AlwaysAllow kube-apiserver turns anonymous authentication off
    /// (kubernetes `pkg/kubeapiserver/options/authentication.go`, `ApplyAuthorization`),
    /// so an anonymous `/readyz` is 401 there. `/readyz` is readable by every
    /// authenticated user under RBAC too (`system:public-info-viewer`), so a 401 here
    /// is about the credential we sent.
    pub fn readyz(&self) -> Result<(), Failure> {
        match self.get("/readyz", true)? {
            (200, _) => Ok(()),
            (401, _) => Err(Failure::Fatal(self.rejected())),
            (code, body) => Err(Failure::Retry(format!("GET /readyz answered {code}: {}", first_line(&body)))),
        }
    }

    /// `GET /version` with our credential (every authenticated user may read it,
    /// `system:public-info-viewer`): the apiserver's `gitVersion` (`v1.34.4`).
    pub fn version(&self) -> Result<String, Failure> {
        match self.get("/version", true)? {
            (200, body) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["gitVersion"].as_str().map(str::to_string))
                .ok_or_else(|| Failure::Retry(format!("GET /version: no gitVersion in {}", first_line(&body)))),
            (401, _) => Err(Failure::Fatal(self.rejected())),
            (code, body) => Err(Failure::Retry(format!("GET /version answered {code}: {}", first_line(&body)))),
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
        self.patch_node_returning(patch).map(|_| ())
    }

    /// [`Api::patch_node`], returning the Node as the apiserver stored it (its
    /// annotations carry what the operator asks of this node); `Null` when the
    /// answer was not JSON.
    pub fn patch_node_returning(&self, patch: &serde_json::Value) -> Result<serde_json::Value, Failure> {
        let url = format!("{}/api/v1/nodes/{}", self.base, self.node);
        let mut req = self.agent.patch(&url).header("Content-Type", "application/merge-patch+json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        match req.send(patch.to_string()) {
            Ok(mut r) if r.status().is_success() => {
                let body = r.body_mut().with_config().limit(1 << 20).read_to_string().unwrap_or_default();
                Ok(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
            }
            Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Err(Failure::Fatal(format!(
                "the apiserver refused to let the kubelet credential patch node {} ({})",
                self.node,
                r.status().as_u16()
            ))),
            Ok(r) => Err(Failure::Retry(format!("PATCH node {} answered {}", self.node, r.status().as_u16()))),
            Err(e) => Err(Failure::Retry(describe(&e, &self.base))),
        }
    }

    /// `POST` a CertificateSigningRequest (certificates.k8s.io/v1) with our
    /// credential: the Node authorizer's rules let a node create and get them
    /// (`NodeRules`). Ok when created, or when one of that name exists (a run
    /// that filed it and did not hear back).
    pub fn create_csr(&self, csr: &serde_json::Value) -> Result<(), Failure> {
        let url = format!("{}{CSR_PATH}", self.base);
        let mut req = self.agent.post(&url).header("Content-Type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        match req.send(csr.to_string()) {
            Ok(r) if r.status().is_success() || r.status().as_u16() == 409 => Ok(()),
            Ok(mut r) => {
                let code = r.status().as_u16();
                let body = r.body_mut().with_config().limit(1 << 16).read_to_string().unwrap_or_default();
                let msg = format!("POST {CSR_PATH} answered {code}: {}", first_line(&body));
                Err(if matches!(code, 429 | 500..=599) { Failure::Retry(msg) } else { Failure::Fatal(msg) })
            }
            Err(e) => Err(Failure::Retry(describe(&e, &self.base))),
        }
    }

    /// A CertificateSigningRequest by name; None when there is none.
    pub fn csr(&self, name: &str) -> Result<Option<serde_json::Value>, Failure> {
        let path = format!("{CSR_PATH}/{name}");
        match self.get(&path, true)? {
            (200, body) => serde_json::from_str(&body)
                .map(Some)
                .map_err(|e| Failure::Retry(format!("GET {path}: not a CertificateSigningRequest: {e}"))),
            (404, _) => Ok(None),
            (code @ (401 | 403), body) => {
                Err(Failure::Fatal(format!("GET {path} answered {code}: {}", first_line(&body))))
            }
            (code, body) => Err(Failure::Retry(format!("GET {path} answered {code}: {}", first_line(&body)))),
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

/// What the phases ask of an apiserver: [`Api`] over HTTPS on the node, a fake in
/// the phases' tests.
pub trait NodeApi {
    /// See [`Api::holder`].
    fn holder(&self) -> PortHolder;
    /// See [`Api::readyz`].
    fn readyz(&self) -> Result<(), Failure>;
    /// See [`Api::node`].
    fn node(&self) -> Result<NodeState, Failure>;
    /// See [`Api::node_object`].
    fn node_object(&self) -> Result<Option<serde_json::Value>, Failure>;
    /// See [`Api::patch_node`].
    fn patch_node(&self, patch: &serde_json::Value) -> Result<(), Failure>;
}

impl NodeApi for Api {
    fn holder(&self) -> PortHolder {
        Api::holder(self)
    }

    fn readyz(&self) -> Result<(), Failure> {
        Api::readyz(self)
    }

    fn node(&self) -> Result<NodeState, Failure> {
        Api::node(self)
    }

    fn node_object(&self) -> Result<Option<serde_json::Value>, Failure> {
        Api::node_object(self)
    }

    fn patch_node(&self, patch: &serde_json::Value) -> Result<(), Failure> {
        Api::patch_node(self, patch)
    }
}

/// ring's key loader, with keys that do not tell rustls their public key. rustls
/// then does not parse our own client certificate to compare the two
/// (`CertifiedKey::keys_match`, whose webpki parser takes only X.509 v3, and ureq
/// would panic on its error), because MicroK8s 1.23-1.27 control planes sign a
/// joining worker's certificates as **v1** (`openssl x509 -req` without `-extfile`:
/// canonical/microk8s-cluster-agent 1.24:pkg/snap/snap.go L315-330, 1.27 L352-367;
/// canonical/microk8s 1.23:scripts/cluster/agent.py L115-137). Go accepts v1, and
/// the apiserver checks the certificate in the handshake; [`check_key_pair`] makes
/// the comparison rustls skips.
fn any_version_provider() -> rustls::crypto::CryptoProvider {
    static KEYS: AnyVersionKeys = AnyVersionKeys;
    rustls::crypto::CryptoProvider { key_provider: &KEYS, ..rustls::crypto::ring::default_provider() }
}

#[derive(Debug)]
struct AnyVersionKeys;

impl rustls::crypto::KeyProvider for AnyVersionKeys {
    fn load_private_key(
        &self,
        key: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        let inner = rustls::crypto::ring::default_provider().key_provider.load_private_key(key)?;
        Ok(Arc::new(KeyWithoutSpki(inner)))
    }
}

#[derive(Debug)]
struct KeyWithoutSpki(Arc<dyn rustls::sign::SigningKey>);

impl rustls::sign::SigningKey for KeyWithoutSpki {
    fn choose_scheme(&self, offered: &[rustls::SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        self.0.choose_scheme(offered)
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        self.0.algorithm()
    }
}

/// That a PEM certificate (any X.509 version) and a PEM private key belong together.
pub fn check_key_pair(cert_pem: &str, key_pem: &str) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    let cert = crate::certs::Cert::from_pem(cert_pem).ok_or("the client certificate is not an X.509 certificate")?;
    let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| "the client key is not a PEM private key".to_string())?;
    let key = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("the client key: {e}"))?;
    match key.public_key() {
        Some(spki) if spki.as_ref() == cert.spki.as_slice() => Ok(()),
        Some(_) => Err("the client key does not belong to the client certificate".into()),
        None => Err("the client key's public key cannot be read".into()),
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
    let ca = crate::certs::pem_to_der(ca_pem).ok_or_else(|| Failure::Fatal("the plan's CA is not PEM".into()))?;
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
pub enum PortHolder {
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
