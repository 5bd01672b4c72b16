//! The generated fetch-bootstrap script, run by the real `sh` with the real `curl`
//! against a local HTTPS server: it installs what has the plan's sha256, refuses
//! anything else, and never prints a presigned URL's signature.

use std::fs;
use std::process::Command;
use std::sync::Arc;

use mk8s_gen::render::{self, Delivery, FileContent, FETCH_SCRIPT};
use mk8s_testkit::pki::Ca;
use mk8s_testkit::tls::{server_config, Request, Response, TlsServer};
use mk8s_testkit::tools;
use sha2::Digest;

use crate::common;

const BODY: &str = "#!/bin/sh\necho stand-in bootstrap\n";

/// The seed fixture's worker-1, its bootstrap fetched from `url`.
fn seed_node(url: &str, sha256: &str) -> render::NodeOutput {
    let dir = mk8s_testkit::workspace().join("fixtures/seed");
    let facts = fs::read_to_string(dir.join("cluster.yaml")).unwrap();
    let delivery = Delivery::Fetched { url: url.into(), sha256: sha256.into() };
    common::render_facts_with(&facts, &dir, "worker-1", &delivery)
}

fn script(url: &str, sha256: &str, dest: &std::path::Path) -> String {
    let out = seed_node(url, sha256);
    let FileContent::Text(text) = &out.files.iter().find(|f| f.path == FETCH_SCRIPT).unwrap().content else {
        panic!("text")
    };
    text.replace("dest='/usr/local/bin/mk8s-bootstrap'", &format!("dest='{}'", dest.display()))
}

#[test]
fn the_fetch_script_verifies_and_redacts() {
    let sh = tools::require("sh");
    tools::require("curl");
    let ca = Ca::new("fetch-ca");
    let leaf = ca.server(&["127.0.0.1"]);
    let handler: mk8s_testkit::tls::Handler = Arc::new(|_: &Request| Response::text(200, BODY));
    let server = TlsServer::start("127.0.0.1:0", server_config(&leaf, false), handler).unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
    let url = format!("https://127.0.0.1:{}/mk8s-bootstrap?X-Amz-Signature=c0ffee", server.addr.port());
    let run = |sha: &str| {
        let dest = dir.path().join("mk8s-bootstrap");
        let path = dir.path().join("fetch");
        fs::write(&path, script(&url, sha, &dest)).unwrap();
        let o = Command::new(&sh).arg(&path).env("CURL_CA_BUNDLE", dir.path().join("ca.crt")).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).to_string(), dest)
    };
    let good = hex::encode(sha2::Sha256::digest(BODY.as_bytes()));
    let (code, err, dest) = run(&good);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(fs::read_to_string(&dest).unwrap(), BODY);
    fs::remove_file(&dest).unwrap();
    let (code, err, dest) = run(&"0".repeat(64));
    assert_eq!(code, Some(1), "{err}");
    assert!(!dest.exists(), "nothing installed");
    assert!(err.contains("does not have sha256") && err.contains("?<redacted>"), "{err}");
    assert!(!err.contains("c0ffee"), "{err}");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "no temp file left");
}

/// `--help` and `--dry-run` fetch and install nothing; an unknown argument is
/// refused (systemd passes none; an operator trying it by hand may).
#[test]
fn help_and_dry_run_fetch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("mk8s-bootstrap");
    let path = dir.path().join("fetch");
    let url = "https://127.0.0.1:9/mk8s-bootstrap?X-Amz-Signature=c0ffee";
    fs::write(&path, script(url, &"0".repeat(64), &dest)).unwrap();
    let sh = tools::require("sh");
    let watched = dir.path().to_path_buf();
    common::help_dry_run_and_bad_arguments_change_nothing(
        |args| Command::new(&sh).arg(&path).args(args).output().unwrap(),
        &[&watched],
        &["would fetch https://127.0.0.1:9/mk8s-bootstrap?<redacted>"],
        &["c0ffee"],
    );
    assert!(!dest.exists());
}

/// The script holds the URL, a presigned one's signature included: root only.
#[test]
fn the_fetch_script_is_readable_by_root_only() {
    let out = seed_node("https://b.example.com/x?X-Amz-Signature=c0ffee", &"0".repeat(64));
    let f = out.files.iter().find(|f| f.path == FETCH_SCRIPT).unwrap();
    assert_eq!(f.mode, 0o700);
}
