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
    dir: PathBuf,
    client: u16,
    peer: u16,
    guard: Option<Guard>,
}

impl Etcd {
    pub fn start(dir: &Path) -> Etcd {
        let (client, peer) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client}");
        let mut etcd = Etcd { url, dir: dir.to_path_buf(), client, peer, guard: None };
        etcd.start_again();
        etcd
    }

    /// Start it (again) on its data directory and ports.
    pub fn start_again(&mut self) {
        let url = &self.url;
        let peer_url = format!("http://127.0.0.1:{}", self.peer);
        let log = fs::OpenOptions::new().create(true).append(true).open(self.dir.join("etcd.log")).expect("etcd log");
        self.guard = Some(Guard::spawn(
            Command::new(bin("etcd"))
                .args(["--name", "mk8s-test", "--data-dir"])
                .arg(self.dir.join("etcd"))
                .args(["--listen-client-urls", url, "--advertise-client-urls", url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("mk8s-test={peer_url}")])
                .args(["--unsafe-no-fsync", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log),
        ));
        let addr: SocketAddr = format!("127.0.0.1:{}", self.client).parse().expect("addr");
        assert!(crate::proc::wait_listening(addr, Duration::from_secs(30)), "etcd did not listen on {addr}");
    }

    /// SIGKILL.
    pub fn stop(&mut self) {
        self.guard = None;
    }
}

/// Every request at level Metadata, after the response (no bodies: no secrets).
const AUDIT_POLICY: &str =
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n";

/// One audited request: the verb (`get`, `create`, `patch`…), the URI, the
/// authenticated user (`""` when authentication failed) and the answer's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audited {
    pub verb: String,
    pub uri: String,
    pub user: String,
    pub code: u16,
}

/// Calls to a kube-apiserver with the admin certificate, from any thread.
#[derive(Clone)]
pub struct AdminClient {
    pub addr: SocketAddr,
    ca: Arc<Ca>,
    cert_pem: String,
    key_pem: String,
}

impl AdminClient {
    /// `METHOD PATH [BODY]` (PATCH as a JSON merge patch): the status and body.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        let admin = Leaf::from_pem(&self.cert_pem, &self.key_pem).ok_or("the admin certificate")?;
        let client = Some((admin.rustls_chain(), admin.rustls_key()));
        crate::tls::https_call(
            self.addr,
            name,
            crate::tls::Trust::Roots(self.ca.rustls_root()),
            method,
            path,
            body,
            None,
            client,
        )
        .map(|f| (f.status, f.body))
        .map_err(|e| format!("{method} {path}: {e}"))
    }

    /// What a kubelet does for its Node: create it if it does not exist, then
    /// report its status, Ready (or not) with a heartbeat at `at`.
    pub fn report_node(&self, name: &str, ready: bool, at: std::time::SystemTime) -> Result<(), String> {
        let node = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
        match self.call("POST", "/api/v1/nodes", Some(&node.to_string()))? {
            (201 | 409, _) => {}
            (code, body) => return Err(format!("POST /api/v1/nodes: {code} {body}")),
        }
        let t = crate::node_model::rfc3339(at);
        let status = if ready { "True" } else { "False" };
        let patch = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": status, "reason": "KubeletReady", "lastHeartbeatTime": t, "lastTransitionTime": t}]}});
        match self.call("PATCH", &format!("/api/v1/nodes/{name}/status"), Some(&patch.to_string()))? {
            (200, _) => Ok(()),
            (code, body) => Err(format!("PATCH /api/v1/nodes/{name}/status: {code} {body}")),
        }
    }

    /// The Node, if it exists.
    pub fn node(&self, name: &str) -> Option<serde_json::Value> {
        match self.call("GET", &format!("/api/v1/nodes/{name}"), None) {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }
}

/// What to start.
#[derive(Clone)]
pub struct Options {
    /// The MicroK8s minor whose default args are used (20 for 1.20).
    pub minor: u32,
    pub authz: Authz,
    /// The apiservers' addresses (each on `port`).
    pub ips: Vec<String>,
    pub port: u16,
    /// Lines of `credentials/known_tokens.csv`, where that version reads the file.
    pub known_tokens: String,
    /// The cluster CA (a new one when `None`): facts made before the control
    /// plane starts name it.
    pub ca: Option<Arc<Ca>>,
    /// More addresses in every apiserver's serving certificate (an external load
    /// balancer's, as an operator adds it to `certs/csr.conf.template`).
    pub extra_sans: Vec<String>,
    /// Every request in an audit log (`--audit-log-path`, level Metadata): the
    /// record [`ControlPlane::requests`] reads.
    pub audit: bool,
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
            ca: None,
            extra_sans: Vec::new(),
            audit: false,
        }
    }
}

