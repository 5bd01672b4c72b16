//! The world of the `leave` scenarios (`leave.rs`): the model of a MicroK8s node
//! (`mk8s_testkit::node_model`) booted with a real `mk8s-gen` user-data, the real
//! `mk8s-bootstrap`, and the simulated apiserver as the control plane.
//!
//! The join scenarios that used to run here (every channel with traefik, HAProxy,
//! the built-in balancer and an external balancer, upgraded 1.30, a control plane
//! without hosts entries, MicroK8s's default launch configuration) run against the
//! real control plane in `real_apiserver.rs`. What stays on the simulated apiserver
//! is `leave`: its subject is the node (what the join changed, put back, under
//! kills at every command), it sends the apiserver nothing, and its scenarios run
//! the join first many times over, where the real control plane would cost a
//! minute each; the simulated apiserver is held to the real one's answers by
//! `real_apiserver::the_simulated_apiserver_answers_as_the_real_one`.

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
            Lb::Microk8sProxy => facts.lb_microk8s_proxy(),
            Lb::External => facts.lb_external("127.0.0.2", port),
        }
    }

    /// The kind whose program the node has (baked into the image: traefik;
    /// the agent itself: builtin).
    fn program(self) -> Option<&'static str> {
        match self {
            Lb::Builtin => Some("builtin"),
            Lb::Traefik => Some("traefik"),
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

impl common::Joined for World {
    fn root(&self) -> &std::path::Path {
        &self.root
    }
    fn model(&self) -> &Model {
        &self.model
    }
    fn image(&self) -> &common::Tree {
        &self.image
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn run(&self) -> (i32, String) {
        World::run(self)
    }
    fn story(&self) -> String {
        World::story(self)
    }
    fn annotations(&self) -> serde_json::Value {
        self.sim.node(NODE).and_then(|n| n.pointer("/metadata/annotations").cloned()).unwrap_or_default()
    }
    fn assert_worker(&self, what: &str) {
        World::assert_worker(self, what)
    }
}
