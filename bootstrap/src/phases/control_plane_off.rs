//! The `control-plane-off` phase: the locks first (so no restart or refresh brings
//! the control plane back), then stop and disable this flavour's control-plane
//! services.

use super::cx::{PhaseCx, StepError, StepResult};
use crate::fs::write_atomic;
use crate::plan::JoinPlan;
use crate::undo;

pub const NAME: &str = "control-plane-off";

pub fn run(cx: &mut dyn PhaseCx, plan: &JoinPlan) -> StepResult {
    // kubelite's wrapper writes `--start-control-plane=false` into args/kubelite
    // once it starts under clustered.lock (1.30 microk8s-resources/wrappers/
    // run-kubelite-with-args L11-26): a consequence of our lock, kept for `leave`.
    undo::keep(cx.node(), "args/kubelite")?;
    for lock in &plan.microk8s.locks {
        let rel = format!("var/lock/{lock}");
        let p = cx.node().snap_data(&rel);
        if !p.exists() {
            undo::keep(cx.node(), &rel)?;
            write_atomic(&p, b"", 0o600)?;
            cx.log(NAME, &format!("created var/lock/{lock}"));
        }
    }
    let node = cx.node().clone();
    for unit in &plan.microk8s.stop_services {
        for verb in ["stop", "disable"] {
            let r = node.systemctl(&[verb, unit])?;
            // 5: unit not loaded (this MicroK8s version has no such service).
            if !r.ok && r.code != Some(5) && !r.output.contains("not loaded") && !r.output.contains("does not exist") {
                return Err(StepError::Retryable(format!("systemctl {verb} {unit}: {}", r.output)));
            }
        }
    }
    cx.log(NAME, &format!("stopped and disabled {} control-plane service(s)", plan.microk8s.stop_services.len()));
    Ok(())
}
