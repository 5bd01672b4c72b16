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
use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::{tools, workspace};

use crate::common;

struct Cp {
    _dir: tempfile::TempDir,
    root: PathBuf,
    snap_data: PathBuf,
    microk8s: PathBuf,
}

fn facts(dir: &Path, channel: &str, workers: &[&str], generations: &[(&str, u32)]) -> PathBuf {
    fs::copy(workspace().join("fixtures/microk8s-join/ca.crt"), dir.join("ca.crt")).unwrap();
    let generation = |w: &str| generations.iter().find(|(n, _)| *n == w).map(|(_, g)| *g).unwrap_or(0);
    let text = FactsYaml::new("mk8s")
        .channel(channel)
        .ca_file("ca.crt")
        .auth_join()
        .join_token_ttl_hours(2)
        .control_plane("cp-1", "10.130.0.2")
        .workers(workers.iter().map(|w| Worker::new(w).generation(generation(w))))
        .yaml();
    let p = dir.join(format!("cluster-{}-{}.yaml", workers.len(), generations.len()));
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
        mk8s_testkit::node_model::write_script(&microk8s, &format!(
                "#!/bin/sh\n[ \"$1 $2 $3\" = 'kubectl get nodes' ] || exit 3\nf='{}'\n[ -f \"$f\" ] || exit 1\ncat \"$f\"\n",
                root.join("nodes").display()
            ));
        fs::write(root.join("nodes"), "node/cp-1\n").unwrap();
        Cp { _dir: dir, root, snap_data, microk8s }
    }

    fn bundle(&self, channel: &str, workers: &[&str]) -> PathBuf {
        self.bundle_with(channel, workers, &[])
    }

    /// A bundle whose workers have the given `generation`s.
    fn bundle_with(&self, channel: &str, workers: &[&str], generations: &[(&str, u32)]) -> PathBuf {
        let out = self.root.join(format!(
            "bundle-{}-{}-{}",
            channel.replace('/', "-"),
            workers.len(),
            generations.iter().map(|(w, g)| format!("{w}.{g}")).collect::<Vec<_>>().join("-")
        ));
        let st = common::control_plane_bundle(
            &facts(&self.root, channel, workers, generations),
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
    // The nodes cannot be listed: nothing is pruned by that rule, it says so and
    // fails (exit 7); a used token stays spent all the same.
    fs::remove_file(cp.root.join("nodes")).unwrap();
    let o = cp.run(&two);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert!(text(&o).contains("cannot list the nodes"), "{}", text(&o));
    assert!(is_valid_token(&t[0].1, &file).0, "still registered");
    assert!(!is_valid_token(&t[1].1, &file).0, "a used token is never registered again");

    // worker-2's Node is deleted: its token is not registered again (every old copy
    // of its user-data would join a machine), and the run says what to do.
    fs::write(cp.root.join("nodes"), "node/cp-1\n").unwrap();
    let o = cp.run(&two);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!is_valid_token(&t[1].1, &file).0, "a deleted worker's used token came back");
    assert!(text(&o).contains("worker-2: its join token was used"), "{}", text(&o));
    // The advice names both ways to a new token: `epoch` for a new machine (what a
    // replacement needs: new credentials), `generation` for the same machine.
    assert!(text(&o).contains("`epoch` in the facts (a new machine)"), "{}", text(&o));
    assert!(text(&o).contains("`generation` (the same machine again)"), "{}", text(&o));
    assert!(!text(&o).contains(&t[1].1), "tokens are never printed");
    // Its next generation is a new token, registered once.
    let next = cp.bundle_with("1.30/stable", &["worker-1", "worker-2"], &[("worker-2", 1)]);
    let t2 = tokens(&next);
    assert_ne!(t2[1].1, t[1].1, "a new generation, a new token");
    assert_eq!(t2[0].1, t[0].1, "the other workers keep theirs");
    let o = cp.run(&next);
    assert!(o.status.success(), "{}", text(&o));
    assert!(is_valid_token(&t2[1].1, &file).0 && !is_valid_token(&t[1].1, &file).0);
    // A new machine's epoch is a new token too (the advice's other way).
    let text_facts = FactsYaml::new("mk8s")
        .channel("1.30/stable")
        .ca_file("ca.crt")
        .auth_join()
        .join_token_ttl_hours(2)
        .control_plane("cp-1", "10.130.0.2")
        .workers([Worker::new("worker-1"), Worker::new("worker-2").epoch(2)])
        .yaml();
    let facts_path = cp.root.join("cluster-epoch.yaml");
    fs::write(&facts_path, text_facts).unwrap();
    let out = cp.root.join("bundle-epoch");
    let st = common::control_plane_bundle(&facts_path, &workspace().join("fixtures/microk8s-join/secrets.yaml"), &out);
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let t3 = tokens(&out);
    assert!(t3[1].1 != t[1].1 && t3[1].1 != t2[1].1, "a new epoch, a new token");
    assert_eq!(t3[0].1, t[0].1, "the other workers keep theirs");
}

