//! `mk8s-ctl status` against the real kube-apiserver: Nodes created and given a
//! status through the API as a kubelet and the node agent would, then the real
//! binary's JSON and table read field by field, and its exit codes.

use std::collections::BTreeMap;
use std::fs;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use mk8s_bootstrap::annotations as ann;
use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::facts::{FactsYaml, Worker};
use serde_json::{json, Value};

use crate::common::{rbac, run_with, Cluster};

/// The time the verdicts are reached at (`--as-of`).
const AS_OF: &str = "2026-12-01T12:00:00Z";
/// 30 s before [`AS_OF`]: a fresh heartbeat.
const FRESH: &str = "2026-12-01T11:59:30Z";

/// A Node as a kubelet registers it, with our annotations, then its status
/// (Ready `ready`, heartbeat `heartbeat`, kubelet `version`).
async fn node(c: &Cluster, name: &str, annotations: &[(&str, &str)], ready: &str, heartbeat: &str, version: &str) {
    let api: Api<Node> = Api::all(Cluster::client(&c.admin).await);
    let ann: BTreeMap<String, String> = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let meta = ObjectMeta { name: Some(name.into()), annotations: Some(ann), ..Default::default() };
    api.create(&PostParams::default(), &Node { metadata: meta, ..Default::default() }).await.unwrap();
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": ready, "reason": if ready == "True" { "KubeletReady" } else { "KubeletNotReady" },
                        "lastHeartbeatTime": heartbeat, "lastTransitionTime": heartbeat}],
        "nodeInfo": {"kubeletVersion": version, "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                     "osImage": "", "containerRuntimeVersion": "", "kubeProxyVersion": "", "operatingSystem": "linux",
                     "architecture": "amd64"}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

/// The plan hash `mk8s-gen` would give `worker` for these facts and secrets.
fn plan_sha(c: &Cluster, worker: &str) -> String {
    let text = fs::read_to_string(&c.facts).unwrap();
    let facts = mk8s_gen::load(&text, c.dir()).valid("facts", &text).unwrap();
    let secrets = mk8s_gen::secrets::Secrets::parse(&fs::read_to_string(&c.secrets).unwrap()).unwrap();
    mk8s_ctl::plans::plan_hashes(&facts, &secrets).unwrap()[worker].clone()
}

/// The fleet: worker-1 healthy and reporting; worker-2 everything wrong; worker-3
/// never joined; worker-4 Ready, reporting nothing (an agent before `maintain`);
/// cp-1 a control-plane Node; `stranger` a Node the facts do not know.
async fn fleet(c: &Cluster) {
    let w1 = plan_sha(c, "worker-1");
    let healthy = [
        (ann::PLAN_SHA256, w1.as_str()),
        (ann::AGENT_VERSION, "0.1.0"),
        (ann::CLIENT_NOT_AFTER, "2027-12-01T12:00:00Z"),
        (ann::SERVING_NOT_AFTER, "2027-06-01T12:00:00Z"),
        (ann::DRIFT, ""),
        (ann::CHECKED_AT, "2026-12-01T11:50:00Z"),
    ];
    node(c, "worker-1", &healthy, "True", FRESH, "v1.34.4").await;
    let zeros = "0".repeat(64);
    let broken = [
        (ann::PLAN_SHA256, zeros.as_str()),
        (ann::CLIENT_NOT_AFTER, "2026-12-11T12:00:00Z"),
        (ann::SERVING_NOT_AFTER, "2026-11-30T12:00:00Z"),
        (ann::PROXY_NOT_AFTER, "next tuesday"),
        (ann::DRIFT, "locks,args"),
    ];
    node(c, "worker-2", &broken, "False", FRESH, "v1.33.2").await;
    node(c, "worker-4", &[], "True", "2026-12-01T11:40:00Z", "v1.34.4").await;
    node(c, "cp-1", &[], "True", FRESH, "v1.34.4").await;
    node(c, "stranger", &[], "True", FRESH, "v1.34.4").await;
}

fn by_name(doc: &Value) -> BTreeMap<String, Value> {
    doc["workers"].as_array().unwrap().iter().map(|w| (w["name"].as_str().unwrap().to_string(), w.clone())).collect()
}

