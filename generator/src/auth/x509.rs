//! `auth: x509`: client certificates (and the kubelet's serving certificate)
//! issued here with the cluster CA's key.

use mk8s_bootstrap::plan::{Credential, ServingPair};

use super::{kubeconfigs, AuthMode, BundleFile, CheckCx, CrossCx, NodeCredentials, NodeCx};
use crate::facts::{RawClientCertificates, RawCluster};
use crate::model::release::KUBELET_VERIFIED;
use crate::model::{without_address, Auth, Facts, Worker};
use crate::pki::{CaCert, Identity, Validity};
use crate::report::Report;
use crate::secrets::Secrets;
use crate::templates;
use crate::values::{quote_value, required};

pub struct X509;

impl AuthMode for X509 {
    fn name(&self) -> &'static str {
        "x509"
    }

    fn summary(&self) -> &'static str {
        "client certificates signed by the cluster CA"
    }

    fn check(&self, c: &RawCluster, cx: &CheckCx, report: &mut Report) -> Option<Auth> {
        check_client_certs(c.client_certificates.as_ref(), cx.ca, report).map(Auth::X509)
    }

    fn credentials(&self, auth: &Auth, cx: &NodeCx) -> anyhow::Result<NodeCredentials> {
        let Auth::X509(validity) = *auth else {
            anyhow::bail!("internal error: the x509 mode was given another mode's settings");
        };
        let node = cx.worker.name.as_str();
        let signer = cx.secrets.signer(&cx.facts.ca, &cx.facts.name).map_err(anyhow::Error::msg)?;
        let cert = |identity| {
            crate::pki::issue(&signer, identity, cx.worker.id(), validity)
                .map(|c| Credential::ClientCertificate { cert_pem: c.cert_pem, key_pem: c.key_pem })
                .map_err(|e| anyhow::anyhow!("cannot issue the {identity:?} certificate for {node}: {e}"))
        };
        let (kubelet, kube_proxy) = (cert(Identity::Kubelet)?, cert(Identity::KubeProxy)?);
        let staged = kubeconfigs(cx, &kubelet, &kube_proxy)?;
        // The kubelet's first serving certificate, signed by the cluster CA with the
        // node's name and address (fresh 1.28+ apiservers verify it:
        // `--kubelet-certificate-authority`; harmless before 1.28), seeded into the
        // kubelet's serving store, from which it renews it (`kubelet_args`).
        let addresses: Vec<_> = cx.worker.address.into_iter().collect();
        let serving = crate::pki::issue_serving(&signer, cx.worker.id(), &addresses, validity)
            .map_err(|e| anyhow::anyhow!("cannot issue the kubelet serving certificate for {node}: {e}"))?;
        let serving = ServingPair { cert_pem: serving.cert_pem, key_pem: serving.key_pem };
        Ok(NodeCredentials { staged, kubelet, kube_proxy: Some(kube_proxy), kubelet_serving: Some(serving) })
    }

    fn bundle(&self, facts: &Facts, _: &Secrets, _: &[&Worker]) -> anyhow::Result<Vec<BundleFile>> {
        let readme = (
            "README.txt",
            "auth: x509. Workers authenticate with client certificates signed by the cluster CA\n\
             (CN=system:node:NAME, O=system:nodes for kubelet; CN=system:kube-proxy for kube-proxy).\n\
             The control plane needs no change to admit new workers, but run check-control-plane.sh\n\
             on each control-plane node: with MicroK8s's default --authorization-mode=AlwaysAllow\n\
             every worker credential is cluster-admin (enable the rbac addon).\n\
             The kubelets renew their client certificates through the cluster (CSRs that\n\
             kube-controller-manager approves and signs): under RBAC,Node run apply-day2.sh once,\n\
             on one control-plane node, or they expire unrenewed. Their serving certificates\n\
             renew through kubelet-serving CSRs that nothing in Kubernetes approves: keep\n\
             `mk8s-ctl approve --watch` running against the cluster (docs/mk8s-ctl.md).\n"
                .to_string(),
            0o644,
        );
        let cluster = serde_json::json!({ "cluster": facts.name });
        let rotation = templates::render("node-client-rotation.yaml", &cluster)?;
        let apply = templates::render("apply-day2.sh", &cluster)?;
        Ok(vec![
            readme,
            super::check_script(facts)?,
            ("node-client-rotation.yaml", rotation, 0o644),
            ("apply-day2.sh", apply, 0o755),
        ])
    }

    /// The kubelet renews its client certificate itself: the one issued here is
    /// its first (kubernetes v1.34.4 cmd/kubelet/app/server.go
    /// `buildClientCertificateManager`: the kubeconfig's embedded pair seeds an
    /// empty store and is rotated at once through a
    /// `kube-apiserver-client-kubelet` CSR, which kube-controller-manager's
    /// csrapproving approves for a node's own name (`selfnodeclient`) and its
    /// csrsigning signs with MicroK8s's `--cluster-signing-*` files). Its store
    /// moves out of `${SNAP_DATA}`, which names a snap revision: the store's
    /// `kubelet-client-current.pem` is an absolute symlink (client-go v0.34.4
    /// util/certificate/certificate_store.go `updateSymlink`), which would point
    /// into a revision snapd removes two refreshes later.
    ///
    /// It renews its serving certificate too (`kubelet-serving` CSRs, which
    /// `mk8s-ctl approve` decides), from the same store, where the join seeds the
    /// one issued here (`kubelet-server-current.pem`). No `--tls-cert-file`: with
    /// a named file the kubelet's server holds that file as its static
    /// certificate (v1.34.4 `pkg/kubelet/server/server.go`,
    /// `ListenAndServeTLS(CertFile, ...)`), and Go's TLS server asks the rotating
    /// `GetCertificate` (`pkg/kubelet/kubelet.go`) only for a handshake that names
    /// a server, which the apiserver's, dialing the kubelet by IP, does not.
    /// Without one, and with `--rotate-server-certificates`, `InitializeTLS`
    /// (`cmd/kubelet/app/server.go`) names no file and every handshake gets the
    /// store's current certificate.
    fn kubelet_args(&self) -> &'static [&'static str] {
        &["--rotate-certificates", "--rotate-server-certificates", "--cert-dir=${SNAP_COMMON}/var/lib/kubelet/pki"]
    }

    fn operator_steps(&self) -> &'static str {
        "check-control-plane.sh and hosts-entries.sh (and apply-day2.sh once, on any one)"
    }

    fn retire_steps(&self) -> &'static str {
        "certificates cannot be revoked: the kubelet's stays valid until it expires; the denylist \
         refuses its writes (1.30+), and mk8s-ctl approve and kube-controller-manager issue it no \
         renewal (the renewal request is a write). kube-proxy's certificate (system:kube-proxy, \
         shared by every worker) is not denylisted: retire a possibly compromised machine by \
         rotating the CA, or accept it until expiry"
    }

    fn needs_ca_key(&self) -> bool {
        true
    }

    /// A fresh 1.28+ apiserver verifies the serving certificate by IP, and this mode
    /// issues one per worker, which names an IP only when the facts give one.
    fn cross_check(&self, cx: &CrossCx, report: &mut Report) {
        if cx.channel.is_some_and(|ch| ch.release.verifies_kubelet_when_fresh) {
            if let Some((i, who)) = without_address(cx.workers) {
                report.warning(
                    format!("$.workers[{i}]"),
                    format!("{who} no `address`, so the kubelet serving certificate can name no IP; {KUBELET_VERIFIED}: kubectl logs, exec and port-forward to pods on such a worker fail with x509 errors"),
                    "give each worker its `address` (the IP its kubelet uses; it also becomes --node-ip), or use `auth: microk8s-join` (1.23+: the control plane signs a serving certificate with the node's addresses)",
                );
            }
        }
    }
}

