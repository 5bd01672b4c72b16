//! Bootstrap scenarios: the real `mk8s-bootstrap` binary in a temp root, with the
//! files of a real `mk8s-gen` user-data written as cloud-init would, substitute
//! `snap`/`systemctl`, and a real control plane: etcd and one kube-apiserver
//! started with that channel's MicroK8s default args (`upstream::ControlPlane`),
//! whose audit log is the record of what the bootstrap asked. A thread stands in
//! for the kubelet once the substitute systemctl started it: it registers the
//! Node and heartbeats it, with the admin credential, as a kubelet would.
//!
//! Faults are the real program's: an apiserver killed and started again, its
//! datastore stopped (`/readyz` fails), a token file merged later (the apiserver
//! restarted, as merge-known-tokens.sh does), a control plane of another CA on the
//! same address.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mk8s_bootstrap::plan::{JoinPlan, PLAN_PATH};
use mk8s_gen::render::{self, Delivery};
use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::facts::{FactsYaml, Traefik, Worker};
use mk8s_testkit::fakes::Fakes;
use mk8s_testkit::pki::Ca;
use mk8s_testkit::upstream::{Audited, ControlPlane, Options};
use mk8s_testkit::workspace;
use sha2::Digest;

use crate::common;

const BIN: &str = env!("CARGO_BIN_EXE_mk8s-bootstrap");
const NODE: &str = "worker-1";
/// The control plane's one apiserver (its port a free one).
const CP_IP: &str = "127.0.0.2";

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    fakes: Fakes,
    cp: ControlPlane,
    user_data: String,
    token_csv: String,
    /// Ends the kubelet stand-in's thread.
    kubelet_stop: Arc<AtomicBool>,
}

impl Drop for World {
    fn drop(&mut self) {
        self.kubelet_stop.store(true, Ordering::Relaxed);
    }
}

/// Generate facts for a cluster whose apiserver is the real one, render the
/// user-data with the real generator, and "boot" a node: write its files.
fn world(channel: &str) -> World {
    world_with(|f| f.channel(channel))
}

/// `microk8s` sets the facts' `cluster.microk8s` (the channel, a local snap).
fn world_with(microk8s: impl FnOnce(FactsYaml) -> FactsYaml) -> World {
    world_full(|f, port| external_lb(microk8s(f), port))
}

/// The load balancer is the apiserver's own address: `mode: external`.
fn external_lb(facts: FactsYaml, port: u16) -> FactsYaml {
    facts.lb_external(CP_IP, port)
}

/// `auth: x509` on 1.30, the certificates valid from `not_before` for `days`.
fn x509_world(not_before: &str, days: u32) -> World {
    world_full(|f, port| external_lb(f.channel("1.30/stable"), port).auth_x509(not_before, days))
}

/// The general form: `facts` completes the cluster's facts (the channel, the load
/// balancer, the auth) for the apiserver's port. The control plane runs the
/// channel's default args; a token cluster on 1.28+ is one upgraded from 1.27,
/// which keeps 1.27's args (`--token-auth-file`), as a refresh does.
fn world_full(facts: impl FnOnce(FactsYaml, u16) -> FactsYaml) -> World {
    world_full_with(Authz::AlwaysAllow, facts)
}

/// [`world_full`] on a control plane with `authz`.
fn world_full_with(authz: Authz, facts: impl FnOnce(FactsYaml, u16) -> FactsYaml) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let fakes = Fakes::new(&tmp.path().join("fake"), &root);
    let ca = Arc::new(Ca::new("10.152.183.1"));
    let mut options = Options::new(0, authz);
    options.ips = vec![CP_IP.into()];
    options.ca = Some(ca.clone());
    options.audit = true;
    fs::write(tmp.path().join("ca.crt"), &ca.cert_pem).unwrap();
    let port = options.port;
    let base = FactsYaml::new("scen").ca_file("ca.crt").port(port).control_plane("cp-1", CP_IP);
    let facts_yaml = facts(base, port).worker(Worker::new(NODE).address("127.0.0.9")).yaml();
    let (facts, secrets) = common::facts_and_secrets(&facts_yaml, tmp.path(), &ca.key_pem);
    let x509 = common::is_x509(&facts);
    let worker = facts.worker(NODE).unwrap();
    let token_csv = if x509 { String::new() } else { mk8s_gen::auth::token::token_lines(&facts, &secrets, worker) };
    let minor = mk8s_testkit::node_model::minor_of(&facts.channel.text);
    options.minor = if x509 { minor } else { minor.min(27) };
    options.known_tokens = token_csv.clone();
    let out = render::render_node(&facts, &secrets, worker, &Delivery::Preinstalled).unwrap();
    let user_data = mk8s_gen::output::cloud_config::cloud_config(&out);
    let cp = ControlPlane::start(options);
    let w = World { _tmp: tmp, root, fakes, cp, user_data, token_csv, kubelet_stop: Arc::default() };
    w.boot();
    w
}

impl World {
    /// What cloud-init does with our user-data: write_files, with modes, decoded.
    fn boot(&self) {
        let _ = fs::remove_dir_all(&self.root);
        fs::create_dir_all(&self.root).unwrap();
        common::write_files(&self.root, &self.user_data);
        self.fakes.clear_calls();
    }

    /// Change the plan on the node (shorter deadlines for tests, or tampering).
    fn edit_plan(&self, f: impl FnOnce(&mut JoinPlan)) {
        common::edit_plan(&self.root, f);
    }

    fn fast(&self, deadline_secs: u64) {
        self.edit_plan(|p| {
            p.timing.ready_deadline_secs = deadline_secs;
            p.timing.retry_initial_ms = 50;
            p.timing.retry_cap_ms = 400;
            p.timing.auth_grace_secs = 2;
        });
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(&self.root);
        c.arg("--systemctl").arg(&self.fakes.systemctl);
        c.arg("--snap").arg(&self.fakes.snap);
        c.arg("--curl").arg(&self.fakes.curl);
        c
    }

