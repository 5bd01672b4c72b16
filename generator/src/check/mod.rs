//! Raw facts -> checked model. Every problem is collected (with its YAML path) before
//! anything is rendered; rendering only ever sees a [`crate::model::Facts`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use mk8s_bootstrap::plan::Flavour;

use crate::facts::{RawFacts, RawLoadBalancer};
use crate::model::*;
use crate::pki::{CaCert, Validity};
use crate::report::{Report, Severity};

/// Directories every local user may write to (sticky or not): nothing root
/// installs may come from there.
const WORLD_WRITABLE_DIRS: &[&str] = &["/tmp/", "/var/tmp/", "/dev/shm/", "/run/user/", "/run/lock/", "/var/crash/"];

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
                                format!("{} is not a plain absolute path to a {ext} file", show(v)),
                                "use letters, digits and / . _ - only, e.g. /var/cache/mk8s/microk8s_1234.snap",
                            );
                            ok = false;
                        } else if WORLD_WRITABLE_DIRS.iter().any(|d| v.starts_with(d)) {
                            // The bootstrap installs it as root (`snap ack`, `snap install`):
                            // in a world-writable directory anyone could swap it first.
                            report.error(
                                format!("{path}.{k}"),
                                format!("{} is in a world-writable directory", show(v)),
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
                                format!("{} is not the {want} snap this MicroK8s runs on", show(&got.0)),
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
                format!("auth mode {} is not supported", show(other)),
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
    let load_balancer =
        check_lb(c.load_balancer.as_ref(), apiserver_port, channel.as_ref().map(|c| c.release.flavour), report);

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
            report.error(format!("{base}.not-before"), format!("{} is not a date YYYY-MM-DD", show(nb)), help);
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

/// A key the schema requires; reported once per path.
fn required<'a, T>(v: Option<&'a T>, path: &str, report: &mut Report) -> Option<&'a T> {
    if v.is_none() {
        let key = path.rsplit('.').next().unwrap_or(path);
        report.error(path, format!("required key `{key}` is missing"), "see docs/cluster-facts.md for the schema");
    }
    v
}

fn unique<'a>(seen: &mut HashMap<&'a str, String>, name: &'a str, path: String, what: &str, report: &mut Report) {
    if let Some(first) = seen.get(name) {
        report.error(path, format!("duplicate {what} {name:?} (first at {first})"), "every node needs its own name");
    } else {
        seen.insert(name, path);
    }
}

fn unique_addr(seen: &mut HashMap<IpAddr, String>, a: IpAddr, path: String, report: &mut Report) {
    // ::ffff:10.0.0.1 is 10.0.0.1.
    let a = a.to_canonical();
    if let Some(first) = seen.get(&a) {
        report.error(path, format!("duplicate address {a} (first at {first})"), "every node needs its own address");
    } else {
        seen.insert(a, path);
    }
}

fn port(v: Option<i64>, default: u16, path: &str, report: &mut Report) -> u16 {
    match v {
        None => default,
        Some(p) if (1..=65535).contains(&p) => p as u16,
        Some(p) => {
            report.error(path, format!("port {p} is out of range"), "use a TCP port from 1 to 65535");
            default
        }
    }
}

/// RFC 1123 label: lowercase letters, digits and '-', 1 to 63 characters, starting and
/// ending with a letter or digit.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// RFC 1123 subdomain (what Kubernetes accepts as a node name).
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// How many characters of a value a message quotes.
pub const SHOWN_CHARS: usize = 80;

fn show(s: &str) -> String {
    // Debug-quote so control characters and quotes are visible, never raw; a long
    // value is cut (a 50 MB value is not worth printing, twice).
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{:?}… ({} bytes)", &s[..cut], s.len()),
        None => format!("{s:?}"),
    }
}

fn check_dns_label(s: &str, path: &str, what: &str, report: &mut Report) -> bool {
    let ok = is_dns_label(s);
    if !ok {
        report.error(
            path,
            format!("{what} {} is not an RFC 1123 label", show(s)),
            "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit",
        );
    }
    ok
}

fn check_dns_name(s: &str, path: &str, what: &str, report: &mut Report) -> bool {
    let ok = is_dns_name(s);
    if !ok {
        report.error(
            path,
            format!("{what} {} is not an RFC 1123 DNS name", show(s)),
            "use lowercase letters, digits, '-' and '.', e.g. cluster.local",
        );
    }
    ok
}

