//! One worker's output: its credentials, the plan and the commands that start the
//! bootstrap, on top of what the cluster's nodes share.

use mk8s_bootstrap::plan::{
    self, ApiserverSpec, CaSpec, CredentialsSpec, InstallFile, JoinPlan, MicroK8sSpec, NodeSpec, TimingSpec,
};

use super::{args, server_url, ClusterArtifacts, NodeOutput};
use crate::auth::{Joined, NodeCx, Staged};
use crate::files::{FileContent, NodeFile, BOOTSTRAP_UNIT, MAINTAIN_TIMER, REFRESH_HOOK, STAGE_DIR};
use crate::model::release::{apiserver_proxy_unit, services};
use crate::model::{Facts, Worker};
use crate::secrets::Secrets;

/// As [`super::render_node`], with the cluster's parts rendered once by the caller.
pub fn render_node_with(
    facts: &Facts,
    secrets: &Secrets,
    worker: &Worker,
    cluster: &ClusterArtifacts,
) -> anyhow::Result<NodeOutput> {
    let server = server_url(facts);
    let joined = cluster.joined.as_ref();
    let cx = NodeCx { facts, secrets, worker, server: &server, kubeconfig_parsed: &cluster.kubeconfig_parsed };
    let creds = crate::auth::of(&facts.auth).credentials(&facts.auth, &cx)?;
    let (mut files, mut install) = staged_files(creds.staged);
    if !cluster.baked {
        files.extend(cluster.files.iter().cloned());
    }
    install.extend(cluster.install.iter().cloned());
    let plan = JoinPlan {
        api_version: plan::API_VERSION.into(),
        kind: plan::KIND.into(),
        cluster: facts.name.clone(),
        node: NodeSpec { name: worker.name.clone(), epoch: worker.epoch },
        microk8s: microk8s_spec(facts, joined),
        ca: CaSpec { pem: facts.ca.pem.clone(), pin: facts.ca.pin.clone() },
        apiserver: ApiserverSpec { url: server, endpoints: cluster.endpoints.clone() },
        credentials: CredentialsSpec {
            kubelet: creds.kubelet,
            kube_proxy: creds.kube_proxy,
            kubelet_serving: creds.kubelet_serving,
        },
        install,
        kubelet_args: args::kubelet(facts, worker, joined.is_some()),
        kube_proxy_args: args::kube_proxy(facts, worker, joined.is_some()),
        load_balancer: cluster.load_balancer.clone(),
        timing: TimingSpec { ready_deadline_secs: facts.ready_deadline_secs, ..TimingSpec::default() },
        join: joined.map(|j| j.spec.clone()),
        balancer_files: cluster.balancer_files.clone(),
    };
    plan.check().map_err(|e| anyhow::anyhow!("internal error: mk8s-gen produced an invalid plan: {e}"))?;
    files.push(NodeFile { path: plan::PLAN_PATH.into(), content: FileContent::Text(plan.to_json()), mode: 0o600 });
    let commands = commands(worker, joined, &mut files);
    let packages = crate::balancer::of(&facts.load_balancer).packages().iter().map(|p| p.to_string()).collect();
    Ok(NodeOutput { plan, files, packages, commands })
}

/// The staged files in the user-data, and the plan's entries that install them.
fn staged_files(staged: Vec<Staged>) -> (Vec<NodeFile>, Vec<InstallFile>) {
    let mut files = Vec::new();
    let mut install = Vec::new();
    for st in staged {
        let path = format!("{STAGE_DIR}/{}", st.name);
        install.push(InstallFile {
            staged: path.clone(),
            target: st.target.into(),
            mode: st.mode,
            sha256: plan::sha256_hex(st.text.as_bytes()),
            secret: st.secret,
        });
        files.push(NodeFile { path, content: FileContent::Text(st.text), mode: st.mode });
    }
    (files, install)
}

/// The snap: channel, which services stay off and which run the worker.
fn microk8s_spec(facts: &Facts, joined: Option<&Joined>) -> MicroK8sSpec {
    let (mut stop_services, mut start_services, locks) = services(facts.channel.release.flavour);
    if crate::balancer::of(&facts.load_balancer).keeps_apiserver_proxy() || joined.is_some() {
        // MicroK8s's own proxy is the load balancer here: keep it.
        stop_services.retain(|u| *u != apiserver_proxy_unit());
    }
    if let Some(j) = joined {
        start_services.push(j.proxy_unit.clone());
    }
    MicroK8sSpec {
        channel: facts.channel.text.clone(),
        flavour: facts.channel.release.flavour,
        stop_services,
        start_services,
        locks,
        local_snap: facts.channel.local_snap.as_ref().map(|l| plan::LocalSnap {
            file: l.file.clone(),
            assert: l.assert.clone(),
            base: l.base.as_ref().map(|(file, assert)| plan::SnapFile { file: file.clone(), assert: assert.clone() }),
        }),
        hold_refresh: facts.channel.hold_refresh,
        refresh_hook: facts.channel.release.post_refresh_hooks.then(|| REFRESH_HOOK.to_string()),
    }
}

/// What cloud-init (or Ignition) runs once the files are written: start the
/// bootstrap, and first name the machine when MicroK8s's join will use its name.
fn commands(worker: &Worker, joined: Option<&Joined>, files: &mut Vec<NodeFile>) -> Vec<Vec<String>> {
    let mut commands = vec![
        vec!["systemctl".into(), "daemon-reload".into()],
        vec!["systemctl".into(), "enable".into(), "--now".into(), "--no-block".into(), BOOTSTRAP_UNIT.into()],
        vec!["systemctl".into(), "enable".into(), "--now".into(), "--no-block".into(), MAINTAIN_TIMER.into()],
    ];
    if joined.is_some() {
        // `microk8s join` registers the node under the machine's hostname
        // (join.py `socket.gethostname().lower()`): make it the node's name, before
        // the bootstrap starts (it refuses another). /etc/hostname also serves Ignition.
        files.push(NodeFile {
            path: "/etc/hostname".into(),
            content: FileContent::Text(format!("{}\n", worker.name)),
            mode: 0o644,
        });
        commands.insert(0, vec!["hostnamectl".into(), "set-hostname".into(), worker.name.clone()]);
    }
    commands
}
