//! The `start` phase: start the worker's services and wait until the Node is
//! Ready, with a heartbeat from the kubelet this run started.

use super::cx::{fatal, PhaseCx, StepError, StepResult};
use super::kubeconfig::{kubeconfig_credential, KUBELET};
use crate::api::NodeState;
use crate::clock::{rfc3339, unix_now};
use crate::plan::JoinPlan;
use crate::retry::Failure;
use crate::run::retry::retry;

pub const NAME: &str = "start";

pub fn run(cx: &mut dyn PhaseCx, plan: &JoinPlan) -> StepResult {
    let node = cx.node().clone();
    // Evidence from this run: a heartbeat no older than the kubelet we start here.
    // A Node left Ready by a replaced machine of the same name is not.
    let since = unix_now();
    for unit in &plan.microk8s.start_services {
        for verb in ["enable", "restart"] {
            let r = node.systemctl(&[verb, unit])?;
            if !r.ok {
                return Err(StepError::Retryable(format!("systemctl {verb} {unit}: {}", r.output)));
            }
        }
    }
    cx.log(NAME, &format!("started {}", plan.microk8s.start_services.join(", ")));
    let cred = if plan.join.is_some() {
        // The credential the join wrote (x509: data embedded on 1.28+, file paths before).
        kubeconfig_credential(&node, KUBELET).map_err(StepError::Retryable)?
    } else {
        plan.credentials.kubelet.clone()
    };
    let api = cx.apiserver(plan, &plan.apiserver.url, &cred, "kubelet").map_err(fatal)?;
    retry(cx, NAME, plan, |_| match api.node()? {
        NodeState::Ready(Some(beat)) if beat >= since => Ok(()),
        NodeState::Ready(Some(beat)) => Err(Failure::Retry(format!(
            "the Node is Ready, but its last heartbeat ({}) is older than the kubelet this run started ({}): \
             waiting for this kubelet's own (a machine of the same name that was replaced?)",
            rfc3339(beat),
            rfc3339(since)
        ))),
        NodeState::Ready(None) => {
            Err(Failure::Retry("the Node is Ready but shows no heartbeat time; waiting for this kubelet's".into()))
        }
        NodeState::Absent => Err(Failure::Retry("the node has not registered yet".into())),
        NodeState::NotReady(why) => Err(Failure::Retry(format!("the node is registered but not Ready: {why}"))),
    })?;
    cx.log(NAME, &format!("node {} is Ready, with a heartbeat from the kubelet this run started", plan.node.name));
    Ok(())
}
