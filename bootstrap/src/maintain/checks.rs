//! The checks of `mk8s-bootstrap maintain`, one table: each has a stable name (in
//! the status file and the `drift` annotation), a verification that lists what
//! does not hold, and, when we own what it checks, a repair. Verifications reuse
//! the join's own "already holds?" answers (`phases::control_plane_off`,
//! `text::args_missing` beside the install phase's merge).

use std::fs;
use std::io;

use super::certs::{expiries, Expiries};
use super::kubeconfig::{ca_pins, servers, set_servers, KUBECONFIGS};
use crate::api::{Api, PortHolder};
use crate::fs::write_atomic;
use crate::node::Node;
use crate::phases::planned::{self, PRISTINE_DIR};
use crate::phases::{control_plane_off, install};
use crate::plan::{Credential, JoinPlan, REFRESH_HOOK_PATH};
use crate::text::args_missing;

/// What a check sees: the node, the plan and the time (Unix seconds).
pub struct Cx<'a> {
    pub node: &'a Node,
    pub plan: &'a JoinPlan,
    pub now: i64,
}

/// What repairs changed, so the services reading it restart once, at the end.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Something kubelite (kubelet, kube-proxy) reads: the plan's `start_services`
    /// restart.
    pub worker: bool,
    /// A file of the node-local balancer: its unit restarts.
    pub balancer: bool,
    /// A unit file: `systemctl daemon-reload` first.
    pub units: bool,
    /// What the repair changed (or found it could not), one line each, for the
    /// log and the status file's `repaired`.
    pub changed: Vec<String>,
}

pub struct Check {
    pub name: &'static str,
    /// What does not hold, one line each; empty: the check passes.
    pub verify: fn(&Cx) -> Vec<String>,
    /// Restores what the check found, idempotently; None: not ours to repair.
    pub repair: Option<fn(&Cx, &mut Effects) -> io::Result<()>>,
}

/// Every check, in the order a report lists them.
pub const CHECKS: &[Check] = &[
    Check { name: "locks", verify: locks, repair: Some(repair_locks) },
    Check { name: "control-plane-off", verify: control_plane, repair: Some(repair_control_plane) },
    Check { name: "args", verify: args, repair: Some(repair_args) },
    Check { name: "balancer-files", verify: balancer_files, repair: Some(repair_balancer_files) },
    Check { name: "kubeconfig-server", verify: kubeconfig_server, repair: Some(repair_kubeconfig_server) },
    Check { name: "ca-pin", verify: ca_pin, repair: None },
    Check { name: "refresh-hook", verify: refresh_hook, repair: Some(repair_refresh_hook) },
    Check { name: "certificate-expiry", verify: expiry, repair: None },
];

fn locks(cx: &Cx) -> Vec<String> {
    control_plane_off::missing_locks(cx.node, cx.plan).iter().map(|l| format!("var/lock/{l} is missing")).collect()
}

fn repair_locks(cx: &Cx, fx: &mut Effects) -> io::Result<()> {
    for lock in control_plane_off::create_locks(cx.node, cx.plan)? {
        // The wrappers read the locks when kubelite (or a daemon) starts.
        fx.worker = true;
        fx.changed.push(format!("created var/lock/{lock}"));
    }
    Ok(())
}

/// The control-plane units are stopped and disabled, and nothing but the cluster
/// answers on the node-local balancer's port (the node's own apiserver would
/// present the node-local CA's certificate).
fn control_plane(cx: &Cx) -> Vec<String> {
    let mut on = control_plane_off::units_on(cx.node, cx.plan);
    if let Some(listen) = local_apiserver_port(cx.plan) {
        if let Some(e) = foreign_holder(cx, &listen) {
            on.push(format!("{listen} {FOREIGN} (a local control plane?): {e}"));
        }
    }
    on
}

