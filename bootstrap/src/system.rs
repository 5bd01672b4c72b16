//! The node, seen through one narrow interface: every path resolves under a root
//! (`--root`, default `/`), and every program (`systemctl`, `snap`, `curl`, `tar`)
//! is run by a configurable path. Tests point both at a temp dir and substitute
//! executables: real configuration, no test-only code paths.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

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
pub struct Ran {
    pub ok: bool,
    pub code: Option<i32>,
    pub output: String,
}

impl Node {
    /// An absolute node path, under the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// `$SNAP_DATA/rel` under the root.
    pub fn snap_data(&self, rel: &str) -> PathBuf {
        self.path(crate::plan::SNAP_DATA).join(rel)
    }

    pub fn run(&self, program: &str, args: &[&str]) -> io::Result<Ran> {
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {program}: {e}")))?;
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(Ran { ok: out.status.success(), code: out.status.code(), output: output.trim().to_string() })
    }

    pub fn systemctl(&self, args: &[&str]) -> io::Result<Ran> {
        self.run(&self.systemctl, args)
    }

    pub fn snap(&self, args: &[&str]) -> io::Result<Ran> {
        self.run(&self.snap, args)
    }
}

/// Replace `path` with `data` atomically: temp file in the same directory created
/// with `mode` (so a secret is never readable by others, not even briefly), fsync,
/// rename, fsync the directory. Returns false when the file already held exactly
/// this content and mode (nothing is written).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<bool> {
    if let (Ok(old), Ok(meta)) = (fs::read(path), fs::metadata(path)) {
        if old == data && meta.permissions().mode() & 0o7777 == mode {
            return Ok(false);
        }
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().ok_or_else(|| io::Error::other("no file name"))?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.mk8s-tmp"));
    // A temp file left by a killed run is ours to replace.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(true)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Make sure `args` (`--flag=value` or `--flag`) are set in an args file, replacing
/// any earlier value of the same flag and keeping every other line. Returns the new
/// content, or None when nothing changes.
pub fn merge_args(existing: &str, args: &[String]) -> Option<String> {
    let flag = |line: &str| line.split('=').next().unwrap_or(line).trim().to_string();
    let ours: Vec<String> = args.iter().map(|a| flag(a)).collect();
    let mut out: Vec<String> =
        existing.lines().filter(|l| !ours.contains(&flag(l)) || l.trim().is_empty()).map(str::to_string).collect();
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    out.extend(args.iter().cloned());
    let mut text = out.join("\n");
    text.push('\n');
    (text != existing).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_args_replaces_ours_and_keeps_the_rest() {
        let existing = "--kubeconfig=${SNAP_DATA}/credentials/kubelet.config\n--node-labels=\"microk8s.io/cluster=true\"\n--cluster-dns=1.2.3.4\n";
        let args = vec!["--cluster-dns=10.152.183.10".to_string(), "--node-labels=a=b".to_string()];
        let merged = merge_args(existing, &args).unwrap();
        assert_eq!(
            merged,
            "--kubeconfig=${SNAP_DATA}/credentials/kubelet.config\n--cluster-dns=10.152.183.10\n--node-labels=a=b\n"
        );
        assert_eq!(merge_args(&merged, &args), None, "idempotent");
    }

    #[test]
    fn atomic_writes_set_the_mode_and_skip_identical_content() {
        let dir = std::env::temp_dir().join(format!("mk8s-sys-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p = dir.join("a/secret");
        assert!(write_atomic(&p, b"x", 0o600).unwrap());
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!write_atomic(&p, b"x", 0o600).unwrap());
        assert!(write_atomic(&p, b"x", 0o644).unwrap(), "a mode change is a change");
        fs::write(dir.join("a/.secret.mk8s-tmp"), b"left by a killed run").unwrap();
        assert!(write_atomic(&p, b"y", 0o600).unwrap());
        assert_eq!(fs::read_dir(dir.join("a")).unwrap().count(), 1);
        let _ = fs::remove_dir_all(&dir);
    }
}
