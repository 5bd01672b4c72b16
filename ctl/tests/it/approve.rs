//! `mk8s-ctl approve` against the real kube-apiserver: serving-certificate and
//! kube-proxy client-certificate requests filed by nodes with their own client certificates (the cluster CA's,
//! as a kubelet's), decided by the real binary, read back from the API.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use mk8s_testkit::apiserver::Authz;

use crate::common::{rbac, run_with, Cluster};

const SERVING: &str = "kubernetes.io/kubelet-serving";
const CLIENT: &str = "kubernetes.io/kube-apiserver-client";
const KUBELET_USAGES: &[&str] = &["digital signature", "server auth"];
const PROXY_USAGES: &[&str] = &["digital signature", "key encipherment", "client auth"];

/// One request to file: who files it, and what it asks for.
struct Filing {
    name: &'static str,
    /// The node whose client certificate files it; `None`: the admin.
    by: Option<&'static str>,
    cn: &'static str,
    sans: &'static [&'static str],
    usages: &'static [&'static str],
    signer: &'static str,
}

/// A `kube-apiserver-client` request, without names, filed by node `by`.
const fn proxy(name: &'static str, by: &'static str, cn: &'static str, usages: &'static [&'static str]) -> Filing {
    Filing { name, by: Some(by), cn, sans: &[], usages, signer: CLIENT }
}

/// What the kubelet of a worker in the facts asks for, and each way to get it wrong.
const FILINGS: &[Filing] = &[
    Filing {
        name: "good",
        by: Some("worker-1"),
        cn: "system:node:worker-1",
        sans: &["worker-1", "10.0.0.11"],
        usages: KUBELET_USAGES,
        signer: SERVING,
    },
    Filing {
        name: "foreign-san",
        by: Some("worker-2"),
        cn: "system:node:worker-2",
        sans: &["worker-2", "10.0.0.99"],
        usages: KUBELET_USAGES,
        signer: SERVING,
    },
    Filing {
        name: "foreign-dns",
        by: Some("worker-2"),
        cn: "system:node:worker-2",
        sans: &["worker-2", "kubernetes.default"],
        usages: KUBELET_USAGES,
        signer: SERVING,
    },
    Filing {
        name: "unknown-node",
        by: Some("stranger"),
        cn: "system:node:stranger",
        sans: &["stranger", "10.0.0.11"],
        usages: KUBELET_USAGES,
        signer: SERVING,
    },
    Filing {
        name: "not-its-own",
        by: Some("worker-3"),
        cn: "system:node:worker-1",
        sans: &["worker-1", "10.0.0.11"],
        usages: KUBELET_USAGES,
        signer: SERVING,
    },
    Filing {
        name: "client-usages",
        by: Some("worker-1"),
        cn: "system:node:worker-1",
        sans: &["worker-1"],
        usages: &["digital signature", "server auth", "client auth"],
        signer: SERVING,
    },
    // What every kubelet before 1.27 asks for, whatever its key (kubernetes#111660).
    Filing {
        name: "old-kubelet",
        by: Some("worker-1"),
        cn: "system:node:worker-1",
        sans: &["10.0.0.11"],
        usages: &["key encipherment", "digital signature", "server auth"],
        signer: SERVING,
    },
    Filing {
        name: "no-server-auth",
        by: Some("worker-1"),
        cn: "system:node:worker-1",
        sans: &["worker-1"],
        usages: &["digital signature", "key encipherment"],
        signer: SERVING,
    },
    Filing {
        name: "by-admin",
        by: None,
        cn: "system:node:worker-1",
        sans: &["worker-1"],
        usages: KUBELET_USAGES,
        signer: SERVING,
    },
    Filing {
        name: "other-signer",
        by: Some("worker-1"),
        cn: "system:node:worker-1",
        sans: &[],
        usages: &["digital signature", "client auth"],
        signer: "kubernetes.io/kube-apiserver-client-kubelet",
    },
    // kube-proxy's client certificate, as `mk8s-bootstrap maintain` files it.
    proxy("proxy-good", "worker-1", "system:kube-proxy", PROXY_USAGES),
    // An organisation would be a group (`system:masters` the apiserver itself
    // refuses on create: the CertificateSubjectRestriction admission plugin).
    proxy("proxy-nodes-group", "worker-1", "system:kube-proxy", PROXY_USAGES),
    proxy("proxy-other-cn", "worker-2", "system:kube-controller-manager", PROXY_USAGES),
    proxy("proxy-unknown", "stranger", "system:kube-proxy", PROXY_USAGES),
    proxy("proxy-server-auth", "worker-1", "system:kube-proxy", &["digital signature", "client auth", "server auth"]),
];

/// (condition type, reason) each filing must end with; `None`: left pending.
fn expected(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "good" | "old-kubelet" => Some(("Approved", "WorkerServingCertificate")),
        "proxy-good" => Some(("Approved", "WorkerKubeProxyCertificate")),
        "proxy-nodes-group" | "proxy-other-cn" => Some(("Denied", "WrongSubject")),
        "proxy-unknown" => Some(("Denied", "UnknownNode")),
        "proxy-server-auth" => Some(("Denied", "WrongUsages")),
        "foreign-san" | "foreign-dns" => Some(("Denied", "ForeignSAN")),
        "unknown-node" => Some(("Denied", "UnknownNode")),
        "not-its-own" => Some(("Denied", "WrongSubject")),
        "client-usages" | "no-server-auth" => Some(("Denied", "WrongUsages")),
        _ => None,
    }
}

