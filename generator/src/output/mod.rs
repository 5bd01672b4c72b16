//! Output formats: what a node's rendered output becomes.

pub mod budget;
pub mod cloud_config;
pub mod ignition;
pub mod launch_config;
pub mod multipart;
