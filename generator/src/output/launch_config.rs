//! `--format launch-config`: MicroK8s's own zero-touch path (1.27+), without
//! mk8s-bootstrap.

use serde_json::json;

use crate::model::release::CLUSTER_AGENT_PORT;
use crate::model::{Facts, Worker};
use crate::secrets::Secrets;
use crate::selfcheck;

/// `mk8s-gen --format launch-config`: the `.microk8s.yaml` an operator drops into an
/// image (as `/etc/microk8s.yaml`, before `snap install microk8s`) to join the node
/// with MicroK8s alone, 1.27+: the MicroK8s-only path, without mk8s-bootstrap.
///
/// Two documents (canonical/microk8s-cluster-agent 1.30:pkg/k8sinit/schema.go,
/// `ParseMultiPartConfiguration`; apply.go applies parts in order and, within a part,
/// the join last): the join, then our kubelet and kube-proxy arguments, which must come
/// after it because the join replaces `args/kubelet` with the control plane's
/// (canonical/microk8s 1.30:scripts/wrappers/join.py `store_base_kubelet_args`).
/// `extraKubeletArgs` changed kubelite's args, so the agent restarts kubelite after
/// the last part (apply.go). Limits: one control plane in the URL, no failover; the
/// control plane is verified only by CHECK (join.py compares a prefix of the sha256 of
/// its certificate), which changes whenever that node's `server.crt` is issued again;
/// the node's name is the machine's hostname.
pub fn launch_config(facts: &Facts, secrets: &Secrets, worker: &Worker, check: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        crate::auth::of(&facts.auth).joined(facts).is_some(),
        "--format launch-config needs `auth: microk8s-join` (the control-plane bundle registers the join tokens)"
    );
    anyhow::ensure!(
        facts.channel.release.launch_config,
        "--format launch-config needs MicroK8s 1.27 or later (launch configurations with `join` appear in 1.27); \
         use the user-data (mk8s-bootstrap runs `microk8s join` on 1.23+)"
    );
    // MicroK8s compares only as many characters as CHECK has (join.py wants at
    // least 12): a 48-bit prefix is a match a man-in-the-middle can precompute once
    // per control-plane certificate. The full digest leaves no such room.
    anyhow::ensure!(
        check.len() == 64 && check.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "--join-check must be the whole sha256, 64 lower-case hex characters: MicroK8s compares only as many \
         characters as it is given, and a short prefix can be matched by a forged certificate"
    );
    let cp = facts
        .control_plane
        .iter()
        .find(|c| c.address.is_ipv4())
        .ok_or_else(|| anyhow::anyhow!("a launch configuration's join URL needs an IPv4 control plane"))?;
    let token = secrets.join_token(&facts.name, worker.id(), worker.generation);
    let url = format!("{}:{}/{token}/{check}", cp.address, CLUSTER_AGENT_PORT);
    let mut kubelet = serde_json::Map::new();
    let mut put = |k: &str, v: String| {
        kubelet.insert(k.to_string(), json!(v));
    };
    put("--cluster-domain", facts.dns.cluster_domain.clone());
    put("--cluster-dns", facts.dns.cluster_dns.to_string());
    put("--node-labels", crate::render::node_labels(worker).join(","));
    if let Some(ip) = worker.address {
        put("--node-ip", ip.to_string());
    }
    for a in &worker.kubelet_args {
        let (k, v) = a.split_once('=').unwrap_or((a.as_str(), "true"));
        put(k, v.to_string());
    }
    let join = json!({"version": "0.1.0", "join": {"url": url, "worker": true}});
    let args = json!({
        "version": "0.1.0",
        "extraKubeletArgs": kubelet,
        "extraKubeProxyArgs": {"--cluster-cidr": facts.pod_cidr},
    });
    let text = format!(
        "# MicroK8s launch configuration for node {node} of cluster {cluster}, by mk8s-gen. Holds a\n\
         # join token: a cluster-admin credential until the control plane prunes it.\n\
         # Put it at /etc/microk8s.yaml before `snap install microk8s --channel {channel}`, on a\n\
         # machine whose hostname is {node}. Part 1 joins through {cp}; part 2 applies our\n\
         # kubelet arguments after the join replaced args/kubelet.\n---\n{}---\n{}",
        crate::yaml::to_string(&join),
        crate::yaml::to_string(&args),
        node = worker.name,
        cluster = facts.name,
        channel = facts.channel.text,
        cp = cp.address,
    );
    selfcheck::launch_configuration_join(&text, &url)?;
    Ok(text)
}
