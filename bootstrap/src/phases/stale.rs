//! Part of the `start` phase: a Node of this name that another machine left.
//!
//! A machine that replaces a worker under the same name has a higher `epoch` in
//! its plan (`workers[].epoch`, docs/day2.md "Replace"); the Node records the
//! epoch of the machine that holds it in the `mk8s-worker.io/epoch` annotation
//! (absent: epoch 1). Read with this machine's kubelet credential before its
//! kubelet starts:
//! - an earlier epoch: the Node is stale. Go on: this kubelet takes the Node over
//!   (it updates the Node's status and addresses; `registration::reapply` puts
//!   our labels and taints back), and once it is Ready the annotation is raised
//!   to this machine's epoch, so the old machine is refused if it comes back;
//! - a later epoch: this machine is the one that was replaced. Refuse (exit 78)
//!   before its kubelet starts, so it never heartbeats onto the Node of the
//!   machine that replaced it;
//! - the same epoch: a rejoin of this machine; nothing to do.

use serde_json::{json, Value};

use super::cx::{PhaseCx, StepError, StepResult};
use crate::annotations::EPOCH;
use crate::api::NodeApi;
use crate::phases::retry::retry;
use crate::plan::JoinPlan;

/// The epoch the Node `obj` records for the machine that holds it: 1 when the
/// annotation is absent, `None` when it is not a decimal number.
pub fn holder_epoch(obj: &Value) -> Option<u32> {
    match obj.pointer("/metadata/annotations").and_then(|a| a.get(EPOCH)) {
        None => Some(1),
        Some(v) => v.as_str().and_then(|s| s.parse().ok()),
    }
}

/// Before the kubelet starts: refuse when a later machine of this name holds
/// the Node; say so when an earlier one left it.
pub fn before_start(cx: &mut dyn PhaseCx, phase: &str, plan: &JoinPlan, api: &dyn NodeApi) -> StepResult {
    let Some(obj) = retry(cx, phase, plan, |_| api.node_object())? else { return Ok(()) };
    let ours = plan.node.epoch;
    match holder_epoch(&obj) {
        Some(theirs) if theirs > ours => Err(StepError::Fatal(format!(
            "node {} is held by a later machine (epoch {theirs} in its {EPOCH} annotation); this machine is \
             epoch {ours}: it was replaced, and its kubelet is not started. Take it out of service \
             (mk8s-bootstrap leave); if it is the replacement, give it an epoch above {theirs} in the facts \
             and regenerate its user-data",
            plan.node.name
        ))),
        Some(theirs) if theirs < ours => {
            cx.log(
                phase,
                &format!(
                    "a Node of this name was left by an earlier machine (epoch {theirs}); this machine \
                     (epoch {ours}) takes it over: its kubelet updates the Node, and our labels, taints and \
                     epoch are put on it once it is Ready"
                ),
            );
            Ok(())
        }
        Some(_) => Ok(()),
        None => {
            cx.log(
                phase,
                &format!(
                    "warning: the Node's {EPOCH} annotation is not a number; this machine (epoch {ours}) replaces it"
                ),
            );
            Ok(())
        }
    }
}

/// Once the Node is Ready (`obj`, as read then): record this machine's epoch when
/// the Node shows an earlier (or unreadable) one.
pub fn take_over(cx: &mut dyn PhaseCx, phase: &str, plan: &JoinPlan, api: &dyn NodeApi, obj: &Value) -> StepResult {
    let ours = plan.node.epoch;
    if holder_epoch(obj).is_some_and(|theirs| theirs >= ours) {
        return Ok(());
    }
    let patch = json!({ "metadata": { "annotations": { EPOCH: ours.to_string() } } });
    retry(cx, phase, plan, |_| api.patch_node(&patch))?;
    cx.log(phase, &format!("the Node now records this machine's epoch ({ours})"));
    Ok(())
}
