//! `mk8s-bootstrap maintain [--repair]`: is this node still the worker its plan
//! made? Every check of [`checks::CHECKS`] runs against the plan
//! (`/etc/mk8s-worker/plan.json`, credentials stripped after the join); with
//! `--repair` what drifted and is ours is put back, the services that read it are
//! restarted once, and the checks run again for the verdict. The verdict goes to
//! [`STATUS_FILE`] and, as annotations ([`crate::annotations`]), onto the node's
//! own Node, written with the kubelet's credential through the node-local balancer.
//!
//! Shares nothing with the join's runner but the checks the phases expose: a run
//! of a node that has not joined (no completion stamp of this plan) does nothing.

pub mod certs;
pub mod checks;
pub mod kubeconfig;
pub mod proxy;
pub mod report;
pub mod upgrade;

use std::fs;
use std::io::Write;

use serde::Serialize;

use crate::node::Node;
use crate::plan::JoinPlan;
use crate::retry::{Backoff, Failure, Jitter, Outcome};
use crate::status::{stamp_text, STAMP_FILE};
use checks::{Cx, Effects, CHECKS};

/// The verdict of the last run, beside the join's status file.
pub const STATUS_FILE: &str = "/var/lib/mk8s-worker/maintain.json";
pub use crate::phases::planned::PLAN_SHA_FILE;

/// The result a denied or failed renewal of kube-proxy's certificate adds to the
/// checks' (so the run exits 3, drift); a pending one is only said.
pub const RENEWAL_CHECK: &str = "kube-proxy-renewal";

/// The result a refused or failed upgrade adds to the checks' (the run exits 3:
/// the node is not at the channel the operator asked for).
pub const UPGRADE_CHECK: &str = "upgrade";

/// Exit codes (also in `maintain --help` and the unit file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// No drift, or every drift repaired (and reported).
    Clean = 0,
    /// Drift found and not (or not all) repaired.
    Drift = 3,
    /// No drift, but the report did not reach the apiserver: try again later.
    Retryable = 75,
    /// No usable plan, or the apiserver refused the report (401/403).
    Bad = 78,
}

/// One check's outcome, as the status file lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    pub name: &'static str,
    pub ok: bool,
    /// What does not hold (after the repair, when there was one).
    pub problems: Vec<String>,
    /// What the repair changed.
    pub repaired: Vec<String>,
}

