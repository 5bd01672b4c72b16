//! Helpers shared by the generator's integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::Path;

use mk8s_gen::render::{self, Delivery, FileContent, NodeOutput};
use mk8s_gen::secrets::Secrets;
use mk8s_gen::spans::SpanMap;
use mk8s_testkit::workspace;

/// Render one node through the library, like the CLI does.
pub fn render_facts(facts_yaml: &str, dir: &Path, node: &str) -> NodeOutput {
    let spans = SpanMap::build(facts_yaml);
    let (raw, mut report) = mk8s_gen::facts::parse(facts_yaml, &spans);
    let facts = mk8s_gen::validate::validate(&raw.expect("parses"), dir, &mut report);
    assert!(!report.has_errors(), "{}", report.render("facts", facts_yaml));
    let secrets = Secrets::parse(&fs::read_to_string(workspace().join("fixtures/seed/secrets.yaml")).unwrap()).unwrap();
    let facts = facts.unwrap();
    render::render_node(&facts, &secrets, facts.worker(node).unwrap(), &Delivery::Preinstalled).unwrap()
}

pub fn text_of<'a>(out: &'a NodeOutput, path: &str) -> &'a str {
    match &out.files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{path} not generated")).content {
        FileContent::Text(t) => t,
        FileContent::GzipBase64(_) => panic!("{path} is binary"),
    }
}
