//! Cordon and drain a Node as `kubectl drain --ignore-daemonsets` does
//! (k8s.io/kubectl v0.34.4 `pkg/drain`: `filters.go` decides which pods go,
//! `drain.go` `evictPods` retries an eviction the apiserver answers 429), through
//! the Eviction API, so PodDisruptionBudgets are honoured by the apiserver itself
//! (k8s.io/kubernetes v1.34.4 `pkg/registry/core/pod/storage/eviction.go`).
//!
//! [`classify`] is a pure function of a pod and the options, tested without a
//! cluster; the rest talks to the apiserver.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::Eviction;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Client;
use mk8s_bootstrap::retry::{Backoff, Jitter};

/// The annotation the kubelet puts on the API copy of a static pod (k8s.io/api
/// v0.34.4 `core/v1/annotation_key_constants.go`, `MirrorPodAnnotationKey`).
pub const MIRROR_POD: &str = "kubernetes.io/config.mirror";

/// Between two rounds of evictions the apiserver refused with 429: from 1 s,
/// doubling, at most 5 s (kubectl waits 5 s: `drain.go`, `evictPods`).
const FIRST_RETRY: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(5);

/// How to drain.
#[derive(Debug, Clone)]
pub struct Options {
    /// Evict pods no controller manages (kubectl's `--force`): they are gone for good.
    pub force: bool,
    /// Evict pods with `emptyDir` volumes (kubectl's `--delete-emptydir-data`): the
    /// data goes with them.
    pub delete_emptydir_data: bool,
    /// When evictions and waiting stop.
    pub deadline: Instant,
    /// Server-side dry runs; nothing waited for.
    pub dry_run: bool,
}

/// What to do with one pod on the Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodAction {
    Evict,
    /// Left where it is, with the reason.
    Skip(&'static str),
    /// The drain cannot go on without an option, with the reason.
    Refuse(&'static str),
}

/// kubectl drain's filters, in its order (`filters.go`, `makeFilters`):
/// mirror pods are skipped; DaemonSet pods are skipped (`--ignore-daemonsets`:
/// the DaemonSet controller would put them back, and they go with the Node);
/// a finished pod goes whatever it is; a pod with `emptyDir` data needs
/// `delete_emptydir_data`, one that no controller manages needs `force`.
pub fn classify(pod: &Pod, o: &Options) -> PodAction {
    let annotations = pod.metadata.annotations.as_ref();
    if annotations.is_some_and(|a| a.contains_key(MIRROR_POD)) {
        return PodAction::Skip("a mirror pod: the kubelet's static pod, not the API's to evict");
    }
    let controller = pod.metadata.owner_references.iter().flatten().find(|r| r.controller == Some(true));
    let finished =
        pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Succeeded" || p == "Failed");
    if controller.is_some_and(|c| c.kind == "DaemonSet" && c.api_version.starts_with("apps/")) && !finished {
        return PodAction::Skip("a DaemonSet's pod: its controller would put it back; it goes with the Node");
    }
    if finished {
        return PodAction::Evict;
    }
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    if !o.delete_emptydir_data && volumes.is_some_and(|v| v.iter().any(|v| v.empty_dir.is_some())) {
        return PodAction::Refuse("it has emptyDir data, which its eviction deletes: give --delete-emptydir-data");
    }
    if !o.force && controller.is_none() {
        return PodAction::Refuse("no controller manages it, so nothing recreates it elsewhere: give --force");
    }
    PodAction::Evict
}

/// `namespace/name`.
pub fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Every pod bound to the Node (a field selector on `spec.nodeName`, as kubectl).
pub async fn pods_on(client: &Client, node: &str) -> anyhow::Result<Vec<Pod>> {
    let api: Api<Pod> = Api::all(client.clone());
    let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
    Ok(api.list(&params).await.with_context(|| format!("cannot list the pods on Node {node}"))?.items)
}

/// Mark the Node unschedulable (what `kubectl cordon` patches).
pub async fn cordon(nodes: &Api<Node>, node: &str, dry_run: bool) -> anyhow::Result<()> {
    let params = PatchParams { dry_run, ..Default::default() };
    let patch = serde_json::json!({ "spec": { "unschedulable": true } });
    nodes.patch(node, &params, &Patch::Merge(&patch)).await.with_context(|| format!("cannot cordon Node {node}"))?;
    Ok(())
}

/// Make the Node schedulable again (what `kubectl uncordon` patches).
pub async fn uncordon(nodes: &Api<Node>, node: &str) -> anyhow::Result<()> {
    let patch = serde_json::json!({ "spec": { "unschedulable": null } });
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("cannot uncordon Node {node}"))?;
    Ok(())
}

