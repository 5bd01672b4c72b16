//! Fleet status: every worker of the facts beside its Node, Nodes the facts do not
//! know, and what needs attention. [`assess`] is a pure function of the facts,
//! the expected plan hashes, the Nodes and a time, so every verdict is tested
//! without a clock; [`FleetStatus`] serializes to the `--json` document and
//! [`table`] renders it for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Node;
use mk8s_bootstrap::annotations;
use mk8s_bootstrap::maintain::upgrade::minor_of;
use mk8s_gen::model::Facts;
use serde::{Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A certificate that ends within this many days needs attention.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// A Ready heartbeat older than this is stale. The kubelet posts its Node status
/// at least every `nodeStatusReportFrequency`, 5 minutes by default (k8s.io/kubernetes
/// v1.34.4 `pkg/kubelet/apis/config/v1beta1/defaults.go`), even when nothing
/// changed; twice that without one means the kubelet, or the node lifecycle
/// controller that would have marked it `Unknown`, is not doing its job.
pub const HEARTBEAT_STALE_SECS: i64 = 600;

/// The whole report, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct FleetStatus {
    pub cluster: String,
    /// The facts' MicroK8s channel (`1.34/stable`).
    pub channel: String,
    /// The time verdicts were reached at (now, or `--as-of`), RFC 3339 UTC.
    pub as_of: String,
    /// Plan hashes were compared (`--secrets` given).
    pub plans_checked: bool,
    /// Nothing needs attention.
    pub ok: bool,
    pub workers: Vec<WorkerStatus>,
    /// Nodes that are neither a worker nor a control-plane node in the facts.
    pub unknown_nodes: Vec<NodeSummary>,
    /// Workers the facts mark `retired: true`: their absence is what is expected.
    pub retired: Vec<RetiredStatus>,
}

/// A retired worker of the facts.
#[derive(Debug, Serialize)]
pub struct RetiredStatus {
    pub name: String,
    /// A Node of this name still exists: the retirement did not finish (run
    /// `mk8s-ctl retire` again), and needs attention.
    pub node_exists: bool,
}

/// One worker of the facts.
#[derive(Debug, Serialize)]
pub struct WorkerStatus {
    pub name: String,
    pub address: Option<String>,
    /// A Node of this name exists.
    pub joined: bool,
    /// `None` when not joined.
    pub ready: Option<Readiness>,
    pub kubelet_version: Option<String>,
    /// The kubelet's minor is the channel's; `None` when either is unknown
    /// (not joined, or the `latest` track).
    pub version_matches: Option<bool>,
    pub plan: PlanStatus,
    pub expiries: Vec<Expiry>,
    /// The failed checks the node reported; `None` when it reported none.
    pub drift: Option<Vec<String>>,
    pub agent_version: Option<String>,
    /// When the node's agent last reached its verdict.
    pub checked_at: Option<String>,
    pub problems: Vec<Problem>,
}

/// The Node's `Ready` condition.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// `True`, `False`, `Unknown`, or `None` when the Node has no such condition.
    pub status: Option<String>,
    pub reason: Option<String>,
    pub heartbeat: Option<String>,
    /// Seconds from the last heartbeat to [`FleetStatus::as_of`].
    pub heartbeat_age_secs: Option<i64>,
}

/// The plan the node reported beside the one the facts render.
#[derive(Debug, Serialize)]
pub struct PlanStatus {
    /// `None` without `--secrets`.
    pub expected: Option<String>,
    /// `None` when the node reported none.
    pub reported: Option<String>,
    /// `None` when either side is unknown.
    pub matches: Option<bool>,
}

/// Which credential a `*-not-after` annotation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credential {
    Client,
    Serving,
    Proxy,
}

impl Credential {
    pub const ALL: [Credential; 3] = [Credential::Client, Credential::Serving, Credential::Proxy];

    pub fn annotation(self) -> &'static str {
        match self {
            Credential::Client => annotations::CLIENT_NOT_AFTER,
            Credential::Serving => annotations::SERVING_NOT_AFTER,
            Credential::Proxy => annotations::PROXY_NOT_AFTER,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Credential::Client => "client",
            Credential::Serving => "serving",
            Credential::Proxy => "proxy",
        }
    }
}

