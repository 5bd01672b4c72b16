//! `mk8s-bootstrap leave` on workers joined on the node model: the real agent, the
//! files of a real `mk8s-gen` user-data, the model's snapd and systemd, and the real
//! control plane (`real_apiserver::peers_with`: a real kube-apiserver with that
//! version's default args; on 1.26 the real apiserver-proxy on the worker),
//! including the cases that kill the agent before every command (a joined machine
//! per kill point) or break snapd: `leave` itself sends the apiserver nothing, but
//! the join before it does.
//!
//! Each case joins a worker, leaves, and proves a clean machine: the root's file
//! tree (paths, modes, content hashes) is the image's (`--purge`) or that of a
//! fresh `snap install` on this image (without it); nothing of ours listens,
//! no unit would start at boot, nothing runs, and after a reboot (and, with the
//! snap kept, a refresh attempt) nothing of the worker comes back. A second
//! `leave` changes nothing. The cases: 1.20 with traefik, 1.26 with MicroK8s's
//! own apiserver-proxy (the case `microk8s leave` resets half-way), 1.30 x509
//! with the built-in balancer.

use std::collections::BTreeSet;
use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use mk8s_bootstrap::plan::PLAN_PATH;
use mk8s_testkit::node_model::{self, write_script, SNAP_DATA};

use mk8s_testkit::apiserver::Authz;

use crate::common::{self, Joined, Tree};
use crate::real_apiserver::{self as real, Auth, Setup};

/// A worker before its join, in front of the real control plane (a real
/// kube-apiserver with that version's default args, AlwaysAllow: one is enough,
/// `leave` is the node's business).
fn real_world(channel: &str, auth: Auth, lb: real::Lb, node_ip: &str) -> real::Peers {
    let setup = Setup { one_control_plane: true, ..Setup::default() };
    real::peers_with(channel, auth, lb, Authz::AlwaysAllow, Some(node_ip), &setup)
}

/// `snap install` of the world's channel on the booted machine (as the join's
/// snap step would), once the snap's daemons have written what they write when
/// they first start; returns that tree without the user-data's files: what a
/// machine that never joined would hold with MicroK8s installed.
fn fresh_install(w: &dyn Joined) -> Tree {
    let booted = common::tree(w.root());
    let channel = w.model().state()["channel"].as_str().unwrap_or_default().to_string();
    let (ok, out) = w.model().snap_cmd(&["install", "microk8s", "--classic", "--channel", &channel]);
    assert!(ok, "snap install: {out}");
    let minor = node_model::minor_of(&channel);
    let data = w.root().join(SNAP_DATA);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        // The kubelet's own serving certificate when the install hook made none;
        // kubelite's wrapper puts --start-control-plane first in args/kubelite.
        let written = |f: &str| fs::metadata(data.join(f)).is_ok_and(|m| m.len() > 0);
        let cert = written("certs/kubelet.crt") && written("certs/kubelet.key");
        let kubelite = minor < 21
            || fs::read_to_string(data.join("args/kubelite"))
                .is_ok_and(|t| t.lines().next().is_some_and(|l| l.starts_with("--start-control-plane=")));
        let launcher = minor < 27
            || w.model()
                .launcher()
                .is_some_and(|l| l["applied"].as_array().is_some_and(|a| a.iter().any(|f| f == "install.yaml")));
        if cert && kubelite && launcher {
            break;
        }
        assert!(Instant::now() < end, "the fresh install never settled\n{}", w.story());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut fresh = common::tree(w.root());
    let user_data: BTreeSet<&String> = booted.keys().filter(|p| !w.image().contains_key(*p)).collect();
    fresh.retain(|p, _| !user_data.contains(p));
    fresh
}

fn join(w: &dyn Joined) {
    let (code, log) = w.run();
    assert_eq!(code, 0, "the join failed:\n{log}\n{}", w.story());
    w.assert_worker("after the join");
    common::assert_joined_model(w.model(), w.root(), true, "after the join", &|| w.story());
}

