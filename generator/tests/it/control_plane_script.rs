//! `merge-known-tokens.sh`, the one script we generate that runs as root on a
//! control-plane node, run by the real bash against a control-plane layout in a
//! temp dir: `$SNAP_DATA/credentials/known_tokens.csv`, `args/kube-apiserver`,
//! `certs/ca.crt`, a `systemctl` on PATH that records (or fails) restarts, and the
//! simulated apiserver answering the `/readyz` the script waits for.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use mk8s_testkit::pki::Ca;
use mk8s_testkit::{tools, workspace};

use crate::common;

/// MicroK8s's own lines, as a 1.20 control plane has them (none of them ours).
const THEIRS: &str = "adminTOKEN,admin,admin,\"system:masters\"\nkubeletTOKEN,system:node:cp1,kubelet-0,\"system:nodes\"\nproxyTOKEN,system:kube-proxy,kube-proxy\n";

struct ControlPlane {
    dir: tempfile::TempDir,
    snap_data: PathBuf,
    bin: PathBuf,
    bundle: PathBuf,
    _apiserver: mk8s_testkit::upstream::ControlPlane,
    readyz: String,
}

impl ControlPlane {
    /// A control-plane node with `existing` as its known_tokens.csv, and the seed
    /// fixture's bundle made by the real `mk8s-gen control-plane`.
    fn new(existing: &str) -> ControlPlane {
        let dir = tempfile::tempdir().unwrap();
        let snap_data = dir.path().join("snap");
        for d in ["credentials", "args", "certs", "var/lock"] {
            fs::create_dir_all(snap_data.join(d)).unwrap();
        }
        fs::write(snap_data.join("var/lock/ha-cluster"), "").unwrap();
        fs::write(
            snap_data.join("args/kube-apiserver"),
            "--secure-port=16443\n--token-auth-file=${SNAP_DATA}/credentials/known_tokens.csv\n",
        )
        .unwrap();
        let csv = snap_data.join("credentials/known_tokens.csv");
        fs::write(&csv, existing).unwrap();
        fs::set_permissions(&csv, fs::Permissions::from_mode(0o660)).unwrap();
        let ca = Arc::new(Ca::new("cp-script-ca"));
        fs::write(snap_data.join("certs/ca.crt"), &ca.cert_pem).unwrap();
        // The real kube-apiserver with MicroK8s 1.20's default args and `existing` as
        // its token file: on its default AlwaysAllow /readyz is 401 without a
        // credential, and the script waits with the admin token of the file it merged
        // into. (The recorded systemctl does not restart it.)
        let mut options = mk8s_testkit::upstream::Options::new(20, mk8s_testkit::apiserver::Authz::AlwaysAllow);
        options.ips = vec!["127.0.0.2".into()];
        options.ca = Some(ca);
        options.known_tokens = existing.to_string();
        let apiserver = mk8s_testkit::upstream::ControlPlane::start(options);
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        let sc = bin.join("systemctl");
        // Records each call; fails a restart while `fail-restart` exists.
        mk8s_testkit::node_model::write_script(&sc, &format!(
                "#!/bin/sh\necho \"$@\" >> '{d}/systemctl.log'\n[ \"$1\" = restart ] && [ -e '{d}/fail-restart' ] && exit 1\nexit 0\n",
                d = dir.path().display()
            ));
        let bundle = dir.path().join("bundle");
        let fx = workspace().join("fixtures/seed");
        let st = common::control_plane_bundle(&fx.join("cluster.yaml"), &fx.join("secrets.yaml"), &bundle).status;
        assert!(st.success());
        let readyz = format!("https://{}/readyz", apiserver.apiservers[0].addr);
        ControlPlane { dir, snap_data, bin, bundle, _apiserver: apiserver, readyz }
    }

    fn csv(&self) -> PathBuf {
        self.snap_data.join("credentials/known_tokens.csv")
    }

    fn ours(&self) -> String {
        fs::read_to_string(self.bundle.join("known-tokens.csv")).unwrap()
    }

    fn restarts(&self) -> usize {
        fs::read_to_string(self.dir.path().join("systemctl.log")).unwrap_or_default().lines().count()
    }