    /// Run to completion: (exit code, stderr).
    fn run(&self) -> (i32, String) {
        let out = self.command().output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
    }

    /// Stand in for kubelet: once the worker's service has been (re)started since
    /// the last boot, the Node is registered and reported Ready with a fresh
    /// heartbeat every 500 ms (a real kubelet: every 10 s), as long as the world
    /// lives.
    fn kubelet(&self) {
        let (client, marker, stop) =
            (self.cp.admin_client(), self.fakes.dir.join("kubelet-started"), self.kubelet_stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if marker.exists() {
                    let _ = client.report_node(NODE, true, std::time::SystemTime::now());
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
    }

    /// The requests the node made with a credential of its own.
    /// (Requests that failed authentication, user `""`, can only be the node's:
    /// nothing else here calls without the admin certificate.)
    fn node_requests(&self) -> Vec<Audited> {
        let node = |u: &str| u.starts_with("system:node:") || u == "system:kube-proxy" || u.is_empty();
        self.cp.requests().into_iter().filter(|r| node(&r.user)).collect()
    }

    fn snap_data(&self, rel: &str) -> PathBuf {
        self.root.join("var/snap/microk8s/current").join(rel)
    }

    fn read(&self, abs: &str) -> String {
        fs::read_to_string(self.root.join(abs.trim_start_matches('/'))).unwrap_or_default()
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.read("/var/lib/mk8s-worker/status.json")).unwrap()
    }

    /// Every file under the root: path -> (mode, sha256). The status file's timings
    /// differ between runs by nature and are left out.
    fn snapshot(&self) -> BTreeMap<String, (u32, String)> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, String)>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                if p.is_dir() {
                    walk(base, &p, out);
                } else if rel != "var/lib/mk8s-worker/status.json" {
                    let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
                    out.insert(rel, (mode, hex::encode(sha2::Sha256::digest(fs::read(&p).unwrap()))));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &self.root, &mut out);
        out
    }
}

fn units(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("snap.microk8s.daemon-{n}.service")).collect()
}

/// The commands a clean join runs, in order, for a flavour.
fn expected_calls(channel: &str, stops: &[&str], starts: &[&str]) -> Vec<String> {
    let mut v = vec![
        "snap list microk8s".to_string(),
        "snap wait system seed.loaded".into(),
        format!("snap install microk8s --classic --channel {channel}"),
        // `refresh: hold`, the default.
        "snap refresh --hold microk8s".into(),
    ];
    for u in units(stops) {
        v.push(format!("systemctl stop {u}"));
        v.push(format!("systemctl disable {u}"));
    }
    for u in units(starts) {
        v.push(format!("systemctl enable {u}"));
        v.push(format!("systemctl restart {u}"));
    }
    v
}

fn happy_path(channel: &str, stops: &[&str], starts: &[&str], locks: &[&str]) -> World {
    let w = world(channel);
    w.fast(60);
    w.kubelet();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}");
    assert_eq!(w.fakes.calls(), expected_calls(channel, stops, starts), "{log}");

    // Installed files, with their modes.
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let ca = w.snap_data("certs/ca.remote.crt");
    assert_eq!(fs::read_to_string(&ca).unwrap(), w.cp.ca.cert_pem.replace("\r\n", "\n"));
    assert_eq!(mode(&ca), 0o644);
    for kc in ["credentials/kubelet.config", "credentials/proxy.config"] {
        let p = w.snap_data(kc);
        assert_eq!(mode(&p), 0o600, "{kc}");
        assert!(fs::read_to_string(&p).unwrap().contains(&format!("server: \"https://{}\"", w.cp.apiservers[0].addr)));
    }
    assert_eq!(
        fs::read_to_string(w.snap_data("certs/ca.crt")).unwrap(),
        "local node CA\n",
        "the node's own CA is kept"
    );
    let kubelet_args = fs::read_to_string(w.snap_data("args/kubelet")).unwrap();
    for want in [
        "--cluster-dns=10.152.183.10",
        "--cluster-domain=cluster.local",
        "--client-ca-file=${SNAP_DATA}/certs/ca.remote.crt",
        "--node-labels=microk8s.io/cluster=true,node.kubernetes.io/microk8s-worker=microk8s-worker",
        "--hostname-override=worker-1",
        "--node-ip=127.0.0.9",
        "--kubeconfig=${SNAP_DATA}/credentials/kubelet.config",
    ] {
        assert_eq!(kubelet_args.lines().filter(|l| *l == want).count(), 1, "{want} in\n{kubelet_args}");
    }
    assert!(!kubelet_args.contains("microk8s-controlplane"), "the control-plane label is replaced");
    assert!(!kubelet_args.contains("certs/ca.crt"), "one --client-ca-file");
    assert!(fs::read_to_string(w.snap_data("args/kube-proxy")).unwrap().contains("--hostname-override=worker-1\n"));
    for l in locks {
        assert!(w.snap_data(&format!("var/lock/{l}")).exists(), "{l}");
    }

    // Stamp, status, CAPI contract, secrets cleaned up.
    assert!(w.read("/var/lib/mk8s-worker/joined").starts_with("node worker-1\n"));
    assert_eq!(w.read("/run/cluster-api/bootstrap-success.complete"), "success");
    let st = w.status();
    assert_eq!(
        (st["result"].as_str(), st["phase"].as_str(), st["node"].as_str()),
        (Some("joined"), Some("finish"), Some(NODE))
    );
    assert_eq!(st["steps"].as_array().unwrap().len(), 6);
    assert!(!w.root.join("etc/mk8s-worker/kubelet.config").exists(), "staged secret removed");
    assert!(!w.root.join("etc/mk8s-worker/proxy.config").exists(), "staged secret removed");
    assert!(w.root.join("etc/mk8s-worker/ca.crt").exists(), "public files stay");

    // One line per step at least, and never a secret.
    for step in ["plan", "snap", "control-plane-off", "load-balancer", "install", "apiserver", "start", "done"] {
        assert!(log.contains(&format!("mk8s-bootstrap[{step}]")), "no line for {step}:\n{log}");
    }
    for token in w.token_csv.lines().map(|l| l.split(',').next().unwrap()) {
        assert!(!log.contains(token), "a token was logged");
        assert!(!w.read("/var/lib/mk8s-worker/status.json").contains(token));
    }
    // It checked the credential before starting anything (404 = not registered yet).
    let reqs = w.node_requests();
    let node = |r: &Audited, code: u16| r.uri == "/api/v1/nodes/worker-1" && r.code == code;
    assert!(reqs.iter().any(|r| node(r, 404) && r.user == "system:node:worker-1"), "{reqs:?}");
    assert!(reqs.iter().any(|r| node(r, 200)), "{reqs:?}");
    w
}

