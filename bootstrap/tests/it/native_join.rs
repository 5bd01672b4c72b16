//! `auth: microk8s-join` end to end: the real `mk8s-bootstrap` and the files of a
//! real `mk8s-gen` user-data, on the model of a MicroK8s node
//! (`mk8s_testkit::node_model`, whose `microk8s join --worker` does what that
//! version's join.py does). The control planes' tokens are registered, and pruned,
//! by the bundle's real `register-join-tokens.sh`.
//!
//! Every case but one runs against the real control plane: real kube-apiservers
//! and, beside each, the real cluster-agent of that MicroK8s branch
//! (`real_apiserver::peers_with`): the zero-touch joins (1.24, 1.27, 1.30, 1.34), a
//! machine cloned from a joined worker, a kernel hostname that did not take, a
//! control plane whose pod CIDR and DNS are not the defaults (its args files
//! edited, as the agent reads them per request), a control plane down (its agent
//! and apiserver killed), and the bootstrap killed mid-join (on RBAC,Node).
//!
//! One case stays on simulated control planes (a cluster-agent,
//! `mk8s_testkit::cluster_agent`, and an apiserver, `mk8s_testkit::apiserver`, per
//! control-plane node; each held to the real program by a differential test):
//! an agent whose certificate is another CA's, which records every request it
//! gets, to show the token never reached it. The real agent neither serves
//! another CA's certificate beside a real control plane nor records what it was
//! sent before TLS. Deviation there: the agents listen on free ports, so the
//! plan's `join.agents` (`IP:25000` as generated) are pointed at them, as the
//! timings are shortened.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use mk8s_bootstrap::plan::{Credential, JoinPlan, PLAN_PATH};
use mk8s_gen::render::{self, Delivery};
use mk8s_gen::secrets::Secrets;
use mk8s_testkit::apiserver::{Authz, KubeletClient, SimApiserver};
use mk8s_testkit::cluster_agent::{is_valid_token, AgentConfig, SimClusterAgent};
use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::node_model::{self, Model, ModelConfig, SNAP_DATA};
use mk8s_testkit::pki::Ca;
use mk8s_testkit::{tools, workspace};

use crate::common;
use crate::real_apiserver::{self as real, Auth, Peers, Setup};

const NODE: &str = "worker-1";
/// A second worker of the facts, for a machine cloned from [`NODE`].
const OTHER: &str = "worker-2";
const TAINT: &str = "dedicated=gpu:NoSchedule";

struct ControlPlane {
    ip: String,
    sim: SimApiserver,
    agent: SimClusterAgent,
}

struct World {
    model: Model,
    cps: Vec<ControlPlane>,
    root: PathBuf,
    bundle: PathBuf,
    token: String,
    tmp: tempfile::TempDir,
}

