//! The binary's command line.

use std::path::Path;

use super::daemons::daemon;
use super::join_py::redact_connection;
use super::state::Ctx;

/// The binary's main: `mk8s-node-model --state DIR (snap|systemctl|snapctl|daemon|model) ARGS...`.
pub fn cli_main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some("--state"), Some(dir)) = (args.first().map(String::as_str), args.get(1)) else {
        eprintln!("usage: mk8s-node-model --state DIR (snap|systemctl|snapctl|daemon|model) ARGS...");
        return 64;
    };
    let mut ctx = Ctx::load(Path::new(dir));
    let (cmd, rest) = (args.get(2).map(String::as_str).unwrap_or(""), &args[3.min(args.len())..]);
    if matches!(cmd, "snap" | "systemctl" | "snapctl") {
        ctx.append("calls.log", &format!("{cmd} {}", rest.join(" ")));
    }
    if cmd == "microk8s" {
        // Never the token in the log: `join IP:PORT/<token>/CHECK`.
        let shown: Vec<String> = rest.iter().map(|a| redact_connection(a)).collect();
        ctx.append("calls.log", &format!("microk8s {}", shown.join(" ")));
    }
    match cmd {
        "microk8s" => ctx.microk8s(rest),
        "snap" => ctx.snap(rest),
        "systemctl" => ctx.systemctl(rest),
        "snapctl" => ctx.snapctl(rest),
        "model" => match rest.first().map(String::as_str) {
            Some("refresh") => {
                ctx.append("calls.log", "snap refresh microk8s");
                ctx.refresh();
                0
            }
            Some("reboot") => {
                ctx.append("calls.log", "reboot");
                ctx.reboot();
                0
            }
            _ => 64,
        },
        "daemon" => {
            let unit = rest.first().cloned().unwrap_or_default();
            daemon(ctx, &unit, rest.iter().any(|a| a == "--restarted"))
        }
        _ => {
            eprintln!("mk8s-node-model: unknown command {cmd:?}");
            64
        }
    }
}
