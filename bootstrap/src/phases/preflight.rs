//! Preflight (the `plan` phase, before the table): load and check the plan, verify
//! the CA against its pin and every staged file against its sha256, and check what
//! must already hold on the node, before anything on it changes. Every error here
//! is a bad plan or a bad machine (exit 78).

use std::fs;
use std::path::Path;

use super::cx::PhaseCx;
use super::microk8s_join::joined_already;
use crate::node::Node;
use crate::plan::{sha256_hex, Credential, JoinPlan};

pub const NAME: &str = "plan";

pub fn run(cx: &mut dyn PhaseCx, plan_path: &Path) -> Result<JoinPlan, String> {
    let text =
        fs::read_to_string(plan_path).map_err(|e| format!("cannot read the plan {}: {e}", plan_path.display()))?;
    let plan = JoinPlan::from_json(&text).map_err(|e| e.to_string())?;
    check_ca_pin(&plan)?;
    check_staged_files(cx.node(), &plan)?;
    if matches!(plan.credentials.kubelet, Credential::Removed) {
        return Err("the plan's credentials were removed after an earlier join, and this node has no \
                    completion stamp of that join; regenerate the user-data"
            .into());
    }
    if plan.join.is_some() {
        check_hostname(cx.node(), &plan)?;
        // Another node's join on this disk stops us before anything changes.
        joined_already(cx.node(), &plan)?;
    }
    // Preconditions, before anything on the node changes.
    plan.load_balancer.precondition(cx.node())?;
    cx.log(
        NAME,
        &format!(
            "plan for node {} (cluster {}, MicroK8s {}, {:?}) is valid; CA pin verified",
            plan.node.name, plan.cluster, plan.microk8s.channel, plan.microk8s.flavour
        ),
    );
    Ok(plan)
}

fn check_ca_pin(plan: &JoinPlan) -> Result<(), String> {
    match crate::certs::pin_of_pem(&plan.ca.pem) {
        Some(p) if p == plan.ca.pin => Ok(()),
        Some(p) => Err(format!(
            "the CA in the plan does not match its pin: expected {}, got {p}; nothing was installed. \
             Regenerate the user-data from the cluster's real CA",
            plan.ca.pin
        )),
        None => Err("the CA in the plan is not a PEM certificate".into()),
    }
}

fn check_staged_files(node: &Node, plan: &JoinPlan) -> Result<(), String> {
    for f in &plan.install {
        match fs::read(node.path(&f.staged)) {
            Ok(data) if sha256_hex(&data) == f.sha256 => {}
            Ok(_) => {
                return Err(format!(
                    "{} does not match the plan's sha256; the user-data was altered or truncated",
                    f.staged
                ))
            }
            Err(_) => {
                // Already installed by an earlier run (and then cleaned up)?
                let installed =
                    fs::read(node.snap_data(&f.target)).map(|d| sha256_hex(&d) == f.sha256).unwrap_or(false);
                if !installed {
                    return Err(format!("{} is missing; the user-data did not write it", f.staged));
                }
            }
        }
    }
    Ok(())
}

/// `microk8s join` names the node after the machine's hostname, lower-cased
/// (`socket.gethostname().lower()`, canonical/microk8s 1.30:scripts/wrappers/join.py
/// L163, L362): the user-data sets it to the node's name (/etc/hostname and
/// `hostnamectl set-hostname`); a machine called otherwise is refused.
/// `gethostname()` is the kernel's name, which the join uses; /etc/hostname
/// is only what the next boot will set, so both must be the node's.
fn check_hostname(node: &Node, plan: &JoinPlan) -> Result<(), String> {
    for (what, file) in [("the kernel's hostname", "/proc/sys/kernel/hostname"), ("/etc/hostname", "/etc/hostname")] {
        let hostname = fs::read_to_string(node.path(file)).unwrap_or_default();
        let hostname = hostname.trim().to_lowercase();
        if hostname != plan.node.name {
            return Err(format!(
                "this machine's hostname ({what}) is {hostname:?}, but the plan is for node {:?}: \
                 `microk8s join` registers the node under the kernel's hostname, so it must be the node's \
                 name (the user-data sets it; an image or cloud-init setting may have overridden it); \
                 nothing was changed",
                plan.node.name
            ));
        }
    }
    Ok(())
}