#[test]
fn joins_a_1_20_node_with_the_separate_daemons() {
    happy_path(
        "1.20/stable",
        &["apiserver", "apiserver-kicker", "controller-manager", "control-plane-kicker", "scheduler"],
        &["kubelet", "proxy"],
        &["clustered.lock"],
    );
}

#[test]
fn joins_a_kubelite_node() {
    happy_path(
        "1.24/stable",
        &["kubelite", "k8s-dqlite", "apiserver-kicker"],
        &["kubelite"],
        &["clustered.lock", "no-k8s-dqlite"],
    );
}

#[test]
fn joins_a_1_30_node_with_the_apiserver_proxy_kept_off() {
    happy_path(
        "1.30/stable",
        &["kubelite", "k8s-dqlite", "apiserver-kicker", "apiserver-proxy"],
        &["kubelite"],
        &["clustered.lock", "no-k8s-dqlite"],
    );
}

#[test]
fn a_second_run_after_success_changes_nothing() {
    let w = happy_path(
        "1.30/stable",
        &["kubelite", "k8s-dqlite", "apiserver-kicker", "apiserver-proxy"],
        &["kubelite"],
        &["clustered.lock", "no-k8s-dqlite"],
    );
    let before = w.snapshot();
    w.fakes.clear_calls();
    let requests = w.node_requests().len();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("already joined"), "{log}");
    assert_eq!(w.fakes.calls(), Vec::<String>::new(), "nothing restarted or installed");
    assert_eq!(w.node_requests().len(), requests, "no apiserver traffic");
    assert_eq!(w.snapshot(), before);
}

#[test]
fn apiserver_down_for_a_while_then_back() {
    let mut w = world("1.28/stable");
    w.fast(60);
    w.kubelet();
    w.cp.apiservers[0].kill();
    let start = Instant::now();
    let child = w.command().stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    w.cp.restart(0);
    let back = Instant::now();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    // With a 400 ms cap the node notices within a cap or two of recovery.
    let after = back.elapsed();
    assert!(after < Duration::from_secs(5), "joined {after:?} after recovery\n{log}");
    assert!(start.elapsed() >= Duration::from_secs(3));
    let failed: Vec<_> = log.lines().filter(|l| l.starts_with("mk8s-bootstrap[apiserver]: attempt")).collect();
    assert!(failed.len() >= 3, "one line per failed attempt:\n{log}");
    // Not a tight loop: with full jitter and a 400 ms cap, well under 100 tries in 3 s.
    assert!(failed.len() < 100, "{} attempts in 3 s", failed.len());
}

#[test]
fn apiserver_not_ready_then_ready() {
    let mut w = world("1.28/stable");
    w.fast(60);
    w.kubelet();
    // The datastore down: the apiserver serves, and its readiness fails (within a
    // few seconds; each answer then takes its etcd check's timeout, about 4 s).
    w.cp.stop_etcd();
    let end = Instant::now() + Duration::from_secs(30);
    while w.cp.admin_get("/readyz").0 != 500 {
        assert!(Instant::now() < end, "the apiserver stayed ready without its datastore");
        std::thread::sleep(Duration::from_millis(200));
    }
    let child = w.command().stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(6));
    w.cp.start_etcd();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let not_ready = |r: &Audited| r.uri == "/readyz" && r.code == 500 && r.user == "system:node:worker-1";
    assert!(w.cp.requests().iter().any(not_ready), "{:?}", w.node_requests());
    assert!(log.contains("GET /readyz answered 500"), "{log}");
}

#[test]
fn a_token_the_control_plane_does_not_know_is_fatal() {
    let mut w = world("1.28/stable");
    w.fast(60);
    w.cp.set_known_tokens("someone-elses-token,system:node:worker-1,x,\"system:nodes\"\n");
    let (code, log) = w.run();
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("does not know it") && log.contains("merge-known-tokens.sh"), "{log}");
    let calls = w.fakes.calls();
    assert!(!calls.iter().any(|c| c.contains("restart")), "nothing started with a rejected credential: {calls:?}");
    let st = w.status();
    assert_eq!(st["result"], "failed");
    assert_eq!(st["phase"], "apiserver");
    assert!(st["lastError"].as_str().unwrap().contains("401"));
}

#[test]
fn another_nodes_token_is_refused() {
    // The control plane knows the token, but as another node's. Only RBAC,Node can
    // tell: under AlwaysAllow (the default) any authenticated user may read any Node.
    let mut w = world_full_with(Authz::RbacNode, |f, port| external_lb(f.channel("1.28/stable"), port));
    w.fast(60);
    let csv = w.token_csv.replace("system:node:worker-1", "system:node:worker-2");
    w.cp.set_known_tokens(&csv);
    let (code, log) = w.run();
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("403"), "{log}");
}

#[test]
fn a_ca_that_does_not_match_its_pin_stops_before_anything_is_installed() {
    let w = world("1.28/stable");
    w.edit_plan(|p| p.ca.pin = format!("sha256:{}", "0".repeat(64)));
    let (code, log) = w.run();
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("does not match its pin"), "{log}");
    assert_eq!(w.fakes.calls(), Vec::<String>::new());
    assert!(!w.root.join("var/snap").exists(), "nothing installed");
    assert!(w.node_requests().is_empty(), "no connection before the pin check");
}

