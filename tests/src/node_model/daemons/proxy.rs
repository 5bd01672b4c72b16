//! MicroK8s's own proxy to the control planes (apiserver-proxy, the snap's traefik).

use std::fs;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::kubeconfig::load_kubeconfig;
use crate::node_model::state::Ctx;

/// MicroK8s's own apiserver proxy: a TCP proxy on 127.0.0.1:<apiserver port> to
/// the first server of `args/traefik/provider.yaml` that accepts the connection
/// (apiserver-proxy: round-robin, skipping a server whose dial fails,
/// cluster-agent 1.30:pkg/proxy/userspace.go:L102-195).
fn provider_servers(ctx: &Ctx) -> Vec<String> {
    let text = fs::read_to_string(ctx.snap_data("args/traefik/provider.yaml")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix("address:"))
        .map(|a| a.trim().trim_matches('"').to_string())
        .collect()
}

/// `args/traefik/provider.yaml` as MicroK8s's join and apiserver-proxy write it.
pub(in crate::node_model) fn provider_yaml(servers: &[String]) -> String {
    let list: String = servers.iter().map(|s| format!("          - address: \"{s}\"\n")).collect();
    format!("tcp:\n  routers:\n    Router-1:\n      rule: \"HostSNI(`*`)\"\n      service: \"kube-apiserver\"\n      tls:\n        passthrough: true\n  services:\n    kube-apiserver:\n      loadBalancer:\n        servers:\n{list}")
}

/// G7, the apiserver-proxy's refresh (1.25+; canonical/microk8s-cluster-agent
/// 1.30:pkg/proxy/apiserver.go L60-92, pkg/proxy/internal/config.go L64-106): every
/// `--refresh-interval` it reads the `kubernetes` Service's endpoints with
/// `--kubeconfig` (the kubelet's credential, through the proxy itself): Endpoints
/// on 1.25-1.33, EndpointSlices with a fallback to Endpoints from 1.34. When the
/// `IP:port` list (the port named https; an IPv6 address unbracketed, as upstream
/// writes it) differs from provider.yaml's, it rewrites provider.yaml and restarts
/// with the new list. A failed read keeps the list.
fn refresh_endpoints(ctx: &Ctx) -> Result<Vec<String>, String> {
    let args = ctx.args("apiserver-proxy");
    let kc = load_kubeconfig(ctx, args.get("--kubeconfig").map(String::as_str).unwrap_or(""))?;
    let endpoints = || -> Result<Vec<String>, String> {
        let r = kc.call("GET", "/api/v1/namespaces/default/endpoints/kubernetes", None)?;
        if r.status != 200 {
            return Err(format!("endpoints: {} {}", r.status, r.body));
        }
        let v: Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for subset in v["subsets"].as_array().into_iter().flatten() {
            let port = subset["ports"].as_array().into_iter().flatten().find(|p| p["name"] == "https");
            let Some(port) = port.and_then(|p| p["port"].as_u64()) else { continue };
            for a in subset["addresses"].as_array().into_iter().flatten() {
                if let Some(ip) = a["ip"].as_str() {
                    out.push(format!("{ip}:{port}"));
                }
            }
        }
        Ok(out)
    };
    if !ctx.row.proxy_reads_endpoint_slices {
        return endpoints();
    }
    let r = kc.call(
        "GET",
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes",
        None,
    )?;
    if r.status != 200 {
        return endpoints();
    }
    let v: Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for slice in v["items"].as_array().into_iter().flatten() {
        let port = slice["ports"].as_array().into_iter().flatten().find(|p| p["name"] == "https");
        let Some(port) = port.and_then(|p| p["port"].as_u64()) else { continue };
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            // 1.34+ writes EndpointSlice addresses bracketed (net.JoinHostPort);
            // the Endpoints fallback above does not (G6).
            for ip in e["addresses"].as_array().into_iter().flatten().filter_map(|a| a.as_str()) {
                out.push(if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") });
            }
        }
    }
    if out.is_empty() {
        return endpoints();
    }
    Ok(out)
}

