//! `mk8s-gen --format launch-config` end to end, with no mk8s-bootstrap: the
//! generator's `.microk8s.yaml` at `/etc/microk8s.yaml` in the node's root, then
//! only `snap install microk8s --channel 1.30/stable` on the model of a MicroK8s
//! node (`mk8s_testkit::node_model`). Its install hook copies the file to
//! `$SNAP_COMMON/etc/launcher/install.yaml` and pre-inits it; its cluster-agent's
//! launcher applies it (the join through the model's `microk8s join --worker`,
//! then the second document's kubelet arguments) against the real control plane:
//! a kube-apiserver with MicroK8s 1.30's default args and the real 1.30
//! cluster-agent (`mk8s_testkit::real_agent`) on the port the join URL names, 25000.
//!
//! Deviation: the launcher ticks every 200 ms instead of 5 s.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mk8s_gen::secrets::Secrets;
use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::node_model::{self, Model, ModelConfig, SNAP_COMMON, SNAP_DATA};
use mk8s_testkit::pki::Ca;
use mk8s_testkit::real_agent::RealClusterAgent;
use mk8s_testkit::upstream::{ControlPlane, Options, PeerAddresses};
use mk8s_testkit::workspace;

const NODE: &str = "worker-1";
const CHANNEL: &str = "1.30/stable";

struct World {
    model: Model,
    cp: ControlPlane,
    agent: RealClusterAgent,
    root: PathBuf,
    token: String,
    config: String,
    _tmp: tempfile::TempDir,
    _addresses: PeerAddresses,
}

/// A real control plane (one kube-apiserver with MicroK8s 1.30's default args and
/// the real 1.30 cluster-agent beside it, on 25000), a worker at `node_ip` whose
/// `/etc/microk8s.yaml` is the generated launch configuration with `check`
/// (None: the agent's real server.crt sha256).
fn world(node_ip: &str, check: Option<&str>) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let ca = Arc::new(Ca::new("launch-config-cluster-ca"));
    let addresses = PeerAddresses::take(1);
    let cp_ip = addresses.ips[0].clone();
    let mut options = Options::new(30, Authz::AlwaysAllow);
    options.ips = vec![cp_ip.clone()];
    options.ca = Some(ca.clone());
    let port = options.port;
    let mut cp = ControlPlane::new(options);
    cp.start_all();
    mk8s_testkit::real_agent::register_control_plane_nodes(&cp);
    let agent = RealClusterAgent::start(&cp, 0, "1.30");
    fs::write(tmp.path().join("ca.crt"), &ca.cert_pem).unwrap();
    let facts_yaml = FactsYaml::new("launch")
        .channel(CHANNEL)
        .ca_file("ca.crt")
        .auth_join()
        .port(port)
        .control_plane("cp-0", &cp_ip)
        .worker(Worker::new(NODE).address(node_ip).label("example.com/tier", "gpu").kubelet_arg("--max-pods=200"))
        .yaml();
    let facts = mk8s_gen::load(&facts_yaml, tmp.path()).valid("facts", &facts_yaml).unwrap_or_else(|e| panic!("{e}"));
    let secrets = Secrets::parse(&fs::read_to_string(workspace().join("fixtures/seed/secrets.yaml")).unwrap()).unwrap();
    let worker = facts.worker(NODE).unwrap();
    // What the control-plane bundle's register-join-tokens.sh registers (1.27+:
    // persistent tokens).
    let token = secrets.join_token(&facts.name, mk8s_gen::pki::NodeId::first(NODE), 0);
    fs::write(agent.credentials("persistent-cluster-tokens.txt"), format!("{token}\n")).unwrap();
    let check = check.map(str::to_string).unwrap_or_else(|| agent.fingerprint());
    let config = mk8s_gen::output::launch_config::launch_config(&facts, &secrets, worker, &check)
        .expect("a launch configuration");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/microk8s.yaml"), &config).unwrap();
    let mut mc = ModelConfig::new(CHANNEL, port);
    mc.node_ip = node_ip.to_string();
    mc.hostname = NODE.to_string();
    mc.launcher_tick = Duration::from_millis(200);
    let model = Model::new(&tmp.path().join("model"), &root, mc);
    World { model, cp, agent, root, token, config, _tmp: tmp, _addresses: addresses }
}

