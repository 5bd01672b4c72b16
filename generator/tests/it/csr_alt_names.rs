//! `csr-alt-names.txt`: the steps that get an external load balancer into the
//! apiserver certificate differ by MicroK8s version; on clustered control planes
//! from 1.21 `no-cert-reissue` stops the apiservice-kicker, so the text must never
//! promise that MicroK8s re-issues by itself there.

use std::fs;

use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::workspace;

fn text_for(channel: &str, lb: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(workspace().join("fixtures/seed/ca.crt"), dir.path().join("ca.crt")).unwrap();
    let facts = FactsYaml::new("c")
        .channel(channel)
        .ca_file("ca.crt")
        .control_plane("cp1", "10.0.0.1")
        .lb_external(lb, None)
        .worker(Worker::new("w1").address("10.0.0.5"))
        .yaml();
    let facts = mk8s_gen::load(&facts, dir.path()).valid("facts", &facts).unwrap_or_else(|e| panic!("{e}"));
    mk8s_gen::controlplane::alt_names(&facts).unwrap()
}

#[test]
fn the_steps_follow_the_version() {
    let t = text_for("1.20/stable", "167.172.5.46");
    assert!(t.contains("IP.99 = 167.172.5.46") && t.contains("apiservice-kicker re-issues"), "{t}");
    assert!(!t.contains("refresh-certs"), "1.20 has no --cert: {t}");

    let t = text_for("1.21/stable", "api.example.com");
    assert!(t.contains("DNS.99 = api.example.com"), "{t}");
    assert!(t.contains("/certs/csr.conf:") && t.contains("microk8s refresh-certs --cert server.crt"), "{t}");

    for ch in ["1.22/stable", "1.24/stable", "1.26/stable"] {
        let t = text_for(ch, "api.example.com");
        assert!(t.contains("microk8s refresh-certs --cert server.crt") && t.contains("no-cert-reissue"), "{ch}: {t}");
        assert!(!t.contains("extraSANs") && !t.contains("/certs/csr.conf:"), "{ch}: {t}");
    }
    for ch in ["1.27/stable", "1.30/stable", "latest/stable"] {
        let t = text_for(ch, "api.example.com");
        assert!(t.contains("extraSANs:\n#        - api.example.com") && t.contains("version: 0.1.0"), "{ch}: {t}");
        assert!(t.contains("microk8s refresh-certs --cert server.crt"), "{ch}: {t}");
    }
    for ch in ["1.21/stable", "1.24/stable", "1.30/stable"] {
        let t = text_for(ch, "api.example.com");
        assert!(!t.contains("MicroK8s then re-issues") && !t.contains("kicker re-issues"), "{ch}: {t}");
        assert!(t.ends_with("DNS.99 = api.example.com\n"));
    }
}