/// One running kube-apiserver.
pub struct Apiserver {
    pub addr: SocketAddr,
    pub args: Vec<String>,
    pub snap_data: PathBuf,
    /// This control-plane node's `/etc/hosts` (a copy of the machine's, bind-mounted
    /// over `/etc/hosts` in the apiserver's own mount namespace): what it resolves
    /// kubelet host names with. The bundle's hosts-entries.sh edits it.
    pub hosts: PathBuf,
    log: PathBuf,
    /// Where the running process's lines begin in `log` (a restart appends).
    log_from: usize,
    guard: Option<Guard>,
}

impl Apiserver {
    /// The last lines the running (or last) process logged (for assertion messages).
    pub fn log_tail(&self) -> String {
        let text = fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(text.get(self.log_from..).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Start the process (its log appended to).
    fn spawn(&mut self) {
        self.log_from = fs::metadata(&self.log).map(|m| m.len() as usize).unwrap_or(0);
        self.guard = Some(spawn_apiserver(self));
    }

    /// Whether the process exited (it is reaped, and the guard dropped).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.guard.as_mut()?.0.try_wait().ok().flatten()?;
        self.guard = None;
        Some(status)
    }

    /// SIGKILL, as a crashed or powered-off control plane.
    pub fn kill(&mut self) {
        self.guard = None;
    }

    pub fn running(&self) -> bool {
        self.guard.is_some()
    }

    /// The operator runs the control-plane bundle's hosts-entries.sh on this
    /// node: the real script with the real bash, on this node's `$SNAP_DATA` and
    /// `/etc/hosts`.
    pub fn run_hosts_entries(&self, bundle: &Path) {
        let o = Command::new(crate::tools::require("bash"))
            .arg(bundle.join("hosts-entries.sh"))
            .env("SNAP_DATA", &self.snap_data)
            .env("MK8S_HOSTS_FILE", &self.hosts)
            .output()
            .expect("run bash");
        assert!(
            o.status.success(),
            "hosts-entries.sh on {}: {}",
            self.snap_data.display(),
            String::from_utf8_lossy(&o.stderr)
        );
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
    controller_manager: Option<Guard>,
    etcd: Etcd,
}

/// Lay out the certificates and credentials the default args name, under one
/// node's `$SNAP_DATA` (file names as MicroK8s's `utils.sh` makes them).
fn lay_out(snap_data: &Path, ca: &Ca, ip: &str, sa_key: &str, options: &Options) {
    let certs = snap_data.join("certs");
    let creds = snap_data.join("credentials");
    fs::create_dir_all(&certs).expect("certs");
    fs::create_dir_all(&creds).expect("credentials");
    let secret = |p: PathBuf, text: &str| {
        fs::write(&p, text).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod");
    };
    let mut sans = vec!["127.0.0.1", "10.152.183.1", ip, "kubernetes", "kubernetes.default", "kubernetes.default.svc"];
    sans.extend(options.extra_sans.iter().map(String::as_str));
    let server = ca.server_and_client(&sans);
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
    secret(creds.join("known_tokens.csv"), &options.known_tokens);
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

/// The kube-apiserver flags of its datastore: the default args' (k8s-dqlite's
/// socket, or dqlite) give way to this machine's etcd (`--etcd-servers`, set apart).
const DATASTORE: &[&str] =
    &["--etcd-servers", "--storage-backend", "--storage-dir", "--etcd-cafile", "--etcd-certfile", "--etcd-keyfile"];

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
        let (name, value) = crate::microk8s_args::split_arg(line);
        let value = value.map(|v| v.replace("${SNAP_DATA}", &snap).replace("$SNAP_DATA", &snap));
        let value = match name.as_str() {
            "--etcd-servers" => Some(etcd_url.to_string()),
            name if DATASTORE.contains(&name) => continue,
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
    if ip.starts_with("127.") {
        // A loopback advertise address cannot be an Endpoints address: without this
        // the apiserver logs a failed sync of the `kubernetes` Service every 10 s.
        // On [`PeerAddresses`] the `kubernetes` Endpoints list every apiserver, as
        // on a real cluster (MicroK8s's apiserver-proxy reads them).
        args.push("--endpoint-reconciler-type=none".into());
    }
    args
}

/// `args/kube-apiserver` as the node's snap has it: the arguments the apiserver
/// runs with, but the datastore lines the branch's default args have (k8s-dqlite's
/// socket, or `--storage-backend=dqlite`) in place of this machine's etcd. What
/// reads the file on a control-plane node sees a MicroK8s datastore: the 1.28+
/// cluster-agent joins through dqlite when `--etcd-servers` names the kine socket
/// and refuses a joining node that cannot handle a custom etcd otherwise
/// (`CA 1.30:pkg/api/v2/join.go:L128-145`).
fn args_file(options: &Options, args: &[String]) -> String {
    let defaults = crate::microk8s_args::for_minor(options.minor).kube_apiserver;
    let datastore = defaults.iter().filter(|l| DATASTORE.contains(&crate::microk8s_args::flag_name(l)));
    args.iter()
        .filter(|a| !DATASTORE.contains(&crate::microk8s_args::flag_name(a)))
        .map(String::as_str)
        .chain(datastore.copied())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Addresses that are not loopback, for control-plane nodes the way a cluster has
/// them (the `kubernetes` Endpoints refuse loopback addresses): /32s on a bridge
/// `mk8s-peers` of this machine (created when missing; a dummy link is not
/// available everywhere), in 10.213.0.0/16, removed on drop. Needs root.
pub struct PeerAddresses {
    pub ips: Vec<String>,
}

impl PeerAddresses {
    pub fn take(n: usize) -> PeerAddresses {
        let ip = crate::tools::require("ip");
        let run =
            |args: &[&str]| Command::new(&ip).args(args).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
        let _ = run(&["link", "add", "mk8s-peers", "type", "bridge"]);
        assert!(run(&["link", "set", "mk8s-peers", "up"]), "ip link set mk8s-peers up (needs root)");
        // Distinct per process and per call; an address in use elsewhere is skipped.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let mut start = (std::process::id() * 7 + NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) * 13) % 250;
        loop {
            let third = start + 1;
            let ips: Vec<String> = (0..n).map(|i| format!("10.213.{third}.{}", i + 2)).collect();
            let mut taken = Vec::new();
            for a in &ips {
                if run(&["addr", "add", &format!("{a}/32"), "dev", "mk8s-peers"]) {
                    taken.push(a.clone());
                } else {
                    break;
                }
            }
            if taken.len() == n {
                return PeerAddresses { ips };
            }
            for a in taken {
                let _ = run(&["addr", "del", &format!("{a}/32"), "dev", "mk8s-peers"]);
            }
            start = (start + 1) % 250;
        }
    }
}

impl Drop for PeerAddresses {
    fn drop(&mut self) {
        for a in &self.ips {
            let _ = Command::new("ip")
                .args(["addr", "del", &format!("{a}/32"), "dev", "mk8s-peers"])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl ControlPlane {
    /// Start etcd and one kube-apiserver per address, and wait until each answers
    /// `/readyz` 200 to the admin certificate.
    pub fn start(options: Options) -> ControlPlane {
        let mut cp = ControlPlane::new(options);
        cp.start_all();
        cp
    }

    /// etcd running and every control-plane node laid out (its `$SNAP_DATA` and
    /// `/etc/hosts`), no apiserver started yet: the bundle's scripts can run first,
    /// as an operator runs them before booting workers.
    pub fn new(options: Options) -> ControlPlane {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = options.ca.clone().unwrap_or_else(|| Arc::new(Ca::new("10.152.183.1")));
        let etcd = Etcd::start(dir.path());
        let sa_key = rsa_key();
        let admin = ca.client("admin", &["system:masters"]);
        let machine_hosts = fs::read_to_string("/etc/hosts").unwrap_or_else(|_| "127.0.0.1 localhost\n".into());
        let mut apiservers = Vec::new();
        for (i, ip) in options.ips.iter().enumerate() {
            let snap_data = dir.path().join(format!("cp{i}/snap_data"));
            lay_out(&snap_data, &ca, ip, &sa_key, &options);
            fs::create_dir_all(snap_data.join("var/lock")).expect("var/lock");
            // An HA (dqlite) control plane, as every MicroK8s install since 1.19.
            fs::write(snap_data.join("var/lock/ha-cluster"), "").expect("ha-cluster");
            let mut args = apiserver_args(&options, ip, &snap_data, &etcd.url);
            if options.audit {
                let policy = dir.path().join("audit-policy.yaml");
                fs::write(&policy, AUDIT_POLICY).expect("audit policy");
                args.push(format!("--audit-policy-file={}", policy.display()));
                args.push(format!("--audit-log-path={}", dir.path().join(format!("cp{i}/audit.log")).display()));
            }
            fs::write(snap_data.join("args/kube-apiserver"), args_file(&options, &args)).expect("args");
            let hosts = dir.path().join(format!("cp{i}/hosts"));
            fs::write(&hosts, &machine_hosts).expect("hosts");
            let log = dir.path().join(format!("cp{i}/kube-apiserver.log"));
            let addr: SocketAddr = format!("{ip}:{}", options.port).parse().expect("addr");
            apiservers.push(Apiserver { addr, args, snap_data, hosts, log, log_from: 0, guard: None });
        }
        ControlPlane { ca, options, admin, apiservers, dir, controller_manager: None, etcd }
    }

    /// Start every apiserver not running, and wait until each is ready.
    pub fn start_all(&mut self) {
        for a in &mut self.apiservers {
            if a.guard.is_none() {
                a.spawn();
            }
        }
        for i in 0..self.apiservers.len() {
            self.wait_ready(i, Duration::from_secs(90));
        }
    }

    /// A kubeconfig for `kubectl` with the admin certificate, talking to
    /// apiserver `i`.
    pub fn admin_kubeconfig(&self, i: usize) -> PathBuf {
        let path = self.dir.path().join(format!("admin-{i}.kubeconfig"));
        self.write_kubeconfig(&path, i, &self.admin);
        path
    }

    fn write_kubeconfig(&self, path: &Path, i: usize, user: &Leaf) {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            self.apiservers[i].addr,
            b64(&self.ca.cert_pem),
            b64(&user.cert_pem),
            b64(&user.key_pem)
        );
        fs::write(path, text).expect("kubeconfig");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    /// kube-controller-manager on control-plane node 0, with MicroK8s's default
    /// args for the version (`credentials/controller.config` as the snap writes it:
    /// `CN=system:kube-controller-manager`; cluster signing with the CA; service
    /// accounts). It serves nothing (`--secure-port=0`: tests share addresses) and
    /// flags Kubernetes 1.34 no longer knows are dropped.
    pub fn start_controller_manager(&mut self) {
        let snap_data = self.apiservers[0].snap_data.clone();
        let user = self.ca.client("system:kube-controller-manager", &[]);
        self.write_kubeconfig(&snap_data.join("credentials/controller.config"), 0, &user);
        let snap = snap_data.to_string_lossy().to_string();
        let mut args: Vec<String> = crate::microk8s_args::for_minor(self.options.minor)
            .kube_controller_manager
            .iter()
            .filter(|l| crate::microk8s_args::dropped_by_kube_1_34(l).is_none())
            .map(|l| l.replace("${SNAP_DATA}", &snap))
            .collect();
        args.push("--secure-port=0".into());
        let log = self.dir.path().join("kube-controller-manager.log");
        let out = fs::OpenOptions::new().create(true).append(true).open(&log).expect("log");
        self.controller_manager = Some(Guard::spawn(
            Command::new(bin("kube-controller-manager"))
                .args(&args)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log"))
                .stderr(out),
        ));
    }

    /// The last lines of kube-controller-manager's log.
    pub fn controller_manager_log(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("kube-controller-manager.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Start a killed apiserver again with the same arguments.
    pub fn restart(&mut self, i: usize) {
        let a = &mut self.apiservers[i];
        a.guard = None;
        a.spawn();
        self.wait_ready(i, Duration::from_secs(90));
    }

    /// Wait until apiserver `i` answers `/readyz` 200. One that exits is reported
    /// with its own log at once, except when its port was taken for a moment: a
    /// restart's port (a free port, in the ephemeral range) can be the source port
    /// of another program's connection while the apiserver is down, and the
    /// apiserver exits with `address already in use`; it is started again.
    fn wait_ready(&mut self, i: usize, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            let a = &self.apiservers[i];
            let r = crate::tls::https_get_as(a.addr, "/readyz", Some(&self.ca), None, Some(&self.admin));
            if matches!(r, Ok(ref f) if f.status == 200) {
                return;
            }
            let a = &mut self.apiservers[i];
            if let Some(status) = a.exited() {
                let tail = a.log_tail();
                assert!(
                    tail.contains("address already in use") && Instant::now() < end,
                    "kube-apiserver on {} exited ({status}):\n{tail}",
                    a.addr
                );
                std::thread::sleep(Duration::from_secs(1));
                a.spawn();
                continue;
            }
            assert!(Instant::now() < end, "kube-apiserver on {} not ready: {r:?}\n{}", a.addr, a.log_tail());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `kubectl create` of `object` with the admin certificate (through apiserver 0).
    pub fn admin_create(&self, object: &serde_json::Value) {
        use std::io::Write as _;
        let mut child = Command::new(crate::tools::require("kubectl"))
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig(0))
            .args(["create", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        child.stdin.take().expect("stdin").write_all(object.to_string().as_bytes()).expect("object json");
        let out = child.wait_with_output().expect("kubectl");
        assert!(out.status.success(), "kubectl create {object}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Every request the apiservers audited, in order per apiserver (needs
    /// [`Options::audit`]): what a client asked and what it was answered, from the
    /// real program's own record. Requests that failed authentication are there
    /// too (user `""`, 401).
    pub fn requests(&self) -> Vec<Audited> {
        let mut out = Vec::new();
        for i in 0..self.apiservers.len() {
            let text = fs::read_to_string(self.dir.path().join(format!("cp{i}/audit.log"))).unwrap_or_default();
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                if v["stage"] != "ResponseComplete" && v["stage"] != "ResponseStarted" {
                    continue;
                }
                out.push(Audited {
                    verb: v["verb"].as_str().unwrap_or_default().to_string(),
                    uri: v["requestURI"].as_str().unwrap_or_default().to_string(),
                    user: v["user"]["username"].as_str().unwrap_or_default().to_string(),
                    code: v["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
                });
            }
        }
        out
    }

    /// A handle that calls the first apiserver with the admin certificate, for
    /// threads (a kubelet's stand-in).
    pub fn admin_client(&self) -> AdminClient {
        let (cert_pem, key_pem) = (self.admin.cert_pem.clone(), self.admin.key_pem.clone());
        AdminClient { addr: self.apiservers[0].addr, ca: self.ca.clone(), cert_pem, key_pem }
    }

    /// What merge-known-tokens.sh leaves: `credentials/known_tokens.csv` on every
    /// control-plane node, and each running apiserver restarted to read it.
    pub fn set_known_tokens(&mut self, csv: &str) {
        for a in &self.apiservers {
            fs::write(a.snap_data.join("credentials/known_tokens.csv"), csv).expect("known_tokens.csv");
        }
        for i in 0..self.apiservers.len() {
            if self.apiservers[i].running() {
                self.restart(i);
            }
        }
    }

    /// Stop the datastore (the apiservers keep serving, and `/readyz` fails).
    pub fn stop_etcd(&mut self) {
        self.etcd.stop();
    }

    /// Start the datastore again, on its data and ports.
    pub fn start_etcd(&mut self) {
        self.etcd.start_again();
    }

    /// `KIND API PATH` with the admin certificate; the answer's status and body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let r = crate::tls::https_get_as(self.apiservers[0].addr, path, Some(&self.ca), None, Some(&self.admin))
            .expect("admin request");
        (r.status, r.body)
    }
}

/// `program` (arguments to be added) in a mount namespace of its own where `hosts`
/// is `/etc/hosts`: what a control-plane node's programs resolve names with
/// (`unshare` execs, `sh` execs: a guard's PID is the program's).
pub fn in_hosts_namespace(hosts: &Path, program: &Path) -> Command {
    let mut cmd = Command::new(crate::tools::require("unshare"));
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$@\""])
        .arg(hosts)
        .arg(program);
    cmd
}

/// kube-apiserver in its node's hosts namespace ([`in_hosts_namespace`]).
fn spawn_apiserver(a: &Apiserver) -> Guard {
    let log = fs::OpenOptions::new().create(true).append(true).open(&a.log).expect("apiserver log");
    Guard::spawn(
        in_hosts_namespace(&a.hosts, &bin("kube-apiserver"))
            .args(&a.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log),
    )
}

/// What a test's real kubelet and containerd leave on this machine, undone on
/// drop, and the right to run them: one real kubelet at a time per machine (its
/// device-plugin socket, `/var/lib/kubelet/device-plugins/kubelet.sock`, is a fixed
/// path). On drop: every process of the test (its cgroup's, and those whose command
/// line names the test's directory: the model's daemons, containerd's shims, which
/// outlive containerd) is killed, the mounts under that directory are unmounted,
/// the cgroup removed from every hierarchy, and the CNI bridge deleted.
pub struct RealNodeHost {
    /// A cgroup directly under each hierarchy's root, for `--cgroup-root`.
    pub cgroup_root: String,
    pub bridge: String,
    dir: PathBuf,
    _lock: fs::File,
}

impl RealNodeHost {
    pub fn take(dir: &Path) -> RealNodeHost {
        use std::os::fd::AsFd;
        let cache = PathBuf::from("/var/cache/mk8s-worker");
        fs::create_dir_all(&cache).expect("/var/cache/mk8s-worker (needs root)");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(cache.join("real-kubelet.lock"))
            .expect("the real-kubelet lock");
        rustix::fs::flock(lock.as_fd(), rustix::fs::FlockOperation::LockExclusive).expect("flock");
        let n = std::process::id();
        let cgroup_root = format!("mk8s-test-{n}");
        for h in hierarchies() {
            let d = h.join(&cgroup_root);
            let _ = fs::create_dir_all(&d);
            if h.ends_with("cpuset") {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    if let Ok(v) = fs::read_to_string(h.join(f)) {
                        let _ = fs::write(d.join(f), v);
                    }
                }
            }
        }
        RealNodeHost { cgroup_root, bridge: format!("mk8s-cni{}", n % 100_000), dir: dir.to_path_buf(), _lock: lock }
    }

    /// Every process of the test, as in the type's docs.
    fn pids(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        let dir = self.dir.to_string_lossy().to_string();
        let mark = format!("/{}", self.cgroup_root);
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            if pid == me {
                continue;
            }
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cgroup = fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&dir)
                || cgroup
                    .lines()
                    .any(|l| l.split(':').nth(2).is_some_and(|p| p == mark || p.starts_with(&format!("{mark}/"))))
            {
                out.push(pid);
            }
        }
        out
    }
}

/// The cgroup hierarchies mounted under /sys/fs/cgroup (v1 and the unified one).
fn hierarchies() -> Vec<PathBuf> {
    fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect()
}

impl Drop for RealNodeHost {
    fn drop(&mut self) {
        for _ in 0..20 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let dir = self.dir.to_string_lossy().to_string();
        let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).stderr(Stdio::null()).status();
        }
        for h in hierarchies() {
            let mut dirs = Vec::new();
            let mut stack = vec![h.join(&self.cgroup_root)];
            while let Some(d) = stack.pop() {
                if d.is_dir() {
                    stack.extend(
                        fs::read_dir(&d).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()),
                    );
                    dirs.push(d);
                }
            }
            dirs.sort_by_key(|d| std::cmp::Reverse(d.as_os_str().len()));
            for d in dirs {
                let _ = fs::remove_dir(d);
            }
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).stderr(Stdio::null()).status();
    }
}

/// The sandbox image `scripts/build-upstream` makes (`tests/upstream/pause`): its
/// OCI tar and the name it imports as, from `IMAGES` beside the binaries.
pub fn pause_image() -> (PathBuf, String) {
    let images = bin("kubelet").with_file_name("IMAGES");
    let text = fs::read_to_string(&images).unwrap_or_else(|e| {
        panic!("{}: {e}: run scripts/build-upstream (it builds the sandbox image)", images.display())
    });
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("pause=") {
            if let Some((path, name)) = rest.split_once(' ') {
                return (PathBuf::from(path), name.trim().to_string());
            }
        }
    }
    panic!("{}: no pause= line", images.display());
}
