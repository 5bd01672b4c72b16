//! Files the plan fixes beyond the install list: the node-local balancer's files
//! (by their hash) and MicroK8s's post-refresh hook. The join writes the hook and
//! keeps verified copies of the balancer's files; `mk8s-bootstrap maintain` checks
//! both with the same answers and restores from the copies.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;

use crate::fs::write_atomic;
use crate::node::Node;
use crate::plan::{sha256_hex, JoinPlan, PlannedFile, REFRESH_HOOK_PATH};

/// Where verified copies of the balancer's files are kept, by their sha256, so a
/// repair can restore a file the plan only knows by its hash.
pub const PRISTINE_DIR: &str = "/var/lib/mk8s-worker/pristine";

/// The sha256 of the plan file as mk8s-gen wrote it, kept by the join before it
/// strips the credentials from the plan (the `plan-sha256` annotation).
pub const PLAN_SHA_FILE: &str = "/var/lib/mk8s-worker/plan.sha256";

/// Why a planned file is not as planned, if it is not.
pub fn file_drift(node: &Node, f: &PlannedFile) -> Option<String> {
    let p = node.path(&f.path);
    let data = match fs::read(&p) {
        Ok(d) => d,
        Err(e) => return Some(format!("{}: {e}", f.path)),
    };
    if sha256_hex(&data) != f.sha256 {
        return Some(format!("{} was changed (sha256 {} instead of {})", f.path, sha256_hex(&data), f.sha256));
    }
    let mode = fs::metadata(&p).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0);
    (mode != f.mode).then(|| format!("{} has mode {mode:o} instead of {:o}", f.path, f.mode))
}

/// Keep a copy of every planned file that is as planned, by its hash, for a later
/// repair. Returns how many were saved.
pub fn keep_pristine(node: &Node, plan: &JoinPlan) -> usize {
    let mut saved = 0;
    for f in plan.balancer_files.iter().filter(|f| file_drift(node, f).is_none()) {
        let copy = node.path(&format!("{PRISTINE_DIR}/{}", f.sha256));
        if copy.exists() {
            continue;
        }
        if let Ok(data) = fs::read(node.path(&f.path)) {
            saved += usize::from(write_atomic(&copy, &data, 0o600).is_ok());
        }
    }
    saved
}

/// The kept copy of a planned file, if there is one and it still has the hash.
pub fn pristine(node: &Node, f: &PlannedFile) -> Option<Vec<u8>> {
    let data = fs::read(node.path(&format!("{PRISTINE_DIR}/{}", f.sha256))).ok()?;
    (sha256_hex(&data) == f.sha256).then_some(data)
}

/// Install the plan's post-refresh hook (the join's snap phase and the repair).
pub fn install_refresh_hook(node: &Node, plan: &JoinPlan) -> io::Result<bool> {
    match &plan.microk8s.refresh_hook {
        Some(text) => write_atomic(&node.path(REFRESH_HOOK_PATH), text.as_bytes(), 0o755),
        None => Ok(false),
    }
}

/// Why the plan's post-refresh hook is not in place, if it is not.
pub fn refresh_hook_drift(node: &Node, plan: &JoinPlan) -> Option<String> {
    let text = plan.microk8s.refresh_hook.as_ref()?;
    let p = node.path(REFRESH_HOOK_PATH);
    match (fs::read_to_string(&p), fs::metadata(&p)) {
        (Ok(t), Ok(m)) if &t == text && m.permissions().mode() & 0o100 != 0 => None,
        (Ok(t), _) if &t == text => Some(format!("{REFRESH_HOOK_PATH} is not executable")),
        (Ok(_), _) => Some(format!("{REFRESH_HOOK_PATH} was changed")),
        (Err(e), _) => Some(format!("{REFRESH_HOOK_PATH}: {e}")),
    }
}
