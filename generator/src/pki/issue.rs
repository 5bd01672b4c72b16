//! Client certificates for `auth: x509`, signed with the cluster CA key, and
//! reproducible byte for byte:
//! - node keys are ECDSA P-256, derived from the secrets seed, cluster, identity and
//!   node (HMAC-SHA256, counter on the rare out-of-range scalar);
//! - serial numbers are derived the same way;
//! - validity comes from the facts (`not-before`, `validity-days`), never the clock;
//! - signatures are deterministic: RSA PKCS#1 v1.5 (MicroK8s's CA is RSA 2048) is
//!   deterministic by construction, and ECDSA CAs sign per RFC 6979.

use p256::pkcs8::{EncodePrivateKey, LineEnding};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyUsagePurpose, SanType,
    SerialNumber,
};
use rustls_pki_types::CertificateDer;

use crate::pki::{CaCert, CaKey, Identity, NodeId, Validity};

/// Where node keys and serial numbers come from: a keyed derivation of the purpose,
/// cluster, identity and node with its epoch (the secrets' seed), so issuing again
/// gives the same bytes, and a new epoch new ones.
pub trait KeySeed {
    fn derive(&self, purpose: &str, cluster: &str, identity: Identity, node: NodeId<'_>, counter: u8) -> [u8; 32];
}

/// What every certificate of one cluster is issued with.
pub struct Signer<'a> {
    pub ca: &'a CaCert,
    pub key: &'a CaKey,
    pub seed: &'a dyn KeySeed,
    pub cluster: &'a str,
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
pub fn issue(signer: &Signer<'_>, identity: Identity, node: NodeId<'_>, v: Validity) -> Result<Issued, String> {
    sign(signer, identity, node, v, Usage::Client)
}

/// Issue the kubelet's first serving certificate for one node (seeded into the
/// kubelet's serving store, which it renews from: `auth::x509`): `CN=system:node:NAME`,
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
    signer: &Signer<'_>,
    node: NodeId<'_>,
    addresses: &[std::net::IpAddr],
    v: Validity,
) -> Result<Issued, String> {
    sign(signer, Identity::Kubelet, node, v, Usage::Serving { addresses })
}

fn sign(
    signer: &Signer<'_>,
    identity: Identity,
    id: NodeId<'_>,
    v: Validity,
    usage: Usage<'_>,
) -> Result<Issued, String> {
    let Signer { ca, key, seed, cluster } = *signer;
    let node = id.name;
    // Derivation purposes; the client ones are those of the first release, so client
    // certificates stay byte-identical.
    let (key_purpose, serial_purpose) = match usage {
        Usage::Client => ("key", "serial"),
        Usage::Serving { .. } => ("serving key", "serving serial"),
    };
    let mut counter = 0u8;
    let secret = loop {
        let bytes = seed.derive(key_purpose, cluster, identity, id, counter);
        if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
            break k;
        }
        counter += 1;
    };
    let node_key = crate::pki::key::p256_signing_key(&secret);
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
    params.not_before = v.not_before;
    params.not_after = params.not_before + time::Duration::days(i64::from(v.days)) + spread(signer, id, v);
    let mut serial = seed.derive(serial_purpose, cluster, identity, id, 0)[..16].to_vec();
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x01; // and never a leading zero byte
    params.serial_number = Some(SerialNumber::from(serial));
    params.use_authority_key_identifier_extension = true;

    let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(ca.der.clone()), key)
        .map_err(|e| format!("the CA certificate cannot issue: {e}"))?;
    let cert = params.signed_by(&node_key, &issuer).map_err(|e| format!("signing failed: {e}"))?;
    Ok(Issued { cert_pem: cert.pem(), key_pem })
}

/// How much later than `not-before + validity-days` this node's certificates
/// expire: up to a tenth of the validity, in whole hours, derived from the seed,
/// cluster and node with its epoch (the same for all of a node's certificates), so
/// a fleet's certificates never all expire in the same hour.
fn spread(signer: &Signer<'_>, node: NodeId<'_>, v: Validity) -> time::Duration {
    let hours = u64::from(v.days) * 24 / 10;
    let bytes = signer.seed.derive("validity spread", signer.cluster, Identity::Kubelet, node, 0);
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[..8]);
    time::Duration::hours((u64::from_be_bytes(n) % (hours + 1)) as i64)
}