/// Cron and systemd timers run without /snap/bin on PATH: the script finds
/// `microk8s` there, and fails (exit 7) when it finds it nowhere.
#[test]
fn microk8s_is_found_in_snap_bin_without_path() {
    let cp = Cp::new();
    let bundle = cp.bundle("1.30/stable", &["worker-1"]);
    let file = cp.file("persistent-cluster-tokens.txt");
    let t = tokens(&bundle);
    fs::write(cp.root.join("nodes"), "node/cp-1\nnode/worker-1\n").unwrap();
    let snap_bin = cp.root.join("snap-bin");
    fs::create_dir_all(&snap_bin).unwrap();
    let run = |path: &str| {
        Command::new(tools::require("bash"))
            .arg(bundle.join("register-join-tokens.sh"))
            .env_clear()
            .env("PATH", path)
            .env("SNAP_DATA", &cp.snap_data)
            .env("MK8S_SNAP_BIN", &snap_bin)
            .output()
            .unwrap()
    };
    // Cron's PATH, and no microk8s anywhere: registered, not pruned, exit 7.
    let o = run("/usr/bin:/bin");
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert!(is_valid_token(&t[0].1, &file).0);
    // In /snap/bin, as the snap installs it: found, and worker-1's token pruned.
    fs::copy(&cp.microk8s, snap_bin.join("microk8s")).unwrap();
    let o = run("/usr/bin:/bin");
    assert!(o.status.success(), "{}", text(&o));
    assert!(!is_valid_token(&t[0].1, &file).0, "pruned through /snap/bin/microk8s");
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
    // An expired token stays expired: removed, never renewed, also on the next run.
    fs::write(&file, format!("{}|100\n", t[0].1)).unwrap();
    let o = cp.run(&bundle);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("worker-1: its join token expired and is not renewed"), "{}", text(&o));
    assert!(!is_valid_token(&t[0].1, &file).0, "an expired token was renewed");
    let o = cp.run(&bundle);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!is_valid_token(&t[0].1, &file).0, "an expired token came back");
    // Not on a worker, nor on a non-HA cluster; a tampered bundle is refused.
    fs::write(cp.snap_data.join("var/lock/clustered.lock"), "").unwrap();
    assert_eq!(cp.run(&bundle).status.code(), Some(2));
    fs::remove_file(cp.snap_data.join("var/lock/clustered.lock")).unwrap();
    fs::remove_file(cp.snap_data.join("var/lock/ha-cluster")).unwrap();
    assert_eq!(cp.run(&bundle).status.code(), Some(9));
    fs::write(cp.snap_data.join("var/lock/ha-cluster"), "").unwrap();
    fs::write(bundle.join("join-tokens.txt"), "worker-1 x,system:masters\n").unwrap();
    assert_eq!(cp.run(&bundle).status.code(), Some(4));
    // An empty (truncated) bundle would remove every token of ours: refused.
    fs::write(bundle.join("join-tokens.txt"), format!("worker-1 {}\n", t[0].1)).unwrap();
    assert!(cp.run(&bundle).status.success());
    let before = fs::read_to_string(&file).unwrap();
    fs::write(bundle.join("join-tokens.txt"), "").unwrap();
    let o = cp.run(&bundle);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("lists no workers"), "{}", text(&o));
    assert_eq!(fs::read_to_string(&file).unwrap(), before, "nothing removed");
}

/// Misuse, as an attacker or a careless operator would: Nodes that come and go,
/// tokens that expire, foreign lines, runs that cannot list the nodes, in random
/// order (a fixed seed, so a failure replays). Whatever happens, a token that was
/// used (its Node seen) or that expired is never valid again, and a token that was
/// neither is valid after every run that could list the nodes.
#[test]
fn a_used_or_expired_token_never_comes_back_whatever_the_order() {
    for (channel, ttl) in [("1.30/stable", false), ("1.26/stable", true)] {
        let cp = Cp::new();
        let names = ["worker-1", "worker-2", "worker-3"];
        let bundle = cp.bundle(channel, &names);
        let t = tokens(&bundle);
        let file = cp.file(if ttl { "cluster-tokens.txt" } else { "persistent-cluster-tokens.txt" });
        let mut nodes = [false; 3];
        let mut spent = [false; 3];
        let mut listable = true;
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut history = Vec::new();
        for _ in 0..60 {
            let w = next(3) as usize;
            let step = match next(6) {
                0 => {
                    nodes[w] = !nodes[w];
                    format!("node {} {}", names[w], if nodes[w] { "exists" } else { "deleted" })
                }
                1 if ttl && !spent[w] => {
                    // The line of ours, as the agent would hold it, with a past expiry.
                    let text = fs::read_to_string(&file).unwrap_or_default();
                    if text.lines().any(|l| l.starts_with(&t[w].1)) {
                        let kept: String =
                            text.lines().filter(|l| !l.starts_with(&t[w].1)).map(|l| format!("{l}\n")).collect();
                        fs::write(&file, format!("{kept}{}|100\n", t[w].1)).unwrap();
                        spent[w] = true;
                    }
                    format!("{} expired", names[w])
                }
                2 => {
                    listable = !listable;
                    format!("nodes listable: {listable}")
                }
                3 => {
                    let mut text = fs::read_to_string(&file).unwrap_or_default();
                    text.push_str("operator-token-0123456789abcdef0123\n");
                    fs::write(&file, text).unwrap();
                    "a foreign line".to_string()
                }
                _ => "run".to_string(),
            };
            history.push(step);
            let list: String = std::iter::once("node/cp-1\n".to_string())
                .chain(names.iter().zip(nodes).filter(|(_, e)| *e).map(|(n, _)| format!("node/{n}\n")))
                .collect();
            if listable {
                fs::write(cp.root.join("nodes"), list).unwrap();
            } else {
                let _ = fs::remove_file(cp.root.join("nodes"));
            }
            let o = cp.run(&bundle);
            assert_eq!(o.status.code(), Some(if listable { 0 } else { 7 }), "{history:?}\n{}", text(&o));
            for i in 0..3 {
                if listable && nodes[i] {
                    spent[i] = true;
                }
                let valid = is_valid_token(&t[i].1, &file).0;
                if spent[i] {
                    assert!(!valid, "{channel}: {}'s used token is valid again after {history:?}", names[i]);
                } else if listable {
                    assert!(valid, "{channel}: {}'s unused token is not registered after {history:?}", names[i]);
                }
                assert!(!text(&o).contains(&t[i].1), "a token was printed");
            }
            assert!(
                fs::read_to_string(&file).unwrap().contains("operator-token")
                    || !history.iter().any(|h| h == "a foreign line")
            );
        }
        assert!(spent.iter().any(|s| *s) && history.iter().filter(|h| *h == "run").count() > 10, "{history:?}");
    }
}

