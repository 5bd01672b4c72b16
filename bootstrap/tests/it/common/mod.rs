//! Helpers shared by the bootstrap's scenario files (each uses some of them).
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine as _;

/// What cloud-init does with our user-data's `write_files` (paths under `root`,
/// contents decoded, modes set). The real cloud-init runs in the real-tool tests.
pub fn write_files(root: &Path, user_data: &str) {
    let doc: serde_yaml::Value = serde_yaml::from_str(user_data).unwrap();
    for f in doc["write_files"].as_sequence().unwrap() {
        let path = root.join(f["path"].as_str().unwrap().trim_start_matches('/'));
        let content = f["content"].as_str().unwrap();
        let data = match f.get("encoding").and_then(|e| e.as_str()) {
            Some("gz+b64") => {
                let gz = base64::engine::general_purpose::STANDARD.decode(content).unwrap();
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
                out
            }
            _ => content.as_bytes().to_vec(),
        };
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        let mode = u32::from_str_radix(f["permissions"].as_str().unwrap(), 8).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// Facts (YAML, in `dir` where its `ca.crt` is) checked by the real validator, and
/// the seed fixture's secrets with `ca_key_pem` as the CA key (attached when `x509`).
pub fn facts_and_secrets(
    facts_yaml: &str,
    dir: &Path,
    ca_key_pem: &str,
    x509: bool,
) -> (mk8s_gen::model::Facts, mk8s_gen::secrets::Secrets) {
    let facts = mk8s_gen::load(facts_yaml, dir).valid("facts", facts_yaml).unwrap_or_else(|e| panic!("{e}"));
    let mut text = fs::read_to_string(mk8s_testkit::workspace().join("fixtures/seed/secrets.yaml")).unwrap();
    text.push_str(&format!("ca-key: {}\n", serde_json::to_string(ca_key_pem).unwrap()));
    let mut secrets = mk8s_gen::secrets::Secrets::parse(&text).unwrap();
    if x509 {
        secrets.attach_ca_key(&facts.ca).unwrap();
    }
    (facts, secrets)
}

/// What a control-plane node resolves after the operator ran the control-plane
/// bundle's `hosts-entries.sh` there: the real script, run with the real bash on a
/// control-plane layout in `dir`; returns its /etc/hosts as (name, address) pairs.
/// (<=1.27 apiservers dial kubelets by the Node's Hostname address, the worker's
/// name; MicroK8s's own join even refuses a worker whose name does not resolve:
/// cluster-agent pkg/api/v2/join.go L103-106.)
pub fn control_plane_hosts(
    facts: &mk8s_gen::model::Facts,
    secrets: &mk8s_gen::secrets::Secrets,
    dir: &Path,
) -> Vec<(String, String)> {
    let cp = dir.join("control-plane-node");
    for d in ["args", "var/lock"] {
        fs::create_dir_all(cp.join(d)).unwrap();
    }
    fs::write(cp.join("args/kube-apiserver"), "--authorization-mode=AlwaysAllow\n").unwrap();
    fs::write(cp.join("var/lock/ha-cluster"), "").unwrap();
    let etc_hosts = dir.join("cp-etc-hosts");
    fs::write(&etc_hosts, "127.0.0.1 localhost\n").unwrap();
    let bundle = dir.join("control-plane-bundle");
    let workers: Vec<_> = facts.workers.iter().collect();
    mk8s_gen::controlplane::write_bundle(facts, secrets, &workers, &bundle).unwrap();
    let out = std::process::Command::new(mk8s_testkit::tools::require("bash"))
        .arg(bundle.join("hosts-entries.sh"))
        .env("SNAP_DATA", &cp)
        .env("MK8S_HOSTS_FILE", &etc_hosts)
        .output()
        .unwrap();
    assert!(out.status.success(), "hosts-entries.sh: {}", String::from_utf8_lossy(&out.stderr));
    let mut pairs = Vec::new();
    for line in fs::read_to_string(&etc_hosts).unwrap().lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        if let Some(ip) = words.next() {
            pairs.extend(words.map(|name| (name.to_string(), ip.to_string())));
        }
    }
    pairs
}
