//! `mk8s-gen terraform`, driven the way Terraform's `external` data source drives
//! it: the query as one JSON object of strings on stdin, the result as one JSON
//! object of strings on stdout, problems on stderr with a non-zero exit.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use mk8s_testkit::workspace;

const BIN: &str = env!("CARGO_BIN_EXE_mk8s-gen");

/// `mk8s-gen terraform` in fixtures/seed, as Terraform's external data source runs it.
fn external(query: &str) -> Output {
    external_in("seed", query)
}

#[test]
fn the_result_is_a_json_object_of_strings_equal_to_the_cli_output() {
    // Exactly what Terraform sends for `query = { ... }`: a flat object of strings.
    let sha = "0".repeat(64);
    let q = format!(
        r#"{{"bootstrap_sha256":"{sha}","bootstrap_url":"https://example.com/mk8s-bootstrap","cluster":"cluster.yaml","gzip":"false","node":"worker-1","secrets":"secrets.yaml","target":"aws"}}"#
    );
    let o = external(&q);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.values().all(|x| x.is_string()), "Terraform requires string values: {v:?}");
    let mut keys: Vec<_> = v.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["notes", "sha256", "size", "user_data", "user_data_base64"]);
    assert_eq!(v["notes"], "", "a fetched bootstrap needs no note");
    let cli = Command::new(BIN)
        .current_dir(workspace().join("fixtures/seed"))
        .args(["--cluster", "cluster.yaml", "--secrets", "secrets.yaml", "--node", "worker-1"])
        .args(["--bootstrap-url", "https://example.com/mk8s-bootstrap", "--bootstrap-sha256", &sha])
        .output()
        .unwrap();
    assert_eq!(v["user_data"].as_str().unwrap().as_bytes(), cli.stdout.as_slice());
    assert_eq!(
        base64::engine::general_purpose::STANDARD.decode(v["user_data_base64"].as_str().unwrap()).unwrap(),
        cli.stdout
    );
    assert_eq!(v["size"], cli.stdout.len().to_string());
    // gzip: binary, so only the base64 form carries it.
    let gz = external(r#"{"cluster":"cluster.yaml","secrets":"secrets.yaml","node":"worker-1","gzip":"true"}"#);
    let v: serde_json::Value = serde_json::from_slice(&gz.stdout).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(v["user_data_base64"].as_str().unwrap()).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
    assert_eq!(v["user_data"], "");
    // Terraform shows no stderr on success: the preinstalled-binary note is in the
    // result, as the command line prints it.
    let note = v["notes"].as_str().unwrap();
    assert!(note.starts_with("note: the image must already have /usr/local/bin/mk8s-bootstrap"), "{note}");
}

