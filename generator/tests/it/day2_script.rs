//! `apply-day2.sh` from an `auth: x509` control-plane bundle: its arguments and
//! refusals with a recording stand-in for kubectl, then its one object applied by
//! the real kubectl to the real kube-apiserver (RBAC,Node, MicroK8s 1.34's default
//! args), where it must be accepted, grant what the kubelets' renewals need, and
//! change nothing the second time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::upstream::{ControlPlane, Options};
use mk8s_testkit::{tools, workspace};

use crate::common;

struct Node {
    dir: tempfile::TempDir,
    snap_data: PathBuf,
    bundle: PathBuf,
}

impl Node {
    /// A control-plane node's `$SNAP_DATA` and the x509 fixture's bundle, made by
    /// the real `mk8s-gen control-plane`.
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let snap_data = dir.path().join("snap");
        fs::create_dir_all(snap_data.join("args")).unwrap();
        fs::write(snap_data.join("args/kube-apiserver"), "--secure-port=16443\n").unwrap();
        let bundle = dir.path().join("bundle");
        let fx = workspace().join("fixtures/x509");
        let st = common::control_plane_bundle(&fx.join("cluster.yaml"), &fx.join("secrets.yaml"), &bundle);
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        Node { dir, snap_data, bundle }
    }

    /// The script with `kubectl` as its kubectl command.
    fn run(&self, kubectl: &str, args: &[&str]) -> Output {
        Command::new(tools::require("bash"))
            .arg(self.bundle.join("apply-day2.sh"))
            .args(args)
            .env("SNAP_DATA", &self.snap_data)
            .env("MK8S_KUBECTL", kubectl)
            .output()
            .unwrap()
    }

    /// A kubectl stand-in that records its arguments and exits `code`.
    fn recorder(&self, code: i32) -> (String, PathBuf) {
        let log = self.dir.path().join("kubectl.calls");
        let bin = self.dir.path().join("kubectl-recorder");
        mk8s_testkit::node_model::write_script(
            &bin,
            &format!("#!/bin/sh\necho \"$*\" >> '{}'\nexit {code}\n", log.display()),
        );
        (bin.display().to_string(), log)
    }
}

fn calls(log: &Path) -> Vec<String> {
    fs::read_to_string(log).unwrap_or_default().lines().map(str::to_string).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn help_bad_arguments_and_the_wrong_node_call_no_kubectl() {
    let n = Node::new();
    let (kubectl, log) = n.recorder(0);
    let help = n.run(&kubectl, &["--help"]);
    assert_eq!(help.status.code(), Some(0), "{}", stderr(&help));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.starts_with("Usage: apply-day2.sh [--dry-run | --help]"), "{text}");
    assert!(text.contains("selfnodeclient") && text.contains("Exit codes"), "{text}");
    let bad = n.run(&kubectl, &["--force"]);
    assert_eq!(bad.status.code(), Some(64), "{}", stderr(&bad));
    // A worker (or any machine without the apiserver's args) is not the place.
    fs::remove_file(n.snap_data.join("args/kube-apiserver")).unwrap();
    let worker = n.run(&kubectl, &[]);
    assert_eq!(worker.status.code(), Some(2), "{}", stderr(&worker));
    assert_eq!(calls(&log), Vec::<String>::new());
}

#[test]
fn a_missing_manifest_or_a_failing_kubectl_is_reported() {
    let n = Node::new();
    let (failing, log) = n.recorder(1);
    let o = n.run(&failing, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("could not apply"), "{}", stderr(&o));
    let manifest = n.bundle.join("node-client-rotation.yaml");
    assert_eq!(calls(&log), [format!("apply -f {}", manifest.display())]);
    fs::remove_file(&manifest).unwrap();
    let o = n.run(&failing, &[]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(calls(&log).len(), 1, "no kubectl call without the manifest");
}

#[test]
fn the_binding_applies_to_the_real_apiserver_and_grants_node_client_renewal() {
    let n = Node::new();
    let mut o = Options::new(34, Authz::RbacNode);
    o.ips.truncate(1);
    let cp = ControlPlane::start(o);
    let kubectl = format!("{} --kubeconfig {}", tools::require("kubectl").display(), cp.admin_kubeconfig(0).display());
    let admin = |args: &[&str]| {
        Command::new(tools::require("kubectl"))
            .arg("--kubeconfig")
            .arg(cp.admin_kubeconfig(0))
            .args(args)
            .output()
            .unwrap()
    };
    // What kube-controller-manager's csrapproving asks before approving a node's
    // renewal (a SubjectAccessReview for certificatesigningrequests/selfnodeclient).
    let node_may_renew = || {
        let o = admin(&[
            "auth",
            "can-i",
            "create",
            "certificatesigningrequests",
            "--subresource=selfnodeclient",
            "--as=system:node:worker-1",
            "--as-group=system:nodes",
        ]);
        String::from_utf8_lossy(&o.stdout).trim() == "yes"
    };
    assert!(!node_may_renew(), "RBAC,Node grants it already: the binding would be pointless");

    let dry = n.run(&kubectl, &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("(server dry run)"));
    assert!(!admin(&["get", "clusterrolebinding", "mk8s-worker:node-client-rotation"]).status.success());

    let first = n.run(&kubectl, &[]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(String::from_utf8_lossy(&first.stdout).contains("created"), "{:?}", first);
    assert!(node_may_renew(), "the binding does not grant selfnodeclient");
    let again = n.run(&kubectl, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("unchanged"), "{:?}", again);
}
