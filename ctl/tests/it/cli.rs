//! The command line itself: clap's own consistency check, help that does nothing
//! else, and exit codes that need no cluster.

use std::fs;
use std::process::Command;

use clap::CommandFactory as _;

use crate::common::BIN;

#[test]
fn clap_definition_is_consistent() {
    mk8s_ctl::cli::Cli::command().debug_assert();
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// `--help` prints the help, with the exit codes, and touches nothing: not the
/// cluster (an unreachable kubeconfig), not the audit log.
#[test]
fn help_does_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    for sub in
        [&["--help"][..], &["status", "--help"], &["approve", "--help"], &["retire", "--help"], &["upgrade", "--help"]]
    {
        let mut args = vec!["--kubeconfig", "/nonexistent"];
        args.extend_from_slice(sub);
        args.extend(["--audit", audit.to_str().unwrap()].iter().filter(|_| sub[0] == "approve"));
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(
            out.contains("Exit codes:")
                && out.contains("3  status only")
                && out.contains("3  upgrade: every batch ran")
                && out.contains("4  retire: stopped"),
            "{args:?}: {out}"
        );
    }
    assert!(!audit.exists());
}

/// Usage errors exit 2; facts that do not check exit 1 with mk8s-gen's report; an
/// unreachable cluster exits 2 with the error.
#[test]
fn exit_codes_without_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&["approve", "--cluster", "x.yaml"]);
    assert_eq!(code, 2, "--audit is required: {err}");
    assert!(err.contains("--audit"), "{err}");
    let (code, _, _) = run(&["approve", "--cluster", "x.yaml", "--once", "--watch", "--dry-run"]);
    assert_eq!(code, 2);
    let (code, _, err) = run(&["status", "--cluster", "x.yaml", "--as-of", "yesterday"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not an RFC 3339 time"), "{err}");

    let bad = dir.path().join("bad.yaml");
    fs::write(&bad, "cluster:\n  name: c\nworkers: []\nsurprise: 1\n").unwrap();
    let (code, _, err) = run(&["status", "--cluster", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error"), "{err}");

    fs::write(dir.path().join("ca.crt"), mk8s_testkit::pki::Ca::new("c").cert_pem).unwrap();
    let facts = mk8s_testkit::facts::FactsYaml::new("c")
        .channel("1.34/stable")
        .ca_file("ca.crt")
        .control_plane("cp-1", "10.0.0.2")
        .lb_builtin()
        .worker("w-1");
    let good = dir.path().join("cluster.yaml");
    fs::write(&good, facts.yaml()).unwrap();
    // Nothing listens on port 1 of 127.0.0.1.
    let kubeconfig = dir.path().join("kubeconfig");
    let doc = serde_json::json!({"apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": true}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]});
    fs::write(&kubeconfig, doc.to_string()).unwrap();
    let (code, _, err) =
        run(&["--kubeconfig", kubeconfig.to_str().unwrap(), "status", "--cluster", good.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\nerror: cannot list Nodes"), "{err}");
    let (code, _, err) = run(&["--kubeconfig", "/nonexistent", "status", "--cluster", good.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read kubeconfig /nonexistent"), "{err}");
}
