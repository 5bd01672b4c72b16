//! Output formats: what a node's rendered output becomes. The user-data formats
//! are behind [`OutputFormat`], listed once in [`FORMATS`]; the launch
//! configuration ([`launch_config`]) is not user-data and has its own path.

pub mod budget;
pub mod cloud_config;
pub mod ignition;
pub mod launch_config;
pub mod multipart;

use crate::render::{ClusterArtifacts, NodeOutput};

/// Emits one node's user-data; made once per run by [`OutputFormat::prepare`].
pub trait Emitter: Sync {
    fn emit(&self, out: &NodeOutput) -> anyhow::Result<String>;
}

/// One user-data format.
pub trait OutputFormat: Sync {
    /// The `--format` value.
    fn name(&self) -> &'static str;
    /// The extension of a fleet's node files.
    fn extension(&self) -> &'static str;
    /// Why `--gzip` does not apply, when it does not.
    fn refuses_gzip(&self) -> Option<&'static str> {
        None
    }
    /// Why `--merge` does not apply, when it does not.
    fn refuses_merge(&self) -> Option<&'static str> {
        None
    }
    /// The emitter for a cluster's nodes, with what they share prepared once.
    fn prepare<'a>(&self, cluster: &'a ClusterArtifacts) -> Box<dyn Emitter + 'a>;
}

/// `#cloud-config`.
pub struct CloudConfig;
/// Ignition spec 3.3.0.
pub struct Ignition;

/// Every user-data format; the first is the default.
pub const FORMATS: &[&dyn OutputFormat] = &[&CloudConfig, &Ignition];

/// The format named `name`.
pub fn by_name(name: &str) -> Option<&'static dyn OutputFormat> {
    FORMATS.iter().copied().find(|f| f.name() == name)
}

impl OutputFormat for CloudConfig {
    fn name(&self) -> &'static str {
        "cloud-config"
    }

    fn extension(&self) -> &'static str {
        "user-data"
    }

    fn prepare<'a>(&self, cluster: &'a ClusterArtifacts) -> Box<dyn Emitter + 'a> {
        Box::new(cloud_config::SharedEntries::new(cluster))
    }
}

impl Emitter for cloud_config::SharedEntries {
    fn emit(&self, out: &NodeOutput) -> anyhow::Result<String> {
        Ok(cloud_config::cloud_config_with(out, Some(self)))
    }
}

impl OutputFormat for Ignition {
    fn name(&self) -> &'static str {
        "ignition"
    }

    fn extension(&self) -> &'static str {
        "ign"
    }

    fn refuses_gzip(&self) -> Option<&'static str> {
        // Ignition parses the config as JSON and refuses gzip (checked with
        // Ignition 2.14); its files are compressed inside the config already.
        Some(
            "--gzip is for cloud-init user-data: Ignition does not read a gzip-compressed config \
             (its files are already gzip-compressed inside); drop --gzip for --format ignition",
        )
    }

    fn refuses_merge(&self) -> Option<&'static str> {
        Some("--merge combines cloud-configs; it does not apply to --format ignition")
    }

    fn prepare<'a>(&self, _: &'a ClusterArtifacts) -> Box<dyn Emitter + 'a> {
        Box::new(IgnitionEmitter)
    }
}

struct IgnitionEmitter;

impl Emitter for IgnitionEmitter {
    fn emit(&self, out: &NodeOutput) -> anyhow::Result<String> {
        ignition::config(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_format_once() {
        let names: Vec<&str> = FORMATS.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["cloud-config", "ignition"]);
        assert!(by_name("ignition").is_some_and(|f| f.extension() == "ign"));
        assert!(by_name("launch-config").is_none());
    }
}