/// Simulated control planes at `cp_ips` (`impostor[i]`: that node's agent has a
/// certificate of another CA), a worker at `node_ip` booted with the generated
/// user-data.
fn world(channel: &str, cp_ips: &[&str], node_ip: &str, impostor: &[bool]) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let ca = Arc::new(Ca::new("native-join-cluster-ca"));
    let port = mk8s_testkit::proc::free_port();
    let mut cps = Vec::new();
    for (i, ip) in cp_ips.iter().enumerate() {
        let sim = SimApiserver::start_at(ca.clone(), format!("{ip}:{port}").parse().unwrap(), "");
        sim.set_authz(Authz::AlwaysAllow);
        let client = KubeletClient::for_channel(channel, false);
        if client.preferred[0] == "Hostname" {
            // hosts-entries.sh of the bundle, run on this control plane.
            sim.add_host(NODE, node_ip);
        }
        sim.set_kubelet_client(client);
        let mut cfg = AgentConfig::new(channel, port);
        cfg.control_plane_nodes = cp_ips.iter().map(|s| s.to_string()).collect();
        let snap_data = tmp.path().join(format!("cp-{i}"));
        let agent_ca =
            if impostor.get(i).copied().unwrap_or(false) { Arc::new(Ca::new("impostor-ca")) } else { ca.clone() };
        let agent = SimClusterAgent::start(agent_ca, ip, cfg, &snap_data);
        // The cluster-agent's hostname check (<= 1.27): the control plane resolves
        // the worker's name (hosts-entries.sh).
        agent.add_host(NODE, node_ip);
        fs::create_dir_all(snap_data.join("args")).unwrap();
        fs::write(snap_data.join("args/kube-apiserver"), format!("--secure-port={port}\n")).unwrap();
        cps.push(ControlPlane { ip: ip.to_string(), sim, agent });
    }
    fs::write(tmp.path().join("ca.crt"), &ca.cert_pem).unwrap();
    let facts = FactsYaml::new("native").channel(channel).ca_file("ca.crt").auth_join().port(port);
    let facts = cp_ips.iter().enumerate().fold(facts, |f, (i, ip)| f.control_plane(&format!("cp-{i}"), ip));
    let facts_yaml = facts
        .worker(
            Worker::new(NODE)
                .address(node_ip)
                .label("example.com/tier", "gpu")
                .kubelet_arg(&format!("--register-with-taints={TAINT}")),
        )
        .worker(Worker::new(OTHER).address("127.0.0.254"))
        .yaml();
    let facts = mk8s_gen::load(&facts_yaml, tmp.path()).valid("facts", &facts_yaml).unwrap_or_else(|e| panic!("{e}"));
    let secrets = Secrets::parse(&fs::read_to_string(workspace().join("fixtures/seed/secrets.yaml")).unwrap()).unwrap();
    let worker = facts.worker(NODE).unwrap();
    let bundle = tmp.path().join("bundle");
    let workers: Vec<_> = facts.workers.iter().collect();
    mk8s_gen::controlplane::write_bundle(&facts, &secrets, &workers, &bundle).unwrap();
    let out = render::render_node(&facts, &secrets, worker, &Delivery::Preinstalled).unwrap();
    for d in common::IMAGE_DIRS {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut config = ModelConfig::new(channel, port);
    config.node_ip = node_ip.to_string();
    config.hostname = NODE.to_string();
    let model = Model::new(&tmp.path().join("model"), &root, config);
    common::boot(&root, &out);
    let p = root.join(PLAN_PATH.trim_start_matches('/'));
    let plan = JoinPlan::from_json(&fs::read_to_string(&p).unwrap()).unwrap();
    let Credential::JoinToken { token } = plan.credentials.kubelet.clone() else { panic!("a join token") };
    let w = World { model, cps, root, bundle, token, tmp };
    w.shorten_plan();
    for cp in &w.cps {
        let o = w.register(cp);
        assert!(o.status.success(), "register-join-tokens.sh: {}", String::from_utf8_lossy(&o.stderr));
    }
    w
}

impl World {
    fn run_with(&self, microk8s: &Path) -> (i32, String) {
        common::run_bootstrap(&self.root, &self.model, Some(microk8s))
    }

    fn run(&self) -> (i32, String) {
        self.run_with(&self.model.microk8s)
    }

    /// The plan on the node, with this test's timings and agent addresses.
    fn shorten_plan(&self) {
        common::edit_plan(&self.root, |plan| {
            plan.timing.ready_deadline_secs = 30;
            plan.timing.retry_initial_ms = 50;
            plan.timing.retry_cap_ms = 400;
            plan.join.as_mut().unwrap().agents = self.cps.iter().map(|c| c.agent.addr.to_string()).collect();
        });
    }

    /// The bundle's register-join-tokens.sh on control plane `cp`, whose
    /// `microk8s kubectl get nodes` lists the Nodes its apiserver has.
    fn register(&self, cp: &ControlPlane) -> std::process::Output {
        let nodes = self.tmp.path().join(format!("nodes-{}", cp.ip));
        let list: String = cp.sim.node(NODE).map(|_| format!("node/{NODE}\n")).unwrap_or_default();
        fs::write(&nodes, list).unwrap();
        let stub = self.tmp.path().join(format!("microk8s-{}", cp.ip));
        mk8s_testkit::node_model::write_script(&stub, &format!("#!/bin/sh\ncat '{}'\n", nodes.display()));
        Command::new(tools::require("bash"))
            .arg(self.bundle.join("register-join-tokens.sh"))
            .env("SNAP_DATA", &cp.agent.snap_data)
            .env("MK8S_MICROK8S", &stub)
            .output()
            .unwrap()
    }

    fn story(&self) -> String {
        format!(
            "calls:\n{}\nevents:\n{}\nkubelet: {:?}\nkube-proxy: {:?}",
            self.model.calls().join("\n"),
            self.model.events().join("\n"),
            self.model.kubelet(),
            self.model.kube_proxy()
        )
    }
}

