//! `kind: builtin` against three real kube-apiservers with MicroK8s's default args,
//! on AlwaysAllow (an anonymous `/readyz` is 401) and RBAC,Node (200): the
//! balancer's checks count both as healthy, requests through it reach an apiserver
//! with the client's own credential, and the loss of one apiserver costs no request.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::proc::Guard;
use mk8s_testkit::upstream::{ControlPlane, Options};

use super::common;

/// The files mk8s-gen writes for `kind: builtin`, for this control plane, in `dir`
/// (the provider file's path rewritten to `dir`).
fn builtin_files(cp: &ControlPlane, dir: &Path) -> std::path::PathBuf {
    fs::write(dir.join("ca.crt"), &cp.ca.cert_pem).unwrap();
    let facts = FactsYaml::new("real").channel("1.30/stable").ca_file("ca.crt").auth_token().port(cp.options.port);
    let facts = cp.options.ips.iter().enumerate().fold(facts, |f, (i, ip)| f.control_plane(&format!("cp-{i}"), ip));
    let facts = facts.worker(Worker::new("w-1").address("10.0.0.5")).yaml();
    let (facts, secrets) = common::facts_and_secrets(&facts, dir, &cp.ca.key_pem);
    let worker = facts.worker("w-1").unwrap();
    let out =
        mk8s_gen::render::render_node(&facts, &secrets, worker, &mk8s_gen::render::Delivery::Preinstalled).unwrap();
    let text = |path: &str| match &out.files.iter().find(|f| f.path == path).unwrap().content {
        mk8s_gen::render::FileContent::Text(t) => t.clone(),
        _ => panic!("{path} is not text"),
    };
    let provider = dir.join("provider.yaml");
    fs::write(&provider, text("/etc/mk8s-worker/balancer/provider.yaml")).unwrap();
    let config = dir.join("traefik.yaml");
    let static_cfg = text("/etc/mk8s-worker/balancer/traefik.yaml")
        .replace("/etc/mk8s-worker/balancer/provider.yaml", provider.to_str().unwrap());
    fs::write(&config, static_cfg).unwrap();
    config
}

fn balance(config: &Path, ca: &Path, log: &Path) -> Guard {
    let log = fs::File::create(log).unwrap();
    Guard::spawn(
        Command::new(env!("CARGO_BIN_EXE_mk8s-bootstrap"))
            .args(["balance", "--config"])
            .arg(config)
            .arg("--ca")
            .arg(ca)
            .args(["--check-interval", "1s", "--reload-interval", "200ms"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    )
}

/// `GET path` through the balancer as the cluster's admin, verifying the
/// apiserver's certificate (it names 127.0.0.1) against the cluster CA.
fn get(cp: &ControlPlane, listen: SocketAddr, path: &str) -> Result<u16, String> {
    mk8s_testkit::tls::https_get_as(listen, path, Some(&cp.ca), None, Some(&cp.admin))
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

#[test]
fn real_apiservers_behind_the_builtin_balancer_on_both_authorization_modes() {
    for authz in [Authz::AlwaysAllow, Authz::RbacNode] {
        let mut cp = ControlPlane::start(Options::new(30, authz));
        let dir = tempfile::tempdir().unwrap();
        let config = builtin_files(&cp, dir.path());
        let log = dir.path().join("balance.log");
        let _lb = balance(&config, &dir.path().join("ca.crt"), &log);
        let listen: SocketAddr = format!("127.0.0.1:{}", cp.options.port).parse().unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while get(&cp, listen, "/version").is_err() {
            assert!(
                Instant::now() < end,
                "{authz:?}: nothing through the balancer\n{}",
                fs::read_to_string(&log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Several sweeps (1 s): every apiserver answers its check (401 on
        // AlwaysAllow, 200 on RBAC,Node), none leaves the rotation.
        std::thread::sleep(Duration::from_secs(4));
        for _ in 0..30 {
            assert_eq!(get(&cp, listen, "/api/v1/namespaces/default"), Ok(200), "{authz:?}");
        }
        let said = fs::read_to_string(&log).unwrap();
        assert!(!said.contains("out of rotation"), "{authz:?}: a healthy apiserver was taken out:\n{said}");

        // The loss of an apiserver costs no request.
        cp.apiservers[0].kill();
        for i in 0..100 {
            assert_eq!(get(&cp, listen, "/api/v1/namespaces/default"), Ok(200), "{authz:?}: request {i}");
        }
        let end = Instant::now() + Duration::from_secs(10);
        let gone = format!("{} out of rotation", cp.apiservers[0].addr);
        while !fs::read_to_string(&log).unwrap().contains(&gone) {
            assert!(Instant::now() < end, "{authz:?}: {gone} never said\n{}", fs::read_to_string(&log).unwrap());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
