//! Checks of single values (names, addresses, URLs, paths, durations, labels,
//! kubelet flags), each reporting at the YAML path it is given.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::report::Report;

/// Directories every local user may write to (sticky or not): nothing root
/// installs may come from there.
pub(crate) const WORLD_WRITABLE_DIRS: &[&str] =
    &["/tmp/", "/var/tmp/", "/dev/shm/", "/run/user/", "/run/lock/", "/var/crash/"];

/// A key the schema requires; reported once per path.
pub(crate) fn required<'a, T>(v: Option<&'a T>, path: &str, report: &mut Report) -> Option<&'a T> {
    if v.is_none() {
        let key = path.rsplit('.').next().unwrap_or(path);
        report.error(path, format!("required key `{key}` is missing"), "see docs/cluster-facts.md for the schema");
    }
    v
}

pub(crate) fn unique<'a>(
    seen: &mut HashMap<&'a str, String>,
    name: &'a str,
    path: String,
    what: &str,
    report: &mut Report,
) {
    if let Some(first) = seen.get(name) {
        report.error(path, format!("duplicate {what} {name:?} (first at {first})"), "every node needs its own name");
    } else {
        seen.insert(name, path);
    }
}

pub(crate) fn unique_addr(seen: &mut HashMap<IpAddr, String>, a: IpAddr, path: String, report: &mut Report) {
    // ::ffff:10.0.0.1 is 10.0.0.1.
    let a = a.to_canonical();
    if let Some(first) = seen.get(&a) {
        report.error(path, format!("duplicate address {a} (first at {first})"), "every node needs its own address");
    } else {
        seen.insert(a, path);
    }
}

pub(crate) fn port(v: Option<i64>, default: u16, path: &str, report: &mut Report) -> u16 {
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

pub(crate) fn quote_value(s: &str) -> String {
    // Debug-quote so control characters and quotes are visible, never raw; a long
    // value is cut (a 50 MB value is not worth printing, twice).
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{:?}… ({} bytes)", &s[..cut], s.len()),
        None => format!("{s:?}"),
    }
}

pub(crate) fn check_dns_label(s: &str, path: &str, what: &str, report: &mut Report) -> bool {
    let ok = is_dns_label(s);
    if !ok {
        report.error(
            path,
            format!("{what} {} is not an RFC 1123 label", quote_value(s)),
            "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit",
        );
    }
    ok
}

pub(crate) fn check_dns_name(s: &str, path: &str, what: &str, report: &mut Report) -> bool {
    let ok = is_dns_name(s);
    if !ok {
        report.error(
            path,
            format!("{what} {} is not an RFC 1123 DNS name", quote_value(s)),
            "use lowercase letters, digits, '-' and '.', e.g. cluster.local",
        );
    }
    ok
}

pub(crate) fn check_node_name(s: &str, path: &str, report: &mut Report) -> bool {
    let ok = is_dns_name(s);
    if !ok {
        report.error(
            path,
            format!("node name {} is not a valid Kubernetes node name", quote_value(s)),
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
            format!(
                "node name {} reads as an IPv4 address (inet_aton takes decimal, octal and hex parts)",
                quote_value(s)
            ),
            "give the node a name with a letter outside 0x prefixes, e.g. worker-1",
        );
        return false;
    }
    let local = ["localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "broadcasthost"];
    if local.contains(&s) || s.ends_with(".localhost") {
        report.error(
            path,
            format!("node name {} is a name every machine gives itself", quote_value(s)),
            "hosts-entries.sh would map it to this worker on every control-plane node; use the worker's own name",
        );
        return false;
    }
    true
}

/// Whether `s` is an IPv4 address to inet_aton(3): 1 to 4 dot-separated parts,
/// each decimal, octal (leading 0) or hex (0x).
pub(crate) fn looks_like_ipv4(s: &str) -> bool {
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

pub(crate) fn check_ip(s: &str, path: &str, report: &mut Report) -> Option<IpAddr> {
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
                format!("{} is not an IPv4 or IPv6 address", quote_value(s)),
                "write a bare address such as 10.130.0.2 or fd00::2 (no port, no brackets)",
            );
            None
        }
    }
}