/// What a server that is not the cluster presents on `listen`, unless the cluster
/// answers there within 3 s. A balancer that has just (re)started, traefik before
/// its configuration loads, presents its own certificate for a moment, then passes
/// the cluster through; a local control plane presents the node-local CA's, or
/// nothing while it restarts, but never the cluster's.
fn foreign_holder(cx: &Cx, listen: &str) -> Option<String> {
    let probe = || {
        Api::for_node(&cx.plan.ca.pem, "", &format!("https://{listen}"), &Credential::Removed, "probe")
            .map(|p| p.holder())
    };
    let Ok(PortHolder::Foreign(first)) = probe() else { return None };
    for _ in 0..6 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if let Ok(PortHolder::Cluster(_)) = probe() {
            return None;
        }
    }
    Some(first)
}

/// Where this node's own apiserver would listen: the node-local balancer's
/// address, or loopback on the control planes' port when the balancer is
/// elsewhere (every MicroK8s node runs its apiserver on the same `--secure-port`).
fn local_apiserver_port(plan: &JoinPlan) -> Option<String> {
    if let Some((_, listen)) = plan.load_balancer.local() {
        return Some(listen.to_string());
    }
    let port = plan.apiserver.endpoints.first()?.rsplit_once(':')?.1;
    Some(format!("127.0.0.1:{port}"))
}

fn repair_control_plane(cx: &Cx, fx: &mut Effects) -> io::Result<()> {
    let m = &cx.plan.microk8s;
    let units: Vec<String> = m.stop_services.iter().filter(|u| !m.start_services.contains(u)).cloned().collect();
    control_plane_off::stop_units(cx.node, &units).map_err(|e| match e {
        crate::phases::StepError::Fatal(m) | crate::phases::StepError::Retryable(m) => io::Error::other(m),
    })?;
    fx.changed.push(format!("stopped and disabled {}", units.join(", ")));
    // Still a foreign server on the port: the control plane inside kubelite (its
    // locks were gone), which ends when kubelite restarts with them.
    if control_plane(cx).iter().any(|p| p.contains(FOREIGN)) {
        fx.worker = true;
    }
    Ok(())
}

const FOREIGN: &str = "answers with a certificate not from the cluster CA";

const ARGS: &[&str] = &["args/kubelet", "args/kube-proxy"];

fn args_of<'p>(plan: &'p JoinPlan, file: &str) -> &'p [String] {
    if file == "args/kubelet" {
        &plan.kubelet_args
    } else {
        &plan.kube_proxy_args
    }
}

fn args(cx: &Cx) -> Vec<String> {
    let mut out = Vec::new();
    for file in ARGS {
        let text = fs::read_to_string(cx.node.snap_data(file)).unwrap_or_default();
        out.extend(args_missing(&text, args_of(cx.plan, file)).into_iter().map(|m| format!("{file}: {m}")));
    }
    out
}

fn repair_args(cx: &Cx, fx: &mut Effects) -> io::Result<()> {
    // The install phase's merge: our flags replaced, every other line kept.
    if install::apply_args(cx.node, cx.plan)? > 0 {
        fx.worker = true;
        fx.changed.push("put the plan's lines back into args/kubelet and args/kube-proxy".into());
    }
    Ok(())
}

fn balancer_files(cx: &Cx) -> Vec<String> {
    cx.plan.balancer_files.iter().filter_map(|f| planned::file_drift(cx.node, f)).collect()
}

fn repair_balancer_files(cx: &Cx, fx: &mut Effects) -> io::Result<()> {
    for f in cx.plan.balancer_files.iter().filter(|f| planned::file_drift(cx.node, f).is_some()) {
        match planned::pristine(cx.node, f) {
            Some(data) => {
                write_atomic(&cx.node.path(&f.path), &data, f.mode)?;
                fx.balancer = true;
                fx.units |= f.path.starts_with("/etc/systemd/");
                fx.changed.push(format!("restored {}", f.path));
            }
            // Never seen as planned on this node: nothing to restore it from.
            None => fx.changed.push(format!("cannot restore {}: no verified copy in {PRISTINE_DIR}", f.path)),
        }
    }
    Ok(())
}

/// `get_traefik_port()`'s answer when the template does not say.
const TRAEFIK_TEMPLATE_DEFAULT_PORT: u16 = 16443;

