//! The real Kubernetes control plane: etcd and kube-apiservers built from their Go
//! modules (`tests/upstream/`, pinned; built by `scripts/build-upstream`, which
//! prints the directory `scripts/test` exports as `MK8S_UPSTREAM_BIN`), started with
//! MicroK8s's own default arguments for the version under test
//! ([`crate::microk8s_args`]).
//!
//! What differs from a MicroK8s control plane, each on purpose:
//! - the datastore is one etcd on 127.0.0.1 instead of k8s-dqlite (`--etcd-servers`
//!   points there; the default args' `unix://…kine.sock` or `--storage-backend`
//!   lines are replaced): dqlite is not a Go module the tests can build;
//! - each apiserver binds its own loopback address (`--bind-address`,
//!   `--advertise-address`), so three share one port on one machine (a free one
//!   unless the scenario asks for 16443), and does not reconcile the `kubernetes`
//!   Endpoints (`--endpoint-reconciler-type=none`: a loopback address cannot be one);
//! - flags the pinned Kubernetes release no longer knows are dropped
//!   ([`crate::microk8s_args::DROPPED_BY_KUBE_1_34`], each with its reason);
//! - certificates come from the test CA ([`Ca`]): ECDSA P-256 where MicroK8s makes
//!   RSA 2048 (the service-account key is RSA, made by `openssl genrsa` as MicroK8s
//!   does).

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::apiserver::Authz;
use crate::pki::{Ca, Leaf};
use crate::proc::{free_port, Guard};

/// Where the upstream binaries are: `MK8S_UPSTREAM_BIN`, else the newest build in
/// `/var/cache/mk8s-worker/upstream/*/bin`. Panics with what to run when neither
/// has `name`: a test that needs the real control plane never skips.
pub fn bin(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("MK8S_UPSTREAM_BIN").map(PathBuf::from).into_iter().collect();
    if dirs.is_empty() {
        let cache = std::env::var_os("MK8S_UPSTREAM_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/mk8s-worker/upstream"));
        let mut found: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(&cache)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter_map(|p| Some((fs::metadata(p.join(name)).ok()?.modified().ok()?, p)))
            .collect();
        found.sort();
        dirs.extend(found.into_iter().rev().map(|(_, p)| p));
    }
    for d in &dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} (built from its Go module) is required by this test and was not found in {dirs:?}: \
         run scripts/build-upstream (scripts/setup does) and export MK8S_UPSTREAM_BIN=<the directory it prints>"
    );
}

/// One etcd member on 127.0.0.1, in memory-backed speed mode (`--unsafe-no-fsync`).
pub struct Etcd {
    pub url: String,
    _guard: Guard,
}

impl Etcd {
    pub fn start(dir: &Path) -> Etcd {
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = fs::File::create(dir.join("etcd.log")).expect("etcd log");
        let guard = Guard::spawn(
            Command::new(bin("etcd"))
                .args(["--name", "mk8s-test", "--data-dir"])
                .arg(dir.join("etcd"))
                .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("mk8s-test={peer_url}")])
                .args(["--unsafe-no-fsync", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log),
        );
        let addr: SocketAddr = format!("127.0.0.1:{client}").parse().expect("addr");
        assert!(crate::proc::wait_listening(addr, Duration::from_secs(30)), "etcd did not listen on {addr}");
        Etcd { url, _guard: guard }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// The MicroK8s minor whose default args are used (20 for 1.20).
    pub minor: u32,
    pub authz: Authz,
    /// The apiservers' addresses (each on `port`).
    pub ips: Vec<String>,
    pub port: u16,
    /// Lines of `credentials/known_tokens.csv`, where that version reads the file.
    pub known_tokens: String,
}

impl Options {
    pub fn new(minor: u32, authz: Authz) -> Options {
        Options {
            minor,
            authz,
            ips: vec!["127.0.0.2".into(), "127.0.0.3".into(), "127.0.0.4".into()],
            // A free port (tests run in parallel); a scenario that needs MicroK8s's
            // 16443 sets it.
            port: std::net::TcpListener::bind("127.0.0.2:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port on 127.0.0.2"),
            known_tokens: String::new(),
        }
    }
}

