//! The load balancers' systemd units, judged by systemd's own tools offline:
//! `systemd-analyze security` (exposure score, 0 best, 10 worst) and
//! `systemd-analyze verify`; and the programs run under the identity the units give
//! them (an unprivileged user with no capabilities), through to an apiserver.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mk8s_gen::render::NodeOutput;
use mk8s_testkit::{tools, workspace};

use crate::common;
use common::lb_cluster;
use common::{render_facts, text_of};

/// The highest exposure `systemd-analyze security` may give a load balancer's unit
/// (systemd 252 scores traefik's 1.0 and HAProxy's 1.1; docs/load-balancers.md has the
/// built-in's).
const MAX_EXPOSURE: f64 = 1.2;

/// (fixture, node, unit path) for every load-balancer kind with a unit of ours, and
/// an IPv6 control plane.
const UNITS: &[(&str, &str, &str)] = &[
    ("builtin", "worker-1", "/etc/systemd/system/mk8s-balance.service"),
    ("seed", "worker-1", "/etc/systemd/system/mk8s-traefik.service"),
    ("lb-haproxy", "worker-1", "/etc/systemd/system/mk8s-haproxy.service"),
    ("kubelite-ipv6", "edge-7", "/etc/systemd/system/mk8s-traefik.service"),
];

fn node(fixture: &str, node: &str) -> NodeOutput {
    let fx = workspace().join("fixtures").join(fixture);
    render_facts(&fs::read_to_string(fx.join("cluster.yaml")).unwrap(), &fx, node)
}

/// Write the unit under its own name (systemd-analyze reads the type from it).
fn unit_file(dir: &Path, path: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(Path::new(path).file_name().unwrap());
    fs::write(&p, text).unwrap();
    p
}

/// `systemd-analyze security --offline=true`: the overall exposure and the report.
fn exposure(unit: &Path) -> (f64, String) {
    let o = Command::new(tools::require("systemd-analyze"))
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let line = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{text}"));
    let score = line.split(": ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap();
    (score.parse().unwrap_or_else(|_| panic!("{line}")), text)
}

#[test]
fn load_balancer_units_score_low_exposure() {
    let dir = tempfile::tempdir().unwrap();
    for (fixture, name, path) in UNITS {
        let out = node(fixture, name);
        let unit = unit_file(dir.path(), path, text_of(&out, path));
        let (score, report) = exposure(&unit);
        eprintln!("{fixture}: {path}: exposure {score}");
        assert!(score <= MAX_EXPOSURE, "{fixture}: {path}: exposure {score} > {MAX_EXPOSURE}\n{report}");
        // The settings the score rests on, as written.
        let text = text_of(&out, path);
        for want in ["DynamicUser=yes", "CapabilityBoundingSet=\n", "NoNewPrivileges=yes", "ProtectSystem=strict"] {
            assert!(text.contains(want), "{fixture}: {path} lacks {want:?}");
        }
        // Only loopback and the control plane are reachable.
        let allow = text.lines().find(|l| l.starts_with("IPAddressAllow=")).unwrap();
        let mut want = vec!["localhost".to_string()];
        want.extend(out.plan.apiserver.endpoints.iter().map(|e| {
            let host = e.rsplit_once(':').unwrap().0;
            host.trim_start_matches('[').trim_end_matches(']').to_string()
        }));
        assert_eq!(allow, format!("IPAddressAllow={}", want.join(" ")), "{fixture}");
    }
}

#[test]
fn the_exposure_check_is_able_to_fail() {
    // The control: the unit as it was before hardening scores UNSAFE.
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_file(
        dir.path(),
        "/etc/systemd/system/mk8s-traefik.service",
        "[Service]\nExecStart=/usr/local/bin/traefik --configFile=/etc/x.yaml\nNoNewPrivileges=yes\nProtectHome=yes\n",
    );
    let (score, _) = exposure(&unit);
    assert!(score > 9.0, "{score}");
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let sa = tools::require("systemd-analyze");
    let dir = tempfile::tempdir().unwrap();
    for (fixture, name, path) in UNITS {
        let out = node(fixture, name);
        // verify checks that ExecStart's program exists: point it at the real one.
        let kind = if path.contains("haproxy") { "haproxy" } else { "traefik" };
        let text = text_of(&out, path)
            .replace("/usr/local/bin/traefik", tools::require(kind).to_str().unwrap())
            .replace("/usr/local/bin/mk8s-bootstrap", tools::require("true").to_str().unwrap());
        let unit = unit_file(dir.path(), path, &text);
        let o = Command::new(&sa).args(["verify", "--man=no"]).arg(&unit).output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        // Unknown keys are only warnings (exit 0): nothing may be said at all.
        assert!(o.status.success() && said.trim().is_empty(), "{fixture}: {path}:\n{said}");
    }
    // The maintain unit and its timer (the timer's unit beside it: verify checks
    // that what it triggers exists), in every fixture's flavour.
    for (fixture, name, _) in UNITS {
        let out = node(fixture, name);
        let mut paths = Vec::new();
        for unit in ["mk8s-maintain.service", "mk8s-maintain.timer"] {
            let path = format!("/etc/systemd/system/{unit}");
            let text =
                text_of(&out, &path).replace("/usr/local/bin/mk8s-bootstrap", tools::require("true").to_str().unwrap());
            paths.push(unit_file(dir.path(), &path, &text));
        }
        let o = Command::new(&sa).args(["verify", "--man=no"]).args(&paths).output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success() && said.trim().is_empty(), "{fixture}: maintain units:\n{said}");
        let timer = text_of(&out, "/etc/systemd/system/mk8s-maintain.timer");
        for want in ["OnBootSec=5min\n", "OnUnitActiveSec=15min\n", "RandomizedDelaySec=5min\n"] {
            assert!(timer.contains(want), "{fixture}: the timer lacks {want:?}");
        }
        let service = text_of(&out, "/etc/systemd/system/mk8s-maintain.service");
        assert!(service.contains("Type=oneshot\n") && service.contains(" maintain --repair "), "{service}");
    }
    // The control: a misspelt key is reported.
    let unit = unit_file(dir.path(), "/x/bad.service", "[Service]\nExecStart=/bin/true\nDynamicUsr=yes\n");
    let o = Command::new(&sa).args(["verify", "--man=no"]).arg(&unit).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("Unknown key 'DynamicUsr'"));
}