/// `--help` never does the real thing; `--dry-run` says what would change, by
/// worker name, and changes nothing; an unknown argument is refused.
#[test]
fn register_and_check_answer_help_and_dry_run_without_changing_anything() {
    let cp = Cp::new();
    let bundle = cp.bundle("1.30/stable", &["worker-1", "worker-2"]);
    let t = tokens(&bundle);
    let secrets = [t[0].1.as_str(), t[1].1.as_str()];
    let run = |script: &'static str| {
        let (bundle, cp) = (bundle.clone(), &cp);
        move |args: &[&str]| {
            Command::new(tools::require("bash"))
                .arg(bundle.join(script))
                .args(args)
                .env("SNAP_DATA", &cp.snap_data)
                .env("MK8S_MICROK8S", &cp.microk8s)
                .output()
                .unwrap()
        }
    };
    let watched = [cp.snap_data.as_path()];
    common::help_dry_run_and_bad_arguments_change_nothing(
        run("register-join-tokens.sh"),
        &watched,
        &["register: worker-1's join token", "register: worker-2's join token"],
        &secrets,
    );
    assert!(!cp.file("persistent-cluster-tokens.txt").exists());
    // Registered; then worker-1 joined: the dry run would remove its token.
    assert!(cp.run(&bundle).status.success());
    fs::write(cp.root.join("nodes"), "node/cp-1\nnode/worker-1\n").unwrap();
    common::help_dry_run_and_bad_arguments_change_nothing(
        run("register-join-tokens.sh"),
        &watched,
        &["remove:   worker-1's join token", "tokens it would remember as used: 1"],
        &secrets,
    );
    assert!(is_valid_token(&t[0].1, &cp.file("persistent-cluster-tokens.txt")).0, "the dry run pruned");
    common::help_dry_run_and_bad_arguments_change_nothing(run("check-control-plane.sh"), &watched, &["checked"], &[]);
}

/// G11: a join the control plane accepted leaves `TOKEN-kubelet` and `TOKEN-proxy`
/// in `certs-request-tokens.txt`, which the cluster-agent removes only when
/// sign-cert uses them (and sign-cert signs any subject). Once the join token is
/// no longer registered (its worker joined), they go too; those of a join still
/// registered, and every line not ours, stay.
#[test]
fn certificate_request_tokens_of_used_join_tokens_are_removed() {
    let cp = Cp::new();
    let bundle = cp.bundle("1.30/stable", &["worker-1", "worker-2"]);
    let t = tokens(&bundle);
    let file = cp.file("certs-request-tokens.txt");
    let lines = format!(
        "operator-cert-token-0123456789abcdef\n{a}-kubelet\n{a}-proxy\n{b}-kubelet\n{b}-proxy\n",
        a = t[0].1,
        b = t[1].1
    );
    fs::write(&file, &lines).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o660)).unwrap();
    assert!(cp.run(&bundle).status.success());
    assert_eq!(fs::read_to_string(&file).unwrap(), lines, "nothing joined yet: nothing removed");
    fs::write(cp.root.join("nodes"), "node/cp-1\nnode/worker-1\n").unwrap();
    let o = cp.run(&bundle);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("removed 2 certificate-request token(s)"), "{}", text(&o));
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        format!("operator-cert-token-0123456789abcdef\n{b}-kubelet\n{b}-proxy\n", b = t[1].1)
    );
    assert_eq!(fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o660, "mode kept");
    assert!(!text(&o).contains(&t[0].1), "tokens are never printed");
}