/// The real apiserver-proxy (1.25+), when the state names the cluster-agent
/// program: the wrapper's steps (`MK 1.30:microk8s-resources/wrappers/run-apiserver-proxy-with-args`):
/// `traefik.yaml` from `traefik-template.yaml` with `${SNAP}`/`${SNAP_DATA}`
/// substituted, then `cluster-agent apiserver-proxy` with the lines of
/// `args/apiserver-proxy`. Two changes, each because the control planes share
/// this machine: the entry point `:PORT` is bound on 127.0.0.1 (the apiservers hold
/// PORT on their own addresses, so the wildcard address cannot be bound), and
/// `--refresh-interval` is the program's minimum, 15 s, instead of the default 30 s.
/// A kubeconfig naming files by the node's absolute paths is read from a copy
/// with those paths under the root, as for the kubelet.
pub(super) fn real_apiserver_proxy(ctx: &Arc<Ctx>) -> Option<std::process::Child> {
    let program = ctx.state["realApiserverProxy"].as_str()?.to_string();
    let snap = ctx.expand("${SNAP_DATA}");
    let template = fs::read_to_string(ctx.snap_data("args/traefik/traefik-template.yaml")).unwrap_or_default();
    let port = ctx.n("apiserverPort");
    let config =
        template.replace("${SNAP_DATA}", &snap).replace(&format!("\":{port}\""), &format!("\"127.0.0.1:{port}\""));
    let _ = fs::write(ctx.snap_data("args/traefik/traefik.yaml"), config);
    let text = fs::read_to_string(ctx.snap_data("args/apiserver-proxy")).unwrap_or_default();
    let mut args: Vec<String> = text.split_whitespace().map(|w| ctx.expand(w.trim_matches('"'))).collect();
    for i in 0..args.len().saturating_sub(1) {
        match args[i].as_str() {
            "--refresh-interval" => args[i + 1] = "15s".into(),
            "--kubeconfig" => args[i + 1] = ctx.host_kubeconfig(&args[i + 1]),
            _ => {}
        }
    }
    ctx.event(&format!("apiserver-proxy: the real cluster-agent apiserver-proxy {}", args.join(" ")));
    super::spawn_real(ctx, "apiserver-proxy", std::process::Command::new(program).arg("apiserver-proxy").args(&args))
}

pub(super) fn tcp_proxy(ctx: &Arc<Ctx>, refreshes: bool) {
    let parse = |list: &[String]| -> Vec<SocketAddr> { list.iter().filter_map(|a| a.parse().ok()).collect() };
    let servers = Arc::new(Mutex::new(parse(&provider_servers(ctx))));
    if refreshes && ctx.row.proxy_is_apiserver_proxy {
        let (ctx, servers) = (ctx.clone(), servers.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(ctx.n("proxyRefreshMs").max(100)));
            match refresh_endpoints(&ctx) {
                Ok(list) if !list.is_empty() && list != provider_servers(&ctx) => {
                    let _ = fs::write(ctx.snap_data("args/traefik/provider.yaml"), provider_yaml(&list));
                    ctx.event(&format!("apiserver-proxy: endpoints changed, restarting with {list:?}"));
                    *servers.lock().unwrap_or_else(|e| e.into_inner()) = parse(&list);
                }
                Ok(_) => {}
                Err(e) => ctx.event(&format!("apiserver-proxy: cannot refresh the endpoints: {e}")),
            }
        });
    }
    let addr = format!("127.0.0.1:{}", ctx.n("apiserverPort"));
    let end = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match std::net::TcpListener::bind(&addr) {
            Ok(l) => break l,
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                ctx.event(&format!("proxy: cannot listen on {addr}: {e}"));
                return;
            }
        }
    };
    ctx.event(&format!("proxy: {addr} -> {:?}", servers.lock().unwrap_or_else(|e| e.into_inner())));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let servers = servers.lock().unwrap_or_else(|e| e.into_inner()).clone();
            std::thread::spawn(move || {
                let Some(upstream) =
                    servers.iter().find_map(|s| std::net::TcpStream::connect_timeout(s, Duration::from_secs(2)).ok())
                else {
                    return;
                };
                let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else { return };
                let (mut c, mut u) = (client, upstream);
                let t = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut u2);
                    let _ = u2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut u, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
                let _ = t.join();
            });
        }
    });
}
