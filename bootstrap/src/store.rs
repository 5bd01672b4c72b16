//! The kubelet's certificate store (`--cert-dir`): where it keeps the client and
//! serving pairs it rotates, laid out as client-go v0.34.4
//! `util/certificate/certificate_store.go` does: `PREFIX-current.pem`, a symlink
//! to `PREFIX-YYYY-MM-DD-HH-MM-SS.pem`, which holds the certificate then the key
//! (0600). The kubelet loads `-current.pem` first (`Current`); a renewal writes a
//! new timestamped file, links `-updated.pem` to it and renames that over
//! `-current.pem` (`updateSymlink`, which fails when `-current.pem` is not a
//! symlink); `recover` renames a left-over `-updated.pem` when `-current.pem` is
//! missing.

use std::fs;
use std::io;

use crate::certs::Cert;
use crate::fs::write_atomic;
use crate::node::{Node, SNAP_COMMON, SNAP_DATA};
use crate::plan::ServingPair;
use crate::text::arg_value;

/// The client pair's prefix (`--rotate-certificates`: kubernetes v1.34.4
/// `cmd/kubelet/app/server.go`, `buildClientCertificateManager`).
pub const CLIENT: &str = "kubelet-client";
/// The serving pair's prefix (`--rotate-server-certificates`: v1.34.4
/// `pkg/kubelet/certificate/kubelet.go`, `NewKubeletServerCertificateManager`).
pub const SERVING: &str = "kubelet-server";

/// `${SNAP_DATA}` and `${SNAP_COMMON}` of an args value, as node paths.
pub fn expand(v: &str) -> String {
    v.replace("${SNAP_DATA}", SNAP_DATA).replace("${SNAP_COMMON}", SNAP_COMMON)
}

/// The kubelet's `--cert-dir` in its args text, as a node path; MicroK8s's
/// default (`${SNAP_DATA}/certs`, every branch's `default-args/kubelet`) without one.
pub fn cert_dir(args: &str) -> String {
    arg_value(args, "--cert-dir").map(|d| expand(&d)).unwrap_or(format!("{SNAP_DATA}/certs"))
}

/// A boolean flag set in the args text (`--flag` or `--flag=true`).
pub fn has_flag(args: &str, flag: &str) -> bool {
    args.lines().map(str::trim).any(|l| l == flag || l.strip_prefix(flag) == Some("=true"))
}

/// The node path of the pair the kubelet loads first.
pub fn current(dir: &str, prefix: &str) -> String {
    format!("{dir}/{prefix}-current.pem")
}

/// The kubelet's current client pair from its store (`--rotate-certificates`):
/// the certificate and the key of `kubelet-client-current.pem`, as PEM. None
/// when the kubelet does not rotate, or the store holds no pair yet.
pub fn current_client_pair(node: &Node) -> Option<(String, String)> {
    let args = fs::read_to_string(node.snap_data("args/kubelet")).ok()?;
    if !has_flag(&args, "--rotate-certificates") {
        return None;
    }
    let text = fs::read_to_string(node.path(&current(&cert_dir(&args), CLIENT))).ok()?;
    let block = |label: &str| {
        let (begin, end) = (format!("-----BEGIN {label}-----"), format!("-----END {label}-----"));
        let start = text.find(&begin)?;
        let stop = text[start..].find(&end)? + start + end.len();
        Some(format!("{}\n", &text[start..stop]))
    };
    let key = ["EC PRIVATE KEY", "PRIVATE KEY", "RSA PRIVATE KEY"].into_iter().find_map(block)?;
    Some((block("CERTIFICATE")?, key))
}

/// Put `pair` into the store at `dir` as the current one, unless the store holds
/// a certificate that ends no earlier (the kubelet renewed it: never replaced by
/// an older one). The file is named after the certificate's `notBefore`, so a
/// rerun writes the same file; the link is relative (the store is in
/// `$SNAP_COMMON`, whose path does not change; the kubelet's own links are
/// absolute). Returns whether the store changed.
pub fn seed(node: &Node, dir: &str, prefix: &str, pair: &ServingPair) -> io::Result<bool> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("the plan's {prefix} pair: {what}"));
    let cert = Cert::from_pem(&pair.cert_pem).ok_or_else(|| bad("not a PEM certificate"))?;
    let store = node.path(dir);
    let current_path = node.path(&current(dir, prefix));
    let held = fs::read_to_string(&current_path).ok().and_then(|t| Cert::from_pem(&t));
    if held.is_some_and(|h| h.not_after >= cert.not_after) {
        return Ok(false);
    }
    let at = crate::clock::rfc3339(u64::try_from(cert.not_before).unwrap_or(0));
    let name = format!("{prefix}-{}.pem", at.trim_end_matches('Z').replace(['T', ':'], "-"));
    let mut text = pair.cert_pem.trim_end().to_string();
    text.push('\n');
    text.push_str(&pair.key_pem);
    write_atomic(&store.join(&name), text.as_bytes(), 0o600)?;
    let updated = store.join(format!("{prefix}-updated.pem"));
    match fs::remove_file(&updated) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::os::unix::fs::symlink(&name, &updated)?;
    fs::rename(&updated, &current_path)?;
    if let Ok(d) = fs::File::open(&store) {
        let _ = d.sync_all();
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_the_cert_dir_are_read_as_the_kubelet_reads_them() {
        let args = "--cert-dir=${SNAP_COMMON}/var/lib/kubelet/pki\n--rotate-server-certificates\n";
        assert_eq!(cert_dir(args), "/var/snap/microk8s/common/var/lib/kubelet/pki");
        assert_eq!(cert_dir("--kubeconfig=x\n"), "/var/snap/microk8s/current/certs");
        assert!(has_flag(args, "--rotate-server-certificates"));
        assert!(has_flag("--rotate-certificates=true\n", "--rotate-certificates"));
        assert!(!has_flag("--rotate-certificates=false\n--rotate-certificates-x\n", "--rotate-certificates"));
    }
}
