//! The CA pin and certificate checks. The pin is `sha256:<hex>` over the
//! certificate's DER SubjectPublicKeyInfo, the form of kubeadm's
//! `--discovery-token-ca-cert-hash`.
//!
//! Certificates are read with a small DER reader over `untrusted` (already in the
//! tree through ring and webpki), and signatures are checked with webpki's
//! algorithms. webpki's own certificate parser accepts only X.509 v3, but the
//! certificates MicroK8s 1.23-1.27 control planes sign for a joining worker are
//! **v1**: `openssl x509 -req` without `-extfile` (canonical/microk8s
//! 1.23:scripts/cluster/agent.py L115-137; canonical/microk8s-cluster-agent
//! 1.24:pkg/snap/snap.go L315-330, 1.27 L352-367). A certificate parser crate would
//! add its weight to the static agent that travels in user-data; this reads the
//! seven fields we need.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use untrusted::{Input, Reader};

/// DER of the first CERTIFICATE block of a PEM text.
pub fn pem_to_der(pem: &str) -> Option<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

/// The fields of an X.509 certificate (v1, v2 or v3) that the agent reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// The DER of `tbsCertificate`, tag and length included: what is signed.
    pub tbs: Vec<u8>,
    /// 1 for v1, 3 for v3.
    pub version: u8,
    /// The contents of the outer `signatureAlgorithm` AlgorithmIdentifier.
    pub sig_alg: Vec<u8>,
    pub signature: Vec<u8>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// The subject's commonName and organizationName values, in order.
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
    /// The DER SubjectPublicKeyInfo, tag and length included.
    pub spki: Vec<u8>,
}

#[derive(Debug)]
struct Bad;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

/// One TLV: its tag and its contents. Definite lengths up to 4 bytes, as DER.
fn tlv<'a>(r: &mut Reader<'a>) -> Result<(u8, Input<'a>), Bad> {
    let tag = r.read_byte().map_err(|_| Bad)?;
    let first = r.read_byte().map_err(|_| Bad)?;
    let len = match first {
        n if n < 0x80 => usize::from(n),
        0x81..=0x84 => {
            let mut len = 0usize;
            for _ in 0..(first & 0x7f) {
                len = (len << 8) | usize::from(r.read_byte().map_err(|_| Bad)?);
            }
            len
        }
        _ => return Err(Bad),
    };
    Ok((tag, r.read_bytes(len).map_err(|_| Bad)?))
}

fn expect<'a>(r: &mut Reader<'a>, want: u8) -> Result<Input<'a>, Bad> {
    match tlv(r)? {
        (tag, v) if tag == want => Ok(v),
        _ => Err(Bad),
    }
}

