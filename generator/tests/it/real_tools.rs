//! The generated files, checked by the programs that consume them: cloud-init's own
//! schema check, PyYAML (cloud-init's parser), kubectl, a real traefik proxying TLS,
//! ignition-validate, and the real Ignition writing a root as at first boot. A missing tool fails the test. (The control-plane merge script has its own file.)

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mk8s_gen::render::{self, Delivery};
use mk8s_testkit::facts::FactsYaml;
use mk8s_testkit::pki::Ca;
use mk8s_testkit::proc::{free_port, wait_listening, Guard};
use mk8s_testkit::tls::{self, https_get, server_config, Response, TlsServer};
use mk8s_testkit::{tools, workspace};

use crate::common;
use common::{render_facts, text_of};
use serde_json::Value;

/// Every file under fixtures/*/expected/ that `keep` accepts, sorted.
fn golden_files(keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for case in fs::read_dir(workspace().join("fixtures")).unwrap() {
        let Ok(rd) = fs::read_dir(case.unwrap().path().join("expected")) else { continue };
        out.extend(rd.map(|f| f.unwrap().path()).filter(|p| keep(p)));
    }
    out.sort();
    out
}

/// Every golden user-data document in fixtures/.
fn golden_user_data() -> Vec<PathBuf> {
    let out = golden_files(|p| {
        p.extension().is_some_and(|e| e == "stdout") && fs::read(p).unwrap().starts_with(b"#cloud-config\n")
    });
    assert!(out.len() >= 8, "expected the golden user-data files, found {}", out.len());
    out
}

