//! `mk8s-ctl retire` against the real kube-apiserver (and the real
//! kube-controller-manager, whose disruption controller keeps PodDisruptionBudgets
//! current): pods bound to the Node through `spec.nodeName` (there is no kubelet:
//! they never run, and the Node is a dead machine's), drained, the Node deleted,
//! the retired identity's writes refused by the denylist while another node's go
//! through.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::facts::{FactsYaml, Worker};
use serde_json::json;

use crate::common::{run_with, Cluster, BIN, WORKERS};

/// The cluster of [`Cluster::start`] whose facts mark worker-1 retired.
fn start(authz: Authz) -> Cluster {
    let c = Cluster::start(authz, &[]);
    let facts = FactsYaml::new("ctl")
        .channel("1.34/stable")
        .ca_file("ca.crt")
        .control_plane("cp-1", "10.0.0.2")
        .lb_builtin()
        .workers(WORKERS.iter().map(|(n, a)| {
            if *n == "worker-1" {
                Worker::new(n).retired()
            } else {
                Worker::new(n).address(a)
            }
        }));
    fs::write(&c.facts, facts.yaml()).unwrap();
    c
}

/// The namespace's `default` ServiceAccount, which the ServiceAccount admission
/// plugin wants before a pod (kube-controller-manager makes it where it runs).
async fn service_account(c: &Cluster) {
    let api: Api<ServiceAccount> = Api::namespaced(Cluster::client(&c.admin).await, "default");
    let sa = ServiceAccount {
        metadata: ObjectMeta { name: Some("default".into()), ..Default::default() },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("{e}"),
    }
}

async fn node(c: &Cluster, name: &str) {
    service_account(c).await;
    let api: Api<Node> = Api::all(Cluster::client(&c.admin).await);
    let meta = ObjectMeta { name: Some(name.into()), ..Default::default() };
    api.create(&PostParams::default(), &Node { metadata: meta, ..Default::default() }).await.unwrap();
}

/// A pod bound to `node`. `owner`: its controller, `None` for an unmanaged pod;
/// `"DaemonSet"` names one that does not exist (no controller-manager runs where
/// it is used); any other kind gets a real ConfigMap as its controller, which no
/// controller acts on and the garbage collector sees exist. `ready`: given the
/// status a kubelet would report for a running, ready pod.
async fn pod(
    c: &Cluster,
    name: &str,
    node: &str,
    owner: Option<&str>,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
    ready: bool,
) {
    let client = Cluster::client(&c.admin).await;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let owner_name = format!("{name}-owner");
    let owners = match owner {
        None => json!([]),
        Some("DaemonSet") => json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": owner_name,
                                     "uid": "0b0c1f6e-0000-4000-8000-000000000001", "controller": true}]),
        Some(_) => {
            let cms: Api<ConfigMap> = Api::namespaced(client, "default");
            let cm = ConfigMap {
                metadata: ObjectMeta { name: Some(owner_name.clone()), ..Default::default() },
                ..Default::default()
            };
            let uid = cms.create(&PostParams::default(), &cm).await.unwrap().metadata.uid.unwrap();
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": owner_name, "uid": uid, "controller": true}])
        }
    };
    let map = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": map(labels), "annotations": map(annotations), "ownerReferences": owners},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.invalid/pause:1"}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &p).await.unwrap();
    if ready {
        let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    }
}

/// (exists, terminating) of pod `name`.
async fn pod_state(c: &Cluster, name: &str) -> (bool, bool) {
    let api: Api<Pod> = Api::namespaced(Cluster::client(&c.admin).await, "default");
    match api.get_opt(name).await.unwrap() {
        None => (false, false),
        Some(p) => (true, p.metadata.deletion_timestamp.is_some()),
    }
}

async fn node_exists(c: &Cluster, name: &str) -> Option<Node> {
    Api::<Node>::all(Cluster::client(&c.admin).await).get_opt(name).await.unwrap()
}

/// A write by `node`'s own client certificate: create its Node (as a kubelet
/// registers it) or, when it exists, annotate it (as the node agent reports).
async fn node_writes(c: &Cluster, node: &str) -> Result<(), String> {
    let api: Api<Node> = Api::all(Cluster::client(&c.node_kubeconfig(node)).await);
    let meta = ObjectMeta { name: Some(node.into()), ..Default::default() };
    let r = match api.get_opt(node).await.map_err(|e| e.to_string())? {
        None => api.create(&PostParams::default(), &Node { metadata: meta, ..Default::default() }).await.map(|_| ()),
        Some(_) => {
            let patch = json!({"metadata": {"annotations": {"mk8s-worker.io/test": "x"}}});
            api.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
        }
    };
    r.map_err(|e| e.to_string())
}