/// One certificate's end.
#[derive(Debug, Serialize)]
pub struct Expiry {
    pub credential: Credential,
    /// As the node reported it.
    pub not_after: String,
    /// Whole days from [`FleetStatus::as_of`] (negative once expired); `None` when
    /// the value is not an RFC 3339 time.
    pub days_left: Option<i64>,
}

/// What needs attention, one code each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    NotJoined,
    NotReady,
    HeartbeatStale,
    VersionMismatch,
    PlanMismatch,
    ExpiresSoon(Credential),
    Expired(Credential),
    Drift,
    /// An annotation of ours whose value does not parse.
    BadAnnotation(&'static str),
}

impl Problem {
    /// The stable code the JSON and the table show.
    pub fn code(&self) -> String {
        match self {
            Problem::NotJoined => "not-joined".into(),
            Problem::NotReady => "not-ready".into(),
            Problem::HeartbeatStale => "heartbeat-stale".into(),
            Problem::VersionMismatch => "version-mismatch".into(),
            Problem::PlanMismatch => "plan-mismatch".into(),
            Problem::ExpiresSoon(c) => format!("{}-expires-soon", c.name()),
            Problem::Expired(c) => format!("{}-expired", c.name()),
            Problem::Drift => "drift".into(),
            Problem::BadAnnotation(key) => format!("bad-annotation:{key}"),
        }
    }
}

impl Serialize for Problem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.code())
    }
}

/// A Node the facts do not know.
#[derive(Debug, Serialize)]
pub struct NodeSummary {
    pub name: String,
    pub ready: Option<String>,
    pub kubelet_version: Option<String>,
}

/// Judge the fleet. `plans` is `None` when plans are not compared.
pub fn assess(
    facts: &Facts,
    plans: Option<&BTreeMap<String, String>>,
    nodes: &[Node],
    as_of: OffsetDateTime,
) -> FleetStatus {
    let by_name: BTreeMap<&str, &Node> =
        nodes.iter().filter_map(|n| n.metadata.name.as_deref().map(|name| (name, n))).collect();
    let workers: Vec<WorkerStatus> = facts
        .workers
        .iter()
        .map(|w| {
            let expected = plans.and_then(|p| p.get(&w.name)).cloned();
            let address = w.address.map(|a| a.to_string());
            worker_status(facts, &w.name, address, expected, by_name.get(w.name.as_str()).copied(), as_of)
        })
        .collect();
    let known: std::collections::BTreeSet<&str> = facts
        .workers
        .iter()
        .map(|w| w.name.as_str())
        .chain(facts.control_plane.iter().map(|c| c.name.as_str()))
        .chain(facts.retired.iter().map(|r| r.name.as_str()))
        .collect();
    let retired: Vec<RetiredStatus> = facts
        .retired
        .iter()
        .map(|r| RetiredStatus { name: r.name.clone(), node_exists: by_name.contains_key(r.name.as_str()) })
        .collect();
    let unknown_nodes: Vec<NodeSummary> = by_name
        .iter()
        .filter(|(name, _)| !known.contains(*name))
        .map(|(name, node)| NodeSummary {
            name: name.to_string(),
            ready: ready_condition(node).map(|c| c.status.clone()),
            kubelet_version: kubelet_version(node),
        })
        .collect();
    let ok = unknown_nodes.is_empty()
        && workers.iter().all(|w| w.problems.is_empty())
        && retired.iter().all(|r| !r.node_exists);
    FleetStatus {
        cluster: facts.name.clone(),
        channel: facts.channel.text.clone(),
        as_of: rfc3339(as_of),
        plans_checked: plans.is_some(),
        ok,
        workers,
        unknown_nodes,
        retired,
    }
}

