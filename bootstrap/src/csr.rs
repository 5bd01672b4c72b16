//! A PKCS#10 certificate request for a new ECDSA P-256 key made on the node (the
//! key never leaves it): the DER written by hand, as [`crate::certs`] reads it,
//! so the static agent needs no X.509 library. Only what a client certificate
//! request needs: a subject of one commonName, no attributes, no extensions.

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

/// id-ecPublicKey (1.2.840.10045.2.1), contents only.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (1.2.840.10045.3.1.7).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// ecdsa-with-SHA256 (1.2.840.10045.4.3.2).
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// commonName (2.5.4.3).
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

/// A new key (PKCS#8 PEM, `PRIVATE KEY`) and the request signed with it
/// (`CERTIFICATE REQUEST` PEM) for subject `CN=common_name`.
pub fn new_key_and_request(common_name: &str) -> Result<(String, String), String> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| "cannot generate an ECDSA P-256 key".to_string())?;
    let csr = request(pkcs8.as_ref(), common_name)?;
    Ok((pem("PRIVATE KEY", pkcs8.as_ref()), pem("CERTIFICATE REQUEST", &csr)))
}

/// The DER request for `CN=common_name`, signed with the PKCS#8 P-256 key.
pub fn request(pkcs8: &[u8], common_name: &str) -> Result<Vec<u8>, String> {
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
        .map_err(|e| format!("not a PKCS#8 ECDSA P-256 key: {e}"))?;
    let name = tlv(0x30, &tlv(0x31, &tlv(0x30, &[tlv(0x06, OID_CN), tlv(0x0c, common_name.as_bytes())].concat())));
    let alg = tlv(0x30, &[tlv(0x06, OID_EC_PUBLIC_KEY), tlv(0x06, OID_P256)].concat());
    let spki = tlv(0x30, &[alg, bit_string(key.public_key().as_ref())].concat());
    // version 0, subject, subjectPKInfo, attributes [0] (empty).
    let info = tlv(0x30, &[tlv(0x02, &[0]), name, spki, tlv(0xa0, &[])].concat());
    let sig = key.sign(&rng, &info).map_err(|_| "cannot sign the certificate request".to_string())?;
    let sig_alg = tlv(0x30, &tlv(0x06, OID_ECDSA_SHA256));
    Ok(tlv(0x30, &[info, sig_alg, bit_string(sig.as_ref())].concat()))
}

/// The public key (uncompressed point) of a PKCS#8 P-256 key.
pub fn public_key(pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &SystemRandom::new())
        .map_err(|e| format!("not a PKCS#8 ECDSA P-256 key: {e}"))?;
    Ok(key.public_key().as_ref().to_vec())
}

/// The PKCS#8 DER of a `PRIVATE KEY` PEM.
pub fn key_der(key_pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let body = key_pem.trim().strip_prefix("-----BEGIN PRIVATE KEY-----")?.strip_suffix("-----END PRIVATE KEY-----")?;
    let b64: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    tlv(0x03, &[&[0u8][..], bytes].concat())
}

/// One DER TLV (definite length, in long form from 128 bytes).
pub fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let len = contents.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// PEM with 64-column base64 lines.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request parses as PKCS#10 with `openssl req -verify` (its signature
    /// checks against its own key) and names exactly the subject asked for; the
    /// key's PEM reads back as the same key.
    #[test]
    fn openssl_verifies_the_request() {
        let (key, csr) = new_key_and_request("system:kube-proxy").unwrap();
        let dir = std::env::temp_dir().join(format!("mk8s-csr-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("r.pem"), &csr).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["req", "-verify", "-noout", "-subject", "-in"])
            .arg(dir.join("r.pem"))
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("subject=CN = system:kube-proxy") || text.contains("subject=CN=system:kube-proxy"),
            "{text}"
        );
        assert!(text.contains("verify OK") || text.contains("Certificate request self-signature verify OK"), "{text}");
        // The key's PEM reads back as the key whose public half the request holds.
        let public = public_key(&key_der(&key).unwrap()).unwrap();
        use base64::Engine as _;
        let b64: String = csr.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        assert!(der.windows(public.len()).any(|w| w == public.as_slice()), "the request holds another key");
        assert!(request(&key_der(&key).unwrap(), "system:kube-proxy").is_ok());
    }

    #[test]
    fn long_lengths_are_encoded_in_long_form() {
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    }
}
