//! `mk8s-ctl upgrade --cluster F --to 1.N/RISK`: a rolling upgrade of the facts'
//! workers to another MicroK8s channel, in batches.
//!
//! 1. Before anything changes: every control plane's `/version`, asked at its own
//!    endpoint (the facts' addresses and port, with the kubeconfig's credentials),
//!    and every worker's channel (the [`a::OBSERVED_CHANNEL`] its `maintain`
//!    reports) must allow the target under the skew policy the node applies too
//!    ([`mk8s_bootstrap::maintain::upgrade::skew`]: one minor at a time, the
//!    kubelet never newer than any apiserver nor more than three minors older).
//!    One worker that may not go there refuses the whole run: pick the target
//!    again.
//! 2. Per batch: cordon and drain each Node through the Eviction API (disruption
//!    budgets honoured, as `retire` drains), then write [`a::DESIRED_CHANNEL`] on
//!    it (clearing the last [`a::UPGRADE`]). The node's `mk8s-bootstrap maintain`
//!    (its timer: every 15 minutes) reads it from the answer to its report,
//!    checks the skew itself, refreshes MicroK8s through snapd, repairs what the
//!    refresh undid and reports again.
//! 3. A Node is upgraded when it reports the target channel, its kubelet reports
//!    the target minor, and it is Ready with a heartbeat after the request; then
//!    it is uncordoned (unless it was cordoned before this tool cordoned it). A
//!    node that reports `refused`/`failed`, whose drain is held back, or that is
//!    not there within `--timeout` is a failure and stays cordoned.
//! 4. More failures than `--max-failures` stop the run (exit 4) before the next
//!    batch. Everything lives on the Nodes (the desired channel, cordons), so a
//!    second run resumes: upgraded workers are skipped, requested ones waited for.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use mk8s_bootstrap::annotations as a;
use mk8s_bootstrap::maintain::upgrade::{minor_of, skew, valid_channel};
use mk8s_gen::model::Facts;

use crate::status::{annotation, kubelet_version, ready_condition};

/// How to upgrade.
#[derive(Debug, Clone)]
pub struct Settings {
    pub to: String,
    /// Workers drained and upgraded at a time.
    pub batch: usize,
    /// Failures tolerated before the run stops.
    pub max_failures: usize,
    /// How long a worker may take: its drain, then its refresh and Ready.
    pub timeout: Duration,
    pub force: bool,
    pub delete_emptydir_data: bool,
    /// How often a requested Node is read while waiting.
    pub poll: Duration,
}

/// How a run ended (exit 0, 3 and 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every batch ran; the failures within the budget.
    Done { upgraded: usize, already: usize, failed: Vec<String> },
    /// Refused before anything changed, or stopped by the failure budget.
    Stopped(String),
}

/// Every control plane's `gitVersion` at its own endpoint.
pub async fn apiserver_versions(kubeconfig: Option<&Path>, facts: &Facts) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for cp in &facts.control_plane {
        let endpoint = mk8s_gen::model::host_port(&cp.address.to_string(), facts.apiserver_port);
        let client = crate::client::connect_to(kubeconfig, &format!("https://{endpoint}")).await?;
        let version = client
            .apiserver_version()
            .await
            .with_context(|| format!("kube-apiserver of {} at {endpoint} did not tell its version", cp.name))?;
        out.push((endpoint, version.git_version));
    }
    Ok(out)
}