/// The server the kubeconfigs name: the plan's; with `auth: microk8s-join` the one
/// MicroK8s's join wrote them for, its own proxy on the port of the snap's
/// traefik template (`get_traefik_port()`, 1.30:scripts/cluster/join.py), which
/// the plan only predicts (16443 unless the node's template says otherwise).
fn expected_server(cx: &Cx) -> String {
    if cx.plan.join.is_none() {
        return cx.plan.apiserver.url.clone();
    }
    let template = fs::read_to_string(cx.node.snap_data("args/traefik/traefik-template.yaml")).unwrap_or_default();
    let port = traefik_template_port(&template).unwrap_or(TRAEFIK_TEMPLATE_DEFAULT_PORT);
    format!("https://127.0.0.1:{port}")
}

/// `entryPoints.apiserver.address` of the snap's traefik template (`":16443"`),
/// read as MicroK8s reads it; None when the template does not say.
fn traefik_template_port(template: &str) -> Option<u16> {
    let mut in_apiserver = false;
    for line in template.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_suffix(':') {
            in_apiserver = name == "apiserver";
        } else if in_apiserver {
            if let Some(v) = trimmed.strip_prefix("address:") {
                return v.trim().trim_matches('"').trim_matches('\'').trim_start_matches(':').parse().ok();
            }
        }
    }
    None
}

fn kubeconfig_server(cx: &Cx) -> Vec<String> {
    let expected = expected_server(cx);
    let mut out = Vec::new();
    for rel in KUBECONFIGS {
        match servers(cx.node, rel) {
            Ok(s) if s.is_empty() => out.push(format!("{rel} names no server")),
            Ok(s) => {
                out.extend(s.iter().filter(|s| **s != expected).map(|s| format!("{rel}: server {s}, not {expected}")))
            }
            Err(e) => out.push(e),
        }
    }
    out
}

fn repair_kubeconfig_server(cx: &Cx, fx: &mut Effects) -> io::Result<()> {
    let expected = expected_server(cx);
    for rel in KUBECONFIGS {
        if set_servers(cx.node, rel, &expected)? {
            fx.worker = true;
            fx.changed.push(format!("{rel}: server set back to {expected}"));
        }
    }
    Ok(())
}

/// Every kubeconfig trusts the plan's CA, and only it.
fn ca_pin(cx: &Cx) -> Vec<String> {
    let mut out = Vec::new();
    for rel in KUBECONFIGS {
        match ca_pins(cx.node, rel) {
            Ok(pins) if pins.is_empty() => out.push(format!("{rel} names no certificate authority")),
            Ok(pins) => out.extend(
                pins.iter()
                    .filter(|p| *p != &cx.plan.ca.pin)
                    .map(|p| format!("{rel} trusts CA {p}, not {}", cx.plan.ca.pin)),
            ),
            Err(e) => out.push(e),
        }
    }
    out
}

fn refresh_hook(cx: &Cx) -> Vec<String> {
    planned::refresh_hook_drift(cx.node, cx.plan).into_iter().collect()
}

fn repair_refresh_hook(cx: &Cx, fx: &mut Effects) -> io::Result<()> {
    if planned::install_refresh_hook(cx.node, cx.plan)? {
        fx.changed.push(format!("wrote {REFRESH_HOOK_PATH}"));
    }
    Ok(())
}

fn expiry(cx: &Cx) -> Vec<String> {
    let e: Expiries = expiries(cx.node);
    e.near(cx.now)
}

#[cfg(test)]
mod tests {
    use super::traefik_template_port;

    #[test]
    fn the_traefik_templates_port_is_read_as_microk8s_reads_it() {
        // 1.30:microk8s-resources/default-args/traefik/traefik-template.yaml
        let snap = "entryPoints:\n  apiserver:\n    address: \":16443\"\nproviders:\n  file:\n    filename: ${SNAP_DATA}/args/traefik/provider.yaml\n    watch: true\n";
        assert_eq!(traefik_template_port(snap), Some(16443));
        assert_eq!(traefik_template_port(&snap.replace("16443", "26443")), Some(26443));
        assert_eq!(traefik_template_port("entryPoints:\n  apiserver:\n    address: ':7443'\n"), Some(7443));
        // Another entry point's address is not the apiserver's.
        assert_eq!(traefik_template_port("entryPoints:\n  web:\n    address: \":80\"\n"), None);
        assert_eq!(traefik_template_port(""), None);
    }
}
