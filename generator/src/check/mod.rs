//! Raw facts -> checked model. Every problem is collected (with its YAML path) before
//! anything is rendered; rendering only ever sees a [`crate::model::Facts`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use crate::facts::RawFacts;
use crate::model::*;
use crate::pki::{CaCert, Validity};
use crate::report::{Report, Severity};

mod values;
pub use values::*;

/// The largest `workers[].generation`.
pub const MAX_GENERATION: i64 = 1_000_000;

/// Check everything. `base_dir` resolves `ca.cert-file`.
pub fn validate(raw: &RawFacts, base_dir: &Path, report: &mut Report) -> Option<Facts> {
    let Some(c) = &raw.cluster else {
        report.error("$.cluster", "required key `cluster` is missing", "see docs/cluster-facts.md for the schema");
        return None;
    };
    let name = required(c.name.as_ref(), "$.cluster.name", report);
    if let Some(n) = name {
        check_dns_label(n, "$.cluster.name", "the cluster name", report);
    }

    let channel = match c.microk8s.as_ref() {
        None => required::<String>(None, "$.cluster.microk8s", report).and(None),
        Some(m) => {
            let ch = required(m.channel.as_ref(), "$.cluster.microk8s.channel", report)
                .and_then(|ch| check_channel(ch, report));
            let local = m.local_snap.as_ref().and_then(|l| {
                let base = "$.cluster.microk8s.local-snap";
                let pair = |path: &str, f: Option<&String>, a: Option<&String>, report: &mut Report| {
                    let file = required(f, &format!("{path}.file"), report)?;
                    let assert = required(a, &format!("{path}.assert"), report)?;
                    let mut ok = true;
                    for (v, k, ext) in [(file, "file", ".snap"), (assert, "assert", ".assert")] {
                        if !is_safe_abs_path(v) || !v.ends_with(ext) {
                            report.error(
                                format!("{path}.{k}"),
                                format!("{} is not a plain absolute path to a {ext} file", quote_value(v)),
                                "use letters, digits and / . _ - only, e.g. /var/cache/mk8s/microk8s_1234.snap",
                            );
                            ok = false;
                        } else if WORLD_WRITABLE_DIRS.iter().any(|d| v.starts_with(d)) {
                            // The bootstrap installs it as root (`snap ack`, `snap install`):
                            // in a world-writable directory anyone could swap it first.
                            report.error(
                                format!("{path}.{k}"),
                                format!("{} is in a world-writable directory", quote_value(v)),
                                "put the snap files where only root writes, e.g. /var/cache/mk8s/",
                            );
                            ok = false;
                        }
                    }
                    ok.then(|| (file.clone(), assert.clone()))
                };
                let (file, assert) = pair(base, l.file.as_ref(), l.assert.as_ref(), report)?;
                let want = ch.as_ref().map_or(crate::model::release::latest(), |c| c.release).base_snap;
                let base_pair = match &l.base {
                    None => {
                        report.warning(
                            base,
                            format!(
                                "no `base` snap is given: MicroK8s {} runs on the {want} snap, which snapd cannot fetch \
                                 without the store, so the install fails unless the image already has {want}",
                                ch.as_ref().map(|c| c.text.as_str()).unwrap_or("?")
                            ),
                            &format!(
                                "bake {want} into the image, or add `base: {{ file: /var/cache/mk8s/{want}_REV.snap, \
                                 assert: /var/cache/mk8s/{want}_REV.assert }}` (`snap download {want}` makes both)"
                            ),
                        );
                        None
                    }
                    Some(b) => {
                        let p = format!("{base}.base");
                        let got = pair(&p, b.file.as_ref(), b.assert.as_ref(), report)?;
                        // `snap download NAME` names its files NAME_REV.snap.
                        let name = got.0.rsplit('/').next().unwrap_or("").split('_').next().unwrap_or("");
                        if name != want {
                            report.error(
                                format!("{p}.file"),
                                format!("{} is not the {want} snap this MicroK8s runs on", quote_value(&got.0)),
                                &format!("use the files `snap download {want}` writes ({want}_REV.snap and .assert)"),
                            );
                            return None;
                        }
                        Some(got)
                    }
                };
                Some(LocalSnap { file, assert, base: base_pair })
            });
            ch.map(|c| Channel { local_snap: local, ..c })
        }
    };

    let ca = required(c.ca.as_ref(), "$.cluster.ca", report).and_then(|ca| load_ca(ca, base_dir, report));

    let auth = match c.auth.as_deref() {
        None | Some("token") => {
            // canonical/microk8s 805dfe59 (first in 1.28): new installations use
            // certificate auth and no longer pass --token-auth-file.
            if channel.as_ref().is_some_and(|ch| ch.release.fresh_is_x509_only) {
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
                report.warning(
                    "$.cluster.client-certificates",
                    "ignored with `auth: token`",
                    "remove it, or set `auth: x509`",
                );
            }
            Some(AuthMode::Token)
        }
        Some("x509") => check_client_certs(c.client_certificates.as_ref(), ca.as_ref(), report).map(AuthMode::X509),
        Some("microk8s-join") => {
            let mut ok = true;
            if let Some(v) = channel.as_ref().filter(|ch| !ch.release.worker_join).and_then(|ch| ch.version) {
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
            let hours =
                c.microk8s_join.as_ref().and_then(|j| j.token_ttl_hours).unwrap_or(DEFAULT_JOIN_TOKEN_TTL_HOURS);
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

    let apiserver_port = port(c.apiserver_port, DEFAULT_APISERVER_PORT, "$.cluster.apiserver-port", report);

    // Names and addresses must be unique across control plane and workers.
    let mut names: HashMap<&str, String> = HashMap::new();
    let mut addrs: HashMap<IpAddr, String> = HashMap::new();

    if c.control_plane.is_empty() {
        report.error(
            "$.cluster.control-plane",
            "no control-plane nodes",
            "list every control-plane node with its name and address",
        );
    }
    let mut control_plane = Vec::new();
    for (i, n) in c.control_plane.iter().enumerate() {
        let base = format!("$.cluster.control-plane[{i}]");
        let name = required(n.name.as_ref(), &format!("{base}.name"), report);
        if let Some(name) = name {
            if check_node_name(name, &format!("{base}.name"), report) {
                unique(&mut names, name, format!("{base}.name"), "node name", report);
            }
        }
        let addr = required(n.address.as_ref(), &format!("{base}.address"), report)
            .and_then(|a| check_ip(a, &format!("{base}.address"), report))
            .inspect(|ip| {
                // A warning, not an error: a test bed on one machine runs its
                // simulated control plane on 127.0.0.x.
                if ip.to_canonical().is_loopback() {
                    report.warning(
                        format!("{base}.address"),
                        format!(
                            "{ip} is a loopback address: every worker would dial itself, not this control-plane node"
                        ),
                        "give the control-plane node's address on the network the workers reach it by",
                    );
                }
            });
        if let (Some(name), Some(a)) = (name, addr) {
            unique_addr(&mut addrs, a, format!("{base}.address"), report);
            control_plane.push(ControlPlaneNode { name: name.clone(), address: a });
        }
    }

    if control_plane.len() == 2 {
        // MicroK8s's HA is dqlite's Raft: three voters from the third node on; with
        // two, one is a voter and one a spare (canonical/microk8s docs, "High
        // Availability"), so losing the voter stops the datastore.
        report.warning(
            "$.cluster.control-plane",
            "two control-plane nodes: MicroK8s's datastore (dqlite) needs three to survive the loss of one; \
             with two, workers fail over between apiservers but the cluster stops when its datastore voter does",
            "add a third control-plane node (microk8s add-node) for high availability",
        );
    }
    let cx = crate::balancer::CheckCx { apiserver_port, release: channel.as_ref().map(|c| c.release) };
    let load_balancer = crate::balancer::check(c.load_balancer.as_ref(), &cx, report);

    let dns = {
        let d = c.dns.as_ref();
        let domain = d.and_then(|d| d.cluster_domain.clone()).unwrap_or_else(|| DEFAULT_CLUSTER_DOMAIN.into());
        check_dns_name(&domain, "$.cluster.dns.cluster-domain", "cluster-domain", report);
        let ip = d.and_then(|d| d.cluster_dns.clone()).unwrap_or_else(|| DEFAULT_CLUSTER_DNS.into());
        let (domain_given, dns_given) =
            (d.is_some_and(|d| d.cluster_domain.is_some()), d.is_some_and(|d| d.cluster_dns.is_some()));
        check_ip(&ip, "$.cluster.dns.cluster-dns", report).map(|ip| Dns {
            cluster_domain: domain,
            cluster_dns: ip,
            domain_given,
            dns_given,
        })
    };

    let pod_cidr = check_pod_cidr(c.pod_cidr.as_deref().unwrap_or(DEFAULT_POD_CIDR), report);

    let ready_deadline_secs = match c.bootstrap.as_ref().and_then(|b| b.ready_deadline_seconds) {
        None => 900,
        Some(s) if (60..=86_400).contains(&s) => s as u64,
        Some(s) => {
            report.error(
                "$.cluster.bootstrap.ready-deadline-seconds",
                format!("{s} is out of range"),
                "use 60 to 86400 seconds",
            );
            900
        }
    };

    if raw.workers.is_empty() {
        report.warning("$.workers", "no workers are listed", "add `workers: [{ name: worker-1 }]`");
    }
    let mut workers = Vec::new();
    for (i, w) in raw.workers.iter().enumerate() {
        let base = format!("$.workers[{i}]");
        let Some(name) = required(w.name.as_ref(), &format!("{base}.name"), report) else { continue };
        if check_node_name(name, &format!("{base}.name"), report) {
            unique(&mut names, name, format!("{base}.name"), "node name", report);
            if name.len() > MAX_WORKER_NAME {
                report.error(
                    format!("{base}.name"),
                    format!("worker name is {} characters long: its fleet file NAME.user-data would be longer than a file name may be (255 bytes)", name.len()),
                    &format!("use at most {MAX_WORKER_NAME} characters"),
                );
            }
        }
        let address = w.address.as_ref().and_then(|a| {
            let ip = check_ip(a, &format!("{base}.address"), report)?;
            unique_addr(&mut addrs, ip, format!("{base}.address"), report);
            Some(ip)
        });
        for (k, v) in &w.labels {
            check_label(k, v, &crate::spans::child_key(&format!("{base}.labels"), k), report);
        }
        for (j, a) in w.kubelet_args.iter().enumerate() {
            check_kubelet_arg(a, &format!("{base}.kubelet-args[{j}]"), report);
        }
        let generation = match w.generation {
            None => 0,
            Some(g) if (0..=MAX_GENERATION).contains(&g) => {
                if g > 0 && !matches!(auth, Some(AuthMode::MicroK8sJoin { .. }) | None) {
                    report.warning(
                        format!("{base}.generation"),
                        "generation changes only the join token of `auth: microk8s-join`; this cluster's \
                         credentials stay as they are",
                        "remove it, or use it with auth: microk8s-join",
                    );
                }
                g as u32
            }
            Some(g) => {
                report.error(
                    format!("{base}.generation"),
                    format!("{g} is out of range"),
                    &format!("use 0 to {MAX_GENERATION}; raise it by one to give the worker a new join token"),
                );
                0
            }
        };
        workers.push(Worker {
            name: name.clone(),
            generation,
            address,
            labels: w.labels.clone(),
            kubelet_args: w.kubelet_args.clone(),
        });
    }

    if channel.as_ref().is_some_and(|ch| ch.release.verifies_kubelet_when_fresh)
        && matches!(auth, Some(AuthMode::X509(_)))
    {
        if let Some((i, who)) = without_address(&workers) {
            report.warning(
                format!("$.workers[{i}]"),
                format!("{who} no `address`, so the kubelet serving certificate can name no IP; {KUBELET_VERIFIED}: kubectl logs, exec and port-forward to pods on such a worker fail with x509 errors"),
                "give each worker its `address` (the IP its kubelet uses; it also becomes --node-ip), or use `auth: microk8s-join` (1.23+: the control plane signs a serving certificate with the node's addresses)",
            );
        }
    }

    if channel.as_ref().is_some_and(|ch| !ch.release.verifies_kubelet_when_fresh) {
        if let Some((i, who)) = without_address(&workers) {
            // kube-apiserver's default --kubelet-preferred-address-types puts Hostname
            // first; MicroK8s sets InternalIP first only from 1.28 (4086f4ac).
            report.warning(
                format!("$.workers[{i}]"),
                format!("{who} no `address`: MicroK8s 1.27 and older apiservers dial each kubelet by its node name (the Node's Hostname address), which the control plane must resolve, or kubectl logs, exec and port-forward to pods on such a worker fail"),
                "give each worker its `address` (hosts-entries.sh in the control-plane bundle then adds the name to /etc/hosts on the control plane), or make the names resolvable in DNS",
            );
        }
    }

    // 1.29+ join.py accepts only an IPv4 literal in the connection string
    // (canonical/microk8s 1.30:scripts/wrappers/common/cluster/utils.py:L557-597,
    // get_valid_connection_parts: exactly one ':'; 3488ddd3).
    if matches!(auth, Some(AuthMode::MicroK8sJoin { .. }))
        && channel.as_ref().is_some_and(|ch| ch.release.join_ipv4_only)
        && !control_plane.is_empty()
    {
        if control_plane.iter().all(|c| c.address.is_ipv6()) {
            report.error(
                "$.cluster.control-plane",
                "with `auth: microk8s-join` on MicroK8s 1.29+, `microk8s join` takes only an IPv4 address (get_valid_connection_parts), and every control-plane address here is IPv6",
                "give the control planes' IPv4 addresses, or use `auth: x509`",
            );
        } else if let Some(i) = control_plane.iter().position(|c| c.address.is_ipv6()) {
            report.warning(
                format!("$.cluster.control-plane[{i}]"),
                "IPv6: MicroK8s 1.29+ `microk8s join` takes only IPv4 addresses; workers join through the IPv4 control planes only",
                "give this control plane's IPv4 address if it has one",
            );
        }
    }

    if report.has_errors() {
        return None;
    }
    Some(Facts {
        name: name?.clone(),
        channel: channel?,
        ca: ca?,
        auth: auth?,
        control_plane,
        apiserver_port,
        load_balancer: load_balancer?,
        dns: dns?,
        pod_cidr: pod_cidr?,
        pod_cidr_given: c.pod_cidr.is_some(),
        ready_deadline_secs,
        workers,
    })
}

pub const DEFAULT_VALIDITY_DAYS: u32 = 365;

/// `NAME.user-data` (the longer fleet file name) must fit in 255 bytes.
pub const MAX_WORKER_NAME: usize = 255 - ".user-data".len();

/// What a fresh MicroK8s 1.28+ apiserver does when it talks to a kubelet
/// (canonical/microk8s 1.28+ `microk8s-resources/default-args/kube-apiserver`:
/// `--kubelet-certificate-authority=${SNAP_DATA}/certs/ca.crt`, commit 0071dd1d, and
/// `--kubelet-preferred-address-types=InternalIP,...`, commit 4086f4ac).
const KUBELET_VERIFIED: &str = "a MicroK8s 1.28+ apiserver installed fresh dials each kubelet by its InternalIP and verifies the kubelet's serving certificate against the cluster CA";

fn check_client_certs(
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

fn check_channel(s: &str, report: &mut Report) -> Option<Channel> {
    let path = "$.cluster.microk8s.channel";
    let help = "use a snap channel such as 1.30/stable (track/risk), e.g. 1.20/stable or 1.28/candidate";
    let mut parts = s.split('/');
    let track = parts.next().unwrap_or("");
    let risk = parts.next();
    let branch = parts.next();
    let bad = parts.next().is_some()
        || !matches!(risk, None | Some("stable" | "candidate" | "beta" | "edge"))
        || branch.is_some_and(|b| !is_dns_label(b));
    if bad {
        report.error(path, format!("{} is not a MicroK8s snap channel", quote_value(s)), help);
        return None;
    }
    if track == "latest" {
        report.warning(
            path,
            "channel `latest` follows every new Kubernetes minor",
            "pin a track such as 1.30/stable so workers match the control plane",
        );
        return Some(Channel {
            text: s.into(),
            local_snap: None,
            version: None,
            release: crate::model::release::latest(),
        });
    }
    if track.ends_with("-strict") || track.ends_with("-eksd") {
        report.error(path, format!("track {track:?} is not supported"), "use a classic track such as 1.30/stable");
        return None;
    }
    // Plain digits only: u32's parser also takes `+1`.
    let number = |p: &str| {
        (!p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0')))
            .then(|| p.parse::<u32>().ok())
            .flatten()
    };
    let version = track.split_once('.').and_then(|(a, b)| Some((number(a)?, number(b)?)));
    let Some((major, minor)) = version else {
        report.error(path, format!("{} is not a MicroK8s snap channel", quote_value(s)), help);
        return None;
    };
    let release = match crate::model::release::release(Some((major, minor))) {
        Some(r) => r,
        None => {
            report.error(
                path,
                format!("MicroK8s {major}.{minor} is not supported"),
                "worker-only nodes need MicroK8s 1.19 or later",
            );
            return None;
        }
    };
    Some(Channel { text: s.into(), local_snap: None, version: Some((major, minor)), release })
}

fn load_ca(raw: &crate::facts::RawCa, base_dir: &Path, report: &mut Report) -> Option<CaCert> {
    let (pem, path) = match (&raw.cert_file, &raw.cert) {
        (Some(file), None) => {
            let p = base_dir.join(file);
            match std::fs::read_to_string(&p) {
                Ok(t) => (t, "$.cluster.ca.cert-file"),
                Err(e) => {
                    report.error("$.cluster.ca.cert-file", format!("cannot read {}: {e}", p.display()), "the path is relative to the facts file; copy the CA from a control-plane node's /var/snap/microk8s/current/certs/ca.crt");
                    return None;
                }
            }
        }
        (None, Some(pem)) => (pem.clone(), "$.cluster.ca.cert"),
        _ => {
            report.error(
                "$.cluster.ca",
                "give exactly one of `cert-file` and `cert`",
                "cert-file: path to ca.crt, or cert: the PEM inline",
            );
            return None;
        }
    };
    match CaCert::from_pem(&pem) {
        Ok(ca) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            for (severity, message, help) in ca.findings(now) {
                match severity {
                    Severity::Error => report.error(path, message, help),
                    Severity::Warning => report.warning(path, message, help),
                }
            }
            Some(ca)
        }
        Err(e) => {
            report.error(
                path,
                format!("the CA certificate is not usable: {e}"),
                "use the cluster CA (certs/ca.crt on a control-plane node), a PEM X.509 certificate with CA:TRUE",
            );
            None
        }
    }
}

/// An https URL made only of characters that need no quoting anywhere we put it.
/// The first worker without an `address` (its index) and how a warning names it
/// and the others like it ("worker \"w-1\" has" / "... and 2 other worker(s) have").
fn without_address(workers: &[Worker]) -> Option<(usize, String)> {
    let mut missing = workers.iter().enumerate().filter(|(_, w)| w.address.is_none());
    let (i, first) = missing.next()?;
    let who = match missing.count() {
        0 => format!("worker {:?} has", first.name),
        n => format!("worker {:?} and {n} other worker(s) have", first.name),
    };
    Some((i, who))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mk8s_bootstrap::plan::Flavour;

    #[test]
    fn dns_names() {
        for ok in ["worker-1", "a", "0644", "on", "w.example.com", "1e3"] {
            assert!(is_dns_name(ok), "{ok}");
        }
        for bad in ["", "Worker", "-a", "a-", "a,b", "a\"b", "a\nb", "a b", "a_b", "system:masters", &"x".repeat(64)] {
            assert!(!is_dns_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn channels_map_to_flavours() {
        let mut r = Report::default();
        let f = |s: &str, r: &mut Report| check_channel(s, r).map(|c| c.release.flavour);
        assert_eq!(f("1.20/stable", &mut r), Some(Flavour::Daemons));
        assert_eq!(f("1.19", &mut r), Some(Flavour::Daemons));
        assert_eq!(f("1.24/edge", &mut r), Some(Flavour::Kubelite));
        assert_eq!(f("1.30/stable", &mut r), Some(Flavour::KubeliteApiserverProxy));
        assert!(!r.has_errors());
        for bad in [
            "1.18/stable",
            "2.0",
            "1.30/stabel",
            "1.30/stable/x/y",
            "one",
            "1.30-strict/stable",
            "",
            "+1.+30/stable",
            "1.030",
            "01.30",
        ] {
            let mut r = Report::default();
            assert_eq!(f(bad, &mut r), None, "{bad}");
            assert!(r.has_errors());
        }
    }

    #[test]
    fn durations_and_urls() {
        assert!(is_duration("5s") && is_duration("500ms") && is_duration("1m"));
        assert!(!is_duration("5") && !is_duration("0s") && !is_duration("-1s") && !is_duration("5 s"));
        // The docs say "at most 1h": 1h is a duration (2h is one, over the limit).
        assert!(is_duration("1h") && duration_ms("1h") == 3_600_000 && duration_ms("2h") > 3_600_000);
        assert!(is_safe_url("https://example.com/traefik_v3.6.2_linux_amd64.tar.gz"));
        assert!(is_archive_url("https://example.com/t.tar.gz?X-Amz-Signature=ab&X-Amz-Expires=60"));
        assert!(is_archive_url("https://example.com/t.tgz#x"));
        assert!(!is_archive_url("https://example.com/traefik?name=x.tar.gz"));
        for ok in ["/usr/local/bin/traefik", "/opt/traefik/bin/traefik-3.6", "/usr/sbin/tfk"] {
            assert!(is_system_binary_path(ok), "{ok}");
        }
        for bad in [
            "/tmp/traefik",
            "/var/tmp/t",
            "/home/u/t",
            "/usr/local/bin/",
            "/usr/local/bin/../../tmp/t",
            "/opt//t",
            "/usr/local/binx/t",
        ] {
            assert!(!is_system_binary_path(bad), "{bad}");
        }
        assert!(
            !is_safe_url("http://example.com/x")
                && !is_safe_url("https://a.b/x y")
                && !is_safe_url("https://a/'$(id)'")
        );
        assert!(has_userinfo("https://u:p@a.example/x") && has_userinfo("https://u@a.example"));
        assert!(!has_userinfo("https://a.example/x@y") && !has_userinfo("https://a.example/x?u=a@b"));
    }

    #[test]
    fn generation_is_bounded_and_meant_for_microk8s_join() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/microk8s-join");
        let check = |auth: &str, generation: &str| {
            let text = format!(
                "cluster:\n  name: c\n  microk8s: {{ channel: 1.30/stable }}\n  ca: {{ cert-file: ca.crt }}\n  auth: {auth}\n  control-plane:\n    - {{ name: cp-1, address: 10.0.0.2 }}\nworkers:\n  - {{ name: w-1, generation: {generation} }}\n"
            );
            let crate::Loaded { facts, report, .. } = crate::load(&text, &dir);
            (facts.map(|f| f.workers[0].generation), report)
        };
        let (g, r) = check("microk8s-join", "3");
        assert_eq!((g, r.problems.len()), (Some(3), 0), "{:?}", r.problems);
        for bad in ["-1", "1000001"] {
            let (_, r) = check("microk8s-join", bad);
            assert!(r.problems.iter().any(|p| p.path == "$.workers[0].generation"), "{bad}: {:?}", r.problems);
            assert!(r.has_errors());
        }
        let (g, r) = check("token", "1");
        assert_eq!(g, Some(1));
        assert!(!r.has_errors() && r.problems.iter().any(|p| p.path == "$.workers[0].generation"), "{:?}", r.problems);
        assert!(!check("token", "0").1.problems.iter().any(|p| p.path == "$.workers[0].generation"));
    }

    #[test]
    fn traefik_versions_and_local_snap_paths() {
        let check = |lb: &str, snap: &str| {
            let text = format!(
                "cluster:\n  name: c\n  microk8s: {{ channel: 1.30/stable{snap} }}\n  ca: {{ cert-file: ca.crt }}\n  auth: x509\n  client-certificates: {{ not-before: 2026-01-01 }}\n  control-plane:\n    - {{ name: cp-1, address: 10.0.0.2 }}\n  load-balancer: {lb}\nworkers:\n  - {{ name: w-1 }}\n"
            );
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/microk8s-join");
            crate::load(&text, &dir)
                .report
                .problems
                .iter()
                .filter(|p| p.severity == crate::report::Severity::Error)
                .map(|p| p.path.clone())
                .collect::<Vec<_>>()
        };
        let lb = |v: &str| format!("{{ kind: traefik, traefik: {{ version: \"{v}\" }} }}");
        for ok in ["3.6.2", "v3.7", "3.7.15"] {
            assert!(check(&lb(ok), "").is_empty(), "{ok}: {:?}", check(&lb(ok), ""));
        }
        for bad in ["3.6.garbage", "3.6.2.1", "3", "v3.x"] {
            assert!(check(&lb(bad), "").iter().any(|p| p.ends_with("traefik.version")), "{bad}");
        }
        let snap =
            |dir: &str| format!(", local-snap: {{ file: {dir}microk8s_1.snap, assert: {dir}microk8s_1.assert }}");
        assert!(check("{ kind: traefik }", &snap("/var/cache/mk8s/")).iter().all(|p| !p.contains("local-snap")));
        for bad in ["/tmp/", "/var/tmp/x/", "/dev/shm/"] {
            assert!(check("{ kind: traefik }", &snap(bad)).iter().any(|p| p.contains("local-snap")), "{bad}");
        }
    }

    #[test]
    fn archive_urls_by_their_path() {
        assert!(is_archive_url("https://x/traefik_v3.7.0_linux_amd64.TAR.GZ"));
        assert!(is_archive_url("https://x/t.TGZ?sig=1"));
        assert!(!is_archive_url("https://x/traefik"));
        assert_eq!(unsupported_archive_url("https://x/t.tar.xz"), Some(".tar.xz"));
        assert_eq!(unsupported_archive_url("https://x/t.ZIP?a=b"), Some(".zip"));
        assert_eq!(unsupported_archive_url("https://x/t.tar.gz"), None);
        assert_eq!(unsupported_archive_url("https://x/traefik"), None);
    }

    #[test]
    fn names_and_addresses_that_redirect_are_refused() {
        let name = |n: &str| {
            let mut r = Report::default();
            check_node_name(n, "$", &mut r)
        };
        for bad in ["0x7f.1", "127.1", "2130706433", "0177.0.0.1", "localhost", "a.localhost", "localhost.localdomain"]
        {
            assert!(!name(bad), "{bad}");
        }
        for ok in ["worker-1", "w1.corp.example", "1e3", "0x7g", "10.130.0.5.nip"] {
            assert!(name(ok), "{ok}");
        }
        let ip = |a: &str| {
            let mut r = Report::default();
            check_ip(a, "$", &mut r).is_some()
        };
        for bad in ["255.255.255.255", "169.254.169.254", "169.254.1.2", "fe80::1", "0.0.0.0", "224.0.0.1"] {
            assert!(!ip(bad), "{bad}");
        }
        for ok in ["10.130.0.2", "fd00::2", "2001:db8::5", "192.168.1.255"] {
            assert!(ip(ok), "{ok}");
        }
        let mut r = Report::default();
        check_kubelet_arg("---kubeconfig=/tmp/x", "$", &mut r);
        assert!(r.has_errors(), "---kubeconfig");
    }

    #[test]
    fn kubelet_args_are_plain_and_unmanaged() {
        let check = |a: &str| {
            let mut r = Report::default();
            check_kubelet_arg(a, "$", &mut r);
            r.has_errors()
        };
        assert!(!check("--max-pods=200"));
        assert!(!check("--register-with-taints=dedicated=edge:NoSchedule"));
        assert!(check("--max-pods=$(reboot)"));
        assert!(check("--max-pods=1 --anonymous-auth=true"));
        assert!(check("--x=\"a\""));
        assert!(check("--kubeconfig=/tmp/x"));
        assert!(check("-v=2"));
        for bad in [
            "--config=/etc/k.yaml",
            "--anonymous-auth=true",
            "--anonymous-auth",
            "--authorization-mode=AlwaysAllow",
            "--help",
            "--version",
        ] {
            assert!(check(bad), "{bad}");
        }
        assert!(!check("--anonymous-auth=false") && !check("--authorization-mode=Webhook"));
    }

    #[test]
    fn long_values_are_cut_when_shown() {
        let long = "x".repeat(50_000);
        let shown = quote_value(&long);
        assert!(shown.len() < 120 && shown.ends_with("… (50000 bytes)"), "{shown}");
        assert_eq!(quote_value("short"), "\"short\"");
    }

    #[test]
    fn pod_cidrs() {
        let ok = |s: &str| {
            let mut r = Report::default();
            let v = check_pod_cidr(s, &mut r);
            assert_eq!(v.is_some(), !r.has_errors());
            v.is_some()
        };
        for good in [
            "10.1.0.0/16",
            "0.0.0.0/0",
            "192.168.1.0/24",
            "10.1.2.3/32",
            "fd02::/64",
            "10.1.0.0/16,fd02::/64",
            "fd02::/64,10.1.0.0/16",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in [
            "",
            "10.1.0.0",
            "10.1.0.1/16",
            "10.1.0.0/33",
            "10.1.0.0/016",
            "10.1.0.0/+8",
            "fd02::1/64",
            "fd02::/129",
            "10.1.0.0/16,10.2.0.0/16",
            "10.1.0.0/16,fd02::/64,fd03::/64",
            "10.1.0.0/16 ",
            "x/8",
            "10.1.0.0/16,",
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
        assert_eq!(
            parse_cidr("10.1.0.1/16").unwrap_err(),
            "\"10.1.0.1/16\" has host bits set (the network is 10.1.0.0/16)"
        );
        assert_eq!(
            parse_cidr("fd02::1/64").unwrap_err(),
            "\"fd02::1/64\" has host bits set (the network is fd02::/64)"
        );
    }

    #[test]
    fn host_port_brackets_ipv6() {
        assert_eq!(host_port("10.0.0.1", 16443), "10.0.0.1:16443");
        assert_eq!(host_port("fd00::1", 16443), "[fd00::1]:16443");
    }
}
