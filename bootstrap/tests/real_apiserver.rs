//! The other side is real: the bootstrap's apiserver client, and the simulated
//! apiserver the other scenarios use, against the real kube-apiserver (built from
//! its Go module by `scripts/build-upstream`, started with MicroK8s's default args
//! for the version, `mk8s_testkit::upstream`), on MicroK8s's default
//! `AlwaysAllow` and on `RBAC,Node`.

use std::sync::Arc;

use mk8s_bootstrap::api::{Api, NodeState};
use mk8s_bootstrap::plan::Credential;
use mk8s_bootstrap::retry::Failure;
use mk8s_testkit::apiserver::{Authz, SimApiserver};
use mk8s_testkit::pki::{Ca, Leaf};
use mk8s_testkit::upstream::{ControlPlane, Options};

const KUBELET: &str = "0123456789abcdef0123456789abcdef";
const PROXY: &str = "fedcba9876543210fedcba9876543210";
const ADMIN: &str = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0";

fn known_tokens() -> String {
    format!(
        "{ADMIN},admin,admin,\"system:masters\"\n{KUBELET},system:node:worker-1,kubelet-worker-1,\"system:nodes\"\n\
         {PROXY},system:kube-proxy,kube-proxy\n"
    )
}

/// One real apiserver with MicroK8s 1.26's default args (it reads
/// `known_tokens.csv`), `authz` as given.
fn control_plane(authz: Authz) -> ControlPlane {
    let mut o = Options::new(26, authz);
    o.ips.truncate(1);
    o.known_tokens = known_tokens();
    ControlPlane::start(o)
}

fn url(cp: &ControlPlane) -> String {
    format!("https://{}", cp.apiservers[0].addr)
}

fn token(t: &str) -> Credential {
    Credential::Token { token: t.into() }
}

fn cert(leaf: &Leaf) -> Credential {
    Credential::ClientCertificate { cert_pem: leaf.cert_pem.clone(), key_pem: leaf.key_pem.clone() }
}

/// A kubelet certificate for worker-1 as a MicroK8s 1.24-1.27 control plane signs
/// it on a worker join: `openssl x509 -req`, X.509 v1.
fn v1_kubelet_cert(cp: &ControlPlane) -> Leaf {
    let (csr, key) = mk8s_testkit::pki::csr("system:node:worker-1", &["system:nodes"], &[]);
    let pem = mk8s_testkit::pki::openssl_x509_req(&csr, &cp.apiservers[0].snap_data.join("certs")).unwrap();
    let der = mk8s_bootstrap::pin::pem_to_der(&pem).unwrap();
    assert_eq!(mk8s_bootstrap::pin::Cert::from_der(&der).unwrap().version, 1);
    Leaf::from_pem(&pem, &key).unwrap()
}

fn api(cp: &ControlPlane, cred: &Credential, who: &'static str) -> Api {
    Api::for_node(&cp.ca.cert_pem, "worker-1", &url(cp), cred, who).unwrap()
}

fn anonymous_readyz(cp: &ControlPlane) -> u16 {
    mk8s_testkit::tls::https_get(cp.apiservers[0].addr, "/readyz", Some(&cp.ca), None).unwrap().status
}

/// G1: on MicroK8s's default AlwaysAllow, kube-apiserver refuses an anonymous
/// `/readyz` (401); the bootstrap's readiness check authenticates, so it passes
/// there and on RBAC,Node, and a 401 is about the credential it sent.
#[test]
fn readiness_authenticates_on_always_allow_and_rbac() {
    for (authz, anonymous) in [(Authz::AlwaysAllow, 401), (Authz::RbacNode, 200)] {
        let cp = control_plane(authz);
        assert_eq!(anonymous_readyz(&cp), anonymous, "{authz:?}: the real apiserver's anonymous /readyz");
        for (cred, who) in [(token(KUBELET), "kubelet"), (token(PROXY), "kube-proxy")] {
            let a = api(&cp, &cred, who);
            assert_eq!(a.readyz(), Ok(()), "{authz:?}: {who} token");
            assert_eq!(a.node(), Ok(NodeState::Absent), "{authz:?}: {who}");
        }
        let x509 = cp.ca.client("system:node:worker-1", &["system:nodes"]);
        assert_eq!(api(&cp, &cert(&x509), "kubelet").readyz(), Ok(()), "{authz:?}: x509");
        match api(&cp, &token("ffffffffffffffffffffffffffffffff"), "kubelet").readyz() {
            Err(Failure::Fatal(m)) => assert!(m.contains("(401)") && m.contains("does not know it"), "{m}"),
            other => panic!("{authz:?}: an unknown token must be a 401 about the credential: {other:?}"),
        }
    }
}

