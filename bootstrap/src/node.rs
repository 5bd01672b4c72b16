//! The node, seen through one narrow interface: every path resolves under a root
//! (`--root`, default `/`), and every program (`systemctl`, `snap`, `curl`, `tar`)
//! is run by a configurable path. Tests point both at a temp dir and substitute
//! executables: real configuration, no test-only code paths.

use std::io;
use std::path::PathBuf;
use std::process::Command;

/// The MicroK8s snap's data directory (`$SNAP_DATA` for revision `current`).
pub const SNAP_DATA: &str = "/var/snap/microk8s/current";
/// `$SNAP_COMMON` as the node sees it (the same directory in every revision).
pub const SNAP_COMMON: &str = "/var/snap/microk8s/common";

#[derive(Debug, Clone)]
pub struct Node {
    pub root: PathBuf,
    pub systemctl: String,
    pub snap: String,
    pub curl: String,
    pub tar: String,
    /// `microk8s`, for `auth: microk8s-join`.
    pub microk8s: String,
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct CommandOutput {
    pub ok: bool,
    pub code: Option<i32>,
    pub output: String,
}

impl Node {
    /// The node under `root`, its programs by their usual names (found on `PATH`).
    pub fn under(root: &std::path::Path) -> Node {
        Node {
            root: root.into(),
            systemctl: "systemctl".into(),
            snap: "snap".into(),
            curl: "curl".into(),
            tar: "tar".into(),
            microk8s: "microk8s".into(),
        }
    }

    /// An absolute node path, under the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// `$SNAP_DATA/rel` under the root.
    pub fn snap_data(&self, rel: &str) -> PathBuf {
        self.path(SNAP_DATA).join(rel)
    }

    pub fn run(&self, program: &str, args: &[&str]) -> io::Result<CommandOutput> {
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(CommandOutput { ok: out.status.success(), code: out.status.code(), output: output.trim().to_string() })
    }

    pub fn systemctl(&self, args: &[&str]) -> io::Result<CommandOutput> {
        self.run(&self.systemctl, args)
    }

    pub fn snap(&self, args: &[&str]) -> io::Result<CommandOutput> {
        self.run(&self.snap, args)
    }
}
