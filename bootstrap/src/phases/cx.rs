//! What a phase may use of the run (kubeadm's `JoinData`): the node, the log, the
//! retry bookkeeping and the apiserver. The runner implements it; a phase's tests
//! implement it with a fake, so a phase runs without the binary around it.

use std::time::Instant;

use crate::api::NodeApi;
use crate::node::Node;
use crate::plan::{Credential, JoinPlan};
use crate::retry::{Failure, Jitter};

/// Why a phase stopped the run; the runner turns it into the exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum StepError {
    /// Exit 78: trying again cannot help (a bad plan, a rejected credential).
    Fatal(String),
    /// Exit 75: systemd starts the unit again.
    Retryable(String),
}

impl From<std::io::Error> for StepError {
    fn from(e: std::io::Error) -> Self {
        StepError::Retryable(e.to_string())
    }
}

pub type StepResult = Result<(), StepError>;

/// A client that cannot even be built (a CA or a key that is not PEM) is a bad plan.
pub fn fatal(f: Failure) -> StepError {
    StepError::Fatal(f.to_string())
}

/// The run as a phase sees it. Object-safe: phases take `&mut dyn PhaseCx`.
pub trait PhaseCx {
    /// Paths under the node's root, and the programs it runs.
    fn node(&self) -> &Node;
    /// One log line, `mk8s-bootstrap[PHASE]: MSG`.
    fn log(&mut self, phase: &str, msg: &str);
    /// The attempts the current phase has made so far (the status file's `attempts`).
    fn attempts(&self) -> u32;
    /// Count `attempts` for the current phase; a failed attempt's error is shown in
    /// the status file at once.
    fn record_attempt(&mut self, attempts: u32, failure: Option<&str>);
    /// When the run gives up (exit 75).
    fn deadline(&self) -> Instant;
    /// The spread of the retry delays.
    fn jitter(&mut self) -> &mut Jitter;
    /// A client of `url`, TLS verified against the plan's CA only, with `cred`
    /// (`who` names it in messages: "kubelet", "kube-proxy").
    fn apiserver(
        &self,
        plan: &JoinPlan,
        url: &str,
        cred: &Credential,
        who: &'static str,
    ) -> Result<Box<dyn NodeApi>, Failure>;
}
