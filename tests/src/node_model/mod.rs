//! A source-cited model of a MicroK8s node, per version: what `snap install`
//! lays out and starts, which locks each wrapper reads and when, what a refresh
//! and a reboot restart, and daemons that are real where the bootstrap's outcome
//! depends on them (a local control plane that holds the apiserver port, a
//! kubelet that registers and heartbeats its Node and serves its own endpoint, a
//! kube-proxy that authenticates).
//!
//! Citations are `branch:path[:lines]` in canonical/microk8s unless another
//! repository is named; `WR` = `microk8s-resources/wrappers`, `DA` =
//! `microk8s-resources/default-args`, `US` = `microk8s-resources/actions/common/utils.sh`.
//! The audit ids (F1b, F2, F3, F5) refer to `reference/microk8s-fidelity-audit.md`.
//!
//! How it runs: [`Model::new`] writes `snap`, `systemctl` and `snapctl` wrappers
//! that exec the `mk8s-node-model` binary with the model's state directory. Every
//! command appends a line to `calls.log` (the format of the old substitutes:
//! `snap install microk8s --classic --channel 1.30/stable`) and model events to
//! `events.log`. A started unit is a detached process of the same binary
//! (`mk8s-node-model --state DIR daemon UNIT`, its own process group, pid file in
//! `pids/`); it applies the unit's wrapper checks when it starts, as the real
//! wrappers do, then runs the behaviour. `systemctl stop` kills the group.
//!
//! Deviations, on purpose:
//! - the apiserver port is the configured one, not 16443, and the local control
//!   plane binds `127.0.0.1:PORT` and the node address, not the wildcard: the
//!   simulated cluster's apiservers share the port on other loopback addresses;
//! - the kubelet heartbeats every second (10 s real), and a kubelite whose
//!   datastore (k8s-dqlite) went away exits after `crash_delay` (30 to 60 s real, F1b);
//! - a worker is always installed fresh; `upgraded` describes the control plane it
//!   joins (1.28+ upgraded from 1.27 or older keeps the old kube-apiserver args);
//! - what a daemon does beyond holding the port, registering the Node and
//!   authenticating (containerd, etcd, the cluster-agent, MicroK8s's proxy) is not
//!   modelled: those run as idle processes once their wrapper lets them run.
//!
//! Where things are: `versions` (the behaviour table), `state` (the state
//! directory), `systemd`, `snapd` and `install_hook` (what the snap does),
//! `join_py` (`microk8s join`), `launcher` (the cluster-agent's launch
//! configurations), `daemons/` (what each unit runs once its wrapper lets it),
//! `cli` (the binary's commands) and `binary` (where the binary is); this file
//! is what the tests use.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

mod binary;
mod cli;
mod daemons;
mod install_hook;
mod join_py;
mod launcher;
mod revisions;
mod snap_lifecycle;
mod snapd;
mod state;
mod systemd;
mod versions;

pub use binary::{binary, workspace_binary};
pub use cli::cli_main;
pub use daemons::kubelet::real_kubelet_args;
pub use join_py::redact_connection;
pub use versions::{minor_of, Range, Row, TABLE};

use state::Ctx;

/// `$SNAP_DATA` relative to the node's root.
pub const SNAP_DATA: &str = "var/snap/microk8s/current";

/// `$SNAP_COMMON` relative to the node's root.
pub const SNAP_COMMON: &str = "var/snap/microk8s/common";

/// What a kubelet answers to `GET /containerLogs/...`.
pub const LOG_BODY: &str = "mk8s-node-model: a log line from the worker's kubelet\n";

