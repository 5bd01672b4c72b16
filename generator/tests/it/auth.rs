//! Authentication end to end: the generated certificates as openssl sees them,
//! and the real kubectl, with each generated kubeconfig, talking to the real
//! kube-apiserver (`mk8s_testkit::upstream`, MicroK8s 1.27's default args, which
//! read tokens, under RBAC,Node) in both auth modes.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use mk8s_gen::render::{self, Delivery, FileContent, NodeOutput};
use mk8s_gen::secrets::Secrets;
use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::facts::FactsYaml;
use mk8s_testkit::pki::Ca;
use mk8s_testkit::upstream::{ControlPlane, Options};
use mk8s_testkit::{tools, workspace};

fn b64d(s: &str) -> String {
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}

/// (cert PEM, key PEM) of one kubeconfig in a golden user-data, read with serde_yaml.
fn creds_in(user_data: &Path, file: &str) -> (String, String) {
    let doc: serde_yaml::Value = serde_yaml::from_str(&fs::read_to_string(user_data).unwrap()).unwrap();
    let f =
        doc["write_files"].as_sequence().unwrap().iter().find(|f| f["path"].as_str().unwrap().ends_with(file)).unwrap();
    let kc: serde_yaml::Value = serde_yaml::from_str(f["content"].as_str().unwrap()).unwrap();
    let user = &kc["users"][0]["user"];
    (b64d(user["client-certificate-data"].as_str().unwrap()), b64d(user["client-key-data"].as_str().unwrap()))
}

fn openssl(args: &[&str], input_file: &Path) -> String {
    let out = Command::new(tools::require("openssl")).args(args).arg(input_file).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn openssl_sees_the_expected_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    for (fixture, node, ca_kind) in
        [("x509", "worker-1", "sha256WithRSAEncryption"), ("x509-ecdsa", "edge-1", "ecdsa-with-SHA256")]
    {
        let fx = workspace().join("fixtures").join(fixture);
        let ud = fx.join(format!("expected/{node}.stdout"));
        for (file, subject) in [
            ("kubelet.config", format!("subject=O = system:nodes, CN = system:node:{node}")),
            ("proxy.config", "subject=CN = system:kube-proxy".to_string()),
        ] {
            let (cert, key) = creds_in(&ud, file);
            let cert_path = dir.path().join(format!("{fixture}-{file}.crt"));
            fs::write(&cert_path, &cert).unwrap();
            let text = openssl(&["x509", "-noout", "-text", "-subject", "-in"], &cert_path);
            assert!(text.contains(&subject), "{fixture} {file}:\n{text}");
            assert!(text.contains("Digital Signature, Key Encipherment"), "{text}");
            assert!(text.contains("TLS Web Client Authentication"), "{text}");
            assert!(text.contains("Not Before: Nov  1 00:00:00 2026 GMT"), "{text}");
            assert!(text.contains(&format!("Signature Algorithm: {ca_kind}")), "{text}");
            let ok = Command::new(tools::require("openssl"))
                .args(["verify", "-CAfile"])
                .arg(fx.join("ca.crt"))
                .arg("-purpose")
                .arg("sslclient")
                .arg("-attime")
                .arg("1796256000") // 2026-12-01
                .arg(&cert_path)
                .output()
                .unwrap();
            assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
            // The key in the kubeconfig is the certificate's key.
            let key_path = dir.path().join(format!("{fixture}-{file}.key"));
            fs::write(&key_path, &key).unwrap();
            let from_key = openssl(&["pkey", "-pubout", "-in"], &key_path);
            let from_cert = openssl(&["x509", "-noout", "-pubkey", "-in"], &cert_path);
            assert_eq!(from_key, from_cert);
        }
    }
}

