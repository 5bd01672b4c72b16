//! `mk8s-ctl retire`: take a worker the facts mark `retired: true` out of the
//! cluster: cordon, drain through the Eviction API ([`crate::drain`]), delete
//! the Node, denylist its identity ([`crate::denylist`], 1.30+), then say what
//! revokes its credentials on the control plane for the facts' auth mode.
//!
//! It needs nothing of the machine: a dead worker retires the same way. Each
//! step checks before it changes, so a second run (after a stop, or after
//! success) finishes the work and changes nothing done.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::Client;
use mk8s_gen::model::Facts;

use crate::drain::{self, PodAction};

/// How to retire.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node: String,
    /// Server-side dry runs of every write; nothing waited for.
    pub dry_run: bool,
    pub force: bool,
    pub delete_emptydir_data: bool,
    /// How long evictions may be held back and evicted pods waited for.
    pub timeout: Duration,
}

/// How a run ended (exit 0 and 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Retired,
    /// The drain did not finish: the Node was not deleted; why.
    Stopped(String),
}

/// Retire `s.node`, which the facts mark retired.
pub async fn retire(client: &Client, facts: &Facts, s: &Settings, out: &mut dyn Write) -> anyhow::Result<Ended> {
    let nodes: Api<Node> = Api::all(client.clone());
    let verb = |done: &'static str, would: &'static str| if s.dry_run { would } else { done };
    match nodes.get_opt(&s.node).await.with_context(|| format!("cannot read Node {}", s.node))? {
        Some(node) => {
            if let Ended::Stopped(why) = drain(client, &nodes, &node, s, out).await? {
                return Ok(Ended::Stopped(why));
            }
            drain::delete_node(&nodes, &s.node, s.dry_run).await?;
            writeln!(out, "{} Node {}", verb("deleted", "would delete"), s.node)?;
        }
        None => writeln!(out, "Node {} does not exist: nothing to drain or delete", s.node)?,
    }
    denylist(client, s, out).await?;
    let steps = mk8s_gen::auth::of(&facts.auth).retire_steps();
    writeln!(out, "on the control plane (auth: {}): {steps}", mk8s_gen::auth::of(&facts.auth).name())?;
    out.flush()?;
    Ok(Ended::Retired)
}

/// Classify the Node's pods (refusing before anything changes), cordon, evict,
/// and wait for the evicted pods while the kubelet is there to stop them.
pub(crate) async fn drain(
    client: &Client,
    nodes: &Api<Node>,
    node: &Node,
    s: &Settings,
    out: &mut dyn Write,
) -> anyhow::Result<Ended> {
    let deadline = Instant::now() + s.timeout;
    let o =
        drain::Options { force: s.force, delete_emptydir_data: s.delete_emptydir_data, deadline, dry_run: s.dry_run };
    let pods = drain::pods_on(client, &s.node).await?;
    let mut evict: Vec<&Pod> = Vec::new();
    let mut refused = Vec::new();
    for pod in &pods {
        match drain::classify(pod, &o) {
            PodAction::Evict => evict.push(pod),
            PodAction::Skip(why) => writeln!(out, "skipped pod {}: {why}", drain::pod_name(pod))?,
            PodAction::Refuse(why) => refused.push(format!("{}: {why}", drain::pod_name(pod))),
        }
    }
    if !refused.is_empty() {
        return Ok(Ended::Stopped(format!("nothing was changed; pods that cannot be evicted: {}", refused.join("; "))));
    }
    drain::cordon(nodes, &s.node, s.dry_run).await?;
    writeln!(out, "{} Node {}", if s.dry_run { "would cordon" } else { "cordoned" }, s.node)?;
    let held = drain::evict_all(client, &evict, &o, out).await?;
    if !held.is_empty() && !s.dry_run {
        let why = format!(
            "the Node is cordoned, not deleted: within {:?} a disruption budget did not let these go: {}",
            s.timeout,
            held.join("; ")
        );
        return Ok(Ended::Stopped(why));
    }
    if s.dry_run {
        for h in &held {
            writeln!(out, "would wait for a disruption budget: {h}")?;
        }
        return Ok(Ended::Retired);
    }
    wait(client, node, &evict, deadline, out).await
}

/// Wait for the evicted pods to be gone when the Node's kubelet is alive to
/// stop them; a dead Node's pods stay `Terminating` until the Node is deleted,
/// then kube-controller-manager's pod garbage collector deletes them
/// (k8s.io/kubernetes v1.34.4 `pkg/controller/podgc/gc_controller.go`,
/// `gcOrphaned`): not waited for.
async fn wait(
    client: &Client,
    node: &Node,
    evicted: &[&Pod],
    deadline: Instant,
    out: &mut dyn Write,
) -> anyhow::Result<Ended> {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if evicted.is_empty() {
        return Ok(Ended::Retired);
    }
    if !drain::kubelet_alive(node, time::OffsetDateTime::now_utc()) {
        writeln!(
            out,
            "Node {name} is not Ready with a fresh heartbeat (its kubelet is gone): {} evicted pod(s) are not waited for; \
             they stay Terminating until the Node is deleted, then the pod garbage collector deletes them",
            evicted.len()
        )?;
        return Ok(Ended::Retired);
    }
    let uids: Vec<String> = evicted.iter().filter_map(|p| p.metadata.uid.clone()).collect();
    let left = drain::wait_gone(client, name, &uids, deadline).await?;
    if left.is_empty() {
        writeln!(out, "every evicted pod is gone from Node {name}")?;
        return Ok(Ended::Retired);
    }
    Ok(Ended::Stopped(format!("the Node is cordoned, not deleted: evicted pods still there: {}", left.join(", "))))
}

/// Add the node to the denylist where the apiserver serves it (1.30+).
async fn denylist(client: &Client, s: &Settings, out: &mut dyn Write) -> anyhow::Result<()> {
    let version = client.apiserver_version().await.context("cannot read the apiserver's version")?;
    let minor: u32 = version.minor.trim_end_matches('+').parse().unwrap_or(0);
    if version.major != "1" || minor < crate::denylist::FIRST_MINOR {
        writeln!(
            out,
            "the apiserver is {}.{}: no ValidatingAdmissionPolicy before 1.30, so system:node:{} is not denylisted; \
             its credential works until revoked on the control plane (below) or, for a certificate, until it expires",
            version.major, version.minor, s.node
        )?;
        return Ok(());
    }
    let when = crate::status::rfc3339(time::OffsetDateTime::now_utc());
    crate::denylist::add(client, &s.node, &when, s.dry_run).await?;
    let verb = if s.dry_run { "would refuse" } else { "refuses" };
    writeln!(
        out,
        "ValidatingAdmissionPolicy {} {verb} every write by system:node:{} (ConfigMap {}/{})",
        crate::denylist::NAME,
        s.node,
        crate::denylist::NAMESPACE,
        crate::denylist::NAME
    )?;
    Ok(())
}
