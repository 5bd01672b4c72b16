//! The control-plane nodes and the workers: names and addresses unique across both.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::facts::{RawControlPlane, RawWorker};
use crate::model::{Auth, ControlPlaneNode, Retired, Worker};
use crate::report::Report;
use crate::values::{check_ip, check_kubelet_arg, check_label, check_node_name, required, unique, unique_addr};

/// The largest `workers[].generation`.
pub const MAX_GENERATION: i64 = 1_000_000;
/// The highest `workers[].epoch`.
pub const MAX_EPOCH: i64 = 1_000_000;

/// `NAME.user-data` (the longer fleet file name) must fit in 255 bytes.
pub const MAX_WORKER_NAME: usize = 255 - ".user-data".len();

/// Names and addresses seen so far, each with the path that gave it first.
#[derive(Default)]
pub(super) struct Seen<'a> {
    names: HashMap<&'a str, String>,
    addrs: HashMap<IpAddr, String>,
}

/// `cluster.control-plane`: at least one node, each with a name and an address.
pub(super) fn control_plane<'a>(
    nodes: &'a [RawControlPlane],
    seen: &mut Seen<'a>,
    report: &mut Report,
) -> Vec<ControlPlaneNode> {
    if nodes.is_empty() {
        report.error(
            "$.cluster.control-plane",
            "no control-plane nodes",
            "list every control-plane node with its name and address",
        );
    }
    let mut control_plane = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let base = format!("$.cluster.control-plane[{i}]");
        let name = required(n.name.as_ref(), &format!("{base}.name"), report);
        if let Some(name) = name {
            if check_node_name(name, &format!("{base}.name"), report) {
                unique(&mut seen.names, name, format!("{base}.name"), "node name", report);
            }
        }
        let addr = required(n.address.as_ref(), &format!("{base}.address"), report)
            .and_then(|a| check_ip(a, &format!("{base}.address"), report))
            .inspect(|ip| {
                // A warning, not an error: a test bed on one machine runs its
                // simulated control plane on 127.0.0.x.
                if ip.to_canonical().is_loopback() {
                    report.warning(
                        format!("{base}.address"),
                        format!(
                            "{ip} is a loopback address: every worker would dial itself, not this control-plane node"
                        ),
                        "give the control-plane node's address on the network the workers reach it by",
                    );
                }
            });
        if let (Some(name), Some(a)) = (name, addr) {
            unique_addr(&mut seen.addrs, a, format!("{base}.address"), report);
            control_plane.push(ControlPlaneNode { name: name.clone(), address: a });
        }
    }

    if control_plane.len() == 2 {
        // MicroK8s's HA is dqlite's Raft: three voters from the third node on; with
        // two, one is a voter and one a spare (canonical/microk8s docs, "High
        // Availability"), so losing the voter stops the datastore.
        report.warning(
            "$.cluster.control-plane",
            "two control-plane nodes: MicroK8s's datastore (dqlite) needs three to survive the loss of one; \
             with two, workers fail over between apiservers but the cluster stops when its datastore voter does",
            "add a third control-plane node (microk8s add-node) for high availability",
        );
    }
    control_plane
}

/// `workers`: each checked on its own; a worker without a name is left out. The
/// workers in service, then the retired ones (`retired: true`).
pub(super) fn workers<'a>(
    raw: &'a [RawWorker],
    auth: Option<&Auth>,
    seen: &mut Seen<'a>,
    report: &mut Report,
) -> (Vec<Worker>, Vec<Retired>) {
    if raw.is_empty() {
        report.warning("$.workers", "no workers are listed", "add `workers: [{ name: worker-1 }]`");
    }
    let mut retired = Vec::new();
    let mut workers = Vec::new();
    for (i, w) in raw.iter().enumerate() {
        if w.retired == Some(true) {
            retired.extend(retired_worker(i, w, seen, report));
        } else {
            workers.extend(worker(i, w, auth, seen, report));
        }
    }
    (workers, retired)
}

