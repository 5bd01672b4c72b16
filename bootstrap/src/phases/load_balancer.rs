//! The `load-balancer` phase: the node-local balancer, from the files the
//! user-data wrote. It is started only once no other server holds its port (the
//! node's own control plane held `*:16443` until kubelite was stopped in the phase
//! before), and it is up when a TLS connection through it reaches an apiserver
//! whose certificate chains to the pinned cluster CA. The one place that starts a
//! balancer by its kind.

use std::fs;

use super::cx::{fatal, PhaseCx, StepError, StepResult};
use super::{fetch, install};
use crate::api::PortHolder;
use crate::node::Node;
use crate::phases::retry::retry;
use crate::plan::{Credential, JoinPlan, LoadBalancerSpec};
use crate::retry::Failure;
use crate::undo;

pub const NAME: &str = "load-balancer";

pub fn run(cx: &mut dyn PhaseCx, plan: &JoinPlan) -> StepResult {
    let Some((unit, listen)) = plan.load_balancer.local() else {
        cx.log(NAME, nothing_to_run(&plan.load_balancer));
        return Ok(());
    };
    let probe =
        cx.apiserver(plan, &format!("https://{listen}"), &Credential::Removed, "load balancer").map_err(fatal)?;
    // Nothing else may hold the port when the balancer starts.
    retry(cx, NAME, plan, |_| match probe.holder() {
        PortHolder::Free | PortHolder::Cluster(_) => Ok(()),
        PortHolder::Foreign(e) => Err(Failure::Retry(format!(
            "{listen} is held by a server whose certificate is not from the cluster CA (this node's own \
             control plane, still running?): waiting for it to stop ({e})"
        ))),
        PortHolder::Unknown(e) => Err(Failure::Retry(format!("cannot tell who holds {listen}: {e}"))),
    })?;
    start(cx, plan, unit)?;
    let code = retry(cx, NAME, plan, |_| match probe.holder() {
        PortHolder::Cluster(code) => Ok(code),
        PortHolder::Free => Err(Failure::Retry(format!("{unit} is not listening on {listen} yet"))),
        PortHolder::Foreign(e) => Err(Failure::Retry(format!(
            "{listen} answers with a certificate that is not from the cluster CA ({e}): \
             not our balancer, or it reaches no apiserver of this cluster yet"
        ))),
        PortHolder::Unknown(e) => Err(Failure::Retry(format!("{unit} on {listen}: {e}"))),
    })?;
    cx.log(NAME, &format!("{unit} on {listen} reaches an apiserver of this cluster (TLS verified, /readyz {code})"));
    Ok(())
}

/// Why no balancer of ours runs on this node (the kinds without a `local()`).
fn nothing_to_run(lb: &LoadBalancerSpec) -> &'static str {
    match lb {
        LoadBalancerSpec::Joined { .. } => "MicroK8s's own proxy, configured by the join",
        _ => "external load balancer: nothing to run on this node",
    }
}

fn start(cx: &mut dyn PhaseCx, plan: &JoinPlan, unit: &str) -> StepResult {
    let node = cx.node().clone();
    match &plan.load_balancer {
        LoadBalancerSpec::Traefik { binary, .. } => {
            fetch::ensure_binary(cx, NAME, plan, binary)?;
            systemctl(&node, &["daemon-reload"])?;
            systemctl(&node, &["enable", "--now", unit])?;
        }
        // Their programs are on the node already: this binary, or HAProxy from the
        // distribution.
        LoadBalancerSpec::Builtin { .. } | LoadBalancerSpec::Haproxy { .. } => {
            systemctl(&node, &["daemon-reload"])?;
            systemctl(&node, &["enable", "--now", unit])?;
        }
        LoadBalancerSpec::Microk8sProxy { .. } => {
            // Its configuration lives in the snap's args/traefik/: install it
            // first, then restart the proxy so its wrapper renders traefik.yaml
            // from our template. MicroK8s's own worker join removes
            // `no-apiserver-proxy` as it configures the proxy (1.30
            // scripts/wrappers/join.py `update_apiserver_proxy`); `microk8s leave`
            // and `inspect` read the lock to tell a worker (1.30
            // scripts/wrappers/common/cluster/utils.py `is_node_dqlite_worker`).
            install::run(cx, plan)?;
            // What the proxy's wrapper renders from our template, kept for `leave`.
            undo::keep(&node, "args/traefik/traefik.yaml")?;
            let lock = node.snap_data("var/lock/no-apiserver-proxy");
            if lock.exists() {
                undo::keep(&node, "var/lock/no-apiserver-proxy")?;
                fs::remove_file(&lock)?;
                cx.log(NAME, "removed var/lock/no-apiserver-proxy");
            }
            systemctl(&node, &["enable", unit])?;
            systemctl(&node, &["restart", unit])?;
        }
        // No `local()`: `run` returned before starting anything.
        LoadBalancerSpec::External | LoadBalancerSpec::Joined { .. } => {}
    }
    Ok(())
}

fn systemctl(node: &Node, args: &[&str]) -> StepResult {
    let r = node.systemctl(args)?;
    if r.ok {
        Ok(())
    } else {
        Err(StepError::Retryable(format!("systemctl {}: {}", args.join(" "), r.output)))
    }
}
