//! Bootstrap scenarios against the model of a MicroK8s node
//! (`mk8s_testkit::node_model`): the real `mk8s-bootstrap` binary, the files of a
//! real `mk8s-gen` user-data written as cloud-init would, the node's `snap` and
//! `systemctl` answered by the model (which starts real listeners: a local
//! control plane, the kubelet, our own traefik unit), and the simulated apiserver
//! as the cluster's control plane.
//!
//! Each scenario asserts what an operator cares about: the join exits 0; the Node
//! is Ready with a fresh heartbeat; nothing answers on the apiserver port with the
//! node-local CA's certificate; the node is still a worker after a snap refresh
//! and after a reboot; and `kubectl logs` works the way that version's control
//! plane reaches the kubelet. (1.22 with traefik timed out before kubelite was
//! stopped ahead of the balancer; 1.30/1.34 fresh failed `kubectl logs` before
//! `auth: x509` issued a serving certificate from the cluster CA.)
//!
//! A channel and kind the real-peer tier runs (`real_apiserver.rs`, `real_v1_*`:
//! the same checks, plus the loss of an apiserver and `maintain`, on the real
//! kube-apiserver with AlwaysAllow and RBAC,Node) is not repeated here. What stays
//! on the simulated apiserver (held to the real one's answers by
//! `real_apiserver::the_simulated_apiserver_answers_as_the_real_one`) is the rest
//! of the matrix: `kind: external` (the real tier has no external balancer to
//! stand for), the releases and kinds between its rows, and the upgraded 1.30
//! node's kubelet dialing.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mk8s_gen::render::{self, Delivery};
use mk8s_testkit::apiserver::{Authz, KubeletClient, SimApiserver};
use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::node_model::{self, Model, ModelConfig};
use mk8s_testkit::pki::Ca;

use crate::common;

pub(crate) const NODE: &str = "worker-1";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Lb {
    /// mk8s-bootstrap's own balancer (`kind: builtin`, the default).
    Builtin,
    Traefik,
    Haproxy,
    /// MicroK8s's own apiserver-proxy (1.25+).
    Microk8sProxy,
    External,
}

impl Lb {
    /// The facts' `load-balancer` for a cluster on `port`.
    fn facts(self, facts: FactsYaml, port: u16) -> FactsYaml {
        match self {
            Lb::Builtin => facts.lb_builtin().health_check("1s", "500ms"),
            Lb::Traefik => facts.lb_traefik(None).health_check("1s", "500ms"),
            Lb::Haproxy => facts.lb_haproxy().health_check("1s", "500ms"),
            Lb::Microk8sProxy => facts.lb_microk8s_proxy(),
            Lb::External => facts.lb_external("127.0.0.2", port),
        }
    }

    /// The kind whose program the node has (baked into the image: traefik;
    /// installed by cloud-init's `packages`: haproxy; the agent itself: builtin).
    fn program(self) -> Option<&'static str> {
        match self {
            Lb::Builtin => Some("builtin"),
            Lb::Traefik => Some("traefik"),
            Lb::Haproxy => Some("haproxy"),
            Lb::Microk8sProxy | Lb::External => None,
        }
    }
}

/// What varies besides the channel and the balancer.
#[derive(Clone, Copy, Default)]
pub(crate) struct Variant {
    /// `auth: x509` on a control plane that also reads tokens.
    pub(crate) x509: bool,
    /// `microk8s enable rbac`: `--authorization-mode=RBAC,Node`
    /// (canonical/microk8s-core-addons addons/rbac/enable) instead of AlwaysAllow.
    pub(crate) rbac: bool,
    /// The control plane never ran the bundle's hosts-entries.sh.
    pub(crate) no_hosts: bool,
}

pub(crate) struct World {
    pub(crate) model: Model,
    pub(crate) sim: SimApiserver,
    pub(crate) root: PathBuf,
    pub(crate) port: u16,
    pub(crate) lb: Lb,
    /// The machine before the user-data: the image (the balancer's program when
    /// the image has it, the directories a system with snapd has) as
    /// [`common::tree`] sees it.
    pub(crate) image: common::Tree,
    _tmp: tempfile::TempDir,
}

