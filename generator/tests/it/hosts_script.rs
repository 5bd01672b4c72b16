//! `hosts-entries.sh` from the control-plane bundle, run by the real bash against a
//! temp hosts file (`MK8S_HOSTS_FILE`) and a control-plane layout in a temp dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mk8s_testkit::{tools, workspace};

use crate::common;

const BEGIN: &str = "# BEGIN mk8s-worker mk8s";
const END: &str = "# END mk8s-worker mk8s";

struct Node {
    dir: tempfile::TempDir,
    snap_data: PathBuf,
    hosts: PathBuf,
    bundle: PathBuf,
}

impl Node {
    /// A control-plane node with `hosts` as its hosts file and the seed fixture's
    /// bundle (worker-1 at 10.130.0.5) made by the real `mk8s-gen control-plane`.
    fn new(hosts: &[u8]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let snap_data = dir.path().join("snap");
        fs::create_dir_all(snap_data.join("args")).unwrap();
        fs::create_dir_all(snap_data.join("var/lock")).unwrap();
        fs::write(snap_data.join("args/kube-apiserver"), "--secure-port=16443\n").unwrap();
        fs::write(snap_data.join("var/lock/ha-cluster"), "").unwrap();
        let etc = dir.path().join("etc");
        fs::create_dir_all(&etc).unwrap();
        let hosts_path = etc.join("hosts");
        fs::write(&hosts_path, hosts).unwrap();
        let bundle = dir.path().join("bundle");
        let fx = workspace().join("fixtures/seed");
        let st = common::control_plane_bundle(&fx.join("cluster.yaml"), &fx.join("secrets.yaml"), &bundle);
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        assert_eq!(fs::read_to_string(bundle.join("hosts")).unwrap(), "10.130.0.5 worker-1\n");
        Node { dir, snap_data, hosts: hosts_path, bundle }
    }

    fn command(&self, bundle: &Path) -> Command {
        let mut c = Command::new(tools::require("bash"));
        c.arg(bundle.join("hosts-entries.sh")).env("SNAP_DATA", &self.snap_data).env("MK8S_HOSTS_FILE", &self.hosts);
        c
    }

    fn run(&self) -> Output {
        self.command(&self.bundle).output().unwrap()
    }

    fn hosts(&self) -> Vec<u8> {
        fs::read(&self.hosts).unwrap()
    }

    /// Files next to the hosts file other than it and its backup.
    fn leftovers(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.hosts.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n != "hosts" && n != "hosts.mk8s-worker.bak")
            .collect();
        v.sort();
        v
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn block(lines: &str) -> String {
    format!("{BEGIN}\n{lines}{END}\n")
}

#[test]
fn adds_a_block_keeps_crlf_lines_and_is_idempotent() {
    // CRLF lines, and no newline at the end: both kept as they are.
    let original = b"127.0.0.1 localhost\r\n::1 ip6-localhost\r\n10.0.0.9 db # keep me";
    let node = Node::new(original);
    let o = node.run();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("updated"), "{}", text(&o));
    let mut want = original.to_vec();
    want.push(b'\n'); // the missing final newline, and nothing else, is added
    want.extend(block("10.130.0.5 worker-1\n").as_bytes());
    assert_eq!(String::from_utf8_lossy(&node.hosts()), String::from_utf8_lossy(&want));
    assert_eq!(fs::read(node.hosts.with_file_name("hosts.mk8s-worker.bak")).unwrap(), original);
    assert!(node.leftovers().is_empty(), "{:?}", node.leftovers());
    // Again: nothing changes.
    let o = node.run();
    assert!(o.status.success() && text(&o).contains("nothing to do"), "{}", text(&o));
    assert_eq!(node.hosts(), want);
}

#[test]
fn an_existing_block_is_replaced_where_it_is() {
    let before = format!("127.0.0.1 localhost\n{}10.0.0.9 db\r\n", block("10.130.0.99 worker-1\n10.130.0.7 gone\n"));
    // A block written by an editor with CRLF ends is ours too.
    let before = before.replace(&format!("{END}\n"), &format!("{END}\r\n"));
    let node = Node::new(before.as_bytes());
    let o = node.run();
    assert!(o.status.success(), "{}", text(&o));
    let got = String::from_utf8(node.hosts()).unwrap();
    assert_eq!(got, format!("127.0.0.1 localhost\n{}10.0.0.9 db\r\n", block("10.130.0.5 worker-1\n")));
}

#[test]
fn an_empty_bundle_removes_the_block() {
    let node = Node::new(format!("127.0.0.1 localhost\n{}::1 x\n", block("10.130.0.5 worker-1\n")).as_bytes());
    fs::write(node.bundle.join("hosts"), "").unwrap();
    let o = node.run();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8(node.hosts()).unwrap(), "127.0.0.1 localhost\n::1 x\n");
}