fn leave(w: &dyn Joined, purge: bool) -> (String, String) {
    let (code, out, err) = common::run_leave(w.root(), w.model(), if purge { &["--purge"] } else { &[] });
    assert_eq!(code, 0, "leave failed:\n{out}\n{err}\n{}", w.story());
    (out, err)
}

fn assert_tree(w: &dyn Joined, want: &Tree, what: &str) {
    let diff = common::tree_diff(want, &common::tree(w.root()));
    assert!(diff.is_empty(), "{what}: the machine is not clean:\n{}\n{}", diff.join("\n"), w.story());
}

/// Nothing runs, nothing would start at boot, nothing listens on the balancer's
/// port, no local control plane.
fn assert_nothing_of_the_worker(w: &dyn Joined, what: &str) {
    assert_eq!(w.model().running_units(), Vec::<String>::new(), "{what}: still running\n{}", w.story());
    assert_eq!(w.model().enabled_units(), Vec::<String>::new(), "{what}: still enabled\n{}", w.story());
    let port = format!("127.0.0.1:{}", w.port());
    assert!(TcpStream::connect(&port).is_err(), "{what}: something listens on {port}\n{}", w.story());
    assert_eq!(w.model().local_control_plane(), None, "{what}\n{}", w.story());
}

fn scenario(channel: &str, auth: Auth, lb: real::Lb, node_ip: &str, purge: bool) {
    let w = real_world(channel, auth, lb, node_ip);
    let want = if purge { w.image.clone() } else { fresh_install(&w) };
    join(&w);
    w.model.clear_calls();
    let (out, err) = leave(&w, purge);
    assert!(out.contains("change(s)") && out.contains("retire them from the control plane"), "{out}");
    let calls = w.model.calls();
    assert!(
        calls.iter().all(|c| c.starts_with("snap ") || c.starts_with("systemctl ")),
        "only snapd and systemd are asked, never MicroK8s: {calls:?}"
    );
    assert_tree(&w, &want, "after leave");
    assert_nothing_of_the_worker(&w, "after leave");
    if !purge {
        // A refresh runs MicroK8s's configure hook, which restarts apiserver-proxy
        // even when it is disabled (F5): a disabled snap is not refreshed.
        w.model.refresh();
        assert_nothing_of_the_worker(&w, "after a refresh attempt");
        assert!(w.model.snap_cmd(&["list", "microk8s"]).1.contains("disabled"), "{err}");
    }
    w.model.reboot();
    assert_nothing_of_the_worker(&w, "after a reboot");
    assert_tree(&w, &want, "after a reboot");

    // A second leave changes nothing: it only looks.
    w.model.clear_calls();
    let (out, _) = leave(&w, purge);
    assert!(out.contains("nothing to undo"), "{out}");
    assert_eq!(w.model.calls(), ["snap list microk8s"], "the second leave acted");
    assert_tree(&w, &want, "after a second leave");
}

#[test]
fn v1_20_traefik_purge() {
    scenario("1.20/stable", Auth::Token, real::Lb::Traefik, "127.0.0.120", true);
}

#[test]
fn v1_20_traefik_keep_the_snap() {
    scenario("1.20/stable", Auth::Token, real::Lb::Traefik, "127.0.0.121", false);
}

#[test]
fn v1_26_microk8s_proxy_purge() {
    scenario("1.26/stable", Auth::Token, real::Lb::Microk8sProxy, "127.0.0.122", true);
}

#[test]
fn v1_26_microk8s_proxy_keep_the_snap() {
    scenario("1.26/stable", Auth::Token, real::Lb::Microk8sProxy, "127.0.0.123", false);
}

#[test]
fn v1_30_x509_builtin_purge() {
    scenario("1.30/stable", Auth::X509, real::Lb::Builtin, "127.0.0.124", true);
}

#[test]
fn v1_30_x509_builtin_keep_the_snap() {
    scenario("1.30/stable", Auth::X509, real::Lb::Builtin, "127.0.0.125", false);
}

