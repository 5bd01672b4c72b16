//! The simulated cluster-agent (`mk8s_testkit::cluster_agent`) against the real
//! one (`mk8s_testkit::real_agent`, MicroK8s 1.24, 1.26, 1.27, 1.30 and 1.34): the same
//! requests of a worker join, sent to both from the worker's address, get the
//! same status and body (every error, and the join's answer field by field), and
//! the certificates both sign have the same version, subject, issuer and names.
//!
//! The model stays where the real agent cannot serve: the node-model scenarios of
//! channels whose branch is not vendored, and fault injection (an agent stopped
//! and restarted mid-join, one whose requests are recorded); this test is what
//! lets those scenarios stand for the real agent.

use std::net::{IpAddr, SocketAddr};

use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::cluster_agent::{AgentConfig, SimClusterAgent};
use mk8s_testkit::real_agent::RealClusterAgent;
use mk8s_testkit::upstream::{ControlPlane, Options, PeerAddresses};
use serde_json::{json, Value};

struct Pair {
    real: RealClusterAgent,
    sim: SimClusterAgent,
    worker: IpAddr,
    // Dropped last: the control plane, then its addresses.
    _cp: ControlPlane,
    _addresses: PeerAddresses,
    _tmp: tempfile::TempDir,
}

const TOKENS: [&str; 4] = [
    "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    "b1b2c3d4e5f60718293a4b5c6d7e8f90",
    "c1b2c3d4e5f60718293a4b5c6d7e8f90",
    "d1b2c3d4e5f60718293a4b5c6d7e8f90",
];

/// One real control-plane node (kube-apiserver, MicroK8s's default args for the
/// channel, AlwaysAllow) with its real cluster-agent, the simulated agent of the
/// same control plane beside it, and the same single-use join tokens in both.
fn pair(channel: &str) -> Pair {
    let tmp = tempfile::tempdir().unwrap();
    let addresses = PeerAddresses::take(2);
    let (cp_ip, worker) = (addresses.ips[0].clone(), addresses.ips[1].clone());
    let mut options = Options::new(mk8s_testkit::node_model::minor_of(channel), Authz::AlwaysAllow);
    options.ips = vec![cp_ip.clone()];
    let mut cp = ControlPlane::new(options);
    let hosts = &cp.apiservers[0].hosts;
    let text = std::fs::read_to_string(hosts).unwrap();
    std::fs::write(hosts, format!("{text}{worker} worker-1\n")).unwrap();
    cp.start_all();
    mk8s_testkit::real_agent::register_control_plane_nodes(&cp);
    let tokens: String = TOKENS.iter().map(|t| format!("{t}\n")).collect();
    std::fs::write(cp.apiservers[0].snap_data.join("credentials/cluster-tokens.txt"), &tokens).unwrap();
    let branch = mk8s_testkit::real_agent::branch_for(channel).unwrap();
    let real = RealClusterAgent::start(&cp, 0, branch);

    let mut cfg = AgentConfig::new(channel, cp.options.port);
    cfg.control_plane_nodes = vec![cp_ip.clone()];
    let port = mk8s_testkit::proc::free_port();
    let sim = SimClusterAgent::start_on(cp.ca.clone(), &cp_ip, port, cfg, &tmp.path().join("sim"));
    sim.add_host("worker-1", &worker);
    for t in TOKENS {
        sim.add_token(t, None);
    }
    Pair { real, sim, worker: worker.parse().unwrap(), _cp: cp, _addresses: addresses, _tmp: tmp }
}

