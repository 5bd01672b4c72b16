//! Safe under misuse: secrets never echoed, credentials never logged, warnings
//! about readable secrets.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use mk8s_testkit::workspace;

const BIN: &str = env!("CARGO_BIN_EXE_mk8s-gen");
const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn seed(file: &str) -> String {
    workspace().join("fixtures/seed").join(file).display().to_string()
}

#[test]
fn a_secrets_file_given_as_the_facts_is_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let secrets_text = fs::read_to_string(seed("secrets.yaml")).unwrap();
    let seed_value = secrets_text.lines().find_map(|l| l.strip_prefix("token-seed: ")).unwrap().to_string();
    let key = fs::read_to_string(workspace().join("fixtures/x509/ca.key")).unwrap();
    let key_line = key.lines().nth(1).unwrap().to_string();
    let inline = dir.path().join("inline.yaml");
    let indented: String = key.lines().map(|l| format!("  {l}\n")).collect();
    fs::write(&inline, format!("{secrets_text}ca-key: |\n{indented}")).unwrap();
    let facts_with_key = dir.path().join("facts.yaml");
    fs::write(&facts_with_key, format!("cluster:\n  name: x\n  ca:\n    cert: |\n{indented}")).unwrap();
    // The same seed in the forms a YAML (or JSON) file may take.
    let mut forms = Vec::new();
    for (name, text) in [
        (
            "json.yaml",
            format!(
                "{{\"api-version\": \"mk8s-worker/v1\", \"kind\": \"Secrets\", \"token-seed\": \"{seed_value}\"}}\n"
            ),
        ),
        ("indented.yaml", format!("cluster:\n  name: x\n  token-seed: {seed_value}\n")),
        ("flow.yaml", format!("{{ api-version: mk8s-worker/v1, kind: Secrets, token-seed: {seed_value} }}\n")),
        ("quoted.yaml", format!("'token-seed' : {seed_value}\n")),
    ] {
        let p = dir.path().join(name);
        fs::write(&p, text).unwrap();
        forms.push(p.display().to_string());
    }
    for file in [seed("secrets.yaml"), inline.display().to_string(), facts_with_key.display().to_string()]
        .into_iter()
        .chain(forms)
    {
        for args in [
            vec!["check", "--cluster", &file],
            vec!["--cluster", &file, "--secrets", &file, "--node", "worker-1"],
            vec!["check", "--message-format", "json", "--cluster", &file],
        ] {
            let o = Command::new(BIN).args(&args).output().unwrap();
            assert_eq!(o.status.code(), Some(1), "{args:?}");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!err.contains(&seed_value) && !err.contains(&key_line), "{args:?} echoed a secret:\n{err}");
            assert!(err.contains("none of its lines are shown"), "{err}");
        }
    }
    // Through Terraform too (its plan output shows stderr).
    let q = serde_json::json!({"cluster": seed("secrets.yaml"), "secrets": seed("secrets.yaml"), "node": "worker-1"});
    let mut child = Command::new(BIN)
        .arg("terraform")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(q.to_string().as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&o.stderr).contains(&seed_value));
}

#[test]
fn readable_secrets_and_ca_keys_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let x509 = workspace().join("fixtures/x509");
    for f in ["secrets.yaml", "ca.key"] {
        fs::copy(x509.join(f), dir.path().join(f)).unwrap();
    }
    let secrets = dir.path().join("secrets.yaml");
    let key = dir.path().join("ca.key");
    let run = |extra: &[&str]| {
        let o = Command::new(BIN)
            .args(["--cluster", x509.join("cluster.yaml").to_str().unwrap(), "--secrets", secrets.to_str().unwrap()])
            .args(["--node", "worker-1"])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    let err = run(&[]);
    assert!(
        err.contains(&format!("warning: {} is readable by group or others (mode 0644)", secrets.display())),
        "{err}"
    );
    assert!(err.contains(&format!("warning: {} is readable by group or others (mode 0640)", key.display())), "{err}");
    assert!(!run(&["--quiet"]).contains("warning"), "--quiet");
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!run(&[]).contains("readable"));
}