    fn set_restart_fails(&self, fail: bool) {
        let p = self.dir.path().join("fail-restart");
        if fail {
            fs::write(p, "").unwrap();
        } else {
            let _ = fs::remove_file(p);
        }
    }

    fn command(&self, bundle: &Path) -> Command {
        let mut c = Command::new(tools::require("bash"));
        c.arg(bundle.join("merge-known-tokens.sh"))
            .env("SNAP_DATA", &self.snap_data)
            .env("MK8S_READYZ_URL", &self.readyz)
            .env("PATH", format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap()));
        c
    }

    fn run(&self) -> Output {
        self.command(&self.bundle).output().unwrap()
    }

    /// Files in credentials/ other than known_tokens.csv.
    fn others(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.snap_data.join("credentials"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n != "known_tokens.csv")
            .collect();
        v.sort();
        v
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn merge_is_idempotent_and_keeps_other_lines() {
    let stale = "stale-token,system:node:worker-1,mk8s-kubelet-worker-1,\"system:nodes\"\n";
    let cp = ControlPlane::new(&format!("{THEIRS}{stale}"));
    let o = cp.run();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("go on with the next control-plane node"), "waited for /readyz: {}", text(&o));
    let merged = fs::read_to_string(cp.csv()).unwrap();
    assert_eq!(merged, format!("{THEIRS}{}", cp.ours()));
    assert_eq!(fs::metadata(cp.csv()).unwrap().permissions().mode() & 0o777, 0o660, "mode kept");
    assert_eq!(
        fs::read_to_string(cp.dir.path().join("systemctl.log")).unwrap(),
        "restart snap.microk8s.daemon-apiserver.service\n"
    );
    let others = cp.others();
    assert_eq!(others.len(), 1, "one backup, no temp files, no pending marker: {others:?}");
    assert!(others[0].starts_with("known_tokens.csv.bak."));
    let backup = cp.snap_data.join("credentials").join(&others[0]);
    assert_eq!(fs::read_to_string(backup).unwrap(), format!("{THEIRS}{stale}"));
    // Second run: nothing changes, nothing restarts, no new backup.
    let o = cp.run();
    assert!(o.status.success() && text(&o).contains("nothing to do"), "{}", text(&o));
    assert_eq!(fs::read_to_string(cp.csv()).unwrap(), merged);
    assert_eq!(cp.restarts(), 1);
    assert_eq!(cp.others().len(), 1);
}

#[test]
fn the_generator_refuses_a_bundle_without_workers() {
    let dir = tempfile::tempdir().unwrap();
    let fx = workspace().join("fixtures/seed");
    let facts = fs::read_to_string(fx.join("cluster.yaml")).unwrap();
    let facts = facts[..facts.find("workers:").unwrap()].to_string() + "workers: []\n";
    fs::write(dir.path().join("cluster.yaml"), facts).unwrap();
    fs::copy(fx.join("ca.crt"), dir.path().join("ca.crt")).unwrap();
    let o = common::control_plane_bundle(
        &dir.path().join("cluster.yaml"),
        &fx.join("secrets.yaml"),
        &dir.path().join("cp"),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no workers"), "{}", text(&o));
    assert!(!dir.path().join("cp/known-tokens.csv").exists());
}

/// What `workers: []` used to produce: an empty bundle. awk's `NR == FNR` idiom
/// then read the control plane's file as the bundle and wrote an empty file.
#[test]
fn an_empty_bundle_is_refused_and_nothing_is_lost() {
    let cp = ControlPlane::new(THEIRS);
    fs::write(cp.bundle.join("known-tokens.csv"), "").unwrap();
    let o = cp.run();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("empty"), "{}", text(&o));
    assert_eq!(fs::read_to_string(cp.csv()).unwrap(), THEIRS, "untouched");
    assert_eq!(cp.restarts(), 0);
    assert!(cp.others().is_empty(), "{:?}", cp.others());
}

#[test]
fn a_bundle_line_we_do_not_write_is_refused() {
    let cp = ControlPlane::new(THEIRS);
    let hostile = format!("{}{}", cp.ours(), "f".repeat(64) + ",admin,mk8s-kubelet-x,\"system:masters\"\n");
    fs::write(cp.bundle.join("known-tokens.csv"), hostile).unwrap();
    let o = cp.run();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("line(s) 3"), "{}", text(&o));
    assert_eq!(fs::read_to_string(cp.csv()).unwrap(), THEIRS);
    assert_eq!(cp.restarts(), 0);
}