fn worker_status(
    facts: &Facts,
    name: &str,
    address: Option<String>,
    expected: Option<String>,
    node: Option<&Node>,
    as_of: OffsetDateTime,
) -> WorkerStatus {
    let mut s = WorkerStatus {
        name: name.to_string(),
        address,
        joined: node.is_some(),
        ready: None,
        kubelet_version: None,
        version_matches: None,
        plan: PlanStatus { expected, reported: None, matches: None },
        expiries: Vec::new(),
        drift: None,
        agent_version: None,
        checked_at: None,
        problems: Vec::new(),
    };
    let Some(node) = node else {
        s.problems.push(Problem::NotJoined);
        return s;
    };
    s.ready = Some(readiness(node, as_of, &mut s.problems));
    s.kubelet_version = kubelet_version(node);
    s.version_matches = match (facts.channel.version, s.kubelet_version.as_deref().and_then(minor_of)) {
        (Some(want), Some(got)) => Some(want == got),
        _ => None,
    };
    if s.version_matches == Some(false) {
        s.problems.push(Problem::VersionMismatch);
    }
    let get = |key: &str| annotation(node, key).map(str::to_string);
    s.plan.reported = get(annotations::PLAN_SHA256);
    if let (Some(e), Some(r)) = (&s.plan.expected, &s.plan.reported) {
        s.plan.matches = Some(e == r);
        if e != r {
            s.problems.push(Problem::PlanMismatch);
        }
    }
    for c in Credential::ALL {
        if let Some(v) = get(c.annotation()) {
            s.expiries.push(expiry(c, v, as_of, &mut s.problems));
        }
    }
    s.drift = get(annotations::DRIFT).map(|d| d.split(',').filter(|x| !x.is_empty()).map(String::from).collect());
    if s.drift.as_ref().is_some_and(|d| !d.is_empty()) {
        s.problems.push(Problem::Drift);
    }
    s.agent_version = get(annotations::AGENT_VERSION);
    s.checked_at = get(annotations::CHECKED_AT);
    s
}

pub fn ready_condition(node: &Node) -> Option<&k8s_openapi::api::core::v1::NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// The value of annotation `key` on the Node, if it has it.
pub fn annotation<'n>(node: &'n Node, key: &str) -> Option<&'n str> {
    node.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// What the Node's kubelet reports as its version (`nodeInfo.kubeletVersion`),
/// when it reports one.
pub fn kubelet_version(node: &Node) -> Option<String> {
    let v = &node.status.as_ref()?.node_info.as_ref()?.kubelet_version;
    (!v.is_empty()).then(|| v.clone())
}

fn readiness(node: &Node, as_of: OffsetDateTime, problems: &mut Vec<Problem>) -> Readiness {
    let cond = ready_condition(node);
    let heartbeat = cond.and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0);
    let age = heartbeat.map(|t| as_of.unix_timestamp() - t.as_second());
    let status = cond.map(|c| c.status.clone());
    if status.as_deref() != Some("True") {
        problems.push(Problem::NotReady);
    } else if age.is_none_or(|a| a > HEARTBEAT_STALE_SECS) {
        problems.push(Problem::HeartbeatStale);
    }
    Readiness {
        status,
        reason: cond.and_then(|c| c.reason.clone()),
        heartbeat: heartbeat.map(|t| t.to_string()),
        heartbeat_age_secs: age,
    }
}

/// `v1.34.4` (or `v1.34.4+build`) -> (1, 34).
fn expiry(c: Credential, value: String, as_of: OffsetDateTime, problems: &mut Vec<Problem>) -> Expiry {
    let at = OffsetDateTime::parse(&value, &Rfc3339).ok();
    let days_left = at.map(|t| (t - as_of).whole_days());
    match at {
        None => problems.push(Problem::BadAnnotation(c.annotation())),
        Some(t) if t <= as_of => problems.push(Problem::Expired(c)),
        Some(_) if days_left.is_some_and(|d| d < EXPIRY_WARNING_DAYS) => problems.push(Problem::ExpiresSoon(c)),
        Some(_) => {}
    }
    Expiry { credential: c, not_after: value, days_left }
}

