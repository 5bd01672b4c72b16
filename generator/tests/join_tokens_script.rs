//! `register-join-tokens.sh` (`auth: microk8s-join`) run by the real bash against a
//! control-plane layout in a temp dir, with a stand-in `microk8s` whose
//! `kubectl get nodes -o name` prints the Nodes the test says exist. The token
//! file it writes is read back with the simulated cluster-agent's own parser
//! (`mk8s_testkit::cluster_agent::is_valid_token`, the agent's `IsValidToken`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mk8s_testkit::cluster_agent::is_valid_token;
use mk8s_testkit::{tools, workspace};

mod common;

struct Cp {
    _dir: tempfile::TempDir,
    root: PathBuf,
    snap_data: PathBuf,
    microk8s: PathBuf,
}

fn facts(dir: &Path, channel: &str, workers: &[&str]) -> PathBuf {
    fs::copy(workspace().join("fixtures/microk8s-join/ca.crt"), dir.join("ca.crt")).unwrap();
    let ws: String = workers.iter().map(|w| format!("  - {{ name: {w} }}\n")).collect();
    let text = format!(
        "cluster:\n  name: mk8s\n  microk8s: {{ channel: {channel} }}\n  ca: {{ cert-file: ca.crt }}\n  auth: microk8s-join\n  microk8s-join: {{ token-ttl-hours: 2 }}\n  control-plane:\n    - {{ name: cp-1, address: 10.130.0.2 }}\nworkers:\n{ws}"
    );
    let p = dir.join(format!("cluster-{}.yaml", workers.len()));
    fs::write(&p, text).unwrap();
    p
}

impl Cp {
    fn new() -> Cp {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let snap_data = root.join("snap");
        fs::create_dir_all(snap_data.join("args")).unwrap();
        fs::create_dir_all(snap_data.join("var/lock")).unwrap();
        fs::create_dir_all(snap_data.join("credentials")).unwrap();
        fs::write(snap_data.join("args/kube-apiserver"), "--secure-port=16443\n").unwrap();
        fs::write(snap_data.join("var/lock/ha-cluster"), "").unwrap();
        let microk8s = root.join("microk8s");
        fs::write(
            &microk8s,
            format!(
                "#!/bin/sh\n[ \"$1 $2 $3\" = 'kubectl get nodes' ] || exit 3\nf='{}'\n[ -f \"$f\" ] || exit 1\ncat \"$f\"\n",
                root.join("nodes").display()
            ),
        )
        .unwrap();
        fs::set_permissions(&microk8s, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("nodes"), "node/cp-1\n").unwrap();
        Cp { _dir: dir, root, snap_data, microk8s }
    }

    fn bundle(&self, channel: &str, workers: &[&str]) -> PathBuf {
        let out = self.root.join(format!("bundle-{}-{}", channel.replace('/', "-"), workers.len()));
        let st = common::control_plane_bundle(
            &facts(&self.root, channel, workers),
            &workspace().join("fixtures/microk8s-join/secrets.yaml"),
            &out,
        );
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        out
    }

