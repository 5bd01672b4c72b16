//! The command line itself: help, version, and the secrets file it creates.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use mk8s_testkit::facts::{FactsYaml, Worker};

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

fn seed_args() -> Vec<String> {
    let seed = mk8s_testkit::workspace().join("fixtures/seed");
    ["--cluster", "cluster.yaml", "--secrets", "secrets.yaml", "--node", "worker-1"]
        .iter()
        .map(|a| if a.ends_with(".yaml") { seed.join(a).display().to_string() } else { a.to_string() })
        .collect()
}

#[test]
fn output_refuses_symlinks_devices_and_pipes_and_dash_is_stdout() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let stdout = Command::new(BIN).args(seed_args()).output().unwrap();
    assert!(stdout.status.success());
    let dash = Command::new(BIN).args(seed_args()).args(["-o", "-"]).output().unwrap();
    assert!(dash.status.success(), "{}", String::from_utf8_lossy(&dash.stderr));
    assert_eq!(dash.stdout, stdout.stdout, "-o - writes to stdout");
    assert!(!dir.path().join("-").exists());

    let target = dir.path().join("elsewhere");
    fs::write(&target, "keep").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut refused = vec![(link.clone(), "a symbolic link"), (fifo.clone(), "a named pipe")];
    // A character device (as /dev/null is), when this test may make one.
    let dev = dir.path().join("null");
    if Command::new("mknod").arg(&dev).args(["c", "1", "3"]).status().is_ok_and(|s| s.success()) {
        refused.push((dev.clone(), "a device"));
    }
    refused.push((dir.path().to_path_buf(), "a directory"));
    for (p, what) in &refused {
        let o = Command::new(BIN).args(seed_args()).arg("-o").arg(p).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{what}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("it is {what}, not a regular file")), "{err}");
    }
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    if dev.exists() {
        assert!(fs::symlink_metadata(&dev).unwrap().file_type().is_char_device());
    }
    // A regular file is replaced, 0600.
    let o = Command::new(BIN).args(seed_args()).arg("-o").arg(&target).output().unwrap();
    assert!(o.status.success());
    assert_eq!(fs::read(&target).unwrap(), stdout.stdout);
    assert_eq!(fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn cluster_dash_reads_the_facts_from_stdin() {
    use std::io::Write;
    let seed = mk8s_testkit::workspace().join("fixtures/seed");
    let from_file = Command::new(BIN).args(seed_args()).current_dir(&seed).output().unwrap();
    let mut child = Command::new(BIN)
        .current_dir(&seed)
        .args(["--cluster", "-", "--secrets", "secrets.yaml", "--node", "worker-1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&fs::read(seed.join("cluster.yaml")).unwrap()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, from_file.stdout);
}

#[test]
fn secrets_set_ca_key_adds_the_key_and_keeps_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let x509 = mk8s_testkit::workspace().join("fixtures/x509");
    let secrets = dir.path().join("secrets.yaml");
    let o = Command::new(BIN).args(["secrets", "init", "--out"]).arg(&secrets).output().unwrap();
    assert!(o.status.success());
    let before = fs::read_to_string(&secrets).unwrap();
    fs::copy(x509.join("ca.key"), dir.path().join("ca.key")).unwrap();
    let gen = || {
        Command::new(BIN)
            .args(["--cluster", x509.join("cluster.yaml").to_str().unwrap(), "--node", "worker-1", "--secrets"])
            .arg(&secrets)
            .output()
            .unwrap()
    };
    assert_eq!(gen().status.code(), Some(1), "x509 needs the CA key");
    let o = Command::new(BIN)
        .args(["secrets", "set-ca-key", "--ca-key-file", "ca.key", "--secrets"])
        .arg(&secrets)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = fs::read_to_string(&secrets).unwrap();
    let seed = |t: &str| t.lines().find(|l| l.starts_with("token-seed:")).unwrap().to_string();
    assert_eq!(seed(&after), seed(&before));
    assert!(after.contains("ca-key-file: ca.key"));
    assert_eq!(fs::metadata(&secrets).unwrap().permissions().mode() & 0o777, 0o600);
    let o = gen();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Not a key: refused, the file unchanged.
    let o = Command::new(BIN)
        .args(["secrets", "set-ca-key", "--ca-key-file", "secrets.yaml", "--secrets"])
        .arg(&secrets)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(fs::read_to_string(&secrets).unwrap(), after);
}

/// `mk8s-gen completions bash` loaded into the real bash completes subcommands, and
/// `mk8s-gen man` is a page the real groff renders with the man macros.
#[test]
fn completions_and_the_man_page_work_with_the_real_tools() {
    let bash = mk8s_testkit::tools::require("bash");
    let groff = mk8s_testkit::tools::require("groff");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_mk8s-gen")).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    std::fs::write(dir.path().join("c.bash"), run(&["completions", "bash"])).unwrap();
    let o = Command::new(&bash)
        .arg("-c")
        .arg(format!(
            "source '{}'; COMP_WORDS=(mk8s-gen fl); COMP_CWORD=1; _mk8s__gen mk8s-gen fl mk8s-gen; echo \"${{COMPREPLY[@]}}\"",
            dir.path().join("c.bash").display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "fleet", "{}", String::from_utf8_lossy(&o.stderr));
    for shell in ["zsh", "fish"] {
        assert!(String::from_utf8(run(&["completions", shell])).unwrap().contains("control-plane"));
    }
    std::fs::write(dir.path().join("mk8s-gen.1"), run(&["man"])).unwrap();
    let o = Command::new(groff)
        .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
        .arg(dir.path().join("mk8s-gen.1"))
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(page.contains("NAME") && page.contains("mk8s-gen") && page.contains("fleet"), "{page}");
}

/// An unknown `--node` in a fleet of 10,000 workers: the help names the closest
/// few, never every worker (it printed all 10,000 names, about 140 KB).
#[test]
fn an_unknown_node_gets_the_closest_names_not_the_whole_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let ca = mk8s_testkit::workspace().join("fixtures/seed/ca.crt");
    let facts = FactsYaml::new("big")
        .channel("1.30/stable")
        .ca_file(&ca)
        .control_plane("cp-0", "10.130.0.2")
        .workers((0..10_000).map(|i| Worker::new(&format!("w-{i:05}"))))
        .yaml();
    let path = dir.path().join("cluster.yaml");
    fs::write(&path, facts).unwrap();
    let secrets = mk8s_testkit::workspace().join("fixtures/seed/secrets.yaml");
    let o = Command::new(BIN)
        .arg("--cluster")
        .arg(&path)
        .arg("--secrets")
        .arg(&secrets)
        .args(["--node", "w-0o123"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.len() < 2_000, "{} bytes of help", err.len());
    assert!(err.contains("the closest of the 10000 worker name(s): w-00123"), "{err}");
}

/// `ca-hash -` reads the certificate from stdin, as it says.
#[test]
fn ca_hash_reads_stdin() {
    use std::io::Write as _;
    let ca = mk8s_testkit::workspace().join("fixtures/seed/ca.crt");
    let by_file = Command::new(BIN).arg("ca-hash").arg(&ca).output().unwrap();
    assert!(by_file.status.success());
    let mut child = Command::new(BIN)
        .args(["ca-hash", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&fs::read(&ca).unwrap()).unwrap();
    let by_stdin = child.wait_with_output().unwrap();
    assert!(by_stdin.status.success());
    assert_eq!(by_stdin.stdout, by_file.stdout);
    assert!(String::from_utf8_lossy(&by_stdin.stdout).starts_with("sha256:"));
}

/// With `--message-format json` every line on stderr is a JSON object: the report,
/// the result line, the strict failure and a usage error alike (a human line in
/// between broke every consumer that reads the stream line by line).
#[test]
fn json_messages_are_json_on_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = mk8s_testkit::workspace().join("fixtures/seed/ca.crt");
    // Two control planes: a warning (dqlite needs three for HA).
    let facts = dir.path().join("cluster.yaml");
    fs::write(
        &facts,
        FactsYaml::new("c")
            .channel("1.30/stable")
            .ca_file(&ca)
            .auth_x509("2026-01-01", None)
            .control_plane("cp-0", "10.130.0.2")
            .control_plane("cp-1", "10.130.0.3")
            .worker("w-1")
            .yaml(),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(BIN).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        for line in err.lines() {
            assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "{args:?}: not JSON: {line:?}\n{err}");
        }
        (o.status.code(), err)
    };
    let f = facts.to_str().unwrap();
    let (code, err) = run(&["check", "--cluster", f, "--message-format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("dqlite") && err.contains("\"status\""), "{err}");
    let (code, err) = run(&["check", "--cluster", f, "--message-format", "json", "--strict"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("\"error\""), "{err}");
    let (code, err) = run(&["check", "--cluster", "does-not-exist.yaml", "--message-format", "json"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot read"), "{err}");
    // The human format keeps its lines.
    let (_, err) = Command::new(BIN)
        .args(["check", "--cluster", f])
        .output()
        .map(|o| (o.status.code(), String::from_utf8_lossy(&o.stderr).to_string()))
        .unwrap();
    assert!(err.contains("ok: cluster c"), "{err}");
}

/// Under umask 000, the directories `-o` and `packer --out` create are 0755, not
/// 0777 (writable by every local user, next to files of credentials).
#[test]
fn directories_made_under_umask_000_are_0755() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let seed = mk8s_testkit::workspace().join("fixtures/seed");
    let out = dir.path().join("a/b/user-data");
    let bake = dir.path().join("bake");
    let stand_in = seed.join("bootstrap-stand-in.bin");
    let q = |p: &std::path::Path| format!("'{}'", p.display());
    let cmd = format!(
        "umask 000; {BIN} --cluster cluster.yaml --secrets secrets.yaml --node worker-1 -o {} && \
         {BIN} packer --cluster cluster.yaml --bootstrap-bin {} --out {}",
        q(&out),
        q(&stand_in),
        q(&bake)
    );
    let o = Command::new("sh").arg("-c").arg(&cmd).current_dir(&seed).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&out), 0o600);
    for d in [dir.path().join("a"), dir.path().join("a/b"), bake.join("etc"), bake.join("etc/systemd/system")] {
        assert_eq!(mode(&d), 0o755, "{}", d.display());
    }
}

/// `completions` to a full disk: an error and exit 2, not a panic (exit 101).
#[test]
fn completions_to_a_full_disk_is_an_error_not_a_panic() {
    let full = fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let o = Command::new(BIN).args(["completions", "bash"]).stdout(full).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
}

/// Every page a manual page names in SEE ALSO is written by `man --out`, and each
/// one renders with the real groff.
#[test]
fn man_out_writes_every_page_the_pages_name() {
    let groff = mk8s_testkit::tools::require("groff");
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(BIN).args(["man", "--out"]).arg(dir.path()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut named = std::collections::BTreeSet::new();
    let mut pages = 0;
    for e in fs::read_dir(dir.path()).unwrap() {
        let path = e.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        pages += 1;
        // roff escapes the dashes: `mk8s\-gen\-fleet(1)`.
        for (at, _) in text.match_indices("(1)") {
            let start = text[..at].rfind(|c: char| c.is_whitespace()).map_or(0, |i| i + 1);
            named.insert(text[start..at].replace('\\', ""));
        }
        let r = Command::new(&groff).args(["-man", "-Tutf8", "-ww", "-P-cbou"]).arg(&path).output().unwrap();
        assert!(
            r.status.success() && r.stderr.is_empty(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&r.stderr)
        );
    }
    assert!(named.contains("mk8s-gen-fleet") && named.contains("mk8s-gen-secrets-init"), "{named:?}");
    for name in &named {
        assert!(dir.path().join(format!("{name}.1")).is_file(), "{name}(1) is named but not written");
    }
    assert!(pages > named.len() / 2, "{pages} pages");
}

/// The usage lines show the options a command cannot run without.
#[test]
fn usage_lines_show_the_required_options() {
    for (args, want) in [
        (vec!["--help"], "mk8s-gen --cluster FILE --secrets FILE --node NAME"),
        (vec!["fleet", "--help"], "mk8s-gen fleet --cluster FILE --secrets FILE --out DIR"),
        (vec!["control-plane", "--help"], "mk8s-gen control-plane --cluster FILE --secrets FILE --out DIR"),
        (vec!["check", "--help"], "mk8s-gen check --cluster FILE"),
        (vec!["packer", "--help"], "mk8s-gen packer --cluster FILE --bootstrap-bin PATH --out DIR"),
    ] {
        let o = Command::new(BIN).args(&args).output().unwrap();
        let help = String::from_utf8_lossy(&o.stdout);
        let usage = help.lines().find(|l| l.starts_with("Usage:")).unwrap_or_default();
        assert!(usage.contains(want), "{args:?}: {usage}");
    }
}

/// `MK8S_CLUSTER` and `MK8S_SECRETS` stand for `--cluster` and `--secrets`; an
/// option on the command line wins.
#[test]
fn cluster_and_secrets_come_from_the_environment() {
    let seed = mk8s_testkit::workspace().join("fixtures/seed");
    let with_env = Command::new(BIN)
        .args(["--node", "worker-1"])
        .env("MK8S_CLUSTER", seed.join("cluster.yaml"))
        .env("MK8S_SECRETS", seed.join("secrets.yaml"))
        .output()
        .unwrap();
    assert!(with_env.status.success(), "{}", String::from_utf8_lossy(&with_env.stderr));
    let with_args = Command::new(BIN).args(seed_args()).env_remove("MK8S_CLUSTER").output().unwrap();
    assert_eq!(with_env.stdout, with_args.stdout);
    let overridden = Command::new(BIN)
        .args(seed_args())
        .env("MK8S_CLUSTER", "/nonexistent/cluster.yaml")
        .env("MK8S_SECRETS", "/nonexistent/secrets.yaml")
        .output()
        .unwrap();
    assert_eq!(overridden.stdout, with_args.stdout);
    let missing = Command::new(BIN)
        .args(["--node", "worker-1"])
        .env("MK8S_CLUSTER", "/nonexistent/cluster.yaml")
        .env("MK8S_SECRETS", seed.join("secrets.yaml"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/cluster.yaml"));
}

/// `check --list`: every worker, `NAME ADDRESS`, on stdout.
#[test]
fn check_lists_the_workers() {
    let fx = mk8s_testkit::workspace().join("fixtures/x509");
    let o =
        Command::new(BIN).args(["check", "--list", "-q", "--cluster"]).arg(fx.join("cluster.yaml")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "worker-1 10.130.0.5\nworker-2 -\n");
}
