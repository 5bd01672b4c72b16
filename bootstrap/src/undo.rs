//! The undo journal: the state of every file of the snap's data directory the join
//! changes (or makes the snap's own wrappers change), recorded **before** the first
//! change, so `mk8s-bootstrap leave` can put each one back as the snap left it.
//!
//! Layout under [`UNDO_DIR`]: `present/REL` is a copy of `$SNAP_DATA/REL` with its
//! mode, `absent/REL` (empty) says there was no such file. The first record of a
//! path wins: a rerun, or a join killed half-way and run again, never records its
//! own change as the original. Copies of credentials stay 0600, in a 0700 directory.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::fs::write_atomic;
use crate::node::Node;

/// Where the journal lives on the node (under our state directory).
pub const UNDO_DIR: &str = "/var/lib/mk8s-worker/undo";

/// Record the state of `$SNAP_DATA/rel` before the join changes it, unless a record
/// of it exists already.
pub fn keep(node: &Node, rel: &str) -> io::Result<()> {
    check_rel(rel)?;
    let dir = node.path(UNDO_DIR);
    let (present, absent) = (dir.join("present").join(rel), dir.join("absent").join(rel));
    if present.exists() || absent.exists() {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    let target = node.snap_data(rel);
    match fs::read(&target) {
        Ok(data) => {
            let mode = fs::metadata(&target)?.permissions().mode() & 0o7777;
            write_atomic(&present, &data, mode).map(|_| ())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => write_atomic(&absent, b"", 0o600).map(|_| ()),
        Err(e) => Err(e),
    }
}

/// What the journal says about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Original {
    /// The file's content and mode before the join.
    Present(Vec<u8>, u32),
    /// There was no such file.
    Absent,
}

/// Every record: (path relative to `$SNAP_DATA`, its original state), in path order.
pub fn entries(node: &Node) -> io::Result<Vec<(String, Original)>> {
    let dir = node.path(UNDO_DIR);
    let mut out = Vec::new();
    for (kind, present) in [("present", true), ("absent", false)] {
        let base = dir.join(kind);
        for rel in files_under(&base)? {
            let original = if present {
                let p = base.join(&rel);
                Original::Present(fs::read(&p)?, fs::metadata(&p)?.permissions().mode() & 0o7777)
            } else {
                Original::Absent
            };
            out.push((rel, original));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The journal's record of one path, if any.
pub fn original(node: &Node, rel: &str) -> io::Result<Option<Original>> {
    check_rel(rel)?;
    let dir = node.path(UNDO_DIR);
    let present = dir.join("present").join(rel);
    match fs::read(&present) {
        Ok(data) => return Ok(Some(Original::Present(data, fs::metadata(&present)?.permissions().mode() & 0o7777))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(dir.join("absent").join(rel).exists().then_some(Original::Absent))
}

/// Put `$SNAP_DATA/rel` back as the journal recorded it, then drop the record.
/// Whether the file changed.
pub fn restore(node: &Node, rel: &str, original: &Original) -> io::Result<bool> {
    check_rel(rel)?;
    let target = node.snap_data(rel);
    let changed = match original {
        Original::Present(data, mode) => write_atomic(&target, data, *mode)?,
        Original::Absent => match fs::remove_file(&target) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        },
    };
    let dir = node.path(UNDO_DIR);
    for kind in ["present", "absent"] {
        match fs::remove_file(dir.join(kind).join(rel)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(changed)
}

/// A journal path is relative and stays inside `$SNAP_DATA`.
fn check_rel(rel: &str) -> io::Result<()> {
    let bad = rel.is_empty() || rel.starts_with('/') || rel.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?} is not a path inside the snap's data"),
        ));
    }
    Ok(())
}

/// Regular files under `base` (relative paths, `/`-separated); none if it is absent.
fn files_under(base: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let entries = match fs::read_dir(base.join(&rel)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            // A killed write's temp file is not a record.
            if name.starts_with('.') && name.contains(".mk8s-tmp") {
                continue;
            }
            let ty = e.file_type()?;
            if ty.is_dir() {
                stack.push(rel.join(name));
            } else if ty.is_file() {
                out.push(rel.join(name).to_string_lossy().into_owned());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_state_is_kept_and_put_back() {
        let tmp = tempfile::tempdir().unwrap();
        let n = Node::under(tmp.path());
        write_atomic(&n.snap_data("credentials/kubelet.config"), b"the install hook's", 0o600).unwrap();
        keep(&n, "credentials/kubelet.config").unwrap();
        keep(&n, "var/lock/clustered.lock").unwrap();
        // The join's changes, and a rerun that records again: the first record stays.
        write_atomic(&n.snap_data("credentials/kubelet.config"), b"ours", 0o644).unwrap();
        write_atomic(&n.snap_data("var/lock/clustered.lock"), b"", 0o600).unwrap();
        keep(&n, "credentials/kubelet.config").unwrap();
        keep(&n, "var/lock/clustered.lock").unwrap();
        let mode = fs::metadata(n.path(UNDO_DIR)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(original(&n, "var/lock/clustered.lock").unwrap(), Some(Original::Absent));
        assert_eq!(original(&n, "args/kubelet").unwrap(), None);
        let all = entries(&n).unwrap();
        assert_eq!(
            all,
            vec![
                ("credentials/kubelet.config".to_string(), Original::Present(b"the install hook's".to_vec(), 0o600)),
                ("var/lock/clustered.lock".to_string(), Original::Absent),
            ]
        );
        for (rel, o) in &all {
            assert!(restore(&n, rel, o).unwrap());
            assert!(!restore(&n, rel, o).unwrap(), "a second restore changes nothing");
        }
        assert_eq!(fs::read(n.snap_data("credentials/kubelet.config")).unwrap(), b"the install hook's");
        let mode = fs::metadata(n.snap_data("credentials/kubelet.config")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!n.snap_data("var/lock/clustered.lock").exists());
        assert_eq!(entries(&n).unwrap(), vec![]);
    }

    #[test]
    fn paths_outside_the_snap_data_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let n = Node::under(tmp.path());
        for bad in ["", "/etc/passwd", "../x", "args/../../x", "a//b", "./a"] {
            assert!(keep(&n, bad).is_err(), "{bad:?}");
            assert!(restore(&n, bad, &Original::Absent).is_err(), "{bad:?}");
        }
        assert_eq!(entries(&n).unwrap(), vec![], "no journal at all is an empty one");
    }
}
