//! The status file, rewritten at every phase and every failed attempt, and the
//! completion stamp's text.

use serde::Serialize;

use crate::fs::write_atomic;
use crate::node::Node;
use crate::plan::JoinPlan;

pub const STATE_DIR: &str = "/var/lib/mk8s-worker";
pub const STATUS_FILE: &str = "/var/lib/mk8s-worker/status.json";
pub const STAMP_FILE: &str = "/var/lib/mk8s-worker/joined";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub node: String,
    pub phase: String,
    pub result: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub started_at: u64,
    pub updated_at: u64,
    pub steps: Vec<StepTiming>,
}

/// How long a phase took; only the phases that ran are listed.
#[derive(Debug, Serialize)]
pub struct StepTiming {
    pub step: String,
    pub seconds: f64,
}

impl Status {
    /// A run that starts with the plan (preflight), at Unix time `now`.
    pub fn new(now: u64) -> Status {
        Status {
            node: String::new(),
            phase: "plan".into(),
            result: "running".into(),
            attempts: 0,
            last_error: None,
            started_at: now,
            updated_at: now,
            steps: Vec::new(),
        }
    }
}

pub fn save_status(node: &Node, status: &mut Status) {
    status.updated_at = crate::clock::unix_now();
    let mut text = serde_json::to_string_pretty(status).unwrap_or_default();
    text.push('\n');
    // Losing a status update is not worth failing the join for.
    let _ = write_atomic(&node.path(STATUS_FILE), text.as_bytes(), 0o644);
}

/// The completion stamp: bound to the node's name and the plan (credentials aside).
pub fn stamp_text(plan: &JoinPlan) -> String {
    format!("node {}\nplan {}\n", plan.node.name, plan.identity())
}
