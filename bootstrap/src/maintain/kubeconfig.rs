//! The kubeconfigs the kubelet and kube-proxy read, as far as `maintain` checks
//! them: their `server:` lines and their certificate authorities. Line-based, as
//! the join's own reader (`phases::kubeconfig`): ours are written by mk8s-gen,
//! MicroK8s's join writes one cluster per file.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;

use crate::fs::write_atomic;
use crate::node::Node;

/// The kubeconfigs under `$SNAP_DATA` whose server and CA are checked.
pub const KUBECONFIGS: &[&str] = &["credentials/kubelet.config", "credentials/proxy.config"];

/// `key: value` of a kubeconfig line, the value unquoted.
fn entry(line: &str) -> Option<(&str, &str)> {
    let (k, v) = line.trim().trim_start_matches("- ").split_once(':')?;
    Some((k.trim(), v.trim().trim_matches('"').trim_matches('\'')))
}

fn read(node: &Node, rel: &str) -> Result<String, String> {
    fs::read_to_string(node.snap_data(rel)).map_err(|e| format!("cannot read {rel}: {e}"))
}

/// Every `server:` of a kubeconfig.
pub fn servers(node: &Node, rel: &str) -> Result<Vec<String>, String> {
    let text = read(node, rel)?;
    Ok(text.lines().filter_map(entry).filter(|(k, _)| *k == "server").map(|(_, v)| v.to_string()).collect())
}

/// Set every `server:` of a kubeconfig to `url` (the line's indentation kept,
/// the value JSON-quoted as mk8s-gen writes it). Returns whether the file changed.
pub fn set_servers(node: &Node, rel: &str, url: &str) -> io::Result<bool> {
    let p = node.snap_data(rel);
    let text = fs::read_to_string(&p)?;
    let quoted = serde_json::Value::from(url).to_string();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match entry(line) {
            Some(("server", v)) if v != url => {
                let indent = &line[..line.len() - line.trim_start().len()];
                out.push_str(&format!("{indent}server: {quoted}\n"));
            }
            _ => out.push_str(line),
        }
    }
    if out == text {
        return Ok(false);
    }
    let mode = fs::metadata(&p).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o600);
    write_atomic(&p, out.as_bytes(), mode)
}

/// The pins of the CAs a kubeconfig trusts: `certificate-authority-data`
/// (base64 PEM) or `certificate-authority` (a file, MicroK8s's absolute path read
/// under the node's root, `${SNAP_DATA}` expanded).
pub fn ca_pins(node: &Node, rel: &str) -> Result<Vec<String>, String> {
    use base64::Engine as _;
    let text = read(node, rel)?;
    let mut pins = Vec::new();
    for (k, v) in text.lines().filter_map(entry) {
        let pem = match k {
            "certificate-authority-data" => base64::engine::general_purpose::STANDARD
                .decode(v)
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| format!("{rel}: certificate-authority-data is not base64 PEM"))?,
            "certificate-authority" => {
                let path = v.replace("${SNAP_DATA}", crate::node::SNAP_DATA);
                fs::read_to_string(node.path(&path)).map_err(|e| format!("{rel}: cannot read {v}: {e}"))?
            }
            _ => continue,
        };
        pins.push(crate::certs::pin_of_pem(&pem).ok_or_else(|| format!("{rel}: its CA is not a PEM certificate"))?);
    }
    Ok(pins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_read_and_set_keeping_every_other_line() {
        let root = tempfile::tempdir().unwrap();
        let node = Node {
            root: root.path().into(),
            systemctl: "false".into(),
            snap: "false".into(),
            curl: "false".into(),
            tar: "false".into(),
            microk8s: "false".into(),
        };
        let p = node.snap_data(KUBECONFIGS[0]);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let ours = "clusters:\n  - name: c\n    cluster:\n      server: \"https://127.0.0.1:16443\"\nusers: []\n";
        fs::write(&p, ours.replace("https://127.0.0.1:16443", "https://127.0.0.1:9")).unwrap();
        assert_eq!(servers(&node, KUBECONFIGS[0]).unwrap(), ["https://127.0.0.1:9"]);
        assert!(set_servers(&node, KUBECONFIGS[0], "https://127.0.0.1:16443").unwrap());
        assert_eq!(fs::read_to_string(&p).unwrap(), ours, "byte for byte what mk8s-gen wrote");
        assert!(!set_servers(&node, KUBECONFIGS[0], "https://127.0.0.1:16443").unwrap());
        assert!(servers(&node, KUBECONFIGS[1]).unwrap_err().starts_with("cannot read credentials/proxy.config"));
    }
}