fn check_node_name(s: &str, path: &str, report: &mut Report) -> bool {
    let ok = is_dns_name(s);
    if !ok {
        report.error(
            path,
            format!("node name {} is not a valid Kubernetes node name", show(s)),
            "use lowercase letters, digits, '-' and '.' (RFC 1123), e.g. worker-1; commas, quotes, spaces and newlines are never allowed",
        );
        return false;
    }
    // Node names go into every control plane's /etc/hosts (hosts-entries.sh) and
    // are resolved by name: a name the resolver reads as an address, or one of the
    // machine's own names, would redirect what the control plane reaches.
    if looks_like_ipv4(s) {
        report.error(
            path,
            format!("node name {} reads as an IPv4 address (inet_aton takes decimal, octal and hex parts)", show(s)),
            "give the node a name with a letter outside 0x prefixes, e.g. worker-1",
        );
        return false;
    }
    let local = ["localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "broadcasthost"];
    if local.contains(&s) || s.ends_with(".localhost") {
        report.error(
            path,
            format!("node name {} is a name every machine gives itself", show(s)),
            "hosts-entries.sh would map it to this worker on every control-plane node; use the worker's own name",
        );
        return false;
    }
    true
}

/// Whether `s` is an IPv4 address to inet_aton(3): 1 to 4 dot-separated parts,
/// each decimal, octal (leading 0) or hex (0x).
fn looks_like_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() <= 4
        && parts.iter().all(|p| {
            let hex = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"));
            match hex {
                Some(h) => !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()),
                None => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
            }
        })
}

fn check_ip(s: &str, path: &str, report: &mut Report) -> Option<IpAddr> {
    match s.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() || ip.is_multicast() => {
            report.error(path, format!("{ip} cannot be a node address"), "use the node's unicast address");
            None
        }
        Ok(IpAddr::V4(v4)) if v4.is_broadcast() || v4.is_link_local() => {
            report.error(
                path,
                format!("{v4} cannot be a node address: it is the broadcast address or link-local (169.254.0.0/16, where the cloud metadata service answers)"),
                "use the node's unicast address",
            );
            None
        }
        Ok(IpAddr::V6(v6)) if v6.is_unicast_link_local() => {
            report.error(
                path,
                format!("{v6} is link-local: it needs an interface (zone) that facts cannot give"),
                "use the node's global or unique-local address",
            );
            None
        }
        Ok(ip) => Some(ip),
        Err(_) => {
            report.error(
                path,
                format!("{} is not an IPv4 or IPv6 address", show(s)),
                "write a bare address such as 10.130.0.2 or fd00::2 (no port, no brackets)",
            );
            None
        }
    }
}

/// `ADDR/PREFIX` with no host bits set; the address family decides the prefix range.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let Some((addr, prefix)) = s.split_once('/') else {
        return Err(format!("{} has no /PREFIX", show(s)));
    };
    let ip: IpAddr = addr.parse().map_err(|_| format!("{} is not an IPv4 or IPv6 address", show(addr)))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match prefix.parse::<u8>() {
        Ok(p) if p <= max && !prefix.starts_with('+') && (prefix == "0" || !prefix.starts_with('0')) => p,
        _ => return Err(format!("prefix {} is not 0 to {max}", show(prefix))),
    };
    let bits: u128 = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    };
    // The host part: every bit below the prefix (IPv4 sits in the top 32 bits).
    let host_mask = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    if bits & host_mask != 0 {
        let net = bits & !host_mask;
        let net: IpAddr = match ip {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from((net >> 96) as u32)),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(net)),
        };
        return Err(format!("{} has host bits set (the network is {net}/{prefix})", show(s)));
    }
    Ok((ip, prefix))
}

/// kube-proxy `--cluster-cidr`: one CIDR, or one IPv4 and one IPv6 CIDR (dual-stack).
fn check_pod_cidr(s: &str, report: &mut Report) -> Option<String> {
    let path = "$.cluster.pod-cidr";
    let help = "give the cluster's pod network as on the control plane's args/kube-proxy --cluster-cidr, e.g. 10.1.0.0/16 (MicroK8s's default), fd02::/64, or 10.1.0.0/16,fd02::/64 for dual-stack";
    let parts: Vec<&str> = s.split(',').collect();
    let mut families = Vec::new();
    for part in &parts {
        match parse_cidr(part) {
            Ok((ip, _)) => families.push(ip.is_ipv4()),
            Err(why) => {
                let message =
                    if parts.len() == 1 { format!("pod-cidr {why}") } else { format!("pod-cidr {}: {why}", show(s)) };
                report.error(path, message, help);
                return None;
            }
        }
    }
    if parts.len() > 2 || (parts.len() == 2 && families[0] == families[1]) {
        report.error(path, format!("{} is not one CIDR or an IPv4 and an IPv6 CIDR", show(s)), help);
        return None;
    }
    Some(s.to_string())
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
        report.error(path, format!("{} is not a MicroK8s snap channel", show(s)), help);
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
        report.error(path, format!("{} is not a MicroK8s snap channel", show(s)), help);
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

/// Milliseconds of a duration that [`is_duration`] accepted.
fn duration_ms(s: &str) -> u64 {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().unwrap_or(0);
    match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        _ => n.saturating_mul(3_600_000),
    }
}

