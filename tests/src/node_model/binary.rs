//! Where the `mk8s-node-model` binary is.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How to build the binary [`binary`] looks for.
const BUILD_IT: &str = "cargo build -p mk8s-testkit --bin mk8s-node-model";

/// The `mk8s-node-model` binary, as cargo built it: never built here (a `cargo
/// build` from inside a test of another package rebuilds with that package's
/// feature selection, which cost up to two minutes per `cargo test -p`). The
/// testkit's own tests get its path from cargo (`CARGO_BIN_EXE_mk8s-node-model`);
/// another package's tests find it in the target profile directory of the running
/// test executable, where `cargo test --workspace` (scripts/test) and
/// `cargo build -p mk8s-testkit --bin mk8s-node-model` put it. Missing, or older
/// than a source file of the testkit, it panics with the command that builds it.
pub fn binary() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(find_binary).clone()
}

fn find_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CARGO_BIN_EXE_mk8s-node-model") {
        return PathBuf::from(bin);
    }
    workspace_binary("mk8s-node-model", BUILD_IT, Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// The workspace binary `name`, built by `build` from the crate in `crate_dir`: in
/// the target profile directory of the running test executable (or bench), where
/// `cargo test --workspace` puts every binary. Missing, or older than a source
/// file of its crate, it panics with the command that builds it.
pub fn workspace_binary(name: &str, build: &str, crate_dir: &Path) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // <target>/<profile>/deps/<test>-<hash>
    let deps = exe.parent().expect("deps dir");
    let profile_dir = if deps.file_name().is_some_and(|n| n == "deps") { deps.parent().unwrap() } else { deps };
    let build = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => build.to_string(),
        Some("release") => format!("{build} --release"),
        Some(p) => format!("{build} --profile {p}"),
    };
    let bin = profile_dir.join(name);
    let Ok(built) = fs::metadata(&bin).and_then(|m| m.modified()) else {
        panic!("{} is missing: build it with `{build}` (scripts/test builds it)", bin.display());
    };
    if let Some((source, changed)) = newest_source(crate_dir) {
        assert!(
            changed <= built,
            "{} is older than {}: rebuild it with `{build}` (scripts/test builds it)",
            bin.display(),
            source.display()
        );
    }
    bin
}

/// The most recently changed file a binary is built from (`Cargo.toml` and `src/`
/// of its crate), with its time; None if the sources are not here.
fn newest_source(manifest_dir: &Path) -> Option<(PathBuf, SystemTime)> {
    let mut newest: Option<(PathBuf, SystemTime)> = None;
    let mut pending = vec![manifest_dir.join("Cargo.toml"), manifest_dir.join("src")];
    while let Some(path) = pending.pop() {
        let Ok(meta) = fs::metadata(&path) else { continue };
        if meta.is_dir() {
            pending.extend(fs::read_dir(&path).into_iter().flatten().flatten().map(|e| e.path()));
            continue;
        }
        let Ok(changed) = meta.modified() else { continue };
        if newest.as_ref().is_none_or(|(_, t)| changed > *t) {
            newest = Some((path, changed));
        }
    }
    newest
}
