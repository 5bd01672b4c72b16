//! `--merge extra.yaml`: the operator's own cloud-config (users, ssh keys, packages,
//! ntp, ...) and ours in one MIME multipart user-data.
//!
//! The operator's document goes in byte for byte: re-serializing it could change
//! what cloud-init (PyYAML, YAML 1.1) reads from it, e.g. an unquoted `yes`. Our part
//! comes second with `Merge-Type: list(append)+dict(recurse_array)+str()`, so our
//! `write_files`, `packages` and `runcmd` are appended to the operator's instead of
//! replacing them. Files we write may not also be written by the operator.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::render::NodeOutput;

pub const MERGE_TYPE: &str = "list(append)+dict(recurse_array)+str()";

/// Check the operator's document and return it with the paths it writes.
pub fn check_extra(extra: &str, ours: &NodeOutput) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if !extra.starts_with("#cloud-config") {
        problems.push("it must be a cloud-config document starting with `#cloud-config`".to_string());
        return Err(problems);
    }
    let doc: serde_yaml::Value = match serde_yaml::from_str(extra) {
        Ok(v) => v,
        Err(e) => return Err(vec![format!("it is not valid YAML: {e}")]),
    };
    if !doc.is_mapping() && !doc.is_null() {
        return Err(vec!["its top level must be a mapping".into()]);
    }
    if let Some(files) = doc.get("write_files").and_then(|w| w.as_sequence()) {
        for (i, f) in files.iter().enumerate() {
            let Some(path) = f.get("path").and_then(|p| p.as_str()) else { continue };
            if ours.files.iter().any(|o| o.path == path) {
                problems.push(format!(
                    "write_files[{i}] writes {path}, which mk8s-worker owns; remove it from your cloud-config"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn part(name: &str, body: &str, merge_type: Option<&str>) -> String {
    let (encoding, text) = if body.is_ascii() {
        ("7bit", body.to_string())
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
        let lines: Vec<&str> = b64.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
        ("base64", lines.join("\n") + "\n")
    };
    let mut head = format!(
        "Content-Type: text/cloud-config; charset=\"utf-8\"\nMIME-Version: 1.0\nContent-Transfer-Encoding: {encoding}\nContent-Disposition: attachment; filename=\"{name}\"\n"
    );
    if let Some(m) = merge_type {
        head.push_str(&format!("Merge-Type: {m}\n"));
    }
    // The line break before a boundary belongs to the boundary (RFC 2046), so a
    // body that ends with one needs another for its last byte to survive.
    let mut out = format!("{head}\n{text}");
    out.push('\n');
    out
}

/// The multipart user-data: the operator's part, then ours. Deterministic: the
/// boundary is derived from the content (and checked not to occur in it).
pub fn multipart(extra: &str, ours: &str) -> String {
    let digest = hex::encode(Sha256::digest(format!("{extra}\0{ours}").as_bytes()));
    let mut boundary = format!("mk8s-worker-{}", &digest[..32]);
    while extra.contains(&boundary) || ours.contains(&boundary) {
        boundary.push('x');
    }
    format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n--{boundary}\n{}--{boundary}\n{}--{boundary}--\n",
        part("operator.yaml", extra, None),
        part("mk8s-worker.yaml", ours, Some(MERGE_TYPE)),
    )
}
