//! `mk8s-ctl status` on a fleet of 100 simulated workers, measured beside `kubectl
//! get nodes -o json` against the same real kube-apiserver in the same run (run
//! through `bench/ctl-status.sh`, which builds both sides as shipped).
//!
//! Each Node is created through the API with a Ready status and the annotations a
//! worker's agent writes; the facts list the same 100 workers, so every Node is
//! compared with a rendered plan. Runs alternate between the commands, so a change
//! in the machine's load hits all of them alike. Prints min / median / max wall
//! time per command, and the machine.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use mk8s_bootstrap::annotations as ann;
use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::upstream::{ControlPlane, Options};

const WORKERS: usize = 100;
const RUNS: usize = 20;

fn name(i: usize) -> String {
    format!("worker-{i:03}")
}

async fn create_nodes(kubeconfig: &std::path::Path, plans: &BTreeMap<String, String>) {
    let client = mk8s_ctl::client::connect(Some(kubeconfig)).await.unwrap();
    let api: Api<Node> = Api::all(client);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    for i in 0..WORKERS {
        let n = name(i);
        let annotations: BTreeMap<String, String> = [
            (ann::PLAN_SHA256, plans[&n].as_str()),
            (ann::AGENT_VERSION, "0.1.0"),
            (ann::CLIENT_NOT_AFTER, "2036-01-01T00:00:00Z"),
            (ann::SERVING_NOT_AFTER, "2036-01-01T00:00:00Z"),
            (ann::PROXY_NOT_AFTER, "2036-01-01T00:00:00Z"),
            (ann::DRIFT, ""),
            (ann::CHECKED_AT, now.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let meta = ObjectMeta { name: Some(n.clone()), annotations: Some(annotations), ..Default::default() };
        api.create(&PostParams::default(), &Node { metadata: meta, ..Default::default() }).await.unwrap();
        let status = serde_json::json!({"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "nodeInfo": {"kubeletVersion": "v1.34.4", "machineID": "", "systemUUID": "", "bootID": "",
                         "kernelVersion": "", "osImage": "", "containerRuntimeVersion": "", "kubeProxyVersion": "",
                         "operatingSystem": "linux", "architecture": "amd64"}}});
        api.patch_status(&n, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    }
}

/// Run `cmd` once; its wall time. Panics on a failed run, with its output.
fn time(cmd: &mut Command, ok: &[i32]) -> Duration {
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
    let code = out.status.code().unwrap_or(-1);
    assert!(ok.contains(&code), "{cmd:?}: exit {code}\n{}", String::from_utf8_lossy(&out.stderr));
    took
}

fn summary(label: &str, mut t: Vec<Duration>) {
    t.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {label:<44} min {:7.1} ms  median {:7.1} ms  max {:7.1} ms",
        ms(t[0]),
        ms(t[t.len() / 2]),
        ms(t[t.len() - 1])
    );
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: u64 = mem.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0);
    let kubectl = Command::new(mk8s_testkit::tools::require("kubectl")).args(["version", "--client"]).output().unwrap();
    let kubectl = String::from_utf8_lossy(&kubectl.stdout).lines().next().unwrap_or("").to_string();
    format!("{}, {cores} cores, {} GiB; {kubectl}", std::env::consts::ARCH, kib / 1_048_576)
}

fn main() {
    let kubectl = mk8s_testkit::tools::require("kubectl");
    let mut o = Options::new(34, Authz::AlwaysAllow);
    o.ips.truncate(1);
    let cp = ControlPlane::start(o);
    let dir = cp.dir.path();
    fs::write(dir.join("ca.crt"), &cp.ca.cert_pem).unwrap();
    let fleet = |x509: bool| {
        let f = FactsYaml::new("bench").channel("1.34/stable").ca_file("ca.crt").control_plane("cp-1", "10.0.0.2");
        let f = if x509 { f.auth_x509("2026-01-01", 3650) } else { f.auth_token() };
        f.lb_builtin().workers((0..WORKERS).map(|i| Worker::new(&name(i)).address(&format!("10.1.0.{}", 10 + i))))
    };
    let facts = fleet(true);
    let facts_path = dir.join("cluster.yaml");
    fs::write(&facts_path, facts.yaml()).unwrap();
    // The same fleet with token authentication: rendering signs nothing. The
    // Nodes report the x509 plans, so every plan differs there (exit 3).
    let token_path = dir.join("token.yaml");
    fs::write(&token_path, fleet(false).yaml()).unwrap();
    let secrets_path = dir.join("secrets.yaml");
    let mut secrets = fs::read_to_string(mk8s_testkit::workspace().join("fixtures/seed/secrets.yaml")).unwrap();
    secrets.push_str(&format!("ca-key: {}\n", serde_json::to_string(&cp.ca.key_pem).unwrap()));
    fs::write(&secrets_path, &secrets).unwrap();
    let text = facts.yaml();
    let model = mk8s_gen::load(&text, dir).valid("facts", &text).unwrap();
    let mut parsed = mk8s_gen::secrets::Secrets::parse(&secrets).unwrap();
    parsed.attach_ca_key(&model.ca).unwrap();
    let plans = mk8s_ctl::plans::plan_hashes(&model, &parsed).unwrap();
    let admin = cp.admin_kubeconfig(0);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(create_nodes(&admin, &plans));

    let bin = env!("CARGO_BIN_EXE_mk8s-ctl");
    let ctl = |facts: &std::path::Path, extra: &[&str]| {
        let mut c = Command::new(bin);
        c.arg("--kubeconfig").arg(&admin).args(["status", "-q", "--cluster"]).arg(facts).args(extra);
        c
    };
    let s = secrets_path.to_str().unwrap();
    let mut cmds: Vec<(&str, Command, &[i32])> = vec![
        ("mk8s-ctl status --secrets --json (x509)", ctl(&facts_path, &["--secrets", s, "--json"]), &[0]),
        ("mk8s-ctl status --secrets (x509, table)", ctl(&facts_path, &["--secrets", s]), &[0]),
        ("mk8s-ctl status --secrets --json (token)", ctl(&token_path, &["--secrets", s, "--json"]), &[3]),
        ("mk8s-ctl status --json (no plans)", ctl(&facts_path, &["--json"]), &[0]),
        (
            "kubectl get nodes -o json",
            {
                let mut c = Command::new(&kubectl);
                c.arg("--kubeconfig").arg(&admin).args(["get", "nodes", "-o", "json"]);
                c
            },
            &[0],
        ),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cmds.len()];
    // One warm-up run each: the page cache, the apiserver's watch cache.
    for (_, cmd, ok) in cmds.iter_mut() {
        time(cmd, ok);
    }
    for _ in 0..RUNS {
        for ((_, cmd, ok), t) in cmds.iter_mut().zip(&mut times) {
            t.push(time(cmd, ok));
        }
    }
    println!("machine: {}", machine());
    println!("{WORKERS} Nodes, {RUNS} runs each (alternating), real kube-apiserver v1.34.4 on this machine:");
    for ((label, _, _), t) in cmds.iter().zip(times) {
        summary(label, t);
    }
}