impl World {
    fn install(&self) {
        let out = Command::new(&self.model.snap)
            .args(["install", "microk8s", "--classic", "--channel", CHANNEL])
            .output()
            .unwrap();
        assert!(out.status.success(), "snap install: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The worker's Node, read from the real apiserver with the admin certificate.
    fn node(&self) -> Option<serde_json::Value> {
        let (status, body) = self.cp.admin_get(&format!("/api/v1/nodes/{NODE}"));
        (status == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    fn launcher_file(&self, name: &str) -> PathBuf {
        self.root.join(SNAP_COMMON).join("etc/launcher").join(name)
    }

    fn kubelet_args(&self) -> String {
        fs::read_to_string(self.root.join(SNAP_DATA).join("args/kubelet")).unwrap_or_default()
    }

    fn story(&self) -> String {
        format!(
            "calls:\n{}\nevents:\n{}\nlauncher: {:?}\nkubelet: {:?}\nargs/kubelet:\n{}",
            self.model.calls().join("\n"),
            self.model.events().join("\n"),
            self.model.launcher(),
            self.model.kubelet(),
            self.kubelet_args()
        )
    }
}

#[test]
fn the_launch_configuration_joins_a_1_30_worker_with_its_kubelet_args() {
    let w = world("127.0.0.112", None);
    assert!(w.config.contains(":25000/"), "the join URL names the agent's port: {}", w.config);
    let started = SystemTime::now();
    w.install();
    assert_eq!(w.model.state()["launchConfig"], "/etc/microk8s.yaml");

    // The launcher renames the file once every document applied.
    let end = Instant::now() + Duration::from_secs(15);
    while !w.launcher_file("install.yaml.applied").exists() {
        assert!(Instant::now() < end, "install.yaml never applied\n{}", w.story());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!w.launcher_file("install.yaml").exists());
    let calls = w.model.calls();
    let join = calls.iter().position(|c| c.starts_with("cluster-agent: $SNAP/microk8s-join.wrapper"));
    assert!(join.is_some_and(|i| calls[i].ends_with(" --worker")), "{calls:?}");
    assert!(!calls.concat().contains(&w.token), "the token is never logged: {calls:?}");
    // Document 2 after the join: a restart of kubelite after the join's own.
    let restarts: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| *c == "snapctl restart microk8s.daemon-kubelite")
        .map(|(i, _)| i)
        .collect();
    assert!(restarts.last().is_some_and(|&i| i > join.unwrap()), "{calls:?}");

    // args/kubelet: the join's base (the control plane's, --node-labels replaced),
    // then document 2's arguments.
    let args = w.kubelet_args();
    for want in [
        "--node-labels=microk8s.io/cluster=true,node.kubernetes.io/microk8s-worker=microk8s-worker,example.com/tier=gpu",
        "--node-ip=127.0.0.112",
        "--max-pods=200",
        "--client-ca-file=${SNAP_DATA}/certs/ca.remote.crt",
        "--kubeconfig=${SNAP_DATA}/credentials/kubelet.config",
    ] {
        assert!(args.lines().any(|l| l == want), "args/kubelet lacks {want}:\n{}", w.story());
    }
    assert_eq!(args.lines().filter(|l| l.starts_with("--node-labels")).count(), 1, "{args}");

    // The Node: Ready with a fresh heartbeat, with our labels.
    let since =
        SystemTime::UNIX_EPOCH + Duration::from_secs(started.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs());
    let end = Instant::now() + Duration::from_secs(10);
    let node = loop {
        let node = w.node();
        let fresh = node.as_ref().and_then(|n| {
            let c = n.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == "Ready")?.clone();
            let t = c["lastHeartbeatTime"].as_str().and_then(node_model::parse_rfc3339)?;
            (c["status"] == "True" && t >= since).then_some(())
        });
        if fresh.is_some() {
            break node.unwrap();
        }
        assert!(Instant::now() < end, "no fresh Ready heartbeat: {node:?}\n{}", w.story());
        std::thread::sleep(Duration::from_millis(200));
    };
    // The worker label (the join's own --node-labels) is on the Node. Our own
    // labels from document 2 are in args/kubelet (checked above), but whether they
    // reach the Node depends on which kubelite registers it first: the one the join
    // restarted, or the one the launcher restarts after applying document 2 (a
    // kubelet applies --node-labels only when it creates its Node). That race is
    // MicroK8s's, on real nodes too (docs/cluster-facts.md); it is not asserted here.
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["node.kubernetes.io/microk8s-worker"], "microk8s-worker", "{node}");
    let log = fs::read_to_string(&w.agent.log).unwrap();
    assert!(log.contains("POST 200 \"/cluster/api/v2.0/join\""), "the agent answered the join: {log}");
}

#[test]
fn a_wrong_check_fails_the_join_and_it_is_retried() {
    let wrong = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let w = world("127.0.0.114", Some(wrong));
    assert_ne!(w.agent.fingerprint(), wrong);
    w.install();
    // Several ticks: every one tries the join again and fails.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let failures = w.model.launcher().and_then(|l| l["failures"].as_u64()).unwrap_or(0);
        if failures >= 3 {
            break;
        }
        assert!(Instant::now() < end, "the join is not retried\n{}", w.story());
        std::thread::sleep(Duration::from_millis(100));
    }
    let launcher = w.model.launcher().unwrap();
    let err = launcher["lastError"].as_str().unwrap_or("");
    assert!(err.contains("failed to apply config part 0: failed to join cluster"), "{launcher}");
    let cp_ip = w.agent.addr.ip().to_string();
    assert!(err.contains(&format!("Could not verify the identity of {cp_ip}")), "{launcher}");
    let joins = w.model.calls().iter().filter(|c| c.starts_with("cluster-agent: $SNAP/microk8s-join.wrapper")).count();
    assert!(joins >= 3, "one join per tick\n{}", w.story());
    assert!(w.launcher_file("install.yaml").exists(), "the file stays to be retried");
    assert!(!w.launcher_file("install.yaml.applied").exists());
    assert!(w.node().is_none(), "nothing joined");
    assert!(!w.root.join(SNAP_DATA).join("var/lock/clustered.lock").exists(), "not clustered");
    // The join refused the agent after the handshake, before a request: the real
    // agent logs every request it answers, and answered none.
    let log = fs::read_to_string(&w.agent.log).unwrap();
    assert!(!log.contains("/cluster/api/"), "a request reached the agent: {log}");
}
