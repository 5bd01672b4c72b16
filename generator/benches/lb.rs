//! Node-local load balancers side by side, with the real programs in front of three
//! simulated apiservers: resident memory idle and with 100 concurrent connections
//! (watch-like, held open), requests per second and p99 latency (each request a new
//! TLS connection through the balancer, and over 4 open connections), and failover
//! time and failed requests when one apiserver dies. The built-in balancer runs as
//! shipped: the static `bootstrap`-profile build.
//! `cargo bench -p mk8s-gen --bench lb` (needs traefik and haproxy: scripts/setup,
//! and the agent: `cargo build --release -p mk8s-bootstrap`).

use std::time::{Duration, Instant};

use mk8s_testkit::balancer::{self, Cluster, Files};
use mk8s_testkit::tls::https_watch;

/// The worker's generated text files, as the CLI renders them.
fn render(facts_yaml: &str, dir: &std::path::Path, node: &str) -> Files {
    let facts = mk8s_gen::load(facts_yaml, dir).valid("facts", facts_yaml).unwrap_or_else(|e| panic!("{e}"));
    let secrets = std::fs::read_to_string(mk8s_testkit::workspace().join("fixtures/seed/secrets.yaml")).unwrap();
    let secrets = mk8s_gen::secrets::Secrets::parse(&secrets).unwrap();
    let delivery = mk8s_gen::render::Delivery::Preinstalled;
    let out = mk8s_gen::render::render_node(&facts, &secrets, facts.worker(node).unwrap(), &delivery).unwrap();
    out.files
        .into_iter()
        .filter_map(|f| match f.content {
            mk8s_gen::render::FileContent::Text(t) => Some((f.path, t)),
            mk8s_gen::render::FileContent::GzipBase64(_) => None,
        })
        .collect()
}

/// Resident memory of a process and all its descendants, KiB.
fn tree_rss_kib(root: u32) -> u64 {
    let mut parent = std::collections::HashMap::new();
    let mut rss = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let field = |k: &str| {
            status.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        };
        parent.insert(pid, field("PPid:").unwrap_or(0) as u32);
        rss.insert(pid, field("VmRSS:").unwrap_or(0));
    }
    let in_tree = |mut p: u32| loop {
        if p == root {
            return true;
        }
        match parent.get(&p) {
            Some(&pp) if pp != 0 && pp != p => p = pp,
            _ => return false,
        }
    };
    rss.iter().filter(|(p, _)| in_tree(**p)).map(|(_, r)| r).sum()
}

fn healthy(c: &Cluster) {
    let start = Instant::now();
    while !(0..20).all(|_| c.ok_on(&[0, 1, 2])) {
        assert!(start.elapsed() < Duration::from_secs(30), "never became healthy");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn main() {
    // The built-in balancer as shipped (scripts/test and bench/bootstrap.sh build it).
    let shipped = mk8s_testkit::workspace().join("target/x86_64-unknown-linux-musl/bootstrap/mk8s-bootstrap");
    assert!(
        shipped.exists(),
        "{} is missing: cargo build --profile bootstrap -p mk8s-bootstrap --target x86_64-unknown-linux-musl",
        shipped.display()
    );
    std::env::set_var("MK8S_BOOTSTRAP_BIN", &shipped);
    println!(
        "{:<9} {:>10} {:>16} {:>12} {:>9} {:>13} {:>9} {:>10} {:>7}",
        "kind", "idle RSS", "RSS, 100 conns", "new conn/s", "p99", "open req/s", "p99", "failover", "failed"
    );
    for kind in ["builtin", "traefik", "haproxy"] {
        let mut c = balancer::cluster_as(kind, false, render);
        healthy(&c);
        std::thread::sleep(Duration::from_secs(2));
        let pid = c.lb_process.0.id();
        let idle = tree_rss_kib(pid);
        for s in &c.sims {
            s.set_watch_hold(Duration::from_secs(6));
        }
        let watchers: Vec<_> = (0..100)
            .map(|_| {
                let (lb, ca) = (c.lb, c.ca.clone());
                std::thread::spawn(move || {
                    https_watch(lb, "/api/v1/watch/nodes", &ca, balancer::TOKEN, Duration::from_secs(30))
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(3));
        let loaded = tree_rss_kib(pid);
        let held = watchers
            .into_iter()
            .map(|w| w.join().unwrap())
            .filter(|(r, d)| r.is_ok() && *d >= Duration::from_secs(5))
            .count();
        assert_eq!(held, 100, "{kind}: only {held} of 100 connections were held");
        // Requests: one client, each request a new TLS connection, for 3 s.
        let mut latencies = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            let t = Instant::now();
            assert!(c.ok_on(&[0, 1, 2]), "{kind}: a request failed with every apiserver up");
            latencies.push(t.elapsed());
        }
        let rate = latencies.len() as f64 / start.elapsed().as_secs_f64();
        latencies.sort();
        let p99 = latencies[latencies.len() * 99 / 100];
        let (open_rate, open_p99) = balancer::over_open_connections(c.lb, &c.ca, 4, Duration::from_secs(3));
        // Failover: from the death of one apiserver to the first of 20 consecutive
        // successes, as in the failover test.
        c.sims[1].stop();
        let died = Instant::now();
        let (mut streak, mut failed) = (0, 0);
        while streak < 20 {
            streak = if c.ok_on(&[0, 2]) { streak + 1 } else { 0 };
            failed += usize::from(streak == 0);
            assert!(died.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(10));
        }
        let failover = died.elapsed();
        println!(
            "{kind:<9} {:>6.1} MiB {:>12.1} MiB {:>12.0} {:>6.2} ms {:>13.0} {:>6.2} ms {:>9.2}s {:>7}",
            idle as f64 / 1024.0,
            loaded as f64 / 1024.0,
            rate,
            p99.as_secs_f64() * 1000.0,
            open_rate,
            open_p99.as_secs_f64() * 1000.0,
            failover.as_secs_f64(),
            failed
        );
    }
}
