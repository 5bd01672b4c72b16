//! kube-proxy.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::kubeconfig::load_kubeconfig;
use super::write_status;
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
