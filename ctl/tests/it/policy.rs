//! The approval rules on requests the apiserver accepts but that the scenarios
//! against it do not file: made by the real `openssl req` (RSA keys, e-mail names,
//! extra subject attributes), decided in-process by `mk8s_ctl::policy::decide`.

use std::fs;
use std::process::Command;

use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::ByteString;
use mk8s_ctl::policy::{decide, Verdict};
use mk8s_testkit::facts::{FactsYaml, Worker};

fn facts() -> (tempfile::TempDir, mk8s_gen::model::Facts) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ca.crt"), mk8s_testkit::pki::Ca::new("c").cert_pem).unwrap();
    let yaml = FactsYaml::new("c")
        .channel("1.34/stable")
        .ca_file("ca.crt")
        .control_plane("cp-1", "10.0.0.2")
        .lb_builtin()
        .worker(Worker::new("worker-1").address("10.0.0.11"))
        .worker("no-address")
        .worker(Worker::new("worker-7").retired())
        .yaml();
    let facts = mk8s_gen::load(&yaml, dir.path()).valid("facts", &yaml).unwrap();
    (dir, facts)
}

/// `openssl req -new` with a new key (`rsa:2048` or `ec`), a subject and optionally
/// a subjectAltName.
fn openssl_csr(key: &str, subject: &str, san: Option<&str>) -> String {
    let mut c = Command::new(mk8s_testkit::tools::require("openssl"));
    c.args(["req", "-new", "-nodes", "-keyout", "/dev/null", "-subj", subject, "-newkey", key]);
    if key == "ec" {
        c.args(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    if let Some(san) = san {
        c.args(["-addext", &format!("subjectAltName={san}")]);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn csr(pem: &str, user: &str, groups: &[&str], usages: &[&str]) -> CertificateSigningRequest {
    csr_for("kubernetes.io/kubelet-serving", pem, user, groups, usages)
}

fn csr_for(signer: &str, pem: &str, user: &str, groups: &[&str], usages: &[&str]) -> CertificateSigningRequest {
    CertificateSigningRequest {
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem.as_bytes().to_vec()),
            signer_name: signer.into(),
            username: Some(user.into()),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        ..Default::default()
    }
}

const NODE: &str = "system:node:worker-1";
const BOTH: Option<&str> = Some("DNS:worker-1,IP:10.0.0.11");
const SUBJECT: &str = "/CN=system:node:worker-1/O=system:nodes";
const NODES: &[&str] = &["system:nodes", "system:authenticated"];
const SHORT: &[&str] = &["digital signature", "server auth"];
const LONG: &[&str] = &["digital signature", "key encipherment", "server auth"];

/// (what, key, subject, SAN, requester, groups, usages, verdict, reason).
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    Verdict,
    &'static str,
);

/// Each case's request decided as it says.
#[test]
fn every_rule_decides() {
    let (_dir, facts) = facts();
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("ECDSA, short usages", "ec", SUBJECT, BOTH, NODE, NODES, SHORT, Verdict::Approve, "WorkerServingCertificate"),
        ("RSA, with encipherment", "rsa:2048", SUBJECT, BOTH, NODE, NODES, LONG, Verdict::Approve, "WorkerServingCertificate"),
        ("RSA without encipherment", "rsa:2048", SUBJECT, BOTH, NODE, NODES, SHORT, Verdict::Deny, "WrongUsages"),
        ("a usage twice", "ec", SUBJECT, BOTH, NODE, NODES, &["digital signature", "server auth", "server auth"], Verdict::Deny, "WrongUsages"),
        ("an e-mail name", "ec", SUBJECT, Some("DNS:worker-1,email:a@example.com"), NODE, NODES, SHORT, Verdict::Deny, "ForeignSAN"),
        ("a URI name", "ec", SUBJECT, Some("IP:10.0.0.11,URI:spiffe://x/y"), NODE, NODES, SHORT, Verdict::Deny, "ForeignSAN"),
        ("no name", "ec", SUBJECT, None, NODE, NODES, SHORT, Verdict::Deny, "NoSAN"),
        ("an extra OU", "ec", "/CN=system:node:worker-1/O=system:nodes/OU=x", BOTH, NODE, NODES, SHORT, Verdict::Deny, "WrongSubject"),
        ("two organisations", "ec", "/CN=system:node:worker-1/O=system:nodes/O=system:masters", BOTH, NODE, NODES, SHORT, Verdict::Deny, "WrongSubject"),
        ("not in system:nodes", "ec", SUBJECT, BOTH, NODE, &["system:authenticated"], SHORT, Verdict::Deny, "NotInNodesGroup"),
        ("a worker without address, its IP", "ec", "/CN=system:node:no-address/O=system:nodes", Some("DNS:no-address,IP:10.0.0.20"), "system:node:no-address", NODES, SHORT, Verdict::Deny, "ForeignSAN"),
        ("a worker without address, DNS only", "ec", "/CN=system:node:no-address/O=system:nodes", Some("DNS:no-address"), "system:node:no-address", NODES, SHORT, Verdict::Approve, "WorkerServingCertificate"),
        ("an administrator", "ec", SUBJECT, BOTH, "admin", &["system:masters"], SHORT, Verdict::Ignore, "NotANode"),
    ];
    for (what, key, subject, san, user, groups, usages, verdict, reason) in cases {
        let d = decide(&csr(&openssl_csr(key, subject, *san), user, groups, usages), &facts);
        assert_eq!((&d.verdict, d.reason), (verdict, *reason), "{what}: {d:?}");
    }
}

/// What is not one PEM certificate request is denied, not a crash.
#[test]
fn garbage_is_denied() {
    let (_dir, facts) = facts();
    let good = openssl_csr("ec", SUBJECT, Some("DNS:worker-1"));
    let cert = mk8s_testkit::pki::Ca::new("x").cert_pem;
    for (what, pem) in [
        ("empty", String::new()),
        ("not PEM", "hello".to_string()),
        ("a certificate", cert),
        ("two requests", format!("{good}{good}")),
        ("truncated", good[..good.len() / 2].to_string()),
    ] {
        let d = decide(&csr(&pem, NODE, NODES, SHORT), &facts);
        assert_eq!((&d.verdict, d.reason), (&Verdict::Deny, "BadRequest"), "{what}: {d:?}");
    }
}

/// A retired worker's own, well-formed request is denied as retired, not as unknown.
#[test]
fn a_retired_workers_request_is_denied() {
    let (_dir, facts) = facts();
    let pem = openssl_csr("ec", "/CN=system:node:worker-7/O=system:nodes", Some("DNS:worker-7"));
    let d = decide(&csr(&pem, "system:node:worker-7", NODES, SHORT), &facts);
    assert_eq!((d.verdict, d.reason), (Verdict::Deny, "RetiredNode"));
    assert!(d.message.contains("worker-7 is retired") && d.message.contains("$.workers[2].retired"), "{}", d.message);
}

const PROXY: &str = "/CN=system:kube-proxy";
const CLIENT_USAGES: &[&str] = &["digital signature", "key encipherment", "client auth"];

/// kube-proxy's client-certificate requests (`kubernetes.io/kube-apiserver-client`):
/// a worker's own, exactly `CN=system:kube-proxy`, no names, client usages, is
/// approved; every way to widen it is denied, and a request not from a node is
/// left alone.
#[test]
fn kube_proxy_requests_decide() {
    let (_dir, facts) = facts();
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("ECDSA, client usages", "ec", PROXY, None, NODE, NODES, CLIENT_USAGES, Verdict::Approve, "WorkerKubeProxyCertificate"),
        ("RSA, client auth only", "rsa:2048", PROXY, None, NODE, NODES, &["client auth"], Verdict::Approve, "WorkerKubeProxyCertificate"),
        ("from a worker without address", "ec", PROXY, None, "system:node:no-address", NODES, CLIENT_USAGES, Verdict::Approve, "WorkerKubeProxyCertificate"),
        ("a foreign CN", "ec", "/CN=system:kube-controller-manager", None, NODE, NODES, CLIENT_USAGES, Verdict::Deny, "WrongSubject"),
        ("the node's own CN", "ec", "/CN=system:node:worker-1", None, NODE, NODES, CLIENT_USAGES, Verdict::Deny, "WrongSubject"),
        ("O=system:masters", "ec", "/CN=system:kube-proxy/O=system:masters", None, NODE, NODES, CLIENT_USAGES, Verdict::Deny, "WrongSubject"),
        ("an extra OU", "ec", "/CN=system:kube-proxy/OU=x", None, NODE, NODES, CLIENT_USAGES, Verdict::Deny, "WrongSubject"),
        ("two CNs", "ec", "/CN=system:kube-proxy/CN=admin", None, NODE, NODES, CLIENT_USAGES, Verdict::Deny, "WrongSubject"),
        ("a DNS name", "ec", PROXY, Some("DNS:worker-1"), NODE, NODES, CLIENT_USAGES, Verdict::Deny, "ForeignSAN"),
        ("an IP address", "ec", PROXY, Some("IP:10.0.0.11"), NODE, NODES, CLIENT_USAGES, Verdict::Deny, "ForeignSAN"),
        ("a URI", "ec", PROXY, Some("URI:spiffe://x/y"), NODE, NODES, CLIENT_USAGES, Verdict::Deny, "ForeignSAN"),
        ("server auth too", "ec", PROXY, None, NODE, NODES, &["digital signature", "client auth", "server auth"], Verdict::Deny, "WrongUsages"),
        ("no client auth", "ec", PROXY, None, NODE, NODES, &["digital signature", "key encipherment"], Verdict::Deny, "WrongUsages"),
        ("client auth twice", "ec", PROXY, None, NODE, NODES, &["client auth", "client auth"], Verdict::Deny, "WrongUsages"),
        ("a retired worker", "ec", PROXY, None, "system:node:worker-7", NODES, CLIENT_USAGES, Verdict::Deny, "RetiredNode"),
        ("an unknown node", "ec", PROXY, None, "system:node:stranger", NODES, CLIENT_USAGES, Verdict::Deny, "UnknownNode"),
        ("not in system:nodes", "ec", PROXY, None, NODE, &["system:authenticated"], CLIENT_USAGES, Verdict::Deny, "NotInNodesGroup"),
        ("an administrator", "ec", PROXY, None, "admin", &["system:masters"], CLIENT_USAGES, Verdict::Ignore, "NotANode"),
        ("a service account", "ec", PROXY, None, "system:serviceaccount:kube-system:x", &["system:serviceaccounts"], CLIENT_USAGES, Verdict::Ignore, "NotANode"),
    ];
    for (what, key, subject, san, user, groups, usages, verdict, reason) in cases {
        let pem = openssl_csr(key, subject, *san);
        let d = decide(&csr_for("kubernetes.io/kube-apiserver-client", &pem, user, groups, usages), &facts);
        assert_eq!((&d.verdict, d.reason), (verdict, *reason), "{what}: {d:?}");
    }
}

/// Garbage for the client signer is denied as for the serving one; another
/// signer's request from a node (the kubelet's own client signer, which the
/// controller-manager approves) is left alone.
#[test]
fn kube_proxy_garbage_is_denied_and_other_signers_left_alone() {
    let (_dir, facts) = facts();
    let d = decide(&csr_for("kubernetes.io/kube-apiserver-client", "hello", NODE, NODES, CLIENT_USAGES), &facts);
    assert_eq!((d.verdict, d.reason), (Verdict::Deny, "BadRequest"));
    let pem = openssl_csr("ec", "/CN=system:node:worker-1/O=system:nodes", None);
    let signer = "kubernetes.io/kube-apiserver-client-kubelet";
    let d = decide(&csr_for(signer, &pem, NODE, NODES, &["digital signature", "client auth"]), &facts);
    assert_eq!((d.verdict, d.reason), (Verdict::Ignore, "OtherSigner"));
}