#[test]
fn errors_are_readable_on_stderr_with_a_non_zero_exit() {
    let cases = [
        (r#"{"cluster":"cluster.yaml","secrets":"secrets.yaml","node":"worker-9"}"#, 1, "no worker named \"worker-9\""),
        (
            r#"{"cluster":"cluster.yaml","secrets":"secrets.yaml","node":"worker-1","colour":"x"}"#,
            2,
            "unknown query key \"colour\"",
        ),
        (r#"{"cluster":"cluster.yaml","secrets":"secrets.yaml","node":"worker-1","gzip":true}"#, 2, "must be a string"),
        (r#"{"cluster":"cluster.yaml","node":"worker-1"}"#, 2, "needs \"secrets\""),
        (r#"not json"#, 2, "not a JSON object"),
        (r#"{"cluster":"missing.yaml","secrets":"secrets.yaml","node":"worker-1"}"#, 2, "cannot read cluster facts"),
    ];
    for (q, code, want) in cases {
        let o = external(q);
        assert_eq!(o.status.code(), Some(code), "{q}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stdout.is_empty(), "{q}: nothing on stdout");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{q}: {err}");
        assert!(!err.contains('\x1b'), "plain text for terraform plan");
    }
}

#[test]
fn the_worked_example_is_valid() {
    let dir = workspace().join("examples/terraform");
    let o = Command::new(BIN)
        .current_dir(&dir)
        .args(["check", "--cluster", "cluster.yaml", "--node", "worker-1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tf = std::fs::read_to_string(dir.join("main.tf")).unwrap();
    for key in [
        "program  = [\"mk8s-gen\", \"terraform\"]",
        "user_data_base64 = sensitive(data.external.user_data[each.key].result.user_data_base64)",
    ] {
        assert!(tf.contains(key), "main.tf lost {key}");
    }
}

fn external_in(dir: &str, query: &str) -> Output {
    let mut child = Command::new(BIN)
        .arg("terraform")
        .current_dir(workspace().join("fixtures").join(dir))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(query.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn warnings_are_errors_unless_strict_is_false() {
    // Terraform drops a successful program's stderr: a warning (token auth on
    // MicroK8s 1.28+, where nodes cannot join) would never be seen.
    let q = |extra: &str| {
        format!(r#"{{"cluster":"cluster.yaml","secrets":"../seed/secrets.yaml","node":"worker-1"{extra}}}"#)
    };
    for extra in ["", r#","strict":"true""#, r#","strict":"""#] {
        let o = external_in("lb-haproxy", &q(extra));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{extra}: {err}");
        assert!(o.stdout.is_empty());
        assert!(err.contains("known_tokens.csv") && err.contains("strict = \"false\""), "{err}");
    }
    let o = external_in("lb-haproxy", &q(r#","strict":"false""#));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning["));
    let o = external_in("lb-haproxy", &q(r#","strict":"yes""#));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("strict must be \"true\" or \"false\""));
    // Other errors do not carry the note.
    let o = external(r#"{"cluster":"cluster.yaml","secrets":"secrets.yaml","node":"worker-9"}"#);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("strict"));
}

#[test]
fn merge_is_the_same_as_the_cli_option() {
    let o = external_in(
        "merge",
        r#"{"cluster":"../seed/cluster.yaml","secrets":"../seed/secrets.yaml","node":"worker-1","merge":"extra.yaml"}"#,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let want = std::fs::read(workspace().join("fixtures/merge/expected/worker-1.stdout")).unwrap();
    assert_eq!(v["user_data"].as_str().unwrap().as_bytes(), want.as_slice());
    // Its conflicts are refused as on the command line.
    let o = external_in(
        "merge",
        r#"{"cluster":"../seed/cluster.yaml","secrets":"../seed/secrets.yaml","node":"worker-1","merge":"conflict.yaml"}"#,
    );
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn null_values_and_bad_combinations_give_whole_messages() {
    // A null is an unset optional value; a required one is named.
    let o = external(r#"{"cluster":"cluster.yaml","secrets":"secrets.yaml","node":"worker-1","target":null}"#);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cases = [
        (
            r#"{"cluster":"cluster.yaml","secrets":"secrets.yaml","node":null}"#,
            "error: the query needs \"node\"; it is null",
        ),
        (
            r#"{"cluster":"cluster.yaml","secrets":"secrets.yaml","node":"worker-1","bootstrap_url":"https://x/b"}"#,
            "error: in the query: the following required arguments were not provided: bootstrap_sha256\n",
        ),
        (
            r#"{"cluster":"cluster.yaml","secrets":"secrets.yaml","node":"worker-1","target":"mars"}"#,
            "error: in the query: invalid value 'mars' for 'target' [possible values: aws,",
        ),
        (
            r#"{"cluster":"cluster.yaml","secrets":"secrets.yaml","node":"worker-1","baked":"true","bootstrap_bin":"x"}"#,
            "error: in the query: the argument 'baked' cannot be used with 'bootstrap_bin'",
        ),
        (
            r#"{"cluster":"cluster.yaml","secrets":"secrets.yaml","node":"worker-1","gzip":1}"#,
            "must be a string, not 1",
        ),
        // Its stdin is the query, already read: a "-" cannot be a file there.
        (r#"{"cluster":"-","secrets":"secrets.yaml","node":"worker-1"}"#, "reads the query on stdin: give a file path"),
        (r#"{"cluster":"cluster.yaml","secrets":"-","node":"worker-1"}"#, "the query's \"secrets\" is \"-\""),
    ];
    for (q, want) in cases {
        let o = external(q);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{q}: {err}");
        assert!(err.contains(want), "{q}: {err}");
        assert!(!err.contains("error: error:") && !err.contains("Usage:"), "{q}: {err}");
    }
}

#[test]
fn the_example_keeps_user_data_out_of_plans_and_logs() {
    let tf = std::fs::read_to_string(workspace().join("examples/terraform/main.tf")).unwrap();
    assert!(tf.contains("sensitive(data.external.user_data[each.key].result.user_data_base64)"), "{tf}");
    // Pods cannot reach the metadata service's user-data: IMDSv2, hop limit 1.
    assert!(tf.contains("http_put_response_hop_limit = 1"), "{tf}");
    assert!(tf.lines().any(|l| l.trim().starts_with("http_tokens") && l.contains("\"required\"")), "{tf}");
    let docs = std::fs::read_to_string(workspace().join("docs/integrations.md")).unwrap();
    assert!(docs.contains("state holds"), "docs/integrations.md says the state holds the tokens");
}
