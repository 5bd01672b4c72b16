//! The cluster CA certificate: parsed once, checked to be a CA, and pinned the way
//! kubeadm pins it (`sha256:` over the DER SubjectPublicKeyInfo).

use base64::Engine as _;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

use crate::report::Severity;

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
    pub not_before: i64,
    /// The modulus size of an RSA key.
    pub rsa_bits: Option<usize>,
    /// The signature algorithm, when it is a weak one (MD5 or SHA-1).
    pub weak_signature: Option<&'static str>,
    /// A keyUsage extension without keyCertSign: Go's verifier refuses every
    /// certificate it signed ("parent certificate cannot sign this kind of
    /// certificate").
    pub no_cert_sign: bool,
}

/// A finding about the CA: severity, what, and what to do.
pub type Finding = (Severity, String, &'static str);

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
        let not_before = cert.validity().not_before.timestamp();
        let rsa_bits = match cert.public_key().parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Some(rsa.key_size()),
            _ => None,
        };
        let oid = cert.signature_algorithm.algorithm.to_id_string();
        let weak_signature = match oid.as_str() {
            "1.2.840.113549.1.1.4" => Some("MD5"),
            "1.2.840.113549.1.1.5" | "1.2.840.10040.4.3" | "1.2.840.10045.4.1" => Some("SHA-1"),
            _ => None,
        };
        let no_cert_sign = cert.key_usage().ok().flatten().is_some_and(|ku| !ku.value.key_cert_sign());
        let pem = to_pem(&der);
        Ok(CaCert { pem, der, pin, subject, not_after, not_before, rsa_bits, weak_signature, no_cert_sign })
    }

    /// What is wrong with this CA at `now` (Unix seconds). Read against the clock,
    /// unlike everything the generator writes: these are findings about the input.
    pub fn findings(&self, now: i64) -> Vec<Finding> {
        let day = |t: i64| {
            ::time::OffsetDateTime::from_unix_timestamp(t)
                .map(|d| d.date().to_string())
                .unwrap_or_else(|_| t.to_string())
        };
        let mut out = Vec::new();
        if now > self.not_after {
            out.push((
                Severity::Error,
                format!("the CA expired on {}: no certificate it signed verifies any more", day(self.not_after)),
                "use the cluster's current CA (certs/ca.crt on a control-plane node); an expired MicroK8s CA needs `microk8s refresh-certs --cert ca.crt` on the control plane first",
            ));
        }
        if now < self.not_before {
            out.push((
                Severity::Error,
                format!("the CA is valid only from {}", day(self.not_before)),
                "check the clock of the machine that made it, or use the cluster's current CA",
            ));
        }
        if self.no_cert_sign {
            out.push((
                Severity::Error,
                "the CA's keyUsage has no keyCertSign: Kubernetes (Go) refuses every certificate it signed".into(),
                "use the CA that signs the apiserver's certificate (certs/ca.crt on a control-plane node)",
            ));
        }
        if let Some(bits) = self.rsa_bits.filter(|b| *b < 2048) {
            out.push((
                Severity::Warning,
                format!("the CA's RSA key has {bits} bits: weaker than the 2048 NIST allows since 2013"),
                "plan a rotation to a 2048-bit or larger CA (MicroK8s makes 2048-bit ones)",
            ));
        }
        if let Some(alg) = self.weak_signature {
            out.push((
                Severity::Warning,
                format!("the CA is signed with {alg}, a broken hash"),
                "TLS clients do not check a self-signed root's own signature, so it still works; plan a rotation",
            ));
        }
        out
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

    const SEED_CA: &str = include_str!("../../../fixtures/seed/ca.crt");

    #[test]
    fn the_seed_ca_parses_and_pins() {
        let ca = CaCert::from_pem(SEED_CA).unwrap();
        assert!(ca.subject.contains("10.152.183.1"), "{}", ca.subject);
        assert!(ca.pin.starts_with("sha256:") && ca.pin.len() == 71);
        // Normalising is stable.
        assert_eq!(CaCert::from_pem(&ca.pem).unwrap().pem, ca.pem);
    }

    #[test]
    fn weak_and_out_of_date_cas_are_found() {
        let now = 1_795_621_207; // 2026-11-25
        assert_eq!(CaCert::from_pem(SEED_CA).unwrap().findings(now), vec![]);
        let weak = CaCert::from_pem(include_str!("../../../fixtures/ca-checks/rsa1024-sha1.crt")).unwrap();
        let f = weak.findings(weak.not_before + 60);
        assert!(f.iter().any(|(s, m, _)| *s == Severity::Warning && m.contains("1024 bits")), "{f:?}");
        assert!(f.iter().any(|(s, m, _)| *s == Severity::Warning && m.contains("SHA-1")), "{f:?}");
        assert!(weak
            .findings(weak.not_after + 1)
            .iter()
            .any(|(s, m, _)| *s == Severity::Error && m.contains("expired")));
        assert!(weak
            .findings(weak.not_before - 1)
            .iter()
            .any(|(s, m, _)| *s == Severity::Error && m.contains("valid only from")));
        let md5 = CaCert::from_pem(include_str!("../../../fixtures/ca-checks/md5.crt")).unwrap();
        assert!(md5.findings(md5.not_before + 60).iter().any(|(_, m, _)| m.contains("MD5")));
        // A CA whose keyUsage lacks keyCertSign.
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let ca = CaCert::from_der(cert.der().to_vec()).unwrap();
        assert!(ca
            .findings(ca.not_before + 60)
            .iter()
            .any(|(s, m, _)| *s == Severity::Error && m.contains("keyCertSign")));
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
