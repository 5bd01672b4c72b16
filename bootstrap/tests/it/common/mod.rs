//! Helpers shared by the bootstrap's scenario files (each uses some of them).
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use mk8s_bootstrap::plan::{JoinPlan, PLAN_PATH};
use mk8s_testkit::node_model::{write_script, Model};

/// Directories every image with systemd and snapd has (`/var/snap` is snapd's),
/// made before a test node boots, so a tree compared with the image's does not
/// count them as the worker's.
pub const IMAGE_DIRS: &[&str] = &["etc/systemd/system", "run", "usr/local/bin", "var/lib", "var/snap"];

/// A worker booted from its user-data on the node model, with the simulated or
/// the real control plane behind it (`node_model::World`, `real_apiserver::Peers`).
pub trait Joined {
    fn root(&self) -> &Path;
    fn model(&self) -> &Model;
    /// The machine before the user-data: the image, as [`tree`] sees it.
    fn image(&self) -> &Tree;
    /// The port of the node-local balancer (the cluster's apiserver port).
    fn port(&self) -> u16;
    /// The bootstrap on the node: (exit code, log).
    fn run(&self) -> (i32, String);
    /// Everything the model recorded, for failure messages.
    fn story(&self) -> String;
    /// Its Node's annotations.
    fn annotations(&self) -> serde_json::Value;
    /// Still a worker: no local control plane, the cluster reachable.
    fn assert_worker(&self, what: &str);
}

/// A node's file tree: path under the root -> what is there (`dir MODE`,
/// `file MODE SHA256`, `link TARGET`).
pub type Tree = std::collections::BTreeMap<String, String>;

/// Every directory, file and symlink under `root`, with modes and content hashes.
pub fn tree(root: &Path) -> Tree {
    use sha2::Digest as _;
    let mut out = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                stack.push(p.clone());
                format!("dir {mode:o}")
            } else {
                format!("file {mode:o} {}", hex::encode(sha2::Sha256::digest(fs::read(&p).unwrap())))
            };
            out.insert(rel, what);
        }
    }
    out
}

/// What differs between two trees, one line per path (empty: the same).
pub fn tree_diff(want: &Tree, got: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (p, w) in want {
        match got.get(p) {
            None => out.push(format!("missing {p} ({w})")),
            Some(g) if g != w => out.push(format!("changed {p}: want {w}, got {g}")),
            Some(_) => {}
        }
    }
    out.extend(got.iter().filter(|(p, _)| !want.contains_key(*p)).map(|(p, g)| format!("extra {p} ({g})")));
    out
}

/// The bootstrap under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mk8s-bootstrap");

