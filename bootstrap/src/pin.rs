//! The CA pin: `sha256:<hex>` over the certificate's DER SubjectPublicKeyInfo, the
//! form of kubeadm's `--discovery-token-ca-cert-hash`. A minimal DER walk keeps the
//! bootstrap free of a full X.509 parser.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// One DER TLV: (tag, header+content, content, what follows).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    let whole = input.get(..end)?;
    Some((tag, whole, &whole[hdr..], &input[end..]))
}

/// The DER SubjectPublicKeyInfo of a DER certificate.
pub fn spki(cert_der: &[u8]) -> Option<&[u8]> {
    let (0x30, _, cert, _) = tlv(cert_der)? else { return None };
    let (0x30, _, tbs, _) = tlv(cert)? else { return None };
    let mut rest = tbs;
    // [0] EXPLICIT version, optional.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.3;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = tlv(rest)?.3;
    }
    let (0x30, whole, _, _) = tlv(rest)? else { return None };
    Some(whole)
}

/// DER of the first CERTIFICATE block of a PEM text.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = pem[start..].find("-----END CERTIFICATE-----")? + start;
    let b64: String = pem[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// `sha256:<hex>` of a PEM certificate's public key, or None if it is not one.
pub fn pin_of_pem(pem: &str) -> Option<String> {
    let der = pem_to_der(pem)?;
    Some(format!("sha256:{}", hex::encode(Sha256::digest(spki(&der)?))))
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
