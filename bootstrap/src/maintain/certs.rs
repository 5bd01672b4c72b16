//! The certificates in use on the worker and how close each is to its end.
//!
//! "Near" is less than a tenth of the certificate's lifetime left, and at most 30
//! days: the kubelet rotates its client certificate (with `--rotate-certificates`)
//! at a random point between 70 and 90 % of its lifetime (kubernetes
//! `staging/src/k8s.io/client-go/util/certificate/certificate_manager.go`,
//! `nextRotationDeadline`), so a certificate still in use with less than 10 % left
//! is one that did not renew; for long certificates (the generator's, 10 years)
//! 30 days is the notice an operator needs to renew by hand.

use std::fs;

use crate::certs::Cert;
use crate::node::Node;
use crate::phases::kubeconfig::{kubeconfig_credential, KUBELET};
use crate::plan::Credential;
use crate::store;
use crate::text::arg_value;

/// 30 days, the longest notice.
pub const NEAR_CAP_SECS: i64 = 30 * 86_400;

/// One certificate's validity, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// Less than a tenth of the lifetime (at most 30 days) left, or past its end.
    pub fn near(&self, now: i64) -> bool {
        let lifetime = (self.not_after - self.not_before).max(0);
        self.not_after - now < (lifetime / 10).min(NEAR_CAP_SECS) || now >= self.not_after
    }
}

/// The certificates a worker authenticates and serves with; None where the
/// credential is not a certificate (a token) or there is none to read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expiries {
    pub client: Option<Validity>,
    pub serving: Option<Validity>,
    pub proxy: Option<Validity>,
    /// Certificates that exist but cannot be read.
    pub unreadable: Vec<String>,
}

impl Expiries {
    /// One line per certificate near its end (or unreadable).
    pub fn near(&self, now: i64) -> Vec<String> {
        let mut out = self.unreadable.clone();
        for (what, v) in [("client", self.client), ("serving", self.serving), ("kube-proxy", self.proxy)] {
            if let Some(v) = v.filter(|v| v.near(now)) {
                let at = crate::clock::rfc3339(u64::try_from(v.not_after).unwrap_or(0));
                out.push(
                    format!("the kubelet's {what} certificate ends at {at}")
                        .replace("kubelet's kube-proxy", "kube-proxy"),
                );
            }
        }
        out
    }
}

fn validity(pem: &str) -> Option<Validity> {
    Cert::from_pem(pem).map(|c| Validity { not_before: c.not_before, not_after: c.not_after })
}

/// The kubelet's and kube-proxy's certificates, read where they read them, from
/// the kubelet's `args/kubelet`: the serving pair from `--cert-dir`'s
/// `kubelet-server-current.pem` with `--rotate-server-certificates` (the kubelet
/// then serves from its store only), else `--tls-cert-file`, else `--cert-dir`'s
/// `kubelet.crt`; the client pair from `--cert-dir`'s `kubelet-client-current.pem`
/// with `--rotate-certificates`, before the kubeconfig's; kube-proxy's from its
/// kubeconfig.
pub fn expiries(node: &Node) -> Expiries {
    let mut e = Expiries::default();
    let args = fs::read_to_string(node.snap_data("args/kubelet")).unwrap_or_default();
    let cert_dir = store::cert_dir(&args);
    let serving = if store::has_flag(&args, "--rotate-server-certificates") {
        store::current(&cert_dir, store::SERVING)
    } else {
        arg_value(&args, "--tls-cert-file").map(|f| store::expand(&f)).unwrap_or(format!("{cert_dir}/kubelet.crt"))
    };
    e.serving = file_validity(node, "serving", &serving, &mut e.unreadable);
    if store::has_flag(&args, "--rotate-certificates") {
        let current = store::current(&cert_dir, store::CLIENT);
        e.client = file_validity(node, "client", &current, &mut e.unreadable);
    }
    if e.client.is_none() {
        e.client = kubeconfig_validity(node, KUBELET, "client", &mut e.unreadable);
    }
    e.proxy = kubeconfig_validity(node, "credentials/proxy.config", "kube-proxy", &mut e.unreadable);
    e
}

/// A certificate file's validity; None when there is no such file.
fn file_validity(node: &Node, what: &str, path: &str, unreadable: &mut Vec<String>) -> Option<Validity> {
    let pem = fs::read_to_string(node.path(path)).ok()?;
    let v = validity(&pem);
    if v.is_none() {
        unreadable.push(format!("the {what} certificate {path} cannot be read"));
    }
    v
}

/// The validity of a kubeconfig's client certificate; None for a token.
fn kubeconfig_validity(node: &Node, rel: &str, what: &str, unreadable: &mut Vec<String>) -> Option<Validity> {
    let Ok(Credential::ClientCertificate { cert_pem, .. }) = kubeconfig_credential(node, rel) else { return None };
    let v = validity(&cert_pem);
    if v.is_none() {
        unreadable.push(format!("the {what} certificate of {rel} cannot be read"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_is_a_tenth_of_the_lifetime_at_most_30_days() {
        let day = 86_400;
        let year = Validity { not_before: 0, not_after: 365 * day };
        assert!(!year.near(334 * day), "31 days left of a year");
        assert!(year.near(336 * day), "29 days left");
        let short = Validity { not_before: 0, not_after: 1000 };
        assert!(!short.near(899) && short.near(901), "a tenth of 1000 s");
        assert!(short.near(5000), "past its end");
    }
}
