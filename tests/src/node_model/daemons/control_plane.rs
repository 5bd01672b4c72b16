//! The local control plane of a node installed fresh.

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::node_model::state::Ctx;
use crate::pki::Leaf;
use crate::tls::{server_config, Handler, Request, Response, TlsServer};

/// The local control plane: a real TLS listener with the node's `server.crt`
/// (signed by the node-local CA) on `--secure-port`, bound on 127.0.0.1 and the
/// node address (see the module's deviations). It retries a port that is taken.
pub(super) fn control_plane(ctx: &Arc<Ctx>) -> Vec<TlsServer> {
    let args = ctx.args("kube-apiserver");
    let port = args.get("--secure-port").cloned().unwrap_or_else(|| "16443".into());
    let cert = fs::read_to_string(args.get("--tls-cert-file").cloned().unwrap_or_default()).unwrap_or_default();
    let key = fs::read_to_string(args.get("--tls-private-key-file").cloned().unwrap_or_default()).unwrap_or_default();
    let Some(leaf) = Leaf::from_pem(&cert, &key) else {
        ctx.event("control plane: no server.crt/server.key");
        return Vec::new();
    };
    let config = server_config(&leaf, true);
    let handler: Handler = Arc::new(|req: &Request| match (req.method.as_str(), req.path.as_str()) {
        (_, "/readyz" | "/livez" | "/healthz") => Response::text(200, "ok"),
        ("GET", "/version") => Response::json(200, r#"{"major":"1","gitVersion":"local-control-plane"}"#),
        ("POST", _) => Response::json(201, "{}"),
        _ => Response::json(200, "{}"),
    });
    let mut servers = Vec::new();
    for ip in ["127.0.0.1".to_string(), ctx.s("nodeIP")] {
        let addr = format!("{ip}:{port}");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            match TlsServer::start(&addr, config.clone(), handler.clone()) {
                Ok(s) => {
                    ctx.event(&format!("control plane: listening on {addr}"));
                    servers.push(s);
                    break;
                }
                Err(e) if Instant::now() < end => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    ctx.event(&format!("control plane: cannot listen on {addr}: {e}"));
                    break;
                }
            }
        }
    }
    servers
}
