//! mk8s-bootstrap: the first-boot agent of a worker-only MicroK8s node.
//!
//! The library owns the [`plan::JoinPlan`] type, the contract with `mk8s-gen`.

pub mod plan;
