//! Test support shared by the workspace's integration tests: a test PKI, a real-TLS
//! server, the simulated kube-apiserver, real-tool lookup and child processes.

pub mod apiserver;
pub mod architecture;
pub mod balancer;
pub mod boot;
pub mod cluster_agent;
pub mod facts;
pub mod fakes;
pub mod microk8s_args;
pub mod node_model;
pub mod pki;
pub mod proc;
pub mod real_agent;
pub mod tls;
pub mod tools;
pub mod upstream;

/// The workspace root (for fixtures/).
pub fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}
