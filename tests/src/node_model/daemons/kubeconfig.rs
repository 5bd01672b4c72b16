//! A kubeconfig as the daemons use it to reach an apiserver.

use std::fs;
use std::net::SocketAddr;

use base64::Engine as _;

use crate::node_model::state::Ctx;
use crate::pki::Leaf;
use crate::tls::{https_call, Trust};

/// A kubeconfig as a client uses it.
#[derive(Debug, Default)]
pub(super) struct Kubeconfig {
    pub(super) server: String,
    pub(super) ca_pem: String,
    pub(super) token: Option<String>,
    pub(super) cert_pem: Option<String>,
    pub(super) key_pem: Option<String>,
}

pub(super) fn load_kubeconfig(ctx: &Ctx, path: &str) -> Result<Kubeconfig, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut kc = Kubeconfig::default();
    let b64 = |v: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .unwrap_or_default()
    };
    let file = |v: &str| fs::read_to_string(ctx.node_path(&ctx.expand(v))).unwrap_or_default();
    for line in text.lines() {
        let Some((k, v)) = line.trim().trim_start_matches("- ").split_once(':') else { continue };
        let v = v.trim().trim_matches('"').trim_matches('\'');
        match k.trim() {
            "server" => kc.server = v.to_string(),
            "certificate-authority-data" => kc.ca_pem = b64(v),
            "certificate-authority" => kc.ca_pem = file(v),
            "token" => kc.token = Some(v.to_string()),
            "client-certificate-data" => kc.cert_pem = Some(b64(v)),
            "client-key-data" => kc.key_pem = Some(b64(v)),
            "client-certificate" => kc.cert_pem = Some(file(v)),
            "client-key" => kc.key_pem = Some(file(v)),
            _ => {}
        }
    }
    if kc.server.is_empty() {
        return Err(format!("{path}: no server"));
    }
    Ok(kc)
}

impl Kubeconfig {
    pub(super) fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<crate::tls::Fetched, String> {
        let hostport = self.server.trim_start_matches("https://").trim_end_matches('/');
        let addr: SocketAddr = hostport.parse().map_err(|e| format!("server {}: {e}", self.server))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut self.ca_pem.as_bytes()).flatten() {
            let _ = roots.add(c);
        }
        let client = match (&self.cert_pem, &self.key_pem) {
            (Some(c), Some(k)) => Leaf::from_pem(c, k).map(|l| (l.rustls_chain(), l.rustls_key())),
            _ => None,
        };
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        https_call(addr, name, Trust::Roots(roots), method, path, body, self.token.as_deref(), client)
            .map_err(|e| format!("{method} {}{path}: {e}", self.server))
    }
}