/// What a model node is.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// "1.30/stable"
    pub channel: String,
    /// The control plane was upgraded from 1.27 or older (1.28+ only).
    pub upgraded: bool,
    /// The node's own address (loopback, e.g. 127.0.0.9).
    pub node_ip: String,
    /// What `hostname` prints on the node.
    pub hostname: String,
    /// The apiserver port of the cluster (16443 real).
    pub apiserver_port: u16,
    /// The kubelet's port (10250 real).
    pub kubelet_port: u16,
    /// How long a kubelite whose k8s-dqlite went away keeps running (F1b: 30-60 s real).
    pub crash_delay: Duration,
    /// Kubelet heartbeat interval (10 s real).
    pub heartbeat: Duration,
    /// The cluster-agent's launch-configuration tick (5 s real, its minimum).
    pub launcher_tick: Duration,
    /// The apiserver-proxy's endpoint refresh (1.25+: `--refresh-interval 30s` in
    /// args/apiserver-proxy, its minimum 15 s); shortened for tests.
    pub proxy_refresh: Duration,
    /// Run the real kubelet and containerd on the worker ([`RealPrograms`]).
    pub real: Option<RealPrograms>,
    /// The real kube-proxy, run with `args/kube-proxy` where kubelite (or the
    /// 1.20 proxy daemon) runs the model's; it owns the iptables of the node's
    /// network namespace, so only the boot tier, whose container has its own,
    /// sets it ([`install_in_root`] copies it into the root).
    pub real_kube_proxy: Option<PathBuf>,
    /// The real cluster-agent of the channel's branch ([`crate::real_agent`]), run
    /// as `cluster-agent apiserver-proxy` where the snap runs MicroK8s's own proxy
    /// on a worker (1.25+), instead of the model's.
    pub real_apiserver_proxy: Option<PathBuf>,
}

/// The worker's daemons as the real programs: kubelite in worker mode runs the real
/// kubelet (built from its Go module) with `args/kubelet` as the wrapper passes it,
/// and the containerd unit runs Debian's containerd. What differs from the snap,
/// each because these machines share one kernel and have no registry:
/// - the kubelet gets `--cgroup-root` (a cgroup of this test), `--port` (the
///   model's kubelet port), `--healthz-port=0` and `--make-iptables-util-chains=false`
///   (the machine's iptables are not the test's), and flags Kubernetes 1.34 no
///   longer knows are dropped (`microk8s_args::dropped_by_kube_1_34`);
/// - containerd's configuration is written by the model (the snap renders
///   `containerd-template.toml`), with `restrict_oom_score_adj` (root here lacks
///   CAP_SYS_RESOURCE) and a sandbox image built here (`tests/upstream/pause`);
/// - the CNI configuration in `args/cni-network` is Debian's bridge plugin with no
///   gateway and no masquerade, where a cluster runs Calico (whose images cannot
///   be pulled here).
#[derive(Debug, Clone)]
pub struct RealPrograms {
    pub kubelet: PathBuf,
    /// Name of a cgroup directly under each hierarchy's root, made by the caller.
    pub cgroup_root: String,
    /// An OCI image tar and the name it imports as.
    pub pause_tar: PathBuf,
    pub pause_ref: String,
    /// A name for the CNI bridge and the pods' subnet (host-local IPAM).
    pub cni_bridge: String,
    pub pod_subnet: String,
}

impl ModelConfig {
    pub fn new(channel: &str, apiserver_port: u16) -> ModelConfig {
        ModelConfig {
            channel: channel.to_string(),
            upgraded: false,
            node_ip: "127.0.0.9".into(),
            hostname: "worker-1".into(),
            apiserver_port,
            kubelet_port: crate::proc::free_port(),
            crash_delay: Duration::from_secs(3),
            heartbeat: Duration::from_secs(1),
            launcher_tick: Duration::from_millis(500),
            proxy_refresh: Duration::from_secs(1),
            real: None,
            real_kube_proxy: None,
            real_apiserver_proxy: None,
        }
    }
}

/// A model node: the wrappers to pass to the bootstrap, and the node's state.
pub struct Model {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub snap: PathBuf,
    pub systemctl: PathBuf,
    pub snapctl: PathBuf,
    /// The `microk8s` command (`microk8s join ...`, see [`Ctx::microk8s`]).
    pub microk8s: PathBuf,
    pub config: ModelConfig,
}

/// RFC 3339 (UTC, seconds) of a time, as Kubernetes writes `lastHeartbeatTime`.
pub fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t).replace_nanosecond(0).expect("0 is a valid nanosecond");
    t.format(&time::format_description::well_known::Rfc3339).expect("a time formats")
}

/// Parse an RFC 3339 time (what [`rfc3339`] writes).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok().map(SystemTime::from)
}

/// An executable script, written by a child process: a file this process held
/// open for writing could be inherited by a child another test thread forks at
/// that moment, and executing the script would then fail with ETXTBSY ("Text file
/// busy") until that child execs.
pub fn write_script(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut child = Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh writes the script");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("script text");
    assert!(child.wait().expect("sh").success(), "cannot write {}", path.display());
}