/// Wait until the retired identity's write is refused (the policy, binding and
/// ConfigMap reach the admission plugin through informers).
async fn wait_refused(c: &Cluster, node: &str) -> String {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        match node_writes(c, node).await {
            Err(e) if e.contains("retired mk8s-worker node") => return e,
            r => assert!(Instant::now() < end, "the write of {node} was never refused: {r:?}"),
        }
        // A Node that got through is deleted again, so the next try is a create.
        let _ = Api::<Node>::all(Cluster::client(&c.admin).await).delete(node, &Default::default()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// AlwaysAllow and RBAC,Node: a dead machine's Node with a ReplicaSet's pod, a
/// DaemonSet's pod and a mirror pod: the first evicted, the others left; the Node
/// deleted; the retired identity's writes refused by the real apiserver while
/// worker-2's still go through; status shows worker-1 retired; a second run
/// changes nothing and exits 0.
#[tokio::test]
async fn a_dead_workers_node_is_drained_deleted_and_its_identity_refused() {
    for authz in [Authz::AlwaysAllow, Authz::RbacNode] {
        let c = start(authz);
        node(&c, "worker-1").await;
        node(&c, "worker-2").await;
        pod(&c, "web", "worker-1", Some("ConfigMap"), &[], &[], false).await;
        pod(&c, "agent", "worker-1", Some("DaemonSet"), &[], &[], false).await;
        pod(&c, "static", "worker-1", None, &[], &[("kubernetes.io/config.mirror", "abc")], false).await;
        pod(&c, "elsewhere", "worker-2", Some("ConfigMap"), &[], &[], false).await;
        node_writes(&c, "worker-1").await.unwrap();
        let facts = c.facts.to_str().unwrap();
        let (code, out, err) = c.run(&["retire", "--cluster", facts, "--node", "worker-1"]);
        assert_eq!(code, 0, "{authz:?}: {out}\n{err}");
        assert!(out.contains("evicted pod default/web\n"), "{out}");
        assert!(out.contains("skipped pod default/agent: a DaemonSet's pod"), "{out}");
        assert!(out.contains("skipped pod default/static: a mirror pod"), "{out}");
        assert!(out.contains("its kubelet is gone"), "{out}");
        assert!(out.contains("deleted Node worker-1\n"), "{out}");
        assert!(out.contains("on the control plane (auth: token): ") && out.contains("merge-known-tokens.sh"), "{out}");
        assert!(node_exists(&c, "worker-1").await.is_none(), "Node deleted");
        assert_eq!(pod_state(&c, "web").await, (true, true), "evicted: Terminating until the pod GC (no kubelet)");
        for left in ["agent", "static", "elsewhere"] {
            assert_eq!(pod_state(&c, left).await, (true, false), "{left} untouched");
        }
        let refused = wait_refused(&c, "worker-1").await;
        assert!(refused.contains("system:node:worker-1 is a retired mk8s-worker node"), "{refused}");
        assert!(node_exists(&c, "worker-1").await.is_none(), "the retired kubelet cannot register its Node again");
        node_writes(&c, "worker-2").await.unwrap_or_else(|e| panic!("{authz:?}: worker-2 refused: {e}"));
        let cm: Api<ConfigMap> = Api::namespaced(Cluster::client(&c.admin).await, "kube-system");
        let data = cm.get("mk8s-worker-retired-nodes").await.unwrap().data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), ["worker-1"]);

        let (code, out, err) = c.run(&["status", "--cluster", facts, "--json", "--as-of", "2026-12-01T12:00:00Z"]);
        assert_eq!(code, 3, "worker-2 and -3 are not Ready: {err}");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["retired"], json!([{"name": "worker-1", "node_exists": false}]));
        assert_eq!(doc["unknown_nodes"], json!([]));
        let names: Vec<&str> = doc["workers"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["worker-2", "worker-3"]);

        let (code, out, err) = c.run(&["retire", "--cluster", facts, "--node", "worker-1"]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("Node worker-1 does not exist: nothing to drain or delete"), "{out}");
    }
}

