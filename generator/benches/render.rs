//! Where a fleet's CPU time goes, phase by phase, single-threaded.
//! `cargo bench -p mk8s-gen --bench render -- [N]` (default 2000 workers).

use std::time::{Duration, Instant};

use mk8s_gen::render::{self, ClusterArtifacts, Delivery};
use mk8s_gen::secrets::Secrets;

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(2000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut facts = String::from("cluster:\n  name: bench\n  microk8s: { channel: 1.30/stable }\n  ca: { cert-file: fixtures/seed/ca.crt }\n  control-plane:\n    - { name: cp-0, address: 10.130.0.2 }\n    - { name: cp-1, address: 10.130.0.3 }\n    - { name: cp-2, address: 10.130.0.4 }\nworkers:\n");
    for i in 0..n {
        facts.push_str(&format!(
            "  - {{ name: worker-{i:05}, address: 10.{}.{}.{}, labels: {{ zone: a }} }}\n",
            128 + i / 65536,
            (i / 256) % 256,
            i % 256
        ));
    }
    let t = Instant::now();
    let facts = mk8s_gen::load(&facts, &root).valid("facts", &facts).unwrap_or_else(|e| panic!("{e}"));
    let t_facts = t.elapsed();
    let secrets = Secrets::parse(&std::fs::read_to_string(root.join("fixtures/seed/secrets.yaml")).unwrap()).unwrap();
    let delivery = Delivery::Fetched { url: "https://example.com/b".into(), sha256: "a".repeat(64) };
    let shared = ClusterArtifacts::new(&facts, &delivery).unwrap();
    let entries = mk8s_gen::output::cloud_config::SharedEntries::new(&shared);
    let (mut t_render, mut t_yaml, mut t_sha, mut bytes) = (Duration::ZERO, Duration::ZERO, Duration::ZERO, 0);
    for w in &facts.workers {
        let t = Instant::now();
        let out = render::render_node_with(&facts, &secrets, w, &shared).unwrap();
        t_render += t.elapsed();
        let t = Instant::now();
        let text = mk8s_gen::output::cloud_config::cloud_config_with(&out, Some(&entries));
        t_yaml += t.elapsed();
        let t = Instant::now();
        std::hint::black_box(mk8s_bootstrap::plan::sha256_hex(text.as_bytes()));
        t_sha += t.elapsed();
        bytes += text.len();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!("{n} workers, {:.1} KiB user-data each", bytes as f64 / n as f64 / 1024.0);
    println!("parse + validate facts: {:8.1} ms total", t_facts.as_secs_f64() * 1e3);
    println!("render_node_with:       {:8.1} us/node", per(t_render));
    println!("cloud_config (YAML):    {:8.1} us/node", per(t_yaml));
    println!("sha256 of the output:   {:8.1} us/node", per(t_sha));
}