/// A cluster whose control plane is the simulator on 127.0.0.2, and a worker
/// (node address `node_ip`) booted with the generated user-data.
fn world(channel: &str, upgraded: bool, lb: Lb, node_ip: &str) -> World {
    world_with(channel, upgraded, lb, node_ip, Variant::default())
}

pub(crate) fn world_with(channel: &str, upgraded: bool, lb: Lb, node_ip: &str, v: Variant) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let ca = Arc::new(Ca::new("node-model-cluster-ca"));
    let port = mk8s_testkit::proc::free_port();
    let sim = SimApiserver::start_at(ca.clone(), format!("127.0.0.2:{port}").parse().unwrap(), "");
    // MicroK8s's default authorization in every branch (default-args/kube-apiserver L3),
    // or the rbac addon's.
    sim.set_authz(if v.rbac { Authz::RbacNode } else { Authz::AlwaysAllow });
    let client = KubeletClient::for_channel(channel, upgraded);
    let by_hostname = client.preferred[0] == "Hostname";
    sim.set_kubelet_client(client);
    fs::write(tmp.path().join("ca.crt"), &ca.cert_pem).unwrap();
    let fresh_x509 = (node_model::minor_of(channel) >= 28 && !upgraded) || v.x509;
    let facts = FactsYaml::new("model").channel(channel).ca_file("ca.crt");
    let facts = if fresh_x509 { facts.auth_x509("2026-01-01", 3650) } else { facts };
    let facts = facts.port(port).control_plane("cp-1", "127.0.0.2");
    let facts_yaml = lb.facts(facts, port).worker(Worker::new(NODE).address(node_ip)).yaml();
    let (facts, secrets) = common::facts_and_secrets(&facts_yaml, tmp.path(), &ca.key_pem);
    let worker = facts.worker(NODE).unwrap();
    if !fresh_x509 {
        sim.set_tokens(&mk8s_gen::auth::token::token_lines(&facts, &secrets, worker));
    }
    if by_hostname && !v.no_hosts {
        // The simulated apiserver resolves through the /etc/hosts the bundle's
        // hosts-entries.sh gives a control-plane node.
        for (name, ip) in common::control_plane_hosts(&facts, &secrets, tmp.path()) {
            sim.add_host(&name, &ip);
        }
    }
    let out = render::render_node(&facts, &secrets, worker, &Delivery::Preinstalled).unwrap();
    // The image: what a system with snapd has, and the balancer's program.
    for d in common::IMAGE_DIRS {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    if let Some(kind) = lb.program() {
        common::balancer_program(&root, kind);
    }
    let mut config = ModelConfig::new(channel, port);
    config.upgraded = upgraded;
    config.node_ip = node_ip.to_string();
    config.hostname = NODE.to_string();
    let model = Model::new(&tmp.path().join("model"), &root, config);
    let image = common::tree(&root);
    common::boot(&root, &out);
    let w = World { model, sim, root, port, lb, image, _tmp: tmp };
    // Short deadlines and retries for tests.
    common::edit_plan(&w.root, |plan| {
        plan.timing.ready_deadline_secs = 20;
        plan.timing.retry_initial_ms = 50;
        plan.timing.retry_cap_ms = 400;
    });
    w
}

impl World {
    pub(crate) fn run(&self) -> (i32, String) {
        common::run_bootstrap(&self.root, &self.model, None)
    }

    /// Everything the model recorded, for failure messages.
    pub(crate) fn story(&self) -> String {
        let logs = self.model.dir.join("logs");
        let traefik = fs::read_to_string(logs.join("mk8s-traefik.service.out")).unwrap_or_default();
        format!(
            "calls:\n{}\nevents:\n{}\nkubelet: {:?}\nkube-proxy: {:?}\ntraefik log (tail):\n{}",
            self.model.calls().join("\n"),
            self.model.events().join("\n"),
            self.model.kubelet(),
            self.model.kube_proxy(),
            traefik.lines().rev().take(5).collect::<Vec<_>>().join("\n")
        )
    }