/// The zero-touch join on `channel` against the real control plane: three real
/// kube-apiservers with that version's default args and the real cluster-agent of
/// that MicroK8s branch beside each (`real_apiserver::peers_with`), the worker on the
/// node model. Ready, our labels and taints, the kubelet's serving certificate from
/// the cluster CA (`kubectl logs` through the real apiserver, as that version dials
/// the kubelet), the token pruned by the bundle's script once the Node exists (its
/// `microk8s kubectl get nodes` the real kubectl), a rerun that changes nothing,
/// and `leave --purge` leaving the image and the name the user-data gave.
fn real_zero_touch(channel: &str, node_ip: &str) {
    use crate::common::Joined as _;
    use crate::real_apiserver::{self as real, Auth, Setup};
    let taint = format!("--register-with-taints={TAINT}");
    let facts = |f: FactsYaml| {
        f.edit_worker(NODE, |w| w.kubelet_arg(&taint)).worker(Worker::new(OTHER).address("10.213.255.254"))
    };
    let setup = Setup { facts: Some(&facts), ..Setup::default() };
    let w = real::peers_with(channel, Auth::Join, real::Lb::Own, Authz::AlwaysAllow, Some(node_ip), &setup);
    let token = plan_token(&w);
    let valid = |a: &mk8s_testkit::real_agent::RealClusterAgent| token_valid(&w, a, &token);
    assert!(w.agents.iter().all(valid), "the bundle registered the token on every control plane");

    let started = SystemTime::now();
    let (code, log) = w.run();
    assert_eq!(code, 0, "the join failed:\n{log}\n{}", w.story());
    assert!(!log.contains(&token), "the token is never logged");
    w.wait_heartbeat(started, "after the join");
    let node = w.node().unwrap();
    assert_eq!(node["metadata"]["labels"]["example.com/tier"], "gpu", "labels survive the join: {node}");
    assert_eq!(node["metadata"]["labels"]["node.kubernetes.io/microk8s-worker"], "microk8s-worker");
    assert!(has_taint(&node, "dedicated"), "taints survive the join: {node}");
    let sd = w.root.join(SNAP_DATA);
    let args = fs::read_to_string(sd.join("args/kubelet")).unwrap();
    assert!(args.contains(&format!("--node-ip={node_ip}")) && args.contains("--hostname-override=worker-1"), "{args}");
    let der = rustls_pemfile_der(&fs::read_to_string(sd.join("certs/kubelet.crt")).unwrap());
    assert!(node_model::signed_by(&der, &w.cp.ca.cert_der), "certs/kubelet.crt is not from the cluster CA");
    w.assert_logs("after the join");

    // Each control plane's script prunes the token of a worker whose Node exists.
    register_everywhere(&w);
    assert!(!w.agents.iter().any(valid), "the join token is pruned once the node joined");
    let plan = fs::read_to_string(w.root.join(PLAN_PATH.trim_start_matches('/'))).unwrap();
    assert!(!plan.contains(&token), "the token is taken out of plan.json after the join");
    let (code, log) = w.run();
    assert_eq!((code, log.contains("already joined")), (0, true), "a rerun is a no-op: {log}");

    w.model.clear_calls();
    let (code, out, err) = common::run_leave(&w.root, &w.model, &["--purge"]);
    assert_eq!(code, 0, "{out}\n{err}\n{}", w.story());
    assert!(w.model.calls().iter().all(|c| !c.starts_with("microk8s")), "{:?}", w.model.calls());
    let diff = common::tree_diff(w.image(), &common::tree(&w.root));
    assert!(diff.len() == 1 && diff[0].starts_with("extra etc/hostname "), "{}", diff.join("\n"));
    assert_eq!(w.model.running_units(), Vec::<String>::new(), "{}", w.story());
}

/// Whether the Node carries a taint of `key`, wherever in the list: the real
/// kube-controller-manager adds and removes `node.kubernetes.io/not-ready` of its
/// own while the Node becomes Ready.
fn has_taint(node: &serde_json::Value, key: &str) -> bool {
    node["spec"]["taints"].as_array().is_some_and(|t| t.iter().any(|t| t["key"] == key))
}

fn rustls_pemfile_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