/// The node's `/proc/sys/kernel/hostname`, as the bootstrap reads it under its root.
fn write_kernel_hostname(root: &Path, name: &str) {
    let dir = root.join("proc/sys/kernel");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("hostname"), format!("{name}\n")).unwrap();
}

fn sh(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

impl Model {
    /// Set up a node rooted at `root`, with its state and wrappers in `dir`.
    pub fn new(dir: &Path, root: &Path, config: ModelConfig) -> Model {
        fs::create_dir_all(dir.join("pids")).unwrap();
        fs::create_dir_all(root).unwrap();
        let bin = binary();
        let state = initial_state(&config, &root.display().to_string(), &bin.display().to_string());
        fs::write(dir.join("model.json"), serde_json::to_string_pretty(&state).unwrap()).unwrap();
        write_kernel_hostname(root, &config.hostname);
        let mut paths = Vec::new();
        for tool in ["snap", "systemctl", "snapctl", "microk8s"] {
            let p = dir.join(tool);
            write_script(&p, &format!("#!/bin/sh\nexec {} --state {} {tool} \"$@\"\n", sh(&bin), sh(dir)));
            paths.push(p);
        }
        Model {
            dir: dir.to_path_buf(),
            root: root.to_path_buf(),
            microk8s: paths.pop().unwrap(),
            snapctl: paths.pop().unwrap(),
            systemctl: paths.pop().unwrap(),
            snap: paths.pop().unwrap(),
            config,
        }
    }

    fn ctx(&self) -> Ctx {
        Ctx::load(&self.dir)
    }

    /// `hostnamectl set-hostname`: the kernel's name, which `microk8s join` and the
    /// kubelet use (not /etc/hostname, which only the next boot reads).
    pub fn set_hostname(&self, name: &str) {
        let path = self.dir.join("model.json");
        let mut state: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        state["hostname"] = name.into();
        // Atomically, as the model's own writes: its daemons may be reading it.
        let tmp = self.dir.join("model.json.hostname");
        fs::write(&tmp, serde_json::to_string_pretty(&state).unwrap()).unwrap();
        fs::rename(&tmp, &path).unwrap();
        write_kernel_hostname(&self.root, name);
    }

    fn run_bin(&self, args: &[&str]) {
        let st = Command::new(binary())
            .arg("--state")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mk8s-node-model runs");
        assert!(st.success(), "mk8s-node-model {args:?} failed");
    }

    /// `snap refresh microk8s` to the same channel: snapd stops every service,
    /// starts the enabled ones, then the configure hook runs (see [`Ctx::refresh`]).
    pub fn refresh(&self) {
        self.run_bin(&["model", "refresh"]);
    }

    /// Stop everything, then start every enabled unit (snap and our own).
    pub fn reboot(&self) {
        self.run_bin(&["model", "reboot"]);
    }

    /// Kill every daemon of this node.
    pub fn shutdown(&self) {
        let ctx = self.ctx();
        for unit in ctx.pid_units() {
            ctx.kill(&unit);
        }
    }

    /// Commands run, in order, in the old substitutes' format.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("calls.log")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    pub fn clear_calls(&self) {
        let _ = fs::remove_file(self.dir.join("calls.log"));
    }

    /// What happened on the node (daemon starts, wrapper exits, crashes), in order.
    pub fn events(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("events.log")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    pub fn running(&self, unit: &str) -> bool {
        self.ctx().running(unit).is_some()
    }

    /// Every unit with a live process, the snap's and ours.
    pub fn running_units(&self) -> Vec<String> {
        let ctx = self.ctx();
        let mut units: Vec<String> = ctx.pid_units().into_iter().filter(|u| ctx.running(u).is_some()).collect();
        units.sort();
        units
    }

    /// Every unit systemd would start at boot: the snap's that are enabled (none
    /// while the snap is disabled or removed) and ours that are enabled.
    pub fn enabled_units(&self) -> Vec<String> {
        let ctx = self.ctx();
        let mut units: Vec<String> = Vec::new();
        if ctx.installed() {
            units.extend(ctx.snap_units().into_iter().filter(|u| ctx.known(u) && ctx.enabled(u)));
        }
        if let Ok(d) = fs::read_dir(self.dir.join("enabled")) {
            units.extend(d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()));
        }
        units.sort();
        units
    }

    /// `snap ARGS` on this node, as the bootstrap would run it: (ok, output).
    pub fn snap_cmd(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(&self.snap).args(args).stdin(Stdio::null()).output().expect("the model's snap runs");
        let mut text = String::from_utf8_lossy(&out.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// The model's state file (channel, ports, which launch configuration, ...).
    pub fn state(&self) -> Value {
        serde_json::from_str(&fs::read_to_string(self.dir.join("model.json")).unwrap()).unwrap()
    }

    /// kube-proxy's last result: `{"ok": bool, "detail": ...}`.
    pub fn kube_proxy(&self) -> Option<Value> {
        fs::read_to_string(self.dir.join("kube-proxy.json")).ok().and_then(|t| serde_json::from_str(&t).ok())
    }

    /// The cluster-agent's launch-configuration handler (1.27+):
    /// `{"applied": [...], "failures": N, "lastError": ...}`.
    pub fn launcher(&self) -> Option<Value> {
        fs::read_to_string(self.dir.join("launcher.json")).ok().and_then(|t| serde_json::from_str(&t).ok())
    }

    /// The kubelet's last result: `{"ok": bool, "server": ..., "detail": ...}`.
    pub fn kubelet(&self) -> Option<Value> {
        fs::read_to_string(self.dir.join("kubelet.json")).ok().and_then(|t| serde_json::from_str(&t).ok())
    }

    /// The address of a local control plane, if something on the apiserver port
    /// (127.0.0.1 or the node address) answers with a certificate signed by the
    /// node-local CA.
    pub fn local_control_plane(&self) -> Option<SocketAddr> {
        local_control_plane_at(&self.root, &self.config.node_ip, self.config.apiserver_port)
    }

    /// The node-local CA (PEM) the install hook made.
    pub fn node_ca_pem(&self) -> String {
        fs::read_to_string(self.root.join(SNAP_DATA).join("certs/ca.crt")).unwrap_or_default()
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The address of a local control plane of the node rooted at `root`: something
/// on the apiserver port (127.0.0.1 or `node_ip`) that answers with a certificate
/// signed by the node-local CA. Dials from the calling thread's network namespace.
pub fn local_control_plane_at(root: &Path, node_ip: &str, port: u16) -> Option<SocketAddr> {
    let ca = fs::read_to_string(root.join(SNAP_DATA).join("certs/ca.crt")).ok()?;
    let ca_der = rustls_pemfile::certs(&mut ca.as_bytes()).next()?.ok()?.to_vec();
    for ip in ["127.0.0.1", node_ip] {
        let addr: SocketAddr = format!("{ip}:{port}").parse().ok()?;
        if let Ok(r) = crate::tls::https_get(addr, "/readyz", None, None) {
            if signed_by(&r.peer_cert, &ca_der) {
                return Some(addr);
            }
        }
    }
    None
}

/// Where [`install_in_root`] puts the model inside a node's root.
pub const IN_ROOT_BIN: &str = "/usr/local/lib/mk8s-node-model/mk8s-node-model";

/// The model's state directory inside a node's root.
pub const IN_ROOT_STATE: &str = "/var/lib/mk8s-node-model";
/// Where [`install_in_root`] puts the real kube-proxy.
pub const IN_ROOT_KUBE_PROXY: &str = "/usr/local/lib/mk8s-node-model/kube-proxy";

/// The model installed into a bootable root (the real boot tier): the binary, its
/// state (`"systemd": true`, root `/`) and `/usr/bin/snap` and `/usr/bin/snapctl`
/// answered by it. There the node's own systemd runs everything: `snap install`
/// writes real `snap.microk8s.daemon-*.service` units (the shape snapd writes for a
/// `daemon: simple` app, with snapd's default restart condition, on-failure)
/// that run `mk8s-node-model daemon UNIT`, enables and starts them; the
/// bootstrap's `systemctl` is the real one. Returns a view of the state from outside.
pub fn install_in_root(root: &Path, config: &ModelConfig) -> NodeView {
    let under = |p: &str| root.join(p.trim_start_matches('/'));
    let bin = under(IN_ROOT_BIN);
    fs::create_dir_all(bin.parent().unwrap()).unwrap();
    fs::copy(binary(), &bin).expect("copy mk8s-node-model into the root");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let dir = under(IN_ROOT_STATE);
    fs::create_dir_all(dir.join("pids")).unwrap();
    let mut state = initial_state(config, "/", IN_ROOT_BIN);
    // The real systemd runs the units (the boot tier).
    state["systemd"] = json!(true);
    if let Some(program) = &config.real_kube_proxy {
        let p = under(IN_ROOT_KUBE_PROXY);
        fs::copy(program, &p).expect("copy kube-proxy into the root");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        state["realKubeProxy"] = json!(IN_ROOT_KUBE_PROXY);
    }
    fs::write(dir.join("model.json"), serde_json::to_string_pretty(&state).unwrap()).unwrap();
    for tool in ["snap", "snapctl"] {
        let p = under(&format!("/usr/bin/{tool}"));
        fs::write(&p, format!("#!/bin/sh\nexec {IN_ROOT_BIN} --state {IN_ROOT_STATE} {tool} \"$@\"\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    NodeView { dir, root: root.to_path_buf() }
}

/// The state a model starts with (`model.json`): the configuration, where the
/// node's root is and where the model's binary is, as that node sees them.
fn initial_state(config: &ModelConfig, root: &str, bin: &str) -> Value {
    json!({
        "channel": config.channel,
        "upgraded": config.upgraded,
        "nodeIP": config.node_ip,
        "hostname": config.hostname,
        "apiserverPort": config.apiserver_port,
        "kubeletPort": config.kubelet_port,
        "crashDelayMs": config.crash_delay.as_millis() as u64,
        "launcherTickMs": config.launcher_tick.as_millis() as u64,
        "proxyRefreshMs": config.proxy_refresh.as_millis() as u64,
        "real": config.real.as_ref().map(|r| json!({
            "kubelet": r.kubelet.display().to_string(),
            "cgroupRoot": r.cgroup_root,
            "pauseTar": r.pause_tar.display().to_string(),
            "pauseRef": r.pause_ref,
            "cniBridge": r.cni_bridge,
            "podSubnet": r.pod_subnet,
        })),
        "heartbeatMs": config.heartbeat.as_millis() as u64,
        "root": root,
        "bin": bin,
        "launchConfig": Value::Null,
        "realKubeProxy": config.real_kube_proxy.as_ref().map(|p| p.display().to_string()),
        "realApiserverProxy": config.real_apiserver_proxy.as_ref().map(|p| p.display().to_string()),
    })
}

/// The model's state of a node installed with [`install_in_root`], read from outside.
pub struct NodeView {
    pub dir: PathBuf,
    pub root: PathBuf,
}

impl NodeView {
    fn lines(&self, file: &str) -> Vec<String> {
        fs::read_to_string(self.dir.join(file)).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// Commands run (`snap ...`), in order.
    pub fn calls(&self) -> Vec<String> {
        self.lines("calls.log")
    }

    /// What happened on the node (daemon starts, wrapper exits, crashes), in order.
    pub fn events(&self) -> Vec<String> {
        self.lines("events.log")
    }

    /// kube-proxy's last result: `{"ok": bool, ...}`.
    pub fn kube_proxy(&self) -> Option<Value> {
        fs::read_to_string(self.dir.join("kube-proxy.json")).ok().and_then(|t| serde_json::from_str(&t).ok())
    }

    /// The kubelet's last result: `{"ok": bool, "server": ..., ...}`.
    pub fn kubelet(&self) -> Option<Value> {
        fs::read_to_string(self.dir.join("kubelet.json")).ok().and_then(|t| serde_json::from_str(&t).ok())
    }
}

/// Whether `der` is signed by the CA certificate `ca_der`.
pub fn signed_by(der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) =
        (x509_parser::parse_x509_certificate(der), x509_parser::parse_x509_certificate(ca_der))
    else {
        return false;
    };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 3723);
        assert_eq!(rfc3339(t), "2026-01-01T01:02:03Z");
        assert_eq!(parse_rfc3339("2026-01-01T01:02:03Z"), Some(t));
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2024-02-29T23:59:59Z").map(rfc3339).as_deref(), Some("2024-02-29T23:59:59Z"));
    }
}
