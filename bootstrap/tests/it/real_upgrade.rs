//! Day 2 upgrades against the real control plane (three real kube-apiservers with
//! that version's default args, AlwaysAllow and RBAC,Node): `mk8s-ctl upgrade`
//! asks, the node's `mk8s-bootstrap maintain` (run here in a loop, as its timer
//! would) checks the skew against every apiserver's `/version` at its own
//! endpoint and refreshes MicroK8s through the node model's snapd (a refresh to
//! another channel within one row of the behaviour table, 1.31 -> 1.32).
//!
//! The real kube-apiserver is v1.34.4 whatever the args: a worker 1.31 -> 1.32
//! and 1.32 are under a newer control plane; "an older control plane" is a worker asked
//! to go 1.34 -> 1.35, which both sides refuse.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use mk8s_testkit::apiserver::Authz;

use crate::common::Joined as _;
use crate::real_apiserver::{peers_with, Auth, Lb, Peers, Setup};

fn ctl(w: &Peers, args: &[&str]) -> Command {
    let ctl_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ctl");
    let bin = mk8s_testkit::node_model::workspace_binary("mk8s-ctl", "cargo build -p mk8s-ctl", &ctl_dir);
    let mut c = Command::new(bin);
    c.arg("--kubeconfig").arg(w.cp.admin_kubeconfig(0)).args(args).arg("--cluster").arg(&w.facts_file);
    c
}

fn joined(channel: &str, authz: Authz, ip: &str) -> Peers {
    let w = peers_with(channel, Auth::X509, Lb::Builtin, authz, Some(ip), &Setup::default());
    let started = SystemTime::now();
    let (code, log) = w.run();
    assert_eq!(code, 0, "the join failed:\n{log}\n{}", w.story());
    w.wait_heartbeat(started, "after the join");
    // Its first maintain reports the channel it tracks.
    let (code, log) = w.maintain();
    assert_eq!(code, 0, "{log}");
    assert_eq!(w.annotations()["mk8s-worker.io/observed-channel"], channel, "{log}");
    w
}

/// `mk8s-ctl upgrade` running while the node's maintain runs every 2 s; its exit
/// code, output and the maintain logs.
fn upgrade_with_timer(w: &Peers, to: &str) -> (i32, String, Vec<String>) {
    let child: Child = ctl(w, &["upgrade", "--to", to, "--timeout", "3m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut maintains = Vec::new();
    let end = Instant::now() + Duration::from_secs(240);
    let mut child = child;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "mk8s-ctl upgrade did not end\n{}", maintains.join("\n---\n"));
        std::thread::sleep(Duration::from_secs(2));
        maintains.push(w.maintain().1);
    };
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (status.code().unwrap_or(-1), text, maintains)
}

fn a_worker_goes_to_the_next_minor(authz: Authz, ip: &str) {
    let what = format!("{authz:?}");
    let w = joined("1.31/stable", authz, ip);
    let (code, out, maintains) = upgrade_with_timer(&w, "1.32/stable");
    assert_eq!(code, 0, "{what}: {out}\n{}\n{}", maintains.join("\n---\n"), w.story());
    assert!(out.contains("control plane: kube-apiserver v1.34.4 at "), "{what}: {out}");
    assert!(out.contains("worker-1: at 1.32/stable (kubelet v1.32.0), Ready, uncordoned"), "{what}: {out}");
    let log = maintains.join("\n");
    assert!(log.contains("upgrade: done: 1.31/stable -> 1.32/stable"), "{what}: {log}");
    assert!(log.contains("upgrade 1.31/stable -> 1.32/stable (kube-apiserver v1.34.4 at "), "{what}: {log}");
    assert_eq!(w.model.state()["channel"], "1.32/stable", "{what}");
    let node = w.node().unwrap();
    assert_eq!(node["spec"]["unschedulable"], serde_json::Value::Null, "{what}: still cordoned: {node}");
    assert_eq!(node["metadata"]["annotations"]["mk8s-worker.io/observed-channel"], "1.32/stable", "{what}");
    // Still a worker, after the refresh and after a reboot; maintain finds nothing.
    w.assert_worker(&format!("{what}: after the upgrade"));
    let at = SystemTime::now();
    w.model.reboot();
    w.wait_heartbeat(at, &format!("{what}: after a reboot"));
    // Our locks, args lines, balancer files and kubeconfigs as the plan made them.
    let (code, log) = w.maintain();
    assert_eq!(code, 0, "{what}: {log}");
    assert!(!log.contains("upgrade") && !log.contains("drift:"), "{what}: {log}");
    // Run again: nothing to do.
    let o = ctl(&w, &["upgrade", "--to", "1.32/stable"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{what}: {text}");
    assert!(text.contains("0 upgraded, 1 already at 1.32/stable, 0 failed"), "{what}: {text}");
}

#[test]
fn a_1_31_worker_goes_to_1_32_on_always_allow() {
    a_worker_goes_to_the_next_minor(Authz::AlwaysAllow, "127.0.0.161");
}

#[test]
fn a_1_31_worker_goes_to_1_32_on_rbac_node() {
    a_worker_goes_to_the_next_minor(Authz::RbacNode, "127.0.0.162");
}

/// A kubelet newer than the apiservers: `mk8s-ctl upgrade` refuses before it
/// changes anything, naming the apiserver; a node asked anyway (the annotation
/// written by hand) refuses too, says so on its Node, and refreshes nothing.
#[test]
fn an_upgrade_past_the_control_planes_version_is_refused_on_both_sides() {
    let w = joined("1.34/stable", Authz::AlwaysAllow, "127.0.0.163");
    let o = ctl(&w, &["upgrade", "--to", "1.35/stable"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{text}");
    assert!(text.contains("nothing was changed; refused: worker-1: the kubelet of 1.35/stable would be newer than kube-apiserver v1.34.4 at "), "{text}");
    let node = w.node().unwrap();
    assert_eq!(node["spec"]["unschedulable"], serde_json::Value::Null, "cordoned: {node}");
    assert!(node["metadata"]["annotations"]["mk8s-worker.io/desired-channel"].is_null(), "{node}");

    let k = w.kubectl(&["annotate", "node", "worker-1", "mk8s-worker.io/desired-channel=1.35/stable"]);
    assert!(k.status.success(), "{}", String::from_utf8_lossy(&k.stderr));
    w.model.clear_calls();
    let (code, log) = w.maintain();
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains("upgrade: refused: the kubelet of 1.35/stable would be newer than kube-apiserver v1.34.4"),
        "{log}"
    );
    assert!(!w.model.calls().iter().any(|c| c.contains("refresh")), "{:?}", w.model.calls());
    let a = w.annotations();
    assert!(a["mk8s-worker.io/upgrade"].as_str().unwrap_or_default().starts_with("refused: "), "{a:#}");
    assert_eq!(a["mk8s-worker.io/drift"], "upgrade", "{a:#}");
    assert_eq!(w.model.state()["channel"], "1.34/stable");

    // A value that is no channel never reaches snap.
    let k = w.kubectl(&[
        "annotate",
        "--overwrite",
        "node",
        "worker-1",
        "mk8s-worker.io/desired-channel=1.34/stable --classic",
    ]);
    assert!(k.status.success(), "{}", String::from_utf8_lossy(&k.stderr));
    let (code, log) = w.maintain();
    assert_eq!(code, 3, "{log}");
    assert!(log.contains("is not a channel such as 1.30/stable"), "{log}");
    assert!(!w.model.calls().iter().any(|c| c.contains("refresh")), "{:?}", w.model.calls());
}