#[test]
fn a_tampered_staged_file_is_refused() {
    let w = world("1.28/stable");
    fs::write(w.root.join("etc/mk8s-worker/kubelet.config"), "apiVersion: v1\n").unwrap();
    let (code, log) = w.run();
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("does not match the plan's sha256"), "{log}");
    assert_eq!(w.fakes.calls(), Vec::<String>::new());
}

#[test]
fn a_bad_plan_exits_78() {
    let w = world("1.28/stable");
    fs::write(w.root.join(PLAN_PATH.trim_start_matches('/')), "{\"apiVersion\": \"mk8s-worker/v9\"}").unwrap();
    let (code, log) = w.run();
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("mk8s-worker/v9"), "{log}");
    let out = Command::new(BIN).arg("--nonsense").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn no_network_to_the_snap_store_is_retried_then_exits_75() {
    let w = world("1.28/stable");
    w.fast(3);
    w.fakes.set_store_down(true);
    let t = Instant::now();
    let (code, log) = w.run();
    assert_eq!(code, 75, "{log}");
    assert!(t.elapsed() < Duration::from_secs(10));
    let installs = w.fakes.calls().iter().filter(|c| c.starts_with("snap install")).count();
    assert!(installs >= 3, "retried: {installs}\n{log}");
    let st = w.status();
    assert_eq!(st["result"], "retrying");
    assert!(st["lastError"].as_str().unwrap().contains("api.snapcraft.io"));
    // systemd restarts the unit; this time the store answers.
    w.fakes.set_store_down(false);
    w.fast(60);
    w.kubelet();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}");
}

/// Paths whose presence, mode or content differ.
fn diff(got: &BTreeMap<String, (u32, String)>, want: &BTreeMap<String, (u32, String)>) -> Vec<String> {
    let mut keys: Vec<_> = got.keys().chain(want.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| got.get(k) != want.get(k))
        .map(|k| format!("{k}: got {:?}, want {:?}", got.get(&k), want.get(&k)))
        .collect()
}

/// Reference: the final state of an uninterrupted run.
fn reference(w: &World) -> (BTreeMap<String, (u32, String)>, usize) {
    w.boot();
    w.fast(60);
    w.kubelet();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}");
    (w.snapshot(), w.fakes.calls().len())
}

#[test]
fn killed_before_every_command_and_rerun_converges() {
    let w = world("1.20/stable");
    let (want, n) = reference(&w);
    assert!(n >= 10, "{n}");
    for k in 1..=n as u32 {
        w.boot();
        w.fast(60);
        w.fakes.kill_at(Some(k));
        let (code, _) = w.run();
        assert_eq!(code, -1, "run {k} was to be killed by SIGKILL");
        w.fakes.kill_at(None);
        let (code, log) = w.run();
        assert_eq!(code, 0, "rerun after a kill at command {k}: {log}");
        let got = w.snapshot();
        assert_eq!(diff(&got, &want), Vec::<String>::new(), "state after a kill at command {k} differs");
    }
}

#[test]
fn killed_at_arbitrary_moments_and_rerun_converges() {
    let w = world("1.30/stable");
    let (want, _) = reference(&w);
    let mut killed = 0;
    for delay_ms in (0..=240).step_by(12) {
        w.boot();
        w.fast(60);
        let mut child = w.command().stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        let _ = child.wait();
        let (code, log) = w.run();
        assert_eq!(code, 0, "rerun after a kill at {delay_ms} ms: {log}");
        assert_eq!(diff(&w.snapshot(), &want), Vec::<String>::new(), "state after a kill at {delay_ms} ms differs");
        // No temp file survives a rerun.
        assert!(!w.snapshot().keys().any(|k| k.contains("mk8s-tmp")));
    }
    assert!(killed >= 5, "only {killed} runs were actually interrupted");
}

#[test]
fn air_gapped_install_from_a_local_snap_and_assertion() {
    let w = world_with(|f| {
        f.channel("1.28/stable")
            .local_snap("/var/cache/mk8s/microk8s_1234.snap", "/var/cache/mk8s/microk8s_1234.assert")
            .local_base_snap("/var/cache/mk8s/core20_2015.snap", "/var/cache/mk8s/core20_2015.assert")
    });
    w.fast(60);
    w.fakes.set_store_down(true);
    // Without the files on the node: a clear, fatal error.
    let (code, log) = w.run();
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("air-gapped install"), "{log}");
    // With them (baked into the image): installs without the store.
    w.boot();
    w.fast(60);
    w.kubelet();
    let cache = w.root.join("var/cache/mk8s");
    fs::create_dir_all(&cache).unwrap();
    for f in ["microk8s_1234.snap", "microk8s_1234.assert", "core20_2015.snap", "core20_2015.assert"] {
        fs::write(cache.join(f), f).unwrap();
    }
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}");
    let calls = w.fakes.calls();
    let p = |f: &str| cache.join(f).display().to_string();
    assert_eq!(
        calls[2..7],
        [
            "snap list core20".to_string(),
            format!("snap ack {}", p("core20_2015.assert")),
            format!("snap install {}", p("core20_2015.snap")),
            format!("snap ack {}", p("microk8s_1234.assert")),
            format!("snap install {} --classic", p("microk8s_1234.snap")),
        ],
        "{calls:?}"
    );
}