/// `not-before + validity-days`, then up to a tenth of the validity more, per node:
/// a node's certificates expire together, a fleet's spread over weeks, never in
/// one hour.
#[test]
fn a_fleets_certificates_do_not_expire_in_the_same_hour() {
    let not_after = |node: &str, file: &str| {
        let ud = workspace().join(format!("fixtures/x509/expected/{node}.stdout"));
        let (cert, _) = creds_in(&ud, file);
        let der = der_of(&cert);
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        (c.validity().not_before.timestamp(), c.validity().not_after.timestamp())
    };
    let mut ends = Vec::new();
    for node in ["worker-1", "worker-2"] {
        let (nb, na) = not_after(node, "kubelet.config");
        assert_eq!(not_after(node, "proxy.config"), (nb, na), "{node}: one expiry per node");
        let day = 86_400;
        let extra = na - nb - 365 * day;
        assert!((0..=365 * day / 10).contains(&extra) && extra % 3600 == 0, "{node}: {extra} s more");
        ends.push(na);
    }
    assert_ne!(ends[0], ends[1], "two workers expire in the same hour");
}

/// A cluster whose apiserver is one real kube-apiserver (MicroK8s 1.27's default
/// args, `RBAC,Node`), in one auth mode, with the Nodes of its two workers.
struct Cluster {
    _dir: tempfile::TempDir,
    _cp: ControlPlane,
    outputs: Vec<NodeOutput>,
}

fn cluster(auth: &str) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::new("auth-test-ca"));
    let mut options = Options::new(27, Authz::RbacNode);
    options.ips = vec!["127.0.0.2".into()];
    options.ca = Some(ca.clone());
    fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
    let facts_yaml = FactsYaml::new("authtest").channel("1.27/stable").ca_file("ca.crt");
    let facts_yaml = match auth {
        "x509" => facts_yaml.auth_x509("2026-01-01", 3650),
        "token" => facts_yaml.auth_token(),
        other => panic!("no facts for auth: {other}"),
    };
    let facts_yaml = facts_yaml
        .control_plane("cp-1", "127.0.0.2")
        .lb_external("127.0.0.2", options.port)
        .worker("worker-1")
        .worker("worker-2")
        .yaml();
    let facts = mk8s_gen::load(&facts_yaml, dir.path()).valid("facts", &facts_yaml).unwrap_or_else(|e| panic!("{e}"));
    let mut secrets_text = fs::read_to_string(workspace().join("fixtures/seed/secrets.yaml")).unwrap();
    secrets_text.push_str(&format!("ca-key: {}\n", serde_json::to_string(&ca.key_pem).unwrap()));
    let mut secrets = Secrets::parse(&secrets_text).unwrap();
    if auth == "x509" {
        secrets.attach_ca_key(&facts.ca).unwrap();
    } else {
        options.known_tokens =
            facts.workers.iter().map(|w| mk8s_gen::auth::token::token_lines(&facts, &secrets, w)).collect();
    }
    let outputs = facts
        .workers
        .iter()
        .map(|w| render::render_node(&facts, &secrets, w, &Delivery::Preinstalled).unwrap())
        .collect();
    let cp = ControlPlane::start(options);
    for node in ["worker-1", "worker-2"] {
        cp.admin_create(&serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}));
    }
    Cluster { _dir: dir, _cp: cp, outputs }
}

fn kubeconfig(out: &NodeOutput, file: &str, dir: &Path) -> std::path::PathBuf {
    let f = out.files.iter().find(|f| f.path.ends_with(file)).unwrap();
    let FileContent::Text(t) = &f.content else { panic!() };
    let p = dir.join(format!("{}-{file}", out.plan.node.name));
    fs::write(&p, t).unwrap();
    p
}