fn cloud_init_schema(path: &Path) -> (bool, String) {
    let ci = tools::require("cloud-init");
    let out = Command::new(ci).args(["schema", "--config-file"]).arg(path).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn cloud_init_schema_accepts_every_generated_user_data() {
    for p in golden_user_data() {
        let (ok, text) = cloud_init_schema(&p);
        assert!(ok && text.contains("Valid cloud-config"), "{}: {text}", p.display());
    }
}

#[test]
fn cloud_init_schema_check_is_able_to_fail() {
    // The control: the same checker refuses a document with a wrong type, so the
    // test above means something.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    fs::write(&bad, "#cloud-config\nwrite_files:\n  - path: /x\n    content: y\n    permissions: [0600]\n").unwrap();
    let (ok, text) = cloud_init_schema(&bad);
    assert!(!ok, "cloud-init accepted an invalid document: {text}");
}

fn read_with_pyyaml(path: &Path) -> Value {
    let py = tools::python_with_yaml();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/read_user_data.py");
    let out = Command::new(py).arg(script).arg(path).output().unwrap();
    assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn pyyaml_sees_strings_where_we_wrote_strings() {
    for p in golden_user_data() {
        let v = read_with_pyyaml(&p);
        let node = p.file_stem().unwrap().to_string_lossy().to_string();
        let keys = &v["keys"];
        assert!(
            *keys == serde_json::json!(["runcmd", "write_files"])
                || *keys == serde_json::json!(["packages", "runcmd", "write_files"]),
            "{}: {keys}",
            p.display()
        );
        for t in v["runcmd_types"].as_array().unwrap().iter().flat_map(|c| c.as_array().unwrap()) {
            assert_eq!(t, "str", "{}", p.display());
        }
        let files = v["files"].as_array().unwrap();
        let mut paths = BTreeSet::new();
        for f in files {
            assert_eq!(f["path_type"], "str");
            assert_eq!(f["permissions_type"], "str", "{}: {f}", p.display());
            let perm = f["permissions"].as_str().unwrap();
            assert!(perm.len() == 4 && perm.starts_with('0'), "{perm}");
            assert_eq!(f["owner"], "root:root");
            paths.insert(f["path"].as_str().unwrap().to_string());
            if let Some(kc) = f.get("kubeconfig") {
                let creds = kc["credential_types"].as_array().unwrap();
                let token = serde_json::json!([["token", "str"]]);
                let cert = serde_json::json!([["client-certificate-data", "str"], ["client-key-data", "str"]]);
                assert!(kc["credential_types"] == token || kc["credential_types"] == cert, "{creds:?}");
                assert_eq!(f["permissions"], "0600", "kubeconfigs hold tokens");
            }
        }
        assert_eq!(paths.len(), files.len(), "duplicate write_files paths in {}", p.display());
        // The plan, as the bootstrap will read it.
        let plan = files.iter().find(|f| f["path"] == mk8s_bootstrap::plan::PLAN_PATH).expect("plan");
        assert_eq!(plan["permissions"], "0600");
        let parsed = mk8s_bootstrap::plan::JoinPlan::from_json(plan["content"].as_str().unwrap()).unwrap();
        let expected_node = node.trim_end_matches("-fetched").trim_end_matches("-embedded").trim_end_matches("-baked");
        assert_eq!(parsed.node.name, expected_node, "{}", p.display());
        // Each staged file's content matches the sha256 the plan carries.
        for inst in &parsed.install {
            let f = files.iter().find(|f| f["path"] == inst.staged.as_str()).expect("staged file present");
            let got = mk8s_bootstrap::plan::sha256_hex(f["content"].as_str().unwrap().as_bytes());
            assert_eq!(got, inst.sha256, "{}", inst.staged);
        }
    }
}

#[test]
fn embedded_bootstrap_decodes_to_the_same_bytes() {
    let p = workspace().join("fixtures/seed/expected/worker-1-embedded.stdout");
    let v = read_with_pyyaml(&p);
    let f = v["files"].as_array().unwrap().iter().find(|f| f["path"] == "/usr/local/bin/mk8s-bootstrap").unwrap();
    assert_eq!(f["encoding"], "gz+b64");
    assert_eq!(f["permissions"], "0755");
    let want = fs::read(workspace().join("fixtures/seed/bootstrap-stand-in.bin")).unwrap();
    assert_eq!(f["size"].as_u64().unwrap() as usize, want.len());
}

#[test]
fn piecewise_and_whole_document_emission_agree() {
    for (fixture, node) in [("seed", "worker-1"), ("kubelite-ipv6", "edge-7"), ("yaml11-names", "off")] {
        let fx = workspace().join("fixtures").join(fixture);
        let out = render_facts(&fs::read_to_string(fx.join("cluster.yaml")).unwrap(), &fx, node);
        let whole = mk8s_gen::output::cloud_config::cloud_config_whole(&out);
        assert_eq!(mk8s_gen::output::cloud_config::cloud_config(&out), whole, "{fixture}");
        let text = fs::read_to_string(fx.join("cluster.yaml")).unwrap();
        let facts = mk8s_gen::load(&text, &fx).valid("facts", &text).unwrap_or_else(|e| panic!("{e}"));
        let shared = render::ClusterArtifacts::new(&facts, &Delivery::Preinstalled).unwrap();
        assert_eq!(
            mk8s_gen::output::cloud_config::cloud_config_with(
                &out,
                Some(&mk8s_gen::output::cloud_config::SharedEntries::new(&shared))
            ),
            whole,
            "{fixture}"
        );
    }
}

#[test]
fn kubectl_reads_the_generated_kubeconfigs() {
    let kubectl = tools::require("kubectl");
    let fx = workspace().join("fixtures/seed");
    let out = render_facts(&fs::read_to_string(fx.join("cluster.yaml")).unwrap(), &fx, "worker-1");
    let dir = tempfile::tempdir().unwrap();
    let ca_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(fs::read_to_string(fx.join("ca.crt")).unwrap())
    };
    let plan = &out.plan;
    for (file, user) in [("kubelet.config", "kubelet"), ("proxy.config", "kube-proxy")] {
        let path = dir.path().join(file);
        fs::write(&path, text_of(&out, &format!("/etc/mk8s-worker/{file}"))).unwrap();
        let res = Command::new(&kubectl)
            .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
            .arg(&path)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
        let v: Value = serde_json::from_slice(&res.stdout).unwrap();
        assert_eq!(v["clusters"][0]["cluster"]["server"], "https://127.0.0.1:16443");
        assert_eq!(v["clusters"][0]["cluster"]["certificate-authority-data"], ca_b64.as_str());
        assert_eq!(v["current-context"], "microk8s");
        assert_eq!(v["contexts"][0]["context"]["user"], user);
        assert_eq!(v["users"][0]["name"], user);
        let token = v["users"][0]["user"]["token"].as_str().unwrap();
        assert_eq!(token.len(), 64);
        if user == "kubelet" {
            let mk8s_bootstrap::plan::Credential::Token { token: t } = &plan.credentials.kubelet else { panic!() };
            assert_eq!(token, t);
        }
    }
}

/// Three TLS backends on 127.0.0.2-4, standing in for apiservers.
struct Backends {
    ca: Ca,
    port: u16,
    servers: Vec<TlsServer>,
    certs: Vec<Vec<u8>>,
}

fn backends() -> Backends {
    let ca = Ca::new("test-cluster-ca");
    let port = free_port();
    let mut servers = Vec::new();
    let mut certs = Vec::new();
    for i in 2..=4 {
        let ip = format!("127.0.0.{i}");
        let leaf = ca.server(&["127.0.0.1", &ip, "kubernetes"]);
        certs.push(leaf.cert_der.clone());
        let body = format!("backend-{i}");
        let handler: tls::Handler = std::sync::Arc::new(move |_req| Response::text(200, body.clone()));
        servers.push(TlsServer::start(&format!("{ip}:{port}"), server_config(&leaf, false), handler).unwrap());
    }
    Backends { ca, port, servers, certs }
}

fn facts_for(b: &Backends, ca_file: &Path) -> String {
    FactsYaml::new("t")
        .channel("1.28/stable")
        .ca_file(ca_file)
        .port(b.port)
        .control_plane("a", "127.0.0.2")
        .control_plane("b", "127.0.0.3")
        .control_plane("c", "127.0.0.4")
        .lb_traefik(None)
        .health_check("1s", "500ms")
        .worker("w")
        .yaml()
}

fn start_traefik(static_cfg: &Path, log: &Path) -> Guard {
    let traefik = tools::require("traefik");
    Guard::spawn(
        Command::new(traefik)
            .arg(format!("--configFile={}", static_cfg.display()))
            .stdout(fs::File::create(log).unwrap())
            .stderr(fs::File::create(log.with_extension("err")).unwrap()),
    )
}

/// Retry until `ok` holds or the deadline passes; returns the last result.
fn until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn real_traefik_passes_tls_through_to_the_apiservers() {
    let b = backends();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    fs::write(&ca_file, &b.ca.cert_pem).unwrap();
    let out = render_facts(&facts_for(&b, &ca_file), dir.path(), "w");
    // Same files, relocated from /etc to the temp dir (the only change).
    let provider = dir.path().join("provider.yaml");
    fs::write(&provider, text_of(&out, "/etc/mk8s-worker/traefik/provider.yaml")).unwrap();
    let static_cfg = dir.path().join("traefik.yaml");
    let text = text_of(&out, "/etc/mk8s-worker/traefik/traefik.yaml");
    assert!(text.contains("\"/etc/mk8s-worker/traefik/provider.yaml\""));
    fs::write(&static_cfg, text.replace("/etc/mk8s-worker/traefik/provider.yaml", provider.to_str().unwrap())).unwrap();
    let _traefik = start_traefik(&static_cfg, &dir.path().join("traefik.log"));
    let lb: std::net::SocketAddr = format!("127.0.0.1:{}", b.port).parse().unwrap();
    assert!(wait_listening(lb, Duration::from_secs(20)), "traefik did not listen on {lb}");
    // Verified against the cluster CA, as kubelet does: the backend's certificate.
    let mut seen = BTreeSet::new();
    let first =
        until(Duration::from_secs(20), || https_get(lb, "/", Some(&b.ca), None).ok().filter(|r| r.status == 200));
    if first.is_none() {
        let log = fs::read_to_string(dir.path().join("traefik.log")).unwrap_or_default();
        let err = fs::read_to_string(dir.path().join("traefik.err")).unwrap_or_default();
        let last = https_get(lb, "/", Some(&b.ca), None);
        panic!("no TLS connection through traefik to a backend: {last:?}\n{log}\n{err}");
    }
    for _ in 0..30 {
        let r = https_get(lb, "/", Some(&b.ca), None).expect("TLS through traefik, verified against the test CA");
        assert_eq!(r.status, 200);
        assert!(b.certs.contains(&r.peer_cert), "not a backend certificate: {}", tls::subject_cn(&r.peer_cert));
        seen.insert(r.body);
    }
    assert_eq!(seen.len(), 3, "load not spread across the three backends: {seen:?}");
    drop(b.servers);
}

#[test]
fn the_original_traefik_files_serve_traefiks_default_certificate() {
    let b = backends();
    let dir = tempfile::tempdir().unwrap();
    let lb_port = free_port();
    let seed = workspace().join("fixtures/seed-original");
    // Point the seed's files at loopback only (its addresses are not ours to reach).
    let provider = fs::read_to_string(seed.join("provider.yaml"))
        .unwrap()
        .replace("10.130.0.2:16443", &format!("127.0.0.2:{}", b.port))
        .replace("10.130.0.3:16443", &format!("127.0.0.3:{}", b.port))
        .replace("10.130.0.4:16443", &format!("127.0.0.4:{}", b.port));
    assert!(!provider.contains("10.130."));
    // As the original procedure does: it writes provider.yaml...
    fs::write(dir.path().join("provider.yaml"), &provider).unwrap();
    let lb: std::net::SocketAddr = format!("127.0.0.1:{lb_port}").parse().unwrap();
    for (name, filename) in [("as written", "providers.yaml"), ("file name corrected", "provider.yaml")] {
        // ...and its static configuration names providers.yaml.
        let static_cfg = dir.path().join(format!("traefik-{filename}"));
        let text = fs::read_to_string(seed.join("traefik.yaml"))
            .unwrap()
            .replace("\":16443\"", &format!("\"127.0.0.1:{lb_port}\""))
            .replace("/etc/traefik/providers.yaml", dir.path().join(filename).to_str().unwrap());
        fs::write(&static_cfg, text).unwrap();
        let traefik = start_traefik(&static_cfg, &dir.path().join(format!("{filename}.log")));
        assert!(wait_listening(lb, Duration::from_secs(20)), "traefik did not listen");
        std::thread::sleep(Duration::from_secs(2)); // give the file provider time to load
        let r = until(Duration::from_secs(10), || https_get(lb, "/", None, None).ok()).expect("a TLS handshake");
        let cn = tls::subject_cn(&r.peer_cert);
        assert_eq!(cn, "TRAEFIK DEFAULT CERT", "{name}: traefik presented {cn}");
        assert!(!b.certs.contains(&r.peer_cert));
        // And a client that verifies, like kubelet, fails.
        // ...on the certificate, not on a connection that went away.
        let err = https_get(lb, "/", Some(&b.ca), None).expect_err("verification should fail");
        assert!(err.to_string().contains("invalid peer certificate: UnknownIssuer"), "{name}: {err}");
        drop(traefik);
        until(Duration::from_secs(10), || (!wait_listening(lb, Duration::from_millis(100))).then_some(()));
    }
}

#[test]
fn token_lines_cannot_be_injected() {
    // Hostile names never reach known_tokens.csv: they are rejected at validation.
    let text = fs::read_to_string(workspace().join("fixtures/invalid-hostile/cluster.yaml")).unwrap();
    let mk8s_gen::Loaded { facts, report, .. } = mk8s_gen::load(&text, &workspace().join("fixtures/invalid-hostile"));
    assert!(facts.is_none());
    assert!(report.problems.iter().any(|p| p.path == "$.workers[0].name"));
}

/// Every golden Ignition config, with the cloud-config of the same node beside it.
fn golden_ignition() -> Vec<(PathBuf, PathBuf)> {
    let is_ignition = |p: &Path| {
        let name = p.file_name().unwrap().to_string_lossy();
        name.contains("-ignition") && name.ends_with(".stdout")
    };
    let out: Vec<_> = golden_files(is_ignition)
        .into_iter()
        .map(|p| {
            let twin = p.with_file_name(p.file_name().unwrap().to_string_lossy().replace("-ignition", ""));
            (p, twin)
        })
        .collect();
    assert!(out.len() >= 4, "{out:?}");
    for (ign, twin) in &out {
        assert!(twin.exists(), "{} has no cloud-config twin {}", ign.display(), twin.display());
    }
    out
}

#[test]
fn ignition_validate_accepts_every_generated_config_and_can_refuse() {
    let iv = tools::require("ignition-validate");
    for (p, _) in golden_ignition() {
        let o = Command::new(&iv).arg(&p).output().unwrap();
        assert!(
            o.status.success(),
            "{}: {}{}",
            p.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ign");
    fs::write(&bad, r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"relative/x","mode":"0644"}]}}"#)
        .unwrap();
    assert!(!Command::new(&iv).arg(&bad).output().unwrap().status.success(), "the control must fail");
}