/// Without its base snap (and no store), MicroK8s does not install offline: the
/// generator warns, and the bootstrap's install fails with snapd's reason.
#[test]
fn air_gapped_without_the_base_snap_is_warned_about() {
    let microk8s = |f: FactsYaml| {
        f.channel("1.30/stable").local_snap("/var/cache/mk8s/microk8s_1.snap", "/var/cache/mk8s/microk8s_1.assert")
    };
    let text = microk8s(FactsYaml::new("a"))
        .ca_file("ca.crt")
        .control_plane("cp-1", "10.0.0.2")
        .worker(Worker::new("w").address("10.0.0.9"))
        .yaml();
    let dir = tempfile::tempdir().unwrap();
    fs::copy(workspace().join("fixtures/seed/ca.crt"), dir.path().join("ca.crt")).unwrap();
    let loaded = mk8s_gen::load(&text, dir.path());
    let report = loaded.report;
    assert!(loaded.facts.is_some() && !report.has_errors(), "valid, with a warning: {:?}", report.problems);
    let warning = report.problems.iter().find(|p| p.path == "$.cluster.microk8s.local-snap").expect("a warning");
    assert!(warning.message.contains("core20"), "{}", warning.message);

    let w = world_with(microk8s);
    w.fast(3);
    w.fakes.set_store_down(true);
    let cache = w.root.join("var/cache/mk8s");
    fs::create_dir_all(&cache).unwrap();
    for f in ["microk8s_1.snap", "microk8s_1.assert"] {
        fs::write(cache.join(f), f).unwrap();
    }
    let (code, log) = w.run();
    assert_eq!(code, 75, "{log}");
    assert!(log.contains("prerequisite"), "{log}");
}

/// Kills the traefik that the substitute systemctl started.
struct KillPidFile(PathBuf);

impl Drop for KillPidFile {
    fn drop(&mut self) {
        if let Ok(pid) = fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
        }
    }
}

/// What the real mk8s-traefik.service does when started, with the configuration
/// relocated under the root; the guard kills that traefik.
fn traefik_unit(w: &World) -> KillPidFile {
    let pidfile = w.fakes.dir.join("traefik.pid");
    w.fakes.on_start(
        "mk8s-traefik.service",
        &format!(
            "#!/bin/sh\nsed 's#/etc/mk8s-worker/#{root}/etc/mk8s-worker/#g' '{root}/etc/mk8s-worker/traefik/traefik.yaml' > '{fake}/traefik.yaml'\nsetsid '{root}/usr/local/bin/traefik' --configFile='{fake}/traefik.yaml' > '{fake}/traefik.log' 2>&1 < /dev/null &\necho $! > '{pid}'\n",
            root = w.root.display(),
            fake = w.fakes.dir.display(),
            pid = pidfile.display()
        ),
    );
    KillPidFile(pidfile)
}

/// A traefik "release" tarball holding a `traefik` that runs the real one.
fn traefik_tarball(dir: &Path) -> String {
    let real = mk8s_testkit::tools::require("traefik");
    let stage = dir.join("release");
    fs::create_dir_all(&stage).unwrap();
    mk8s_testkit::node_model::write_script(
        &stage.join("traefik"),
        &format!("#!/bin/sh\nexec '{}' \"$@\"\n", real.display()),
    );
    fs::write(stage.join("LICENSE.md"), "MIT\n").unwrap();
    let tarball = dir.join("traefik_v3_linux_amd64.tar.gz");
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&stage)
        .args(["traefik", "LICENSE.md"])
        .status()
        .unwrap();
    assert!(st.success());
    hex::encode(sha2::Sha256::digest(fs::read(&tarball).unwrap()))
}

fn node_local_world(sha256: &str) -> World {
    world_full(|f, _| {
        let traefik =
            Traefik::fetched("3.7.15", "https://downloads.example.invalid/traefik_v3_linux_amd64.tar.gz", sha256);
        f.channel("1.30/stable").lb_traefik(Some(traefik)).health_check("1s", "500ms")
    })
}

#[test]
fn node_local_traefik_is_fetched_verified_started_and_carries_the_join() {
    let dir = tempfile::tempdir().unwrap();
    let sha = traefik_tarball(dir.path());
    let w = node_local_world(&sha);
    w.fakes.serve_download(&dir.path().join("traefik_v3_linux_amd64.tar.gz"));
    let _guard = traefik_unit(&w);
    w.fast(60);
    w.kubelet();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}\n{}", fs::read_to_string(w.fakes.dir.join("traefik.log")).unwrap_or_default());
    let installed = w.root.join("usr/local/bin/traefik");
    assert_eq!(fs::metadata(&installed).unwrap().permissions().mode() & 0o777, 0o755);
    assert!(fs::read_to_string(&installed).unwrap().contains("exec "));
    let fetch = format!(
        "curl -fsSL --globoff --proto =https --proto-redir =https --max-time 300 -o {} https://downloads.example.invalid/traefik_v3_linux_amd64.tar.gz",
        w.root.join("usr/local/bin/.mk8s-download").display()
    );
    assert!(w.fakes.calls().contains(&fetch), "{:?}", w.fakes.calls());
    assert!(w.fakes.calls().contains(&"systemctl enable --now mk8s-traefik.service".to_string()));
    assert!(log.contains("mk8s-traefik.service on 127.0.0.1:"), "{log}");
    assert!(log.contains("reaches an apiserver of this cluster (TLS verified"), "{log}");
    // The apiserver was reached through traefik (TLS passed through: it saw our token).
    assert!(w.node_requests().iter().any(|r| r.user == "system:node:worker-1"));
    assert!(
        !w.root.join("usr/local/bin/.mk8s-download").exists() && !w.root.join("usr/local/bin/.mk8s-unpack").exists()
    );
}

#[test]
fn a_load_balancer_download_with_the_wrong_sha256_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    traefik_tarball(dir.path());
    let w = node_local_world(&"ab".repeat(32));
    w.fakes.serve_download(&dir.path().join("traefik_v3_linux_amd64.tar.gz"));
    w.fast(60);
    let (code, log) = w.run();
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("refusing it"), "{log}");
    assert!(!w.root.join("usr/local/bin/traefik").exists());
}

#[test]
fn joins_with_x509_client_certificates() {
    let w = x509_world("2026-01-01", 3650);
    w.fast(60);
    w.kubelet();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}");
    let kc = fs::read_to_string(w.snap_data("credentials/kubelet.config")).unwrap();
    assert!(kc.contains("client-certificate-data:") && !kc.contains("token:"), "{kc}");
    // The apiserver authenticated the node by its certificate, no token anywhere.
    let reqs = w.node_requests();
    assert!(
        reqs.iter().any(|r| r.uri == "/api/v1/nodes/worker-1" && r.user == "system:node:worker-1" && r.code == 404),
        "{reqs:?}"
    );
    assert!(!log.contains("BEGIN"), "no key material in the log");
}

