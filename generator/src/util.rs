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