/// A retired worker keeps its name (unique among all nodes: a machine joining
/// under it would be taken for the retired one); its address is free for a new
/// worker, and nothing else of it is read.
fn retired_worker<'a>(i: usize, w: &'a RawWorker, seen: &mut Seen<'a>, report: &mut Report) -> Option<Retired> {
    let base = format!("$.workers[{i}]");
    let name = required(w.name.as_ref(), &format!("{base}.name"), report)?;
    if check_node_name(name, &format!("{base}.name"), report) {
        unique(&mut seen.names, name, format!("{base}.name"), "node name", report);
    }
    Some(Retired { name: name.clone(), path: base })
}

fn worker<'a>(
    i: usize,
    w: &'a RawWorker,
    auth: Option<&Auth>,
    seen: &mut Seen<'a>,
    report: &mut Report,
) -> Option<Worker> {
    let base = format!("$.workers[{i}]");
    let name = required(w.name.as_ref(), &format!("{base}.name"), report)?;
    if check_node_name(name, &format!("{base}.name"), report) {
        unique(&mut seen.names, name, format!("{base}.name"), "node name", report);
        if name.len() > MAX_WORKER_NAME {
            report.error(
                format!("{base}.name"),
                format!("worker name is {} characters long: its fleet file NAME.user-data would be longer than a file name may be (255 bytes)", name.len()),
                &format!("use at most {MAX_WORKER_NAME} characters"),
            );
        }
    }
    let address = w.address.as_ref().and_then(|a| {
        let ip = check_ip(a, &format!("{base}.address"), report)?;
        unique_addr(&mut seen.addrs, ip, format!("{base}.address"), report);
        Some(ip)
    });
    for (k, v) in &w.labels {
        check_label(k, v, &crate::spans::child_key(&format!("{base}.labels"), k), report);
    }
    for (j, a) in w.kubelet_args.iter().enumerate() {
        check_kubelet_arg(a, &format!("{base}.kubelet-args[{j}]"), report);
    }
    let generation = generation(w.generation, &base, auth, report);
    let epoch = epoch(w.epoch, &base, report);
    Some(Worker {
        name: name.clone(),
        generation,
        epoch,
        address,
        labels: w.labels.clone(),
        kubelet_args: w.kubelet_args.clone(),
    })
}

/// `epoch:` (1 when absent): the machine's place in the line of machines that
/// held this name; every auth mode derives the node's secrets from it.
fn epoch(raw: Option<i64>, base: &str, report: &mut Report) -> u32 {
    match raw {
        None => 1,
        Some(e) if (1..=MAX_EPOCH).contains(&e) => e as u32,
        Some(e) => {
            report.error(
                format!("{base}.epoch"),
                format!("{e} is out of range"),
                &format!("use 1 to {MAX_EPOCH}; raise it by one when a new machine replaces this worker (docs/day2.md, Replace)"),
            );
            1
        }
    }
}

/// `generation:` (0 when absent), meant for `auth: microk8s-join`.
fn generation(raw: Option<i64>, base: &str, auth: Option<&Auth>, report: &mut Report) -> u32 {
    match raw {
        None => 0,
        Some(g) if (0..=MAX_GENERATION).contains(&g) => {
            if g > 0 && auth.is_some_and(|a| !crate::auth::of(a).uses_worker_generation()) {
                report.warning(
                    format!("{base}.generation"),
                    "generation changes only the join token of `auth: microk8s-join`; this cluster's \
                     credentials stay as they are",
                    "remove it, or use it with auth: microk8s-join",
                );
            }
            g as u32
        }
        Some(g) => {
            report.error(
                format!("{base}.generation"),
                format!("{g} is out of range"),
                &format!("use 0 to {MAX_GENERATION}; raise it by one to give the worker a new join token"),
            );
            0
        }
    }
}
