//! A program the plan names by URL and sha256 (traefik's), downloaded with the
//! node's `curl`, verified, unpacked when the plan says it is an archive, and
//! installed at the plan's path.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::cx::{PhaseCx, StepError, StepResult};
use crate::node::Node;
use crate::phases::retry::retry;
use crate::plan::{sha256_hex, BinarySpec, Fetch, JoinPlan};
use crate::retry::Failure;
use crate::text::redact_url;

/// The program at `b.path`: kept when it already has the plan's sha256, fetched
/// otherwise. `phase` names the phase in the log.
pub fn ensure_binary(cx: &mut dyn PhaseCx, phase: &str, plan: &JoinPlan, b: &BinarySpec) -> StepResult {
    let dest = cx.node().path(&b.path);
    let Some(fetch) = &b.fetch else {
        return if dest.exists() {
            Ok(())
        } else {
            Err(StepError::Fatal(format!("{} is not on this node and the plan gives no URL to fetch it from", b.path)))
        };
    };
    if fs::read(&dest).map(|d| sha256_hex(&d) == fetch.sha256).unwrap_or(false) {
        return Ok(());
    }
    let dir = download_dir(&dest, &b.path)?;
    let download = dir.join(".mk8s-download");
    // A leftover (or planted) entry is removed, never followed.
    let _ = fs::remove_file(&download);
    let shown = redact_url(&fetch.url);
    cx.log(phase, &format!("fetching {shown}"));
    download_verified(cx, phase, plan, fetch, &download, &shown)?;
    let unpacked = unpack(cx.node(), fetch, &dir, &download, &shown)?;
    install_program(&dir, &download, &unpacked, &dest, &shown)
}

/// The directory the program goes to, created if missing, and safe to download
/// into as root.
fn download_dir(dest: &Path, shown_path: &str) -> Result<PathBuf, StepError> {
    use std::os::unix::fs::MetadataExt;
    let dir = dest.parent().ok_or_else(|| StepError::Fatal("bad binary path".into()))?.to_path_buf();
    fs::create_dir_all(&dir)?;
    // We download into this directory as root: refuse one others may write to,
    // where a planted symlink would redirect the download.
    let meta = fs::symlink_metadata(&dir)?;
    if meta.file_type().is_symlink() || meta.mode() & 0o022 != 0 {
        return Err(StepError::Fatal(format!(
            "{} is a symlink or writable by others: refusing to download {shown_path} into it",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Download to `download` under the plan's backoff until its sha256 is the plan's;
/// another sha256 is fatal.
fn download_verified(
    cx: &mut dyn PhaseCx,
    phase: &str,
    plan: &JoinPlan,
    fetch: &Fetch,
    download: &Path,
    shown: &str,
) -> StepResult {
    let node = cx.node().clone();
    let (url, want) = (&fetch.url, &fetch.sha256);
    retry(cx, phase, plan, |_| {
        // --globoff: [ ] { } are literal; https only, redirects included.
        let r = node
            .run(
                &node.curl,
                &[
                    "-fsSL",
                    "--globoff",
                    "--proto",
                    "=https",
                    "--proto-redir",
                    "=https",
                    "--max-time",
                    "300",
                    "-o",
                    download.to_str().unwrap_or_default(),
                    url,
                ],
            )
            .map_err(|e| Failure::Retry(e.to_string()))?;
        if !r.ok {
            return Err(Failure::Retry(format!("download of {shown} failed: {}", r.output.replace(url, shown))));
        }
        let got = sha256_file(download).map_err(|e| Failure::Retry(e.to_string()))?;
        if &got != want {
            return Err(Failure::Fatal(format!("{shown} has sha256 {got}, the plan expects {want}; refusing it")));
        }
        Ok(())
    })
}

/// traefik's release archives hold the program as `traefik`; it is installed at
/// the plan's path, whatever that path's file name. Returns the program's file.
fn unpack(node: &Node, fetch: &Fetch, dir: &Path, download: &Path, shown: &str) -> Result<PathBuf, StepError> {
    if !fetch.archive {
        return Ok(download.to_path_buf());
    }
    let out = dir.join(".mk8s-unpack");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out)?;
    let r = node.run(
        &node.tar,
        &["-xzf", download.to_str().unwrap_or_default(), "-C", out.to_str().unwrap_or_default(), "traefik"],
    )?;
    if !r.ok {
        return Err(StepError::Fatal(format!("{shown} does not contain traefik: {}", r.output)));
    }
    Ok(out.join("traefik"))
}

fn install_program(dir: &Path, download: &Path, unpacked: &Path, dest: &Path, shown: &str) -> StepResult {
    use std::os::unix::fs::PermissionsExt;
    // The plan's sha256 matched, so this is what the facts named: an archive the
    // URL did not say was one (no .tar.gz/.tgz, another kind) would be installed
    // as the program and fail on every start. Refuse it, naming the kind.
    if let Some(kind) = archive_kind(unpacked) {
        let _ = fs::remove_file(download);
        let _ = fs::remove_dir_all(dir.join(".mk8s-unpack"));
        return Err(StepError::Fatal(format!(
            "{shown} is {kind}, not the program: give traefik.url a name ending in .tar.gz (or .tgz) for a \
             gzip tar archive, or the program itself"
        )));
    }
    fs::set_permissions(unpacked, fs::Permissions::from_mode(0o755))?;
    fs::rename(unpacked, dest)?;
    let _ = fs::remove_file(download);
    let _ = fs::remove_dir_all(dir.join(".mk8s-unpack"));
    Ok(())
}

/// What kind of archive a file is, from its first bytes (gzip, xz, bzip2, zstd,
/// zip, tar), or `None` for anything else (a program).
fn archive_kind(path: &Path) -> Option<&'static str> {
    let mut head = [0u8; 512];
    let mut f = fs::File::open(path).ok()?;
    let n = std::io::Read::read(&mut f, &mut head).ok()?;
    let head = &head[..n];
    let kinds: [(&[u8], &str); 5] = [
        (b"\x1f\x8b", "a gzip archive"),
        (b"\xfd7zXZ\x00", "an xz archive"),
        (b"BZh", "a bzip2 archive"),
        (b"\x28\xb5\x2f\xfd", "a zstd archive"),
        (b"PK\x03\x04", "a zip archive"),
    ];
    if let Some((_, kind)) = kinds.iter().find(|(magic, _)| head.starts_with(magic)) {
        return Some(kind);
    }
    (head.len() >= 262 && &head[257..262] == b"ustar").then_some("a tar archive")
}

fn sha256_file(p: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(p)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}