#[test]
fn x509_certificates_from_another_ca_are_fatal() {
    let w = x509_world("2026-01-01", 3650);
    // Same plan, but the apiserver's CA now differs from the one that signed us:
    // a control plane of another CA, on the same address.
    let mut w = w;
    let mut options = w.cp.options.clone();
    options.ca = Some(Arc::new(Ca::new("10.152.183.1")));
    w.cp.apiservers[0].kill();
    w.cp = ControlPlane::start(options);
    w.fast(5);
    let (code, log) = w.run();
    // The server's certificate no longer verifies against the plan's CA: retried
    // (a starting load balancer can do this briefly), then 75 at the deadline.
    assert_eq!(code, 75, "{log}");
    assert!(log.contains("does not verify against the cluster CA"), "{log}");
}

fn node_local(kind: &str, channel: &str) -> World {
    world_full(|f, _| f.channel(channel).lb_node_local(kind))
}

#[test]
fn joins_through_haproxy_started_by_its_unit() {
    let w = node_local("haproxy", "1.28/stable");
    let pidfile = w.fakes.dir.join("haproxy.pid");
    let _guard = KillPidFile(pidfile.clone());
    // cloud-init's `packages: [haproxy]` put the binary there.
    let bin = w.root.join("usr/sbin/haproxy");
    fs::create_dir_all(bin.parent().unwrap()).unwrap();
    fs::write(&bin, "").unwrap();
    let haproxy = mk8s_testkit::tools::require("haproxy");
    w.fakes.on_start(
        "mk8s-haproxy.service",
        &format!(
            "#!/bin/sh\nsetsid '{}' -db -f '{}/etc/mk8s-worker/haproxy/haproxy.cfg' > '{}/haproxy.log' 2>&1 < /dev/null &\necho $! > '{}'\n",
            haproxy.display(),
            w.root.display(),
            w.fakes.dir.display(),
            pidfile.display()
        ),
    );
    w.fast(60);
    w.kubelet();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}");
    assert!(w.fakes.calls().contains(&"systemctl enable --now mk8s-haproxy.service".to_string()));
    assert!(w.node_requests().iter().any(|r| r.user == "system:node:worker-1"), "reached through HAProxy");
}

#[test]
fn a_missing_haproxy_package_is_a_clear_fatal_error() {
    let w = node_local("haproxy", "1.28/stable");
    w.fast(60);
    let (code, log) = w.run();
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("packages: [haproxy]"), "{log}");
}

#[test]
fn joins_through_microk8s_own_apiserver_proxy() {
    let w = node_local("microk8s-proxy", "1.30/stable");
    let pidfile = w.fakes.dir.join("proxy.pid");
    let _guard = KillPidFile(pidfile.clone());
    let sd = w.root.join("var/snap/microk8s/current");
    // What run-apiserver-proxy-with-args does (the same sed), with a real traefik
    // standing in for cluster-agent's proxy: both read these traefik-shaped files.
    let traefik = mk8s_testkit::tools::require("traefik");
    w.fakes.on(
        "restart",
        "snap.microk8s.daemon-apiserver-proxy.service",
        &format!(
            "#!/bin/sh\nsd='{sd}'\n[ -e \"$sd/args/traefik\" ] || exit 0\nsed 's@${{SNAP_DATA}}@'\"$sd\"'@g' \"$sd/args/traefik/traefik-template.yaml\" > \"$sd/args/traefik/traefik.yaml\"\nsetsid '{traefik}' --configFile=\"$sd/args/traefik/traefik.yaml\" > '{fake}/proxy.log' 2>&1 < /dev/null &\necho $! > '{pid}'\n",
            sd = sd.display(),
            traefik = traefik.display(),
            fake = w.fakes.dir.display(),
            pid = pidfile.display()
        ),
    );
    w.fast(60);
    w.kubelet();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}\n{}", fs::read_to_string(w.fakes.dir.join("proxy.log")).unwrap_or_default());
    let calls = w.fakes.calls();
    assert!(calls.contains(&"systemctl restart snap.microk8s.daemon-apiserver-proxy.service".to_string()), "{calls:?}");
    assert!(
        !calls.iter().any(|c| c.contains("stop snap.microk8s.daemon-apiserver-proxy")),
        "the proxy is kept: {calls:?}"
    );
    // Upstream's worker join removes the lock as it configures the proxy (1.30
    // scripts/wrappers/join.py update_apiserver_proxy); leave/inspect read it.
    assert!(!sd.join("var/lock/no-apiserver-proxy").exists());
    let provider = fs::read_to_string(sd.join("args/traefik/provider.yaml")).unwrap();
    assert!(provider.contains(&format!("address: \"127.0.0.2:{}\"", w.cp.options.port)), "{provider}");
    assert!(w.node_requests().iter().any(|r| r.user == "system:node:worker-1"), "reached through the proxy");
}

// ---- Fixes from reading MicroK8s's sources (each failed before its fix) ----

