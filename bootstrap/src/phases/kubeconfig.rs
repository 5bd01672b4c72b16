//! Reading back the kubeconfigs MicroK8s's join wrote.

use std::fs;

use crate::node::Node;
use crate::plan::Credential;

/// Where the join writes the kubelet's kubeconfig, under `$SNAP_DATA`.
pub const KUBELET: &str = "credentials/kubelet.config";

/// The client credential of a kubeconfig the join wrote (`$SNAP_DATA/REL`):
/// `client-certificate-data`/`client-key-data` (1.28+ `create_worker_kubeconfigs`) or
/// `client-certificate`/`client-key` paths (1.23-1.27 `create_x509_kubeconfig`),
/// MicroK8s's absolute paths read under the node's root.
pub fn kubeconfig_credential(node: &Node, rel: &str) -> Result<Credential, String> {
    use base64::Engine as _;
    let text = fs::read_to_string(node.snap_data(rel)).map_err(|e| format!("cannot read {rel}: {e}"))?;
    let b64 = |v: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| format!("{rel}: bad base64"))
    };
    let file = |v: &str| fs::read_to_string(node.path(v.trim())).map_err(|e| format!("{rel}: cannot read {v}: {e}"));
    let (mut cert, mut key) = (None, None);
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once(':') else { continue };
        let v = v.trim().trim_matches('"');
        match k.trim() {
            "client-certificate-data" => cert = Some(b64(v)?),
            "client-key-data" => key = Some(b64(v)?),
            "client-certificate" => cert = Some(file(v)?),
            "client-key" => key = Some(file(v)?),
            _ => {}
        }
    }
    match (cert, key) {
        (Some(cert_pem), Some(key_pem)) => Ok(Credential::ClientCertificate { cert_pem, key_pem }),
        _ => Err(format!("{rel} holds no client certificate (not written by the join yet?)")),
    }
}

/// The server of a kubeconfig the join wrote (`$SNAP_DATA/REL`): MicroK8s's own
/// proxy on the port of the snap's traefik template, which is not the control
/// plane's when that is not 16443 (G4; `create_worker_kubeconfigs`,
/// 1.30:microk8s-resources/actions/common/utils.sh L620-640).
pub fn kubeconfig_server(node: &Node, rel: &str) -> Result<String, String> {
    let text = fs::read_to_string(node.snap_data(rel)).map_err(|e| format!("cannot read {rel}: {e}"))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("server:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .find(|v| v.starts_with("https://"))
        .ok_or_else(|| format!("{rel} names no https server (not written by the join yet?)"))
}

/// The server and credential the join wrote for the kubelet.
pub fn joined_kubelet(node: &Node) -> Result<(String, Credential), String> {
    Ok((kubeconfig_server(node, KUBELET)?, kubeconfig_credential(node, KUBELET)?))
}
