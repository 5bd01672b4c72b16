//! The kubelet's serving store as the join seeds it (`mk8s_bootstrap::store`):
//! laid out as client-go's `certificate_store.go` reads and renews it, never
//! replacing a certificate the kubelet renewed.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use mk8s_bootstrap::certs::Cert;
use mk8s_bootstrap::node::Node;
use mk8s_bootstrap::plan::ServingPair;
use mk8s_bootstrap::store::{self, SERVING};

const DIR: &str = "/var/snap/microk8s/common/var/lib/kubelet/pki";

/// A serving pair of the cluster CA, `days` long.
fn pair(ca: &mk8s_testkit::pki::Ca, days: i64) -> ServingPair {
    let (csr, key_pem) = mk8s_testkit::pki::csr("system:node:worker-1", &["system:nodes"], &["worker-1"]);
    ServingPair { cert_pem: ca.sign_csr(&csr, true, days).unwrap(), key_pem }
}

fn current(root: &std::path::Path) -> String {
    fs::read_to_string(root.join(DIR.trim_start_matches('/')).join("kubelet-server-current.pem")).unwrap()
}

#[test]
fn the_first_pair_is_seeded_as_the_kubelet_lays_out_its_store() {
    let tmp = tempfile::tempdir().unwrap();
    let n = Node::under(tmp.path());
    let ca = mk8s_testkit::pki::Ca::new("ca");
    let first = pair(&ca, 1);
    assert!(store::seed(&n, DIR, SERVING, &first).unwrap());
    let dir = tmp.path().join(DIR.trim_start_matches('/'));
    let link = dir.join("kubelet-server-current.pem");
    let target = fs::read_link(&link).expect("-current.pem is a symlink (the kubelet's renewal needs one)");
    let name = target.to_str().unwrap();
    assert!(target.is_relative(), "{name}");
    // kubelet-server-YYYY-MM-DD-HH-MM-SS.pem, from the certificate's notBefore.
    let stamp = name.strip_prefix("kubelet-server-").and_then(|s| s.strip_suffix(".pem")).unwrap();
    assert_eq!(stamp.len(), 19, "{name}");
    assert!(stamp.bytes().all(|b| b.is_ascii_digit() || b == b'-'), "{name}");
    assert_eq!(fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777, 0o600);
    // One file: the certificate, then the key.
    let text = current(tmp.path());
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
    assert!(text.trim_end().ends_with(first.key_pem.trim_end()), "the key follows the certificate");
    assert!(!dir.join("kubelet-server-updated.pem").exists());
    // A rerun changes nothing.
    assert!(!store::seed(&n, DIR, SERVING, &first).unwrap());
    assert_eq!(current(tmp.path()), text);
}

/// What the kubelet renewed stays; a pair that ends later (a re-provisioned node)
/// replaces one that ends earlier.
#[test]
fn a_renewed_pair_is_never_replaced_by_an_older_one() {
    let tmp = tempfile::tempdir().unwrap();
    let n = Node::under(tmp.path());
    let ca = mk8s_testkit::pki::Ca::new("ca");
    let (short, long) = (pair(&ca, 1), pair(&ca, 365));
    let dir = tmp.path().join(DIR.trim_start_matches('/'));
    // The kubelet's own renewal: a timestamped file and an absolute link.
    fs::create_dir_all(&dir).unwrap();
    let renewed = dir.join("kubelet-server-2030-01-01-00-00-00.pem");
    fs::write(&renewed, format!("{}{}", long.cert_pem, long.key_pem)).unwrap();
    std::os::unix::fs::symlink(&renewed, dir.join("kubelet-server-current.pem")).unwrap();
    assert!(!store::seed(&n, DIR, SERVING, &short).unwrap());
    assert_eq!(fs::read_link(dir.join("kubelet-server-current.pem")).unwrap(), renewed);

    let tmp = tempfile::tempdir().unwrap();
    let n = Node::under(tmp.path());
    assert!(store::seed(&n, DIR, SERVING, &short).unwrap());
    assert!(store::seed(&n, DIR, SERVING, &long).unwrap());
    let held = Cert::from_pem(&current(tmp.path())).unwrap();
    assert_eq!(held.tbs, Cert::from_pem(&long.cert_pem).unwrap().tbs);
}

#[test]
fn a_pair_that_is_no_certificate_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = ServingPair { cert_pem: "not a certificate".into(), key_pem: String::new() };
    let e = store::seed(&Node::under(tmp.path()), DIR, SERVING, &bad).unwrap_err();
    assert!(e.to_string().contains("not a PEM certificate"), "{e}");
    assert!(!tmp.path().join(DIR.trim_start_matches('/')).exists());
}
