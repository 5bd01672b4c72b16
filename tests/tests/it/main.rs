//! The testkit's integration tests: one test binary, one module per subject. They
//! run the `mk8s-node-model` binary as the bootstrap's tests do, and hold the model
//! and the simulated cluster-agent to what MicroK8s itself does.

mod agent_differential;
mod microk8s_join;
mod node_model;