/// The JSON, field by field, and exit 3 (attention) on a fleet with problems.
#[tokio::test]
async fn json_reports_every_worker_and_every_unknown_node() {
    for authz in [Authz::AlwaysAllow, Authz::RbacNode] {
        let c = Cluster::start(authz, &[Worker::new("worker-4").address("10.0.0.14")]);
        fleet(&c).await;
        let (facts, secrets) = (c.facts.to_str().unwrap(), c.secrets.to_str().unwrap());
        let (code, out, err) = c.run(&["status", "--cluster", facts, "--secrets", secrets, "--json", "--as-of", AS_OF]);
        assert_eq!(code, 3, "{authz:?}: {out}\n{err}");
        let doc: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (&doc["cluster"], &doc["channel"], &doc["as_of"]),
            (&json!("ctl"), &json!("1.34/stable"), &json!(AS_OF))
        );
        assert_eq!((&doc["plans_checked"], &doc["ok"]), (&json!(true), &json!(false)));
        let w = by_name(&doc);
        assert_eq!(w.keys().collect::<Vec<_>>(), ["worker-1", "worker-2", "worker-3", "worker-4"]);
        let w1 = &w["worker-1"];
        assert_eq!(w1["joined"], true);
        assert_eq!(w1["address"], "10.0.0.11");
        assert_eq!(
            w1["ready"],
            json!({"status": "True", "reason": "KubeletReady", "heartbeat": FRESH, "heartbeat_age_secs": 30})
        );
        assert_eq!((&w1["kubelet_version"], &w1["version_matches"]), (&json!("v1.34.4"), &json!(true)));
        let sha = plan_sha(&c, "worker-1");
        assert_eq!(w1["plan"], json!({"expected": sha, "reported": sha, "matches": true}));
        assert_eq!(
            w1["expiries"],
            json!([{"credential": "client", "not_after": "2027-12-01T12:00:00Z", "days_left": 365},
                   {"credential": "serving", "not_after": "2027-06-01T12:00:00Z", "days_left": 182}])
        );
        assert_eq!((&w1["drift"], &w1["agent_version"]), (&json!([]), &json!("0.1.0")));
        assert_eq!((&w1["checked_at"], &w1["problems"]), (&json!("2026-12-01T11:50:00Z"), &json!([])));
        let w2 = &w["worker-2"];
        assert_eq!(w2["ready"]["status"], "False");
        assert_eq!(w2["version_matches"], false);
        assert_eq!(w2["plan"]["matches"], false);
        assert_eq!(w2["plan"]["expected"], plan_sha(&c, "worker-2"));
        assert_eq!(w2["expiries"][0]["days_left"], 10);
        assert_eq!(w2["expiries"][1]["days_left"], -1);
        assert_eq!(w2["expiries"][2], json!({"credential": "proxy", "not_after": "next tuesday", "days_left": null}));
        assert_eq!(w2["drift"], json!(["locks", "args"]));
        assert_eq!(
            w2["problems"],
            json!([
                "not-ready",
                "version-mismatch",
                "plan-mismatch",
                "client-expires-soon",
                "serving-expired",
                "bad-annotation:mk8s-worker.io/proxy-not-after",
                "drift"
            ])
        );
        let w3 = &w["worker-3"];
        assert_eq!((&w3["joined"], &w3["ready"], &w3["kubelet_version"]), (&json!(false), &Value::Null, &Value::Null));
        assert_eq!(w3["problems"], json!(["not-joined"]));
        let w4 = &w["worker-4"];
        assert_eq!(w4["ready"]["heartbeat_age_secs"], 1200);
        assert_eq!(w4["problems"], json!(["heartbeat-stale"]), "20 min without a heartbeat");
        assert_eq!(w4["plan"], json!({"expected": plan_sha(&c, "worker-4"), "reported": null, "matches": null}));
        assert_eq!((&w4["drift"], &w4["expiries"]), (&Value::Null, &json!([])));
        assert_eq!(doc["unknown_nodes"], json!([{"name": "stranger", "ready": "True", "kubelet_version": "v1.34.4"}]));
    }
}

