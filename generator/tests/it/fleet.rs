//! `mk8s-gen fleet`, run as the real binary.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::workspace;
use sha2::Digest;

const BIN: &str = env!("CARGO_BIN_EXE_mk8s-gen");
const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn gen(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn fleet(cluster: &Path, secrets: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("fleet").arg("--cluster").arg(cluster).arg("--secrets").arg(secrets).arg("--out").arg(out);
    c.args(["--bootstrap-url", "https://downloads.example.com/mk8s-bootstrap", "--bootstrap-sha256", SHA]);
    c.args(extra).output().unwrap()
}

/// path (relative) -> (mode, mtime ns, inode, bytes)
fn tree(dir: &Path) -> BTreeMap<String, (u32, i64, u64, Vec<u8>)> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, (u32, i64, u64, Vec<u8>)>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let m = fs::metadata(&p).unwrap();
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                out.insert(
                    rel,
                    (m.mode() & 0o777, m.mtime() * 1_000_000_000 + m.mtime_nsec(), m.ino(), fs::read(&p).unwrap()),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The manifest lists exactly the node files, with their true hashes and sizes.
fn check_manifest(out: &Path) -> usize {
    let m: Vec<serde_json::Value> =
        serde_json::from_str(&fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let files: Vec<_> = fs::read_dir(out.join("nodes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(m.len(), files.len(), "manifest entries vs files");
    for e in &m {
        let data = fs::read(out.join(e["file"].as_str().unwrap())).unwrap();
        assert_eq!(e["sha256"], hex::encode(sha2::Sha256::digest(&data)));
        assert_eq!(e["size"].as_u64().unwrap() as usize, data.len());
        assert_eq!(e["file"], format!("nodes/{}.user-data", e["node"].as_str().unwrap()));
    }
    m.len()
}

#[test]
fn fleet_output_equals_the_per_node_outputs() {
    for fixture in ["seed", "proxy-external", "yaml11-names", "x509"] {
        let fx = workspace().join("fixtures").join(fixture);
        let secrets = if fx.join("secrets.yaml").exists() {
            fx.join("secrets.yaml")
        } else {
            workspace().join("fixtures/seed/secrets.yaml")
        };
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("fleet");
        let o = fleet(&fx.join("cluster.yaml"), &secrets, &out, &[]);
        assert!(o.status.success(), "{fixture}: {}", String::from_utf8_lossy(&o.stderr));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(stderr.lines().filter(|l| l.starts_with("fleet: ")).count(), 1, "{stderr}");
        assert!(!stderr.contains('\r'), "no progress bar when stderr is not a terminal: {stderr:?}");
        let n = check_manifest(&out);
        let facts: serde_yaml::Value =
            serde_yaml::from_str(&fs::read_to_string(fx.join("cluster.yaml")).unwrap()).unwrap();
        let names: Vec<String> =
            facts["workers"].as_sequence().unwrap().iter().map(|w| w["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(n, names.len());
        for name in &names {
            let one = Command::new(BIN)
                .args([
                    "--cluster",
                    fx.join("cluster.yaml").to_str().unwrap(),
                    "--secrets",
                    secrets.to_str().unwrap(),
                    "--node",
                    name,
                ])
                .args(["--bootstrap-url", "https://downloads.example.com/mk8s-bootstrap", "--bootstrap-sha256", SHA])
                .output()
                .unwrap();
            assert!(one.status.success());
            let got = fs::read(out.join(format!("nodes/{name}.user-data"))).unwrap();
            assert!(got == one.stdout, "{fixture}/{name}: fleet and --node differ");
            assert_eq!(fs::metadata(out.join(format!("nodes/{name}.user-data"))).unwrap().mode() & 0o777, 0o600);
        }
        // And the control-plane bundle equals `mk8s-gen control-plane`.
        let cp = tmp.path().join("cp");
        let o = gen(&[
            "control-plane",
            "--cluster",
            fx.join("cluster.yaml").to_str().unwrap(),
            "--secrets",
            secrets.to_str().unwrap(),
            "--out",
            cp.to_str().unwrap(),
        ]);
        assert!(o.status.success());
        let strip = |t: BTreeMap<String, (u32, i64, u64, Vec<u8>)>| {
            t.into_iter().map(|(k, v)| (k, (v.0, v.3))).collect::<BTreeMap<_, _>>()
        };
        assert_eq!(strip(tree(&out.join("control-plane"))), strip(tree(&cp)), "{fixture}");
        assert!(!out.join(".staging").exists());
    }
}

/// Worker `i` of the big facts: `w-NNNNN`, in one of three zones.
fn zoned(i: usize) -> Worker {
    Worker::new(&format!("w-{i:05}")).label("zone", &format!("z{}", i % 3))
}

/// The facts of cluster `name` with these workers.
fn fleet_facts(name: &str, workers: impl IntoIterator<Item = Worker>) -> String {
    FactsYaml::new(name)
        .channel("1.30/stable")
        .ca_file(workspace().join("fixtures/seed/ca.crt"))
        .control_plane("cp-0", "10.130.0.2")
        .workers(workers)
        .yaml()
}

/// A facts file with `n` workers in a temp dir.
fn big_facts(dir: &Path, n: usize) -> PathBuf {
    let p = dir.join("cluster.yaml");
    fs::write(&p, fleet_facts("big", (0..n).map(zoned))).unwrap();
    p
}

fn seed_secrets() -> PathBuf {
    workspace().join("fixtures/seed/secrets.yaml")
}

#[test]
fn a_rerun_that_changes_nothing_rewrites_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = big_facts(tmp.path(), 50);
    let out = tmp.path().join("out");
    assert!(fleet(&facts, &seed_secrets(), &out, &[]).status.success());
    let before = tree(&out);
    std::thread::sleep(Duration::from_millis(20));
    let o = fleet(&facts, &seed_secrets(), &out, &[]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("0 written, 50 unchanged"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(tree(&out), before, "same bytes, same mtimes, same inodes");
}

/// File name -> content of a directory (not recursive).
fn tree_bytes(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().to_string(), fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn selection_by_name_and_label_and_stale_files() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = big_facts(tmp.path(), 30);
    let out = tmp.path().join("out");
    let o = fleet(&facts, &seed_secrets(), &out, &["--select", "w-0001?", "--label", "zone=z1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<_> = tree(&out.join("nodes")).into_keys().collect();
    assert_eq!(names, vec!["w-00010.user-data", "w-00013.user-data", "w-00016.user-data", "w-00019.user-data"]);
    assert_eq!(check_manifest(&out), 4);
    // The control-plane bundle is the whole fleet's: its scripts remove what they
    // are not given, so a bundle of 4 workers would drop 26 workers' tokens.
    assert!(String::from_utf8_lossy(&o.stderr).contains("control-plane bundle: all 30 worker(s)"));
    let selected_bundle = tree_bytes(&out.join("control-plane"));
    let whole = tmp.path().join("whole");
    assert!(fleet(&facts, &seed_secrets(), &whole, &[]).status.success());
    assert_eq!(selected_bundle, tree_bytes(&whole.join("control-plane")), "a selected run's bundle is partial");
    assert!(String::from_utf8_lossy(&selected_bundle["known-tokens.csv"]).contains("w-00029"));
    // A run over the whole fleet drops files of workers no longer in the facts.
    fs::write(out.join("nodes/gone.user-data"), "old").unwrap();
    assert!(fleet(&facts, &seed_secrets(), &out, &[]).status.success());
    assert!(!out.join("nodes/gone.user-data").exists());
    assert_eq!(check_manifest(&out), 30);
    // Nothing selected: a usage error.
    let o = fleet(&facts, &seed_secrets(), &out, &["--select", "nope-*"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no worker matches"));
}

#[test]
fn a_failed_run_leaves_the_previous_output_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = big_facts(tmp.path(), 20);
    let out = tmp.path().join("out");
    assert!(fleet(&facts, &seed_secrets(), &out, &[]).status.success());
    let before = tree(&out);
    // Invalid facts (a worker name no node may have): exit 1, nothing touched.
    let bad = tmp.path().join("bad.yaml");
    let invalid = |i| if i == 3 { Worker::new("W,3").label("zone", "z0") } else { zoned(i) };
    fs::write(&bad, fleet_facts("big", (0..20).map(invalid))).unwrap();
    let o = fleet(&bad, &seed_secrets(), &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(tree(&out), before);
    // A secrets file that does not belong to an x509 cluster: nothing touched either.
    let o = fleet(&workspace().join("fixtures/x509/cluster.yaml"), &seed_secrets(), &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(tree(&out), before);
}

/// Where a kill interrupts a fleet run. Each point is found by what the run leaves
/// on disk (a marker), never by elapsed time, and checked after the kill.
#[derive(Clone, Copy, Debug, PartialEq)]
enum KillAt {
    /// Nodes are being rendered into the staging directory (marker: a staged node
    /// file); `sync -f` is held, so no journal can appear whatever the scheduling.
    Rendering,
    /// Everything staged, the journal not yet written (marker: the run calls
    /// `sync -f`, a stand-in on PATH that holds it there).
    Staged,
    /// The journal written (marker: it appears): before, during or after the
    /// renames, wherever the kill lands.
    Committing,
    /// Journal written, no rename done; then the renames up to the middle node.
    /// These two points are exact: a directory in the way of one rename fails the
    /// run there, which leaves what a kill at that rename leaves (the failed commit
    /// cleans nothing up; asserted below).
    BeforeRename(usize),
}

/// Workers of the kill test: enough that rendering outlasts noticing its first
/// staged file many times over.
const KILL_FLEET: usize = 300;
/// Workers missing from the older output: a failed rename stops the commit at each.
const NEW_WORKERS: [usize; 2] = [0, KILL_FLEET / 2];

#[test]
fn killed_part_way_then_rerun_gives_the_complete_output() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = big_facts(tmp.path(), KILL_FLEET);
    let reference = tmp.path().join("reference");
    assert!(fleet(&facts, &seed_secrets(), &reference, &[]).status.success());
    let want = contents(&reference);
    let points = [
        KillAt::Rendering,
        KillAt::Staged,
        KillAt::Committing,
        KillAt::BeforeRename(NEW_WORKERS[0]),
        KillAt::BeforeRename(NEW_WORKERS[1]),
    ];
    for (i, at) in points.into_iter().enumerate() {
        let out = tmp.path().join(format!("out{i}"));
        // Whether the interrupted run left a journal, whose commit the next run finishes.
        let committed = match at {
            KillAt::Rendering => kill_while_rendering(tmp.path(), &facts, &out),
            KillAt::Staged => {
                older_output(tmp.path(), &out);
                let before = tree(&out);
                let held = HeldSync::new(&tmp.path().join(format!("sync{i}")));
                let mut child = killed_run(&facts, &out, Some(&held));
                assert!(kill_when(&mut child, || held.called()), "{at:?}: the run ended before `sync -f`");
                let staged = staged_nodes(&out);
                assert_eq!(staged, KILL_FLEET, "{at:?}: every node differs from the older output, so all are staged");
                assert_untouched(&out, &before, at);
                false
            }
            KillAt::Committing => {
                older_output(tmp.path(), &out);
                let mut child = killed_run(&facts, &out, None);
                let journal = out.join(".staging/COMMIT.json");
                assert!(kill_when(&mut child, || journal.exists()), "{at:?}: the run ended before its journal");
                true
            }
            KillAt::BeforeRename(n) => {
                older_output(tmp.path(), &out);
                // Worker n is new to the older output: with the obstacle gone, its
                // file is missing, as a kill before its rename leaves it. The
                // obstacle is an immutable file (chattr +i: a rename over it fails
                // even for root), which the commit's check before the journal does
                // not foresee, as it cannot foresee an I/O error.
                let name = format!("w-{n:05}.user-data");
                let obstacle = out.join("nodes").join(&name);
                fs::write(&obstacle, "").unwrap();
                chattr("+i", &obstacle);
                let before = contents(&out);
                let o = fleet(&facts, &seed_secrets(), &out, &[]);
                let stderr = String::from_utf8_lossy(&o.stderr);
                assert_eq!(o.status.code(), Some(2), "{at:?}: {stderr}");
                assert!(stderr.contains("cannot rename") && stderr.contains(&name), "{at:?}: {stderr}");
                assert!(out.join(".staging/COMMIT.json").exists(), "{at:?}: the journal stays for the next run");
                chattr("-i", &obstacle);
                fs::remove_file(&obstacle).unwrap();
                let now = contents(&out);
                for w in 0..KILL_FLEET {
                    let file = format!("nodes/w-{w:05}.user-data");
                    let renamed = now.get(&file) == want.get(&file);
                    assert_eq!(renamed, w < n, "{at:?}: {file} renamed: {renamed}");
                }
                assert_eq!(now.get("manifest.json"), before.get("manifest.json"), "{at:?}: the manifest goes last");
                true
            }
        };
        let o = fleet(&facts, &seed_secrets(), &out, &[]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{at:?}: {stderr}");
        let note = stderr.contains("finished the commit of an interrupted run");
        match at {
            // Wherever the kill landed, the journal may already be gone.
            KillAt::Committing => {}
            _ => assert_eq!(note, committed, "{at:?}: {stderr}"),
        }
        assert!(contents(&out) == want, "after a kill at {at:?} the output differs from an uninterrupted run");
        assert_eq!(check_manifest(&out), KILL_FLEET);
        assert!(!out.join(".staging").exists(), "{at:?}");
    }
}

/// A kill while nodes are rendered: the run's first staged node file is the
/// marker; it must be killed before it staged them all (tried again if a loaded
/// machine let it get that far before the kill, which is then checked as
/// [`KillAt::Staged`] is). Returns false: no journal was written.
fn kill_while_rendering(tmp: &Path, facts: &Path, out: &Path) -> bool {
    for attempt in 0..5 {
        older_output(tmp, out);
        let before = tree(out);
        let held = HeldSync::new(&tmp.join(format!("sync-rendering{attempt}")));
        let mut child = killed_run(facts, out, Some(&held));
        assert!(kill_when(&mut child, || staged_nodes(out) > 0), "the run ended before staging a node");
        let staged = staged_nodes(out);
        assert_untouched(out, &before, KillAt::Rendering);
        if staged < KILL_FLEET && !held.called() {
            return false;
        }
        // Finish this one, so the next attempt starts from an older output again.
        assert!(fleet(facts, &seed_secrets(), out, &[]).status.success());
    }
    panic!("five runs staged every node before the kill landed");
}

/// A complete run with other facts in `out`, so the kill lands on old output:
/// every file differs (the cluster's name), [`NEW_WORKERS`] are new, and one
/// worker is gone (its file is removed by the commit).
fn older_output(tmp: &Path, out: &Path) {
    let kept = (0..KILL_FLEET).filter(|i| !NEW_WORKERS.contains(i)).map(zoned);
    let gone = Worker::new("w-99999").label("zone", "z0");
    let other = tmp.join("older.yaml");
    fs::write(&other, fleet_facts("older", kept.chain([gone]))).unwrap();
    let o = fleet(&other, &seed_secrets(), out, &["--no-sync"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("nodes/w-99999.user-data").exists());
}

/// The fleet run to kill, with `held`'s stand-in for `sync` first on PATH.
fn killed_run(facts: &Path, out: &Path, held: Option<&HeldSync>) -> std::process::Child {
    let mut c = Command::new(BIN);
    c.arg("fleet").arg("--cluster").arg(facts).arg("--secrets").arg(seed_secrets()).arg("--out").arg(out);
    c.args(["--bootstrap-url", "https://downloads.example.com/mk8s-bootstrap", "--bootstrap-sha256", SHA]);
    if let Some(h) = held {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![h.dir.clone()];
        dirs.extend(std::env::split_paths(&path));
        c.env("PATH", std::env::join_paths(dirs).unwrap());
    }
    c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

/// Kill `child` (SIGKILL) as soon as `marker()` holds; false if it exited first.
/// Polls every millisecond: the wait is for the marker, not for a time.
fn kill_when(child: &mut std::process::Child, marker: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if marker() {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(std::time::Instant::now() < deadline, "no marker in 120 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A stand-in for `sync -f DIR` that records the call, then holds the run inside
/// it until the run is killed (and ends itself then).
struct HeldSync {
    dir: PathBuf,
}

impl HeldSync {
    fn new(dir: &Path) -> HeldSync {
        fs::create_dir_all(dir).unwrap();
        let script = dir.join("sync");
        mk8s_testkit::node_model::write_script(
            &script,
            "#!/bin/sh\n: > \"$(dirname \"$0\")/called\"\nexec tail -f /dev/null --pid=\"$PPID\" -s 0.1\n",
        );
        HeldSync { dir: dir.to_path_buf() }
    }

    fn called(&self) -> bool {
        self.dir.join("called").exists()
    }
}

/// Node files in the run's staging directories (`.staging/<thread>/`).
fn staged_nodes(out: &Path) -> usize {
    let Ok(dirs) = fs::read_dir(out.join(".staging")) else { return 0 };
    dirs.flatten()
        .filter(|d| d.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .map(|d| fs::read_dir(d.path()).map(|f| f.count()).unwrap_or(0))
        .sum()
}

/// Killed before its journal: no journal, and every file of the older output as
/// it was (same bytes, mtimes and inodes).
fn assert_untouched(out: &Path, before: &BTreeMap<String, (u32, i64, u64, Vec<u8>)>, at: KillAt) {
    assert!(!out.join(".staging/COMMIT.json").exists(), "{at:?}: a journal was written");
    let visible = |t: BTreeMap<String, (u32, i64, u64, Vec<u8>)>| {
        t.into_iter().filter(|(k, _)| !k.starts_with(".staging/")).collect::<BTreeMap<_, _>>()
    };
    assert!(visible(tree(out)) == visible(before.clone()), "{at:?}: the older output changed");
}

/// path -> (mode, bytes) of every file under `dir`.
fn contents(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    tree(dir).into_iter().map(|(k, v)| (k, (v.0, v.3))).collect()
}

#[test]
fn fleet_formats_and_budgets_match_the_per_node_command() {
    let fx = workspace().join("fixtures/seed");
    let tmp = tempfile::tempdir().unwrap();
    for (extra, ext) in [(vec!["--format", "ignition"], "ign"), (vec!["--baked"], "user-data")] {
        let out = tmp.path().join(ext.to_string() + extra[0]);
        let mut c = Command::new(BIN);
        c.arg("fleet").arg("--cluster").arg(fx.join("cluster.yaml")).arg("--secrets").arg(fx.join("secrets.yaml"));
        c.arg("--out").arg(&out).args(&extra);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let one = Command::new(BIN)
            .args([
                "--cluster",
                fx.join("cluster.yaml").to_str().unwrap(),
                "--secrets",
                fx.join("secrets.yaml").to_str().unwrap(),
            ])
            .args(["--node", "worker-1"])
            .args(&extra)
            .output()
            .unwrap();
        assert!(one.status.success());
        assert_eq!(fs::read(out.join(format!("nodes/worker-1.{ext}"))).unwrap(), one.stdout, "{extra:?}");
        check_manifest_ext(&out, ext);
    }
    // Over a platform's budget: exit 2 with the reason, nothing written.
    let out = tmp.path().join("over");
    let stand_in = tmp.path().join("bootstrap");
    let mut elf = b"\x7fELF".to_vec();
    elf.extend((0..50_000u32).flat_map(|i| i.wrapping_mul(2654435761).to_le_bytes()));
    fs::write(&stand_in, elf).unwrap();
    let o = Command::new(BIN)
        .args([
            "fleet",
            "--cluster",
            fx.join("cluster.yaml").to_str().unwrap(),
            "--secrets",
            fx.join("secrets.yaml").to_str().unwrap(),
        ])
        .args(["--out", out.to_str().unwrap(), "--target", "aws", "--bootstrap-bin", stand_in.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("over the 16,384-byte limit of aws"));
    assert!(!out.join("nodes/worker-1.user-data").exists() && !out.join("manifest.json").exists());
}

fn check_manifest_ext(out: &Path, ext: &str) {
    let m: Vec<serde_json::Value> =
        serde_json::from_str(&fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    for e in &m {
        assert!(e["file"].as_str().unwrap().ends_with(&format!(".{ext}")));
        let data = fs::read(out.join(e["file"].as_str().unwrap())).unwrap();
        assert_eq!(e["sha256"], hex::encode(sha2::Sha256::digest(&data)));
    }
}

/// On a terminal the progress bar is drawn; the run must still finish. `script`
/// (util-linux) gives the process a pseudo-terminal for stdin, stdout and stderr,
/// as an operator's shell would; `timeout` turns a hang into a failure.
#[test]
fn fleet_finishes_on_a_terminal() {
    let script = mk8s_testkit::tools::require("script");
    let dir = tempfile::tempdir().unwrap();
    let cluster = big_facts(dir.path(), 300);
    let out = dir.path().join("out");
    let q = |p: &Path| format!("'{}'", p.display());
    let cmd = format!(
        "{BIN} fleet --cluster {} --secrets {} --out {} --no-sync --bootstrap-url https://downloads.example.com/b --bootstrap-sha256 {SHA}",
        q(&cluster),
        q(&seed_secrets()),
        q(&out)
    );
    let o = Command::new("timeout")
        .args(["-s", "KILL", "60"])
        .arg(script)
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "exit {:?} (a hang is killed after 60 s): {said}", o.status.code());
    assert!(said.contains("fleet: 300 node(s)"), "{said}");
    assert!(said.contains("/300 nodes, ") && said.contains(" elapsed, "), "the bar, with time and rate: {said}");
    assert_eq!(fs::read_dir(out.join("nodes")).unwrap().count(), 300);
    assert!(!out.join(".staging").exists());
    // --quiet: no bar (it was drawn all the same).
    fs::remove_dir_all(&out).unwrap();
    let o = Command::new("timeout")
        .args(["-s", "KILL", "60"])
        .arg(mk8s_testkit::tools::require("script"))
        .args(["-qec", &format!("{cmd} -q"), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{said}");
    assert!(!said.contains(" nodes, "), "fleet -q drew the bar: {said}");
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn modes_are_set_on_every_run_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = big_facts(tmp.path(), 3);
    let out = tmp.path().join("a/out");
    let run = |umask: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
            .arg(BIN)
            .args(["fleet", "--cluster", facts.to_str().unwrap(), "--secrets", seed_secrets().to_str().unwrap()])
            .args(["--out", out.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let o = run("000");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(mode(&out), 0o755);
    assert_eq!(mode(&out.join("nodes")), 0o700, "nodes/ holds credentials");
    assert_eq!(mode(&out.join("control-plane")), 0o700, "control-plane/ holds a script run as root");
    assert_eq!(mode(&out.join("control-plane/merge-known-tokens.sh")), 0o755);
    assert_eq!(mode(&out.join("control-plane/known-tokens.csv")), 0o600);
    assert_eq!(mode(&out.join("manifest.json")), 0o644);
    // An unchanged file keeps its content but gets its mode back.
    let node = out.join("nodes/w-00001.user-data");
    fs::set_permissions(&node, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(out.join("nodes"), fs::Permissions::from_mode(0o777)).unwrap();
    let o = run("022");
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 written, 3 unchanged"));
    assert_eq!(mode(&node), 0o600);
    assert_eq!(mode(&out.join("nodes")), 0o700);
}

#[test]
fn switching_formats_keeps_the_other_formats_files() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = big_facts(tmp.path(), 2);
    let out = tmp.path().join("out");
    assert!(fleet(&facts, &seed_secrets(), &out, &[]).status.success());
    let o = fleet(&facts, &seed_secrets(), &out, &["--format", "ignition"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 removed"));
    let names: Vec<_> = tree(&out.join("nodes")).into_keys().collect();
    assert_eq!(names, ["w-00000.ign", "w-00000.user-data", "w-00001.ign", "w-00001.user-data"]);
    check_manifest_ext(&out, "ign");
}

#[test]
fn symlinked_output_directories_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = big_facts(tmp.path(), 2);
    let precious = tmp.path().join("precious");
    fs::create_dir(&precious).unwrap();
    fs::write(precious.join("old.user-data"), "keep").unwrap();
    for link in ["nodes", "control-plane", ".staging"] {
        let out = tmp.path().join(format!("out-{link}"));
        fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&precious, out.join(link)).unwrap();
        let o = fleet(&facts, &seed_secrets(), &out, &[]);
        assert_eq!(o.status.code(), Some(2), "{link}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("it is a symbolic link"), "{link}");
    }
    let linked_out = tmp.path().join("out-link");
    std::os::unix::fs::symlink(&precious, &linked_out).unwrap();
    assert_eq!(fleet(&facts, &seed_secrets(), &linked_out, &[]).status.code(), Some(2));
    let names: Vec<_> = tree(&precious).into_keys().collect();
    assert_eq!(names, ["old.user-data"], "nothing written or removed through a link");
}

/// A run killed after it journalled its commit, part-way through the renames: the
/// next run (here a selected one, which alone would not touch the other nodes)
/// finishes that commit first.
#[test]
fn the_next_run_finishes_an_interrupted_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = big_facts(tmp.path(), 6);
    let older = tmp.path().join("older.yaml");
    fs::write(&older, fleet_facts("older", (0..6).map(zoned))).unwrap();
    let want = tmp.path().join("want");
    assert!(fleet(&facts, &seed_secrets(), &want, &[]).status.success());
    let out = tmp.path().join("out");
    assert!(fleet(&older, &seed_secrets(), &out, &[]).status.success());
    // What the killed run had done: staged every new file, journalled, renamed two.
    let staged = out.join(".staging/0");
    fs::create_dir_all(&staged).unwrap();
    let mut renames = Vec::new();
    for i in 0..6 {
        let name = format!("w-{i:05}.user-data");
        fs::copy(want.join("nodes").join(&name), staged.join(&name)).unwrap();
        renames.push((format!(".staging/0/{name}"), format!("nodes/{name}")));
    }
    let journal = serde_json::json!({
        "renames": renames,
        "removals": [],
        "manifest": fs::read_to_string(want.join("manifest.json")).unwrap(),
    });
    fs::write(out.join(".staging/COMMIT.json"), journal.to_string()).unwrap();
    for (from, to) in &renames[..2] {
        fs::rename(out.join(from), out.join(to)).unwrap();
    }
    let o = fleet(&facts, &seed_secrets(), &out, &["--select", "w-00005"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("finished the commit of an interrupted run"));
    assert!(!out.join(".staging").exists());
    for i in 0..6 {
        let name = format!("nodes/w-{i:05}.user-data");
        assert_eq!(fs::read(out.join(&name)).unwrap(), fs::read(want.join(&name)).unwrap(), "{name}");
    }
}

/// `chattr FLAG PATH` (e2fsprogs); a filesystem that cannot take it fails the test.
fn chattr(flag: &str, path: &Path) {
    let o = Command::new(mk8s_testkit::tools::require("chattr")).arg(flag).arg(path).output().unwrap();
    assert!(o.status.success(), "chattr {flag} {}: {}", path.display(), String::from_utf8_lossy(&o.stderr));
}

/// A commit that would fail half-way (a node's file is a directory now) fails
/// before anything is renamed or journalled: the older output stays whole and the
/// next run is not held to a journal it cannot apply. (Before, the run renamed
/// the nodes before that one, left its journal, and every later run failed on it.)
#[test]
fn a_commit_that_cannot_complete_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = big_facts(tmp.path(), 6);
    let older = tmp.path().join("older.yaml");
    fs::write(&older, fleet_facts("older", (0..6).map(zoned))).unwrap();
    let out = tmp.path().join("out");
    assert!(fleet(&older, &seed_secrets(), &out, &[]).status.success());
    let blocker = out.join("nodes/w-00003.user-data");
    fs::remove_file(&blocker).unwrap();
    fs::create_dir(&blocker).unwrap();
    fs::write(blocker.join("keep"), "an operator's file").unwrap();
    let before = tree(&out);
    let o = fleet(&facts, &seed_secrets(), &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("w-00003.user-data is a directory") && err.contains("nothing was changed"), "{err}");
    assert!(!out.join(".staging").exists(), "no journal left for the next run");
    assert_eq!(tree(&out), before, "the older output, whole");
    // With the obstacle gone, the next run commits as usual.
    fs::remove_dir_all(&blocker).unwrap();
    let o = fleet(&facts, &seed_secrets(), &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(check_manifest(&out), 6);
}

/// `--dry-run` says what a run would write, keep and remove, and touches nothing:
/// not a missing output directory, not an existing one (files, modes, mtimes).
#[test]
fn a_dry_run_reports_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = big_facts(tmp.path(), 20);
    let out = tmp.path().join("out");
    let o = fleet(&facts, &seed_secrets(), &out, &["--dry-run"]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("20 would be written, 0 unchanged, 0 removed"), "{said}");
    assert!(!out.exists(), "a dry run created {}", out.display());
    assert!(fleet(&facts, &seed_secrets(), &out, &[]).status.success());
    let before = tree(&out);
    // One worker fewer, one with a new label: 1 rewritten, 18 kept, 1 removed.
    let changed = |i| if i == 3 { zoned(i).label("zone", "zz") } else { zoned(i) };
    fs::write(&facts, fleet_facts("big", (0..19).map(changed))).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let o = fleet(&facts, &seed_secrets(), &out, &["--dry-run"]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("1 would be written, 18 unchanged, 1 removed"), "{said}");
    // known-tokens.csv loses the removed worker's lines.
    assert!(said.contains("bundle: 1 file(s) would change"), "{said}");
    assert_eq!(tree(&out), before, "a dry run changed the output directory");
}

/// Two runs on one output directory: the second fails at once, changing nothing,
/// while the first holds the lock.
#[test]
fn a_second_run_on_the_same_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let facts = big_facts(tmp.path(), 5);
    let out = tmp.path().join("out");
    assert!(fleet(&facts, &seed_secrets(), &out, &[]).status.success());
    let before = tree(&out);
    let held = fs::File::open(out.join(".lock")).unwrap();
    held.try_lock().unwrap();
    let o = fleet(&facts, &seed_secrets(), &out, &[]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(said.contains("another mk8s-gen fleet is writing"), "{said}");
    assert_eq!(tree(&out), before);
    drop(held);
    assert!(fleet(&facts, &seed_secrets(), &out, &[]).status.success());
}