#[test]
fn credentials_in_urls_are_refused_and_queries_never_logged() {
    let o = Command::new(BIN)
        .args(["--cluster", &seed("cluster.yaml"), "--secrets", &seed("secrets.yaml"), "--node", "worker-1"])
        .args(["--bootstrap-url", "https://alice:hunter2@downloads.example.com/b", "--bootstrap-sha256", SHA])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("credentials") && !err.contains("hunter2"), "{err}");

    // A presigned URL is accepted; the fetch script never prints its query.
    let url = "https://b.s3.amazonaws.com/mk8s-bootstrap?X-Amz-Signature=s3cr3t&X-Amz-Expires=600";
    let o = Command::new(BIN)
        .args(["--cluster", &seed("cluster.yaml"), "--secrets", &seed("secrets.yaml"), "--node", "worker-1"])
        .args(["--bootstrap-url", url, "--bootstrap-sha256", SHA])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let script = mk8s_gen::templates::render(
        "fetch-bootstrap.sh",
        serde_json::json!({"url": url, "sha256": SHA, "dest": "DEST"}),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    // A curl that downloads the wrong bytes: the script refuses them and says so.
    let curl = bin.join("curl");
    mk8s_testkit::node_model::write_script(
        &curl,
        "#!/bin/sh\nwhile [ \"$1\" != -o ]; do shift; done\necho wrong > \"$2\"\n",
    );
    let dest = dir.path().join("mk8s-bootstrap");
    let script = script
        .replace("dest='DEST'", &format!("dest='{}'", dest.display()))
        .replace("dest=DEST", &format!("dest='{}'", dest.display()));
    assert!(script.contains(&dest.display().to_string()), "{script}");
    let o = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    // Refused for the checksum (exit 1), not for a missing tool or a bad argument.
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("does not have sha256 {SHA}; refusing to run it")), "{err}");
    assert!(!dest.exists(), "the wrong bytes were installed");
    assert!(err.contains("https://b.s3.amazonaws.com/mk8s-bootstrap?<redacted>"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
}

/// The token lifetime settings under hostile values: each refused (or, for a value
/// the schema reads as another type, reported) at its own path, and nothing written.
#[test]
fn hostile_token_lifetimes_and_generations_are_refused_at_their_path() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(workspace().join("fixtures/seed/ca.crt"), dir.path().join("ca.crt")).unwrap();
    let facts = |ttl: &str, generation: &str| {
        format!(
            "cluster:\n  name: c\n  microk8s: {{ channel: 1.26/stable }}\n  ca: {{ cert-file: ca.crt }}\n  auth: microk8s-join\n  microk8s-join: {{ token-ttl-hours: {ttl} }}\n  control-plane:\n    - {{ name: cp-1, address: 10.0.0.2 }}\nworkers:\n  - {{ name: w-1, address: 10.0.0.5, generation: {generation} }}\n"
        )
    };
    let cases = [
        ("0", "0", "$.cluster.microk8s-join.token-ttl-hours"),
        ("-1", "0", "$.cluster.microk8s-join.token-ttl-hours"),
        ("8761", "0", "$.cluster.microk8s-join.token-ttl-hours"),
        ("99999999999999999999", "0", "$.cluster.microk8s-join.token-ttl-hours"),
        ("1.5", "0", "$.cluster.microk8s-join.token-ttl-hours"),
        ("'24'", "0", "$.cluster.microk8s-join.token-ttl-hours"),
        ("[24]", "0", "$.cluster.microk8s-join.token-ttl-hours"),
        ("24", "-1", "$.workers[0].generation"),
        ("24", "1000001", "$.workers[0].generation"),
        ("24", "1e3", "$.workers[0].generation"),
        ("24", "'7'", "$.workers[0].generation"),
        ("24", "{ n: 1 }", "$.workers[0].generation"),
    ];
    for (ttl, generation, path) in cases {
        let file = dir.path().join("cluster.yaml");
        fs::write(&file, facts(ttl, generation)).unwrap();
        let out = dir.path().join("cp");
        let o = Command::new(BIN)
            .args(["control-plane", "--message-format", "json", "--cluster"])
            .arg(&file)
            .args(["--secrets", &seed("secrets.yaml"), "--out"])
            .arg(&out)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "ttl {ttl}, generation {generation}: {said}");
        // A number too large for any integer stops the YAML reader itself: reported
        // at `$` with its line and column and the key's dotted name.
        let key = path.trim_start_matches("$.").replace("[0]", "");
        let at_path = said.contains(&format!("\"path\":\"{path}\""));
        let by_name = said.contains("\"path\":\"$\"")
            && said.contains(&format!("{key}: invalid type"))
            && said.contains("\"line\":");
        assert!(at_path || by_name, "ttl {ttl}, generation {generation}: {said}");
        assert!(!out.exists(), "ttl {ttl}, generation {generation}: a bundle was written");
    }
}