/// G2: the v1 certificates 1.24-1.27 control planes sign work as the kubelet's
/// credential, for readiness, reading and patching its Node (no panic in the TLS
/// client), on AlwaysAllow and RBAC,Node.
#[test]
fn v1_certificates_of_1_27_control_planes_authenticate() {
    for authz in [Authz::AlwaysAllow, Authz::RbacNode] {
        let cp = control_plane(authz);
        let v1 = v1_kubelet_cert(&cp);
        let a = api(&cp, &cert(&v1), "kubelet");
        assert_eq!(a.readyz(), Ok(()), "{authz:?}");
        assert_eq!(a.node(), Ok(NodeState::Absent), "{authz:?}");
        let node = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"}});
        let created = mk8s_testkit::tls::https_call(
            cp.apiservers[0].addr,
            rustls::pki_types::ServerName::IpAddress(cp.apiservers[0].addr.ip().into()),
            mk8s_testkit::tls::Trust::Roots(cp.ca.rustls_root()),
            "POST",
            "/api/v1/nodes",
            Some(&node.to_string()),
            None,
            Some((v1.rustls_chain(), v1.rustls_key())),
        )
        .unwrap();
        assert_eq!(created.status, 201, "{authz:?}: the kubelet registers its Node: {}", created.body);
        let labels = serde_json::json!({"metadata": {"labels": {"node.kubernetes.io/worker": "worker"}}});
        assert_eq!(a.patch_node(&labels), Ok(()), "{authz:?}");
        let (code, body) = cp.admin_get("/api/v1/nodes/worker-1");
        assert_eq!(code, 200);
        assert!(body.contains("node.kubernetes.io/worker"), "{body}");
        assert!(matches!(a.node(), Ok(NodeState::NotReady(_))), "{authz:?}");
        // The key must be the certificate's: a mismatch is an error, not a panic.
        let other_key = cp.ca.client("x", &[]).key_pem;
        let mismatched = Credential::ClientCertificate { cert_pem: v1.cert_pem.clone(), key_pem: other_key };
        match Api::for_node(&cp.ca.cert_pem, "worker-1", &url(&cp), &mismatched, "kubelet") {
            Err(Failure::Fatal(m)) => assert!(m.contains("does not belong"), "{m}"),
            other => panic!("{:?}", other.map(|_| "an Api")),
        }
    }
}

/// Each request the bootstrap, the balancers' checks and the control-plane scripts
/// make, with each kind of credential, answered by the real kube-apiserver and by
/// the simulated one that the other scenarios use: the status codes must agree.
#[test]
fn the_simulated_apiserver_answers_as_the_real_one() {
    for authz in [Authz::AlwaysAllow, Authz::RbacNode] {
        let cp = control_plane(authz);
        let sim = SimApiserver::start(Arc::clone(&cp.ca), "127.0.0.1", &known_tokens());
        sim.set_authz(authz);
        let other_ca = Ca::new("another CA");
        let creds: Vec<(&str, Option<&str>, Option<Leaf>)> = vec![
            ("anonymous", None, None),
            ("kubelet token", Some(KUBELET), None),
            ("kube-proxy token", Some(PROXY), None),
            ("admin token", Some(ADMIN), None),
            ("unknown token", Some("ffffffffffffffffffffffffffffffff"), None),
            ("kubelet cert", None, Some(cp.ca.client("system:node:worker-1", &["system:nodes"]))),
            ("v1 kubelet cert", None, Some(v1_kubelet_cert(&cp))),
            ("another CA's cert", None, Some(other_ca.client("system:node:worker-1", &["system:nodes"]))),
        ];
        let paths = ["/readyz", "/livez", "/version", "/api/v1/nodes/worker-1", "/api/v1/nodes/worker-2"];
        let mut differences = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (name, tok, leaf) in &creds {
            for path in paths {
                let real =
                    mk8s_testkit::tls::https_get_as(cp.apiservers[0].addr, path, Some(&cp.ca), *tok, leaf.as_ref())
                        .map(|f| f.status);
                let simulated = mk8s_testkit::tls::https_get_as(sim.addr, path, Some(&cp.ca), *tok, leaf.as_ref())
                    .map(|f| f.status);
                let (real, simulated) = (real.unwrap(), simulated.unwrap());
                seen.insert(format!("{name} GET {path}: {real}"));
                if real != simulated {
                    differences.push(format!("{authz:?} {name} GET {path}: real {real}, simulated {simulated}"));
                }
            }
        }
        assert!(differences.is_empty(), "the simulation differs from kube-apiserver:\n{}", differences.join("\n"));
        // What the real one answered, as the fidelity docs state it.
        let seen: Vec<String> = seen.into_iter().collect();
        let expect = |line: &str| assert!(seen.contains(&line.to_string()), "{authz:?}: {line} not in {seen:#?}");
        expect(&format!("anonymous GET /readyz: {}", if authz == Authz::AlwaysAllow { 401 } else { 200 }));
        expect("kubelet token GET /api/v1/nodes/worker-1: 404");
        expect("v1 kubelet cert GET /readyz: 200");
        expect("another CA's cert GET /readyz: 401");
        expect("unknown token GET /readyz: 401");
    }
}