    /// The Node is Ready with a heartbeat at or after `since` (within 10 s).
    pub(crate) fn wait_heartbeat(&self, since: SystemTime, what: &str) {
        // lastHeartbeatTime has second precision.
        let since = SystemTime::UNIX_EPOCH
            + Duration::from_secs(since.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs());
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let node = self.sim.node(NODE);
            let ready = node.as_ref().and_then(|n| {
                n.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == "Ready").cloned()
            });
            let fresh = ready.as_ref().is_some_and(|c| {
                c["status"] == "True"
                    && c["lastHeartbeatTime"].as_str().and_then(node_model::parse_rfc3339).is_some_and(|t| t >= since)
            });
            if fresh {
                return;
            }
            assert!(Instant::now() < end, "{what}: no fresh Ready heartbeat: {node:?}\n{}", self.story());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Nothing answers on the apiserver port with the node-local CA's certificate,
    /// and (node-local LB) the balancer on the port reaches the cluster.
    pub(crate) fn assert_worker(&self, what: &str) {
        common::assert_no_local_control_plane(&self.model, what, &|| self.story());
        if self.lb != Lb::External {
            let lb = format!("127.0.0.1:{}", self.port).parse().unwrap();
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                match mk8s_testkit::tls::https_get(lb, "/readyz", Some(&self.sim.ca), None) {
                    // Anonymous: 401 from an AlwaysAllow apiserver, 200 from RBAC,Node.
                    Ok(r) if matches!(r.status, 200 | 401) && r.peer_cert == self.sim.cert_der => break,
                    other => assert!(
                        Instant::now() < end,
                        "{what}: the balancer on {lb} does not reach the cluster: {other:?}\n{}",
                        self.story()
                    ),
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let end = Instant::now() + Duration::from_secs(10);
        while self.model.kube_proxy().is_none_or(|v| v["ok"] != true) {
            assert!(Instant::now() < end, "{what}: kube-proxy cannot reach the apiserver\n{}", self.story());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn scenario(channel: &str, upgraded: bool, lb: Lb, node_ip: &str) {
    scenario_with(channel, upgraded, lb, node_ip, Variant::default())
}

fn scenario_with(channel: &str, upgraded: bool, lb: Lb, node_ip: &str, v: Variant) {
    let w = world_with(channel, upgraded, lb, node_ip, v);
    let started = SystemTime::now();
    let (code, log) = w.run();
    assert_eq!(code, 0, "the join failed:\n{log}\n{}", w.story());
    w.wait_heartbeat(started, "after the join");
    w.assert_worker("after the join");
    common::assert_joined_model(&w.model, &w.root, true, "after the join", &|| w.story());

    let refreshed = SystemTime::now();
    w.model.refresh();
    w.assert_worker("after a snap refresh");
    w.wait_heartbeat(refreshed, "after a snap refresh");

    let rebooted = SystemTime::now();
    w.model.reboot();
    w.assert_worker("after a reboot");
    w.wait_heartbeat(rebooted, "after a reboot");

    // `kubectl logs` of a pod on the worker, as this control plane dials kubelets.
    // (A kubelet that has just restarted may not listen yet: retried briefly.)
    let end = Instant::now() + Duration::from_secs(5);
    let mut logs = w.sim.logs_from(NODE);
    while logs.is_err() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
        logs = w.sim.logs_from(NODE);
    }
    assert_eq!(logs.as_deref(), Ok(node_model::LOG_BODY), "kubectl logs from the worker\n{}", w.story());

    // A rerun of the bootstrap (the unit started again) changes nothing.
    w.model.clear_calls();
    let (code, log) = w.run();
    assert_eq!(code, 0, "the rerun failed:\n{log}\n{}", w.story());
    assert!(log.contains("already joined"), "{log}");
    assert_eq!(w.model.calls(), Vec::<String>::new(), "the rerun touched the node");
    w.assert_worker("after a rerun");
}

#[test]
fn v1_34_builtin_rbac() {
    scenario_with("1.34/stable", false, Lb::Builtin, "127.0.0.55", Variant { rbac: true, ..Variant::default() });
}

#[test]
fn v1_20_external() {
    scenario("1.20/stable", false, Lb::External, "127.0.0.12");
}

#[test]
fn v1_22_traefik() {
    scenario("1.22/stable", false, Lb::Traefik, "127.0.0.13");
}

#[test]
fn v1_22_external() {
    scenario("1.22/stable", false, Lb::External, "127.0.0.14");
}

#[test]
fn v1_24_traefik() {
    scenario("1.24/stable", false, Lb::Traefik, "127.0.0.15");
}

#[test]
fn v1_24_external() {
    scenario("1.24/stable", false, Lb::External, "127.0.0.16");
}

#[test]
fn v1_26_traefik() {
    scenario("1.26/stable", false, Lb::Traefik, "127.0.0.17");
}

#[test]
fn v1_26_external() {
    scenario("1.26/stable", false, Lb::External, "127.0.0.18");
}

#[test]
fn v1_30_fresh_traefik() {
    scenario("1.30/stable", false, Lb::Traefik, "127.0.0.19");
}

#[test]
fn v1_30_fresh_external() {
    scenario("1.30/stable", false, Lb::External, "127.0.0.20");
}

#[test]
fn v1_30_upgraded_traefik() {
    scenario("1.30/stable", true, Lb::Traefik, "127.0.0.21");
}

#[test]
fn v1_30_upgraded_external() {
    scenario("1.30/stable", true, Lb::External, "127.0.0.22");
}

#[test]
fn v1_34_traefik() {
    scenario("1.34/stable", false, Lb::Traefik, "127.0.0.23");
}

#[test]
fn v1_34_external() {
    scenario("1.34/stable", false, Lb::External, "127.0.0.24");
}

/// Without our `/etc/microk8s.yaml` the install hook takes MicroK8s's default
/// launch configuration (`addons: [dns]`), which the worker's cluster-agent retries
/// every tick forever once the node is clustered: the model shows it.
#[test]
fn without_our_launch_configuration_the_agent_never_settles() {
    let w = world("1.30/stable", false, Lb::External, "127.0.0.25");
    fs::remove_file(w.root.join("etc/microk8s.yaml")).unwrap();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}\n{}", w.story());
    assert_eq!(w.model.state()["launchConfig"], "$SNAP/microk8s.default.yaml");
    std::thread::sleep(Duration::from_secs(2));
    let l = w.model.launcher().unwrap_or_default();
    assert!(l["failures"].as_u64().unwrap_or(0) >= 2, "{l}");
    assert!(l["applied"].as_array().is_none_or(|a| a.is_empty()), "{l}");
    assert!(l["lastError"].as_str().unwrap_or("").contains("acting as a node in a cluster"), "{l}");
}

#[test]
fn v1_24_x509_haproxy() {
    scenario_with("1.24/stable", false, Lb::Haproxy, "127.0.0.26", Variant { x509: true, ..Variant::default() });
}

#[test]
fn v1_30_fresh_haproxy_rbac() {
    scenario_with("1.30/stable", false, Lb::Haproxy, "127.0.0.28", Variant { rbac: true, ..Variant::default() });
}

#[test]
fn v1_20_haproxy_rbac() {
    scenario_with("1.20/stable", false, Lb::Haproxy, "127.0.0.30", Variant { rbac: true, ..Variant::default() });
}

/// A <=1.27 control plane dials the kubelet by the Node's Hostname address (the
/// worker's name): without the bundle's hosts entries (or DNS) it cannot resolve
/// it, and `kubectl logs` fails although the Node is Ready.
#[test]
fn a_control_plane_that_cannot_resolve_worker_names_fails_logs() {
    let w =
        world_with("1.26/stable", false, Lb::External, "127.0.0.31", Variant { no_hosts: true, ..Variant::default() });
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}\n{}", w.story());
    let err = w.sim.logs_from(NODE).unwrap_err();
    assert!(err.contains(&format!("lookup {NODE}: no such host")), "{err}");
}
