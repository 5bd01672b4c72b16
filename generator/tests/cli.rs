//! The command line itself: help, version, and the secrets file it creates.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mk8s-gen");

#[test]
fn help_documents_the_exit_codes_and_subcommands() {
    let o = Command::new(BIN).arg("--help").output().unwrap();
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for want in [
        "0  success",
        "1  invalid input",
        "2  usage or I/O error",
        "check",
        "secrets",
        "control-plane",
        "fleet",
        "terraform",
        "packer",
        "ca-hash",
    ] {
        assert!(help.contains(want), "--help lacks {want:?}");
    }
    let o = Command::new(BIN).arg("--bogus").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
    let v = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("mk8s-gen "));
}

#[test]
fn secrets_init_is_private_random_and_usable() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    for p in [&a, &b] {
        let o = Command::new(BIN).args(["secrets", "init", "--out"]).arg(p).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
        mk8s_gen::secrets::Secrets::parse(&fs::read_to_string(p).unwrap()).expect("a usable secrets file");
    }
    assert_ne!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "fresh random seeds");
    assert!(fs::read_dir(dir.path()).unwrap().count() == 2, "no temp files left");
    let with_key = dir.path().join("c.yaml");
    let o = Command::new(BIN)
        .args(["secrets", "init", "--ca-key-file", "ca.key", "--out"])
        .arg(&with_key)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(fs::read_to_string(&with_key).unwrap().contains("ca-key-file: ca.key"));
}

#[test]
fn an_ignition_config_over_a_limit_is_not_told_to_use_gzip() {
    // Ignition does not read gzip-compressed configs; --gzip is refused with it, so
    // the way out must not suggest it.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big-bootstrap");
    let mut bytes = b"\x7fELF".to_vec();
    let mut x: u32 = 1;
    bytes.extend((0..40_000).map(|_| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (x >> 16) as u8
    }));
    fs::write(&big, bytes).unwrap();
    let seed = mk8s_testkit::workspace().join("fixtures/seed");
    let run = |format: &str| {
        Command::new(BIN)
            .current_dir(&seed)
            .args(["--cluster", "cluster.yaml", "--secrets", "secrets.yaml", "--node", "worker-1"])
            .args(["--target", "aws", "--format", format, "--bootstrap-bin"])
            .arg(&big)
            .output()
            .unwrap()
    };
    let o = run("ignition");
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("over the 16,384-byte limit of aws") && !err.contains("--gzip"), "{err}");
    // The cloud-config of the same node is offered --gzip.
    let o = run("cloud-config");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--gzip"));
}