#[test]
fn broken_markers_bad_bundles_and_workers_are_refused_untouched() {
    for broken in [
        format!("127.0.0.1 localhost\n{BEGIN}\n10.1.1.1 x\n"),
        format!("{END}\n{BEGIN}\n"),
        format!("{}{}", block(""), block("")),
    ] {
        let node = Node::new(broken.as_bytes());
        let o = node.run();
        assert_eq!(o.status.code(), Some(6), "{broken:?}: {}", text(&o));
        assert!(text(&o).contains("fix it by hand"), "{}", text(&o));
        assert_eq!(node.hosts(), broken.as_bytes());
        assert!(node.leftovers().is_empty());
    }
    let node = Node::new(b"127.0.0.1 localhost\n");
    fs::write(node.bundle.join("hosts"), "10.130.0.5 worker-1\n10.0.0.1 evil\n127.0.0.1 a b\n").unwrap();
    let o = node.run();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("line(s) 3"), "{}", text(&o));
    assert_eq!(node.hosts(), b"127.0.0.1 localhost\n");
    // A non-HA control plane (no var/lock/ha-cluster): refused.
    let node = Node::new(b"127.0.0.1 localhost\n");
    fs::remove_file(node.snap_data.join("var/lock/ha-cluster")).unwrap();
    let o = node.run();
    assert_eq!(o.status.code(), Some(9), "{}", text(&o));
    assert_eq!(node.hosts(), b"127.0.0.1 localhost\n");
    assert!(node.leftovers().is_empty());
    // A worker node (clustered.lock) is not a control plane.
    let node = Node::new(b"127.0.0.1 localhost\n");
    fs::write(node.snap_data.join("var/lock/clustered.lock"), "").unwrap();
    let o = node.run();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(node.hosts(), b"127.0.0.1 localhost\n");
}

#[test]
fn a_conflicting_line_outside_the_block_is_reported_not_touched() {
    let node = Node::new(b"127.0.0.1 localhost\n192.168.9.9 worker-1 # old\n");
    let o = node.run();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("line 2 of") && text(&o).contains("maps worker-1 to 192.168.9.9"), "{}", text(&o));
    assert!(String::from_utf8(node.hosts()).unwrap().starts_with("127.0.0.1 localhost\n192.168.9.9 worker-1 # old\n"));
}

/// Several clusters' scripts at once on one node: the lock serialises them, so every
/// cluster's block is there in the end and every other line survives.
#[test]
fn concurrent_runs_lose_no_block() {
    let node = Node::new(b"127.0.0.1 localhost\r\n::1 ip6-localhost");
    let script = fs::read_to_string(node.bundle.join("hosts-entries.sh")).unwrap();
    assert!(script.contains("cluster='mk8s'\n"));
    let bundles: Vec<PathBuf> = (0..6)
        .map(|i| {
            let b = node.dir.path().join(format!("bundle-{i}"));
            fs::create_dir_all(&b).unwrap();
            fs::write(b.join("hosts-entries.sh"), script.replace("cluster='mk8s'\n", &format!("cluster='c{i}'\n")))
                .unwrap();
            fs::write(b.join("hosts"), format!("10.9.0.{i} w{i}\n")).unwrap();
            b
        })
        .collect();
    let children: Vec<_> = bundles.iter().map(|b| node.command(b).spawn().unwrap()).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let got = String::from_utf8(node.hosts()).unwrap();
    assert!(got.starts_with("127.0.0.1 localhost\r\n::1 ip6-localhost\n"), "{got}");
    for i in 0..6 {
        let b = format!("# BEGIN mk8s-worker c{i}\n10.9.0.{i} w{i}\n# END mk8s-worker c{i}\n");
        assert_eq!(got.matches(&b).count(), 1, "c{i} lost:\n{got}");
    }
    assert_eq!(got.lines().count(), 2 + 6 * 3);
    assert!(node.leftovers().is_empty(), "{:?}", node.leftovers());
}

/// `--help` never does the real thing; `--dry-run` shows the lines it would add
/// and remove, and changes nothing; an unknown argument is refused.
#[test]
fn help_and_dry_run_change_nothing() {
    let node = Node::new(b"127.0.0.1 localhost\n10.0.0.9 old-line\n");
    let etc = node.hosts.parent().unwrap().to_path_buf();
    common::help_dry_run_and_bad_arguments_change_nothing(
        |args| node.command(&node.bundle).args(args).output().unwrap(),
        &[&etc, &node.snap_data],
        &["add:    10.130.0.5 worker-1", "add:    # BEGIN mk8s-worker", "nothing was changed"],
        &[],
    );
    assert!(node.run().status.success());
    assert!(String::from_utf8_lossy(&node.hosts()).contains("10.130.0.5 worker-1"));
}

/// A writer that skips our lock (an editor, cloud-init) adds a line while the script
/// runs: the script notices the file changed since it read it, changes nothing and
/// exits 10; the writer's line survives, and the next run adds our block.
#[test]
fn a_line_added_by_another_writer_meanwhile_is_not_lost() {
    let node = Node::new(b"127.0.0.1 localhost\n");
    // `sync FILE` is the last command before the rename: a stand-in that writes to
    // the hosts file at that moment, once, plays the other writer.
    let bin = node.dir.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let marker = node.dir.path().join("wrote");
    mk8s_testkit::node_model::write_script(
        &bin.join("sync"),
        &format!(
            "#!/bin/sh\nif [ ! -e '{m}' ]; then : > '{m}'; echo '10.9.9.9 added-meanwhile' >> '{h}'; fi\nexit 0\n",
            m = marker.display(),
            h = node.hosts.display()
        ),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let o = node.command(&node.bundle).env("PATH", &path).output().unwrap();
    assert_eq!(o.status.code(), Some(10), "{}", text(&o));
    assert!(text(&o).contains("changed while this ran"), "{}", text(&o));
    assert_eq!(String::from_utf8(node.hosts()).unwrap(), "127.0.0.1 localhost\n10.9.9.9 added-meanwhile\n");
    assert_eq!(node.leftovers(), Vec::<String>::new());
    let o = node.command(&node.bundle).env("PATH", &path).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8(node.hosts()).unwrap(),
        format!("127.0.0.1 localhost\n10.9.9.9 added-meanwhile\n{}", block("10.130.0.5 worker-1\n"))
    );
}
