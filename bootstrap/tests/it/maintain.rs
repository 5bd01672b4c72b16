//! `mk8s-bootstrap maintain` on the model of a MicroK8s node: a worker joined by
//! the real binary against the real control plane (`real_apiserver::peers_with`:
//! three real kube-apiservers with that version's default args, AlwaysAllow or
//! RBAC,Node), then checked, reported on its Node, drifted on purpose, repaired,
//! and checked again.
//!
//! The faults are the operator's external balancer's (`mode: external`, a real
//! HAProxy in front of the three apiservers): stopped, with a listener on its
//! address that accepts one connection and closes it unanswered, then started
//! again; or stopped for the whole run.

use std::fs;
use std::process::Command;

use mk8s_bootstrap::plan::{sha256_hex, JoinPlan, PLAN_PATH, REFRESH_HOOK_PATH};
use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::node_model::SNAP_DATA;
use serde_json::Value;

use crate::common::{Joined, BIN};
use crate::real_apiserver::{self as real, Auth, Peers, Setup, NODE};

/// `mk8s-bootstrap maintain [--repair]` on the world's node: (exit code, log).
fn maintain(w: &dyn Joined, repair: bool) -> (i32, String) {
    let mut c = Command::new(BIN);
    c.arg("maintain").arg("--root").arg(w.root()).arg("--systemctl").arg(&w.model().systemctl);
    c.arg("--snap").arg(&w.model().snap);
    if repair {
        c.arg("--repair");
    }
    let out = c.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

fn under(w: &dyn Joined, abs: &str) -> std::path::PathBuf {
    w.root().join(abs.trim_start_matches('/'))
}

fn snap_data(w: &dyn Joined, rel: &str) -> std::path::PathBuf {
    w.root().join(SNAP_DATA).join(rel)
}

fn plan(w: &dyn Joined) -> JoinPlan {
    JoinPlan::from_json(&fs::read_to_string(under(w, PLAN_PATH)).unwrap()).unwrap()
}

fn status(w: &dyn Joined) -> Value {
    serde_json::from_str(&fs::read_to_string(under(w, "/var/lib/mk8s-worker/maintain.json")).unwrap()).unwrap()
}

fn drift(w: &dyn Joined) -> Vec<String> {
    status(w)["drift"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect()
}

/// Commands that change a unit (the model logs every systemctl and snap call).
fn changes(w: &dyn Joined) -> Vec<String> {
    let mutating = ["start", "stop", "restart", "enable", "disable", "daemon-reload", "refresh", "install"];
    w.model()
        .calls()
        .into_iter()
        .filter(|c| c.split_whitespace().nth(1).is_some_and(|verb| mutating.contains(&verb)))
        .collect()
}

/// A worker joined on `channel` with `lb` through the real control plane; the
/// plan's bytes as the join read them.
fn joined(channel: &str, auth: Auth, lb: real::Lb, authz: Authz, ip: &str) -> (Peers, String) {
    let w = real::peers_with(channel, auth, lb, authz, Some(ip), &Setup::default());
    let sha = sha256_hex(&fs::read(under(&w, PLAN_PATH)).unwrap());
    let started = std::time::SystemTime::now();
    let (code, log) = w.run();
    assert_eq!(code, 0, "the join failed:\n{log}\n{}", w.story());
    w.wait_heartbeat(started, "after the join");
    (w, sha)
}

fn reports_no_drift(channel: &str, auth: Auth, lb: real::Lb, authz: Authz, ip: &str) {
    let x509 = auth == Auth::X509;
    let (w, sha) = joined(channel, auth, lb, authz, ip);
    w.model.clear_calls();
    let (code, log) = maintain(&w, false);
    assert_eq!(code, 0, "{log}\n{}", w.story());
    let st = status(&w);
    assert_eq!(st["result"], "clean", "{st:#}");
    assert!(st["checks"].as_array().unwrap().iter().all(|c| c["ok"] == true), "{st:#}");
    let a = w.annotations();
    assert_eq!(a["mk8s-worker.io/plan-sha256"], sha.as_str(), "the plan as mk8s-gen wrote it: {a:#}");
    assert_eq!(a["mk8s-worker.io/agent-version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(a["mk8s-worker.io/drift"], "");
    assert_eq!(a["mk8s-worker.io/checked-at"], st["checkedAt"]);
    for key in ["client-not-after", "proxy-not-after"] {
        let v = &a[format!("mk8s-worker.io/{key}")];
        assert_eq!(v.is_string(), x509, "{key}: {a:#}");
        if x509 {
            assert!(mk8s_testkit::node_model::parse_rfc3339(v.as_str().unwrap()).is_some(), "{key}: {v}");
        }
    }
    assert_eq!(changes(&w), Vec::<String>::new(), "a check changed the node");
    // Run again with --repair: nothing to repair, nothing changes.
    let (code, log) = maintain(&w, true);
    assert_eq!(code, 0, "{log}");
    assert_eq!(changes(&w), Vec::<String>::new(), "a repair of nothing changed the node");
}

#[test]
fn a_joined_x509_worker_reports_no_drift_on_always_allow() {
    reports_no_drift("1.30/stable", Auth::X509, real::Lb::Builtin, Authz::AlwaysAllow, "127.0.0.61");
}

#[test]
fn a_joined_x509_worker_reports_no_drift_on_rbac_node() {
    reports_no_drift("1.34/stable", Auth::X509, real::Lb::Haproxy, Authz::RbacNode, "127.0.0.62");
}

#[test]
fn a_joined_token_worker_reports_no_drift_and_no_certificate_expiries() {
    reports_no_drift("1.22/stable", Auth::Token, real::Lb::Traefik, Authz::RbacNode, "127.0.0.63");
}

/// Each drift a day on a fleet brings, found by its check's name, repaired, and a
/// second repair changes nothing; a line of the args file that is not ours stays.
#[test]
fn each_drift_is_found_by_name_and_repaired_once() {
    let (w, _) = joined("1.30/stable", Auth::X509, real::Lb::Builtin, Authz::AlwaysAllow, "127.0.0.64");
    let p = plan(&w);
    fs::remove_file(snap_data(&w, "var/lock/no-k8s-dqlite")).unwrap();
    let kubelet_args = snap_data(&w, "args/kubelet");
    let ours = p.kubelet_args.last().unwrap().clone();
    let flag = ours.split('=').next().unwrap();
    let text = fs::read_to_string(&kubelet_args).unwrap().replace(&ours, &format!("{flag}=changed-by-hand"));
    fs::write(&kubelet_args, format!("{text}--image-gc-high-threshold=77\n")).unwrap();
    let lb_file = &p.balancer_files[1];
    let mut edited = fs::read_to_string(under(&w, &lb_file.path)).unwrap();
    edited.push_str("# edited by hand\n");
    fs::write(under(&w, &lb_file.path), &edited).unwrap();
    let proxy_config = snap_data(&w, "credentials/proxy.config");
    let planned = fs::read_to_string(&proxy_config).unwrap();
    fs::write(&proxy_config, planned.replace(&p.apiserver.url, "https://127.0.0.1:1")).unwrap();
    fs::remove_file(under(&w, REFRESH_HOOK_PATH)).unwrap();

    let (code, log) = maintain(&w, false);
    assert_eq!(code, 3, "{log}");
    let want = ["locks", "args", "balancer-files", "kubeconfig-server", "refresh-hook"];
    assert_eq!(drift(&w), want, "{log}");
    assert_eq!(w.annotations()["mk8s-worker.io/drift"], want.join(","));

    w.model.clear_calls();
    let (code, log) = maintain(&w, true);
    assert_eq!(code, 0, "{log}\n{}", w.story());
    assert_eq!(drift(&w), Vec::<String>::new());
    assert_eq!(w.annotations()["mk8s-worker.io/drift"], "");
    let args = fs::read_to_string(&kubelet_args).unwrap();
    assert!(args.lines().any(|l| l == ours) && !args.contains("changed-by-hand"), "{args}");
    assert!(args.contains("--image-gc-high-threshold=77\n"), "a line not ours is kept: {args}");
    assert_eq!(sha256_hex(&fs::read(under(&w, &lb_file.path)).unwrap()), lb_file.sha256);
    assert_eq!(fs::read_to_string(&proxy_config).unwrap(), planned, "byte for byte");
    let calls = changes(&w);
    for unit in ["mk8s-balance.service", "snap.microk8s.daemon-kubelite.service"] {
        assert_eq!(calls.iter().filter(|c| **c == format!("systemctl restart {unit}")).count(), 1, "{calls:?}");
    }
    w.assert_worker("after the repair");

    let before = fs::read(&kubelet_args).unwrap();
    w.model.clear_calls();
    let (code, log) = maintain(&w, true);
    assert_eq!((code, changes(&w)), (0, vec![]), "a second repair changed the node:\n{log}");
    assert_eq!(fs::read(&kubelet_args).unwrap(), before);
}

/// A lock gone (a half-run `microk8s leave`, a hand), then a snap refresh:
/// kubelite reads `clustered.lock` when it starts (1.30
/// `run-kubelite-with-args`), so the refresh brings the node's own control plane
/// back. Found as `locks` and `control-plane-off` (a server of the node-local CA
/// on the apiserver port), and repaired: the lock, then one kubelite restart.
#[test]
fn a_control_plane_started_by_a_refresh_is_found_and_repaired() {
    let (w, _) = joined("1.30/stable", Auth::X509, real::Lb::External, Authz::RbacNode, "127.0.0.65");
    fs::remove_file(snap_data(&w, "var/lock/clustered.lock")).unwrap();
    w.model.refresh();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while w.model.local_control_plane().is_none() {
        assert!(std::time::Instant::now() < end, "the refresh did not start the control plane\n{}", w.story());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (code, log) = maintain(&w, false);
    let want = vec!["locks".to_string(), "control-plane-off".to_string()];
    assert_eq!((code, drift(&w)), (3, want), "{log}\n{}", w.story());
    w.model.clear_calls();
    let (code, log) = maintain(&w, true);
    assert_eq!(code, 0, "{log}\n{}", w.story());
    assert!(changes(&w).contains(&"systemctl restart snap.microk8s.daemon-kubelite.service".to_string()));
    w.assert_worker("after the repair");
}

/// A certificate near its end is reported by name and on the Node, and not
/// "repaired" (renewal is not a file we own).
#[test]
fn an_expiry_near_is_found_and_left_to_renewal() {
    let (w, _) = joined("1.30/stable", Auth::X509, real::Lb::Builtin, Authz::AlwaysAllow, "127.0.0.66");
    let (code, log) = maintain(&w, false);
    assert_eq!(code, 0, "{log}");
    let ca = mk8s_testkit::pki::Ca::new("another");
    let (csr, _) = mk8s_testkit::pki::csr(&format!("system:node:{NODE}"), &["system:nodes"], &[]);
    // `days: 0`: it ends now, a minute after it began.
    let ending = ca.sign_csr(&csr, false, 0).unwrap();
    // The serving pair in use: the store's current one (`auth: x509`, 1.30 fresh,
    // `--rotate-server-certificates`), written through its link.
    let current = w.root.join("var/snap/microk8s/common/var/lib/kubelet/pki/kubelet-server-current.pem");
    assert!(fs::symlink_metadata(&current).unwrap().file_type().is_symlink(), "the join seeded the store");
    fs::write(&current, &ending).unwrap();
    for repair in [false, true] {
        let (code, log) = maintain(&w, repair);
        assert_eq!((code, drift(&w)), (3, vec!["certificate-expiry".to_string()]), "{log}");
        assert!(log.contains("the kubelet's serving certificate ends at"), "{log}");
    }
    let a = w.annotations();
    assert_eq!(a["mk8s-worker.io/drift"], "certificate-expiry");
    assert_eq!(a["mk8s-worker.io/serving-not-after"], status(&w)["servingNotAfter"]);
}

/// Before the join (the timer fires 5 minutes after boot; a join may take longer)
/// nothing is checked or changed, and a broken plan is refused as the join
/// refuses it.
#[test]
fn a_node_that_has_not_joined_is_left_alone() {
    let w = real::peers_with(
        "1.30/stable",
        Auth::X509,
        real::Lb::Builtin,
        Authz::AlwaysAllow,
        Some("127.0.0.67"),
        &Setup::default(),
    );
    let (code, log) = maintain(&w, true);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("has not joined with this plan"), "{log}");
    assert_eq!(status(&w)["result"], "not-joined");
    assert_eq!(w.model.calls(), Vec::<String>::new(), "nothing ran");
    fs::write(under(&w, PLAN_PATH), "{\"apiVersion\": \"mk8s-worker/v9\"}").unwrap();
    let (code, log) = maintain(&w, true);
    assert_eq!(code, 78, "{log}");
}

/// The report's first connection is dropped without an answer (as traefik does
/// with a backend that just went away): the run tries again a second later and
/// reports, rather than failing the unit until the next timer run.
#[test]
fn a_dropped_connection_is_tried_again() {
    let (mut w, _) = joined("1.30/stable", Auth::X509, real::Lb::External, Authz::AlwaysAllow, "127.0.0.69");
    let addr = w.stop_external();
    let dropper = std::net::TcpListener::bind(addr).unwrap();
    let mut c = Command::new(BIN);
    c.arg("maintain").arg("--repair").arg("--root").arg(&w.root);
    c.arg("--systemctl").arg(&w.model.systemctl).arg("--snap").arg(&w.model.snap);
    let child = c.stderr(std::process::Stdio::piped()).spawn().unwrap();
    // One connection accepted and closed before a byte is answered, then the
    // balancer is back on its address.
    drop(dropper.accept().unwrap());
    drop(dropper);
    w.start_external();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("the report did not get through"), "{log}");
    let st = status(&w);
    assert!(st["reported"].as_str().unwrap().starts_with("annotations patched"), "{st:#}");
}

/// No drift, but the apiserver cannot be reached: retryable (75), the verdict
/// still in the status file.
#[test]
fn a_report_that_cannot_reach_the_apiserver_is_retryable() {
    let (mut w, _) = joined("1.30/stable", Auth::X509, real::Lb::External, Authz::AlwaysAllow, "127.0.0.68");
    w.stop_external();
    let (code, log) = maintain(&w, true);
    assert_eq!(code, 75, "{log}");
    let st = status(&w);
    assert_eq!(st["result"], "clean", "{st:#}");
    assert!(st["reported"].as_str().unwrap().starts_with("not reported: "), "{st:#}");
}