impl Pair {
    /// `POST path` with `body` to both, from the worker's address: (status, JSON body) each.
    fn post(&self, path: &str, body: &Value) -> [(u16, Value); 2] {
        let send = |addr: SocketAddr| {
            let r = mk8s_testkit::tls::https_post_unverified(Some(self.worker), addr, path, &body.to_string())
                .unwrap_or_else(|e| panic!("POST {path} to {addr}: {e}"));
            let mut v: Value = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body));
            // Each agent makes its own callback token: compared by shape only.
            if let Some(t) = v.get_mut("callback_token") {
                assert!(t.as_str().is_some_and(|t| t.len() >= 32), "{addr}: callback_token {t}");
                *t = json!("<a callback token>");
            }
            (r.status, v)
        };
        [send(self.real.addr), send(self.sim.addr)]
    }

    /// Both give the same answer to `body` at `path`; that answer.
    fn same(&self, what: &str, path: &str, body: &Value) -> (u16, Value) {
        let [real, sim] = self.post(path, body);
        assert_eq!(sim, real, "{what}: the model (left) and the real agent (right) differ\n{}", self.real.log_tail());
        real
    }
}

fn join(token: &str, hostname: &str, port: &str) -> Value {
    json!({"token": token, "hostname": hostname, "port": port, "worker": true})
}

/// The fields of a certificate both must agree on.
fn cert_facts(pem: &str) -> (u32, String, String, Vec<String>) {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("a PEM certificate");
    let c = p.parse_x509().expect("a certificate");
    let names = c
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|s| s.value.general_names.iter().map(|n| n.to_string()).collect())
        .unwrap_or_default();
    (c.version().0, c.subject().to_string(), c.issuer().to_string(), names)
}

fn differential(channel: &str) {
    let p = pair(channel);
    let v2 = "/cluster/api/v2.0/join";
    let v1 = "/cluster/api/v1.0/sign-cert";
    // Errors, in upstream's order: the token is consumed before the checks that
    // follow refuse the join.
    p.same("an unknown token", v2, &join("0123456789abcdef0123456789abcdef", "worker-1", "25000"));
    p.same("another agent port", v2, &join(TOKENS[0], "worker-1", "25001"));
    p.same("a token used once", v2, &join(TOKENS[0], "worker-1", "25000"));
    // Refused up to 1.27; 1.28+ (fresh args prefer InternalIP) skip the check.
    p.same("a name the control plane does not resolve", v2, &join(TOKENS[1], "not-worker-1", "25000"));

    // The join: every field (the callback token by its shape).
    let (status, answer) = p.same("the join", v2, &join(TOKENS[2], "worker-1", "25000"));
    assert_eq!(status, 200, "the join: {answer}\n{}", p.real.log_tail());
    assert_eq!(answer["hostname_override"], p.worker.to_string());

    // The certificate requests the join registered: signed the same way, once.
    let request = |token: String| {
        let (csr, _key) = mk8s_testkit::pki::csr("system:node:worker-1", &["system:nodes"], &["worker-1", "10.0.0.9"]);
        json!({"token": token, "request": csr})
    };
    let token = format!("{}-kubelet", TOKENS[2]);
    let [(rs, real), (ss, sim)] = p.post(v1, &request(token.clone()));
    assert_eq!((rs, ss), (200, 200), "sign-cert:\n{real}\n{sim}\n{}", p.real.log_tail());
    let (real, sim) =
        (cert_facts(real["certificate"].as_str().unwrap()), cert_facts(sim["certificate"].as_str().unwrap()));
    assert_eq!(sim, real, "{channel}: the signed certificate, model (left) and real (right)");
    p.same("a certificate token used once", v1, &request(token));
}

#[test]
fn the_model_of_the_1_24_agent_answers_as_the_real_one() {
    differential("1.24/stable");
}

#[test]
fn the_model_of_the_1_26_agent_answers_as_the_real_one() {
    differential("1.26/stable");
}

#[test]
fn the_model_of_the_1_27_agent_answers_as_the_real_one() {
    differential("1.27/stable");
}

#[test]
fn the_model_of_the_1_30_agent_answers_as_the_real_one() {
    differential("1.30/stable");
}

#[test]
fn the_model_of_the_1_34_agent_answers_as_the_real_one() {
    differential("1.34/stable");
}