pub const DEFAULT_VALIDITY_DAYS: u32 = 365;

fn check_client_certs(
    raw: Option<&RawClientCertificates>,
    ca: Option<&CaCert>,
    report: &mut Report,
) -> Option<Validity> {
    let base = "$.cluster.client-certificates";
    let help = "give the first day the certificates are valid, e.g. `client-certificates: { not-before: 2026-11-01 }` (or a UTC time, 2026-11-01T08:00:00Z); it is fixed so the output is reproducible, move it forward to rotate";
    let Some(raw) = raw else {
        report.error(base, "`auth: x509` needs `client-certificates.not-before`", help);
        return None;
    };
    let nb = required(raw.not_before.as_ref(), &format!("{base}.not-before"), report)?;
    let Some(start) = not_before(nb) else {
        report.error(
            format!("{base}.not-before"),
            format!("{} is not a date YYYY-MM-DD or a UTC time YYYY-MM-DDTHH:MM:SSZ", quote_value(nb)),
            help,
        );
        return None;
    };
    let days = match raw.validity_days {
        None => DEFAULT_VALIDITY_DAYS,
        Some(d) if (1..=3650).contains(&d) => d as u32,
        Some(d) => {
            report.error(
                format!("{base}.validity-days"),
                format!("{d} is out of range"),
                "use 1 to 3650 days (default 365)",
            );
            return None;
        }
    };
    if days <= 30 {
        report.warning(
            format!("{base}.validity-days"),
            format!("the client certificates expire {days} day(s) after their not-before"),
            "nodes stop authenticating then; use a longer validity unless you rotate that often",
        );
    }
    let end = start + time::Duration::days(i64::from(days));
    if let Some(ca) = ca {
        if end.unix_timestamp() > ca.not_after {
            report.warning(
                format!("{base}.validity-days"),
                "the client certificates outlive the cluster CA",
                "they stop verifying when the CA expires; shorten the validity or renew the CA",
            );
        }
    }
    Some(Validity { not_before: start, days })
}

/// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ`, in years 2000-2999.
fn not_before(s: &str) -> Option<time::OffsetDateTime> {
    let (date, clock) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z')?)),
        None => (s, None),
    };
    let num = |p: &str| (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<u32>().ok())?;
    let ymd: Vec<u32> = date.split('-').map(num).collect::<Option<_>>()?;
    let &[y, m, d] = ymd.as_slice() else { return None };
    if date.len() != 10 || !(2000..=2999).contains(&y) {
        return None;
    }
    let date = time::Date::from_calendar_date(y as i32, time::Month::try_from(m as u8).ok()?, d as u8).ok()?;
    let time = match clock {
        None => time::Time::MIDNIGHT,
        Some(c) => {
            let hms: Vec<u32> = c.split(':').map(num).collect::<Option<_>>()?;
            let &[h, mi, se] = hms.as_slice() else { return None };
            if c.len() != 8 {
                return None;
            }
            time::Time::from_hms(h as u8, mi as u8, se as u8).ok()?
        }
    };
    Some(date.with_time(time).assume_utc())
}
