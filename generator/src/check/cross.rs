//! Rules that combine axes (a release with an auth mode, the facts' addresses):
//! one function each.

use super::KUBELET_VERIFIED;
use crate::model::{AuthMode, Channel, ControlPlaneNode, Worker};
use crate::report::Report;

pub(super) fn check(
    channel: Option<&Channel>,
    auth: Option<&AuthMode>,
    control_plane: &[ControlPlaneNode],
    workers: &[Worker],
    report: &mut Report,
) {
    x509_worker_addresses(channel, auth, workers, report);
    hostname_dialled_workers(channel, workers, report);
    join_ipv4_only(channel, auth, control_plane, report);
}

/// A fresh 1.28+ apiserver verifies the serving certificate by IP: `auth: x509`
/// issues one per worker, which names an IP only when the facts give one.
fn x509_worker_addresses(channel: Option<&Channel>, auth: Option<&AuthMode>, workers: &[Worker], report: &mut Report) {
    if channel.is_some_and(|ch| ch.release.verifies_kubelet_when_fresh) && matches!(auth, Some(AuthMode::X509(_))) {
        if let Some((i, who)) = without_address(workers) {
            report.warning(
                format!("$.workers[{i}]"),
                format!("{who} no `address`, so the kubelet serving certificate can name no IP; {KUBELET_VERIFIED}: kubectl logs, exec and port-forward to pods on such a worker fail with x509 errors"),
                "give each worker its `address` (the IP its kubelet uses; it also becomes --node-ip), or use `auth: microk8s-join` (1.23+: the control plane signs a serving certificate with the node's addresses)",
            );
        }
    }
}

/// A 1.27 or older apiserver dials each kubelet by its node name.
fn hostname_dialled_workers(channel: Option<&Channel>, workers: &[Worker], report: &mut Report) {
    if channel.is_some_and(|ch| !ch.release.verifies_kubelet_when_fresh) {
        if let Some((i, who)) = without_address(workers) {
            // kube-apiserver's default --kubelet-preferred-address-types puts Hostname
            // first; MicroK8s sets InternalIP first only from 1.28 (4086f4ac).
            report.warning(
                format!("$.workers[{i}]"),
                format!("{who} no `address`: MicroK8s 1.27 and older apiservers dial each kubelet by its node name (the Node's Hostname address), which the control plane must resolve, or kubectl logs, exec and port-forward to pods on such a worker fail"),
                "give each worker its `address` (hosts-entries.sh in the control-plane bundle then adds the name to /etc/hosts on the control plane), or make the names resolvable in DNS",
            );
        }
    }
}

fn join_ipv4_only(
    channel: Option<&Channel>,
    auth: Option<&AuthMode>,
    control_plane: &[ControlPlaneNode],
    report: &mut Report,
) {
    // 1.29+ join.py accepts only an IPv4 literal in the connection string
    // (canonical/microk8s 1.30:scripts/wrappers/common/cluster/utils.py:L557-597,
    // get_valid_connection_parts: exactly one ':'; 3488ddd3).
    if matches!(auth, Some(AuthMode::MicroK8sJoin { .. }))
        && channel.is_some_and(|ch| ch.release.join_ipv4_only)
        && !control_plane.is_empty()
    {
        if control_plane.iter().all(|c| c.address.is_ipv6()) {
            report.error(
                "$.cluster.control-plane",
                "with `auth: microk8s-join` on MicroK8s 1.29+, `microk8s join` takes only an IPv4 address (get_valid_connection_parts), and every control-plane address here is IPv6",
                "give the control planes' IPv4 addresses, or use `auth: x509`",
            );
        } else if let Some(i) = control_plane.iter().position(|c| c.address.is_ipv6()) {
            report.warning(
                format!("$.cluster.control-plane[{i}]"),
                "IPv6: MicroK8s 1.29+ `microk8s join` takes only IPv4 addresses; workers join through the IPv4 control planes only",
                "give this control plane's IPv4 address if it has one",
            );
        }
    }
}

/// The first worker without an `address` (its index) and how a warning names it
/// and the others like it ("worker \"w-1\" has" / "... and 2 other worker(s) have").
fn without_address(workers: &[Worker]) -> Option<(usize, String)> {
    let mut missing = workers.iter().enumerate().filter(|(_, w)| w.address.is_none());
    let (i, first) = missing.next()?;
    let who = match missing.count() {
        0 => format!("worker {:?} has", first.name),
        n => format!("worker {:?} and {n} other worker(s) have", first.name),
    };
    Some((i, who))
}
