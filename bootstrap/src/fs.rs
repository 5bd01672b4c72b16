//! Atomic file writes: a temp file in the same directory, created with the final
//! mode, fsync, rename, fsync the directory; and the removal of temp files that
//! killed writers left behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Replace `path` with `data` atomically: temp file in the same directory created
/// with `mode` (so a secret is never readable by others, not even briefly), fsync,
/// rename, fsync the directory. Returns false when the file already held exactly
/// this content and mode (nothing is written).
///
/// Temp names are unique per write (`.NAME.mk8s-tmp.<pid namespace>-<pid>-<n>`), so
/// concurrent writers of one file never share a temp file: the last rename wins and
/// each rename installs one writer's complete content. A temp file left by a killed
/// writer is removed by the next write of the same file when its writer is gone (same
/// pid namespace, pid no longer running) or it is older than [`STALE_TEMP_AGE`]; a
/// live writer's temp file is never touched. The fixed temp name of older versions
/// (`.NAME.mk8s-tmp`) is removed too.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<bool> {
    if let (Ok(old), Ok(meta)) = (fs::read(path), fs::metadata(path)) {
        if old == data && meta.permissions().mode() & 0o7777 == mode {
            return Ok(false);
        }
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // Missing parents: 0755 at most, whatever the umask (umask 000 would give 0777).
    std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o755).create(dir)?;
    let name = path.file_name().ok_or_else(|| io::Error::other("no file name"))?.to_string_lossy();
    let prefix = temp_prefix(&name);
    remove_stale_temps(dir, &prefix);
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!("{prefix}.{}-{}-{n}", pid_namespace().unwrap_or(0), std::process::id()));
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

/// A temp file older than this is stale whoever wrote it: no write takes so long.
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// `.NAME.mk8s-tmp`, shortened (with a hash of the name) so that with its unique
/// suffix it stays a valid file name (255 bytes) for any NAME.
fn temp_prefix(name: &str) -> String {
    if name.len() <= 180 {
        return format!(".{name}.mk8s-tmp");
    }
    let mut cut = 120;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}~{}.mk8s-tmp", &name[..cut], &crate::plan::sha256_hex(name.as_bytes())[..16])
}

/// The inode of this process's pid namespace: pids are only comparable within one.
fn pid_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

/// Remove `PREFIX` (older versions' fixed name) and `PREFIX.<ns>-<pid>-<n>` files
/// whose writer is gone or that are older than [`STALE_TEMP_AGE`].
fn remove_stale_temps(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let ns = pid_namespace();
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(prefix)) else { continue };
        let stale = if rest.is_empty() {
            true
        } else if let Some(id) = rest.strip_prefix('.') {
            let mut parts = id.split('-').map(|p| p.parse::<u64>().ok());
            let (their_ns, pid) = (parts.next().flatten(), parts.next().flatten());
            let gone = matches!((ns, their_ns, pid), (Some(a), Some(b), Some(pid)) if a == b
                && pid != u64::from(std::process::id())
                && !Path::new("/proc").join(pid.to_string()).exists());
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_TEMP_AGE);
            gone || old
        } else {
            false
        };
        if stale {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_set_the_mode_and_skip_identical_content() {
        let dir = std::env::temp_dir().join(format!("mk8s-sys-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p = dir.join("a/secret");
        assert!(write_atomic(&p, b"x", 0o600).unwrap());
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!write_atomic(&p, b"x", 0o600).unwrap());
        assert!(write_atomic(&p, b"x", 0o644).unwrap(), "a mode change is a change");
        fs::write(dir.join("a/.secret.mk8s-tmp"), b"left by an older version").unwrap();
        assert!(write_atomic(&p, b"y", 0o600).unwrap());
        assert_eq!(fs::read_dir(dir.join("a")).unwrap().count(), 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn temp_names_are_unique_and_only_dead_writers_temps_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("user-data");
        let ns = pid_namespace().expect("/proc is mounted");
        // A killed writer (a pid that is not running) and a live one (pid 1, always
        // running) in our pid namespace, and one of a namespace we cannot see into.
        let dead = dir.path().join(format!(".user-data.mk8s-tmp.{ns}-{}-0", u32::MAX - 1));
        let live = dir.path().join(format!(".user-data.mk8s-tmp.{ns}-1-0"));
        let other_ns = dir.path().join(format!(".user-data.mk8s-tmp.{}-{}-0", ns + 1, u32::MAX - 1));
        let unrelated = dir.path().join(".user-data.mk8s-tmp-notes");
        for f in [&dead, &live, &other_ns, &unrelated] {
            fs::write(f, b"partial").unwrap();
        }
        assert!(write_atomic(&p, b"new", 0o600).unwrap());
        assert!(!dead.exists(), "a dead writer's temp is removed");
        assert!(live.exists() && other_ns.exists() && unrelated.exists(), "others are left alone");
        // Concurrent writers of one file: every rename installs a complete content.
        let writers: Vec<_> = (0..8u8)
            .map(|i| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        write_atomic(&p, &[i; 4096], 0o600).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let got = fs::read(&p).unwrap();
        assert!(got.len() == 4096 && got.iter().all(|b| *b == got[0]));
    }

    #[test]
    fn long_names_get_valid_temp_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(format!("{}.user-data", "w".repeat(245)));
        assert!(write_atomic(&p, b"x", 0o600).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"x");
    }
}