/// What cloud-init does with our user-data's `write_files` (paths under `root`,
/// contents decoded, modes set). The real cloud-init runs in the real-tool tests.
pub fn write_files(root: &Path, user_data: &str) {
    let doc: serde_yaml::Value = serde_yaml::from_str(user_data).unwrap();
    for f in doc["write_files"].as_sequence().unwrap() {
        let path = root.join(f["path"].as_str().unwrap().trim_start_matches('/'));
        let content = f["content"].as_str().unwrap();
        let data = match f.get("encoding").and_then(|e| e.as_str()) {
            Some("gz+b64") => {
                let gz = base64::engine::general_purpose::STANDARD.decode(content).unwrap();
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
                out
            }
            _ => content.as_bytes().to_vec(),
        };
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        let mode = u32::from_str_radix(f["permissions"].as_str().unwrap(), 8).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// Facts (YAML, in `dir` where its `ca.crt` is) checked by the real validator, and
/// the seed fixture's secrets with `ca_key_pem` as the CA key (attached when the
/// facts say `auth: x509`).
pub fn facts_and_secrets(
    facts_yaml: &str,
    dir: &Path,
    ca_key_pem: &str,
) -> (mk8s_gen::model::Facts, mk8s_gen::secrets::Secrets) {
    let facts = mk8s_gen::load(facts_yaml, dir).valid("facts", facts_yaml).unwrap_or_else(|e| panic!("{e}"));
    let mut text = fs::read_to_string(mk8s_testkit::workspace().join("fixtures/seed/secrets.yaml")).unwrap();
    text.push_str(&format!("ca-key: {}\n", serde_json::to_string(ca_key_pem).unwrap()));
    let mut secrets = mk8s_gen::secrets::Secrets::parse(&text).unwrap();
    if is_x509(&facts) {
        secrets.attach_ca_key(&facts.ca).unwrap();
    }
    (facts, secrets)
}

/// Whether the facts say `auth: x509`.
pub fn is_x509(facts: &mk8s_gen::model::Facts) -> bool {
    matches!(facts.auth, mk8s_gen::model::Auth::X509(_))
}

/// A node's first boot as cloud-init does it: the files of `out`'s user-data
/// written under `root`.
pub fn boot(root: &Path, out: &mk8s_gen::render::NodeOutput) {
    fs::create_dir_all(root).unwrap();
    write_files(root, &mk8s_gen::output::cloud_config::cloud_config(out));
}

/// The real mk8s-bootstrap on a worker rooted at `root` whose `snap` and
/// `systemctl` are the node model's, with `microk8s` for the join (None: the
/// default, which a run that does not join never calls) and no `curl`:
/// (exit code, stderr).
pub fn run_bootstrap(root: &Path, model: &Model, microk8s: Option<&Path>) -> (i32, String) {
    let mut c = Command::new(BIN);
    c.arg("--root").arg(root).arg("--systemctl").arg(&model.systemctl).arg("--snap").arg(&model.snap);
    if let Some(m) = microk8s {
        c.arg("--microk8s").arg(m);
    }
    let out = c.arg("--curl").arg("/bin/false").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

/// `mk8s-bootstrap leave EXTRA...` on the node rooted at `root`, with the model's
/// `snap` and `systemctl`: (exit code, stdout, stderr).
pub fn run_leave(root: &Path, model: &Model, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("leave")
        .arg("--root")
        .arg(root)
        .arg("--systemctl")
        .arg(&model.systemctl)
        .arg("--snap")
        .arg(&model.snap)
        .args(extra)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The plan on the node rooted at `root`, changed by `f` (shorter timings for
/// tests, the agents' addresses, or tampering).
pub fn edit_plan(root: &Path, f: impl FnOnce(&mut JoinPlan)) {
    let p = root.join(PLAN_PATH.trim_start_matches('/'));
    let mut plan = JoinPlan::from_json(&fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut plan);
    fs::write(&p, plan.to_json()).unwrap();
}

/// The node-local balancer's program at the path its unit runs, under `root`: a
/// script that runs the real one (baked into the image: traefik; cloud-init's
/// `packages`: haproxy; `builtin`: the agent itself, `mk8s-bootstrap balance`).
pub fn balancer_program(root: &Path, kind: &str) {
    let (real, path) = match kind {
        "builtin" => (BIN.into(), "usr/local/bin/mk8s-bootstrap"),
        "traefik" => (mk8s_testkit::tools::require("traefik"), "usr/local/bin/traefik"),
        "haproxy" => (mk8s_testkit::tools::require("haproxy"), "usr/sbin/haproxy"),
        other => panic!("no program of its own for kind {other}"),
    };
    let bin = root.join(path);
    fs::create_dir_all(bin.parent().unwrap()).unwrap();
    write_script(&bin, &format!("#!/bin/sh\nexec '{}' \"$@\"\n", real.display()));
}

/// What a control-plane node resolves after the operator ran the control-plane
/// bundle's `hosts-entries.sh` there: the real script, run with the real bash on a
/// control-plane layout in `dir`; returns its /etc/hosts as (name, address) pairs.
/// (<=1.27 apiservers dial kubelets by the Node's Hostname address, the worker's
/// name; MicroK8s's own join even refuses a worker whose name does not resolve:
/// cluster-agent pkg/api/v2/join.go L103-106.)
pub fn control_plane_hosts(
    facts: &mk8s_gen::model::Facts,
    secrets: &mk8s_gen::secrets::Secrets,
    dir: &Path,
) -> Vec<(String, String)> {
    let cp = dir.join("control-plane-node");
    for d in ["args", "var/lock"] {
        fs::create_dir_all(cp.join(d)).unwrap();
    }
    fs::write(cp.join("args/kube-apiserver"), "--authorization-mode=AlwaysAllow\n").unwrap();
    fs::write(cp.join("var/lock/ha-cluster"), "").unwrap();
    let etc_hosts = dir.join("cp-etc-hosts");
    fs::write(&etc_hosts, "127.0.0.1 localhost\n").unwrap();
    let bundle = dir.join("control-plane-bundle");
    let workers: Vec<_> = facts.workers.iter().collect();
    mk8s_gen::controlplane::write_bundle(facts, secrets, &workers, &bundle).unwrap();
    let out = std::process::Command::new(mk8s_testkit::tools::require("bash"))
        .arg(bundle.join("hosts-entries.sh"))
        .env("SNAP_DATA", &cp)
        .env("MK8S_HOSTS_FILE", &etc_hosts)
        .output()
        .unwrap();
    assert!(out.status.success(), "hosts-entries.sh: {}", String::from_utf8_lossy(&out.stderr));
    let mut pairs = Vec::new();
    for line in fs::read_to_string(&etc_hosts).unwrap().lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        if let Some(ip) = words.next() {
            pairs.extend(words.map(|name| (name.to_string(), ip.to_string())));
        }
    }
    pairs
}

/// What the node model shows of a worker the join just made, beside what the
/// cluster shows: automatic refreshes held (`refresh: hold`, the default); the
/// install hook's kubeconfigs kept as `.backup`, as MicroK8s's own join keeps them
/// (`microk8s leave` restores them from there, G3; `backups`: not when MicroK8s's
/// join wrote the kubeconfigs itself); on 1.27+ our launch configuration applied
/// by the cluster-agent and nothing retried; no local control plane answering.
pub fn assert_joined_model(model: &Model, root: &Path, backups: bool, what: &str, story: &dyn Fn() -> String) {
    use std::time::{Duration, Instant};
    assert_eq!(model.state()["refreshHeld"], true, "{what}: refreshes not held\n{}", story());
    if backups {
        let creds = root.join(mk8s_testkit::node_model::SNAP_DATA.trim_start_matches('/')).join("credentials");
        for f in ["kubelet.config", "proxy.config"] {
            let original = fs::read_to_string(creds.join(format!("{f}.backup"))).unwrap_or_default();
            let ours = fs::read_to_string(creds.join(f)).unwrap_or_default();
            assert!(!original.is_empty() && original != ours, "{what}: {f}.backup: {original:?}\n{}", story());
        }
    }
    if mk8s_testkit::node_model::minor_of(model.state()["channel"].as_str().unwrap_or("")) >= 27 {
        assert_eq!(model.state()["launchConfig"], "/etc/microk8s.yaml", "{what}\n{}", story());
        // The launcher ticks every 500 ms; a loaded 2-core machine (CI runs the
        // suites in parallel) has missed 5 s.
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let l = model.launcher().unwrap_or_default();
            assert_eq!(l["failures"].as_u64().unwrap_or(0), 0, "{what}: the launcher keeps failing: {l}\n{}", story());
            if l["applied"].as_array().is_some_and(|a| a.iter().any(|f| f == "install.yaml")) {
                break;
            }
            assert!(Instant::now() < end, "{what}: the launch configuration was never applied: {l}\n{}", story());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert_no_local_control_plane(model, what, story);
}

/// Nothing answers on the node's apiserver port with the node-local CA's
/// certificate (within 10 s: a kubelite restarted by a refresh or a reboot needs a
/// moment to settle).
pub fn assert_no_local_control_plane(model: &Model, what: &str, story: &dyn Fn() -> String) {
    use std::time::{Duration, Instant};
    let end = Instant::now() + Duration::from_secs(10);
    while let Some(addr) = model.local_control_plane() {
        assert!(
            Instant::now() < end,
            "{what}: a local control plane answers on {addr} with the node-local CA's certificate\n{}",
            story()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