fn is_duration(s: &str) -> bool {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    !num.is_empty()
        && num.len() <= 6
        && matches!(unit, "ms" | "s" | "m" | "h")
        && num.parse::<u32>().is_ok_and(|n| n > 0)
}

fn check_lb(
    raw: Option<&RawLoadBalancer>,
    apiserver_port: u16,
    flavour: Option<Flavour>,
    report: &mut Report,
) -> Option<LoadBalancer> {
    let base = "$.cluster.load-balancer";
    let default =
        RawLoadBalancer { mode: None, kind: None, address: None, port: None, traefik: None, health_check: None };
    let raw = raw.unwrap_or(&default);
    match raw.mode.as_deref().unwrap_or("node-local") {
        "node-local" => {
            if raw.address.is_some() || raw.port.is_some() {
                report.error(
                    format!("{base}.address"),
                    "`address` and `port` belong to `mode: external`",
                    "remove them, or set `mode: external`",
                );
            }
            let hc = raw.health_check.as_ref();
            let interval = hc.and_then(|h| h.interval.clone()).unwrap_or_else(|| "5s".into());
            let timeout = hc.and_then(|h| h.timeout.clone()).unwrap_or_else(|| "3s".into());
            let durations_ok = |report: &mut Report| {
                let mut ok = true;
                for (v, k) in [(&interval, "interval"), (&timeout, "timeout")] {
                    if !is_duration(v) {
                        report.error(
                            format!("{base}.health-check.{k}"),
                            format!("{} is not a duration", show(v)),
                            "write a whole number with ms, s or m, e.g. 5s",
                        );
                        ok = false;
                    } else if duration_ms(v) > 3_600_000 {
                        report.error(
                            format!("{base}.health-check.{k}"),
                            format!("{} is longer than an hour", show(v)),
                            "health checks find a dead apiserver within seconds: use e.g. interval 5s, timeout 3s",
                        );
                        ok = false;
                    }
                }
                if ok && duration_ms(&timeout) > duration_ms(&interval) {
                    report.error(
                        format!("{base}.health-check.timeout"),
                        format!("timeout {timeout} is longer than the interval {interval}"),
                        "a check must end before the next one starts: make the timeout at most the interval, e.g. interval 5s, timeout 3s",
                    );
                    ok = false;
                }
                ok
            };
            match raw.kind.as_deref().unwrap_or("traefik") {
                "traefik" => {}
                "haproxy" => {
                    if raw.traefik.is_some() {
                        report.error(
                            format!("{base}.traefik"),
                            "`traefik` settings do not apply to `kind: haproxy`",
                            "remove them",
                        );
                    }
                    let ok = durations_ok(report);
                    return ok.then(|| LoadBalancer::Haproxy {
                        path: DEFAULT_HAPROXY_PATH.into(),
                        health_interval: interval.clone(),
                        health_timeout: timeout.clone(),
                    });
                }
                "microk8s-proxy" => {
                    if raw.traefik.is_some() || raw.health_check.is_some() {
                        report.error(
                            format!("{base}.kind"),
                            "`traefik` and `health-check` do not apply to `kind: microk8s-proxy`",
                            "remove them: MicroK8s's proxy has its own behaviour",
                        );
                    }
                    let supported = matches!(flavour, Some(Flavour::KubeliteApiserverProxy));
                    if !supported {
                        report.error(
                            format!("{base}.kind"),
                            "`kind: microk8s-proxy` needs MicroK8s 1.25 or later",
                            "use `kind: traefik` or `kind: haproxy` for older channels",
                        );
                        return None;
                    }
                    return Some(LoadBalancer::MicroK8sProxy);
                }
                other => {
                    report.error(
                        format!("{base}.kind"),
                        format!("load-balancer kind {} is not supported", show(other)),
                        "use `kind: traefik` (default), `haproxy` or `microk8s-proxy`",
                    );
                    return None;
                }
            }
            let t = raw.traefik.clone().unwrap_or(crate::facts::RawTraefik {
                version: None,
                path: None,
                url: None,
                sha256: None,
            });
            let tb = format!("{base}.traefik");
            if let Some(v) = &t.version {
                // The whole version, 2 or 3 numeric parts: `3.6.garbage` is not one.
                let parsed: Option<Vec<u32>> =
                    v.strip_prefix('v').unwrap_or(v).split('.').map(|p| p.parse().ok()).collect();
                match parsed.as_deref() {
                    Some([a, b] | [a, b, _]) if (*a, *b) >= MIN_TRAEFIK => {}
                    Some([_, _] | [_, _, _]) => report.error(
                        format!("{tb}.version"),
                        format!("traefik {v} has no TCP health checks"),
                        "use traefik 3.6 or later; without health checks a share of connections go to a dead apiserver",
                    ),
                    _ => report.error(
                        format!("{tb}.version"),
                        format!("{} is not a traefik version", show(v)),
                        "write it as 3.6.2",
                    ),
                }
            }
            let path = t.path.clone().unwrap_or_else(|| DEFAULT_TRAEFIK_PATH.into());
            if !is_safe_abs_path(&path) {
                report.error(
                    format!("{tb}.path"),
                    format!("{} is not a plain absolute path", show(&path)),
                    "use letters, digits and / . _ - only, e.g. /usr/local/bin/traefik",
                );
            } else if !is_system_binary_path(&path) {
                // The bootstrap downloads into that directory as root: a world-writable
                // one (/tmp, /var/tmp, /home/...) lets anyone plant a symlink there.
                report.error(
                    format!("{tb}.path"),
                    format!("{} is not in a root-owned system directory", show(&path)),
                    &format!("use a path under {}, e.g. /usr/local/bin/traefik", SYSTEM_BIN_DIRS.join(", ")),
                );
            }
            let fetch = match (&t.url, &t.sha256) {
                (None, None) => None,
                (Some(u), Some(h)) => {
                    let mut ok_u = check_url(u, &format!("{tb}.url"), report);
                    if let Some(ext) = unsupported_archive_url(u).filter(|_| ok_u) {
                        report.error(
                            format!("{tb}.url"),
                            format!("a {ext} archive: the bootstrap unpacks only gzip tar archives (.tar.gz, .tgz)"),
                            "use traefik's .tar.gz release asset, or the program itself",
                        );
                        ok_u = false;
                    }
                    let ok_h = check_sha256(h, &format!("{tb}.sha256"), report);
                    (ok_u && ok_h).then(|| (u.clone(), h.to_ascii_lowercase()))
                }
                (url, sha) => {
                    report.error(
                        tb.clone(),
                        "`url` and `sha256` go together",
                        "give both, so the node verifies what it downloads",
                    );
                    if let Some(u) = url {
                        check_url(u, &format!("{tb}.url"), report);
                    }
                    if let Some(h) = sha {
                        check_sha256(h, &format!("{tb}.sha256"), report);
                    }
                    None
                }
            };
            durations_ok(report);
            Some(LoadBalancer::Traefik(TraefikLb { path, fetch, health_interval: interval, health_timeout: timeout }))
        }
        "external" => {
            if raw.kind.is_some() || raw.traefik.is_some() || raw.health_check.is_some() {
                report.error(
                    format!("{base}.kind"),
                    "`kind`, `traefik` and `health-check` belong to `mode: node-local`",
                    "remove them for an external load balancer",
                );
            }
            let port = port(raw.port, apiserver_port, &format!("{base}.port"), report);
            let Some(addr) = &raw.address else {
                report.error(
                    base,
                    "`mode: external` needs `address`",
                    "give the load balancer's IP address or DNS name",
                );
                return None;
            };
            if let Ok(ip) = addr.parse::<IpAddr>() {
                let why = match ip {
                    _ if ip.is_unspecified() => Some("the unspecified address"),
                    _ if ip.is_multicast() => Some("a multicast address"),
                    IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
                    _ => None,
                };
                if let Some(why) = why {
                    report.error(
                        format!("{base}.address"),
                        format!("{ip} is {why}, not a load balancer's address"),
                        "give the load balancer's unicast IP address or DNS name, e.g. 167.172.5.46 or api.example.com",
                    );
                    return None;
                }
            }
            // `10.0.0.300` is no address, and no name either (every label digits).
            let looks_numeric = addr.bytes().all(|b| b.is_ascii_digit() || b == b'.');
            let ok = addr.parse::<IpAddr>().is_ok() || (is_dns_name(addr) && !looks_numeric);
            if !ok {
                report.error(
                    format!("{base}.address"),
                    format!("{} is not an IP address or DNS name", show(addr)),
                    "e.g. 167.172.5.46 or api.example.com",
                );
                return None;
            }
            Some(LoadBalancer::External { host: addr.clone(), port })
        }
        other => {
            report.error(
                format!("{base}.mode"),
                format!("load-balancer mode {other:?} is not supported"),
                "use `node-local` or `external`",
            );
            None
        }
    }
}

