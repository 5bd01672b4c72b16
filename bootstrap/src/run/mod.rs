//! The runner: it walks [`PHASES`] and owns what is common to every phase: the
//! status file, the timings, the retry bookkeeping and the exit code a phase's
//! error maps to. Every phase is idempotent (it checks before it changes), every
//! write is atomic, and the completion stamp is written last, so a run killed at
//! any point and started again converges to the same state.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::api::{Api, NodeApi};
use crate::node::Node;
use crate::phases::cx::{PhaseCx, StepError};
use crate::phases::{finish, preflight, PHASES};
use crate::plan::{Credential, JoinPlan};
use crate::retry::{Failure, Jitter};
use crate::status::{save_status, stamp_text, Status, StepTiming};
pub use crate::status::{STAMP_FILE, STATE_DIR, STATUS_FILE};

/// Exit codes (also in `--help` and the unit file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Joined = 0,
    Retryable = 75,
    BadPlan = 78,
}

pub struct Runner<'a> {
    node: &'a Node,
    plan_path: PathBuf,
    out: &'a mut dyn Write,
    status: Status,
    started: Instant,
    deadline: Instant,
    jitter: Jitter,
}

// The runner is the phases' context (kubeadm: `var _ phases.JoinData = &joinData{}`).
const _: for<'r> fn(&'r Runner<'r>) -> &'r dyn PhaseCx = |r| r;

impl<'a> Runner<'a> {
    pub fn new(node: &'a Node, plan_path: &str, out: &'a mut dyn Write) -> Runner<'a> {
        Runner {
            node,
            plan_path: node.path(plan_path),
            out,
            status: Status::new(crate::clock::unix_now()),
            started: Instant::now(),
            deadline: Instant::now(),
            jitter: Jitter::from_entropy(),
        }
    }

    /// Run the whole join: preflight, the phases whose `run_if` holds for the plan,
    /// then finish. The exit code follows the contract: 0, 75 or 78.
    pub fn run(&mut self) -> Exit {
        if let Some(exit) = self.already_joined() {
            return exit;
        }
        let plan_path = self.plan_path.clone();
        let plan = match preflight::run(self, &plan_path) {
            Ok(p) => p,
            Err(m) => return self.fail(preflight::NAME, StepError::Fatal(m)),
        };
        self.status.node = plan.node.name.clone();
        self.deadline = self.started + Duration::from_secs(plan.timing.ready_deadline_secs);
        for phase in PHASES.iter().filter(|p| (p.run_if)(&plan)) {
            self.enter(phase.name);
            let t = Instant::now();
            if let Err(e) = (phase.run)(self, &plan) {
                return self.fail(phase.name, e);
            }
            self.finish_step(phase.name, t);
        }
        self.enter(finish::NAME);
        self.status.result = "joined".into();
        self.status.last_error = None;
        self.save_status();
        if let Err(e) = finish::run(self, &plan, &plan_path) {
            return self.fail(finish::NAME, e);
        }
        let took = self.started.elapsed().as_secs_f64();
        self.log("done", &format!("node {} joined and Ready in {took:.1}s", plan.node.name));
        Exit::Joined
    }

    /// Already joined: a no-op, except finishing a cleanup a kill interrupted. The
    /// stamp counts only when it is this plan's: an image cloned from a joined node,
    /// or a reused disk, carries another node's stamp.
    fn already_joined(&mut self) -> Option<Exit> {
        let stamp = fs::read_to_string(self.node.path(STAMP_FILE)).ok()?;
        match self.load_plan_quietly() {
            Ok(plan) if stamp == stamp_text(&plan) => {
                self.log("done", "this node already joined; nothing to do");
                let plan_path = self.plan_path.clone();
                finish::cleanup(self, &plan, &plan_path);
                Some(Exit::Joined)
            }
            _ => {
                let first = stamp.lines().next().unwrap_or("").to_string();
                self.log(
                    preflight::NAME,
                    &format!("ignoring a completion stamp that is not this plan's ({first:?}): joining anew"),
                );
                None
            }
        }
    }

    fn fail(&mut self, phase: &str, e: StepError) -> Exit {
        let (exit, msg, result) = match e {
            StepError::Fatal(m) => (Exit::BadPlan, m, "failed"),
            StepError::Retryable(m) => (Exit::Retryable, m, "retrying"),
        };
        self.log(phase, &format!("{msg} (exit {})", exit as i32));
        self.status.result = result.into();
        self.status.last_error = Some(msg);
        self.save_status();
        exit
    }

    fn save_status(&mut self) {
        save_status(self.node, &mut self.status);
    }

    fn enter(&mut self, phase: &str) {
        self.status.phase = phase.into();
        self.status.attempts = 0;
        self.save_status();
    }

    fn finish_step(&mut self, phase: &str, since: Instant) {
        let seconds = (since.elapsed().as_millis() as f64) / 1000.0;
        self.status.steps.push(StepTiming { step: phase.into(), seconds });
    }

    fn load_plan_quietly(&self) -> Result<JoinPlan, String> {
        let text = fs::read_to_string(&self.plan_path).map_err(|e| e.to_string())?;
        JoinPlan::from_json(&text).map_err(|e| e.to_string())
    }
}

impl PhaseCx for Runner<'_> {
    fn node(&self) -> &Node {
        self.node
    }

    fn log(&mut self, phase: &str, msg: &str) {
        let _ = writeln!(self.out, "mk8s-bootstrap[{phase}]: {msg}");
    }

    fn attempts(&self) -> u32 {
        self.status.attempts
    }

    fn record_attempt(&mut self, attempts: u32, failure: Option<&str>) {
        self.status.attempts = attempts;
        if let Some(e) = failure {
            self.status.last_error = Some(e.to_string());
            self.save_status();
        }
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn jitter(&mut self) -> &mut Jitter {
        &mut self.jitter
    }

    fn apiserver(
        &self,
        plan: &JoinPlan,
        url: &str,
        cred: &Credential,
        who: &'static str,
    ) -> Result<Box<dyn NodeApi>, Failure> {
        Ok(Box::new(Api::with(plan, url, cred, who)?))
    }
}