#[test]
fn the_balancers_work_unprivileged_as_their_units_run_them() {
    for kind in ["builtin", "traefik", "haproxy"] {
        let c = lb_cluster(kind, true);
        let uid = fs::read_to_string(format!("/proc/{}/status", c.lb_process.0.id())).unwrap();
        let uid = uid.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string();
        assert!(uid.split_whitespace().skip(1).all(|u| u == "65534"), "{kind}: {uid}");
        let start = Instant::now();
        while !(0..10).all(|_| c.ok_on(&[0, 1, 2])) {
            assert!(start.elapsed() < Duration::from_secs(30), "{kind} never passed traffic unprivileged");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The bootstrap unit loads on the oldest systemd the supported systems run
/// (Ubuntu 18.04's 237; docs/bootstrap.md): only directives systemd 237 knows, and
/// no `Restart=` on a `Type=oneshot` service, which systemd refuses before 244
/// ("Service has Restart= setting other than no, which isn't allowed for
/// Type=oneshot services", systemd NEWS for v244). systemd-analyze here is newer,
/// so the rule is checked on the unit's text, for every delivery.
#[test]
fn the_bootstrap_unit_loads_on_systemd_237() {
    // Directives of systemd.unit(5), systemd.service(5), systemd.exec(5) as of 237.
    const KNOWN_237: &[&str] = &[
        "Description",
        "Wants",
        "After",
        "StartLimitIntervalSec",
        "Type",
        "RemainAfterExit",
        "ExecStartPre",
        "ExecStart",
        "Restart",
        "RestartSec",
        "RestartPreventExitStatus",
        "TimeoutStartSec",
        "WantedBy",
    ];
    for delivery in [
        mk8s_gen::render::Delivery::Preinstalled,
        mk8s_gen::render::Delivery::Fetched { url: "https://example.com/b".into(), sha256: "0".repeat(64) },
    ] {
        let dir = workspace().join("fixtures/seed");
        let facts = fs::read_to_string(dir.join("cluster.yaml")).unwrap();
        let out = common::render_facts_with(&facts, &dir, "worker-1", &delivery);
        let unit = text_of(&out, "/etc/systemd/system/mk8s-bootstrap.service");
        let keys: Vec<&str> = unit
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with('['))
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
            .collect();
        for k in &keys {
            assert!(KNOWN_237.contains(k), "{k}= is not a systemd 237 directive:\n{unit}");
        }
        let value = |k: &str| unit.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or("");
        assert!(
            value("Type") != "oneshot" || matches!(value("Restart"), "" | "no"),
            "systemd < 244 refuses Restart= on Type=oneshot:\n{unit}"
        );
        assert_eq!(value("Restart"), "on-failure", "75 is retried");
        assert_eq!(value("RemainAfterExit"), "yes", "a joined node's unit stays active");
    }
}

/// What `mk8s-bootstrap maintain` holds the node to, as the plan says it: the
/// post-refresh hook from MicroK8s 1.25 (the release table), never written by the
/// user-data (MicroK8s's install hook would nest its default hooks under ours), and
/// each balancer file of ours with the hash of what the user-data writes, except
/// what MicroK8s's proxy rewrites itself.
#[test]
fn the_plan_names_what_maintain_holds() {
    use mk8s_bootstrap::plan::{sha256_hex, REFRESH_HOOK_PATH};
    for (fixture, name, hook) in
        [("seed", "worker-1", false), ("kubelite-ipv6", "edge-7", false), ("lb-microk8s-proxy", "worker-1", true)]
    {
        let out = node(fixture, name);
        assert_eq!(out.plan.microk8s.refresh_hook.is_some(), hook, "{fixture}: {}", out.plan.microk8s.channel);
        if let Some(text) = &out.plan.microk8s.refresh_hook {
            assert_eq!(text, "#!/bin/sh\nexec systemctl start --no-block mk8s-maintain.service\n");
        }
        assert!(out.files.iter().all(|f| !f.path.starts_with("/var/snap/")), "{fixture}: {REFRESH_HOOK_PATH}");
        for f in &out.plan.balancer_files {
            if let Some(staged) = f.path.strip_prefix("/var/snap/microk8s/current/") {
                let install = out.plan.install.iter().find(|i| i.target == staged).unwrap();
                assert_eq!(install.sha256, f.sha256, "{fixture}: {staged}");
            } else {
                assert_eq!(sha256_hex(text_of(&out, &f.path).as_bytes()), f.sha256, "{fixture}: {}", f.path);
            }
        }
        let paths: Vec<&str> = out.plan.balancer_files.iter().map(|f| f.path.as_str()).collect();
        let want: &[&str] = match fixture {
            "lb-microk8s-proxy" => &["/var/snap/microk8s/current/args/traefik/traefik-template.yaml"],
            _ => &[
                "/etc/mk8s-worker/traefik/traefik.yaml",
                "/etc/mk8s-worker/traefik/provider.yaml",
                "/etc/systemd/system/mk8s-traefik.service",
            ],
        };
        assert_eq!(paths, want, "{fixture}");
    }
}
