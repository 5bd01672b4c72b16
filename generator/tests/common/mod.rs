//! Helpers shared by the generator's integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::Path;

use mk8s_gen::render::{self, Delivery, FileContent, NodeOutput};
use mk8s_gen::secrets::Secrets;
use mk8s_gen::spans::SpanMap;
use mk8s_testkit::workspace;

/// Render one node through the library, like the CLI does.
pub fn render_facts(facts_yaml: &str, dir: &Path, node: &str) -> NodeOutput {
    let spans = SpanMap::build(facts_yaml);
    let (raw, mut report) = mk8s_gen::facts::parse(facts_yaml, &spans);
    let facts = mk8s_gen::validate::validate(&raw.expect("parses"), dir, &mut report);
    assert!(!report.has_errors(), "{}", report.render("facts", facts_yaml));
    let secrets = Secrets::parse(&fs::read_to_string(workspace().join("fixtures/seed/secrets.yaml")).unwrap()).unwrap();
    let facts = facts.unwrap();
    render::render_node(&facts, &secrets, facts.worker(node).unwrap(), &Delivery::Preinstalled).unwrap()
}

pub fn text_of<'a>(out: &'a NodeOutput, path: &str) -> &'a str {
    match &out.files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{path} not generated")).content {
        FileContent::Text(t) => t,
        FileContent::GzipBase64(_) => panic!("{path} is binary"),
    }
}

/// Three simulated apiservers behind a real node-local load balancer.
pub mod lb {
    use std::fs;
    use std::net::SocketAddr;
    use std::path::Path;
    use std::process::Command;
    use std::sync::Arc;
    use std::time::Duration;

    use mk8s_gen::render::NodeOutput;
    use mk8s_testkit::apiserver::SimApiserver;
    use mk8s_testkit::pki::Ca;
    use mk8s_testkit::proc::{free_port, wait_listening, Guard};
    use mk8s_testkit::tls::https_get;
    use mk8s_testkit::tools;

    use super::{render_facts, text_of};

    pub struct Cluster {
        pub ca: Arc<Ca>,
        pub sims: Vec<SimApiserver>,
        pub lb: SocketAddr,
        pub lb_process: Guard,
        _dir: tempfile::TempDir,
    }

    pub fn cluster(kind: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(Ca::new("failover-ca"));
        let port = free_port();
        let sims: Vec<_> = (2..=4)
            .map(|i| SimApiserver::start_at(ca.clone(), format!("127.0.0.{i}:{port}").parse().unwrap(), ""))
            .collect();
        fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        let facts = format!(
            "cluster:\n  name: fo\n  microk8s: {{ channel: 1.30/stable }}\n  ca: {{ cert-file: {} }}\n  apiserver-port: {port}\n  control-plane:\n    - {{ name: a, address: 127.0.0.2 }}\n    - {{ name: b, address: 127.0.0.3 }}\n    - {{ name: c, address: 127.0.0.4 }}\n  load-balancer: {{ mode: node-local, kind: {kind}, health-check: {{ interval: 1s, timeout: 500ms }} }}\nworkers:\n  - {{ name: w }}\n",
            dir.path().join("ca.crt").display()
        );
        let out = render_facts(&facts, dir.path(), "w");
        let lb: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let process = start_lb(kind, &out, dir.path());
        assert!(wait_listening(lb, Duration::from_secs(20)), "{kind} did not listen on {lb}");
        Cluster { ca, sims, lb, lb_process: process, _dir: dir }
    }

    /// Start the real program with the generated files (relocated from /etc to `dir`).
    pub fn start_lb(kind: &str, out: &NodeOutput, dir: &Path) -> Guard {
        let log = fs::File::create(dir.join(format!("{kind}.log"))).unwrap();
        match kind {
            "traefik" => {
                let provider = dir.join("provider.yaml");
                fs::write(&provider, text_of(out, "/etc/mk8s-worker/traefik/provider.yaml")).unwrap();
                let static_cfg = dir.join("traefik.yaml");
                let text = text_of(out, "/etc/mk8s-worker/traefik/traefik.yaml");
                fs::write(
                    &static_cfg,
                    text.replace("/etc/mk8s-worker/traefik/provider.yaml", provider.to_str().unwrap()),
                )
                .unwrap();
                Guard::spawn(
                    Command::new(tools::require("traefik"))
                        .arg(format!("--configFile={}", static_cfg.display()))
                        .stdout(log.try_clone().unwrap())
                        .stderr(log),
                )
            }
            "haproxy" => {
                let cfg = dir.join("haproxy.cfg");
                fs::write(&cfg, text_of(out, "/etc/mk8s-worker/haproxy/haproxy.cfg")).unwrap();
                let haproxy = tools::require("haproxy");
                let check = Command::new(&haproxy).arg("-c").arg("-f").arg(&cfg).output().unwrap();
                assert!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stdout));
                Guard::spawn(
                    Command::new(haproxy).arg("-db").arg("-f").arg(&cfg).stdout(log.try_clone().unwrap()).stderr(log),
                )
            }
            other => panic!("no program for {other}"),
        }
    }

    impl Cluster {
        /// One request through the LB, verified against the cluster CA, that must land
        /// on one of `live` and show that apiserver's own certificate.
        pub fn ok_on(&self, live: &[usize]) -> bool {
            match https_get(self.lb, "/readyz", Some(&self.ca), None) {
                Ok(r) => r.status == 200 && live.iter().any(|&i| self.sims[i].cert_der == r.peer_cert),
                Err(_) => false,
            }
        }

        pub fn requests_to(&self, i: usize) -> usize {
            self.sims[i].requests().iter().filter(|r| r.1 == "/readyz").count()
        }
    }
}