/// A pod guarded by a PodDisruptionBudget with `minAvailable: 1`, alone: the
/// eviction is held back (429) until the timeout, and retire stops with the Node
/// cordoned and nothing deleted (exit 4). Run again, it waits; once a second
/// ready pod of the budget runs on worker-2, the controller-manager allows one
/// disruption and the drain finishes.
#[tokio::test]
async fn a_disruption_budget_holds_the_drain_until_it_allows_the_eviction() {
    for authz in [Authz::RbacNode, Authz::AlwaysAllow] {
        let mut c = start(authz);
        c.cp.start_controller_manager();
        node(&c, "worker-1").await;
        node(&c, "worker-2").await;
        pod(&c, "guarded-1", "worker-1", Some("ConfigMap"), &[("app", "guarded")], &[], true).await;
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(Cluster::client(&c.admin).await, "default");
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "guarded"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}}))
        .unwrap();
        pdbs.create(&PostParams::default(), &pdb).await.unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        while pdbs
            .get("guarded")
            .await
            .unwrap()
            .status
            .is_none_or(|s| s.observed_generation != Some(1) || s.current_healthy != Some(1))
        {
            assert!(
                Instant::now() < end,
                "the disruption controller never saw the budget\n{}",
                c.cp.controller_manager_log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let facts = c.facts.to_str().unwrap().to_string();
        let args = ["retire", "--cluster", facts.as_str(), "--node", "worker-1"];
        let (code, out, err) = c.run(&[&args[..], &["--timeout", "4s"]].concat());
        assert_eq!(code, 4, "{authz:?}: {out}\n{err}");
        assert!(err.contains("disruption budget did not let these go: default/guarded-1"), "{err}");
        assert!(out.contains("held back by a disruption budget"), "{out}");
        let n = node_exists(&c, "worker-1").await.expect("not deleted");
        assert_eq!(n.spec.unwrap().unschedulable, Some(true), "cordoned");
        assert_eq!(pod_state(&c, "guarded-1").await, (true, false), "not evicted");

        let child = Command::new(BIN)
            .arg("--kubeconfig")
            .arg(&c.admin)
            .args(args)
            .args(["--timeout", "90s"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(pod_state(&c, "guarded-1").await, (true, false), "still held back");
        pod(&c, "guarded-2", "worker-2", Some("ConfigMap"), &[("app", "guarded")], &[], true).await;
        let done = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
        let (out, err) = (String::from_utf8_lossy(&done.stdout), String::from_utf8_lossy(&done.stderr));
        assert_eq!(done.status.code(), Some(0), "{out}\n{err}");
        assert!(
            out.contains("held back by a disruption budget") && out.contains("evicted pod default/guarded-1"),
            "{out}"
        );
        assert!(node_exists(&c, "worker-1").await.is_none());
        assert_eq!(pod_state(&c, "guarded-2").await, (true, false));
    }
}

/// `--dry-run` changes nothing (no cordon, no eviction, no deletion, no denylist)
/// but says what it would do; a worker the facts do not mark retired is refused
/// before the cluster is touched (exit 1), as is an unmanaged pod without --force
/// (exit 4, nothing changed).
#[tokio::test]
async fn dry_run_and_refusals_change_nothing() {
    let c = start(Authz::RbacNode);
    node(&c, "worker-1").await;
    node(&c, "worker-2").await;
    pod(&c, "web", "worker-1", Some("ConfigMap"), &[], &[], false).await;
    let facts = c.facts.to_str().unwrap();
    let (code, out, err) = c.run(&["retire", "--cluster", facts, "--node", "worker-1", "--dry-run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for line in [
        "would cordon Node worker-1",
        "would evict pod default/web",
        "would delete Node worker-1",
        "would refuse every write by system:node:worker-1",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    let unchanged = || async {
        let n = node_exists(&c, "worker-1").await.expect("Node kept");
        assert_eq!(n.spec.and_then(|s| s.unschedulable), None, "not cordoned");
        assert_eq!(pod_state(&c, "web").await, (true, false), "not evicted");
        let vap: Api<ValidatingAdmissionPolicy> = Api::all(Cluster::client(&c.admin).await);
        assert!(vap.get_opt("mk8s-worker-retired-nodes").await.unwrap().is_none(), "no policy");
        let cm: Api<ConfigMap> = Api::namespaced(Cluster::client(&c.admin).await, "kube-system");
        assert!(cm.get_opt("mk8s-worker-retired-nodes").await.unwrap().is_none(), "no ConfigMap");
    };
    unchanged().await;

    let (code, _, err) = c.run(&["retire", "--cluster", facts, "--node", "worker-2"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("worker \"worker-2\" is not marked retired") && err.contains("retired: true"), "{err}");
    let (code, _, err) = run_with(&c.node_kubeconfig("worker-9"), &["retire", "--cluster", facts, "--node", "cp-1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("\"cp-1\" is a control-plane node"), "{err}");

    pod(&c, "bare", "worker-1", None, &[], &[], false).await;
    let (code, out, err) = c.run(&["retire", "--cluster", facts, "--node", "worker-1"]);
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(err.contains("default/bare: no controller manages it") && err.contains("--force"), "{err}");
    unchanged().await;
    let (code, out, err) = c.run(&["retire", "--cluster", facts, "--node", "worker-1", "--force"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("evicted pod default/bare"), "{out}");
}
