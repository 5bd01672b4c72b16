//! mk8s-ctl: the operator's online tool. Where `mk8s-gen` turns the facts into
//! provisioning offline, this reads the same facts (through `mk8s-gen`'s library)
//! and compares them with the cluster through the Kubernetes API (kube-rs):
//! [`status`] of the fleet, and the [`approve`]r of kubelet serving certificates
//! whose rules are [`policy`].

pub mod approve;
pub mod audit;
pub mod cli;
pub mod client;
pub mod denylist;
pub mod drain;
pub mod plans;
pub mod policy;
pub mod retire;
pub mod status;
pub mod upgrade;
