//! `cluster.auth` and each mode's own settings.

use super::KUBELET_VERIFIED;
use crate::facts::RawCluster;
use crate::model::{AuthMode, Channel, DEFAULT_JOIN_TOKEN_TTL_HOURS};
use crate::pki::{CaCert, Validity};
use crate::report::Report;
use crate::values::{quote_value, required};

/// The auth mode (default `token`), checked with its settings; warns about the
/// settings of other modes it ignores.
pub(super) fn check_auth(
    c: &RawCluster,
    channel: Option<&Channel>,
    ca: Option<&CaCert>,
    report: &mut Report,
) -> Option<AuthMode> {
    let auth = match c.auth.as_deref() {
        None | Some("token") => token(c, channel, report),
        Some("x509") => check_client_certs(c.client_certificates.as_ref(), ca, report).map(AuthMode::X509),
        Some("microk8s-join") => microk8s_join(c, channel, report),
        Some(other) => {
            report.error(
                "$.cluster.auth",
                format!("auth mode {} is not supported", quote_value(other)),
                "use `auth: token` (static tokens merged into known_tokens.csv), `auth: x509` (client certificates signed by the cluster CA) or `auth: microk8s-join` (MicroK8s's own worker join, 1.23+)",
            );
            None
        }
    };
    if c.microk8s_join.is_some() && !matches!(auth, Some(AuthMode::MicroK8sJoin { .. })) {
        report.warning("$.cluster.microk8s-join", "ignored unless `auth: microk8s-join`", "remove it");
    }
    auth
}

fn token(c: &RawCluster, channel: Option<&Channel>, report: &mut Report) -> Option<AuthMode> {
    // canonical/microk8s 805dfe59 (first in 1.28): new installations use
    // certificate auth and no longer pass --token-auth-file.
    if channel.is_some_and(|ch| ch.release.fresh_is_x509_only) {
        report.warning(
            "$.cluster.microk8s.channel",
            "with `auth: token`: MicroK8s 1.28 and later, installed fresh, do not read known_tokens.csv (no --token-auth-file)",
            "use `auth: x509`, or check that args/kube-apiserver on the control plane has --token-auth-file (merge-known-tokens.sh refuses otherwise)",
        );
        report.warning(
            "$.cluster.microk8s.channel",
            format!("with `auth: token`: {KUBELET_VERIFIED}; with tokens a worker's kubelet serves a certificate of the worker's own CA, so kubectl logs, exec and port-forward to pods on token-authenticated workers fail with x509 errors"),
            "use `auth: x509` (the generator then issues each kubelet a serving certificate from the cluster CA), or `auth: microk8s-join` (1.23+: the control plane signs the kubelet's certificates)",
        );
    }
    if c.client_certificates.is_some() {
        report.warning("$.cluster.client-certificates", "ignored with `auth: token`", "remove it, or set `auth: x509`");
    }
    Some(AuthMode::Token)
}

fn microk8s_join(c: &RawCluster, channel: Option<&Channel>, report: &mut Report) -> Option<AuthMode> {
    let mut ok = true;
    if let Some(v) = channel.filter(|ch| !ch.release.worker_join).and_then(|ch| ch.version) {
        report.error(
            "$.cluster.auth",
            format!("`auth: microk8s-join` needs MicroK8s 1.23 or later; the channel is {}.{}", v.0, v.1),
            "`microk8s join --worker` first appears in 1.23 (canonical/microk8s 1.23:scripts/cluster/join.py); use `auth: token` or `auth: x509` for older channels",
        );
        ok = false;
    }
    if let Some(lb) = &c.load_balancer {
        let own = lb.mode.as_deref().unwrap_or("node-local") == "node-local"
            && lb.kind.as_deref() == Some("microk8s-proxy")
            && lb.address.is_none()
            && lb.traefik.is_none();
        if !own {
            report.error(
                "$.cluster.load-balancer",
                "with `auth: microk8s-join` the load balancer is MicroK8s's own: the join writes kubeconfigs for 127.0.0.1:16443 and configures the snap's proxy (traefik on 1.23-1.24, apiserver-proxy on 1.25+)",
                "remove `load-balancer` (or say `kind: microk8s-proxy`)",
            );
            ok = false;
        }
    }
    if c.client_certificates.is_some() {
        report.warning(
            "$.cluster.client-certificates",
            "ignored with `auth: microk8s-join`",
            "remove it: the control plane's cluster-agent signs the certificates",
        );
    }
    let hours = c.microk8s_join.as_ref().and_then(|j| j.token_ttl_hours).unwrap_or(DEFAULT_JOIN_TOKEN_TTL_HOURS);
    if !(1..=8760).contains(&hours) {
        report.error(
            "$.cluster.microk8s-join.token-ttl-hours",
            format!("{hours} is out of range"),
            "give 1 to 8760 hours (default 24)",
        );
        ok = false;
    }
    ok.then_some(AuthMode::MicroK8sJoin { token_ttl_secs: hours as u64 * 3600 })
}

pub const DEFAULT_VALIDITY_DAYS: u32 = 365;

pub(super) fn check_client_certs(
    raw: Option<&crate::facts::RawClientCertificates>,
    ca: Option<&CaCert>,
    report: &mut Report,
) -> Option<Validity> {
    let base = "$.cluster.client-certificates";
    let help = "give the first day the certificates are valid, e.g. `client-certificates: { not-before: 2026-11-01 }`; it is fixed so the output is reproducible, move it forward to rotate";
    let Some(raw) = raw else {
        report.error(base, "`auth: x509` needs `client-certificates.not-before`", help);
        return None;
    };
    let nb = required(raw.not_before.as_ref(), &format!("{base}.not-before"), report)?;
    let parsed = nb.split('-').map(|p| p.parse::<u32>().ok()).collect::<Option<Vec<_>>>();
    let date = match parsed.as_deref() {
        Some([y, m, d])
            if nb.len() == 10
                && (2000..=2999).contains(y)
                && (1..=12).contains(m)
                && (1..=31).contains(d)
                && time::Date::from_calendar_date(*y as i32, time::Month::try_from(*m as u8).ok()?, *d as u8)
                    .is_ok() =>
        {
            (*y as i32, *m as u8, *d as u8)
        }
        _ => {
            report.error(format!("{base}.not-before"), format!("{} is not a date YYYY-MM-DD", quote_value(nb)), help);
            return None;
        }
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
    let start = time::Date::from_calendar_date(date.0, time::Month::try_from(date.1).ok()?, date.2)
        .ok()?
        .midnight()
        .assume_utc();
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
    Some(Validity { not_before: date, days })
}
