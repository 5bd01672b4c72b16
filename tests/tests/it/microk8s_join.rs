//! The node model's `microk8s join IP:PORT/TOKEN/CHECK --worker` against the
//! simulated cluster-agent and apiserver: what that version's join.py leaves on
//! the node, and how it fails.

use std::fs;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mk8s_testkit::apiserver::{Authz, SimApiserver};
use mk8s_testkit::cluster_agent::{AgentConfig, SimClusterAgent};
use mk8s_testkit::node_model::{self, Model, ModelConfig, SNAP_DATA};
use mk8s_testkit::pki::Ca;

const TOKEN: &str = "7d2f0c1e9b8a76543210fedcba98765443210fedcba98765";

fn run(prog: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(prog).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn join_on(channel: &str, cp_ip: &str, node_ip: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::new("join-test-cluster-ca"));
    let port = mk8s_testkit::proc::free_port();
    let sim = SimApiserver::start_at(ca.clone(), format!("{cp_ip}:{port}").parse().unwrap(), "");
    sim.set_authz(Authz::AlwaysAllow);
    let agent = SimClusterAgent::start(ca.clone(), cp_ip, AgentConfig::new(channel, port), &tmp.path().join("cp"));
    agent.add_host("worker-1", node_ip);
    agent.add_token(TOKEN, None);
    let mut cfg = ModelConfig::new(channel, port);
    cfg.node_ip = node_ip.into();
    let model = Model::new(&tmp.path().join("model"), &tmp.path().join("root"), cfg);
    assert_eq!(run(&model.snap, &["install", "microk8s", "--classic", "--channel", channel]).0, 0);
    let sd = model.root.join(SNAP_DATA);
    let url = |check: &str| format!("{}/{TOKEN}/{check}", agent.addr);

    // A wrong check: refused after the handshake, before the token is sent (exit 4).
    let (code, out) = run(&model.microk8s, &["join", &url("0000000000000000"), "--worker"]);
    assert_eq!(code, 4, "{out}");
    assert!(!agent.saw(TOKEN), "the token went to a server that failed the check");
    // Too short a check: exit 4 too (J30:L84-100), or refused by 1.29+'s parser.
    let (code, _) = run(&model.microk8s, &["join", &url("abc"), "--worker"]);
    assert!(code == 4 || (code == 1 && node_model::minor_of(channel) >= 29));
    if node_model::minor_of(channel) >= 29 {
        let short = format!("{}/{}/{}", agent.addr, &TOKEN[..31], agent.fingerprint());
        assert_eq!(run(&model.microk8s, &["join", &short, "--worker"]).0, 1, "token < 32");
    }

    let fp = agent.fingerprint();
    let (code, out) = run(&model.microk8s, &["join", &url(&fp[..12]), "--worker"]);
    assert_eq!(code, 0, "{out}\n{:?}", model.events());
    assert!(!model.calls().iter().any(|c| c.contains(TOKEN)), "the token is never logged");
    assert_eq!(fs::read_to_string(sd.join("certs/ca.remote.crt")).unwrap(), ca.cert_pem);
    let kubelet_args = fs::read_to_string(sd.join("args/kubelet")).unwrap();
    assert!(kubelet_args.contains("--client-ca-file=${SNAP_DATA}/certs/ca.remote.crt"), "{kubelet_args}");
    assert!(kubelet_args.contains("node.kubernetes.io/microk8s-worker=microk8s-worker"));
    assert!(kubelet_args.contains("--cluster-dns=10.152.183.10"), "the control plane's args were copied");
    for l in ["clustered.lock", "no-k8s-dqlite", "no-cert-reissue"] {
        assert!(sd.join("var/lock").join(l).exists(), "{l}");
    }
    assert!(!sd.join("var/lock/join-in-progress").exists());
    let crt = fs::read_to_string(sd.join("certs/kubelet.crt")).unwrap();
    let der = rustls_pemfile::certs(&mut crt.as_bytes()).next().unwrap().unwrap().to_vec();
    assert!(node_model::signed_by(&der, &ca.cert_der));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=system:node:worker-1, O=system:nodes");
    let sans = cert.subject_alternative_name().unwrap().map(|s| s.value.general_names.len()).unwrap_or(0);
    assert_eq!(sans, if node_model::minor_of(channel) >= 28 { 2 } else { 0 });
    let kc = fs::read_to_string(sd.join("credentials/kubelet.config")).unwrap();
    assert!(kc.contains(&format!("server: https://127.0.0.1:{port}")));
    assert_eq!(kc.contains("client-certificate-data:"), node_model::minor_of(channel) >= 28, "{kc}");
    let proxy = if node_model::minor_of(channel) >= 25 { "apiserver-proxy" } else { "traefik" };
    assert!(model.running(&format!("snap.microk8s.daemon-{proxy}.service")), "{:?}", model.events());

    // The kubelet (kubelite restarted with clustered.lock) registers through
    // MicroK8s's proxy with the certificate the join wrote.
    let end = Instant::now() + Duration::from_secs(15);
    while sim.node("worker-1").is_none() {
        assert!(Instant::now() < end, "no Node: {:?}\n{:?}", model.kubelet(), model.events());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(model.local_control_plane().is_none());

    // The token was single use: a second join fails as upstream's does.
    let (code, out) = run(&model.microk8s, &["join", &url(&fp), "--worker"]);
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("Connection failed. Invalid token (500)."), "{out}");
}

#[test]
fn v1_24() {
    join_on("1.24/stable", "127.0.0.61", "127.0.0.62");
}

#[test]
fn v1_27() {
    join_on("1.27/stable", "127.0.0.63", "127.0.0.64");
}

#[test]
fn v1_30() {
    join_on("1.30/stable", "127.0.0.65", "127.0.0.66");
}

#[test]
fn before_1_23_there_is_no_worker_join() {
    let tmp = tempfile::tempdir().unwrap();
    let model = Model::new(&tmp.path().join("m"), &tmp.path().join("r"), ModelConfig::new("1.22/stable", 1));
    let (code, out) = run(&model.microk8s, &["join", "127.0.0.2:25000/x/y", "--worker"]);
    assert_eq!(code, 2, "{out}");
}

/// G6: a connection string with an IPv6 agent. 1.24-1.27's join.py splits it at
/// its first colon (`[fd00` and an empty port), 1.29+ refuses anything but IPv4:
/// both exit 1 before a request is made. 1.28's `rsplit` reads it whole.
#[test]
fn an_ipv6_agent_is_unusable_except_on_1_28() {
    for (channel, refused) in
        [("1.24/stable", true), ("1.26/stable", true), ("1.28/stable", false), ("1.30/stable", true)]
    {
        let tmp = tempfile::tempdir().unwrap();
        let port = mk8s_testkit::proc::free_port();
        let model = Model::new(&tmp.path().join("model"), &tmp.path().join("root"), ModelConfig::new(channel, port));
        assert_eq!(run(&model.snap, &["install", "microk8s", "--classic", "--channel", channel]).0, 0);
        let conn = format!("[fd00::2]:{port}/{TOKEN}/0123456789abcdef");
        let (code, out) = run(&model.microk8s, &["join", &conn, "--worker"]);
        if refused {
            assert_eq!(code, 1, "{channel}: {out}");
            assert!(out.contains("Invalid connection string"), "{channel}: {out}");
        } else {
            // Parsed: it fails only at the connection (nothing listens on fd00::2).
            assert_ne!(code, 0, "{channel}: {out}");
            assert!(!out.contains("Invalid connection string"), "{channel}: {out}");
        }
    }
}