pub fn is_safe_abs_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains("..")
        && p.len() < 256
        && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
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

/// Where a binary the bootstrap installs as root may live: directories only root
/// writes to on every distribution we target.
pub const SYSTEM_BIN_DIRS: &[&str] = &["/usr/local/bin/", "/usr/local/sbin/", "/usr/bin/", "/usr/sbin/", "/opt/"];

/// A plain absolute path below one of [`SYSTEM_BIN_DIRS`], with no `.` or `..`
/// component and a file name.
pub fn is_system_binary_path(p: &str) -> bool {
    SYSTEM_BIN_DIRS.iter().any(|d| p.starts_with(d) && p.len() > d.len())
        && !p.ends_with('/')
        && p.split('/').skip(1).all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Whether a download is a `.tar.gz` archive, from the URL's path (a presigned
/// URL's query string says nothing about the file).
pub fn is_archive_url(u: &str) -> bool {
    let path = u.split(['?', '#']).next().unwrap_or(u).to_ascii_lowercase();
    path.ends_with(".tar.gz") || path.ends_with(".tgz")
}

/// An archive kind the bootstrap does not unpack, from the URL's path.
pub fn unsupported_archive_url(u: &str) -> Option<&'static str> {
    let path = u.split(['?', '#']).next().unwrap_or(u).to_ascii_lowercase();
    [".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar.zst", ".zip", ".tar", ".gz", ".xz", ".bz2", ".zst"]
        .into_iter()
        .find(|ext| path.ends_with(ext) && !path.ends_with(".tar.gz"))
}

