//! Finish (after the table; the runner has marked the status `joined`): the
//! completion stamp, written last, then the removal of what the node no longer
//! needs.

use std::fs;
use std::path::Path;

use super::cx::{PhaseCx, StepResult};
use super::planned::{keep_pristine, PLAN_SHA_FILE};
use crate::fs::write_atomic;
use crate::plan::{sha256_hex, JoinPlan, PLAN_PATH};
use crate::status::{stamp_text, STAMP_FILE};

pub const NAME: &str = "finish";
/// Cluster API's bootstrap-provider contract: tooling watches for this file.
pub const CAPI_STAMP: &str = "/run/cluster-api/bootstrap-success.complete";

pub fn run(cx: &mut dyn PhaseCx, plan: &JoinPlan, plan_path: &Path) -> StepResult {
    // The plan's hash as mk8s-gen wrote it, before its credentials go: what
    // `maintain` reports as `plan-sha256`.
    if let Ok(bytes) = fs::read(plan_path) {
        write_atomic(&cx.node().path(PLAN_SHA_FILE), format!("{}\n", sha256_hex(&bytes)).as_bytes(), 0o644)?;
    }
    // The balancer's files as planned, kept so `maintain --repair` can restore them.
    keep_pristine(cx.node(), plan);
    write_atomic(&cx.node().path(STAMP_FILE), stamp_text(plan).as_bytes(), 0o644)?;
    cleanup(cx, plan, plan_path);
    Ok(())
}

/// Remove the staged copies of secrets (the installed kubeconfigs keep theirs, 0600)
/// and write the Cluster API stamp.
pub fn cleanup(cx: &mut dyn PhaseCx, plan: &JoinPlan, plan_path: &Path) {
    // The plan keeps everything but the credentials (the installed kubeconfigs,
    // 0600, are the only copies left); the stamp is bound to what remains.
    let stripped = plan.stripped();
    if &stripped != plan && write_atomic(plan_path, stripped.to_json().as_bytes(), 0o600).is_ok() {
        cx.log("done", &format!("removed the credentials from {PLAN_PATH}"));
    }
    for f in plan.install.iter().filter(|f| f.secret) {
        if fs::remove_file(cx.node().path(&f.staged)).is_ok() {
            cx.log("done", &format!("removed {}", f.staged));
        }
    }
    let _ = write_atomic(&cx.node().path(CAPI_STAMP), b"success", 0o644);
}
