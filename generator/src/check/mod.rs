//! Raw facts -> checked model. Every problem is collected (with its YAML path) before
//! anything is rendered; rendering only ever sees a [`crate::model::Facts`].

use std::path::Path;

use crate::facts::RawFacts;
use crate::model::*;
use crate::pki::CaCert;
use crate::report::{Report, Severity};

mod channel;
mod cross;
mod nodes;
use crate::values::*;
pub use nodes::{MAX_EPOCH, MAX_GENERATION, MAX_WORKER_NAME};

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

    let channel = channel::check_microk8s(c.microk8s.as_ref(), report);
    let ca = required(c.ca.as_ref(), "$.cluster.ca", report).and_then(|ca| load_ca(ca, base_dir, report));

    let auth = crate::auth::check(c, &crate::auth::CheckCx { channel: channel.as_ref(), ca: ca.as_ref() }, report);

    let apiserver_port = port(c.apiserver_port, DEFAULT_APISERVER_PORT, "$.cluster.apiserver-port", report);

    let mut seen = nodes::Seen::default();
    let control_plane = nodes::control_plane(&c.control_plane, &mut seen, report);
    let cx = crate::balancer::CheckCx { apiserver_port, release: channel.as_ref().map(|c| c.release) };
    let load_balancer = crate::balancer::check(c.load_balancer.as_ref(), &cx, report);

    let dns = dns(c.dns.as_ref(), report);
    let pod_cidr = check_pod_cidr(c.pod_cidr.as_deref().unwrap_or(DEFAULT_POD_CIDR), report);

    let ready_deadline_secs = ready_deadline(c.bootstrap.as_ref(), report);
    let (workers, retired) = nodes::workers(&raw.workers, auth.as_ref(), &mut seen, report);
    cross::check(channel.as_ref(), auth.as_ref(), load_balancer.as_ref(), &control_plane, &workers, report);

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
        retired,
    })
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

/// `cluster.dns` (MicroK8s's defaults when absent).
fn dns(d: Option<&crate::facts::RawDns>, report: &mut Report) -> Option<Dns> {
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
}

/// `bootstrap.ready-deadline-seconds`: 60 s to a day, default 15 minutes.
fn ready_deadline(b: Option<&crate::facts::RawBootstrap>, report: &mut Report) -> u64 {
    match b.and_then(|b| b.ready_deadline_seconds) {
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
    }
}

#[cfg(test)]
mod tests {
    use super::channel::check_channel;
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
        // Each bad channel: one error, at the channel, saying why.
        let not_a_channel = |c: &str| format!("\"{c}\" is not a MicroK8s snap channel");
        for (bad, why) in [
            ("1.18/stable", "MicroK8s 1.18 is not supported".to_string()),
            ("2.0", "MicroK8s 2.0 is not supported".to_string()),
            ("1.30/stabel", not_a_channel("1.30/stabel")),
            ("1.30/stable/x/y", not_a_channel("1.30/stable/x/y")),
            ("one", not_a_channel("one")),
            ("1.30-strict/stable", "track \"1.30-strict\" is not supported".to_string()),
            ("", not_a_channel("")),
            ("+1.+30/stable", not_a_channel("+1.+30/stable")),
            ("1.030", not_a_channel("1.030")),
            ("01.30", not_a_channel("01.30")),
        ] {
            let mut r = Report::default();
            assert_eq!(f(bad, &mut r), None, "{bad}");
            let said: Vec<_> = r.problems.iter().map(|p| (p.severity, p.path.as_str(), p.message.as_str())).collect();
            assert_eq!(said, [(Severity::Error, "$.cluster.microk8s.channel", why.as_str())], "{bad:?}");
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

    /// Token facts on 1.27 (no channel warnings) whose `workers:` list is `workers`.
    fn token_facts_with_workers(workers: &str) -> crate::Loaded {
        const HEAD: &str = "cluster:\n  name: c\n  microk8s: { channel: 1.27/stable }\n  ca: { cert-file: ca.crt }\n  \
                            auth: token\n  control-plane:\n    - { name: cp-1, address: 10.0.0.2 }\nworkers:\n";
        crate::load(&format!("{HEAD}{workers}"), &Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/seed"))
    }

    #[test]
    fn epoch_defaults_to_1_and_is_bounded_with_its_place() {
        let check = |epoch: &str| {
            let loaded = token_facts_with_workers(&format!("  - name: w-0\n  - name: w-1\n    epoch: {epoch}\n"));
            (loaded.facts.map(|f| f.workers.iter().map(|w| w.epoch).collect::<Vec<_>>()), loaded.report)
        };
        let (e, r) = check("2");
        assert_eq!(e, Some(vec![1, 2]));
        assert!(!r.problems.iter().any(|p| p.path.contains("epoch")) && !r.has_errors(), "{:?}", r.problems);
        for bad in ["0", "-1", "1000001"] {
            let (_, r) = check(bad);
            let p = r.problems.iter().find(|p| p.path == "$.workers[1].epoch");
            assert_eq!(p.map(|p| (p.line, p.column)), Some((Some(11), Some(12))), "{bad}: {:?}", r.problems);
            assert!(r.has_errors());
        }
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
        // The errors for one argument (none: accepted).
        let check = |a: &str| {
            let mut r = Report::default();
            check_kubelet_arg(a, "$", &mut r);
            assert!(r.problems.iter().all(|p| p.severity == Severity::Error && p.path == "$"), "{a}");
            r.problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>()
        };
        // Which rule refused it: `--kubeconfig=/tmp/x` is a plain flag the generator
        // manages, not a format error.
        let refused = |a: &str, why: &str| {
            let said = check(a);
            assert!(said.len() == 1 && said[0].contains(why), "{a}: {said:?}, expected {why:?}");
        };
        assert!(check("--max-pods=200").is_empty());
        assert!(check("--register-with-taints=dedicated=edge:NoSchedule").is_empty());
        let not_plain = "is not a plain --flag=value";
        refused("--max-pods=$(reboot)", not_plain);
        refused("--max-pods=1 --anonymous-auth=true", not_plain);
        refused("--x=\"a\"", not_plain);
        refused("-v=2", not_plain);
        refused("--kubeconfig=/tmp/x", "--kubeconfig is managed by mk8s-gen");
        for bad in ["--config=/etc/k.yaml", "--help", "--version"] {
            let flag = bad.split('=').next().unwrap();
            refused(bad, &format!("{flag} is not allowed in kubelet-args"));
        }
        for bad in ["--anonymous-auth=true", "--anonymous-auth", "--authorization-mode=AlwaysAllow"] {
            refused(bad, "would let anyone who reaches the kubelet's port 10250 use its API");
        }
        assert!(check("--anonymous-auth=false").is_empty() && check("--authorization-mode=Webhook").is_empty());
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