/// A CRLF file: the old line of our identity must go (it is a revoked token), and
/// the file comes out with plain line ends.
#[test]
fn crlf_files_are_normalised_and_the_old_token_goes() {
    let stale = "stale-token,system:node:worker-1,mk8s-kubelet-worker-1,\"system:nodes\"\n";
    let cp = ControlPlane::new(&format!("{THEIRS}{stale}").replace('\n', "\r\n"));
    let o = cp.run();
    assert!(o.status.success(), "{}", text(&o));
    let merged = fs::read_to_string(cp.csv()).unwrap();
    assert!(!merged.contains("stale-token"), "{merged}");
    assert!(!merged.contains('\r'));
    assert_eq!(merged, format!("{THEIRS}{}", cp.ours()));
}

/// A failed restart (or a kill between the rename and the restart) is recorded,
/// and the next run restarts even though the file needs no change.
#[test]
fn a_failed_restart_is_done_by_the_next_run() {
    let cp = ControlPlane::new(THEIRS);
    cp.set_restart_fails(true);
    let o = cp.run();
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert!(text(&o).contains("still pending"), "{}", text(&o));
    assert_eq!(fs::read_to_string(cp.csv()).unwrap(), format!("{THEIRS}{}", cp.ours()), "the file was merged");
    assert!(cp.others().iter().any(|n| n == ".mk8s-restart-pending"));
    cp.set_restart_fails(false);
    let o = cp.run();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("did not finish restarting"), "{}", text(&o));
    assert_eq!(cp.restarts(), 2, "the pending restart was done");
    assert!(!cp.others().iter().any(|n| n == ".mk8s-restart-pending"));
    let o = cp.run();
    assert!(text(&o).contains("nothing to do"), "{}", text(&o));
    assert_eq!(cp.restarts(), 2);
}

/// Several runs at once, each with a bundle of its own workers: the lock
/// serialises them, so every run's lines survive and every backup is distinct.
#[test]
fn concurrent_runs_lose_no_line() {
    let cp = ControlPlane::new(THEIRS);
    let script = cp.bundle.join("merge-known-tokens.sh");
    let bundles: Vec<PathBuf> = (0..6)
        .map(|i| {
            let b = cp.dir.path().join(format!("bundle-{i}"));
            fs::create_dir_all(&b).unwrap();
            fs::copy(&script, b.join("merge-known-tokens.sh")).unwrap();
            let lines = format!(
                "{t1},system:kube-proxy,mk8s-kube-proxy-w{i}\n{t2},system:node:w{i},mk8s-kubelet-w{i},\"system:nodes\"\n",
                t1 = format!("{i:x}").repeat(64),
                t2 = format!("{:x}", i + 6).repeat(64)
            );
            fs::write(b.join("known-tokens.csv"), lines).unwrap();
            b
        })
        .collect();
    let children: Vec<_> = bundles.iter().map(|b| cp.command(b).spawn().unwrap()).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let merged = fs::read_to_string(cp.csv()).unwrap();
    assert!(merged.starts_with(THEIRS), "{merged}");
    for i in 0..6 {
        assert!(merged.contains(&format!("mk8s-kubelet-w{i},")), "w{i} lost:\n{merged}");
        assert!(merged.contains(&format!("mk8s-kube-proxy-w{i}\n")), "w{i} lost:\n{merged}");
    }
    assert_eq!(merged.lines().count(), 3 + 12);
    let backups: Vec<_> = cp.others().into_iter().filter(|n| n.starts_with("known_tokens.csv.bak.")).collect();
    assert_eq!(backups.len(), 6, "one backup per change, none overwritten: {backups:?}");
    assert!(fs::read_to_string(cp.snap_data.join("credentials").join(&backups[0])).is_ok());
}

