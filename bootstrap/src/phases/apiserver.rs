//! The `apiserver` phase: the apiserver answers through the load balancer and
//! accepts our credentials (kubelet's, then kube-proxy's). A 401/403 is retried for
//! the plan's grace period first: the token may be merged on the control plane
//! seconds later, or the balancer may have picked the one control-plane node not
//! merged yet.

use std::time::{Duration, Instant};

use super::cx::{fatal, PhaseCx, StepResult};
use crate::api::NodeState;
use crate::phases::retry::{retry, retry_rejections_for};
use crate::plan::JoinPlan;

pub const NAME: &str = "apiserver";

pub fn run(cx: &mut dyn PhaseCx, plan: &JoinPlan) -> StepResult {
    let api = cx.apiserver(plan, &plan.apiserver.url, &plan.credentials.kubelet, "kubelet").map_err(fatal)?;
    let grace = Duration::from_secs(plan.timing.auth_grace_secs);
    let mut rejected: Option<Instant> = None;
    retry(cx, NAME, plan, |_| retry_rejections_for(grace, &mut rejected, api.readyz()))?;
    let state = retry(cx, NAME, plan, |_| retry_rejections_for(grace, &mut rejected, api.node()))?;
    let what = match state {
        NodeState::Absent => "not registered yet",
        _ => "already registered",
    };
    if let Some(cred) = &plan.credentials.kube_proxy {
        let proxy = cx.apiserver(plan, &plan.apiserver.url, cred, "kube-proxy").map_err(fatal)?;
        let mut rejected: Option<Instant> = None;
        retry(cx, NAME, plan, |_| retry_rejections_for(grace, &mut rejected, proxy.node()))?;
    }
    let checked =
        if plan.credentials.kube_proxy.is_some() { "kubelet and kube-proxy credentials" } else { "kubelet credential" };
    cx.log(NAME, &format!("{} is ready and accepts the {checked}; node {what}", plan.apiserver.url));
    Ok(())
}