/// How one eviction ended.
enum Evicted {
    Done,
    /// 429: a PodDisruptionBudget does not allow it now; the apiserver's message.
    Blocked(String),
}

async fn evict(client: &Client, pod: &Pod, dry_run: bool) -> anyhow::Result<Evicted> {
    let (ns, name) =
        (pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default());
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let eviction = Eviction {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() },
        delete_options: None,
    };
    let params = PostParams { dry_run, ..Default::default() };
    match api.create_subresource::<_, serde_json::Value>("eviction", name, &params, &eviction).await {
        Ok(_) => Ok(Evicted::Done),
        // Gone already: what the eviction was for.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Evicted::Done),
        Err(kube::Error::Api(e)) if e.code == 429 => Ok(Evicted::Blocked(e.message)),
        Err(e) => Err(e).with_context(|| format!("cannot evict pod {}", pod_name(pod))),
    }
}

/// Evict every pod, retrying those a disruption budget holds back until it lets
/// them go or the deadline passes. The pods still held back, with the
/// apiserver's reason (empty when every eviction was accepted). A dry run makes
/// one round.
pub async fn evict_all(
    client: &Client,
    pods: &[&Pod],
    o: &Options,
    out: &mut dyn Write,
) -> anyhow::Result<Vec<String>> {
    let backoff = Backoff { initial: FIRST_RETRY, cap: RETRY_CAP, deadline: o.deadline };
    let mut jitter = Jitter::from_entropy();
    let mut pending: Vec<&Pod> = pods.to_vec();
    for round in 1u32.. {
        let mut held = Vec::new();
        let mut reasons = Vec::new();
        for pod in pending {
            match evict(client, pod, o.dry_run).await? {
                Evicted::Done => {
                    writeln!(out, "{} pod {}", if o.dry_run { "would evict" } else { "evicted" }, pod_name(pod))?
                }
                Evicted::Blocked(why) => {
                    reasons.push(format!("{}: {why}", pod_name(pod)));
                    held.push(pod);
                }
            }
        }
        let left = o.deadline.saturating_duration_since(Instant::now());
        if held.is_empty() || o.dry_run || left.is_zero() {
            return Ok(reasons);
        }
        let delay = jitter.upto(backoff.ceiling(round)).max(Duration::from_millis(200)).min(left);
        writeln!(
            out,
            "{} pod(s) held back by a disruption budget ({}); again in {delay:.1?}",
            held.len(),
            reasons.join("; ")
        )?;
        out.flush()?;
        tokio::time::sleep(delay).await;
        pending = held;
    }
    Ok(Vec::new())
}

/// The Node's kubelet is there to finish its pods' deletion: `Ready` is `True`
/// with a heartbeat fresher than [`crate::status::HEARTBEAT_STALE_SECS`].
pub fn kubelet_alive(node: &Node, now: time::OffsetDateTime) -> bool {
    crate::status::ready_condition(node).is_some_and(|c| {
        let fresh = c
            .last_heartbeat_time
            .as_ref()
            .is_some_and(|t| now.unix_timestamp() - t.0.as_second() <= crate::status::HEARTBEAT_STALE_SECS);
        c.status == "True" && fresh
    })
}

/// Wait until none of `evicted` (pod uids) is on the Node any more, or the
/// deadline. The names of those still there.
pub async fn wait_gone(
    client: &Client,
    node: &str,
    evicted: &[String],
    deadline: Instant,
) -> anyhow::Result<Vec<String>> {
    loop {
        let left: Vec<String> = pods_on(client, node)
            .await?
            .iter()
            .filter(|p| p.metadata.uid.as_ref().is_some_and(|u| evicted.contains(u)))
            .map(pod_name)
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Delete the Node (`dry_run`: a server-side dry run). `false` when it was gone.
pub async fn delete_node(nodes: &Api<Node>, node: &str, dry_run: bool) -> anyhow::Result<bool> {
    let params = DeleteParams { dry_run, ..Default::default() };
    match nodes.delete(node, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot delete Node {node}")),
    }
}