/// `leave --help` prints and exits 0, whatever else is on the line, and touches
/// nothing.
#[test]
fn help_changes_nothing() {
    let w = real_world("1.30/stable", Auth::X509, real::Lb::Builtin, "127.0.0.126");
    join(&w);
    let before = common::tree(&w.root);
    w.model.clear_calls();
    for extra in [&["--help"][..], &["--purge", "--help"], &["-h", "--bogus"]] {
        let (code, out, err) = common::run_leave(&w.root, &w.model, extra);
        assert_eq!(code, 0, "{extra:?}: {err}");
        assert!(out.contains("Usage: mk8s-bootstrap leave") && out.contains("Exit codes"), "{out}");
    }
    assert_eq!(w.model.calls(), Vec::<String>::new(), "--help ran something");
    assert_tree(&w, &before, "after --help");
    w.assert_worker("after leave --help");
}

/// The plan deleted (or never kept): the well-known paths and the undo journal
/// still say what to undo.
#[test]
fn without_the_plan_leave_still_cleans_up() {
    let w = real_world("1.30/stable", Auth::X509, real::Lb::Builtin, "127.0.0.127");
    let want = fresh_install(&w);
    join(&w);
    fs::remove_file(w.root.join(PLAN_PATH.trim_start_matches('/'))).unwrap();
    let (out, err) = leave(&w, false);
    assert!(err.contains("no plan at /etc/mk8s-worker/plan.json"), "{err}");
    assert!(out.contains("stopped, disabled and removed mk8s-balance.service"), "{out}");
    assert_tree(&w, &want, "after leave without a plan");
    assert_nothing_of_the_worker(&w, "after leave without a plan");
}

/// `snap` and `systemctl` that SIGKILL the agent before its Nth command in this
/// run (`kill-at` in `dir`), else run the model's.
fn killing_wrappers(w: &real::Peers, dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut paths = Vec::new();
    for (tool, real) in [("snap", &w.model.snap), ("systemctl", &w.model.systemctl)] {
        let p = dir.join(tool);
        let d = dir.display();
        write_script(
            &p,
            &format!(
                "#!/bin/sh\nn=$(( $(cat '{d}/count' 2>/dev/null || echo 0) + 1 ))\necho $n > '{d}/count'\n\
                 if [ \"$n\" = \"$(cat '{d}/kill-at')\" ]; then kill -KILL $PPID; exit 1; fi\nexec '{}' \"$@\"\n",
                real.display()
            ),
        );
        paths.push(p);
    }
    (paths.remove(0), paths.remove(0))
}

/// Killed before each of its commands in turn (one joined machine per kill
/// point), then run again: the rerun finishes, and the machine ends as clean as
/// after one uninterrupted leave.
#[test]
fn killed_before_every_command_and_rerun_converges() {
    let mut kills = 0;
    for n in 1..40 {
        let w = real_world("1.26/stable", Auth::Token, real::Lb::Microk8sProxy, "127.0.0.128");
        let want = fresh_install(&w);
        join(&w);
        let dir = tempfile::tempdir().unwrap();
        let (snap, systemctl) = killing_wrappers(&w, dir.path());
        fs::write(dir.path().join("kill-at"), n.to_string()).unwrap();
        let out = std::process::Command::new(common::BIN)
            .arg("leave")
            .arg("--root")
            .arg(&w.root)
            .arg("--systemctl")
            .arg(&systemctl)
            .arg("--snap")
            .arg(&snap)
            .output()
            .unwrap();
        match out.status.code() {
            // Fewer than n commands: every kill point was tried.
            Some(0) => break,
            None => kills += 1,
            Some(c) => panic!("exit {c}: {}", String::from_utf8_lossy(&out.stderr)),
        }
        let what = format!("killed before command {n}, then run again");
        let (code, out, err) = common::run_leave(&w.root, &w.model, &[]);
        assert_eq!(code, 0, "{what}:\n{out}\n{err}\n{}", w.story());
        assert_tree(&w, &want, &what);
        assert_nothing_of_the_worker(&w, &what);
    }
    // systemctl stop and disable of the maintain timer, its service and the join's
    // unit, daemon-reload; snap list, stop --disable, disable.
    assert_eq!(kills, 10, "the wrappers did not interrupt the agent before each command");
}

