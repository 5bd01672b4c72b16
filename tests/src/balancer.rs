//! Node-local load balancers under test: three simulated apiservers behind the
//! real traefik or HAProxy, run with the generator's files for a worker. Shared by
//! the generator's failover and unit tests and its `lb` bench.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::apiserver::SimApiserver;
use crate::facts::FactsYaml;
use crate::pki::Ca;
use crate::proc::{free_port, wait_listening, Guard};
use crate::tls::https_get;
use crate::tools;

/// The worker's token, known to every apiserver: clients through the balancer
/// authenticate, since the apiservers run MicroK8s's default AlwaysAllow, which
/// refuses every anonymous request (the balancers' own checks stay anonymous).
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const KNOWN_TOKENS: &str = "0123456789abcdef0123456789abcdef,system:node:w,kubelet-w,\"system:nodes\"\n";

pub struct Cluster {
    pub ca: Arc<Ca>,
    pub sims: Vec<SimApiserver>,
    pub lb: SocketAddr,
    pub lb_process: Guard,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// What the balancer printed (its journal, on a node).
    pub fn lb_log(&self, kind: &str) -> String {
        fs::read_to_string(self.dir.path().join(format!("{kind}.log"))).unwrap_or_default()
    }
}

/// The generated text files of one worker, by their path on the node.
pub type Files = BTreeMap<String, String>;

/// Three apiservers (127.0.0.2-4) and the real `kind` balancer in front of them,
/// run with the files `render(facts_yaml, facts_dir, worker)` generates for the
/// worker `w` of a cluster of those three (the testkit does not link the
/// generator: its tests and benches pass their renderer). `unprivileged` runs the
/// balancer as its unit does: not root (nobody), with no capabilities and no way
/// to gain privileges, reading its configuration as a world-readable file.
pub fn cluster_as(kind: &str, unprivileged: bool, render: impl FnOnce(&str, &Path, &str) -> Files) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::new("failover-ca"));
    let port = free_port();
    let sims: Vec<_> = (2..=4)
        .map(|i| SimApiserver::start_at(ca.clone(), format!("127.0.0.{i}:{port}").parse().unwrap(), KNOWN_TOKENS))
        .collect();
    fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
    let facts = FactsYaml::new("fo")
        .channel("1.30/stable")
        .ca_file(dir.path().join("ca.crt"))
        .port(port)
        .control_plane("a", "127.0.0.2")
        .control_plane("b", "127.0.0.3")
        .control_plane("c", "127.0.0.4")
        .lb_node_local(kind)
        .health_check("1s", "500ms")
        .worker("w")
        .yaml();
    let files = render(&facts, dir.path(), "w");
    let lb: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let process = start_lb(kind, &files, dir.path(), unprivileged);
    assert!(wait_listening(lb, Duration::from_secs(20)), "{kind} did not listen on {lb}");
    Cluster { ca, sims, lb, lb_process: process, dir }
}

/// The real program's executable, where an unprivileged user can run it.
fn program(kind: &str, dir: &Path, unprivileged: bool) -> std::path::PathBuf {
    let mut path = if kind == "builtin" {
        // The agent under test: as given (the bench runs the shipped static build),
        // else as cargo built it beside this test.
        std::env::var_os("MK8S_BOOTSTRAP_BIN").map(std::path::PathBuf::from).unwrap_or_else(|| {
            crate::node_model::workspace_binary(
                "mk8s-bootstrap",
                "cargo build -p mk8s-bootstrap --bin mk8s-bootstrap",
                &crate::workspace().join("bootstrap"),
            )
        })
    } else {
        tools::require(kind)
    };
    if !unprivileged {
        return path;
    }
    if !fs::read(&path).unwrap().starts_with(b"\x7fELF") {
        // A version manager's shim (e.g. pyenv): pip put the binary in the
        // interpreter's scripts directory.
        let o = Command::new(tools::require("python3"))
            .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
            .output()
            .unwrap();
        path = Path::new(String::from_utf8_lossy(&o.stdout).trim()).join(kind);
    }
    // Home directories may be closed to others: run a copy, as from /usr/local/bin.
    let copy = dir.join(path.file_name().unwrap_or_default());
    fs::copy(&path, &copy).unwrap();
    fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    copy
}

/// `program` as the unit runs it: uid/gid nobody, no supplementary groups, no
/// capabilities (bounding, inheritable, ambient), no new privileges.
fn command(program: &Path, unprivileged: bool) -> Command {
    if !unprivileged {
        return Command::new(program);
    }
    let mut c = Command::new(tools::require("setpriv"));
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--ambient-caps=-all"]);
    c.args(["--bounding-set=-all", "--no-new-privs", "--"]).arg(program);
    c
}