/// Upgrade the facts' workers to `s.to`.
pub async fn upgrade(
    client: &Client,
    kubeconfig: Option<&Path>,
    facts: &Facts,
    s: &Settings,
    out: &mut dyn Write,
) -> anyhow::Result<Ended> {
    if !valid_channel(&s.to) {
        anyhow::bail!("--to {:?} is not a channel such as 1.30/stable", s.to);
    }
    let versions = apiserver_versions(kubeconfig, facts).await?;
    let listed: Vec<String> = versions.iter().map(|(e, v)| format!("{v} at {e}")).collect();
    writeln!(out, "control plane: kube-apiserver {}", listed.join(", "))?;
    let nodes: Api<Node> = Api::all(client.clone());
    let (mut todo, mut already, mut refused) = (Vec::new(), 0, Vec::new());
    for w in facts.workers.iter() {
        let Some(node) = nodes.get_opt(&w.name).await.with_context(|| format!("cannot read Node {}", w.name))? else {
            writeln!(out, "{}: no Node (not joined): skipped", w.name)?;
            continue;
        };
        match annotation(&node, a::OBSERVED_CHANNEL) {
            None => refused.push(format!("{}: reports no channel (has its maintain run?)", w.name)),
            Some(c) if c == s.to => already += 1,
            Some(c) => match skew(c, &s.to, &versions) {
                Ok(()) => todo.push((w.name.clone(), node)),
                Err(why) => refused.push(format!("{}: {why}", w.name)),
            },
        }
    }
    if !refused.is_empty() {
        return Ok(Ended::Stopped(format!("nothing was changed; refused: {}", refused.join("; "))));
    }
    let (mut upgraded, mut failed) = (0, Vec::new());
    for batch in todo.chunks(s.batch.max(1)) {
        let mut requested = Vec::new();
        for (name, node) in batch {
            match request(client, &nodes, node, s, out).await? {
                Ok(r) => requested.push((name.clone(), r)),
                Err(why) => failed.push(format!("{name}: {why}")),
            }
        }
        for (name, r) in requested {
            match wait(&nodes, &name, &s.to, &r, s).await? {
                Ok(version) => {
                    if !r.was_cordoned {
                        crate::drain::uncordon(&nodes, &name).await?;
                    }
                    writeln!(out, "{name}: at {} (kubelet {version}), Ready, uncordoned", s.to)?;
                    upgraded += 1;
                }
                Err(why) => {
                    writeln!(out, "{name}: failed: {why}; left cordoned")?;
                    failed.push(format!("{name}: {why}"));
                }
            }
        }
        if failed.len() > s.max_failures {
            return Ok(Ended::Stopped(format!(
                "{} failure(s), more than --max-failures {}: {}",
                failed.len(),
                s.max_failures,
                failed.join("; ")
            )));
        }
    }
    Ok(Ended::Done { upgraded, already, failed })
}

/// A worker asked to upgrade.
struct Requested {
    /// Cordoned before this tool cordoned it: left so.
    was_cordoned: bool,
    at: time::OffsetDateTime,
    deadline: Instant,
}

/// Cordon and drain, then write the desired channel. The inner error is the
/// worker's failure (a drain held back).
async fn request(
    client: &Client,
    nodes: &Api<Node>,
    node: &Node,
    s: &Settings,
    out: &mut dyn Write,
) -> anyhow::Result<Result<Requested, String>> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let ours = annotation(node, a::DESIRED_CHANNEL) == Some(s.to.as_str());
    let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
    // Cordoned by a run of ours that stopped: ours to uncordon.
    let was_cordoned = unschedulable && !ours;
    let deadline = Instant::now() + s.timeout;
    let drain = crate::retire::Settings {
        node: name.clone(),
        dry_run: false,
        force: s.force,
        delete_emptydir_data: s.delete_emptydir_data,
        timeout: s.timeout,
    };
    if let crate::retire::Ended::Stopped(why) = crate::retire::drain(client, nodes, node, &drain, out).await? {
        return Ok(Err(why));
    }
    let at = time::OffsetDateTime::now_utc();
    let patch = serde_json::json!({"metadata": {"annotations": {a::DESIRED_CHANNEL: s.to, a::UPGRADE: null}}});
    nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("cannot annotate Node {name}"))?;
    writeln!(out, "{name}: drained; asked for {}", s.to)?;
    Ok(Ok(Requested { was_cordoned, at, deadline }))
}

/// Wait until the Node reports the target (channel, kubelet minor) and is Ready
/// with a heartbeat after the request: Ok(kubelet version); or why not.
async fn wait(
    nodes: &Api<Node>,
    name: &str,
    to: &str,
    r: &Requested,
    s: &Settings,
) -> anyhow::Result<Result<String, String>> {
    let target = minor_of(to);
    loop {
        let node = nodes.get(name).await.with_context(|| format!("cannot read Node {name}"))?;
        if let Some(said) =
            annotation(&node, a::UPGRADE).filter(|u| u.starts_with("refused:") || u.starts_with("failed:"))
        {
            return Ok(Err(format!("the node says {said}")));
        }
        let version = kubelet_version(&node);
        let at_target =
            annotation(&node, a::OBSERVED_CHANNEL) == Some(to) && version.as_deref().and_then(minor_of) == target;
        let fresh = ready_condition(&node).is_some_and(|c| {
            c.status == "True"
                && c.last_heartbeat_time.as_ref().is_some_and(|t| t.0.as_second() >= r.at.unix_timestamp())
        });
        if at_target && fresh {
            return Ok(Ok(version.unwrap_or_default()));
        }
        if Instant::now() >= r.deadline {
            return Ok(Err(format!(
                "not at {to} and Ready within {:?} (channel {}, kubelet {})",
                s.timeout,
                annotation(&node, a::OBSERVED_CHANNEL).unwrap_or("?"),
                version.as_deref().unwrap_or("?")
            )));
        }
        tokio::time::sleep(s.poll).await;
    }
}
