//! The `control-plane-off` phase: the locks first (so no restart or refresh brings
//! the control plane back), then stop and disable this flavour's control-plane
//! services.

use super::cx::{PhaseCx, StepError, StepResult};
use crate::fs::write_atomic;
use crate::node::Node;
use crate::plan::JoinPlan;
use crate::undo;

pub const NAME: &str = "control-plane-off";

pub fn run(cx: &mut dyn PhaseCx, plan: &JoinPlan) -> StepResult {
    // kubelite's wrapper writes `--start-control-plane=false` into args/kubelite
    // once it starts under clustered.lock (1.30 microk8s-resources/wrappers/
    // run-kubelite-with-args L11-26): a consequence of our lock, kept for `leave`.
    undo::keep(cx.node(), "args/kubelite")?;
    for lock in create_locks(cx.node(), plan)? {
        cx.log(NAME, &format!("created var/lock/{lock}"));
    }
    let node = cx.node().clone();
    stop_units(&node, &plan.microk8s.stop_services)?;
    cx.log(NAME, &format!("stopped and disabled {} control-plane service(s)", plan.microk8s.stop_services.len()));
    Ok(())
}

/// The plan's locks that are not on the node (the check `maintain` shares).
pub fn missing_locks<'p>(node: &Node, plan: &'p JoinPlan) -> Vec<&'p str> {
    plan.microk8s
        .locks
        .iter()
        .filter(|l| !node.snap_data(&format!("var/lock/{l}")).exists())
        .map(String::as_str)
        .collect()
}

/// Create the missing locks; returns their names.
pub fn create_locks<'p>(node: &Node, plan: &'p JoinPlan) -> std::io::Result<Vec<&'p str>> {
    let missing = missing_locks(node, plan);
    for lock in &missing {
        let rel = format!("var/lock/{lock}");
        // The lock's absence is journalled first, for `leave`.
        undo::keep(node, &rel)?;
        write_atomic(&node.snap_data(&rel), b"", 0o600)?;
    }
    Ok(missing)
}

/// Stop and disable `units`; a unit this MicroK8s version does not have is fine.
pub fn stop_units(node: &Node, units: &[String]) -> StepResult {
    for unit in units {
        for verb in ["stop", "disable"] {
            let r = node.systemctl(&[verb, unit])?;
            // 5: unit not loaded (this MicroK8s version has no such service).
            if !r.ok && r.code != Some(5) && !r.output.contains("not loaded") && !r.output.contains("does not exist") {
                return Err(StepError::Retryable(format!("systemctl {verb} {unit}: {}", r.output)));
            }
        }
    }
    Ok(())
}

/// The control-plane units of the plan that are running or enabled, as
/// `UNIT is running` / `UNIT is enabled` (the check `maintain` shares). Units
/// the plan also starts (kubelite runs the worker) are not among them.
pub fn units_on(node: &Node, plan: &JoinPlan) -> Vec<String> {
    let mut on = Vec::new();
    let m = &plan.microk8s;
    for unit in m.stop_services.iter().filter(|u| !m.start_services.contains(u)) {
        for (verb, what) in [("is-active", "running"), ("is-enabled", "enabled")] {
            match node.systemctl(&[verb, "--quiet", unit]) {
                Ok(r) if r.ok => on.push(format!("{unit} is {what}")),
                Ok(_) => {}
                Err(e) => on.push(format!("cannot ask systemctl {verb} {unit}: {e}")),
            }
        }
    }
    on
}
