//! mk8s-gen: cluster facts -> checked model -> per-node provisioning artifacts.
//!
//! Data flows one way: [`facts::parse`] (raw serde structs) -> [`validate::validate`]
//! (the checked [`validate::Facts`] plus a [`report::Report`] of every problem) ->
//! [`render::render_node`] (the JoinPlan and files) -> [`render::cloud_config`].

pub mod ca;
pub mod checks;
pub mod cli;
pub mod controlplane;
pub mod facts;
pub mod fleet;
pub mod ignition;
pub mod merge;
pub mod render;
pub mod report;
pub mod secrets;
pub mod spans;
pub mod targets;
pub mod templates;
pub mod util;
pub mod validate;
pub mod x509;
pub mod yaml;