fn kubectl_get(kc: &Path, path: &str) -> (bool, String) {
    let out = Command::new(tools::require("kubectl"))
        .args(["get", "--raw", path, "--request-timeout=10s", "--kubeconfig"])
        .arg(kc)
        .env("HOME", kc.parent().unwrap())
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Who the apiserver takes a kubeconfig's credential for (`kubectl auth whoami`,
/// the SelfSubjectReview API).
fn whoami(kc: &Path) -> String {
    let out = Command::new(tools::require("kubectl"))
        .args(["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", "--kubeconfig"])
        .arg(kc)
        .env("HOME", kc.parent().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "kubectl auth whoami: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn kubectl_with_each_generated_kubeconfig_in_both_auth_modes() {
    for auth in ["token", "x509"] {
        // RBAC,Node, where a kubelet may read only its own Node (under AlwaysAllow,
        // MicroK8s's default, any credential reads any Node).
        let c = cluster(auth);
        let tmp = tempfile::tempdir().unwrap();
        let w1 = &c.outputs[0];
        let kubelet = kubeconfig(w1, "kubelet.config", tmp.path());
        let (ok, text) = kubectl_get(&kubelet, "/api/v1/nodes/worker-1");
        assert!(ok, "{auth}: kubelet reading its own node: {text}");
        assert!(text.contains("\"worker-1\""), "{text}");
        let (ok, text) = kubectl_get(&kubelet, "/api/v1/nodes/worker-2");
        assert!(!ok && text.contains("Forbidden"), "{auth}: kubelet reading another node: {text}");
        let proxy = kubeconfig(w1, "proxy.config", tmp.path());
        let (ok, text) = kubectl_get(&proxy, "/api/v1/nodes/worker-2");
        assert!(ok, "{auth}: kube-proxy reads nodes: {text}");
        // The apiserver took them for exactly the identities we meant.
        assert_eq!(whoami(&kubelet), "system:node:worker-1", "{auth}");
        assert_eq!(whoami(&proxy), "system:kube-proxy", "{auth}");
    }
}

#[test]
fn a_kubeconfig_from_another_cluster_ca_is_unauthorized() {
    let ours = cluster("x509");
    let theirs = cluster("x509");
    let tmp = tempfile::tempdir().unwrap();
    // Their kubelet certificate, pointed at our apiserver and trusting our CA.
    let kc = fs::read_to_string(kubeconfig(&theirs.outputs[0], "kubelet.config", tmp.path())).unwrap();
    let our_kc = fs::read_to_string(kubeconfig(&ours.outputs[0], "kubelet.config", tmp.path())).unwrap();
    let field = |t: &str, k: &str| t.lines().find(|l| l.trim_start().starts_with(k)).unwrap().to_string();
    let mixed = kc
        .replace(&field(&kc, "server:"), &field(&our_kc, "server:"))
        .replace(&field(&kc, "certificate-authority-data:"), &field(&our_kc, "certificate-authority-data:"));
    let p = tmp.path().join("mixed.config");
    fs::write(&p, mixed).unwrap();
    let (ok, text) = kubectl_get(&p, "/api/v1/nodes/worker-1");
    assert!(!ok && text.contains("Unauthorized"), "{text}");
}

/// A `write_files` entry's content in a golden user-data.
fn write_file(user_data: &Path, path: &str) -> Option<(String, String)> {
    let doc: serde_yaml::Value = serde_yaml::from_str(&fs::read_to_string(user_data).unwrap()).unwrap();
    let f = doc["write_files"].as_sequence().unwrap().iter().find(|f| f["path"].as_str() == Some(path))?;
    Some((f["content"].as_str().unwrap().to_string(), f["permissions"].as_str().unwrap().to_string()))
}

fn der_of(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

/// With `auth: x509` every worker gets a kubelet serving certificate from the
/// cluster CA, with the node name and the worker's address as SANs: what a fresh
/// MicroK8s 1.28+ apiserver (`--kubelet-certificate-authority`) checks when it
/// dials the kubelet by InternalIP. The plan carries it as the first pair of the
/// kubelet's serving store (the join seeds it there; the kubelet renews it,
/// `--rotate-server-certificates`), names no serving file (a named file would be
/// served for ever), and stages no copy.
#[test]
fn the_kubelet_serving_certificate_is_signed_by_the_cluster_ca() {
    use x509_parser::extensions::GeneralName;
    let dir = tempfile::tempdir().unwrap();
    for (fixture, node, address) in
        [("x509", "worker-1", Some([10, 130, 0, 5])), ("x509", "worker-2", None), ("x509-ecdsa", "edge-1", None)]
    {
        let fx = workspace().join("fixtures").join(fixture);
        let ud = fx.join(format!("expected/{node}.stdout"));
        assert!(write_file(&ud, "/etc/mk8s-worker/kubelet.crt").is_none(), "no staged copy");
        let (plan, plan_mode) = write_file(&ud, "/etc/mk8s-worker/plan.json").unwrap();
        assert_eq!(plan_mode, "0600", "the plan holds the key until the join strips it");
        let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
        let pair = &plan["credentials"]["kubeletServing"];
        let (cert_pem, key_pem) = (pair["certPem"].as_str().unwrap(), pair["keyPem"].as_str().unwrap());
        assert!(plan["install"].as_array().unwrap().iter().all(|e| e["target"] != "certs/kubelet.crt"));
        // The kubelet serves from its store in the moved --cert-dir, and renews.
        assert_eq!(
            kubelet_flags(&plan, &["--tls-cert-file", "--tls-private-key-file", "--cert-dir"]),
            ["--cert-dir=${SNAP_COMMON}/var/lib/kubelet/pki"]
        );
        assert_eq!(
            kubelet_flags(&plan, &["--rotate-certificates", "--rotate-server-certificates"]),
            ["--rotate-certificates", "--rotate-server-certificates"]
        );

        let der = der_of(cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let ca_der = der_of(&fs::read_to_string(fx.join("ca.crt")).unwrap());
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw(), "{fixture} {node}: issued by the cluster CA");
        let cn: Vec<_> = cert.subject().iter_common_name().map(|a| a.as_str().unwrap().to_string()).collect();
        let o: Vec<_> = cert.subject().iter_organization().map(|a| a.as_str().unwrap().to_string()).collect();
        assert_eq!(cn, [format!("system:node:{node}")]);
        assert_eq!(o, ["system:nodes"]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth && eku.other.is_empty(), "{fixture} {node}: {eku:?}");
        let sans = &cert.subject_alternative_name().unwrap().unwrap().value.general_names;
        let mut want = vec![GeneralName::DNSName(node)];
        if let Some(ip) = &address {
            want.push(GeneralName::IPAddress(&ip[..]));
        }
        assert_eq!(sans, &want, "{fixture} {node}");
        assert_eq!(cert.validity().not_before.timestamp(), 1_793_491_200, "2026-11-01 from the facts");
        // Not the client certificate's key, but its expiry (one per node).
        let (client_cert, _) = creds_in(&ud, "kubelet.config");
        let client_der = der_of(&client_cert);
        let (_, client) = x509_parser::parse_x509_certificate(&client_der).unwrap();
        assert_eq!(cert.validity().not_after, client.validity().not_after, "{fixture} {node}");
        assert_ne!(client.public_key().raw, cert.public_key().raw);

        // openssl: a valid TLS server certificate of the CA, and the key is its key.
        let cert_path = dir.path().join(format!("{fixture}-{node}.crt"));
        fs::write(&cert_path, cert_pem).unwrap();
        let ok = Command::new(tools::require("openssl"))
            .args(["verify", "-CAfile"])
            .arg(fx.join("ca.crt"))
            .args(["-purpose", "sslserver", "-attime", "1796256000"])
            .arg(&cert_path)
            .output()
            .unwrap();
        assert!(ok.status.success(), "{}{}", String::from_utf8_lossy(&ok.stdout), String::from_utf8_lossy(&ok.stderr));
        let key_path = dir.path().join(format!("{fixture}-{node}.key"));
        fs::write(&key_path, key_pem).unwrap();
        assert_eq!(
            openssl(&["pkey", "-pubout", "-in"], &key_path),
            openssl(&["x509", "-noout", "-pubkey", "-in"], &cert_path)
        );
        if let Some(ip) = address {
            let ip = std::net::Ipv4Addr::from(ip).to_string();
            let ok = Command::new(tools::require("openssl"))
                .args(["verify", "-CAfile"])
                .arg(fx.join("ca.crt"))
                .args(["-purpose", "sslserver", "-attime", "1796256000", "-verify_ip", &ip])
                .arg(&cert_path)
                .output()
                .unwrap();
            assert!(ok.status.success(), "the worker's address verifies: {}", String::from_utf8_lossy(&ok.stdout));
        }
    }
    // Token auth issues none (there is no CA key), and leaves the kubelet's
    // certificate flags to MicroK8s's defaults.
    let seed = workspace().join("fixtures/seed/expected/worker-1.stdout");
    assert!(write_file(&seed, "/etc/mk8s-worker/kubelet.crt").is_none());
    let (plan, _) = write_file(&seed, "/etc/mk8s-worker/plan.json").unwrap();
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let flags = [
        "--tls-cert-file",
        "--tls-private-key-file",
        "--cert-dir",
        "--rotate-certificates",
        "--rotate-server-certificates",
    ];
    assert!(kubelet_flags(&plan, &flags).is_empty());
    assert!(plan["credentials"].get("kubeletServing").is_none());
}

/// The plan's kubelet lines that set one of `flags`, in the plan's order.
fn kubelet_flags(plan: &serde_json::Value, flags: &[&str]) -> Vec<String> {
    let lines = plan["kubeletArgs"].as_array().expect("kubeletArgs");
    let lines = lines.iter().filter_map(|l| l.as_str());
    let mut out: Vec<String> = Vec::new();
    for f in flags {
        out.extend(lines.clone().filter(|l| l.split('=').next() == Some(*f)).map(str::to_string));
    }
    out
}

/// `fixtures/replaced`: worker-1 at epoch 2. Against the same facts without the
/// epoch, its token lines (same user-ids: merge-known-tokens.sh replaces the old
/// machine's) and its join token are new; worker-2's are byte-identical.
#[test]
fn a_replaced_workers_bundle_lines_change_and_no_other_workers() {
    let dir = workspace().join("fixtures/replaced");
    let secrets = Secrets::parse(&fs::read_to_string(dir.join("secrets.yaml")).unwrap()).unwrap();
    let lines = |file: &str, epoch: bool| {
        let text = fs::read_to_string(dir.join(file)).unwrap();
        let text = if epoch { text } else { text.replace("\n    epoch: 2\n", "\n").replace(", epoch: 2 }", " }") };
        assert_eq!(text.contains("epoch: 2"), epoch, "{file}");
        let facts = mk8s_gen::load(&text, &dir).valid("facts", &text).unwrap_or_else(|e| panic!("{e}"));
        let workers: Vec<_> = facts.workers.iter().collect();
        let all = match file {
            "join.yaml" => mk8s_gen::auth::microk8s_join::join_token_lines(&facts, &secrets, &workers),
            _ => workers.iter().map(|w| mk8s_gen::auth::token::token_lines(&facts, &secrets, w)).collect(),
        };
        all.lines().map(|l| (l.contains("worker-1"), l.to_string())).collect::<Vec<_>>()
    };
    for file in ["cluster.yaml", "join.yaml"] {
        let (new, old) = (lines(file, true), lines(file, false));
        assert_eq!(new.len(), old.len(), "{file}");
        for ((w1, n), (_, o)) in new.iter().zip(&old) {
            assert_eq!(n != o, *w1, "{file}: {n} / {o}");
            // The token changes, never the other columns (the user-id the merge keys on).
            let rest = |l: &str| {
                l.split([',', ' '])
                    .filter(|f| f.len() != 64 || !f.bytes().all(|b| b.is_ascii_hexdigit()))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            };
            assert_eq!(rest(n), rest(o), "{file}");
        }
    }
}
