//! `--merge`: the operator's cloud-config and ours, merged by cloud-init's own code.

use std::fs;
use std::path::Path;
use std::process::Command;

use mk8s_testkit::{tools, workspace};

/// Run cloud-init's part processing and mergers (Debian's python3-cloudinit) on a
/// multipart user-data; parts and the merged result are written into `dir`.
fn cloud_init_merge(user_data: &Path, dir: &Path) -> serde_json::Value {
    let py = Path::new("/usr/bin/python3");
    assert!(py.exists(), "Debian's python3 (with cloud-init's modules) is required; .ci/run installs cloud-init");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/merge_user_data.py");
    let out = Command::new(py).arg(script).arg(user_data).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn schema_ok(p: &Path) -> bool {
    let out = Command::new(tools::require("cloud-init")).args(["schema", "--config-file"]).arg(p).output().unwrap();
    out.status.success()
}

#[test]
fn cloud_init_merges_the_operator_part_and_ours() {
    let fx = workspace().join("fixtures/merge");
    let dir = tempfile::tempdir().unwrap();
    let v = cloud_init_merge(&fx.join("expected/worker-1.stdout"), dir.path());
    assert_eq!(v["parts"], 2);
    let m = &v["merged"];
    // Lists appended, operator first.
    let runcmd: Vec<String> = m["runcmd"].as_array().unwrap().iter().map(|c| c.to_string()).collect();
    assert_eq!(runcmd[0], r#"["echo","operator setup ran"]"#);
    assert_eq!(
        runcmd[runcmd.len() - 2..],
        [
            r#"["systemctl","enable","--now","--no-block","mk8s-bootstrap.service"]"#,
            r#"["systemctl","enable","--now","--no-block","mk8s-maintain.timer"]"#
        ]
    );
    let paths: Vec<&str> = m["write_files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths[0], "/etc/motd");
    assert!(
        paths.contains(&"/etc/mk8s-worker/plan.json") && paths.contains(&"/etc/systemd/system/mk8s-bootstrap.service")
    );
    // The operator's document is passed through untouched, so YAML 1.1 meanings hold.
    assert_eq!(m["ssh_pwauth"], false);
    assert_eq!(m["users"][0]["name"], "ops");
    assert_eq!(m["packages"], serde_json::json!(["htop", "jq"]));
    assert_eq!(m["ntp"]["servers"][0], "ntp.example.com");
    // Each part and the merged result pass cloud-init's schema check.
    for f in ["part0.yaml", "part1.yaml", "merged.yaml"] {
        assert!(schema_ok(&dir.path().join(f)), "{f}");
    }
    // The operator's part is byte for byte the operator's file.
    assert_eq!(
        fs::read_to_string(dir.path().join("part0.yaml")).unwrap(),
        fs::read_to_string(fx.join("extra.yaml")).unwrap()
    );
}

#[test]
fn conflicts_and_non_cloud_configs_are_refused() {
    let exp = workspace().join("fixtures/merge/expected");
    let conflict = fs::read_to_string(exp.join("conflict.stderr")).unwrap();
    assert!(
        conflict.contains("write_files[1] writes /etc/mk8s-worker/plan.json, which mk8s-worker owns"),
        "{conflict}"
    );
    // `//`, `/../` and `/./` do not hide a path of ours, nor does `defer: true`; our
    // directory is ours; a relative path is refused.
    for want in [
        "write_files[2] writes /etc//mk8s-worker/../mk8s-worker/plan.json (/etc/mk8s-worker/plan.json)",
        "write_files[3] writes /etc/systemd/system/./mk8s-bootstrap.service (/etc/systemd/system/mk8s-bootstrap.service)",
        "write_files[4] writes /etc/mk8s-worker/extra.conf",
        "write_files[5] writes \"etc/relative\", a relative path",
    ] {
        assert!(conflict.contains(want), "{want} in {conflict}");
    }
    assert!(!conflict.contains("/etc/motd"), "only the conflict is named");
    assert!(fs::read_to_string(exp.join("not-cloud-config.stderr")).unwrap().contains("#cloud-config"));
    assert!(!exp.join("conflict.stdout").exists() && !exp.join("not-cloud-config.stdout").exists(), "nothing written");
}
