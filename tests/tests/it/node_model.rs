//! The node model's own behaviours, each against its cited source (see
//! `tests/src/node_model/`).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mk8s_testkit::node_model::{signed_by, Model, ModelConfig, SNAP_DATA};
use mk8s_testkit::proc::free_port;

/// A temp dir removed at the end (its removal also ends the model's daemons).
struct Tmp(std::path::PathBuf);

impl Tmp {
    fn new() -> Tmp {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("mk8s-node-model-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn model(dir: &Path, channel: &str, node_ip: &str) -> Model {
    let mut c = ModelConfig::new(channel, free_port());
    c.node_ip = node_ip.into();
    c.crash_delay = Duration::from_millis(800);
    Model::new(&dir.join("model"), &dir.join("root"), c)
}

fn run(tool: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(tool).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

fn install(m: &Model) {
    let (code, err) = run(&m.snap, &["install", "microk8s", "--classic", "--channel", &m.config.channel]);
    assert_eq!(code, 0, "{err}");
}

fn until(what: &str, m: &Model, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "{what}\n{}", m.events().join("\n"));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sd(m: &Model, rel: &str) -> std::path::PathBuf {
    m.root.join(SNAP_DATA).join(rel)
}

#[test]
fn kubelite_reads_clustered_lock_only_when_it_starts() {
    let tmp = Tmp::new();
    let m = model(tmp.path(), "1.22/stable", "127.0.0.41");
    install(&m);
    until("a fresh 1.22 node runs a local control plane", &m, || m.local_control_plane().is_some());
    assert!(sd(&m, "var/lock/lite.lock").exists() && !sd(&m, "var/lock/no-traefik").exists());
    fs::write(sd(&m, "var/lock/clustered.lock"), "").unwrap();
    // No k8s-dqlite unit on 1.22 (F4): systemd's "not loaded", exit 5.
    let (code, err) = run(&m.systemctl, &["stop", "snap.microk8s.daemon-k8s-dqlite.service"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("not loaded"), "{err}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(m.local_control_plane().is_some(), "the lock alone changes nothing until a restart");
    assert_eq!(run(&m.systemctl, &["restart", "snap.microk8s.daemon-kubelite.service"]).0, 0);
    let args = || fs::read_to_string(sd(&m, "args/kubelite")).unwrap();
    until("a restarted kubelite reads clustered.lock", &m, || args().starts_with("--start-control-plane=false\n"));
    until("and runs no control plane", &m, || m.running("snap.microk8s.daemon-kubelite.service"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(m.local_control_plane().is_none());
    let args = args();
    assert_eq!(args.matches("--start-control-plane").count(), 1, "{args}");
}

#[test]
fn kubelite_1_24_dies_when_k8s_dqlite_stops_and_comes_back_a_worker() {
    let tmp = Tmp::new();
    let m = model(tmp.path(), "1.24/stable", "127.0.0.42");
    install(&m);
    until("local control plane", &m, || m.local_control_plane().is_some());
    assert!(sd(&m, "var/lock/no-traefik").exists() && !sd(&m, "var/lock/no-k8s-dqlite").exists());
    fs::write(sd(&m, "var/lock/clustered.lock"), "").unwrap();
    fs::write(sd(&m, "var/lock/no-k8s-dqlite"), "").unwrap();
    assert_eq!(run(&m.systemctl, &["stop", "snap.microk8s.daemon-k8s-dqlite.service"]).0, 0);
    until("kubelite crashes and restarts without its control plane (F1b)", &m, || m.local_control_plane().is_none());
    until("the restart is recorded", &m, || m.events().iter().any(|e| e.contains("datastore (k8s-dqlite) is gone")));
    until("kubelite runs again", &m, || m.running("snap.microk8s.daemon-kubelite.service"));
    // k8s-dqlite, started again, exits on its lock.
    assert_eq!(run(&m.systemctl, &["start", "snap.microk8s.daemon-k8s-dqlite.service"]).0, 0);
    until("k8s-dqlite exits on no-k8s-dqlite", &m, || !m.running("snap.microk8s.daemon-k8s-dqlite.service"));
}

#[test]
fn a_1_30_install_then_a_refresh_restarts_the_disabled_apiserver_proxy_by_name() {
    let tmp = Tmp::new();
    let m = model(tmp.path(), "1.30/stable", "127.0.0.43");
    fs::create_dir_all(m.root.join("etc")).unwrap();
    fs::write(m.root.join("etc/microk8s.yaml"), "version: 0.1.0\naddons: []\n").unwrap();
    install(&m);
    assert_eq!(m.state()["launchConfig"], "/etc/microk8s.yaml");
    for l in ["no-apiserver-proxy", "installed.lock", "lite.lock", "ha-cluster"] {
        assert!(sd(&m, &format!("var/lock/{l}")).exists(), "{l}");
    }
    assert!(!sd(&m, "credentials/known_tokens.csv").exists(), "1.28+: no token file");
    // 1.28+: kubelet.crt signed by the node-local CA.
    let der = |p: &str| {
        let pem = fs::read_to_string(sd(&m, p)).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_bytes()).next().unwrap().unwrap().to_vec();
        der
    };
    assert!(signed_by(&der("certs/kubelet.crt"), &der("certs/ca.crt")));
    let proxy = "snap.microk8s.daemon-apiserver-proxy.service";
    until("the proxy's wrapper exits on a node without clustered.lock", &m, || {
        m.events().iter().any(|e| e.contains("apiserver-proxy.service: exited: Not a worker node"))
    });
    fs::write(sd(&m, "var/lock/clustered.lock"), "").unwrap();
    assert_eq!(run(&m.systemctl, &["disable", proxy]).0, 0);
    fs::remove_dir_all(sd(&m, "args/traefik")).unwrap();
    m.refresh();
    assert!(sd(&m, "args/traefik/traefik-template.yaml").exists(), "re-copied by the configure hook");
    assert!(m.calls().contains(&"snapctl restart microk8s.daemon-apiserver-proxy".to_string()));
    until("the disabled proxy was started by name and failed on the missing provider.yaml", &m, || {
        m.events().iter().any(|e| e.contains("apiserver-proxy.service: failed:") && e.contains("provider.yaml"))
    });
    until("kubelite came back a worker", &m, || m.local_control_plane().is_none());
}

#[test]
fn a_1_20_node_has_separate_daemons_and_token_credentials() {
    let tmp = Tmp::new();
    let m = model(tmp.path(), "1.20/stable", "127.0.0.44");
    install(&m);
    assert!(!sd(&m, "var/lock/lite.lock").exists());
    assert!(sd(&m, "credentials/known_tokens.csv").exists());
    // (The kubelet, already started by the install, may have written it by now.)
    let by_kubelet = |m: &Model| m.events().iter().any(|e| e.contains("kubelet: generated a self-signed"));
    assert!(!sd(&m, "certs/kubelet.crt").exists() || by_kubelet(&m), "only the kubelet makes one");
    assert!(m.state()["launchConfig"].is_null());
    until("apiserver holds the port", &m, || m.local_control_plane().is_some());
    fs::write(sd(&m, "var/lock/clustered.lock"), "").unwrap();
    for u in ["apiserver", "controller-manager", "scheduler"] {
        let unit = format!("snap.microk8s.daemon-{u}.service");
        assert_eq!(run(&m.systemctl, &["restart", &unit]).0, 0);
        until(&format!("{u} exits on clustered.lock"), &m, || !m.running(&unit));
    }
    assert!(m.local_control_plane().is_none());
    assert!(m.running("snap.microk8s.daemon-kubelet.service"));
    // The kubelet, with no kubelet.crt in --cert-dir, made a self-signed one.
    until("kubelet.crt written", &m, || sd(&m, "certs/kubelet.crt").exists());
    assert!(m.calls()[0].starts_with("snap install microk8s --classic --channel 1.20/stable"));
}

/// snapd's `snap stop --disable`, `disable`, `enable` and `remove [--purge]`
/// (`tests/src/node_model/snap_lifecycle.rs` cites each): a disabled snap has no
/// service units and is not refreshed; `enable` keeps the services that were
/// disabled disabled; `remove` takes `/var/snap/microk8s` whole and keeps a
/// snapshot unless `--purge`.
#[test]
fn snapd_disables_and_removes_microk8s_as_snapd_does() {
    let tmp = Tmp::new();
    let m = model(tmp.path(), "1.30/stable", "127.0.0.129");
    install(&m);
    let kubelite = "snap.microk8s.daemon-kubelite.service";
    until("kubelite runs after the install", &m, || m.running(kubelite));
    assert_eq!(run(&m.snap, &["stop", "--disable", "microk8s"]).0, 0);
    assert_eq!(m.running_units(), Vec::<String>::new());
    assert_eq!(m.enabled_units(), Vec::<String>::new());
    assert_eq!(run(&m.snap, &["disable", "microk8s"]).0, 0);
    assert!(m.snap_cmd(&["list", "microk8s"]).1.contains("disabled,classic"));
    let (code, err) = run(&m.systemctl, &["start", kubelite]);
    assert_eq!(code, 5, "a disabled snap's units are gone: {err}");
    let (code, err) = run(&m.snap, &["refresh", "microk8s"]);
    assert_eq!(code, 1);
    assert!(err.contains("refreshing disabled snap \"microk8s\" not supported"), "{err}");
    m.refresh();
    m.reboot();
    assert_eq!(m.running_units(), Vec::<String>::new(), "{}", m.events().join("\n"));
    // Enabled again: the services disabled before `snap disable` stay disabled.
    assert_eq!(run(&m.snap, &["enable", "microk8s"]).0, 0);
    assert_eq!(m.running_units(), Vec::<String>::new());
    assert_eq!(run(&m.systemctl, &["enable", "--now", kubelite]).0, 0);
    until("kubelite runs once enabled", &m, || m.running(kubelite));
    // remove without --purge: data gone, a snapshot kept.
    assert_eq!(run(&m.snap, &["remove", "microk8s"]).0, 0);
    assert!(!m.root.join("var/snap/microk8s").exists());
    let snapshots: Vec<_> = fs::read_dir(m.root.join("var/lib/snapd/snapshots")).unwrap().collect();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(m.running_units(), Vec::<String>::new());
    let (code, err) = run(&m.snap, &["remove", "--purge", "microk8s"]);
    assert_eq!((code, err.trim()), (0, "snap \"microk8s\" is not installed"));
    // remove --purge: no snapshot.
    install(&m);
    assert_eq!(run(&m.snap, &["remove", "--purge", "microk8s"]).0, 0);
    assert!(!m.root.join("var/snap/microk8s").exists());
    assert_eq!(fs::read_dir(m.root.join("var/lib/snapd/snapshots")).unwrap().count(), 1);
}
