//! mk8s-gen: cluster facts -> checked model -> per-node provisioning artifacts.
//!
//! Data flows one way: [`load`] (the raw serde structs of [`facts::parse`], checked by
//! [`check::validate`] into [`model::Facts`], plus a [`report::Report`] of every
//! problem) -> [`render::render_node`] (the JoinPlan and files) -> an output format
//! (cloud-config, Ignition or a MicroK8s launch configuration).

pub mod auth;
pub mod balancer;
pub mod check;
pub mod cli;
pub mod controlplane;
pub mod facts;
pub mod files;
pub mod fleet;
pub mod input;
pub mod model;
pub mod output;
pub mod pki;
pub mod render;
pub mod report;
pub mod secrets;
pub mod selfcheck;
pub mod spans;
pub mod templates;
pub mod util;
pub mod values;
pub mod yaml;

use std::path::Path;

/// Facts text as read: the checked model (when the YAML parsed and nothing stopped
/// the checks), every problem found, located, and the span map that locates more.
pub struct Loaded {
    pub facts: Option<model::Facts>,
    pub report: report::Report,
    pub spans: spans::SpanMap,
}

impl Loaded {
    /// The facts when no problem is an error; otherwise every problem, rendered
    /// against `text` (which must be the text given to [`load`]) as the CLI shows them.
    pub fn valid(self, file: &str, text: &str) -> Result<model::Facts, String> {
        match self.facts {
            Some(f) if !self.report.has_errors() => Ok(f),
            _ => Err(self.report.render(file, text)),
        }
    }
}

/// Parse and check facts text: the one entry the CLI, the benches and the tests
/// use. `base_dir` resolves relative paths in the facts (`ca.cert-file`). Problems
/// added later are located by calling `report.locate(&spans)` again.
pub fn load(text: &str, base_dir: &Path) -> Loaded {
    let (raw, mut report, spans) = facts::parse(text);
    let facts = raw.and_then(|raw| check::validate(&raw, base_dir, &mut report));
    report.locate(&spans);
    Loaded { facts, report, spans }
}
