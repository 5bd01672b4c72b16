//! User-data size budgets per platform, with the real binary: a document exactly at
//! each limit passes, one byte more fails with the size, the limit and the ways out.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::workspace;

const BIN: &str = env!("CARGO_BIN_EXE_mk8s-gen");

fn run(dir: &Path, facts: &str, extra: &[&str]) -> Output {
    fs::write(dir.join("cluster.yaml"), facts).unwrap();
    Command::new(BIN)
        .current_dir(dir)
        .args(["--cluster", "cluster.yaml", "--secrets"])
        .arg(workspace().join("fixtures/seed/secrets.yaml"))
        .args(["--node", "worker-1", "--bootstrap-preinstalled"])
        .args(extra)
        .output()
        .unwrap()
}

/// Facts whose worker carries `padding` bytes of kubelet arguments spread over
/// `count` arguments (each argument's value adds exactly its length to the
/// user-data; the count stays fixed while the padding is tuned, so the overhead of
/// each argument does not move the size).
fn facts(padding: usize, count: usize) -> String {
    let worker = (0..count).fold(Worker::new("worker-1"), |w, i| {
        w.kubelet_arg(&format!("--pad-{i:04}={}", "a".repeat(padding / count + usize::from(i < padding % count))))
    });
    FactsYaml::new("budget")
        .channel("1.24/stable")
        .ca_file(workspace().join("fixtures/seed/ca.crt"))
        .control_plane("cp-1", "10.0.0.2")
        .worker(worker)
        .yaml()
}

/// (padding, count) that make the user-data exactly `size` bytes.
fn padding_for(dir: &Path, size: usize) -> (usize, usize) {
    // Values stay below the 1024 characters a kubelet argument may have.
    let count = size / 900 + 1;
    let base = run(dir, &facts(0, count), &[]).stdout.len();
    assert!(size > base, "{size} below the base size {base}");
    let pad = size - base;
    assert_eq!(run(dir, &facts(pad, count), &[]).stdout.len(), size, "could not reach {size} bytes");
    (pad, count)
}

#[test]
fn every_limit_from_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    for (target, limit) in [
        ("aws", 16_384),
        ("hetzner", 32_768),
        ("azure", 65_535),
        ("openstack", 65_535),
        ("digitalocean", 65_536),
        ("vsphere", 65_536),
        ("gcp", 262_144),
    ] {
        let (pad, count) = padding_for(dir.path(), limit);
        let at = run(dir.path(), &facts(pad, count), &["--target", target]);
        assert!(at.status.success(), "{target} at {limit}: {}", String::from_utf8_lossy(&at.stderr));
        assert_eq!(at.stdout.len(), limit);
        let over = run(dir.path(), &facts(pad + 1, count), &["--target", target]);
        assert_eq!(over.status.code(), Some(1), "{target} one byte over");
        assert!(over.stdout.is_empty(), "nothing written when over");
        let msg = String::from_utf8_lossy(&over.stderr);
        let (size, max) = (format_thousands(limit + 1), format_thousands(limit));
        assert!(msg.contains(&format!("{size} bytes, over the {max}-byte limit of {target}")), "{msg}");
        assert_eq!(msg.contains("--gzip"), target != "digitalocean", "{msg}");
    }
    // No limit on bare metal / NoCloud.
    let (pad, count) = padding_for(dir.path(), 300_000);
    assert!(run(dir.path(), &facts(pad, count), &["--target", "bare-metal"]).status.success());
}

fn format_thousands(n: usize) -> String {
    let s = n.to_string();
    s.chars().enumerate().fold(String::new(), |mut out, (i, c)| {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
        out
    })
}

#[test]
fn a_token_worker_fits_aws_unless_the_bootstrap_is_embedded() {
    // The seed's own facts (traefik), and the same facts with the default balancer.
    let seed = workspace().join("fixtures/seed");
    let default_lb = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(seed.join("cluster.yaml")).unwrap();
    let without = text.replace("  load-balancer:\n    mode: node-local\n    kind: traefik\n", "");
    assert_ne!(without, text, "the seed's facts name their balancer");
    fs::write(default_lb.path().join("cluster.yaml"), without).unwrap();
    fs::copy(seed.join("ca.crt"), default_lb.path().join("ca.crt")).unwrap();
    for fx in [seed.as_path(), default_lb.path()] {
        a_token_worker_fits_aws(fx);
    }
}

fn a_token_worker_fits_aws(fx: &Path) {
    let gen = |extra: &[&str]| {
        Command::new(BIN)
            .current_dir(fx)
            .args(["--cluster", "cluster.yaml", "--secrets"])
            .arg(workspace().join("fixtures/seed/secrets.yaml"))
            .args(["--node", "worker-1", "--target", "aws"])
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(gen(&["--bootstrap-preinstalled"]).status.success(), "{}", fx.display());
    let sha = "0".repeat(64);
    let fetched = gen(&["--bootstrap-url", "https://example.com/mk8s-bootstrap", "--bootstrap-sha256", &sha]);
    assert!(fetched.status.success(), "{}: {}", fx.display(), String::from_utf8_lossy(&fetched.stderr));
    // A real-size binary embedded does not fit; the message names the ways out.
    let big = tempfile::NamedTempFile::new().unwrap();
    let mut elf = b"\x7fELF".to_vec();
    elf.extend((0..200_000u32).flat_map(|i| i.wrapping_mul(2654435761).to_le_bytes()));
    fs::write(big.path(), &elf).unwrap();
    let o = gen(&["--bootstrap-bin", big.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(
        msg.contains("--bootstrap-url") && msg.contains("--bootstrap-preinstalled") && msg.contains("--gzip"),
        "{msg}"
    );
}

#[test]
fn gzip_output_is_the_same_document_compressed() {
    let fx = workspace().join("fixtures/seed");
    let gen = |extra: &[&str]| {
        Command::new(BIN)
            .current_dir(&fx)
            .args(["--cluster", "cluster.yaml", "--secrets", "secrets.yaml", "--node", "worker-1"])
            .args(extra)
            .output()
            .unwrap()
    };
    let plain = gen(&[]).stdout;
    let gz = gen(&["--gzip", "--target", "aws"]);
    assert!(gz.status.success());
    assert_eq!(&gz.stdout[..2], &[0x1f, 0x8b], "gzip magic, which cloud-init detects");
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&gz.stdout[..]).read_to_end(&mut back).unwrap();
    assert_eq!(back, plain);
    assert!(gz.stdout.len() < plain.len() / 2);
    assert_eq!(gen(&["--gzip"]).stdout, gz.stdout, "deterministic (no timestamp in the header)");
    let o = gen(&["--gzip", "--target", "digitalocean"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("drop --gzip"));
}
