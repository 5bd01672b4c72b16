//! Rules that combine axes (a release with an auth mode, the facts' addresses):
//! one function each.

use crate::model::{without_address, Auth, Channel, ControlPlaneNode, LoadBalancer, Worker};
use crate::report::Report;

pub(super) fn check(
    channel: Option<&Channel>,
    auth: Option<&Auth>,
    load_balancer: Option<&LoadBalancer>,
    control_plane: &[ControlPlaneNode],
    workers: &[Worker],
    report: &mut Report,
) {
    hostname_dialled_workers(channel, workers, report);
    if let Some(lb) = load_balancer {
        let cx = crate::balancer::CrossCx { release: channel.map(|c| c.release), control_plane };
        crate::balancer::of(lb).cross_check(&cx, report);
    }
    if let Some(auth) = auth {
        let cx = crate::auth::CrossCx { channel, control_plane, workers };
        crate::auth::of(auth).cross_check(&cx, report);
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
