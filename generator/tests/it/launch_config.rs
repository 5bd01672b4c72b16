//! `/etc/microk8s.yaml` for MicroK8s 1.27+: written before the snap is installed so
//! the install hook takes it instead of `$SNAP/microk8s.default.yaml`, whose
//! `addons: [dns]` the worker's cluster-agent would retry every 5 s forever.

use crate::common;

use std::fs;

use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::workspace;

/// The cluster-agent's launch `Configuration` (canonical/microk8s-cluster-agent
/// pkg/k8sinit/schema.go), the fields that make a node do something.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Launch {
    version: String,
    #[serde(default)]
    addons: Option<serde_yaml::Value>,
    #[serde(default)]
    join: Option<serde_yaml::Value>,
}

#[test]
fn written_from_1_27_and_for_latest_and_asks_for_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(workspace().join("fixtures/seed/ca.crt"), dir.path().join("ca.crt")).unwrap();
    for (channel, wanted) in [
        ("1.20/stable", false),
        ("1.26/stable", false),
        ("1.27/stable", true),
        ("1.34/edge", true),
        ("latest/stable", true),
    ] {
        let facts = FactsYaml::new("c")
            .channel(channel)
            .ca_file("ca.crt")
            .control_plane("cp1", "10.0.0.1")
            .worker(Worker::new("w1").address("10.0.0.5"))
            .yaml();
        let out = common::render_facts(&facts, dir.path(), "w1");
        let file = out.files.iter().find(|f| f.path == "/etc/microk8s.yaml");
        assert_eq!(file.is_some(), wanted, "{channel}");
        let Some(file) = file else { continue };
        assert_eq!(file.mode, 0o644);
        let text = common::text_of(&out, "/etc/microk8s.yaml");
        let docs: Vec<&str> = text.split("\n---").collect();
        assert_eq!(docs.len(), 1, "one document");
        let l: Launch = serde_yaml::from_str(text).unwrap();
        // 1.27's cluster-agent accepts exactly 0.1.0; 1.28+ up to 0.2.0.
        assert_eq!(l.version, "0.1.0");
        assert!(l.addons.is_none() && l.join.is_none());
        // It is written by cloud-init, before the bootstrap (which installs the snap) runs.
        assert!(!out.plan.install.iter().any(|i| i.target.contains("microk8s.yaml")));
    }
}