/// A snapd that does not answer is no evidence that MicroK8s is gone: the step
/// fails (exit 75), the plan and the journal stay, and a rerun finishes.
#[test]
fn a_failed_step_keeps_the_plan_and_the_journal_for_the_rerun() {
    let w = real_world("1.26/stable", Auth::Token, real::Lb::Traefik, "127.0.0.130");
    let want = fresh_install(&w);
    join(&w);
    let down = w.root.parent().unwrap().join("snapd-down");
    write_script(&down, "#!/bin/sh\necho 'error: cannot communicate with server: connection refused' >&2\nexit 1\n");
    let out = std::process::Command::new(common::BIN)
        .arg("leave")
        .arg("--root")
        .arg(&w.root)
        .arg("--systemctl")
        .arg(&w.model.systemctl)
        .arg("--snap")
        .arg(&down)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(75), "{stdout}");
    assert!(stdout.contains("1 step(s) failed") && stdout.contains("cannot communicate with server"), "{stdout}");
    assert!(w.root.join(PLAN_PATH.trim_start_matches('/')).exists(), "the plan is kept for the rerun");
    assert!(w.root.join("var/lib/mk8s-worker/undo").is_dir(), "the journal is kept for the rerun");
    let (out, _) = leave(&w, false);
    assert!(out.contains("snap stop --disable"), "{out}");
    assert_tree(&w, &want, "after the rerun");
    assert_nothing_of_the_worker(&w, "after the rerun");
}

/// A worker joined by an agent that kept no journal: the plan's files go, the
/// install hook's kubeconfigs come back from `.backup`, our lines leave the args
/// files; what cannot be told stays or goes as documented: the locks and
/// args/kubelite stay, flags ours replaced are not back, and the serving
/// certificate the plan installed over the install hook's is removed.
#[test]
fn a_worker_joined_without_the_journal_is_undone_from_the_plan() {
    let w = real_world("1.30/stable", Auth::X509, real::Lb::Builtin, "127.0.0.131");
    let want = fresh_install(&w);
    join(&w);
    fs::remove_dir_all(w.root.join("var/lib/mk8s-worker/undo")).unwrap();
    let (out, _) = leave(&w, false);
    assert!(out.contains("(no journal: from the plan)"), "{out}");
    let diff = common::tree_diff(&want, &common::tree(&w.root));
    // The tree names the revision's directory (`current` is a symlink to it).
    let rev = fs::read_link(w.root.join("var/snap/microk8s/current")).unwrap();
    let data = format!("var/snap/microk8s/{}", rev.display());
    let allowed = |line: &str| {
        ["var/lock/", "args/kubelite", "args/kubelet", "args/kube-proxy", "certs/kubelet.crt", "certs/kubelet.key"]
            .iter()
            .any(|p| line.contains(&format!("{data}/{p}")))
    };
    assert!(diff.iter().all(|l| allowed(l)), "more than the documented leftovers:\n{}", diff.join("\n"));
    let now = common::tree(&w.root);
    for f in ["credentials/kubelet.config", "credentials/proxy.config"] {
        let key = format!("{data}/{f}");
        assert!(want.contains_key(&key), "{key} is in the fresh tree");
        assert_eq!(want.get(&key), now.get(&key), "{f}");
    }
    let kubelet = fs::read_to_string(w.root.join(data).join("args/kubelet")).unwrap();
    assert!(!kubelet.contains("--hostname-override"), "our lines are out of args/kubelet:\n{kubelet}");
    assert_nothing_of_the_worker(&w, "after leave without a journal");
}

/// Retired before its join ever ran (MicroK8s installed, the user-data written,
/// the agent never started): the snap's files are not ours to touch, ours go.
#[test]
fn a_machine_whose_join_never_ran_keeps_the_snaps_files() {
    let w = real_world("1.30/stable", Auth::X509, real::Lb::Builtin, "127.0.0.132");
    let want = fresh_install(&w);
    let (out, _) = leave(&w, false);
    assert!(!out.contains("$SNAP_DATA"), "{out}");
    assert_tree(&w, &want, "after leave");
    assert_nothing_of_the_worker(&w, "after leave");
}
