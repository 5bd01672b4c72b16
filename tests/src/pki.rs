//! Test PKI made with rcgen: a CA and leaves it signs, like MicroK8s's own
//! (an apiserver certificate with IP SANs, client certificates with CN/O).

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct Ca {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_pem: String,
    params: CertificateParams,
    key: KeyPair,
}

pub struct Leaf {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_pem: String,
    key_der: Vec<u8>,
}

impl Leaf {
    /// A leaf read back from PEM files (certificate, PKCS#8 or other private key).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Option<Leaf> {
        let cert_der = rustls_pemfile::certs(&mut cert_pem.as_bytes()).next()?.ok()?.to_vec();
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes()).ok()??;
        let key_der = key.secret_der().to_vec();
        Some(Leaf { cert_pem: cert_pem.to_string(), cert_der, key_pem: key_pem.to_string(), key_der })
    }
    pub fn rustls_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(self.cert_der.clone())]
    }
    pub fn rustls_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

impl Ca {
    pub fn new(common_name: &str) -> Ca {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca { cert_pem: cert.pem(), cert_der: cert.der().to_vec(), key_pem: key.serialize_pem(), params, key }
    }

    fn issue(&self, cn: &str, orgs: &[&str], sans: &[&str], eku: &[ExtendedKeyUsagePurpose]) -> Leaf {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        for o in orgs {
            dn.push(DnType::OrganizationName, *o);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*s).try_into().expect("dns name")),
            })
            .collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = eku.to_vec();
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("signed");
        Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }

    /// A serving certificate with a subject of our choosing (a kubelet's:
    /// CN=system:node:NAME, O=system:nodes).
    pub fn serving(&self, cn: &str, orgs: &[&str], sans: &[&str]) -> Leaf {
        self.issue(cn, orgs, sans, &[ExtendedKeyUsagePurpose::ServerAuth])
    }

    /// A server certificate for these IPs / DNS names (an apiserver's).
    pub fn server(&self, sans: &[&str]) -> Leaf {
        self.issue("kube-apiserver", &[], sans, &[ExtendedKeyUsagePurpose::ServerAuth])
    }

    /// A control-plane node's `server.crt` as MicroK8s makes it: server and client
    /// authentication (`extendedKeyUsage=serverAuth,clientAuth` in
    /// `microk8s-resources/certs/csr.conf.template`), because up to 1.27 the
    /// apiserver also presents it to kubelets (`--kubelet-client-certificate=
    /// ${SNAP_DATA}/certs/server.crt`), which verify it as a client certificate.
    pub fn server_and_client(&self, sans: &[&str]) -> Leaf {
        self.issue(
            "kube-apiserver",
            &[],
            sans,
            &[ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// A client certificate with this CN and organisations (user and groups).
    pub fn client(&self, cn: &str, orgs: &[&str]) -> Leaf {
        self.issue(cn, orgs, &[], &[ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// Sign a certificate signing request (PEM) as `openssl x509 -req -sha256 -CA
    /// ca.crt -CAkey ca.key -days DAYS` does: the request's subject as it is (no
    /// restriction), and no extensions but, with `copy_sans`, the request's
    /// subjectAltName (MicroK8s 1.28+ `sign_certificate`'s `-extfile`,
    /// 1.30:microk8s-resources/actions/common/utils.sh:L1127-1151). The signature
    /// on the request is checked (proof of possession), as openssl does.
    pub fn sign_csr(&self, csr_pem: &str, copy_sans: bool, days: i64) -> Result<String, String> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| e.to_string())?;
        let mut params = CertificateParams::default();
        params.distinguished_name = csr.params.distinguished_name.clone();
        if copy_sans {
            params.subject_alt_names = csr.params.subject_alt_names.clone();
        }
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + time::Duration::days(days);
        let signed = rcgen::CertificateSigningRequestParams { params, public_key: csr.public_key };
        let issuer = Issuer::from_params(&self.params, &self.key);
        signed.signed_by(&issuer).map(|c| c.pem()).map_err(|e| e.to_string())
    }

    pub fn rustls_root(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(self.cert_der.clone())).expect("root");
        roots
    }
}

/// `openssl x509 -sha256 -req -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650`
/// in `certs` (which holds `ca.crt` and `ca.key`), the CSR on stdin: how MicroK8s
/// 1.24-1.27's cluster-agent signs a joining worker's certificates
/// (canonical/microk8s-cluster-agent 1.24:pkg/snap/snap.go L315-330, 1.27 L352-367;
/// 1.23's `agent.py` L115-137 likewise). With no `-extfile` the certificate is
/// X.509 **v1**, as with the snap's OpenSSL 1.1.1 (`apps/x509.c` makes v3 only
/// with extensions) and Debian's OpenSSL 3.0.
pub fn openssl_x509_req(csr: &str, certs: &Path) -> Result<String, String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new(crate::tools::require("openssl"))
        .args(["x509", "-sha256", "-req", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "3650"])
        .current_dir(certs)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("openssl: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(csr.as_bytes()).map_err(|e| format!("openssl stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!("openssl failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

/// A new key and a certificate signing request for it (PEM, PEM): subject `cn`
/// and `orgs`, and with `sans` a subjectAltName (IP addresses and DNS names),
/// as `openssl req -new -sha256 -subj ... [-addext "subjectAltName = ..."]`
/// makes one (ECDSA P-256 here; MicroK8s generates RSA 2048 keys).
pub fn csr(cn: &str, orgs: &[&str], sans: &[&str]) -> (String, String) {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    params.distinguished_name = dn;
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*s).try_into().expect("dns name")),
        })
        .collect();
    let key = KeyPair::generate().expect("key");
    let req = params.serialize_request(&key).expect("csr");
    (req.pem().expect("csr pem"), key.serialize_pem())
}
