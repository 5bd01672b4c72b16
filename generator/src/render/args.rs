//! The kubelet's and kube-proxy's arguments, and the node's labels: one place for
//! the user-data's plan and the launch configuration.

use crate::model::{Facts, Worker};

/// The labels every worker gets, then the facts' own.
pub fn node_labels(worker: &Worker) -> Vec<String> {
    let mut labels =
        vec!["microk8s.io/cluster=true".to_string(), "node.kubernetes.io/microk8s-worker=microk8s-worker".into()];
    labels.extend(worker.labels.iter().map(|(k, v)| format!("{k}={v}")));
    labels
}

/// The lines merged into `args/kubelet`.
///
/// G5: MicroK8s's own join copies the control plane's whole args/kubelet (its DNS
/// lines included) and, from 1.27, its pod CIDR into kube-proxy's args
/// (canonical/microk8s 1.30:scripts/wrappers/join.py L445-454, L676-687): when the
/// node `joins` that way, a value the facts leave to its default is not ours to
/// write over what the join copied.
pub fn kubelet(facts: &Facts, worker: &Worker, joins: bool) -> Vec<String> {
    let mut kubelet_args = Vec::new();
    if !joins || facts.dns.domain_given {
        kubelet_args.push(format!("--cluster-domain={}", facts.dns.cluster_domain));
    }
    if !joins || facts.dns.dns_given {
        kubelet_args.push(format!("--cluster-dns={}", facts.dns.cluster_dns));
    }
    kubelet_args.extend([
        // MicroK8s's own join keeps the cluster CA apart from the node's (join.py).
        "--client-ca-file=${SNAP_DATA}/certs/ca.remote.crt".to_string(),
        format!("--node-labels={}", node_labels(worker).join(",")),
        // The token is bound to system:node:NAME; register under exactly that name.
        format!("--hostname-override={}", worker.name),
    ]);
    if let Some(ip) = worker.address {
        kubelet_args.push(format!("--node-ip={ip}"));
    }
    kubelet_args.extend(crate::auth::of(&facts.auth).kubelet_args().iter().map(|l| l.to_string()));
    kubelet_args.extend(worker.kubelet_args.iter().cloned());
    kubelet_args
}

/// The lines merged into `args/kube-proxy`.
pub fn kube_proxy(facts: &Facts, worker: &Worker, joins: bool) -> Vec<String> {
    let mut kube_proxy_args = vec![format!("--hostname-override={}", worker.name)];
    // The cluster's pod network, as MicroK8s's own join copies it from the control
    // plane (canonical/microk8s 1.27+ scripts/wrappers/join.py, `update_kubeproxy_cidr`
    // after comparing `info["cluster_cidr"]`); before 1.27 the join left the default
    // of default-args/kube-proxy (`--cluster-cidr=10.1.0.0/16`). 1.28+
    // run-kubelite-with-args also reads it for its FORWARD rule. Joined: only when
    // the facts give it (G5).
    if !joins || facts.pod_cidr_given {
        kube_proxy_args.push(format!("--cluster-cidr={}", facts.pod_cidr));
    }
    kube_proxy_args
}