#[test]
fn an_apiserver_without_token_auth_is_refused() {
    let cp = ControlPlane::new("a,admin,admin\n");
    fs::write(cp.snap_data.join("args/kube-apiserver"), "--secure-port=16443\n").unwrap();
    let o = cp.run();
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).contains("auth: x509"));
    assert_eq!(fs::read_to_string(cp.csv()).unwrap(), "a,admin,admin\n", "untouched");
    assert_eq!(cp.restarts(), 0, "nothing restarted");
}

/// MicroK8s's default `--authorization-mode=AlwaysAllow` (default-args/kube-apiserver
/// L3 on every branch) makes every worker credential cluster-admin: the script says
/// so loudly, also when the flag is absent (the apiserver's default), and not with
/// RBAC; it still merges.
#[test]
fn always_allow_is_warned_about_loudly() {
    for (args, warned) in [
        ("--authorization-mode=AlwaysAllow\n", true),
        ("", true),
        ("--authorization-mode=RBAC,AlwaysAllow\r\n", true),
        ("--authorization-mode=RBAC,Node\n", false),
        // Forms the snap's wrapper applies too (its args file is split into words).
        ("--authorization-mode=AlwaysAllow \n", true),
        ("--profiling=false --authorization-mode=AlwaysAllow\n", true),
        ("--authorization-mode=RBAC,Node\n--authorization-mode=AlwaysAllow\n", true),
        ("--authorization-mode AlwaysAllow\n", true),
        ("--authorization-mode=\"AlwaysAllow\"\n", true),
        ("--authorization-mode=RBAC,Node # was --authorization-mode=AlwaysAllow\n", false),
    ] {
        let cp = ControlPlane::new(THEIRS);
        fs::write(
            cp.snap_data.join("args/kube-apiserver"),
            format!("--secure-port=16443\n{args}--token-auth-file=${{SNAP_DATA}}/credentials/known_tokens.csv\n"),
        )
        .unwrap();
        let o = cp.run();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(stderr.contains("!!! WARNING") && stderr.contains("cluster-admin"), warned, "{args:?}: {stderr}");
        assert!(stderr.contains("microk8s enable rbac") == warned);
    }
}

/// `auth: x509`: the bundle's check-control-plane.sh gives the same warning and
/// changes nothing.
#[test]
fn the_x509_bundle_checks_the_authorization_mode() {
    let dir = tempfile::tempdir().unwrap();
    let fx = workspace().join("fixtures/x509");
    let bundle = dir.path().join("bundle");
    let st = common::control_plane_bundle(&fx.join("cluster.yaml"), &fx.join("secrets.yaml"), &bundle).status;
    assert!(st.success());
    let snap = dir.path().join("snap");
    fs::create_dir_all(snap.join("args")).unwrap();
    fs::create_dir_all(snap.join("var/lock")).unwrap();
    fs::write(snap.join("var/lock/ha-cluster"), "").unwrap();
    let run = || {
        Command::new(tools::require("bash"))
            .arg(bundle.join("check-control-plane.sh"))
            .env("SNAP_DATA", &snap)
            .output()
            .unwrap()
    };
    let o = run();
    assert_eq!(o.status.code(), Some(2), "no args/kube-apiserver: {}", text(&o));
    fs::write(snap.join("args/kube-apiserver"), "--authorization-mode=AlwaysAllow\n--secure-port=16443\n").unwrap();
    let o = run();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("!!! WARNING") && text(&o).contains("cluster-admin"), "{}", text(&o));
    fs::write(snap.join("args/kube-apiserver"), "--authorization-mode=RBAC,Node\n").unwrap();
    let o = run();
    assert!(o.status.success() && !text(&o).contains("WARNING"), "{}", text(&o));
    assert!(text(&o).contains("authorization: RBAC,Node"), "{}", text(&o));
    // A worker (clustered.lock) is refused.
    fs::write(snap.join("var/lock/clustered.lock"), "").unwrap();
    assert_eq!(run().status.code(), Some(2));
}

