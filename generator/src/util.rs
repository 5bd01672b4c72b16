//! Atomic file output: write a temp file in the same directory, fsync, rename, fsync
//! the directory. A reader (or a crash) sees the old file or the new one, never half.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replace `path` with `data` atomically, with `mode` from the first byte; false
/// (nothing touched) when the file already holds exactly `data` with `mode`. The
/// bootstrap's implementation, shared so both crates write files the same way.
pub use mk8s_bootstrap::system::write_atomic;

/// What kind of thing is at `path`, when it is not something we may replace: a
/// symlink, a directory, a device, a pipe or a socket. Renaming over a device node
/// as root turns it into a file of secrets; over a symlink, the link is lost (and
/// writing through one lands the secrets wherever it points).
pub fn not_replaceable(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = fs::symlink_metadata(path).ok()?.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    })
}

/// [`write_atomic`] for the generator's outputs: refuses to replace anything but a
/// regular file (see [`not_replaceable`]).
pub fn write_output(path: &Path, data: &[u8], mode: u32) -> io::Result<bool> {
    if let Some(what) = not_replaceable(path) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("refusing to replace {}: it is {what}, not a regular file", path.display()),
        ));
    }
    write_atomic(path, data, mode)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))
}

/// Make sure `dir` is a directory of ours: a symlink (or anything but a directory)
/// is refused, since the run would then write and delete files wherever it points.
/// Missing components are created with `mode` (whatever the umask adds); with
/// `exact`, the mode of an existing `dir` is set to `mode` too.
pub fn ensure_dir(dir: &Path, mode: u32, exact: bool) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_dir() => {}
        Ok(m) => {
            let what = if m.file_type().is_symlink() { "a symbolic link" } else { "not a directory" };
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("refusing to use {}: it is {what}; give a real directory", dir.display()),
            ));
        }
        Err(_) => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display())))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
            return Ok(());
        }
    }
    if exact {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Create a new file with mode 0600, failing if it exists. The content is complete
/// before the name appears (temp file, fsync, then a hard link, which refuses to
/// replace an existing file).
pub fn create_new_private(path: &Path, data: &[u8]) -> io::Result<()> {
    if path.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists; refusing to overwrite it", path.display()),
        ));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::other("no file name"))?;
    let tmp = dir.join(format!(".{}.new.{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                io::Error::new(e.kind(), format!("{} already exists; refusing to overwrite it", path.display()))
            } else {
                e
            }
        })
    })();
    let _ = fs::remove_file(&tmp);
    result
}
