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
) -> (mk8s_gen::validate::Facts, mk8s_gen::secrets::Secrets) {
    let spans = mk8s_gen::spans::SpanMap::build(facts_yaml);
    let (raw, mut report) = mk8s_gen::facts::parse(facts_yaml, &spans);
    let facts = mk8s_gen::validate::validate(&raw.unwrap(), dir, &mut report).expect("valid facts");
    let mut text = fs::read_to_string(mk8s_testkit::workspace().join("fixtures/seed/secrets.yaml")).unwrap();
    text.push_str(&format!("ca-key: {}\n", serde_json::to_string(ca_key_pem).unwrap()));
    let mut secrets = mk8s_gen::secrets::Secrets::parse(&text).unwrap();
    if x509 {
        secrets.attach_ca_key(&facts.ca).unwrap();
    }
    (facts, secrets)
}