/// Parse the plan; a message for the log when it cannot be used.
fn load(node: &Node, plan_path: &str) -> Result<(JoinPlan, Vec<u8>), String> {
    let p = node.path(plan_path);
    let bytes = fs::read(&p).map_err(|e| format!("cannot read the plan {}: {e}", p.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let plan = JoinPlan::from_json(&text).map_err(|e| e.to_string())?;
    Ok((plan, bytes))
}

/// Run every check; the verdict.
pub fn verify(cx: &Cx) -> Vec<CheckResult> {
    CHECKS
        .iter()
        .map(|c| {
            let problems = (c.verify)(cx);
            CheckResult { name: c.name, ok: problems.is_empty(), problems, repaired: Vec::new() }
        })
        .collect()
}

/// Repair what `results` found and we own, then restart what reads it, once.
fn repair(cx: &Cx, results: &mut [CheckResult], out: &mut dyn Write) {
    let mut all = Effects::default();
    for (check, result) in CHECKS.iter().zip(results.iter_mut()) {
        let Some(fix) = check.repair.filter(|_| !result.ok) else { continue };
        let mut fx = Effects::default();
        if let Err(e) = fix(cx, &mut fx) {
            fx.changed.push(format!("repair failed: {e}"));
        }
        for line in &fx.changed {
            log(out, &format!("{}: {line}", check.name));
        }
        result.repaired = std::mem::take(&mut fx.changed);
        all.worker |= fx.worker;
        all.balancer |= fx.balancer;
        all.units |= fx.units;
    }
    for (why, args) in restarts(cx.plan, &all) {
        let said = match cx.node.systemctl(&args.iter().map(String::as_str).collect::<Vec<_>>()) {
            Ok(r) if r.ok => format!("systemctl {} ({why})", args.join(" ")),
            Ok(r) => format!("systemctl {} failed ({why}): {}", args.join(" "), r.output),
            Err(e) => format!("systemctl {} failed ({why}): {e}", args.join(" ")),
        };
        log(out, &said);
    }
}

/// The systemctl calls a repair's effects need, with why.
fn restarts(plan: &JoinPlan, fx: &Effects) -> Vec<(&'static str, Vec<String>)> {
    let mut calls = Vec::new();
    if fx.units {
        calls.push(("a unit file was restored", vec!["daemon-reload".to_string()]));
    }
    if let (true, Some((unit, _))) = (fx.balancer, plan.load_balancer.local()) {
        calls.push(("a balancer file was restored", vec!["restart".into(), unit.to_string()]));
    }
    if fx.worker {
        for unit in &plan.microk8s.start_services {
            calls.push(("something the worker reads was restored", vec!["restart".into(), unit.clone()]));
        }
    }
    calls
}

fn log(out: &mut dyn Write, msg: &str) {
    let _ = writeln!(out, "mk8s-bootstrap[maintain]: {msg}");
}

/// `mk8s-bootstrap maintain`: check (and with `repair`, repair) the node rooted at
/// `node`, report, and say how it went.
pub fn run(node: &Node, plan_path: &str, repair_drift: bool, out: &mut dyn Write) -> Exit {
    let (plan, bytes) = match load(node, plan_path) {
        Ok(p) => p,
        Err(m) => {
            log(out, &format!("{m} (exit 78)"));
            return Exit::Bad;
        }
    };
    if fs::read_to_string(node.path(STAMP_FILE)).ok().as_deref() != Some(stamp_text(&plan).as_str()) {
        log(
            out,
            &format!("node {} has not joined with this plan (no completion stamp): nothing to check", plan.node.name),
        );
        report::save(node, &report::not_joined(&plan));
        return Exit::Clean;
    }
    let now = i64::try_from(crate::clock::unix_now()).unwrap_or(0);
    let cx = Cx { node, plan: &plan, now };
    crate::phases::planned::keep_pristine(node, &plan);
    let renewal = proxy::renew(&cx, || report::kubelet_api(node, &plan), out);
    if let Some(line) = renewal.describe() {
        log(out, &format!("kube-proxy's certificate: {line}"));
    }
    let check = |repair_drift: bool, out: &mut dyn Write, upgraded: &upgrade::Upgrade| {
        let mut results = verify(&cx);
        if repair_drift && results.iter().any(|r| !r.ok) {
            repair(&cx, &mut results, out);
            for (r, after) in results.iter_mut().zip(verify(&cx)) {
                (r.ok, r.problems) = (after.ok, after.problems);
            }
        }
        if let Some(problem) = renewal.problem() {
            results.push(CheckResult { name: RENEWAL_CHECK, ok: false, problems: vec![problem], repaired: Vec::new() });
        }
        if let upgrade::Upgrade::Refused(why) | upgrade::Upgrade::Failed(why) = upgraded {
            results.push(CheckResult {
                name: UPGRADE_CHECK,
                ok: false,
                problems: vec![why.clone()],
                repaired: Vec::new(),
            });
        }
        for r in results.iter().filter(|r| !r.ok) {
            log(out, &format!("drift: {}: {}", r.name, r.problems.join("; ")));
        }
        let mut verdict = report::Verdict::new(&cx, &bytes, results);
        verdict.proxy_renewal = renewal.describe();
        verdict.upgrade = upgraded.describe();
        verdict
    };
    let mut verdict = check(repair_drift, out, &upgrade::Upgrade::Nothing);
    let mut delivered = deliver(node, &plan, &verdict, out);
    // What the operator asks of this node comes back in the answer to the report.
    let desired = delivered.as_ref().ok().and_then(upgrade::desired_of);
    let api_at = |url: &str| report::kubelet_api_at(node, &plan, url);
    let upgraded = upgrade::follow(node, &plan, desired.as_deref(), verdict.channel.as_deref(), &api_at, out);
    if let Some(line) = upgraded.describe() {
        log(out, &format!("upgrade: {line}"));
        // After a refresh MicroK8s's hooks may have undone what is ours: repaired
        // whatever the run's flags, as part of the upgrade the operator asked for.
        let refreshed = matches!(upgraded, upgrade::Upgrade::Done { .. });
        verdict = check(repair_drift || refreshed, out, &upgraded);
        delivered = deliver(node, &plan, &verdict, out);
    }
    let exit = report::finish(node, verdict, delivered.map(|_| ()), out);
    log(out, &format!("exit {}", exit as i32));
    exit
}

/// How long a run keeps trying its report before it gives up with 75 (the timer's
/// next run tries again): a connection a balancer drops once (a backend that just
/// went, the balancer restarted by a repair) is no reason for the unit to fail.
const REPORT_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(3);

fn deliver(
    node: &Node,
    plan: &JoinPlan,
    verdict: &report::Verdict,
    out: &mut dyn Write,
) -> Result<serde_json::Value, Failure> {
    let backoff = Backoff {
        initial: std::time::Duration::from_secs(1),
        cap: std::time::Duration::from_secs(2),
        deadline: std::time::Instant::now() + REPORT_RETRY_FOR,
    };
    let outcome = backoff.run(
        &mut Jitter::from_entropy(),
        |_| report::patch_node(node, plan, verdict),
        |attempt, failure, _| {
            if let Failure::Retry(e) = failure {
                log(out, &format!("the report did not get through (attempt {attempt}): {e}"));
            }
        },
        std::thread::sleep,
        std::time::Instant::now,
    );
    match outcome {
        Outcome::Done(node_object) => Ok(node_object),
        Outcome::Fatal(m) => Err(Failure::Fatal(m)),
        Outcome::TimedOut(m) => Err(Failure::Retry(m)),
    }
}