/// One running kube-apiserver.
pub struct Apiserver {
    pub addr: SocketAddr,
    pub args: Vec<String>,
    pub snap_data: PathBuf,
    log: PathBuf,
    guard: Option<Guard>,
}

impl Apiserver {
    /// The last lines of its log (for assertion messages).
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGKILL, as a crashed or powered-off control plane.
    pub fn kill(&mut self) {
        self.guard = None;
    }

    pub fn running(&self) -> bool {
        self.guard.is_some()
    }
}

/// etcd and N kube-apiservers sharing it, with one cluster CA.
pub struct ControlPlane {
    pub ca: Arc<Ca>,
    pub options: Options,
    /// A `system:masters` client certificate of the cluster CA.
    pub admin: Leaf,
    pub apiservers: Vec<Apiserver>,
    pub dir: tempfile::TempDir,
    _etcd: Etcd,
}

/// Lay out the certificates and credentials the default args name, under one
/// node's `$SNAP_DATA` (file names as MicroK8s's `utils.sh` makes them).
fn lay_out(snap_data: &Path, ca: &Ca, ip: &str, sa_key: &str, known_tokens: &str) {
    let certs = snap_data.join("certs");
    let creds = snap_data.join("credentials");
    fs::create_dir_all(&certs).expect("certs");
    fs::create_dir_all(&creds).expect("credentials");
    let secret = |p: PathBuf, text: &str| {
        fs::write(&p, text).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod");
    };
    let server =
        ca.server(&["127.0.0.1", "10.152.183.1", ip, "kubernetes", "kubernetes.default", "kubernetes.default.svc"]);
    for (name, leaf) in [
        ("server", &server),
        ("front-proxy-client", &ca.client("front-proxy-client", &[])),
        ("apiserver-kubelet-client", &ca.client("kube-apiserver-kubelet-client", &["system:masters"])),
    ] {
        fs::write(certs.join(format!("{name}.crt")), &leaf.cert_pem).expect("crt");
        secret(certs.join(format!("{name}.key")), &leaf.key_pem);
    }
    fs::write(certs.join("ca.crt"), &ca.cert_pem).expect("ca");
    secret(certs.join("ca.key"), &ca.key_pem);
    fs::write(certs.join("front-proxy-ca.crt"), &ca.cert_pem).expect("front-proxy-ca");
    secret(certs.join("serviceaccount.key"), sa_key);
    secret(creds.join("known_tokens.csv"), known_tokens);
    fs::write(creds.join("basic_auth.csv"), "").expect("basic_auth");
    // 1.28+: `--admission-control-config-file=${SNAP_DATA}/args/admission-control-config-file.yaml`,
    // EventRateLimit, as the snap's default-args files of those names
    // (canonical/microk8s 1.28:microk8s-resources/default-args/).
    let args = snap_data.join("args");
    fs::create_dir_all(&args).expect("args");
    fs::write(
        args.join("admission-control-config-file.yaml"),
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n  - name: EventRateLimit\n    path: eventconfig.yaml\n",
    )
    .expect("admission config");
    fs::write(
        args.join("eventconfig.yaml"),
        "apiVersion: eventratelimit.admission.k8s.io/v1alpha1\nkind: Configuration\nlimits:\n  - type: Server\n    qps: 5000\n    burst: 20000\n",
    )
    .expect("event config");
}

/// `openssl genrsa 2048`, as MicroK8s makes `serviceaccount.key`.
fn rsa_key() -> String {
    let out = Command::new(crate::tools::require("openssl"))
        .args(["genrsa", "-traditional", "2048"])
        .stderr(Stdio::null())
        .output()
        .expect("openssl genrsa");
    assert!(out.status.success(), "openssl genrsa failed");
    String::from_utf8(out.stdout).expect("PEM")
}

/// The default-args line `--name=value` (or a bare `--name`) as (name, value),
/// with the wrapper's shell quote removal applied to the value.
fn split_arg(line: &str) -> (String, Option<String>) {
    let line = line.trim();
    match line.split_once('=') {
        Some((k, v)) => {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(v);
            (k.to_string(), Some(v.to_string()))
        }
        None => (line.to_string(), None),
    }
}