/// The table: one line per worker with its columns, the unknown Node, the summary.
#[tokio::test]
async fn table_for_people() {
    let c = Cluster::start(Authz::AlwaysAllow, &[Worker::new("worker-4").address("10.0.0.14")]);
    fleet(&c).await;
    let (facts, secrets) = (c.facts.to_str().unwrap(), c.secrets.to_str().unwrap());
    let (code, out, err) = c.run(&["status", "--cluster", facts, "--secrets", secrets, "--as-of", AS_OF]);
    assert_eq!(code, 3, "{err}");
    let rows: BTreeMap<&str, Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|r| r.len() == 11)
        .map(|r| (r[0], r))
        .collect();
    let row = |n: &str| rows.get(n).unwrap_or_else(|| panic!("no row {n}:\n{out}")).join(" ");
    assert_eq!(row("NODE"), "NODE JOINED READY HEARTBEAT VERSION PLAN CLIENT SERVING PROXY DRIFT PROBLEMS");
    assert_eq!(row("worker-1"), "worker-1 yes True 30s v1.34.4 ok 365d 182d - none ok");
    assert_eq!(
        row("worker-2"),
        "worker-2 yes False 30s v1.33.2! differs 10d! expired invalid locks,args \
         not-ready,version-mismatch,plan-mismatch,client-expires-soon,serving-expired,bad-annotation:mk8s-worker.io/proxy-not-after,drift"
    );
    assert_eq!(row("worker-3"), "worker-3 no - - - - - - - - not-joined");
    assert_eq!(row("worker-4"), "worker-4 yes True 20m v1.34.4 - - - - - heartbeat-stale");
    assert!(out.contains("\nNodes not in the facts:\n  stranger  ready=True  v1.34.4\n"), "{out}");
    assert!(out.ends_with("\n4 worker(s), 3 joined, 3 need attention; 1 Node(s) not in the facts\n"), "{out}");
}

/// A healthy fleet exits 0; without --secrets plans are not compared (and say
/// so), which alone is no problem.
#[tokio::test]
async fn a_healthy_fleet_exits_zero() {
    let c = Cluster::start(Authz::RbacNode, &[]);
    fleet(&c).await;
    let api: Api<Node> = Api::all(Cluster::client(&c.admin).await);
    for gone in ["worker-2", "worker-4"] {
        api.delete(gone, &Default::default()).await.unwrap();
    }
    let healthy = FactsYaml::new("ctl")
        .channel("1.34/stable")
        .ca_file("ca.crt")
        .control_plane("cp-1", "10.0.0.2")
        .lb_builtin()
        .worker(Worker::new("worker-1").address("10.0.0.11"))
        .worker(Worker::new("stranger"));
    let path = c.dir().join("healthy.yaml");
    fs::write(&path, healthy.yaml()).unwrap();
    let (code, out, err) = c.run(&["status", "--cluster", path.to_str().unwrap(), "--as-of", AS_OF]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.ends_with(
            "2 worker(s), 2 joined, 0 need attention; 0 Node(s) not in the facts; plans not compared (no --secrets)\n"
        ),
        "{out}"
    );
    // Later, the same fleet: the serving certificate now ends within 30 days.
    let (code, out, _) =
        c.run(&["status", "--cluster", path.to_str().unwrap(), "--as-of", "2027-05-20T12:00:00Z", "--json"]);
    assert_eq!(code, 3, "{out}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(by_name(&doc)["worker-1"]["problems"], json!(["heartbeat-stale", "serving-expires-soon"]));
}

/// Under RBAC, `list` on `nodes` (docs/mk8s-ctl.md) is all `status` needs; without
/// it the apiserver refuses and the command exits 2.
#[tokio::test]
async fn the_documented_rbac_is_enough_and_needed() {
    let c = Cluster::start(Authz::RbacNode, &[Worker::new("worker-4").address("10.0.0.14")]);
    fleet(&c).await;
    let kubeconfig = c.kubeconfig_for("reader", &c.cp.ca.client("mk8s-status", &[]));
    let args = ["status", "--cluster", c.facts.to_str().unwrap(), "--json", "--as-of", AS_OF];
    let (code, _, err) = run_with(&kubeconfig, &args);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot list Nodes") && err.contains("forbidden"), "{err}");
    rbac::bind(&c, "mk8s-status", &rbac::status_rules()).await;
    let (code, out, err) = run_with(&kubeconfig, &args);
    assert_eq!(code, 3, "{err}");
    let (_, admin, _) = c.run(&args);
    assert_eq!(out, admin, "the same report as the admin's");
}