pub fn is_safe_url(u: &str) -> bool {
    u.strip_prefix("https://").is_some_and(|rest| {
        !rest.is_empty()
            && u.len() < 2048
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/:?=&%+@[]".contains(&b))
    })
}

/// `https://user:password@host/...`: credentials that would end up in the user-data,
/// the node's scripts, logs and curl's argv.
pub fn has_userinfo(u: &str) -> bool {
    let rest = u.split_once("://").map_or(u, |(_, r)| r);
    rest.split(['/', '?', '#']).next().is_some_and(|authority| authority.contains('@'))
}

/// What to say about a URL with credentials in it (the URL itself is not shown).
pub const USERINFO_HELP: &str = "credentials in a URL (user:password@) would be copied into the user-data, the node's scripts and logs and curl's command line; serve the file without them, or use a short-lived presigned URL (its query is never logged)";

fn check_url(u: &str, path: &str, report: &mut Report) -> bool {
    if has_userinfo(u) {
        report.error(path, "the URL has credentials in it (user:password@)", USERINFO_HELP);
        return false;
    }
    let ok = is_safe_url(u);
    if !ok {
        report.error(
            path,
            format!("{} is not an https URL of plain characters", show(u)),
            "use https:// with letters, digits and - . _ ~ / : ? = & % + @ only",
        );
    }
    ok
}