#[test]
fn v1_24_zero_touch() {
    real_zero_touch("1.24/stable", "127.0.0.72");
}

#[test]
fn v1_27_zero_touch() {
    real_zero_touch("1.27/stable", "127.0.0.74");
}

#[test]
fn v1_30_zero_touch() {
    real_zero_touch("1.30/stable", "127.0.0.76");
}

#[test]
fn v1_34_zero_touch() {
    real_zero_touch("1.34/stable", "127.0.0.78");
}

/// A server on the agent port whose certificate is from another CA never sees the
/// token: the bootstrap verifies the agent against the pinned CA first, and joins
/// through the next control plane.
#[test]
fn an_agent_of_another_ca_never_sees_the_token() {
    let w = world("1.30/stable", &["127.0.0.79", "127.0.0.80"], "127.0.0.81", &[true, false]);
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}\n{}", w.story());
    assert!(log.contains("does not verify against the cluster CA"), "{log}");
    assert!(w.cps[0].agent.requests().is_empty(), "the impostor was sent something: {:?}", w.cps[0].agent.requests());
    assert!(!w.cps[0].agent.saw(&w.token));
    assert!(w.cps[1].agent.saw(&w.token));
    // Alone, it is never trusted: retried until the deadline (exit 75), token unsent.
    let alone = world("1.30/stable", &["127.0.0.82"], "127.0.0.83", &[true]);
    common::edit_plan(&alone.root, |plan| plan.timing.ready_deadline_secs = 3);
    let (code, log) = alone.run();
    assert_eq!(code, 75, "{log}");
    assert!(!alone.cps[0].agent.saw(&alone.token));
}

/// A worker before MicroK8s's own join, in front of the real control plane
/// (`real_apiserver::peers_with`: three real kube-apiservers with that version's
/// default args and the real cluster-agent of that branch beside each), the node
/// on the model; the facts carry a taint and a second worker, [`OTHER`].
/// One control-plane node unless `ha` (its loss is the case).
fn real_world(channel: &str, authz: Authz, node_ip: &str, started: Option<&real::Operator>, ha: bool) -> Peers {
    let taint = format!("--register-with-taints={TAINT}");
    let facts = |f: FactsYaml| {
        f.edit_worker(NODE, |w| w.kubelet_arg(&taint)).worker(Worker::new(OTHER).address("10.213.255.254"))
    };
    let setup = Setup { facts: Some(&facts), started, one_control_plane: !ha, ..Setup::default() };
    real::peers_with(channel, Auth::Join, real::Lb::Own, authz, Some(node_ip), &setup)
}

/// How many worker joins the real agents answered (any status).
fn joins_answered(w: &Peers) -> usize {
    w.agents
        .iter()
        .map(|a| fs::read_to_string(&a.log).unwrap_or_default().matches("/cluster/api/v2.0/join\"").count())
        .sum()
}

/// The join token of the plan on the node.
fn plan_token(w: &Peers) -> String {
    let plan =
        JoinPlan::from_json(&fs::read_to_string(w.root.join(PLAN_PATH.trim_start_matches('/'))).unwrap()).unwrap();
    let Credential::JoinToken { token } = plan.credentials.kubelet.clone() else { panic!("a join token") };
    token
}

/// Whether the real agent would accept `token` (its tokens file, as that branch keeps it).
fn token_valid(w: &Peers, a: &mk8s_testkit::real_agent::RealClusterAgent, token: &str) -> bool {
    let minor = node_model::minor_of(&w.facts.channel.text);
    let file = if minor >= 27 { "persistent-cluster-tokens.txt" } else { "cluster-tokens.txt" };
    is_valid_token(token, &a.credentials(file)).0
}

/// The bundle's register-join-tokens.sh on every control-plane node, its
/// `microk8s kubectl` the real kubectl as the cluster's admin.
fn register_everywhere(w: &Peers) {
    let admin = w.cp.admin_kubeconfig(0);
    let microk8s = w.root.parent().unwrap().join("microk8s-kubectl");
    node_model::write_script(
        &microk8s,
        &format!(
            "#!/bin/sh\nshift\nexec '{}' --kubeconfig '{}' \"$@\"\n",
            tools::require("kubectl").display(),
            admin.display()
        ),
    );
    for a in &w.agents {
        let o = Command::new(tools::require("bash"))
            .arg(w.root.parent().unwrap().join("bundle/register-join-tokens.sh"))
            .env("SNAP_DATA", &a.snap_data)
            .env("MK8S_MICROK8S", &microk8s)
            .output()
            .unwrap();
        assert!(o.status.success(), "register-join-tokens.sh: {}", String::from_utf8_lossy(&o.stderr));
    }
}

