//! The `join` phase (`auth: microk8s-join`): MicroK8s's own worker join, through
//! each control plane's cluster-agent in turn, under the plan's backoff. The
//! agent's certificate is verified against the pinned CA **before** the token goes
//! anywhere, and the join's CHECK is that verified certificate's sha256, so
//! `microk8s join` (which checks only the fingerprint, canonical/microk8s
//! 1.30:scripts/wrappers/join.py L84-100) talks to the same server. Then the CA
//! the join stored is checked against the pin, and our kubelet and kube-proxy
//! arguments are applied again: the join replaced `args/kubelet` with the
//! control plane's (join.py `store_base_kubelet_args`, L445-454).

use std::fs;

use super::cx::{PhaseCx, StepError, StepResult};
use super::kubeconfig::{kubeconfig_credential, KUBELET};
use super::{install, registration};
use crate::node::Node;
use crate::phases::retry::retry;
use crate::plan::{sha256_hex, Credential, JoinPlan, JoinSpec};
use crate::retry::Failure;

pub const NAME: &str = "join";

pub fn run(cx: &mut dyn PhaseCx, plan: &JoinPlan) -> StepResult {
    let Some(join) = &plan.join else {
        return Err(StepError::Fatal("internal error: the join phase without a join section".into()));
    };
    if joined_already(cx.node(), plan).map_err(StepError::Fatal)? {
        cx.log(NAME, "MicroK8s's join already happened on this node (its certificates chain to the cluster CA)");
    } else {
        join_through_agents(cx, plan, join)?;
    }
    match remote_ca_pin(cx.node()) {
        Some(p) if p == plan.ca.pin => {}
        other => {
            return Err(StepError::Fatal(format!(
                "after the join, certs/ca.remote.crt is not the pinned cluster CA (pin {}, expected {}): \
                 the control plane that answered is not this cluster's",
                other.unwrap_or_else(|| "none".into()),
                plan.ca.pin
            )))
        }
    }
    let changed = install::apply_args(cx.node(), plan)?;
    cx.log(NAME, &format!("CA pin verified; our kubelet and kube-proxy arguments applied ({changed} file(s) changed)"));
    registration::run(cx, NAME, plan)
}

/// `microk8s join AGENT/TOKEN/CHECK --worker` through the first agent that works.
fn join_through_agents(cx: &mut dyn PhaseCx, plan: &JoinPlan, join: &JoinSpec) -> StepResult {
    let Credential::JoinToken { token } = &plan.credentials.kubelet else {
        return Err(StepError::Fatal("the plan has no join token".into()));
    };
    let node = cx.node().clone();
    let ca = &plan.ca.pem;
    let redact = |s: &str| s.replace(token, "<token>");
    let (via, skipped) = retry(cx, NAME, plan, |_| {
        let mut why = Vec::new();
        for agent in &join.agents {
            let leaf = match crate::api::agent_certificate(ca, agent) {
                Ok(l) => l,
                Err(Failure::Fatal(m)) => return Err(Failure::Fatal(m)),
                Err(Failure::Retry(m)) => {
                    why.push(m);
                    continue;
                }
            };
            let check = sha256_hex(&leaf);
            let url = format!("{agent}/{token}/{check}");
            let r = node
                .run(&node.microk8s, &["join", &url, "--worker"])
                .map_err(|e| Failure::Retry(redact(&e.to_string())))?;
            if r.ok {
                return Ok((agent.clone(), why));
            }
            why.push(format!(
                "microk8s join through {agent} failed (exit {}): {}",
                r.code.map(|c| c.to_string()).unwrap_or_else(|| "signal".into()),
                redact(r.output.lines().last().unwrap_or(""))
            ));
        }
        Err(Failure::Retry(why.join("; ")))
    })?;
    for why in skipped {
        cx.log(NAME, &format!("skipped: {why}"));
    }
    cx.log(NAME, &format!("joined as a worker through the cluster-agent at {via}"));
    Ok(())
}

/// The pin of `certs/ca.remote.crt`, the cluster CA as the node has it.
fn remote_ca_pin(node: &Node) -> Option<String> {
    crate::certs::pin_of_pem(&fs::read_to_string(node.snap_data("certs/ca.remote.crt")).ok()?)
}

/// Whether MicroK8s's join already happened here: `certs/ca.remote.crt` is the
/// plan's CA, `clustered.lock` and `no-cert-reissue` exist (the join's last
/// step, `mark_no_cert_reissue`, after its proxy configuration and locks:
/// canonical/microk8s 1.30:scripts/wrappers/join.py L783, 1.24:scripts/cluster/join.py
/// L851), and `credentials/kubelet.config` is the join's (its client certificate
/// chains to the cluster CA; the install hook's is a token or a certificate of the
/// node's own CA). A rerun after a kill, or after the control plane pruned the
/// token, does not join again; a join killed before its end is done again.
///
/// The join counts only when it was this node's: a machine cloned from a joined
/// worker, or a reused disk, carries another node's certificate, which chains to
/// the same CA. Its subject must be `system:node:<this node>`; another one is a
/// fatal error, never a success (under AlwaysAllow that certificate would
/// register this node with another node's identity).
pub fn joined_already(node: &Node, plan: &JoinPlan) -> Result<bool, String> {
    if remote_ca_pin(node).as_deref() != Some(plan.ca.pin.as_str())
        || !node.snap_data("var/lock/clustered.lock").exists()
        || !node.snap_data("var/lock/no-cert-reissue").exists()
    {
        return Ok(false);
    }
    let cert_pem = match kubeconfig_credential(node, KUBELET) {
        Ok(Credential::ClientCertificate { cert_pem, .. }) if crate::certs::chains_to(&cert_pem, &plan.ca.pem) => {
            cert_pem
        }
        _ => return Ok(false),
    };
    let subject = crate::certs::Cert::from_pem(&cert_pem).and_then(|c| c.common_name).unwrap_or_default();
    let mine = format!("system:node:{}", plan.node.name);
    if subject == mine {
        return Ok(true);
    }
    Err(format!(
        "this machine's MicroK8s already joined the cluster, but as {subject:?}, not {mine:?}: it was cloned \
         from a joined worker or reuses its disk. Nothing was changed; reset it (`snap remove --purge \
         microk8s`) or boot a fresh image, then rerun"
    ))
}