/// kube-apiserver's command line from MicroK8s's `default-args/kube-apiserver` for
/// `options.minor`, as `run-apiserver-with-args`/kubelite pass it, with the
/// deviations listed in the module docs.
pub fn apiserver_args(options: &Options, ip: &str, snap_data: &Path, etcd_url: &str) -> Vec<String> {
    let defaults = crate::microk8s_args::for_minor(options.minor);
    let snap = snap_data.to_string_lossy();
    let mut args = Vec::new();
    for line in defaults.kube_apiserver {
        if crate::microk8s_args::dropped_by_kube_1_34(line).is_some() {
            continue;
        }
        let (name, value) = split_arg(line);
        let value = value.map(|v| v.replace("${SNAP_DATA}", &snap).replace("$SNAP_DATA", &snap));
        let value = match name.as_str() {
            "--etcd-servers" => Some(etcd_url.to_string()),
            "--storage-backend" | "--storage-dir" | "--etcd-cafile" | "--etcd-certfile" | "--etcd-keyfile" => continue,
            "--authorization-mode" => Some(match options.authz {
                Authz::AlwaysAllow => "AlwaysAllow".to_string(),
                Authz::RbacNode => "RBAC,Node".to_string(),
            }),
            "--secure-port" => Some(options.port.to_string()),
            "--bind-address" | "--advertise-address" => continue,
            _ => value,
        };
        args.push(match value {
            Some(v) => format!("{name}={v}"),
            None => name,
        });
    }
    if !args.iter().any(|a| a.starts_with("--etcd-servers=")) {
        args.push(format!("--etcd-servers={etcd_url}"));
    }
    args.push(format!("--bind-address={ip}"));
    args.push(format!("--advertise-address={ip}"));
    // A loopback advertise address cannot be an Endpoints address: without this the
    // apiserver logs a failed sync of the `kubernetes` Service every 10 s.
    args.push("--endpoint-reconciler-type=none".into());
    args
}

impl ControlPlane {
    /// Start etcd and one kube-apiserver per address, and wait until each answers
    /// `/readyz` 200 to the admin certificate.
    pub fn start(options: Options) -> ControlPlane {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Arc::new(Ca::new("10.152.183.1"));
        let etcd = Etcd::start(dir.path());
        let sa_key = rsa_key();
        let admin = ca.client("admin", &["system:masters"]);
        let mut apiservers = Vec::new();
        for (i, ip) in options.ips.iter().enumerate() {
            let snap_data = dir.path().join(format!("cp{i}/snap_data"));
            lay_out(&snap_data, &ca, ip, &sa_key, &options.known_tokens);
            let args = apiserver_args(&options, ip, &snap_data, &etcd.url);
            let log = dir.path().join(format!("cp{i}/kube-apiserver.log"));
            let addr: SocketAddr = format!("{ip}:{}", options.port).parse().expect("addr");
            let mut a = Apiserver { addr, args, snap_data, log, guard: None };
            a.guard = Some(spawn_apiserver(&a));
            apiservers.push(a);
        }
        let cp = ControlPlane { ca, options, admin, apiservers, dir, _etcd: etcd };
        for a in &cp.apiservers {
            cp.wait_ready(a, Duration::from_secs(90));
        }
        cp
    }

    /// Start a killed apiserver again with the same arguments.
    pub fn restart(&mut self, i: usize) {
        let a = &mut self.apiservers[i];
        a.guard = None;
        a.guard = Some(spawn_apiserver(a));
        let a = &self.apiservers[i];
        self.wait_ready(a, Duration::from_secs(90));
    }

    fn wait_ready(&self, a: &Apiserver, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            let r = crate::tls::https_get_as(a.addr, "/readyz", Some(&self.ca), None, Some(&self.admin));
            if matches!(r, Ok(ref f) if f.status == 200) {
                return;
            }
            assert!(Instant::now() < end, "kube-apiserver on {} not ready: {r:?}\n{}", a.addr, a.log_tail());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `KIND API PATH` with the admin certificate; the answer's status and body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let r = crate::tls::https_get_as(self.apiservers[0].addr, path, Some(&self.ca), None, Some(&self.admin))
            .expect("admin request");
        (r.status, r.body)
    }
}

fn spawn_apiserver(a: &Apiserver) -> Guard {
    let log = fs::OpenOptions::new().create(true).append(true).open(&a.log).expect("apiserver log");
    Guard::spawn(
        Command::new(bin("kube-apiserver"))
            .args(&a.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log),
    )
}