pub fn is_sha256_hex(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_sha256(h: &str, path: &str, report: &mut Report) -> bool {
    let ok = is_sha256_hex(h);
    if !ok {
        report.error(path, "not a sha256 digest", "give 64 hex digits, as printed by sha256sum");
    }
    ok
}

/// Kubernetes label: optional DNS-subdomain prefix and '/', a name of at most 63
/// characters, and a value of at most 63 (letters, digits, '-', '_', '.').
fn check_label(k: &str, v: &str, path: &str, report: &mut Report) {
    let part = |s: &str| {
        s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
    };
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let key_ok = !name.is_empty() && part(name) && prefix.is_none_or(is_dns_name);
    if !key_ok {
        report.error_at_key(
            path,
            format!("label key {} is not a valid Kubernetes label key", show(k)),
            "use [prefix/]name with letters, digits, '-', '_' and '.' (name at most 63 characters)",
        );
    }
    if !part(v) {
        report.error(
            path,
            format!("label value {} is not a valid Kubernetes label value", show(v)),
            "use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        );
    }
    if key_ok
        && (prefix == Some("node-role.kubernetes.io")
            || prefix.is_some_and(|p| p.ends_with("kubernetes.io") && p != "node.kubernetes.io"))
    {
        report.warning(
            path,
            format!("kubelet may refuse to set label {k:?} on itself (NodeRestriction)"),
            "label the node from the control plane, or use your own prefix",
        );
    }
}

/// Kubelet flags the generator manages itself; setting them by hand would break the join.
pub const MANAGED_KUBELET_FLAGS: &[(&str, &str)] = &[
    ("--kubeconfig", "the kubeconfig is generated"),
    ("--cluster-dns", "set cluster.dns.cluster-dns"),
    ("--cluster-domain", "set cluster.dns.cluster-domain"),
    ("--node-labels", "set the worker's `labels`"),
    ("--node-ip", "set the worker's `address`"),
    ("--hostname-override", "the node is registered under its `name`"),
    ("--client-ca-file", "the cluster CA is installed for you"),
];

/// Kubelet flags refused outright, with why.
pub const REFUSED_KUBELET_FLAGS: &[(&str, &str)] = &[
    ("--config", "a kubelet config file can override the flags mk8s-gen sets; give individual flags instead"),
    ("--help", "the kubelet would print its usage and exit instead of running"),
    ("--version", "the kubelet would print its version and exit instead of running"),
];

fn check_kubelet_arg(a: &str, path: &str, report: &mut Report) {
    let (flag, value) = match a.split_once('=') {
        Some((f, v)) => (f, Some(v)),
        None => (a, None),
    };
    // A flag name starts with a letter: `---kubeconfig` is "bad flag syntax" to the
    // kubelet's flag parser (spf13/pflag), which would not start.
    let flag_ok = flag.len() > 2
        && flag.starts_with("--")
        && flag.as_bytes()[2].is_ascii_lowercase()
        && flag[2..].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    // The args file is read by a shell in the snap's wrappers: no quoting characters.
    let value_ok = value
        .is_none_or(|v| v.len() < 1024 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:/,=+@%-".contains(&b)));
    if !flag_ok || !value_ok {
        report.error(path, format!("kubelet argument {} is not a plain --flag=value", show(a)), "write --flag or --flag=value; values may use letters, digits and . _ : / , = + @ % - (no spaces, quotes or $)");
        return;
    }
    if let Some((_, why)) = MANAGED_KUBELET_FLAGS.iter().find(|(f, _)| *f == flag) {
        report.error(path, format!("{flag} is managed by mk8s-gen"), why);
        return;
    }
    if let Some((_, why)) = REFUSED_KUBELET_FLAGS.iter().find(|(f, _)| *f == flag) {
        report.error(path, format!("{flag} is not allowed in kubelet-args"), why);
        return;
    }
    // Flags that would open the kubelet's API (port 10250) to anyone who reaches it.
    let unsafe_value = match flag {
        "--anonymous-auth" => value != Some("false"),
        "--authorization-mode" => value != Some("Webhook"),
        _ => false,
    };
    if unsafe_value {
        report.error(
            path,
            format!("{} would let anyone who reaches the kubelet's port 10250 use its API", show(a)),
            "remove it: the kubelet must refuse anonymous requests and ask the apiserver about every request (--anonymous-auth=false, --authorization-mode=Webhook)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let shown = show(&long);
        assert!(shown.len() < 120 && shown.ends_with("… (50000 bytes)"), "{shown}");
        assert_eq!(show("short"), "\"short\"");
    }

    #[test]
    fn health_check_durations_are_sane() {
        for (interval, timeout, ok) in
            [("5s", "3s", true), ("5s", "5s", true), ("1s", "3s", false), ("2h", "1s", false), ("61m", "1s", false)]
        {
            let mut r = Report::default();
            let raw = RawLoadBalancer {
                mode: None,
                kind: Some("haproxy".into()),
                address: None,
                port: None,
                traefik: None,
                health_check: Some(crate::facts::RawHealthCheck {
                    interval: Some(interval.into()),
                    timeout: Some(timeout.into()),
                }),
            };
            check_lb(Some(&raw), 16443, None, &mut r);
            assert_eq!(!r.has_errors(), ok, "{interval} {timeout}: {r:?}");
        }
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