async fn file(c: &Cluster, f: &Filing) {
    let kubeconfig = match f.by {
        Some(node) => c.node_kubeconfig(node),
        None => c.admin.clone(),
    };
    let orgs: &[&str] = match f.name {
        "proxy-nodes-group" => &["system:nodes"],
        _ if f.cn.starts_with("system:node:") => &["system:nodes"],
        _ => &[],
    };
    let (pem, _key) = mk8s_testkit::pki::csr(f.cn, orgs, f.sans);
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta { name: Some(f.name.into()), ..Default::default() },
        spec: CertificateSigningRequestSpec {
            request: ByteString(pem.into_bytes()),
            signer_name: f.signer.into(),
            usages: Some(f.usages.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        status: None,
    };
    let api: Api<CertificateSigningRequest> = Api::all(Cluster::client(&kubeconfig).await);
    api.create(&PostParams::default(), &csr).await.unwrap_or_else(|e| panic!("{}: filing refused: {e}", f.name));
}

/// Every request's (condition type, reason), by name; pending ones absent.
async fn decisions(c: &Cluster) -> BTreeMap<String, (String, String, String)> {
    let api: Api<CertificateSigningRequest> = Api::all(Cluster::client(&c.admin).await);
    let mut out = BTreeMap::new();
    for csr in api.list(&Default::default()).await.unwrap() {
        let conds = csr.status.and_then(|s| s.conditions).unwrap_or_default();
        if let Some(cond) = conds.first() {
            let name = csr.metadata.name.unwrap();
            out.insert(
                name,
                (cond.type_.clone(), cond.reason.clone().unwrap_or_default(), cond.message.clone().unwrap_or_default()),
            );
        }
    }
    out
}

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// On AlwaysAllow and RBAC,Node: the worker's own requests (serving, and
/// kube-proxy's client certificate) are approved, every
/// other from a node denied with its reason, the admin's and another signer's
/// left pending; one audit line per decision; a second run changes nothing.
#[tokio::test]
async fn approves_only_what_the_facts_allow() {
    for authz in [Authz::AlwaysAllow, Authz::RbacNode] {
        let c = Cluster::start(authz, &[]);
        for f in FILINGS {
            file(&c, f).await;
        }
        let audit = c.dir().join("audit.jsonl");
        let audit_s = audit.to_str().unwrap();
        let facts = c.facts.to_str().unwrap();
        let (code, out, err) = c.run(&["approve", "--cluster", facts, "--once", "--audit", audit_s]);
        assert_eq!(code, 0, "{authz:?}: {out}\n{err}");
        let got = decisions(&c).await;
        for f in FILINGS {
            let want = expected(f.name);
            let have = got.get(f.name).map(|(t, r, _)| (t.as_str(), r.as_str()));
            assert_eq!(have, want, "{authz:?}: {}: {:?}\n{out}", f.name, got.get(f.name));
        }
        assert!(got["foreign-san"].2.contains("10.0.0.99"), "{authz:?}: the message names the foreign SAN: {got:?}");
        assert!(got["not-its-own"].2.contains("system:node:worker-3"), "{got:?}");
        // One JSON line per approval or denial; none for what was left alone.
        let lines = audit_lines(&audit);
        let decided: Vec<&Filing> = FILINGS.iter().filter(|f| expected(f.name).is_some()).collect();
        assert_eq!(lines.len(), decided.len(), "{authz:?}: {lines:#?}");
        for l in &lines {
            let name = l["csr"].as_str().unwrap();
            let (t, r) = expected(name).unwrap();
            assert_eq!(l["decision"], if t == "Approved" { "approve" } else { "deny" }, "{l}");
            assert_eq!(l["reason"], r, "{l}");
            let filing = FILINGS.iter().find(|f| f.name == name).unwrap();
            assert_eq!(l["signer"], filing.signer, "{l}");
            assert!(l["requester"].as_str().unwrap().starts_with("system:node:"), "{l}");
            assert!(!l["uid"].as_str().unwrap().is_empty() && !l["time"].as_str().unwrap().is_empty(), "{l}");
        }
        assert_eq!(lines.iter().find(|l| l["csr"] == "not-its-own").unwrap()["node"], "worker-3");
        assert!(out.contains("left alone by-admin from admin"), "{out}");
        assert!(!out.contains("other-signer"), "another signer's request is not even read: {out}");
        // Nothing pending is ours any more: a second run decides nothing.
        let (code, out2, err2) = c.run(&["approve", "--cluster", facts, "--audit", audit_s]);
        assert_eq!(code, 0, "{err2}");
        assert_eq!(audit_lines(&audit).len(), decided.len(), "{out2}");
        assert!(err2.contains("0 approved, 0 denied, 1 left alone"), "{err2}");
    }
}

/// `--dry-run` changes nothing (every request still pending, no audit log) and
/// says what it would do.
#[tokio::test]
async fn dry_run_changes_nothing() {
    let c = Cluster::start(Authz::RbacNode, &[]);
    for f in &FILINGS[..2] {
        file(&c, f).await;
    }
    let audit = c.dir().join("audit.jsonl");
    let (code, out, err) =
        c.run(&["approve", "--cluster", c.facts.to_str().unwrap(), "--dry-run", "--audit", audit.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("would approve good from system:node:worker-1"), "{out}");
    assert!(out.contains("would deny foreign-san from system:node:worker-2"), "{out}");
    assert!(decisions(&c).await.is_empty(), "a dry run decided something");
    assert!(!audit.exists(), "a dry run wrote the audit log");
}

/// Under RBAC, the approver needs exactly what docs/mk8s-ctl.md lists: with that
/// ClusterRole bound to its own identity it decides; without the signer's
/// `approve` verb the apiserver refuses the approval (exit 2).
#[tokio::test]
async fn the_documented_rbac_is_enough_and_needed() {
    let c = Cluster::start(Authz::RbacNode, &[]);
    file(&c, &FILINGS[0]).await;
    let who = c.cp.ca.client("mk8s-approver", &[]);
    let kubeconfig = c.kubeconfig_for("approver", &who);
    let facts = c.facts.to_str().unwrap();
    let audit = c.dir().join("audit.jsonl");
    let args = ["approve", "--cluster", facts, "--audit", audit.to_str().unwrap()];
    let (code, _, err) = run_with(&kubeconfig, &args);
    assert_eq!(code, 2, "no permissions at all: {err}");
    assert!(err.contains("cannot list CertificateSigningRequests"), "{err}");
    rbac::bind(&c, "mk8s-approver", &rbac::approver_rules(false)).await;
    let (code, _, err) = run_with(&kubeconfig, &args);
    assert_eq!(code, 2, "without `approve` on the signer: {err}");
    assert!(err.contains("not permitted to approve requests with signerName"), "{err}");
    rbac::bind(&c, "mk8s-approver", &rbac::approver_rules(true)).await;
    let (code, out, err) = run_with(&kubeconfig, &args);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(decisions(&c).await["good"].0, "Approved");
}

/// With the real kube-controller-manager, an approved request gets a certificate
/// for the names asked, signed by the cluster CA; `--watch` decides requests filed
/// after it started.
#[tokio::test]
async fn an_approved_request_is_signed_by_the_controller_manager() {
    let mut c = Cluster::start(Authz::RbacNode, &[]);
    c.cp.start_controller_manager();
    let audit = c.dir().join("audit.jsonl");
    let mut watcher = std::process::Command::new(crate::common::BIN)
        .arg("--kubeconfig")
        .arg(&c.admin)
        .args(["approve", "--cluster", c.facts.to_str().unwrap(), "--watch", "--audit", audit.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    file(&c, &FILINGS[0]).await;
    let api: Api<CertificateSigningRequest> = Api::all(Cluster::client(&c.admin).await);
    let end = Instant::now() + Duration::from_secs(60);
    let cert = loop {
        let csr = api.get("good").await.unwrap();
        if let Some(cert) = csr.status.and_then(|s| s.certificate) {
            break cert.0;
        }
        assert!(watcher.try_wait().unwrap().is_none(), "the watcher exited");
        assert!(Instant::now() < end, "no certificate issued\n{}", c.cp.controller_manager_log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = watcher.kill();
    let _ = watcher.wait();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&cert).unwrap();
    let x = pem.parse_x509().unwrap();
    // Go's pkix.Name writes O before CN (crypto/x509/pkix ToRDNSequence).
    assert_eq!(x.subject().to_string(), "O=system:nodes, CN=system:node:worker-1");
    let ca = x509_parser::pem::parse_x509_pem(c.cp.ca.cert_pem.as_bytes()).unwrap().1;
    x.verify_signature(Some(ca.parse_x509().unwrap().public_key())).expect("signed by the cluster CA");
    let san = x
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>();
    assert_eq!(san, ["DNSName(\"worker-1\")", "IPAddress([10, 0, 0, 11])"]);
    assert_eq!(audit_lines(&audit).len(), 1);
}
