//! The cluster CA certificate: parsed once, checked to be a CA, and pinned the way
//! kubeadm pins it (`sha256:` over the DER SubjectPublicKeyInfo).

use base64::Engine as _;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

#[derive(Debug, Clone)]
pub struct CaCert {
    /// Normalised PEM (one certificate, `\n` line ends, trailing newline).
    pub pem: String,
    pub der: Vec<u8>,
    /// `sha256:<hex>` of the SubjectPublicKeyInfo.
    pub pin: String,
    pub subject: String,
    /// Seconds since the epoch.
    pub not_after: i64,
}

impl CaCert {
    pub fn from_pem(text: &str) -> Result<CaCert, String> {
        let mut blocks = Vec::new();
        for item in Pem::iter_from_buffer(text.as_bytes()) {
            let pem = item.map_err(|e| format!("not PEM: {e}"))?;
            blocks.push(pem);
        }
        let certs: Vec<_> = blocks.iter().filter(|p| p.label == "CERTIFICATE").collect();
        if blocks.iter().any(|p| p.label.contains("PRIVATE KEY")) {
            return Err("it contains a private key; give the certificate only (keep keys in the secrets file)".into());
        }
        let der = match certs.as_slice() {
            [one] => one.contents.clone(),
            [] => return Err("no CERTIFICATE block found".into()),
            _ => return Err(format!("{} certificates found, expected exactly one", certs.len())),
        };
        Self::from_der(der)
    }

    pub fn from_der(der: Vec<u8>) -> Result<CaCert, String> {
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let is_ca = cert.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(format!("{} is not a CA (basicConstraints CA:TRUE is missing)", cert.subject()));
        }
        let pin = format!("sha256:{}", hex::encode(Sha256::digest(cert.public_key().raw)));
        let subject = cert.subject().to_string();
        let not_after = cert.validity().not_after.timestamp();
        let pem = to_pem(&der);
        Ok(CaCert { pem, der, pin, subject, not_after })
    }
}

/// DER -> PEM with 64-column lines.
pub fn to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_CA: &str = include_str!("../../fixtures/seed/ca.crt");

    #[test]
    fn the_seed_ca_parses_and_pins() {
        let ca = CaCert::from_pem(SEED_CA).unwrap();
        assert!(ca.subject.contains("10.152.183.1"), "{}", ca.subject);
        assert!(ca.pin.starts_with("sha256:") && ca.pin.len() == 71);
        // Normalising is stable.
        assert_eq!(CaCert::from_pem(&ca.pem).unwrap().pem, ca.pem);
    }

    #[test]
    fn garbage_and_keys_are_refused() {
        assert!(CaCert::from_pem("hello").unwrap_err().contains("no CERTIFICATE"));
        let two = format!("{SEED_CA}{SEED_CA}");
        assert!(CaCert::from_pem(&two).unwrap_err().contains("2 certificates"));
        let with_key = format!("{SEED_CA}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        assert!(CaCert::from_pem(&with_key).unwrap_err().contains("private key"));
    }
}
