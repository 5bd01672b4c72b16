//! The cluster CA's private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC), able to sign
//! deterministically: RSA PKCS#1 v1.5 is deterministic by construction, and ECDSA
//! signs per RFC 6979.

use base64::Engine as _;
use mk8s_bootstrap::csr::tlv as der;
use p256::pkcs8::DecodePrivateKey;
use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};

use crate::pki::CaCert;

/// The CA's private key, able to sign deterministically.
pub enum CaKey {
    Rsa(KeyPair),
    P256(EcKey<p256::ecdsa::SigningKey>),
    P384(EcKey<p384::ecdsa::SigningKey>),
}

pub struct EcKey<K> {
    key: K,
    public: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl<K> PublicKeyData for EcKey<K> {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

impl SigningKey for EcKey<p256::ecdsa::SigningKey> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        use p256::ecdsa::signature::Signer;
        let sig: p256::ecdsa::Signature = self.key.sign(msg);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

impl SigningKey for EcKey<p384::ecdsa::SigningKey> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        use p384::ecdsa::signature::Signer;
        let sig: p384::ecdsa::Signature = self.key.sign(msg);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            CaKey::Rsa(k) => k.der_bytes(),
            CaKey::P256(k) => k.der_bytes(),
            CaKey::P384(k) => k.der_bytes(),
        }
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self {
            CaKey::Rsa(k) => k.algorithm(),
            CaKey::P256(k) => k.algorithm(),
            CaKey::P384(k) => k.algorithm(),
        }
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            CaKey::Rsa(k) => k.sign(msg),
            CaKey::P256(k) => k.sign(msg),
            CaKey::P384(k) => k.sign(msg),
        }
    }
}

/// PKCS#1 `RSAPrivateKey` -> PKCS#8 `PrivateKeyInfo` (ring signs only from PKCS#8).
fn rsa_pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    let rsa_oid = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend(der(0x30, &rsa_oid));
    body.extend(der(0x04, pkcs1));
    der(0x30, &body)
}

fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else { break };
        let label = after[..label_end].to_string();
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body_start.find(&end_marker) else { break };
        let b64: String = body_start[..end].chars().filter(|c| !c.is_whitespace()).collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push((label, der));
        }
        rest = &body_start[end + end_marker.len()..];
    }
    out
}

impl CaKey {
    /// Parse the CA key (PKCS#1 RSA, SEC1 EC or PKCS#8) and check that it belongs to
    /// the CA certificate. Errors never quote the key.
    pub fn from_pem(text: &str, ca: &CaCert) -> Result<CaKey, String> {
        let blocks = pem_blocks(text);
        let Some((label, der)) = blocks.iter().find(|(l, _)| l.ends_with("PRIVATE KEY")) else {
            return Err("no PRIVATE KEY block found".into());
        };
        let key = match label.as_str() {
            "RSA PRIVATE KEY" => rsa(&rsa_pkcs1_to_pkcs8(der))?,
            "EC PRIVATE KEY" => {
                if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
                    p256_key(&k)
                } else if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
                    p384_key(&k)
                } else {
                    return Err("EC keys must be on P-256 or P-384".into());
                }
            }
            "PRIVATE KEY" => {
                if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
                    p256_key(&k)
                } else if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
                    p384_key(&k)
                } else {
                    rsa(der)?
                }
            }
            other => return Err(format!("{other} keys are not supported (use RSA, or EC on P-256/P-384)")),
        };
        let spki = key.subject_public_key_info();
        let (_, cert) = x509_parser::parse_x509_certificate(&ca.der)
            .map_err(|_| "the CA certificate does not parse".to_string())?;
        if cert.public_key().raw != spki.as_slice() {
            return Err("the CA key does not belong to the CA certificate".into());
        }
        Ok(key)
    }
}

fn rsa(pkcs8: &[u8]) -> Result<CaKey, String> {
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.to_vec());
    KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
        .map(CaKey::Rsa)
        .map_err(|_| "the key is not a usable RSA private key".to_string())
}

fn p256_key(k: &p256::SecretKey) -> CaKey {
    CaKey::P256(p256_signing_key(k))
}

/// A P-256 key (a CA's, or a node's derived one) as an rcgen signing key.
pub(crate) fn p256_signing_key(k: &p256::SecretKey) -> EcKey<p256::ecdsa::SigningKey> {
    let public = k.public_key().to_sec1_bytes().to_vec();
    EcKey { key: p256::ecdsa::SigningKey::from(k), public, alg: &rcgen::PKCS_ECDSA_P256_SHA256 }
}

fn p384_key(k: &p384::SecretKey) -> CaKey {
    let public = k.public_key().to_sec1_bytes().to_vec();
    CaKey::P384(EcKey { key: p384::ecdsa::SigningKey::from(k), public, alg: &rcgen::PKCS_ECDSA_P384_SHA384 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs1_wrapping_matches_a_known_layout() {
        let wrapped = rsa_pkcs1_to_pkcs8(&[0x30, 0x00]);
        assert_eq!(wrapped[..5], [0x30, 0x16, 0x02, 0x01, 0x00]); // 3 + 15 + 4 content bytes
        assert_eq!(&wrapped[wrapped.len() - 4..], &[0x04, 0x02, 0x30, 0x00]);
        assert_eq!(der(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    }
}