/// A machine cloned from a joined worker (or one that reuses its disk), booted with
/// another worker's user-data: its MicroK8s carries the first worker's join, whose
/// certificate chains to the cluster CA. It is never "already joined": under
/// AlwaysAllow that certificate would register it as the other worker and stamp
/// success. The bootstrap stops before changing anything (exit 78), naming both.
#[test]
fn a_clone_of_a_joined_worker_is_refused() {
    let w = real_world("1.30/stable", Authz::AlwaysAllow, "127.0.0.151", None, false);
    let (code, log) = w.run();
    assert_eq!(code, 0, "the first join failed:\n{log}\n{}", w.story());
    w.model.shutdown();
    // The clone's first boot: cloud-init writes worker-2's files, sets its hostname.
    common::write_files(&w.root, &w.user_data_of(OTHER));
    w.model.set_hostname(OTHER);
    w.shorten_plan();
    w.model.clear_calls();
    let (code, log) = w.run();
    assert_eq!(code, 78, "a clone must never count as joined:\n{log}\n{}", w.story());
    assert!(log.contains("as \"system:node:worker-1\", not \"system:node:worker-2\""), "{log}");
    assert!(!log.contains("joined and Ready"), "{log}");
    let changed: Vec<String> = w
        .model
        .calls()
        .into_iter()
        .filter(|c| !c.starts_with("systemctl is-") && !c.starts_with("snap list"))
        .collect();
    assert!(changed.is_empty(), "nothing may change on the clone: {changed:?}");
    let (status, _) = w.cp.admin_get(&format!("/api/v1/nodes/{OTHER}"));
    assert_eq!(status, 404, "no Node registered under another node's certificate");
}

/// `microk8s join` names the node after the kernel's hostname, not /etc/hostname:
/// a machine whose hostname did not take (the kernel still has the image's) is
/// refused before the token goes anywhere.
#[test]
fn a_hostname_that_did_not_take_is_refused() {
    let w = real_world("1.30/stable", Authz::AlwaysAllow, "127.0.0.152", None, false);
    w.model.set_hostname("ubuntu");
    let (code, log) = w.run();
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("the kernel's hostname) is \"ubuntu\""), "{log}");
    assert_eq!(joins_answered(&w), 0, "the token went out");
}

/// G5: a control plane with a pod CIDR and a cluster DNS address of its own, facts
/// that leave both to their defaults: the real agent sends its own args/kubelet
/// and (1.27+) its pod CIDR, and the bootstrap's merge of our arguments must not
/// write MicroK8s's defaults over them.
#[test]
fn the_control_planes_pod_cidr_and_dns_survive_facts_that_leave_them_out() {
    let own = |cp: &mk8s_testkit::upstream::ControlPlane, _: &Path| {
        for a in &cp.apiservers {
            for (file, from, to) in [
                ("args/kubelet", "--cluster-dns=10.152.183.10", "--cluster-dns=10.152.183.20"),
                ("args/kube-proxy", "--cluster-cidr=10.1.0.0/16", "--cluster-cidr=10.2.0.0/16"),
            ] {
                let path = a.snap_data.join(file);
                let text = fs::read_to_string(&path).unwrap();
                assert!(text.contains(from), "{file}: {text}");
                fs::write(&path, text.replace(from, to)).unwrap();
            }
        }
    };
    let w = real_world("1.30/stable", Authz::AlwaysAllow, "127.0.0.153", Some(&own), false);
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}\n{}", w.story());
    let kubelet = fs::read_to_string(w.root.join(SNAP_DATA).join("args/kubelet")).unwrap();
    let proxy = fs::read_to_string(w.root.join(SNAP_DATA).join("args/kube-proxy")).unwrap();
    assert!(kubelet.contains("--cluster-dns=10.152.183.20") && !kubelet.contains("10.152.183.10"), "{kubelet}");
    assert!(proxy.contains("--cluster-cidr=10.2.0.0/16") && !proxy.contains("10.1.0.0/16"), "{proxy}");
}

