//! The kubelet: the model's, or the real program.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::kubeconfig::{load_kubeconfig, Kubeconfig};
use super::{park, spawn_real, write_status};
use crate::node_model::state::{unix_ms, Ctx};
use crate::node_model::{rfc3339, LOG_BODY};
use crate::pki::{Ca, Leaf};
use crate::tls::{server_config, Handler, Request, Response, TlsServer};

/// The kubelet: reads `args/kubelet` at start; registers its Node through the
/// kubeconfig's server (the node-local load balancer, or the local control plane
/// at install time) and heartbeats `Ready` with `lastHeartbeatTime`; serves its
/// own TLS endpoint with `--cert-dir`'s `kubelet-server-current.pem` under
/// `--rotate-server-certificates`, else `cert-dir/kubelet.crt` if present, else a self-signed
/// certificate it writes there (kubernetes cmd/kubelet/app/server.go
/// `InitializeTLS`: `kubelet.crt`/`kubelet.key` in `--cert-dir`, generated only
/// when they cannot be read).
pub(in crate::node_model) fn kubelet(ctx: Arc<Ctx>) {
    let args = ctx.args("kubelet");
    let name = args.get("--hostname-override").cloned().unwrap_or_else(|| ctx.s("hostname").to_lowercase());
    let node_ip = args.get("--node-ip").cloned().unwrap_or_else(|| ctx.s("nodeIP"));
    let port = ctx.n("kubeletPort");
    serve(&ctx, &args, &name, &node_ip, port);
    let mut node = NodeSpec::new(&args, name, node_ip, port);
    // What a kubelet of this release reports (`nodeInfo.kubeletVersion`).
    node.info = json!({"kubeletVersion": format!("v1.{}.0", ctx.minor)});
    let kubeconfig = args.get("--kubeconfig").cloned().unwrap_or_default();
    let heartbeat = Duration::from_millis(ctx.n("heartbeatMs").max(100));
    std::thread::spawn(move || register_and_heartbeat(&ctx, &node, &kubeconfig, heartbeat));
}

/// The serving endpoint, on its own thread for the life of the process.
fn serve(ctx: &Arc<Ctx>, args: &BTreeMap<String, String>, name: &str, node_ip: &str, port: u64) {
    // Named files, when given, are the serving pair, and nothing is generated
    // (`InitializeTLS`: only when both flags are empty does the kubelet look in,
    // and write to, --cert-dir; a named pair it cannot load stops the real
    // kubelet; the model records it and serves nothing).
    let named = (args.get("--tls-cert-file"), args.get("--tls-private-key-file"));
    let cert_dir = PathBuf::from(args.get("--cert-dir").cloned().unwrap_or_default());
    if args.get("--rotate-server-certificates").is_some_and(|v| v.is_empty() || v == "true") && named.0.is_none() {
        // The serving store only (`InitializeTLS` names no file; the store's
        // `kubelet-server-current.pem` holds certificate and key). The model
        // renews nothing: a missing pair is recorded, and nothing is served.
        let pair = cert_dir.join("kubelet-server-current.pem");
        let Some(leaf) = fs::read_to_string(&pair).ok().and_then(|t| Leaf::from_pem(&t, &t)) else {
            ctx.event(&format!("kubelet: no serving pair in {}", pair.display()));
            return;
        };
        return serve_with(ctx, leaf, node_ip, port);
    }
    if let (Some(crt), Some(key)) = named {
        let leaf = match (fs::read_to_string(crt), fs::read_to_string(key)) {
            (Ok(c), Ok(k)) => Leaf::from_pem(&c, &k),
            _ => None,
        };
        let Some(leaf) = leaf else {
            ctx.event(&format!("kubelet: cannot load the serving pair {crt} {key}"));
            return;
        };
        return serve_with(ctx, leaf, node_ip, port);
    }
    let (crt, key) = (cert_dir.join("kubelet.crt"), cert_dir.join("kubelet.key"));
    let leaf = match (fs::read_to_string(&crt), fs::read_to_string(&key)) {
        (Ok(c), Ok(k)) => Leaf::from_pem(&c, &k),
        _ => None,
    };
    let leaf = leaf.unwrap_or_else(|| {
        let ca = Ca::new(&format!("{name}-ca@{}", unix_ms() / 1000));
        let l = ca.serving(&format!("{name}@{}", unix_ms() / 1000), &[], &[name]);
        // Recorded first: whoever sees the file can tell who wrote it.
        ctx.event("kubelet: generated a self-signed serving certificate");
        let _ = fs::write(&crt, &l.cert_pem);
        let _ = fs::write(&key, &l.key_pem);
        l
    });
    serve_with(ctx, leaf, node_ip, port);
}

fn serve_with(ctx: &Arc<Ctx>, leaf: Leaf, node_ip: &str, port: u64) {
    let handler: Handler = Arc::new(|req: &Request| {
        if req.method == "GET" && req.path.starts_with("/containerLogs/") {
            Response::text(200, LOG_BODY)
        } else if req.path == "/healthz" {
            Response::text(200, "ok")
        } else {
            Response::text(404, "404 page not found")
        }
    });
    let ctx2 = ctx.clone();
    let config = server_config(&leaf, false);
    let addr = format!("{node_ip}:{port}");
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(10);
        let server = loop {
            match TlsServer::start(&addr, config.clone(), handler.clone()) {
                Ok(s) => break Some(s),
                Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => {
                    ctx2.event(&format!("kubelet: cannot listen on {addr}: {e}"));
                    break None;
                }
            }
        };
        // Keep serving for the life of the process.
        let _server = server;
        park();
    });
}

