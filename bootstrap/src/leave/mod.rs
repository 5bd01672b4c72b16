//! `mk8s-bootstrap leave`: the worker being retired undoes what the join did, and
//! nothing else. It never runs MicroK8s's own `microk8s leave` (which takes our
//! workers for control planes: see `docs/day2.md`), never talks to dqlite, the
//! cluster-agent or the apiserver: retiring the Node is the operator's, from the
//! control plane.
//!
//! Steps, each idempotent, in an order that a kill at any point and a rerun
//! converge from: our units (the join's first, so it cannot start anything
//! again) stopped, disabled and removed; MicroK8s's services stopped and disabled
//! (`snap stop --disable`), or the snap removed with `--purge`; the files of the
//! snap's data directory the join changed put back from the undo journal
//! ([`crate::undo`]); the snap disabled (`snap disable`: no service, no hook, no
//! refresh until `snap enable`); our files outside the snap; our state directory
//! (and the journal in it) last.

pub mod files;
mod snap;
pub mod units;

use std::io::Write;

use crate::node::Node;
use crate::plan::{JoinPlan, PLAN_PATH};
use snap::Installed;

/// Exit codes of `leave` (also in its `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Left, or nothing of ours was here: a second run changes nothing.
    Left = 0,
    /// A step failed (a command or a write): the rest was done; run it again.
    Retryable = 75,
}

/// What `leave` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Also `snap remove --purge microk8s` (no snapshot kept).
    pub purge: bool,
}

/// One run: the node, what the plan says (when it is still readable), what was
/// done and what failed.
pub struct Leave<'a> {
    node: &'a Node,
    plan: Option<JoinPlan>,
    purge: bool,
    log: &'a mut dyn Write,
    done: Vec<String>,
    failed: Vec<String>,
}

impl<'a> Leave<'a> {
    pub fn new(node: &'a Node, args: &Args, log: &'a mut dyn Write) -> Leave<'a> {
        Leave { node, plan: None, purge: args.purge, log, done: Vec::new(), failed: Vec::new() }
    }

    /// Every step, then the summary (stdout) and the exit code.
    pub fn run(&mut self, summary: &mut dyn Write) -> Exit {
        self.plan = self.read_plan();
        units::run(self);
        let snap = snap::stop(self);
        if !self.purge && matches!(snap, Some(Installed::Active | Installed::Disabled)) {
            files::restore_snap_data(self);
            files::remove_rotated_store(self);
            // An active snap was stopped above; a disabled one stays as it is.
            if snap == Some(Installed::Active) && self.failed.is_empty() {
                snap::disable(self);
            }
        }
        files::remove_ours(self);
        self.summarize(summary);
        if self.failed.is_empty() {
            Exit::Left
        } else {
            Exit::Retryable
        }
    }

    /// The plan, or None (and a line saying so) when it is gone or unreadable: the
    /// well-known paths and the undo journal still say what to undo.
    fn read_plan(&mut self) -> Option<JoinPlan> {
        let path = self.node.path(PLAN_PATH);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.say(&format!("no plan at {PLAN_PATH}: undoing what the well-known paths and the journal show"));
                return None;
            }
            Err(e) => {
                self.say(&format!("cannot read {PLAN_PATH} ({e}): undoing what the well-known paths show"));
                return None;
            }
        };
        match JoinPlan::from_json(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                self.say(&format!("{PLAN_PATH} is not a plan this agent reads ({e}): using the well-known paths"));
                None
            }
        }
    }

    /// A log line (stderr: the journal when run by systemd).
    fn say(&mut self, line: &str) {
        let _ = writeln!(self.log, "mk8s-bootstrap[leave]: {line}");
    }

    /// Something this run changed.
    fn did(&mut self, what: String) {
        self.say(&what);
        self.done.push(what);
    }

    /// A step that failed; the run goes on with the others and exits 75.
    fn fail(&mut self, what: String) {
        self.say(&format!("error: {what}"));
        self.failed.push(what);
    }

    fn summarize(&mut self, out: &mut dyn Write) {
        let who = match &self.plan {
            Some(p) => format!("node {} of cluster {}", p.node.name, p.cluster),
            None => "this worker".to_string(),
        };
        let mut text = if self.done.is_empty() && self.failed.is_empty() {
            format!("mk8s-bootstrap leave: nothing to undo: no trace of {who} on this machine\n")
        } else {
            let mut t = format!("mk8s-bootstrap leave: {who}: {} change(s)\n", self.done.len());
            for d in &self.done {
                t.push_str(&format!("  - {d}\n"));
            }
            t
        };
        if !self.failed.is_empty() {
            text.push_str(&format!("{} step(s) failed; run `mk8s-bootstrap leave` again:\n", self.failed.len()));
            for f in &self.failed {
                text.push_str(&format!("  ! {f}\n"));
            }
        }
        text.push_str(
            "The Node object and this worker's credentials on the control plane are not touched: retire \
             them from the control plane (docs/day2.md, Leave).\n",
        );
        let _ = out.write_all(text.as_bytes());
    }
}
