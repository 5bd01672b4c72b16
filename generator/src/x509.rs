//! Client certificates for `auth: x509`, signed with the cluster CA key, and
//! reproducible byte for byte:
//! - node keys are ECDSA P-256, derived from the secrets seed, cluster, identity and
//!   node (HMAC-SHA256, counter on the rare out-of-range scalar);
//! - serial numbers are derived the same way;
//! - validity comes from the facts (`not-before`, `validity-days`), never the clock;
//! - signatures are deterministic: RSA PKCS#1 v1.5 (MicroK8s's CA is RSA 2048) is
//!   deterministic by construction, and ECDSA CAs sign per RFC 6979.

use base64::Engine as _;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber, SignatureAlgorithm, SigningKey,
};
use rustls_pki_types::CertificateDer;

use crate::ca::CaCert;
use crate::secrets::{Identity, Secrets};

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

fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
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
    let public = k.public_key().to_sec1_bytes().to_vec();
    CaKey::P256(EcKey { key: p256::ecdsa::SigningKey::from(k), public, alg: &rcgen::PKCS_ECDSA_P256_SHA256 })
}

fn p384_key(k: &p384::SecretKey) -> CaKey {
    let public = k.public_key().to_sec1_bytes().to_vec();
    CaKey::P384(EcKey { key: p384::ecdsa::SigningKey::from(k), public, alg: &rcgen::PKCS_ECDSA_P384_SHA384 })
}

/// Validity of issued certificates, from the facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// (year, month, day), midnight UTC.
    pub not_before: (i32, u8, u8),
    pub days: u32,
}

/// A client certificate and its key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn subject(identity: Identity, node: &str) -> (String, Option<&'static str>) {
    match identity {
        Identity::Kubelet => (format!("system:node:{node}"), Some("system:nodes")),
        Identity::KubeProxy => ("system:kube-proxy".into(), None),
    }
}

/// What a certificate is for.
enum Usage<'a> {
    /// A client certificate of one identity (kubelet or kube-proxy).
    Client,
    /// The kubelet's serving certificate: its node name and addresses as SANs.
    Serving { addresses: &'a [std::net::IpAddr] },
}

/// Issue the client certificate of one identity on one node.
pub fn issue(
    ca: &CaCert,
    key: &CaKey,
    secrets: &Secrets,
    cluster: &str,
    identity: Identity,
    node: &str,
    v: Validity,
) -> Result<Issued, String> {
    sign(ca, key, secrets, cluster, identity, node, v, Usage::Client)
}

/// Issue the kubelet's serving certificate for one node (`certs/kubelet.crt`, which
/// the kubelet serves from `--cert-dir=${SNAP_DATA}/certs`): `CN=system:node:NAME`,
/// `O=system:nodes`, extended key usage server auth, SANs the node name and every
/// address given. Its key and serial are derived apart from the client
/// certificate's (another purpose in the derivation).
///
/// Why: a fresh MicroK8s 1.28+ apiserver runs
/// `--kubelet-certificate-authority=${SNAP_DATA}/certs/ca.crt` (canonical/microk8s
/// 1.28+ `microk8s-resources/default-args/kube-apiserver`, commit 0071dd1d) and dials
/// the kubelet by InternalIP first (`--kubelet-preferred-address-types`, 4086f4ac);
/// its own install hook signs `certs/kubelet.crt` with the node's CA
/// (`create_user_certificates`, `microk8s-resources/actions/common/utils.sh`), which
/// on a worker is not the cluster CA.
pub fn issue_serving(
    ca: &CaCert,
    key: &CaKey,
    secrets: &Secrets,
    cluster: &str,
    node: &str,
    addresses: &[std::net::IpAddr],
    v: Validity,
) -> Result<Issued, String> {
    sign(ca, key, secrets, cluster, Identity::Kubelet, node, v, Usage::Serving { addresses })
}

#[allow(clippy::too_many_arguments)]
fn sign(
    ca: &CaCert,
    key: &CaKey,
    secrets: &Secrets,
    cluster: &str,
    identity: Identity,
    node: &str,
    v: Validity,
    usage: Usage<'_>,
) -> Result<Issued, String> {
    // Derivation purposes; the client ones are those of the first release, so client
    // certificates stay byte-identical.
    let (key_purpose, serial_purpose) = match usage {
        Usage::Client => ("key", "serial"),
        Usage::Serving { .. } => ("serving key", "serving serial"),
    };
    // The node's key, derived from the seed.
    let mut counter = 0u8;
    let secret = loop {
        let bytes = secrets.derive(key_purpose, cluster, identity, node, counter);
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            break k;
        }
        counter += 1;
    };
    let node_key = match p256_key(&secret) {
        CaKey::P256(k) => k,
        _ => unreachable!(),
    };
    let key_pem = secret.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?.to_string();

    let (cn, org) = subject(identity, node);
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    match usage {
        Usage::Client => params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Serving { addresses } => {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let dns = rcgen::string::Ia5String::try_from(node)
                .map_err(|e| format!("node name {node:?} as a DNS SAN: {e}"))?;
            params.subject_alt_names = std::iter::once(SanType::DnsName(dns))
                .chain(addresses.iter().map(|ip| SanType::IpAddress(*ip)))
                .collect();
        }
    }
    let (y, m, d) = v.not_before;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = params.not_before + time::Duration::days(i64::from(v.days));
    let mut serial = secrets.derive(serial_purpose, cluster, identity, node, 0)[..16].to_vec();
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x01; // and never a leading zero byte
    params.serial_number = Some(SerialNumber::from(serial));
    params.use_authority_key_identifier_extension = true;

    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca.der.clone()), key)
        .map_err(|e| format!("the CA certificate cannot issue: {e}"))?;
    let cert = params.signed_by(&node_key, &issuer).map_err(|e| format!("signing failed: {e}"))?;
    Ok(Issued { cert_pem: cert.pem(), key_pem })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs1_wrapping_matches_a_known_layout() {
        let wrapped = rsa_pkcs1_to_pkcs8(&[0x30, 0x00]);
        assert_eq!(wrapped[..5], [0x30, 0x16, 0x02, 0x01, 0x00]); // 3 + 15 + 4 content bytes
        assert_eq!(&wrapped[wrapped.len() - 4..], &[0x04, 0x02, 0x30, 0x00]);
        let mut long = Vec::new();
        der_len(300, &mut long);
        assert_eq!(long, vec![0x82, 0x01, 0x2c]);
    }
}
