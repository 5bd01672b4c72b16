//! The `install` phase: the CA, the kubeconfigs and the args the user-data staged,
//! into the snap's data directory.

use std::fs;

use super::cx::{PhaseCx, StepResult};
use crate::fs::write_atomic;
use crate::node::Node;
use crate::plan::JoinPlan;
use crate::store;
use crate::text::merge_args;
use crate::undo;

pub const NAME: &str = "install";

pub fn run(cx: &mut dyn PhaseCx, plan: &JoinPlan) -> StepResult {
    let node = cx.node().clone();
    let mut changed = 0;
    for f in &plan.install {
        let target = node.snap_data(&f.target);
        let data = match fs::read(node.path(&f.staged)) {
            Ok(d) => d,
            // Cleaned up after an earlier install; preflight checked the target.
            Err(_) => continue,
        };
        undo::keep(&node, &f.target)?;
        keep_original(&node, &f.target)?;
        if write_atomic(&target, &data, f.mode)? {
            changed += 1;
        }
    }
    changed += apply_args(&node, plan)?;
    let mut planned = plan.install.len() + 2;
    if let Some(pair) = &plan.credentials.kubelet_serving {
        planned += 1;
        let dir = store::cert_dir(&plan.kubelet_args.join("\n"));
        if store::seed(&node, &dir, store::SERVING, pair)? {
            changed += 1;
        }
    }
    cx.log(NAME, &format!("{changed} file(s) installed or updated, {} already in place", planned - changed));
    Ok(())
}

/// The kubeconfigs the snap's install hook wrote, kept once as `NAME.backup` before
/// ours replace them, as MicroK8s's own join does (`create_x509_kubeconfig`,
/// 1.24-1.27 scripts/wrappers/join.py): `microk8s leave` on a node it takes for a
/// worker restores them from there (1.27 scripts/wrappers/leave.py L35-64), and
/// without them it stops half-way with the node's own CA and args already reset
/// (G3). The content is the undo journal's record, taken before the join's first
/// write: after a killed run the file in place may already be ours, and ours is
/// not the node's original. A backup already there is never replaced.
fn keep_original(node: &Node, rel: &str) -> std::io::Result<()> {
    if !matches!(rel, "credentials/kubelet.config" | "credentials/proxy.config") {
        return Ok(());
    }
    let backup_rel = format!("{rel}.backup");
    let backup = node.snap_data(&backup_rel);
    if backup.exists() {
        return Ok(());
    }
    match undo::original(node, rel)? {
        Some(undo::Original::Present(original, mode)) => {
            undo::keep(node, &backup_rel)?;
            write_atomic(&backup, &original, mode).map(|_| ())
        }
        // Nothing to keep: no install hook wrote it.
        _ => Ok(()),
    }
}

/// The plan's lines in `args/kubelet` and `args/kube-proxy` (same flag replaced,
/// every other line kept). Returns how many files changed.
pub fn apply_args(node: &Node, plan: &JoinPlan) -> std::io::Result<usize> {
    let mut changed = 0;
    for (file, args) in [("args/kubelet", &plan.kubelet_args), ("args/kube-proxy", &plan.kube_proxy_args)] {
        let p = node.snap_data(file);
        let existing = fs::read_to_string(&p).unwrap_or_default();
        if let Some(text) = merge_args(&existing, args) {
            undo::keep(node, file)?;
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o660);
            write_atomic(&p, text.as_bytes(), mode)?;
            changed += 1;
        }
    }
    Ok(changed)
}
