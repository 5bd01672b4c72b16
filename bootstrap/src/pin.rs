//! The CA pin and certificate checks, with the X.509 parser rustls already brings
//! (rustls-webpki): the pin is `sha256:<hex>` over the certificate's DER
//! SubjectPublicKeyInfo, the form of kubeadm's `--discovery-token-ca-cert-hash`.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};

/// DER of the first CERTIFICATE block of a PEM text.
pub fn pem_to_der(pem: &str) -> Option<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

/// The DER SubjectPublicKeyInfo (with its SEQUENCE header) of a DER certificate.
pub fn spki(cert_der: &[u8]) -> Option<Vec<u8>> {
    let der = CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der).ok()?;
    Some(cert.subject_public_key_info().as_ref().to_vec())
}

/// `sha256:<hex>` of a PEM certificate's public key, or None if it is not one.
pub fn pin_of_pem(pem: &str) -> Option<String> {
    let der = pem_to_der(pem)?;
    Some(format!("sha256:{}", hex::encode(Sha256::digest(spki(&der)?))))
}

/// Why a client certificate is not valid yet on this node's clock (an apiserver
/// answers 401 to it), or None when that is not the problem.
pub fn not_yet_valid(cert_pem: Option<&str>, ca_pem: &str) -> Option<String> {
    not_yet_valid_at(cert_pem?, ca_pem, UnixTime::now())
}

pub fn not_yet_valid_at(cert_pem: &str, ca_pem: &str, now: UnixTime) -> Option<String> {
    let (cert, ca) = (pem_to_der(cert_pem)?, pem_to_der(ca_pem)?);
    let anchor = webpki::anchor_from_trusted_cert(&ca).ok()?;
    let ee = webpki::EndEntityCert::try_from(&cert).ok()?;
    let usage = webpki::KeyUsage::client_auth();
    match ee.verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &[anchor], &[], now, usage, None, None) {
        Err(webpki::Error::CertNotValidYet { time, not_before }) => Some(format!(
            "the certificate is valid from {}, and this node's clock says {}",
            crate::clock::rfc3339(not_before.as_secs()),
            crate::clock::rfc3339(time.as_secs())
        )),
        _ => None,
    }
}

/// Whether a PEM certificate chains to the PEM CA (signature, validity now,
/// client auth or no extended key usage at all).
pub fn chains_to(cert_pem: &str, ca_pem: &str) -> bool {
    let (Some(cert), Some(ca)) = (pem_to_der(cert_pem), pem_to_der(ca_pem)) else {
        return false;
    };
    let (Ok(anchor), Ok(ee)) = (webpki::anchor_from_trusted_cert(&ca), webpki::EndEntityCert::try_from(&cert)) else {
        return false;
    };
    let usage = webpki::KeyUsage::client_auth();
    ee.verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &[anchor], &[], UnixTime::now(), usage, None, None).is_ok()
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
    }
}