/// With one control plane down (its agent and apiserver), the node joins through
/// another.
#[test]
fn one_control_plane_down() {
    let mut w = real_world("1.27/stable", Authz::AlwaysAllow, "127.0.0.154", None, true);
    drop(w.agents.remove(0));
    w.cp.apiservers[0].kill();
    let started = SystemTime::now();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}\n{}", w.story());
    w.wait_heartbeat(started, "through another control plane");
    assert!(log.contains(&format!("through the cluster-agent at {}", w.agents[0].addr)), "{log}");
}

/// SIGKILL of the bootstrap (and of the join it runs, as systemd kills the unit's
/// whole cgroup) at several points of the join, then a rerun: it converges. And,
/// on a second node, killed right after a complete join, with the token pruned by
/// the control plane before the rerun, which must not need it. On RBAC,Node
/// (`microk8s enable rbac`): the kubelet may read only its own Node.
fn killed(channel: &str, ips: [&str; 2]) {
    let w = real_world(channel, Authz::RbacNode, ips[0], None, false);
    let real = w.model.microk8s.clone();
    let mut kills = 0;
    for (i, delay) in ["0", "0.02", "0.05", "0.1", "0.2", "0.4"].iter().enumerate() {
        let killer = w.root.parent().unwrap().join(format!("microk8s-kill-{i}"));
        node_model::write_script(
            &killer,
            &format!(
                "#!/bin/sh\n'{}' \"$@\" &\njob=$!\nsleep {delay}\nkill -9 $job 2>/dev/null\nkill -9 $PPID\nexit 137\n",
                real.display()
            ),
        );
        let (code, log) = common::run_bootstrap(&w.root, &w.model, Some(&killer));
        if code == 0 {
            // An earlier kill came after the join had completed: nothing left to kill.
            assert!(log.contains("already happened"), "{log}");
            break;
        }
        kills += 1;
    }
    assert!(kills >= 1);
    let started = SystemTime::now();
    let (code, log) = w.run();
    assert_eq!(code, 0, "the rerun did not converge:\n{log}\n{}", w.story());
    w.wait_heartbeat(started, "after the rerun");
    let node = w.node().unwrap();
    assert_eq!(node["metadata"]["labels"]["example.com/tier"], "gpu", "{node}");
    drop(w);

    // Killed once the join has completed.
    let w = real_world(channel, Authz::RbacNode, ips[1], None, false);
    let token = plan_token(&w);
    let after = w.root.parent().unwrap().join("microk8s-kill-after");
    node_model::write_script(
        &after,
        &format!("#!/bin/sh\n'{}' \"$@\"\nkill -9 $PPID\nexit 137\n", w.model.microk8s.display()),
    );
    let (code, log) = common::run_bootstrap(&w.root, &w.model, Some(&after));
    assert_eq!(code, -1, "the bootstrap is killed (no exit code), not failed: {log}");
    // The kubelet registers; the control plane prunes the token; the rerun must not need it.
    let end = Instant::now() + Duration::from_secs(30);
    while w.node().is_none() {
        assert!(Instant::now() < end, "no Node after the join\n{}", w.story());
        std::thread::sleep(Duration::from_millis(200));
    }
    register_everywhere(&w);
    assert!(!w.agents.iter().any(|a| token_valid(&w, a, &token)), "the token is pruned");
    let started = SystemTime::now();
    let (code, log) = w.run();
    assert_eq!(code, 0, "the rerun did not converge:\n{log}\n{}", w.story());
    assert!(log.contains("already happened"), "{log}");
    // The join's kubelet registered the Node with the control plane's arguments.
    assert!(log.contains("added 1 label(s) and 1 taint(s)"), "{log}");
    w.wait_heartbeat(started, "after the rerun");
    let node = w.node().unwrap();
    assert_eq!(node["metadata"]["labels"]["example.com/tier"], "gpu", "labels: {node}\n{log}\n{}", w.story());
    assert!(has_taint(&node, "dedicated"), "taints: {node}");
}

#[test]
fn v1_24_killed_mid_join_converges() {
    killed("1.24/stable", ["127.0.0.155", "127.0.0.156"]);
}

#[test]
fn v1_30_killed_mid_join_converges() {
    killed("1.30/stable", ["127.0.0.157", "127.0.0.158"]);
}