    fn run(&self, bundle: &Path) -> Output {
        Command::new(tools::require("bash"))
            .arg(bundle.join("register-join-tokens.sh"))
            .env("SNAP_DATA", &self.snap_data)
            .env("MK8S_MICROK8S", &self.microk8s)
            .output()
            .unwrap()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.snap_data.join("credentials").join(name)
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The bundle's NAME -> TOKEN.
fn tokens(bundle: &Path) -> Vec<(String, String)> {
    fs::read_to_string(bundle.join("join-tokens.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (n, t) = l.split_once(' ').unwrap();
            (n.to_string(), t.to_string())
        })
        .collect()
}

#[test]
fn persistent_tokens_on_1_27_plus_registered_idempotently_and_pruned() {
    let cp = Cp::new();
    let file = cp.file("persistent-cluster-tokens.txt");
    // Lines that are not ours: an operator's token, a malformed line, no final newline.
    let foreign = "operator-token-0123456789abcdef0123\r\n# a comment\nanother|123";
    fs::write(&file, foreign).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o660)).unwrap();
    let three = cp.bundle("1.30/stable", &["worker-1", "worker-2", "worker-3"]);
    let t = tokens(&three);
    assert_eq!(t.len(), 3);
    assert!(t.iter().all(|(_, tok)| tok.len() == 64));
    let o = cp.run(&three);
    assert!(o.status.success(), "{}", text(&o));
    for (_, tok) in &t {
        assert_eq!(is_valid_token(tok, &file), (true, false), "persistent: no TTL");
    }
    let after = fs::read_to_string(&file).unwrap();
    assert!(after.starts_with("operator-token-0123456789abcdef0123\r\n# a comment\nanother|123\n"), "{after:?}");
    assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o660, "mode kept");
    assert!(!text(&o).contains(&t[0].1), "tokens are never printed");
    // Idempotent.
    let o = cp.run(&three);
    assert!(text(&o).contains("nothing to do"), "{}", text(&o));
    assert_eq!(fs::read_to_string(&file).unwrap(), after);

    // worker-2 joined: its Node exists, so its token goes.
    fs::write(cp.root.join("nodes"), "node/cp-1\nnode/worker-2\n").unwrap();
    let o = cp.run(&three);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!is_valid_token(&t[1].1, &file).0, "a joined worker's token is pruned");
    assert!(is_valid_token(&t[0].1, &file).0 && is_valid_token(&t[2].1, &file).0);
    // worker-3 left the facts: its token goes too; foreign lines stay.
    let two = cp.bundle("1.30/stable", &["worker-1", "worker-2"]);
    let o = cp.run(&two);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!is_valid_token(&t[2].1, &file).0, "a removed worker's token is pruned");
    assert!(is_valid_token(&t[0].1, &file).0);
    let now = fs::read_to_string(&file).unwrap();
    assert!(now.contains("operator-token-0123456789abcdef0123\r\n# a comment\nanother|123\n"));
    // The nodes cannot be listed: nothing is pruned by that rule, and it says so.
    fs::remove_file(cp.root.join("nodes")).unwrap();
    let o = cp.run(&two);
    assert!(o.status.success() && text(&o).contains("cannot list the nodes"), "{}", text(&o));
    assert!(is_valid_token(&t[1].1, &file).0, "without the node list worker-2's token is registered again");
}

#[test]
fn ttl_tokens_before_1_27_and_refusals() {
    let cp = Cp::new();
    let bundle = cp.bundle("1.26/stable", &["worker-1"]);
    let file = cp.file("cluster-tokens.txt");
    let t = tokens(&bundle);
    let o = cp.run(&bundle);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(is_valid_token(&t[0].1, &file), (true, true), "token|expiry: reusable until it expires");
    let line = fs::read_to_string(&file).unwrap();
    let expiry: i64 = line.trim().split_once('|').unwrap().1.parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((expiry - now - 7200).abs() < 60, "expiry = now + token-ttl-hours");
    assert!(!cp.file("persistent-cluster-tokens.txt").exists());
    let o = cp.run(&bundle);
    assert!(text(&o).contains("nothing to do"), "an unexpired line is kept");
    // An expired line of ours is renewed.
    fs::write(&file, format!("{}|100\n", t[0].1)).unwrap();
    let o = cp.run(&bundle);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(is_valid_token(&t[0].1, &file), (true, true));
    // Not on a worker, nor on a non-HA cluster; a tampered bundle is refused.
    fs::write(cp.snap_data.join("var/lock/clustered.lock"), "").unwrap();
    assert_eq!(cp.run(&bundle).status.code(), Some(2));
    fs::remove_file(cp.snap_data.join("var/lock/clustered.lock")).unwrap();
    fs::remove_file(cp.snap_data.join("var/lock/ha-cluster")).unwrap();
    assert_eq!(cp.run(&bundle).status.code(), Some(9));
    fs::write(cp.snap_data.join("var/lock/ha-cluster"), "").unwrap();
    fs::write(bundle.join("join-tokens.txt"), "worker-1 x,system:masters\n").unwrap();
    assert_eq!(cp.run(&bundle).status.code(), Some(4));
}