/// The Node the kubelet registers: its name, labels, taints, addresses and port.
struct NodeSpec {
    name: String,
    labels: serde_json::Map<String, Value>,
    taints: Vec<Value>,
    addresses: Value,
    endpoints: Value,
    info: Value,
}

impl NodeSpec {
    fn new(args: &BTreeMap<String, String>, name: String, node_ip: String, port: u64) -> NodeSpec {
        let mut labels: serde_json::Map<String, Value> = args
            .get("--node-labels")
            .map(|l| {
                l.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), Value::from(v))).collect()
            })
            .unwrap_or_default();
        let taints: Vec<Value> = args
            .get("--register-with-taints")
            .map(|t| {
                t.split(',')
                    .filter_map(|t| {
                        let (kv, effect) = t.split_once(':')?;
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        Some(json!({"key": k, "value": v, "effect": effect}))
                    })
                    .collect()
            })
            .unwrap_or_default();
        labels.insert("kubernetes.io/hostname".into(), Value::from(name.clone()));
        let addresses = json!([{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": name}]);
        let endpoints = json!({"kubeletEndpoint": {"Port": port}});
        NodeSpec { name, labels, taints, addresses, endpoints, info: json!({}) }
    }

    /// Register the Node (`POST`), or heartbeat it (`PATCH .../status`), Ready at `now`.
    fn send(&self, k: &Kubeconfig, registered: bool, now: &str) -> Result<crate::tls::Fetched, String> {
        let (name, addresses, endpoints, info) = (&self.name, &self.addresses, &self.endpoints, &self.info);
        let ready = json!([{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}]);
        if registered {
            let body = json!({"status": {"conditions": ready, "addresses": addresses, "daemonEndpoints": endpoints, "nodeInfo": info}});
            k.call("PATCH", &format!("/api/v1/nodes/{name}/status"), Some(&body.to_string()))
        } else {
            let body = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": self.labels}, "spec": {"taints": self.taints}, "status": {"conditions": ready, "addresses": addresses, "daemonEndpoints": endpoints, "nodeInfo": info}});
            k.call("POST", "/api/v1/nodes", Some(&body.to_string()))
        }
    }
}

/// Registration, then a heartbeat every `heartbeat`, through `--kubeconfig`;
/// each result in `kubelet.json`.
fn register_and_heartbeat(ctx: &Ctx, node: &NodeSpec, kubeconfig: &str, heartbeat: Duration) {
    let name = &node.name;
    let mut registered = false;
    let mut kc: Option<Kubeconfig> = None;
    loop {
        if kc.is_none() {
            match load_kubeconfig(ctx, kubeconfig) {
                Ok(k) => kc = Some(k),
                Err(e) => write_status(ctx, "kubelet.json", json!({"ok": false, "detail": e})),
            }
        }
        if let Some(k) = &kc {
            let now = rfc3339(SystemTime::now());
            let (ok, detail) = match node.send(k, registered, &now) {
                Ok(r) if (200..300).contains(&r.status) || (!registered && r.status == 409) => {
                    if !registered {
                        registered = true;
                        ctx.event(&format!("kubelet: registered node {name} with {}", k.server));
                        // 409: it exists; heartbeat it at once.
                        if r.status == 409 {
                            continue;
                        }
                    }
                    (true, format!("{} {}", r.status, k.server))
                }
                Ok(r) => (false, format!("{} from {}: {}", r.status, k.server, r.body)),
                Err(e) => (false, e),
            };
            write_status(ctx, "kubelet.json", json!({"ok": ok, "server": k.server, "detail": detail, "at": now}));
        }
        std::thread::sleep(heartbeat);
    }
}

/// The kubelet's command line as kubelite passes `args/kubelet` (the wrapper's
/// shell word splitting and quote removal, `${SNAP_DATA}` and `${SNAP_COMMON}`
/// expanded), with [`RealPrograms`]'s changes.
pub fn real_kubelet_args(ctx_text: &str, expand: impl Fn(&str) -> String, real: &Value, port: u64) -> Vec<String> {
    const OURS: &[&str] =
        &["--port", "--cgroup-root", "--cgroup-driver", "--healthz-port", "--make-iptables-util-chains"];
    let mut args = super::wrapper_args(ctx_text, expand, OURS);
    args.push(format!("--cgroup-root=/{}", real["cgroupRoot"].as_str().unwrap_or("mk8s-test")));
    args.push("--cgroup-driver=cgroupfs".into());
    args.push(format!("--port={port}"));
    args.push("--healthz-port=0".into());
    args.push("--make-iptables-util-chains=false".into());
    args
}

pub(super) fn real_kubelet(ctx: &Arc<Ctx>) -> Option<std::process::Child> {
    let real = &ctx.state["real"];
    let text = fs::read_to_string(ctx.snap_data("args/kubelet")).unwrap_or_default();
    let mut args = real_kubelet_args(&text, |v| ctx.expand(v), real, ctx.n("kubeletPort"));
    // A kubeconfig naming its certificate by the node's absolute path is read by
    // the host's kubelet from a copy with those paths under the root.
    for a in args.iter_mut().filter(|a| a.starts_with("--kubeconfig=")) {
        *a = format!("--kubeconfig={}", ctx.host_kubeconfig(&a["--kubeconfig=".len()..]));
    }
    ctx.event(&format!("kubelet: the real kubelet {}", args.join(" ")));
    spawn_real(ctx, "kubelet", Command::new(real["kubelet"].as_str().unwrap_or("kubelet")).args(&args))
}
