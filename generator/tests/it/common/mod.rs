//! Helpers shared by the generator's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use mk8s_gen::render::{self, Delivery, FileContent, NodeOutput};
use mk8s_gen::secrets::Secrets;
use mk8s_testkit::{balancer, workspace};

/// Render one node through the library, like the CLI does.
pub fn render_facts(facts_yaml: &str, dir: &Path, node: &str) -> NodeOutput {
    render_facts_with(facts_yaml, dir, node, &Delivery::Preinstalled)
}

/// [`render_facts`] with a bootstrap delivery.
pub fn render_facts_with(facts_yaml: &str, dir: &Path, node: &str, delivery: &Delivery) -> NodeOutput {
    let facts = mk8s_gen::load(facts_yaml, dir).valid("facts", facts_yaml).unwrap_or_else(|e| panic!("{e}"));
    let secrets = Secrets::parse(&fs::read_to_string(workspace().join("fixtures/seed/secrets.yaml")).unwrap()).unwrap();
    render::render_node(&facts, &secrets, facts.worker(node).unwrap(), delivery).unwrap()
}

pub fn text_of<'a>(out: &'a NodeOutput, path: &str) -> &'a str {
    match &out.files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{path} not generated")).content {
        FileContent::Text(t) => t,
        FileContent::GzipBase64(_) => panic!("{path} is binary"),
    }
}

/// The text files of one node's output, by their path on the node.
pub fn text_files(out: &NodeOutput) -> BTreeMap<String, String> {
    out.files
        .iter()
        .filter_map(|f| match &f.content {
            FileContent::Text(t) => Some((f.path.clone(), t.clone())),
            FileContent::GzipBase64(_) => None,
        })
        .collect()
}

/// Three simulated apiservers behind the real `kind` balancer, configured by the
/// generated files ([`mk8s_testkit::balancer`]).
pub fn lb_cluster(kind: &str, unprivileged: bool) -> balancer::Cluster {
    balancer::cluster_as(kind, unprivileged, |facts, dir, node| text_files(&render_facts(facts, dir, node)))
}

/// `mk8s-gen control-plane --cluster CLUSTER --secrets SECRETS --out OUT`, run as the
/// real binary.
pub fn control_plane_bundle(cluster: &Path, secrets: &Path, out: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mk8s-gen"))
        .args(["control-plane", "--cluster"])
        .arg(cluster)
        .arg("--secrets")
        .arg(secrets)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// Every file under `dirs`: path -> (content, mode, mtime).
pub fn snapshot(
    dirs: &[&Path],
) -> std::collections::BTreeMap<std::path::PathBuf, (Vec<u8>, u32, std::time::SystemTime)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            out.insert(p, (Vec::new(), m.permissions().mode(), m.modified().unwrap()));
        } else {
            out.insert(p.clone(), (std::fs::read(&p).unwrap(), m.permissions().mode(), m.modified().unwrap()));
        }
    }
    out
}

/// A generated script's arguments: `--help` prints its header and a usage line,
/// an unknown argument is refused with exit 64, `--dry-run` prints what would
/// change (each of `dry_says`), and none of them changes a file under `watched`
/// or prints one of `secrets`. `run(args)` runs the script.
pub fn help_dry_run_and_bad_arguments_change_nothing(
    run: impl Fn(&[&str]) -> std::process::Output,
    watched: &[&Path],
    dry_says: &[&str],
    secrets: &[&str],
) {
    let before = snapshot(watched);
    let said = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    for help in ["--help", "-h"] {
        let o = run(&[help]);
        assert_eq!(o.status.code(), Some(0), "{help}: {}", said(&o));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("Usage: "), "{help}: {}", said(&o));
        assert!(said(&o).contains("--dry-run"), "{}", said(&o));
        assert_eq!(snapshot(watched), before, "{help} changed a file");
    }
    for bad in [&["--bogus"][..], &["--dry-run", "extra"], &["-x"]] {
        let o = run(bad);
        assert_eq!(o.status.code(), Some(64), "{bad:?}: {}", said(&o));
        assert!(said(&o).contains("unknown argument") && said(&o).contains("nothing was changed"), "{}", said(&o));
        assert_eq!(snapshot(watched), before, "{bad:?} changed a file");
    }
    for dry in ["--dry-run", "-n"] {
        let o = run(&[dry]);
        assert_eq!(o.status.code(), Some(0), "{dry}: {}", said(&o));
        for want in dry_says {
            assert!(said(&o).contains(want), "{dry} should say {want:?}: {}", said(&o));
        }
        for s in secrets {
            assert!(!said(&o).contains(s), "{dry} printed a secret");
        }
        assert_eq!(snapshot(watched), before, "{dry} changed a file");
    }
}