/// A TLV of the given tag, with its tag and length.
fn whole<'a>(r: &mut Reader<'a>, want: u8) -> Result<Input<'a>, Bad> {
    r.read_partial(|r| expect(r, want).map(|_| ())).map(|(raw, ())| raw)
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to Unix seconds.
fn time(r: &mut Reader<'_>) -> Result<i64, Bad> {
    let (tag, v) = tlv(r)?;
    let s = std::str::from_utf8(v.as_slice_less_safe()).map_err(|_| Bad)?;
    let (year, rest) = match (tag, s.len()) {
        (0x17, 13) => {
            let yy: i64 = s[..2].parse().map_err(|_| Bad)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        (0x18, 15) => (s[..4].parse().map_err(|_| Bad)?, &s[4..]),
        _ => return Err(Bad),
    };
    if !rest.ends_with('Z') || !rest[..10].bytes().all(|b| b.is_ascii_digit()) {
        return Err(Bad);
    }
    let n = |i: usize| rest[i..i + 2].parse::<i64>().map_err(|_| Bad);
    let rfc = format!("{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    crate::clock::unix_of_rfc3339(&rfc).and_then(|u| i64::try_from(u).ok()).ok_or(Bad)
}

/// commonName and organizationName values of a Name.
fn names(name: Input<'_>) -> Result<(Option<String>, Vec<String>), Bad> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    let (mut cn, mut orgs) = (None, Vec::new());
    name.read_all(Bad, |r| {
        while !r.at_end() {
            expect(r, SET)?.read_all(Bad, |set| {
                while !set.at_end() {
                    expect(set, SEQUENCE)?.read_all(Bad, |atv| {
                        let oid = expect(atv, 0x06)?;
                        let (_, value) = tlv(atv)?;
                        let text = String::from_utf8_lossy(value.as_slice_less_safe()).into_owned();
                        match oid.as_slice_less_safe() {
                            CN => cn = Some(text),
                            O => orgs.push(text),
                            _ => {}
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
        }
        Ok(())
    })?;
    Ok((cn, orgs))
}

impl Cert {
    pub fn from_der(der: &[u8]) -> Option<Cert> {
        Input::from(der).read_all(Bad, Cert::read).ok()
    }

    pub fn from_pem(pem: &str) -> Option<Cert> {
        Cert::from_der(pem_to_der(pem)?.as_ref())
    }

    fn read(r: &mut Reader<'_>) -> Result<Cert, Bad> {
        expect(r, SEQUENCE)?.read_all(Bad, |cert| {
            let tbs_raw = whole(cert, SEQUENCE)?;
            let sig_alg = expect(cert, SEQUENCE)?;
            let bits = expect(cert, 0x03)?.as_slice_less_safe();
            let signature = match bits.split_first() {
                Some((0, s)) => s.to_vec(),
                _ => return Err(Bad),
            };
            let mut out = tbs_raw.read_all(Bad, |t| expect(t, SEQUENCE)?.read_all(Bad, Cert::read_tbs))?;
            out.tbs = tbs_raw.as_slice_less_safe().to_vec();
            out.sig_alg = sig_alg.as_slice_less_safe().to_vec();
            out.signature = signature;
            Ok(out)
        })
    }

    fn read_tbs(t: &mut Reader<'_>) -> Result<Cert, Bad> {
        let mut version = 1;
        if t.peek(0xa0) {
            let v = expect(t, 0xa0)?.read_all(Bad, |v| expect(v, 0x02))?;
            version = match v.as_slice_less_safe() {
                [n @ 0..=2] => n + 1,
                _ => return Err(Bad),
            };
        }
        expect(t, 0x02)?; // serialNumber
        expect(t, SEQUENCE)?; // signature
        expect(t, SEQUENCE)?; // issuer
        let (not_before, not_after) = expect(t, SEQUENCE)?.read_all(Bad, |v| Ok((time(v)?, time(v)?)))?;
        let (common_name, organizations) = names(expect(t, SEQUENCE)?)?;
        let spki = whole(t, SEQUENCE)?.as_slice_less_safe().to_vec();
        t.skip_to_end(); // issuerUniqueID, subjectUniqueID, extensions
        Ok(Cert {
            tbs: Vec::new(),
            version,
            sig_alg: Vec::new(),
            signature: Vec::new(),
            not_before,
            not_after,
            common_name,
            organizations,
            spki,
        })
    }

    /// Whether `issuer` signed this certificate (webpki's algorithms, matched by
    /// their AlgorithmIdentifiers).
    pub fn signed_by(&self, issuer: &Cert) -> bool {
        let Ok((key_alg, key)) = Input::from(&issuer.spki).read_all(Bad, |r| {
            expect(r, SEQUENCE)?.read_all(Bad, |s| {
                let alg = expect(s, SEQUENCE)?;
                match expect(s, 0x03)?.as_slice_less_safe().split_first() {
                    Some((0, key)) => Ok((alg.as_slice_less_safe(), key)),
                    _ => Err(Bad),
                }
            })
        }) else {
            return false;
        };
        webpki::ALL_VERIFICATION_ALGS.iter().any(|alg| {
            alg.public_key_alg_id().as_ref() == key_alg
                && alg.signature_alg_id().as_ref() == self.sig_alg.as_slice()
                && alg.verify_signature(key, &self.tbs, &self.signature).is_ok()
        })
    }
}

/// The DER SubjectPublicKeyInfo (with its SEQUENCE header) of a DER certificate.
pub fn spki(cert_der: &[u8]) -> Option<Vec<u8>> {
    Some(Cert::from_der(cert_der)?.spki)
}

/// `sha256:<hex>` of a PEM certificate's public key, or None if it is not one.
pub fn pin_of_pem(pem: &str) -> Option<String> {
    let der = pem_to_der(pem)?;
    Some(format!("sha256:{}", hex::encode(Sha256::digest(spki(&der)?))))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Why a client certificate is outside its validity on this node's clock (an
/// apiserver answers 401 to it then), or None when that is not the problem.
#[derive(Debug, PartialEq, Eq)]
pub enum OutsideValidity {
    /// Valid from a moment this node's clock has not reached: the clock is behind.
    NotYet(String),
    /// Its `notAfter` has passed: the certificate needs reissuing (or the clock is
    /// ahead).
    Ended(String),
}

pub fn outside_validity(cert_pem: Option<&str>, ca_pem: &str) -> Option<OutsideValidity> {
    outside_validity_at(cert_pem?, ca_pem, now())
}

pub fn outside_validity_at(cert_pem: &str, ca_pem: &str, now: i64) -> Option<OutsideValidity> {
    let (cert, ca) = (Cert::from_pem(cert_pem)?, Cert::from_pem(ca_pem)?);
    if !cert.signed_by(&ca) {
        return None;
    }
    let rfc = |t: i64| crate::clock::rfc3339(u64::try_from(t).unwrap_or(0));
    if now < cert.not_before {
        let why =
            format!("the certificate is valid from {}, and this node's clock says {}", rfc(cert.not_before), rfc(now));
        Some(OutsideValidity::NotYet(why))
    } else if now > cert.not_after {
        let why = format!("the certificate ended at {}, and this node's clock says {}", rfc(cert.not_after), rfc(now));
        Some(OutsideValidity::Ended(why))
    } else {
        None
    }
}

/// Whether a PEM certificate, of any X.509 version, is signed by the PEM CA and
/// valid now.
pub fn chains_to(cert_pem: &str, ca_pem: &str) -> bool {
    chains_to_at(cert_pem, ca_pem, now())
}

pub fn chains_to_at(cert_pem: &str, ca_pem: &str, now: i64) -> bool {
    match (Cert::from_pem(cert_pem), Cert::from_pem(ca_pem)) {
        (Some(cert), Some(ca)) => cert.signed_by(&ca) && (cert.not_before..=cert.not_after).contains(&now),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original method's MicroK8s CA; its pin was computed with
    /// `openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum`.
    #[test]
    fn matches_openssl_for_the_seed_ca() {
        let pem = include_str!("../../fixtures/seed/ca.crt");
        assert_eq!(pin_of_pem(pem).unwrap(), "sha256:5e9adc5c2dca7d93cdc3e82c3545a5b0d53c065ff567202d851cd06ed656192e");
    }

    #[test]
    fn garbage_has_no_pin() {
        assert_eq!(pin_of_pem("nothing"), None);
        assert_eq!(pin_of_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), None);
        assert_eq!(spki(&[0x30, 0x82, 0xff]), None);
        assert_eq!(spki(&[0x30, 0x85, 0, 0, 0, 0, 1]), None);
        assert_eq!(spki(&[]), None);
    }

    /// `openssl x509 -sha256 -req -CA ca.crt -CAkey ca.key -days 3650` with OpenSSL
    /// 3.0 and no `-extfile`, as a 1.24-1.27 cluster-agent signs a worker's kubelet
    /// certificate (`fixtures/x509-v1/README`).
    #[test]
    fn reads_and_verifies_a_v1_certificate_as_microk8s_1_27_signs_it() {
        let ca = include_str!("../../fixtures/x509-v1/ca.crt");
        let leaf = include_str!("../../fixtures/x509-v1/kubelet.crt");
        let c = Cert::from_pem(leaf).expect("a v1 certificate parses");
        assert_eq!(c.version, 1);
        assert_eq!(c.common_name.as_deref(), Some("system:node:worker-1"));
        assert_eq!(c.organizations, vec!["system:nodes".to_string()]);
        assert_eq!(c.not_after - c.not_before, 3650 * 86_400);
        let ca_cert = Cert::from_pem(ca).unwrap();
        assert_eq!(ca_cert.version, 3);
        assert!(c.signed_by(&ca_cert));
        assert!(chains_to_at(leaf, ca, c.not_before + 10));
        assert!(!chains_to_at(leaf, ca, c.not_after + 1), "expired");
        assert!(!chains_to_at(leaf, include_str!("../../fixtures/seed/ca.crt"), c.not_before + 10), "another CA");
        assert!(matches!(outside_validity_at(leaf, ca, c.not_before - 5), Some(OutsideValidity::NotYet(_))));
        assert_eq!(outside_validity_at(leaf, ca, c.not_before + 5), None);
        assert_eq!(outside_validity_at(leaf, ca, c.not_after), None);
        let ended = outside_validity_at(leaf, ca, c.not_after + 1);
        assert!(matches!(ended, Some(OutsideValidity::Ended(ref w)) if w.contains("ended at")), "{ended:?}");
        let other = include_str!("../../fixtures/seed/ca.crt");
        assert_eq!(outside_validity_at(leaf, other, c.not_after + 1), None, "another CA's: not about time");
        // One flipped bit in what is signed breaks the signature.
        let mut forged = c.clone();
        let last = forged.tbs.len() - 1;
        forged.tbs[last] ^= 1;
        assert!(!forged.signed_by(&ca_cert));
    }
}