/// kubelite reads `clustered.lock` only when it starts
/// (1.22 microk8s-resources/wrappers/run-kubelite-with-args L22-27): after `snap
/// install` its apiserver holds the port with a certificate of the node's own CA
/// until kubelite stops. Stand-in: a TLS server with another CA on 127.0.0.1:PORT
/// that goes away when kubelite is stopped. The balancer (a real traefik) must not
/// be started before, and the check must not be fooled by the local server.
#[test]
fn the_local_control_plane_is_gone_before_the_balancer_starts() {
    let dir = tempfile::tempdir().unwrap();
    let sha = traefik_tarball(dir.path());
    let w = world_full(|f, _| {
        let traefik =
            Traefik::fetched("3.7.15", "https://downloads.example.invalid/traefik_v3_linux_amd64.tar.gz", &sha);
        f.channel("1.22/stable").lb_traefik(Some(traefik))
    });
    w.fakes.serve_download(&dir.path().join("traefik_v3_linux_amd64.tar.gz"));
    // The node's own control plane, listening where the balancer will.
    let local_ca = Ca::new("10.152.183.1");
    let leaf = local_ca.server(&["127.0.0.1"]);
    let handler: mk8s_testkit::tls::Handler =
        Arc::new(|_: &mk8s_testkit::tls::Request| mk8s_testkit::tls::Response::text(200, "ok"));
    let local = mk8s_testkit::tls::TlsServer::start(
        &format!("127.0.0.1:{}", w.cp.options.port),
        mk8s_testkit::tls::server_config(&leaf, false),
        handler,
    )
    .unwrap();
    let local = Arc::new(std::sync::Mutex::new(Some(local)));
    let stopped = w.fakes.dir.join("kubelite-stopped");
    w.fakes.on("stop", "snap.microk8s.daemon-kubelite.service", &format!("#!/bin/sh\ntouch '{}'\n", stopped.display()));
    {
        let (local, stopped) = (local.clone(), stopped.clone());
        std::thread::spawn(move || {
            for _ in 0..600 {
                if stopped.exists() {
                    if let Some(mut s) = local.lock().unwrap().take() {
                        s.stop();
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
    let _guard = traefik_unit(&w);
    w.fast(20);
    w.kubelet();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}\n{}", fs::read_to_string(w.fakes.dir.join("traefik.log")).unwrap_or_default());
    let calls = w.fakes.calls();
    let at = |c: &str| calls.iter().position(|x| x == c).unwrap_or_else(|| panic!("{c} not in {calls:?}"));
    assert!(
        at("systemctl stop snap.microk8s.daemon-kubelite.service") < at("systemctl enable --now mk8s-traefik.service")
    );
    assert!(w.snap_data("var/lock/clustered.lock").exists());
    // Through the balancer, to the cluster's apiserver.
    assert!(w.node_requests().iter().any(|r| r.user == "system:node:worker-1"));
    assert!(log.contains("reaches an apiserver of this cluster"), "{log}");
}

/// While the port is held by a server of another CA, the balancer step waits and
/// says why; a TCP connect is not taken for the balancer.
#[test]
fn a_port_held_by_another_server_is_not_taken_for_the_balancer() {
    let w = node_local("haproxy", "1.30/stable");
    let bin = w.root.join("usr/sbin/haproxy");
    fs::create_dir_all(bin.parent().unwrap()).unwrap();
    fs::write(&bin, "").unwrap();
    let leaf = Ca::new("10.152.183.1").server(&["127.0.0.1"]);
    let handler: mk8s_testkit::tls::Handler =
        Arc::new(|_: &mk8s_testkit::tls::Request| mk8s_testkit::tls::Response::text(200, "ok"));
    let _local = mk8s_testkit::tls::TlsServer::start(
        &format!("127.0.0.1:{}", w.cp.options.port),
        mk8s_testkit::tls::server_config(&leaf, false),
        handler,
    )
    .unwrap();
    w.fast(3);
    let (code, log) = w.run();
    assert_eq!(code, 75, "{log}");
    assert!(log.contains("not from the cluster CA"), "{log}");
    assert!(!w.fakes.calls().iter().any(|c| c.contains("mk8s-haproxy")), "never started: {:?}", w.fakes.calls());
    assert!(w.node_requests().iter().all(|r| r.user.is_empty()), "no credential was sent anywhere");
}

#[test]
fn microk8s_installed_at_another_track_is_refused() {
    let w = world("1.30/stable");
    w.fast(20);
    // An earlier install, at 1.28.
    let r = Command::new(&w.fakes.snap).args(["install", "microk8s", "--classic", "--channel", "1.28/stable"]).output();
    assert!(r.unwrap().status.success());
    w.fakes.clear_calls();
    let (code, log) = w.run();
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("tracking 1.28/stable") && log.contains("1.30/stable"), "{log}");
    assert!(!w.snap_data("var/lock/clustered.lock").exists(), "nothing changed");
}

/// An image cloned from a joined node carries that node's stamp.
#[test]
fn a_stamp_that_is_not_this_plans_is_ignored() {
    let w = world("1.30/stable");
    w.fast(60);
    w.kubelet();
    let stamp = w.root.join("var/lib/mk8s-worker/joined");
    fs::create_dir_all(stamp.parent().unwrap()).unwrap();
    fs::write(&stamp, format!("node worker-7\nplan {}\n", "a".repeat(64))).unwrap();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("ignoring a completion stamp that is not this plan's"), "{log}");
    assert!(w.node_requests().iter().any(|r| r.user == "system:node:worker-1"), "it joined");
    let plan = JoinPlan::from_json(&w.read(PLAN_PATH)).unwrap();
    assert_eq!(fs::read_to_string(&stamp).unwrap(), format!("node worker-1\nplan {}\n", plan.identity()));
    // The credentials are gone from the plan; a rerun still knows it joined.
    assert!(!w.read(PLAN_PATH).contains(&w.token_csv.lines().next().unwrap()[..64]));
    let (code, log) = w.run();
    assert_eq!((code, log.contains("already joined")), (0, true), "{log}");
}

/// A Node left Ready by the machine this one replaces is no evidence.
#[test]
fn a_ready_node_left_by_a_replaced_machine_is_not_taken_for_this_one() {
    let w = world("1.30/stable");
    w.fast(60);
    let client = w.cp.admin_client();
    client.report_node(NODE, true, std::time::SystemTime::now() - Duration::from_secs(3600)).unwrap();
    // This node's kubelet reports 2 s after it is started.
    let marker = w.fakes.dir.join("kubelet-started");
    let reported = Arc::new(std::sync::Mutex::new(None));
    {
        let reported = reported.clone();
        std::thread::spawn(move || {
            for _ in 0..3000 {
                if marker.exists() {
                    std::thread::sleep(Duration::from_secs(2));
                    *reported.lock().unwrap() = Some(Instant::now());
                    client.report_node(NODE, true, std::time::SystemTime::now()).unwrap();
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }
    let (code, log) = w.run();
    let done = Instant::now();
    assert_eq!(code, 0, "{log}");
    let reported = reported.lock().unwrap().expect("the kubelet reported");
    assert!(done >= reported, "finished before this node's kubelet reported");
    assert!(log.contains("older than the kubelet this run started"), "{log}");
    // The kubelet labels only a Node it creates: ours were patched into the old one.
    let node = w.cp.admin_client().node(NODE).unwrap();
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["node.kubernetes.io/microk8s-worker"], "microk8s-worker", "{node}");
    assert!(log.contains("a Node of this name existed before this machine"), "{log}");
}

/// The token reaches the control plane a moment after the node boots.
#[test]
fn a_token_merged_a_little_later_is_waited_for() {
    let mut w = world("1.28/stable");
    w.fast(60);
    w.edit_plan(|p| p.timing.auth_grace_secs = 30);
    w.kubelet();
    w.cp.set_known_tokens("");
    let child = w.command().stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // The operator's merge: the file, and the apiserver restarted to read it.
    let csv = w.token_csv.clone();
    w.cp.set_known_tokens(&csv);
    let out = child.wait_with_output().unwrap();
    let (code, log) = (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string());
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("(401)") && log.contains("retrying for up to 30s"), "{log}");
}

#[test]
fn a_wrong_kube_proxy_credential_is_caught() {
    let mut w = world("1.28/stable");
    w.fast(60);
    let kubelet_only: String =
        w.token_csv.lines().filter(|l| l.contains("system:node:")).map(|l| format!("{l}\n")).collect();
    w.cp.set_known_tokens(&kubelet_only);
    let (code, log) = w.run();
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("rejected the kube-proxy token"), "{log}");
    assert!(!w.fakes.calls().iter().any(|c| c.contains("restart")), "nothing started");
}

#[test]
fn plans_with_absurd_timing_are_refused() {
    for (what, edit) in [
        ("zero retry delay", Box::new(|p: &mut JoinPlan| p.timing.retry_initial_ms = 0) as Box<dyn Fn(&mut JoinPlan)>),
        ("a deadline of centuries", Box::new(|p: &mut JoinPlan| p.timing.ready_deadline_secs = u64::MAX / 2)),
        ("a cap under the first delay", Box::new(|p: &mut JoinPlan| p.timing.retry_cap_ms = 5)),
    ] {
        let w = world("1.30/stable");
        w.edit_plan(|p| edit(p));
        let (code, log) = w.run();
        assert_eq!(code, 78, "{what}: {log}");
        assert!(log.contains("timing"), "{what}: {log}");
        assert!(w.fakes.calls().is_empty(), "{what}");
    }
}

#[test]
fn the_status_file_counts_attempts_while_a_step_retries() {
    let mut w = world("1.30/stable");
    w.fast(60);
    w.kubelet();
    w.cp.apiservers[0].kill();
    let child = w.command().stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let st = w.status();
    assert_eq!(st["phase"], "apiserver", "{st}");
    assert!(st["attempts"].as_u64().unwrap() >= 2, "{st}");
    assert!(st["lastError"].as_str().is_some_and(|e| !e.is_empty()), "{st}");
    w.cp.restart(0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_missing_traefik_is_found_before_anything_changes() {
    let w = node_local("traefik", "1.30/stable");
    w.fast(20);
    let (code, log) = w.run();
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("is not on this node") && log.contains("nothing was changed"), "{log}");
    assert_eq!(w.fakes.calls(), Vec::<String>::new(), "the control plane was not touched");
}

/// A presigned archive URL (the query says nothing about the file; it is a secret)
/// and a program path whose name is not `traefik`.
#[test]
fn a_presigned_archive_url_and_another_program_name() {
    let dir = tempfile::tempdir().unwrap();
    let sha = traefik_tarball(dir.path());
    let url = "https://bucket.example.invalid/traefik_v3_linux_amd64.tar.gz?X-Amz-Signature=c0ffee&X-Amz-Expires=600";
    let w = world_full(|f, _| {
        let traefik = Traefik::fetched("3.7.15", url, &sha).path("/opt/traefik/bin/traefik-3.7");
        f.channel("1.30/stable").lb_traefik(Some(traefik))
    });
    w.fakes.serve_download(&dir.path().join("traefik_v3_linux_amd64.tar.gz"));
    w.fast(3);
    let (_, log) = w.run();
    assert!(log.contains("fetching https://bucket.example.invalid/traefik_v3_linux_amd64.tar.gz?<redacted>"), "{log}");
    assert!(!log.contains("c0ffee"), "the signature was logged: {log}");
    let installed = w.root.join("opt/traefik/bin/traefik-3.7");
    assert!(fs::read_to_string(&installed).unwrap().contains("exec "), "the archive's traefik, at the plan's path");
    let calls = w.fakes.calls();
    let curl = calls.iter().find(|c| c.starts_with("curl ")).unwrap();
    assert!(curl.contains("--globoff --proto =https --proto-redir =https"), "{curl}");
    let status = w.read("/var/lib/mk8s-worker/status.json");
    assert!(!status.contains("c0ffee"), "the signature in the status file: {status}");
}

/// An archive behind a URL that does not say so (no .tar.gz): its sha256 matches
/// the plan, so it is what the facts named, but it is not the program. It was
/// installed as `traefik` and failed on every start; now the bootstrap refuses it
/// (exit 78), naming the kind, and installs nothing.
#[test]
fn an_archive_behind_a_url_that_does_not_say_so_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sha = traefik_tarball(dir.path());
    let w = world_full(|f, _| {
        let traefik = Traefik::fetched("3.7.15", "https://downloads.example.invalid/traefik", &sha);
        f.channel("1.30/stable").lb_traefik(Some(traefik))
    });
    w.fakes.serve_download(&dir.path().join("traefik_v3_linux_amd64.tar.gz"));
    w.fast(10);
    let (code, log) = w.run();
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("is a gzip archive, not the program"), "{log}");
    assert!(!w.root.join("usr/local/bin/traefik").exists(), "nothing installed");
    assert!(!w.root.join("usr/local/bin/.mk8s-download").exists());
}