#[test]
fn ignition_carries_the_same_files_as_cloud_init_with_true_hashes() {
    use base64::Engine as _;
    use sha2::Digest;
    for (ign, cc) in golden_ignition() {
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&ign).unwrap()).unwrap();
        assert_eq!(v["ignition"]["version"], "3.3.0");
        let cloud = read_with_pyyaml(&cc);
        let cloud_files = cloud["files"].as_array().unwrap();
        let mut seen = 0;
        for f in v["storage"]["files"].as_array().unwrap() {
            let src = f["contents"]["source"].as_str().unwrap();
            let raw =
                base64::engine::general_purpose::STANDARD.decode(src.strip_prefix("data:;base64,").unwrap()).unwrap();
            let data = if f["contents"]["compression"] == "gzip" {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut out).unwrap();
                out
            } else {
                raw
            };
            assert_eq!(
                f["contents"]["verification"]["hash"],
                format!("sha256-{}", hex::encode(sha2::Sha256::digest(&data)))
            );
            let twin = cloud_files
                .iter()
                .find(|c| c["path"] == f["path"])
                .unwrap_or_else(|| panic!("{} not in {}", f["path"], cc.display()));
            assert_eq!(format!("{:04o}", f["mode"].as_u64().unwrap()), twin["permissions"].as_str().unwrap());
            assert_eq!(data.len() as u64, twin["size"].as_u64().unwrap(), "{}", f["path"]);
            if let Some(text) = twin["content"].as_str() {
                assert_eq!(String::from_utf8(data).unwrap(), text);
            }
            seen += 1;
        }
        let units = v["systemd"]["units"].as_array().unwrap();
        assert!(units.iter().any(|u| u["name"] == "mk8s-bootstrap.service" && u["enabled"] == true));
        // A unit without contents is in the image already (--baked): enabled only.
        let written = units.iter().filter(|u| u.get("contents").is_some()).count();
        assert_eq!(seen + written, cloud_files.len(), "{}", ign.display());
    }
}