/// `ADDR/PREFIX` with no host bits set; the address family decides the prefix range.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let Some((addr, prefix)) = s.split_once('/') else {
        return Err(format!("{} has no /PREFIX", quote_value(s)));
    };
    let ip: IpAddr = addr.parse().map_err(|_| format!("{} is not an IPv4 or IPv6 address", quote_value(addr)))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match prefix.parse::<u8>() {
        Ok(p) if p <= max && !prefix.starts_with('+') && (prefix == "0" || !prefix.starts_with('0')) => p,
        _ => return Err(format!("prefix {} is not 0 to {max}", quote_value(prefix))),
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
        return Err(format!("{} has host bits set (the network is {net}/{prefix})", quote_value(s)));
    }
    Ok((ip, prefix))
}

/// kube-proxy `--cluster-cidr`: one CIDR, or one IPv4 and one IPv6 CIDR (dual-stack).
pub(crate) fn check_pod_cidr(s: &str, report: &mut Report) -> Option<String> {
    let path = "$.cluster.pod-cidr";
    let help = "give the cluster's pod network as on the control plane's args/kube-proxy --cluster-cidr, e.g. 10.1.0.0/16 (MicroK8s's default), fd02::/64, or 10.1.0.0/16,fd02::/64 for dual-stack";
    let parts: Vec<&str> = s.split(',').collect();
    let mut families = Vec::new();
    for part in &parts {
        match parse_cidr(part) {
            Ok((ip, _)) => families.push(ip.is_ipv4()),
            Err(why) => {
                let message = if parts.len() == 1 {
                    format!("pod-cidr {why}")
                } else {
                    format!("pod-cidr {}: {why}", quote_value(s))
                };
                report.error(path, message, help);
                return None;
            }
        }
    }
    if parts.len() > 2 || (parts.len() == 2 && families[0] == families[1]) {
        report.error(path, format!("{} is not one CIDR or an IPv4 and an IPv6 CIDR", quote_value(s)), help);
        return None;
    }
    Some(s.to_string())
}

/// Milliseconds of a duration that [`is_duration`] accepted.
pub(crate) fn duration_ms(s: &str) -> u64 {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().unwrap_or(0);
    match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        _ => n.saturating_mul(3_600_000),
    }
}

pub(crate) fn is_duration(s: &str) -> bool {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    !num.is_empty()
        && num.len() <= 6
        && matches!(unit, "ms" | "s" | "m" | "h")
        && num.parse::<u32>().is_ok_and(|n| n > 0)
}

pub fn is_safe_abs_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains("..")
        && p.len() < 256
        && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
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

pub(crate) fn check_url(u: &str, path: &str, report: &mut Report) -> bool {
    if has_userinfo(u) {
        report.error(path, "the URL has credentials in it (user:password@)", USERINFO_HELP);
        return false;
    }
    let ok = is_safe_url(u);
    if !ok {
        report.error(
            path,
            format!("{} is not an https URL of plain characters", quote_value(u)),
            "use https:// with letters, digits and - . _ ~ / : ? = & % + @ only",
        );
    }
    ok
}

pub fn is_sha256_hex(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn check_sha256(h: &str, path: &str, report: &mut Report) -> bool {
    let ok = is_sha256_hex(h);
    if !ok {
        report.error(path, "not a sha256 digest", "give 64 hex digits, as printed by sha256sum");
    }
    ok
}

/// Kubernetes label: optional DNS-subdomain prefix and '/', a name of at most 63
/// characters, and a value of at most 63 (letters, digits, '-', '_', '.').
pub(crate) fn check_label(k: &str, v: &str, path: &str, report: &mut Report) {
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
            format!("label key {} is not a valid Kubernetes label key", quote_value(k)),
            "use [prefix/]name with letters, digits, '-', '_' and '.' (name at most 63 characters)",
        );
    }
    if !part(v) {
        report.error(
            path,
            format!("label value {} is not a valid Kubernetes label value", quote_value(v)),
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

pub(crate) fn check_kubelet_arg(a: &str, path: &str, report: &mut Report) {
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
        report.error(path, format!("kubelet argument {} is not a plain --flag=value", quote_value(a)), "write --flag or --flag=value; values may use letters, digits and . _ : / , = + @ % - (no spaces, quotes or $)");
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
            format!("{} would let anyone who reaches the kubelet's port 10250 use its API", quote_value(a)),
            "remove it: the kubelet must refuse anonymous requests and ask the apiserver about every request (--anonymous-auth=false, --authorization-mode=Webhook)",
        );
    }
}
