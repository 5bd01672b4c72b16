//! Facts + one worker -> the JoinPlan and every file the node needs; the output
//! formats (`crate::output`) turn that into user-data.
//!
//! All decisions are made here (paths, services, flags, tokens); the bootstrap only
//! executes the plan. Output is a pure function of its inputs: no clock, no
//! randomness, no environment, so the same inputs give byte-identical user-data.

use std::io::Write as _;

use base64::Engine as _;
use mk8s_bootstrap::plan::JoinPlan;

use crate::model::{host_port, Facts, Worker};
use crate::secrets::Secrets;

mod args;
mod cluster;
mod node;

pub use crate::files::*;
pub use args::node_labels;
pub use cluster::ClusterArtifacts;
pub use node::render_node_with;

/// How the bootstrap binary reaches the node.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// In the user-data, gzip + base64 (compressed once, deterministically).
    Embedded { gz_b64: std::sync::Arc<String> },
    /// Downloaded at boot and verified by sha256 before it runs.
    Fetched { url: String, sha256: String },
    /// Already in the image at [`mk8s_bootstrap::plan::BOOTSTRAP_PATH`].
    Preinstalled,
}

impl Delivery {
    pub fn embedded(binary: &[u8]) -> Delivery {
        Delivery::Embedded {
            gz_b64: std::sync::Arc::new(base64::engine::general_purpose::STANDARD.encode(gzip(binary))),
        }
    }
}

/// Deterministic gzip: mtime 0, no file name, fixed OS byte.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc =
        flate2::GzBuilder::new().mtime(0).operating_system(255).write(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

/// Everything generated for one worker.
#[derive(Debug, Clone)]
pub struct NodeOutput {
    pub plan: JoinPlan,
    pub files: Vec<NodeFile>,
    /// Distribution packages cloud-init installs (before `runcmd`).
    pub packages: Vec<String>,
    /// Commands run once the files are written.
    pub commands: Vec<Vec<String>>,
}

/// The URL kubelet and kube-proxy use: MicroK8s's own proxy when the mode joins
/// through it, else the balancer's.
pub fn server_url(facts: &Facts) -> String {
    if crate::auth::of(&facts.auth).joined(facts).is_some() {
        // What the join writes into the kubeconfigs: the local proxy, on the port
        // of the snap's template, not the control plane's (G4).
        return format!("https://{}", host_port("127.0.0.1", crate::auth::microk8s_join::PROXY_PORT));
    }
    let listen = host_port("127.0.0.1", facts.apiserver_port);
    crate::balancer::of(&facts.load_balancer).server_url(&facts.load_balancer, &listen)
}

/// Render a worker's output. Template errors and failed self-checks are bugs in
/// mk8s-gen, not in the input (the facts were validated), and say so.
pub fn render_node(
    facts: &Facts,
    secrets: &Secrets,
    worker: &Worker,
    delivery: &Delivery,
) -> anyhow::Result<NodeOutput> {
    render_node_with(facts, secrets, worker, &ClusterArtifacts::new(facts, delivery)?)
}