/// RFC 3339 UTC, seconds precision (`2026-12-03T09:00:00Z`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The table for people: one line per worker, then the Nodes the facts do not
/// know, then a summary line.
pub fn table(s: &FleetStatus) -> String {
    let header =
        ["NODE", "JOINED", "READY", "HEARTBEAT", "VERSION", "PLAN", "CLIENT", "SERVING", "PROXY", "DRIFT", "PROBLEMS"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    rows.extend(s.workers.iter().map(worker_row));
    let mut out = String::new();
    let widths: Vec<usize> =
        (0..header.len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    for r in &rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    if !s.unknown_nodes.is_empty() {
        let _ = writeln!(out, "\nNodes not in the facts:");
        for n in &s.unknown_nodes {
            let ready = n.ready.as_deref().unwrap_or("-");
            let _ = writeln!(out, "  {}  ready={ready}  {}", n.name, n.kubelet_version.as_deref().unwrap_or("-"));
        }
    }
    retired_rows(s, &mut out);
    let attention = s.workers.iter().filter(|w| !w.problems.is_empty()).count();
    let joined = s.workers.iter().filter(|w| w.joined).count();
    let _ = writeln!(
        out,
        "\n{} worker(s), {joined} joined, {attention} need attention; {} Node(s) not in the facts{}{}",
        s.workers.len(),
        s.unknown_nodes.len(),
        match s.retired.len() {
            0 => String::new(),
            n => format!("; {n} retired"),
        },
        if s.plans_checked { "" } else { "; plans not compared (no --secrets)" }
    );
    out
}

/// Retired workers: gone as they should be, or a Node still there.
fn retired_rows(s: &FleetStatus, out: &mut String) {
    if s.retired.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nRetired workers:");
    for r in &s.retired {
        let state = if r.node_exists {
            "its Node still exists: run `mk8s-ctl retire` for it again"
        } else {
            "retired, no Node"
        };
        let _ = writeln!(out, "  {}  {state}", r.name);
    }
}

fn worker_row(w: &WorkerStatus) -> Vec<String> {
    let dash = || "-".to_string();
    let ready = w.ready.as_ref();
    let expiry = |c: Credential| match w.expiries.iter().find(|e| e.credential == c) {
        None => dash(),
        Some(e) => match e.days_left {
            None => "invalid".into(),
            Some(d) if d < 0 || w.problems.contains(&Problem::Expired(c)) => "expired".into(),
            Some(d) if d < EXPIRY_WARNING_DAYS => format!("{d}d!"),
            Some(d) => format!("{d}d"),
        },
    };
    let version = match (&w.kubelet_version, w.version_matches) {
        (Some(v), Some(false)) => format!("{v}!"),
        (Some(v), _) => v.clone(),
        (None, _) => dash(),
    };
    let plan = match (w.plan.matches, &w.plan.reported) {
        (Some(true), _) => "ok".into(),
        (Some(false), _) => "differs".into(),
        (None, Some(_)) => "reported".into(),
        (None, None) => dash(),
    };
    let problems: Vec<String> = w.problems.iter().map(Problem::code).collect();
    vec![
        w.name.clone(),
        if w.joined { "yes".into() } else { "no".into() },
        ready.and_then(|r| r.status.clone()).unwrap_or_else(dash),
        ready.and_then(|r| r.heartbeat_age_secs).map(age).unwrap_or_else(dash),
        version,
        plan,
        expiry(Credential::Client),
        expiry(Credential::Serving),
        expiry(Credential::Proxy),
        w.drift.as_ref().map(|d| if d.is_empty() { "none".into() } else { d.join(",") }).unwrap_or_else(dash),
        if problems.is_empty() { "ok".into() } else { problems.join(",") },
    ]
}

/// `42s`, `5m`, `3h`, `2d`; a heartbeat in the future (clock skew) as `-7s`.
fn age(secs: i64) -> String {
    match secs.abs() {
        a if a < 120 => format!("{secs}s"),
        a if a < 7200 => format!("{}m", secs / 60),
        a if a < 172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}