/// A non-HA (etcd/flannel) control plane, without `var/lock/ha-cluster`: both
/// scripts refuse (exit 9) and change nothing.
#[test]
fn a_non_ha_control_plane_is_refused() {
    let cp = ControlPlane::new(THEIRS);
    fs::remove_file(cp.snap_data.join("var/lock/ha-cluster")).unwrap();
    let o = cp.run();
    assert_eq!(o.status.code(), Some(9), "{}", text(&o));
    assert!(text(&o).contains("not an HA (dqlite) MicroK8s cluster"), "{}", text(&o));
    assert_eq!(fs::read_to_string(cp.csv()).unwrap(), THEIRS);
    assert_eq!(cp.restarts(), 0);
    assert!(cp.others().is_empty(), "{:?}", cp.others());

    let dir = tempfile::tempdir().unwrap();
    let fx = workspace().join("fixtures/x509");
    let bundle = dir.path().join("bundle");
    let st = common::control_plane_bundle(&fx.join("cluster.yaml"), &fx.join("secrets.yaml"), &bundle).status;
    assert!(st.success());
    let o = Command::new(tools::require("bash"))
        .arg(bundle.join("check-control-plane.sh"))
        .env("SNAP_DATA", &cp.snap_data)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(9), "{}", text(&o));
}

/// `--help` never merges or restarts (it did both before); `--dry-run` names the
/// users it would add or replace, never a token, and changes and restarts nothing;
/// an unknown argument is refused.
#[test]
fn help_and_dry_run_neither_merge_nor_restart() {
    let cp = ControlPlane::new(THEIRS);
    let mut secrets: Vec<String> = cp.ours().lines().map(|l| l.split(',').next().unwrap().to_string()).collect();
    secrets.extend(["adminTOKEN".to_string(), "kubeletTOKEN".into()]);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let dir = cp.dir.path().to_path_buf();
    common::help_dry_run_and_bad_arguments_change_nothing(
        |args| cp.command(&cp.bundle).args(args).output().unwrap(),
        &[&dir],
        &["add:     user system:node:worker-1", "add:     user system:kube-proxy", "then it would restart"],
        &secrets,
    );
    assert_eq!(cp.restarts(), 0, "restarted");
}

/// A retired worker (`fixtures/retired`: worker-2) loses exactly the two lines
/// mk8s-gen wrote for it; a line someone else wrote under its name, and the lines
/// of worker-20 (whose name contains `worker-2`), stay; a second run changes nothing.
#[test]
fn a_retired_workers_lines_go_and_nothing_else() {
    let hex = |c: char| c.to_string().repeat(64);
    let retired = format!(
        "{},system:kube-proxy,mk8s-kube-proxy-worker-2\n{},system:node:worker-2,mk8s-kubelet-worker-2,\"system:nodes\"\n",
        hex('a'),
        hex('b')
    );
    let others = format!(
        "hand-made,system:node:worker-2,mk8s-kubelet-worker-2,\"system:nodes\"\n{},system:node:worker-2,someone-elses,\"system:nodes\"\n{},system:node:worker-20,mk8s-kubelet-worker-20,\"system:nodes\"\n",
        hex('c'),
        hex('d')
    );
    let cp = ControlPlane::new(&format!("{THEIRS}{retired}{others}"));
    let bundle = cp.dir.path().join("retired-bundle");
    let fx = workspace().join("fixtures/retired");
    let st = common::control_plane_bundle(&fx.join("cluster.yaml"), &fx.join("secrets.yaml"), &bundle).status;
    assert!(st.success());
    let ours = fs::read_to_string(bundle.join("known-tokens.csv")).unwrap();
    assert!(!ours.contains("worker-2,"), "the bundle registers no retired worker: {ours}");

    let o = cp.command(&bundle).arg("--dry-run").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for id in ["mk8s-kube-proxy-worker-2", "mk8s-kubelet-worker-2"] {
        assert!(text(&o).contains(&format!("remove:  user-id {id}\n")), "{}", text(&o));
    }
    assert_eq!(fs::read_to_string(cp.csv()).unwrap(), format!("{THEIRS}{retired}{others}"), "dry run");

    let o = cp.command(&bundle).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(fs::read_to_string(cp.csv()).unwrap(), format!("{THEIRS}{others}{ours}"));
    assert_eq!(cp.restarts(), 1, "the apiserver reads the file at start only");
    let o = cp.command(&bundle).output().unwrap();
    assert!(o.status.success() && text(&o).contains("nothing to do"), "{}", text(&o));
    assert_eq!(cp.restarts(), 1);
}
