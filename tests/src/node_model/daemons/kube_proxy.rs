//! kube-proxy: the model's, or the real program.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::kubeconfig::load_kubeconfig;
use super::{spawn_real, write_status};
use crate::node_model::state::Ctx;

/// kube-proxy: loads `--kubeconfig` from `args/kube-proxy` and reads its Node
/// (`GET /api/v1/nodes/NAME`) through that server until it succeeds.
pub(in crate::node_model) fn kube_proxy(ctx: Arc<Ctx>) {
    std::thread::spawn(move || {
        let args = ctx.args("kube-proxy");
        let name = args.get("--hostname-override").cloned().unwrap_or_else(|| ctx.s("hostname").to_lowercase());
        let path = args.get("--kubeconfig").cloned().unwrap_or_default();
        loop {
            let r = load_kubeconfig(&ctx, &path).and_then(|k| {
                k.call("GET", &format!("/api/v1/nodes/{name}"), None).map(|r| (k.server.clone(), r.status))
            });
            let done = matches!(r, Ok((_, 200)));
            let v = match r {
                Ok((server, status)) => json!({"ok": status == 200, "status": status, "server": server}),
                Err(e) => json!({"ok": false, "detail": e}),
            };
            write_status(&ctx, "kube-proxy.json", v);
            if done {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

/// kube-proxy as kubelite (or 1.20's proxy daemon) starts it: the real program
/// when the state names one, else the model's. A real kube-proxy that exits takes
/// its daemon with it, as a kube-proxy failure ends kubelite, and the unit's
/// restart condition starts it again.
pub(in crate::node_model) fn start_kube_proxy(ctx: &Arc<Ctx>, unit: &str) {
    let Some(program) = ctx.state["realKubeProxy"].as_str().map(str::to_string) else {
        return kube_proxy(ctx.clone());
    };
    let text = std::fs::read_to_string(ctx.snap_data("args/kube-proxy")).unwrap_or_default();
    let args = real_kube_proxy_args(&text, |v| ctx.expand(v));
    ctx.event(&format!("kube-proxy: the real kube-proxy {}", args.join(" ")));
    let Some(mut child) = spawn_real(ctx, "kube-proxy", std::process::Command::new(program).args(&args)) else {
        return;
    };
    let (ctx, unit) = (ctx.clone(), unit.to_string());
    std::thread::spawn(move || {
        let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        ctx.event(&format!("{unit}: kube-proxy exited ({status}); the daemon exits with it"));
        if !ctx.systemd() {
            ctx.spawn_daemon(&unit, true);
        }
        std::process::exit(1);
    });
}

/// Flags that leave the machine's sysctls as they are. kube-proxy otherwise sets
/// `nf_conntrack_max` and the conntrack hash size, which Linux lets only the
/// machine's initial network namespace write (kubernetes v1.34.4
/// cmd/kube-proxy/app/conntrack.go `SetMax`, citing nf_conntrack_core.c), the
/// conntrack TCP timeouts (`setupConntrack`) and, for NodePorts on localhost,
/// `route_localnet` (pkg/proxy/iptables/proxier.go); systemd-nspawn mounts the
/// boot tier's container's `/proc/sys` read-only, where a worker VM lets root
/// write them. Each leaves its sysctl as it is (the last by not offering
/// NodePorts on localhost, which the worker of a MicroK8s cluster does not need).
const SYSCTLS_AS_THEY_ARE: &[&str] = &[
    "--conntrack-max-per-core=0",
    "--conntrack-tcp-timeout-established=0s",
    "--conntrack-tcp-timeout-close-wait=0s",
    "--iptables-localhost-nodeports=false",
];

/// kube-proxy's command line from `args/kube-proxy` as the wrapper passes it
/// ([`super::wrapper_args`]), with [`SYSCTLS_AS_THEY_ARE`] last.
pub fn real_kube_proxy_args(text: &str, expand: impl Fn(&str) -> String) -> Vec<String> {
    let replaced: Vec<&str> = SYSCTLS_AS_THEY_ARE.iter().filter_map(|d| d.split_once('=')).map(|(k, _)| k).collect();
    let mut args = super::wrapper_args(text, expand, &replaced);
    args.extend(SYSCTLS_AS_THEY_ARE.iter().map(|d| d.to_string()));
    args
}
