//! The join as a table of phases (kubeadm's `workflow.Phase` with its `RunIf`).
//! The runner walks [`PHASES`] in order and runs each phase whose `run_if` holds
//! for the plan; [`preflight`] (`plan`) runs before the table and [`finish`] after
//! it. A new mode adds a phase and its `run_if`, not another list.

pub mod apiserver;
pub mod control_plane_off;
pub mod cx;
pub mod fetch;
pub mod finish;
pub mod install;
pub mod kubeconfig;
pub mod load_balancer;
pub mod microk8s_join;
pub mod planned;
pub mod preflight;
pub mod registration;
pub mod retry;
pub mod snap;
pub mod stale;
pub mod start;

#[cfg(test)]
mod fake;

pub use cx::{PhaseCx, StepError, StepResult};

use crate::plan::JoinPlan;

pub struct Phase {
    /// In the log (`mk8s-bootstrap[NAME]`) and the status file (`phase`, `steps`).
    pub name: &'static str,
    pub run: fn(&mut dyn PhaseCx, &JoinPlan) -> StepResult,
    pub run_if: fn(&JoinPlan) -> bool,
}

pub const PHASES: &[Phase] = &[
    Phase { name: snap::NAME, run: snap::run, run_if: always },
    Phase { name: control_plane_off::NAME, run: control_plane_off::run, run_if: always },
    Phase { name: load_balancer::NAME, run: load_balancer::run, run_if: own_files },
    Phase { name: install::NAME, run: install::run, run_if: own_files },
    Phase { name: microk8s_join::NAME, run: microk8s_join::run, run_if: microk8s_joins },
    Phase { name: apiserver::NAME, run: apiserver::run, run_if: own_files },
    Phase { name: start::NAME, run: start::run, run_if: always },
];

fn always(_: &JoinPlan) -> bool {
    true
}

/// `auth: microk8s-join`: MicroK8s's own join writes the CA, the certificates, the
/// kubeconfigs and its proxy's configuration.
fn microk8s_joins(plan: &JoinPlan) -> bool {
    plan.join.is_some()
}

/// Every other mode: the plan brings the files, and the balancer is ours to start.
fn own_files(plan: &JoinPlan) -> bool {
    plan.join.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(plan: &JoinPlan) -> Vec<&'static str> {
        PHASES.iter().filter(|p| (p.run_if)(plan)).map(|p| p.name).collect()
    }

    #[test]
    fn each_mode_runs_the_phases_it_always_ran() {
        let mut plan = fake::plan();
        plan.join = None;
        assert_eq!(names(&plan), ["snap", "control-plane-off", "load-balancer", "install", "apiserver", "start"]);
        plan.join = Some(crate::plan::JoinSpec { agents: vec!["10.0.0.1:25000".into()] });
        assert_eq!(names(&plan), ["snap", "control-plane-off", "join", "start"]);
    }
}