/// path -> (content, mode) of a cloud-config's `write_files`, content decoded.
fn cloud_init_files(path: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use base64::Engine as _;
    let doc: serde_yaml::Value = serde_yaml::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    doc["write_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| {
            let content = f["content"].as_str().unwrap();
            let data = match f["encoding"].as_str() {
                None => content.as_bytes().to_vec(),
                Some("gz+b64") => {
                    let gz = base64::engine::general_purpose::STANDARD.decode(content).unwrap();
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
                    out
                }
                Some(e) => panic!("{}: unexpected encoding {e}", path.display()),
            };
            let mode = u32::from_str_radix(f["permissions"].as_str().unwrap(), 8).unwrap();
            (f["path"].as_str().unwrap().to_string(), (data, mode))
        })
        .collect()
}

/// Every regular file under `dir`: "/relative/path" -> (content, mode, uid, gid).
fn file_tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32, u32, u32)>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                walk(&p, base, out);
            } else {
                assert!(m.is_file(), "{} is neither a file nor a directory", p.display());
                let rel = format!("/{}", p.strip_prefix(base).unwrap().display());
                out.insert(rel, (fs::read(&p).unwrap(), m.mode() & 0o7777, m.uid(), m.gid()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Run the real Ignition (Debian's 2.14) on a config, as in an initramfs: the
/// `fetch-offline` stage reads it with the `file` platform, the `files` stage
/// writes under `root`. Returns the log on failure.
fn run_ignition(config: &Path, work: &Path, root: &Path) -> Result<(), String> {
    let ignition = tools::require("ignition");
    // What the files stage needs of the target root: user and group databases to
    // resolve `root`, and an SELinux config (it relabels what it wrote, with
    // `setfiles`: a stand-in that accepts the list, as SELinux is not under test).
    fs::create_dir_all(root.join("etc/selinux")).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    fs::write(root.join("etc/selinux/config"), "SELINUX=disabled\nSELINUXTYPE=targeted\n").unwrap();
    let bin = work.join("bin");
    fs::create_dir_all(&bin).unwrap();
    mk8s_testkit::node_model::write_script(&bin.join("setfiles"), "#!/bin/sh\ncat >/dev/null\n");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    for stage in ["fetch-offline", "files"] {
        let o = Command::new(&ignition)
            .args(["-platform", "file", "-stage", stage, "-log-to-stdout", "-root"])
            .arg(root)
            .arg("-config-cache")
            .arg(work.join("ignition.json"))
            .arg("-state-file")
            .arg(work.join("state"))
            .arg("-neednet")
            .arg(work.join("neednet"))
            .env("IGNITION_CONFIG_FILE", config)
            .env("PATH", &path)
            .output()
            .unwrap();
        if !o.status.success() {
            return Err(format!(
                "ignition -stage {stage} failed:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
    Ok(())
}

#[test]
fn real_ignition_writes_what_cloud_init_writes() {
    for (ign, cc) in golden_ignition() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        run_ignition(&ign, work.path(), &root).unwrap_or_else(|e| panic!("{}: {e}", ign.display()));
        let mut got = file_tree(&root);
        // Ignition's own bookkeeping, and the stubs made above.
        got.remove("/etc/.ignition-result.json");
        for stub in ["/etc/passwd", "/etc/group", "/etc/selinux/config"] {
            got.remove(stub).expect("stub kept");
        }
        // The preset is how Ignition enables a unit; cloud-init's runcmd enables
        // the same unit with `systemctl enable --now`.
        let (preset, ..) = got.remove("/etc/systemd/system-preset/20-ignition.preset").expect("a preset");
        let preset = String::from_utf8(preset).unwrap();
        let mut enabled: Vec<&str> = preset.lines().collect();
        enabled.sort();
        assert_eq!(enabled, ["enable mk8s-bootstrap.service", "enable mk8s-maintain.timer"], "{}", ign.display());
        let doc: serde_yaml::Value = serde_yaml::from_str(&fs::read_to_string(&cc).unwrap()).unwrap();
        for unit in ["mk8s-bootstrap.service", "mk8s-maintain.timer"] {
            let enable: serde_yaml::Value =
                serde_yaml::from_str(&format!("[systemctl, enable, --now, --no-block, {unit}]")).unwrap();
            assert!(doc["runcmd"].as_sequence().unwrap().contains(&enable), "{}: {unit}", cc.display());
        }

        let want = cloud_init_files(&cc);
        let got_paths: Vec<_> = got.keys().collect();
        let want_paths: Vec<_> = want.keys().collect();
        assert_eq!(got_paths, want_paths, "{}: Ignition and cloud-init write different files", ign.display());
        for (path, (data, mode, uid, gid)) in &got {
            let (want_data, want_mode) = &want[path];
            assert!(data == want_data, "{}: {path}: contents differ", ign.display());
            assert_eq!(format!("{mode:04o}"), format!("{want_mode:04o}"), "{}: {path}", ign.display());
            assert_eq!((*uid, *gid), (0, 0), "{}: {path}: owner (cloud-init writes root:root)", ign.display());
        }
    }
}

#[test]
fn real_ignition_refuses_a_config_whose_hash_is_wrong() {
    // The control: a file whose contents do not match its verification hash.
    let work = tempfile::tempdir().unwrap();
    let bad = work.path().join("bad.ign");
    let hash = format!("sha256-{}", "0".repeat(64));
    let cfg = serde_json::json!({"ignition": {"version": "3.3.0"}, "storage": {"files": [
        {"path": "/etc/x", "mode": 420, "contents": {"source": "data:,hello", "verification": {"hash": hash}}}
    ]}});
    fs::write(&bad, cfg.to_string()).unwrap();
    let err = run_ignition(&bad, work.path(), &work.path().join("root")).unwrap_err();
    assert!(err.contains("hash"), "{err}");
    assert!(!work.path().join("root/etc/x").exists());
}
