//! What every node of a cluster shares, rendered once per run.

use mk8s_bootstrap::plan::{self, InstallFile, LoadBalancerSpec};
use serde_json::json;

use super::Delivery;
use crate::files::{
    FileContent, NodeFile, BOOTSTRAP_UNIT, FETCH_SCRIPT, LAUNCH_CONFIG, MAINTAIN_TIMER, MAINTAIN_UNIT, UNIT_DIR,
};
use crate::model::{host_port, Facts};
use crate::{selfcheck, templates};

/// What every node of a cluster shares (load-balancer files, the bootstrap binary or
/// its fetch script, units): rendered and checked once per run, not once per node.
#[derive(Debug, Clone)]
pub struct ClusterArtifacts {
    pub(super) endpoints: Vec<String>,
    pub(super) files: Vec<NodeFile>,
    pub(super) load_balancer: LoadBalancerSpec,
    /// What MicroK8s's own join brings, when the auth mode joins through it.
    pub(super) joined: Option<crate::auth::Joined>,
    /// Set once a node's kubeconfigs were parsed back in full (see
    /// [`crate::auth::NodeCx`]).
    pub(super) kubeconfig_parsed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Shared staged files the bootstrap installs into the snap's data directory.
    pub(super) install: Vec<InstallFile>,
    /// The balancer's files `mk8s-bootstrap maintain` holds to their content.
    pub(super) balancer_files: Vec<plan::PlannedFile>,
    /// The shared files are baked into the image (`mk8s-gen packer`): user-data
    /// carries only the node's own files and the plan.
    pub(super) baked: bool,
}

impl ClusterArtifacts {
    pub fn new(facts: &Facts, delivery: &Delivery) -> anyhow::Result<ClusterArtifacts> {
        let endpoints: Vec<String> =
            facts.control_plane.iter().map(|c| host_port(&c.address.to_string(), facts.apiserver_port)).collect();

        let mut files = Vec::new();
        let mut install = Vec::new();
        let mut balancer_files = Vec::new();
        let listen = host_port("127.0.0.1", facts.apiserver_port);
        // The only addresses a load balancer's unit lets it reach, beside loopback.
        let allow: Vec<String> = facts.control_plane.iter().map(|c| c.address.to_string()).collect();
        let balancer = crate::balancer::of(&facts.load_balancer);
        let joined = crate::auth::of(&facts.auth).joined(facts);
        let load_balancer = if let Some(j) = &joined {
            j.balancer.clone()
        } else {
            let cx = crate::balancer::RenderCx { facts, endpoints: &endpoints, listen: &listen, allow: &allow };
            let rendered = balancer.render(&facts.load_balancer, &cx)?;
            balancer_files = crate::balancer::planned_files(balancer, &rendered);
            files.extend(rendered.files);
            install.extend(rendered.install);
            rendered.spec
        };

        // MicroK8s 1.27+ (and `latest`): a launch configuration that enables no addon,
        // written before the bootstrap installs the snap. Without it the install hook
        // takes $SNAP/microk8s.default.yaml (`addons: [dns]`), and the worker's
        // cluster-agent retries enabling dns every 5 s forever (snap/hooks/install,
        // microk8s-resources/microk8s.default.yaml from 1.27; cluster-agent 1.27+
        // cmd/cluster-agent.go keeps a file that fails and applies it again).
        if facts.channel.release.launch_config {
            let text = templates::render("microk8s.yaml", json!({}))?;
            selfcheck::launch_configuration(&text)?;
            files.push(NodeFile { path: LAUNCH_CONFIG.into(), content: FileContent::Text(text), mode: 0o644 });
        }

        let fetch_script = match delivery {
            Delivery::Embedded { gz_b64 } => {
                files.push(NodeFile {
                    path: plan::BOOTSTRAP_PATH.into(),
                    content: FileContent::GzipBase64(gz_b64.clone()),
                    mode: 0o755,
                });
                None
            }
            Delivery::Fetched { url, sha256 } => {
                let script = templates::render(
                    "fetch-bootstrap.sh",
                    json!({"url": url, "sha256": sha256, "dest": plan::BOOTSTRAP_PATH}),
                )?;
                // 0700: a presigned URL's signature is in it; only root (systemd) runs it.
                files.push(NodeFile { path: FETCH_SCRIPT.into(), content: FileContent::Text(script), mode: 0o700 });
                Some(FETCH_SCRIPT)
            }
            Delivery::Preinstalled => None,
        };
        let unit = templates::render(
            "mk8s-bootstrap.service",
            json!({"binary": plan::BOOTSTRAP_PATH, "plan": plan::PLAN_PATH, "fetch_script": fetch_script}),
        )?;
        files.push(NodeFile {
            path: format!("{UNIT_DIR}/{BOOTSTRAP_UNIT}"),
            content: FileContent::Text(unit),
            mode: 0o644,
        });
        files.extend(maintain_units()?);

        Ok(ClusterArtifacts {
            endpoints,
            files,
            load_balancer,
            joined,
            kubeconfig_parsed: Default::default(),
            install,
            balancer_files,
            baked: false,
        })
    }

    /// For an image baked with `mk8s-gen packer` from the same facts.
    pub fn baked(mut self) -> ClusterArtifacts {
        self.baked = true;
        self
    }

    /// The files every node shares, to bake into an image.
    pub fn files(&self) -> &[NodeFile] {
        &self.files
    }
}

/// `mk8s-bootstrap maintain --repair` as a oneshot unit, and its timer.
fn maintain_units() -> anyhow::Result<Vec<NodeFile>> {
    let service = templates::render(
        "mk8s-maintain.service",
        json!({
            "binary": plan::BOOTSTRAP_PATH,
            "plan": plan::PLAN_PATH,
            "stamp": mk8s_bootstrap::status::STAMP_FILE,
        }),
    )?;
    let timer = templates::render("mk8s-maintain.timer", json!({}))?;
    Ok([(MAINTAIN_UNIT, service), (MAINTAIN_TIMER, timer)]
        .into_iter()
        .map(|(name, text)| NodeFile {
            path: format!("{UNIT_DIR}/{name}"),
            content: FileContent::Text(text),
            mode: 0o644,
        })
        .collect())
}