/// Start the real program with the generated files (relocated from /etc to `dir`).
pub fn start_lb(kind: &str, files: &Files, dir: &Path, unprivileged: bool) -> Guard {
    if unprivileged {
        // A temporary directory is 0700; /etc/mk8s-worker is 0755.
        fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let log = fs::File::create(dir.join(format!("{kind}.log"))).unwrap();
    let bin = program(kind, dir, unprivileged);
    match kind {
        "traefik" => {
            let provider = dir.join("provider.yaml");
            fs::write(&provider, text_of(files, "/etc/mk8s-worker/traefik/provider.yaml")).unwrap();
            let static_cfg = dir.join("traefik.yaml");
            let text = text_of(files, "/etc/mk8s-worker/traefik/traefik.yaml");
            fs::write(&static_cfg, text.replace("/etc/mk8s-worker/traefik/provider.yaml", provider.to_str().unwrap()))
                .unwrap();
            Guard::spawn(
                command(&bin, unprivileged)
                    .arg(format!("--configFile={}", static_cfg.display()))
                    .stdout(log.try_clone().unwrap())
                    .stderr(log),
            )
        }
        "haproxy" => {
            let cfg = dir.join("haproxy.cfg");
            fs::write(&cfg, text_of(files, "/etc/mk8s-worker/haproxy/haproxy.cfg")).unwrap();
            let check = command(&bin, unprivileged).arg("-c").arg("-f").arg(&cfg).output().unwrap();
            assert!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stdout));
            Guard::spawn(
                command(&bin, unprivileged).arg("-db").arg("-f").arg(&cfg).stdout(log.try_clone().unwrap()).stderr(log),
            )
        }
        "builtin" => {
            let provider = dir.join("provider.yaml");
            fs::write(&provider, text_of(files, "/etc/mk8s-worker/balancer/provider.yaml")).unwrap();
            let config = dir.join("traefik.yaml");
            let text = text_of(files, "/etc/mk8s-worker/balancer/traefik.yaml");
            fs::write(&config, text.replace("/etc/mk8s-worker/balancer/provider.yaml", provider.to_str().unwrap()))
                .unwrap();
            fs::write(dir.join("cluster-ca.crt"), text_of(files, "/etc/mk8s-worker/ca.crt")).unwrap();
            Guard::spawn(
                command(&bin, unprivileged)
                    .arg("balance")
                    .arg("--config")
                    .arg(&config)
                    .arg("--ca")
                    .arg(dir.join("cluster-ca.crt"))
                    .stdout(log.try_clone().unwrap())
                    .stderr(log),
            )
        }
        other => panic!("no program for {other}"),
    }
}

impl Cluster {
    /// One request through the LB, verified against the cluster CA, that must land
    /// on one of `live` and show that apiserver's own certificate.
    pub fn ok_on(&self, live: &[usize]) -> bool {
        match https_get(self.lb, "/readyz", Some(&self.ca), Some(TOKEN)) {
            Ok(r) => r.status == 200 && live.iter().any(|&i| self.sims[i].cert_der == r.peer_cert),
            Err(_) => false,
        }
    }

    pub fn requests_to(&self, i: usize) -> usize {
        self.sims[i].requests().iter().filter(|r| r.1 == "/readyz").count()
    }
}

/// Requests over `n` open keep-alive TLS connections for `secs`: (requests per
/// second, p99 latency).
pub fn over_open_connections(lb: SocketAddr, ca: &Ca, n: usize, secs: Duration) -> (f64, Duration) {
    let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.rustls_root())
        .with_no_client_auth();
    let cfg = Arc::new(cfg);
    let start = Instant::now();
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let name = rustls::pki_types::ServerName::IpAddress(lb.ip().into());
                let conn = rustls::ClientConnection::new(cfg, name).unwrap();
                let sock = TcpStream::connect(lb).unwrap();
                sock.set_nodelay(true).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, sock);
                let mut latencies = Vec::new();
                while start.elapsed() < secs {
                    let t = Instant::now();
                    let req =
                        format!("GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
                    tls.write_all(req.as_bytes()).unwrap();
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        tls.read_exact(&mut byte).unwrap();
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_lowercase();
                    let len: usize =
                        head.lines().find_map(|l| l.strip_prefix("content-length:")?.trim().parse().ok()).unwrap_or(0);
                    tls.read_exact(&mut vec![0u8; len]).unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    all.sort();
    (rate, all[all.len() * 99 / 100])
}

/// A generated file's text, by its path on the node.
fn text_of<'a>(files: &'a Files, path: &str) -> &'a str {
    files.get(path).unwrap_or_else(|| panic!("{path} not generated"))
}
