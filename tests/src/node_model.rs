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

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::pki::{Ca, Leaf};
use crate::tls::{https_call, server_config, Handler, Request, Response, TlsServer, Trust};

/// `$SNAP_DATA` relative to the node's root.
pub const SNAP_DATA: &str = "var/snap/microk8s/current";
/// `$SNAP_COMMON` relative to the node's root.
pub const SNAP_COMMON: &str = "var/snap/microk8s/common";
/// What a kubelet answers to `GET /containerLogs/...`.
pub const LOG_BODY: &str = "mk8s-node-model: a log line from the worker's kubelet\n";

/// Version ranges whose behaviour differs for a worker join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// 1.19, 1.20: one daemon per Kubernetes component.
    R119_120,
    /// 1.21, 1.22: kubelite, dqlite embedded in the apiserver.
    R121_122,
    /// 1.23, 1.24: kubelite plus the k8s-dqlite and traefik daemons.
    R123_124,
    /// 1.25 to 1.27: kubelite plus apiserver-proxy; token credentials.
    R125_127,
    /// 1.28+, control plane installed fresh: x509 only, kubelet cert verified.
    R128Fresh,
    /// 1.28+, control plane upgraded from 1.27 or older.
    R128Upgraded,
}

impl Range {
    pub fn from_channel(channel: &str, upgraded: bool) -> Range {
        match minor_of(channel) {
            ..=20 => Range::R119_120,
            21..=22 => Range::R121_122,
            23..=24 => Range::R123_124,
            25..=27 => Range::R125_127,
            _ if upgraded => Range::R128Upgraded,
            _ => Range::R128Fresh,
        }
    }
}

/// "1.30/stable" -> 30 (a channel without a version, e.g. "latest/stable", is the newest).
pub fn minor_of(channel: &str) -> u32 {
    channel.split('/').next().and_then(|v| v.split('.').nth(1)).and_then(|m| m.parse().ok()).unwrap_or(99)
}

/// One row of the behaviour table.
#[derive(Debug)]
pub struct Row {
    pub range: Range,
    pub versions: &'static str,
    /// Snap daemons whose wrappers do something, in snapcraft.yaml order.
    pub daemons: &'static [&'static str],
    /// Daemons running `run-null-daemon` (exit 0 while `lite.lock` exists).
    pub null_daemons: &'static [&'static str],
    /// Locks the install hook writes under `$SNAP_DATA/var/lock`.
    pub install_locks: &'static [&'static str],
    /// Credentials at install: `known_tokens.csv` and token kubeconfigs (else x509).
    pub token_credentials: bool,
    /// `certs/kubelet.crt` signed by the node-local CA at install.
    pub kubelet_crt: bool,
    /// Stopping k8s-dqlite takes the datastore from a running local control plane.
    pub separate_dqlite: bool,
    pub sources: &'static str,
}

/// The behaviour table (docs/join-flavours.md, "The node model", is the same table).
pub const TABLE: [Row; 6] = [
    Row {
        range: Range::R119_120,
        versions: "1.19-1.20",
        // 1.20:snap/snapcraft.yaml:L21-54 (no null daemons, no k8s-dqlite: dqlite is
        // embedded in the apiserver, 1.20:DA/kube-apiserver:L13-14).
        daemons: &[
            "etcd",
            "flanneld",
            "containerd",
            "apiserver",
            "apiserver-kicker",
            "control-plane-kicker",
            "cluster-agent",
            "controller-manager",
            "scheduler",
            "kubelet",
            "proxy",
        ],
        null_daemons: &[],
        // 1.20:snap/hooks/install:L92-96
        install_locks: &["no-etcd", "no-flanneld", "ha-cluster"],
        // 1.20:snap/hooks/install:L21-74
        token_credentials: true,
        kubelet_crt: false,
        separate_dqlite: false,
        sources: "1.20:snap/snapcraft.yaml:L21-54; 1.20:snap/hooks/install:L12-96; 1.20:WR/run-apiserver-with-args:L12-16; 1.20:WR/run-with-config-args:L12-19; 1.20:WR/apiservice-kicker:L12-16",
    },
    Row {
        range: Range::R121_122,
        versions: "1.21-1.22",
        // 1.22:snap/snapcraft.yaml:L18-58; no k8s-dqlite daemon (1.22:DA/kube-apiserver:L13-14).
        daemons: &["etcd", "flanneld", "containerd", "kubelite", "apiserver-kicker", "cluster-agent"],
        null_daemons: &["apiserver", "control-plane-kicker", "controller-manager", "scheduler", "kubelet", "proxy"],
        // 1.22:snap/hooks/install:L102-107
        install_locks: &["no-etcd", "no-flanneld", "ha-cluster", "lite.lock"],
        token_credentials: true,
        kubelet_crt: false,
        separate_dqlite: false,
        sources: "1.22:snap/snapcraft.yaml:L18-58; 1.22:snap/hooks/install:L31-107; 1.22:WR/run-kubelite-with-args:L16-27; 1.22:WR/run-null-daemon:L8-15",
    },
    Row {
        range: Range::R123_124,
        versions: "1.23-1.24",
        // 1.24:snap/snapcraft.yaml:L18-66
        daemons: &[
            "etcd",
            "flanneld",
            "containerd",
            "k8s-dqlite",
            "kubelite",
            "apiserver-kicker",
            "traefik",
            "cluster-agent",
        ],
        null_daemons: &["apiserver", "control-plane-kicker", "controller-manager", "scheduler", "kubelet", "proxy"],
        // 1.24:snap/hooks/install:L106-112 (no-traefik new in 1.23; no no-k8s-dqlite)
        install_locks: &["no-etcd", "no-flanneld", "no-traefik", "ha-cluster", "lite.lock"],
        token_credentials: true,
        kubelet_crt: false,
        separate_dqlite: true,
        sources: "1.24:snap/snapcraft.yaml:L18-66; 1.24:snap/hooks/install:L35-112; 1.24:WR/run-kubelite-with-args:L16-31; 1.24:WR/run-k8s-dqlite-with-args:L14; 1.24:WR/run-traefik-with-args:L9-20",
    },
    Row {
        range: Range::R125_127,
        versions: "1.25-1.27",
        // 1.26:snap/snapcraft.yaml:L280-309
        daemons: &[
            "etcd",
            "flanneld",
            "containerd",
            "k8s-dqlite",
            "kubelite",
            "apiserver-kicker",
            "apiserver-proxy",
            "cluster-agent",
        ],
        null_daemons: &[],
        // 1.26:snap/hooks/install:L112-118, installed.lock L144
        install_locks: &["no-etcd", "no-flanneld", "no-apiserver-proxy", "ha-cluster", "lite.lock", "installed.lock"],
        // 1.26:snap/hooks/install:L41-94
        token_credentials: true,
        kubelet_crt: false,
        separate_dqlite: true,
        sources: "1.26:snap/snapcraft.yaml:L280-309; 1.26:snap/hooks/install:L18-144; 1.26:WR/run-apiserver-proxy-with-args:L9-28; 1.26:snap/hooks/configure:L163-174,L648",
    },
    Row {
        range: Range::R128Fresh,
        versions: "1.28+ (fresh control plane)",
        // 1.30:snap/snapcraft.yaml:L321-350; 1.34:snap/snapcraft.yaml:L335-364
        daemons: &[
            "etcd",
            "flanneld",
            "containerd",
            "k8s-dqlite",
            "kubelite",
            "apiserver-kicker",
            "apiserver-proxy",
            "cluster-agent",
        ],
        null_daemons: &[],
        // 1.30:snap/hooks/install:L124-130, installed.lock L151
        install_locks: &["no-etcd", "no-flanneld", "no-apiserver-proxy", "ha-cluster", "lite.lock", "installed.lock"],
        // 1.30:snap/hooks/install:L106 -> US:L601-618 (create_user_certs_and_configs)
        token_credentials: false,
        kubelet_crt: true,
        separate_dqlite: true,
        sources: "1.30:snap/snapcraft.yaml:L321-350; 1.30:snap/hooks/install:L28-151; 1.30:US:L601-618,L1127-1151; 1.30:DA/kube-apiserver:L30-31; 1.30:snap/hooks/configure:L168-179,L552",
    },
    Row {
        range: Range::R128Upgraded,
        versions: "1.28+ (control plane upgraded from <=1.27)",
        daemons: &[
            "etcd",
            "flanneld",
            "containerd",
            "k8s-dqlite",
            "kubelite",
            "apiserver-kicker",
            "apiserver-proxy",
            "cluster-agent",
        ],
        null_daemons: &[],
        install_locks: &["no-etcd", "no-flanneld", "no-apiserver-proxy", "ha-cluster", "lite.lock", "installed.lock"],
        // The worker is installed fresh (as R128Fresh); only the control plane's
        // kube-apiserver args differ (0071dd1d, 4086f4ac touch default-args only).
        token_credentials: false,
        kubelet_crt: true,
        separate_dqlite: true,
        sources: "as 1.28+ fresh for the node; the control plane keeps its <=1.27 args/kube-apiserver (git grep of 1.30 snap/ scripts/ upgrade-scripts/ finds the 1.28 flags only in default-args)",
    },
];

pub fn row(range: Range) -> &'static Row {
    TABLE.iter().find(|r| r.range == range).expect("every range has a row")
}

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

/// How to build the binary [`binary`] looks for.
const BUILD_IT: &str = "cargo build -p mk8s-testkit --bin mk8s-node-model";

/// The `mk8s-node-model` binary, as cargo built it: never built here (a `cargo
/// build` from inside a test of another package rebuilds with that package's
/// feature selection, which cost up to two minutes per `cargo test -p`). The
/// testkit's own tests get its path from cargo (`CARGO_BIN_EXE_mk8s-node-model`);
/// another package's tests find it in the target profile directory of the running
/// test executable, where `cargo test --workspace` (scripts/test) and
/// `cargo build -p mk8s-testkit --bin mk8s-node-model` put it. Missing, or older
/// than a source file of the testkit, it panics with the command that builds it.
pub fn binary() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(find_binary).clone()
}

fn find_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CARGO_BIN_EXE_mk8s-node-model") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current exe");
    // <target>/<profile>/deps/<test>-<hash>
    let deps = exe.parent().expect("deps dir");
    let profile_dir = if deps.file_name().is_some_and(|n| n == "deps") { deps.parent().unwrap() } else { deps };
    let build = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => BUILD_IT.to_string(),
        Some("release") => format!("{BUILD_IT} --release"),
        Some(p) => format!("{BUILD_IT} --profile {p}"),
    };
    let bin = profile_dir.join("mk8s-node-model");
    let Ok(built) = fs::metadata(&bin).and_then(|m| m.modified()) else {
        panic!("{} is missing: build it with `{build}` (scripts/test builds it)", bin.display());
    };
    if let Some((source, changed)) = newest_source(Path::new(env!("CARGO_MANIFEST_DIR"))) {
        assert!(
            changed <= built,
            "{} is older than {}: rebuild it with `{build}` (scripts/test builds it)",
            bin.display(),
            source.display()
        );
    }
    bin
}

/// The most recently changed file the binary is built from (`Cargo.toml` and
/// `src/` of the testkit), with its time; None if the sources are not here.
fn newest_source(manifest_dir: &Path) -> Option<(PathBuf, SystemTime)> {
    let mut newest: Option<(PathBuf, SystemTime)> = None;
    let mut pending = vec![manifest_dir.join("Cargo.toml"), manifest_dir.join("src")];
    while let Some(path) = pending.pop() {
        let Ok(meta) = fs::metadata(&path) else { continue };
        if meta.is_dir() {
            pending.extend(fs::read_dir(&path).into_iter().flatten().flatten().map(|e| e.path()));
            continue;
        }
        let Ok(changed) = meta.modified() else { continue };
        if newest.as_ref().is_none_or(|(_, t)| changed > *t) {
            newest = Some((path, changed));
        }
    }
    newest
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
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
        let state = json!({
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
            "root": root.display().to_string(),
            "bin": bin.display().to_string(),
            "launchConfig": Value::Null,
        });
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
        fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
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
    let state = json!({
        "channel": config.channel,
        "upgraded": config.upgraded,
        "nodeIP": config.node_ip,
        "hostname": config.hostname,
        "apiserverPort": config.apiserver_port,
        "kubeletPort": config.kubelet_port,
        "crashDelayMs": config.crash_delay.as_millis() as u64,
        "heartbeatMs": config.heartbeat.as_millis() as u64,
        "root": "/",
        "bin": IN_ROOT_BIN,
        "launchConfig": Value::Null,
        "systemd": true,
    });
    fs::write(dir.join("model.json"), serde_json::to_string_pretty(&state).unwrap()).unwrap();
    for tool in ["snap", "snapctl"] {
        let p = under(&format!("/usr/bin/{tool}"));
        fs::write(&p, format!("#!/bin/sh\nexec {IN_ROOT_BIN} --state {IN_ROOT_STATE} {tool} \"$@\"\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    NodeView { dir, root: root.to_path_buf() }
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

/// `systemctl ARGS` on the node; whether it succeeded.
fn systemctl_quiet(args: &[&str]) -> bool {
    Command::new("systemctl").args(args).stdin(Stdio::null()).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
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

// ---------------------------------------------------------------------------
// The state directory, shared by the CLI commands and the daemons.

struct Ctx {
    dir: PathBuf,
    root: PathBuf,
    bin: PathBuf,
    state: Value,
    range: Range,
    minor: u32,
}

const SNAP_PREFIX: &str = "snap.microk8s.daemon-";

fn snap_unit(daemon: &str) -> String {
    format!("{SNAP_PREFIX}{daemon}.service")
}

impl Ctx {
    fn load(dir: &Path) -> Ctx {
        let text = fs::read_to_string(dir.join("model.json")).expect("model.json: not a model state directory");
        let state: Value = serde_json::from_str(&text).expect("model.json is JSON");
        let channel = state["channel"].as_str().unwrap_or("").to_string();
        let upgraded = state["upgraded"].as_bool().unwrap_or(false);
        Ctx {
            dir: dir.to_path_buf(),
            root: PathBuf::from(state["root"].as_str().unwrap_or("/")),
            bin: PathBuf::from(state["bin"].as_str().unwrap_or("")),
            range: Range::from_channel(&channel, upgraded),
            minor: minor_of(&channel),
            state,
        }
    }

    fn row(&self) -> &'static Row {
        row(self.range)
    }

    /// The node's own systemd runs the snap's units ([`install_in_root`]).
    fn systemd(&self) -> bool {
        self.state["systemd"].as_bool().unwrap_or(false)
    }

    fn s(&self, key: &str) -> String {
        self.state[key].as_str().unwrap_or("").to_string()
    }

    fn n(&self, key: &str) -> u64 {
        self.state[key].as_u64().unwrap_or(0)
    }

    fn set_state(&mut self, key: &str, v: Value) {
        self.state[key] = v;
        let _ = fs::write(self.dir.join("model.json"), serde_json::to_string_pretty(&self.state).unwrap());
    }

    fn snap_data(&self, rel: &str) -> PathBuf {
        self.root.join(SNAP_DATA).join(rel)
    }

    fn lock(&self, name: &str) -> bool {
        self.snap_data(&format!("var/lock/{name}")).exists()
    }

    fn installed(&self) -> bool {
        self.snap_data("args").exists()
    }

    fn append(&self, file: &str, line: &str) {
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(self.dir.join(file)) {
            let _ = writeln!(f, "{line}");
        }
    }

    fn event(&self, msg: &str) {
        self.append("events.log", &format!("{} {msg}", unix_ms()));
    }

    /// Expand `${SNAP_DATA}`, `$SNAP_DATA`, `${SNAP_COMMON}` to paths under the root.
    fn expand(&self, s: &str) -> String {
        let sd = self.root.join(SNAP_DATA).display().to_string();
        let sc = self.root.join(SNAP_COMMON).display().to_string();
        s.replace("${SNAP_DATA}", &sd).replace("$SNAP_DATA", &sd).replace("${SNAP_COMMON}", &sc)
    }

    /// A path a file names: MicroK8s's own absolute paths (`/var/snap/microk8s/...`,
    /// as the worker join writes them into kubeconfigs) are under the root.
    fn node_path(&self, p: &str) -> PathBuf {
        match p.strip_prefix("/var/snap/microk8s/") {
            Some(rest) => self.root.join("var/snap/microk8s").join(rest),
            None => PathBuf::from(p),
        }
    }

    /// An args file as the wrappers read it: `--flag=value` lines, quotes
    /// stripped, variables expanded (kubelite `ReadArgsFromFile`, F6).
    fn args(&self, file: &str) -> BTreeMap<String, String> {
        let text = fs::read_to_string(self.snap_data(&format!("args/{file}"))).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("--"))
            .map(|l| {
                let (k, v) = l.split_once(['=', ' ']).unwrap_or((l, ""));
                (k.to_string(), self.expand(v.trim().trim_matches('"').trim_matches('\'')))
            })
            .collect()
    }

    // --- units -----------------------------------------------------------

    fn snap_units(&self) -> Vec<String> {
        let r = self.row();
        r.daemons.iter().chain(r.null_daemons).map(|d| snap_unit(d)).collect()
    }

    fn own_unit_file(&self, unit: &str) -> PathBuf {
        self.root.join("etc/systemd/system").join(unit)
    }

    fn known(&self, unit: &str) -> bool {
        if unit.starts_with(SNAP_PREFIX) {
            self.installed() && self.snap_units().iter().any(|u| u == unit)
        } else {
            self.own_unit_file(unit).exists()
        }
    }

    fn pid_file(&self, unit: &str) -> PathBuf {
        self.dir.join("pids").join(unit)
    }

    fn pid_units(&self) -> Vec<String> {
        if self.systemd() {
            return Vec::new();
        }
        fs::read_dir(self.dir.join("pids"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect())
            .unwrap_or_default()
    }

    fn running(&self, unit: &str) -> Option<u32> {
        if self.systemd() {
            // The real systemd's answer (0: no pid known here, the unit is active).
            return systemctl_quiet(&["is-active", "--quiet", unit]).then_some(0);
        }
        let pid: u32 = fs::read_to_string(self.pid_file(unit)).ok()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }

    /// systemd's enabled state: snap services are enabled by snapd at install;
    /// our own units once `systemctl enable`d.
    fn enabled(&self, unit: &str) -> bool {
        if self.systemd() {
            return systemctl_quiet(&["is-enabled", "--quiet", unit]);
        }
        if unit.starts_with(SNAP_PREFIX) {
            !self.dir.join("disabled").join(unit).exists()
        } else {
            self.dir.join("enabled").join(unit).exists()
        }
    }

    fn set_enabled(&self, unit: &str, on: bool) {
        if self.systemd() {
            systemctl_quiet(&[if on { "enable" } else { "disable" }, "--quiet", unit]);
            return;
        }
        let (dir, mark) = if unit.starts_with(SNAP_PREFIX) { ("disabled", !on) } else { ("enabled", on) };
        let p = self.dir.join(dir).join(unit);
        if mark {
            let _ = fs::create_dir_all(p.parent().unwrap());
            let _ = fs::write(p, "");
        } else {
            let _ = fs::remove_file(p);
        }
    }

    fn start(&self, unit: &str) {
        if self.running(unit).is_some() {
            return;
        }
        if self.systemd() {
            if !systemctl_quiet(&["start", unit]) {
                self.event(&format!("{unit}: systemctl start failed"));
            }
            return;
        }
        self.spawn_daemon(unit, false);
    }

    fn spawn_daemon(&self, unit: &str, restarted: bool) -> u32 {
        let _ = fs::create_dir_all(self.dir.join("logs"));
        let log = fs::File::create(self.dir.join("logs").join(format!("{unit}.log"))).ok();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--state").arg(&self.dir).arg("daemon").arg(unit);
        if restarted {
            cmd.arg("--restarted");
        }
        cmd.stdin(Stdio::null()).process_group(0);
        match log {
            Some(f) => {
                cmd.stdout(f.try_clone().map(Stdio::from).unwrap_or(Stdio::null())).stderr(Stdio::from(f));
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        // Detached on purpose: the CLI process that starts a unit exits at once, and
        // the daemon is reaped by whoever inherits it (as systemd's services are).
        #[allow(clippy::zombie_processes)]
        let child = cmd.spawn().expect("spawn a model daemon");
        let pid = child.id();
        let _ = fs::write(self.pid_file(unit), pid.to_string());
        pid
    }

    /// Kill the unit's process group and wait until it is gone (ports released).
    fn kill(&self, unit: &str) {
        if self.systemd() {
            systemctl_quiet(&["stop", unit]);
            return;
        }
        if let Ok(text) = fs::read_to_string(self.pid_file(unit)) {
            if let Ok(pid) = text.trim().parse::<u32>() {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .stderr(Stdio::null())
                    .stdout(Stdio::null())
                    .status();
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
                let end = Instant::now() + Duration::from_secs(3);
                while alive(pid) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let _ = fs::remove_file(self.pid_file(unit));
    }

    fn stop(&self, unit: &str) {
        if self.running(unit).is_some() {
            self.event(&format!("{unit}: stopped"));
        }
        self.kill(unit);
    }

    // --- commands --------------------------------------------------------

    fn systemctl(&self, args: &[String]) -> i32 {
        let verb = args.first().map(String::as_str).unwrap_or("");
        let units: Vec<&String> = args.iter().skip(1).filter(|a| !a.starts_with("--")).collect();
        let now = args.iter().any(|a| a == "--now");
        if verb == "daemon-reload" {
            return 0;
        }
        for unit in &units {
            if !self.known(unit) {
                // systemd's answer for a unit this snap revision does not ship
                // (F4: 1.21/1.22 have no k8s-dqlite unit).
                eprintln!("Failed to {verb} {unit}: Unit {unit} not loaded.");
                return 5;
            }
        }
        for unit in units {
            match verb {
                "start" => self.start(unit),
                "stop" => self.stop(unit),
                "restart" => {
                    self.stop(unit);
                    self.start(unit);
                }
                "enable" => {
                    self.set_enabled(unit, true);
                    if now {
                        self.start(unit);
                    }
                }
                "disable" => {
                    self.set_enabled(unit, false);
                    if now {
                        self.stop(unit);
                    }
                }
                "is-active" => return if self.running(unit).is_some() { 0 } else { 3 },
                "is-enabled" => return if self.enabled(unit) { 0 } else { 1 },
                other => {
                    eprintln!("mk8s-node-model: systemctl {other} is not modelled");
                    return 1;
                }
            }
        }
        0
    }

    /// `snapctl restart microk8s.daemon-X` (from a hook): a restart by name starts
    /// even a disabled unit (snapd `restartServicesByStatus`, F5).
    fn snapctl(&self, args: &[String]) -> i32 {
        match (args.first().map(String::as_str), args.get(1)) {
            (Some(verb @ ("restart" | "start" | "stop")), Some(name)) => {
                let unit = format!("snap.{name}.service");
                if !self.known(&unit) {
                    eprintln!("error: unknown service: \"{name}\"");
                    return 1;
                }
                if verb != "start" {
                    self.stop(&unit);
                }
                if verb != "stop" {
                    self.start(&unit);
                }
                0
            }
            _ => {
                eprintln!("mk8s-node-model: snapctl {args:?} is not modelled");
                1
            }
        }
    }

    fn snap(&mut self, args: &[String]) -> i32 {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["list", ..] => {
                if self.installed() {
                    println!("Name      Version  Rev   Tracking       Publisher   Notes");
                    println!("microk8s  v1.{}.0  1234  {}  canonical✓  classic", self.minor, self.s("channel"));
                    0
                } else {
                    eprintln!("error: no matching snaps installed");
                    1
                }
            }
            ["wait", ..] => 0,
            ["ack", file] => {
                if Path::new(file).exists() {
                    0
                } else {
                    eprintln!("error: cannot read assertion file: {file}");
                    1
                }
            }
            ["install", what, rest @ ..] => {
                if *what != "microk8s" && !what.ends_with(".snap") {
                    eprintln!("error: snap {what:?} not found");
                    return 1;
                }
                if let Some(i) = rest.iter().position(|r| *r == "--channel") {
                    let want = rest.get(i + 1).copied().unwrap_or("");
                    if want != self.s("channel") {
                        eprintln!("mk8s-node-model: this node models {}, not {want}", self.s("channel"));
                        return 1;
                    }
                }
                if self.installed() {
                    println!("snap \"microk8s\" is already installed, see 'snap help refresh'");
                    return 0;
                }
                self.install();
                println!("microk8s ({}) v1.{}.0 from Canonical✓ installed", self.s("channel"), self.minor);
                0
            }
            ["refresh", ..] => {
                self.refresh();
                0
            }
            _ => {
                eprintln!("mk8s-node-model: snap {args:?} is not modelled");
                1
            }
        }
    }

    /// What the install hook lays out, then snapd starts every service.
    fn install(&mut self) {
        let range = self.range;
        let r = self.row();
        let port = self.n("apiserverPort");
        let node_ip = self.s("nodeIP");
        // Every branch lower-cases the hostname for node identities
        // (1.22:snap/hooks/install:L40; 1.30:US:L1090).
        let hostname = self.s("hostname").to_lowercase();
        for d in ["args", "certs", "credentials", "var/lock", "var/kubernetes/backend"] {
            fs::create_dir_all(self.snap_data(d)).unwrap();
        }
        // `cp -r ${SNAP}/default-args ${SNAP_DATA}/args` (1.20:snap/hooks/install:L12,
        // 1.26:L18, 1.30:L28): only the lines that matter to a worker.
        let labels = if self.minor >= 23 {
            // 1.23:DA/kubelet:L15, 1.30:DA/kubelet:L10
            "microk8s.io/cluster=true,node.kubernetes.io/microk8s-controlplane=microk8s-controlplane"
        } else {
            // 1.20:DA/kubelet:L15, 1.22:DA/kubelet:L15
            "microk8s.io/cluster=true"
        };
        // 1.20:DA/kubelet:L1-4,L6-7; 1.30:DA/kubelet:L1-14 (no --tls-cert-file in any branch)
        let kubelet = format!(
            "--kubeconfig=${{SNAP_DATA}}/credentials/kubelet.config\n--cert-dir=${{SNAP_DATA}}/certs\n--client-ca-file=${{SNAP_DATA}}/certs/ca.crt\n--anonymous-auth=false\n--root-dir=${{SNAP_COMMON}}/var/lib/kubelet\n--fail-swap-on=false\n--node-labels=\"{labels}\"\n--authentication-token-webhook=true\n--read-only-port=0\n"
        );
        if self.state["real"].is_object() {
            // The real kubelet reads all of it: the branch's file verbatim.
            let full: String =
                crate::microk8s_args::for_minor(self.minor).kubelet.iter().map(|l| format!("{l}\n")).collect();
            self.write_args("kubelet", &full);
        } else {
            self.write_args("kubelet", &kubelet);
        }
        // 1.30:DA/kube-proxy:L1-4 (same in 1.20-1.34)
        self.write_args(
            "kube-proxy",
            "--kubeconfig=${SNAP_DATA}/credentials/proxy.config\n--cluster-cidr=10.1.0.0/16\n--healthz-bind-address=127.0.0.1\n--profiling=false\n",
        );
        // 1.20:DA/kube-apiserver:L1-11; 1.26:DA/kube-apiserver:L3,L5,L11; 1.30:DA/kube-apiserver:L3,L5,L30-31.
        // --secure-port is the model's port (16443 real).
        let mut apiserver = format!(
            "--cert-dir=${{SNAP_DATA}}/certs\n--authorization-mode=AlwaysAllow\n--client-ca-file=${{SNAP_DATA}}/certs/ca.crt\n--tls-cert-file=${{SNAP_DATA}}/certs/server.crt\n--tls-private-key-file=${{SNAP_DATA}}/certs/server.key\n--secure-port={port}\n"
        );
        if r.token_credentials {
            apiserver.push_str("--token-auth-file=${SNAP_DATA}/credentials/known_tokens.csv\n");
        } else {
            // Added by 0071dd1d and 4086f4ac (1.28+, fresh installs: this node is one).
            apiserver.push_str("--kubelet-certificate-authority=${SNAP_DATA}/certs/ca.crt\n--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP\n");
        }
        self.write_args("kube-apiserver", &apiserver);
        if range != Range::R119_120 {
            // 1.30:DA/kubelite (the same in every branch 1.21+)
            self.write_args("kubelite", "--scheduler-args-file=$SNAP_DATA/args/kube-scheduler\n--controller-manager-args-file=$SNAP_DATA/args/kube-controller-manager\n--proxy-args-file=$SNAP_DATA/args/kube-proxy\n--kubelet-args-file=$SNAP_DATA/args/kubelet\n--apiserver-args-file=$SNAP_DATA/args/kube-apiserver\n--kubeconfig-file=$SNAP_DATA/credentials/client.config\n--start-control-plane=true\n");
        }
        if self.minor >= 23 {
            // 1.24:DA/k8s-dqlite
            self.write_args(
                "k8s-dqlite",
                "--storage-dir=${SNAP_DATA}/var/kubernetes/backend/\n--listen=unix://${SNAP_DATA}/var/kubernetes/backend/kine.sock:12379\n",
            );
            self.lay_out_traefik_args();
        }
        if self.minor >= 25 {
            self.lay_out_apiserver_proxy_args();
        }
        self.make_certs(&hostname, &node_ip);
        self.make_credentials(&hostname, port);
        // Locks: 1.20:snap/hooks/install:L92-96; 1.22:L102-107; 1.24:L106-112; 1.30:L124-130,L151.
        for l in r.install_locks {
            let _ = fs::write(self.snap_data(&format!("var/lock/{l}")), "");
        }
        // Launch configuration, 1.27+ (1.27:snap/hooks/install:L67-77; 1.30:L77-87):
        // /etc/microk8s.yaml first, else $SNAP/microk8s.default.yaml (`addons: [dns]`,
        // 1.30:microk8s-resources/microk8s.default.yaml:L1-8), copied to
        // $SNAP_COMMON/etc/launcher/install.yaml.
        if self.minor >= 27 {
            let user = self.root.join("etc/microk8s.yaml");
            let (which, text) = match fs::read_to_string(&user) {
                Ok(t) => ("/etc/microk8s.yaml", t),
                Err(_) => ("$SNAP/microk8s.default.yaml", "version: 0.1.0\nextraKubeletArgs:\n  --cluster-domain: cluster.local\n  --cluster-dns: 10.152.183.10\naddons:\n  - name: dns\n".to_string()),
            };
            let dest = self.root.join(SNAP_COMMON).join("etc/launcher/install.yaml");
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::write(dest, &text).unwrap();
            self.set_state("launchConfig", json!(which));
            // `cluster-agent init --pre-init --config-file .../install.yaml`
            // (1.30:snap/hooks/install:L83): everything but addons, the join and the
            // restarts (CA 1.30:pkg/k8sinit/apply.go:L29,L45,L112). The file stays, so
            // the running agent applies it again, whole. (A failure fails the install
            // upstream, L76; the model records it.)
            if let Err(e) = apply_launch_config(self, &text, true) {
                self.event(&format!("install hook: cluster-agent init --pre-init failed: {e}"));
            }
        }
        self.event(&format!("installed microk8s {} ({:?})", self.s("channel"), range));
        if self.systemd() {
            self.write_snap_units();
        }
        // snapd starts every service of the snap after the install hook.
        for unit in self.snap_units() {
            self.start(&unit);
        }
    }

    /// The units snapd writes for the snap's daemons (systemd mode), then
    /// `systemctl daemon-reload` and `enable` (snapd enables every service at install).
    fn write_snap_units(&self) {
        let units = self.snap_units();
        for unit in &units {
            let app = unit.trim_start_matches("snap.").trim_end_matches(".service");
            let text = format!(
                "[Unit]\n# Written by mk8s-node-model's `snap install` in the shape snapd writes.\nDescription=Service for snap application {app}\nWants=network.target\nAfter=network.target\nX-Snappy=yes\n\n[Service]\nExecStart={} --state {} daemon {unit}\nSyslogIdentifier={app}\nRestart=on-failure\nWorkingDirectory=/{SNAP_DATA}\nTimeoutStopSec=30\nType=simple\n\n[Install]\nWantedBy=multi-user.target\n",
                self.bin.display(),
                self.dir.display()
            );
            fs::write(self.root.join("etc/systemd/system").join(unit), text).unwrap();
        }
        systemctl_quiet(&["daemon-reload"]);
        let mut args = vec!["enable", "--quiet"];
        args.extend(units.iter().map(String::as_str));
        systemctl_quiet(&args);
    }

    fn write_args(&self, name: &str, text: &str) {
        let p = self.snap_data(&format!("args/{name}"));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o660));
    }

    /// 1.30:DA/traefik/traefik-template.yaml, provider-template.yaml.
    fn lay_out_traefik_args(&self) {
        self.write_args(
            "traefik/traefik-template.yaml",
            "entryPoints:\n  apiserver:\n    address: \":16443\"\nproviders:\n  file:\n    filename: ${SNAP_DATA}/args/traefik/provider.yaml\n    watch: true\n",
        );
        self.write_args("traefik/provider-template.yaml", "tcp:\n  routers:\n    Router-1:\n      rule: \"HostSNI(`*`)\"\n      service: \"kube-apiserver\"\n      tls:\n        passthrough: true\n  services:\n    kube-apiserver:\n      loadBalancer:\n        servers:\n# APISERVERS\n");
    }

    /// 1.30:DA/apiserver-proxy:L1-3.
    fn lay_out_apiserver_proxy_args(&self) {
        self.write_args("apiserver-proxy", "--traefik-config ${SNAP_DATA}/args/traefik/traefik.yaml\n--kubeconfig ${SNAP_DATA}/credentials/kubelet.config\n--refresh-interval 30s\n");
    }

    /// `produce_certs` (1.20:US:L363-413; 1.30:US:L679-690,L586-589): a node-local
    /// CA (CN=10.152.183.1) and server.crt signed by it; 1.28+ `create_user_certificates`
    /// (1.30:US:L601-609) adds kubelet.crt (CN=system:node:HOST, O=system:nodes, SANs
    /// DNS:HOST and the node's IPs, `generate_csr_with_sans` 1.30:US:L1075-1105), signed
    /// by the same local CA (`sign_certificate`, 1.30:US:L1127-1151).
    fn make_certs(&self, hostname: &str, node_ip: &str) {
        let ca = Ca::new("10.152.183.1");
        let w = |name: &str, text: &str, mode: u32| {
            let p = self.snap_data(&format!("certs/{name}"));
            fs::write(&p, text).unwrap();
            let _ = fs::set_permissions(&p, fs::Permissions::from_mode(mode));
        };
        w("ca.crt", &ca.cert_pem, 0o644);
        w("ca.key", &ca.key_pem, 0o600);
        // csr.conf.template: CN=127.0.0.1, SANs kubernetes.*, 127.0.0.1, 10.152.183.1, #MOREIPS
        let server = ca.server(&["127.0.0.1", "10.152.183.1", node_ip, "kubernetes", "kubernetes.default"]);
        w("server.crt", &server.cert_pem, 0o644);
        w("server.key", &server.key_pem, 0o600);
        if self.row().kubelet_crt {
            let kubelet = ca.serving(&format!("system:node:{hostname}"), &["system:nodes"], &[hostname, node_ip]);
            w("kubelet.crt", &kubelet.cert_pem, 0o644);
            w("kubelet.key", &kubelet.key_pem, 0o600);
        }
        // Kept for x509 kubeconfigs below (the install hook signs them with ca.key too).
        if !self.row().token_credentials {
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
            let ca_data = b64(&ca.cert_pem);
            let port = self.n("apiserverPort");
            for (file, cn, orgs) in [
                ("kubelet.config", format!("system:node:{hostname}"), vec!["system:nodes"]),
                ("proxy.config", "system:kube-proxy".to_string(), vec![]),
                ("client.config", "admin".to_string(), vec!["system:masters"]),
            ] {
                let leaf = ca.client(&cn, &orgs);
                // create_kubeconfig_x509 (1.30:US:L642-677): data embedded, server
                // 127.0.0.1:--secure-port.
                let text = format!(
                    "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca_data}\n    server: https://127.0.0.1:{port}\n  name: microk8s-cluster\ncontexts:\n- context:\n    cluster: microk8s-cluster\n    user: {cn}\n  name: microk8s\ncurrent-context: microk8s\nkind: Config\npreferences: {{}}\nusers:\n- name: {cn}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
                    b64(&leaf.cert_pem),
                    b64(&leaf.key_pem)
                );
                self.write_secret(&format!("credentials/{file}"), &text);
            }
        }
    }

    /// <=1.27: known_tokens.csv and token kubeconfigs from client.config.template
    /// (1.20:snap/hooks/install:L21-74; 1.26:L41-94; 1.22:microk8s-resources/client.config.template).
    fn make_credentials(&self, hostname: &str, port: u64) {
        if !self.row().token_credentials {
            return;
        }
        let ca_pem = fs::read_to_string(self.snap_data("certs/ca.crt")).unwrap();
        let ca_data = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
        let seed = format!("{:x}{:x}", unix_ms(), std::process::id());
        let token = |i: u32| format!("{seed}{i:04x}");
        let csv = format!(
            "{},admin,admin,\"system:masters\"\n{},system:kube-proxy,kube-proxy\n{},system:node:{hostname},kubelet-0,\"system:nodes\"\n{},system:kube-controller-manager,controller\n{},system:kube-scheduler,scheduler\n",
            token(0),
            token(1),
            token(2),
            token(3),
            token(4)
        );
        self.write_secret("credentials/known_tokens.csv", &csv);
        for (file, name, t) in [
            ("client.config", "admin", token(0)),
            ("proxy.config", "kubeproxy", token(1)),
            ("kubelet.config", "kubelet", token(2)),
        ] {
            let text = format!("apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca_data}\n    server: https://127.0.0.1:{port}\n  name: microk8s-cluster\ncontexts:\n- context:\n    cluster: microk8s-cluster\n    user: {name}\n  name: microk8s\ncurrent-context: microk8s\nkind: Config\npreferences: {{}}\nusers:\n- name: {name}\n  user:\n    username: {name}\n    token: {t}\n");
            self.write_secret(&format!("credentials/{file}"), &text);
        }
    }

    fn write_secret(&self, rel: &str, text: &str) {
        let p = self.snap_data(rel);
        fs::write(&p, text).unwrap();
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o600));
    }

    /// `snap refresh` to a new revision of the same channel: snapd stops every
    /// service, links the new revision and starts the services that were enabled
    /// (disabled ones are re-disabled: snapd `LastActiveDisabledServices`, F5); the
    /// configure hook then re-copies `args/traefik` and `args/apiserver-proxy` if
    /// they were deleted (1.26:snap/hooks/configure:L163-174; 1.30:L168-179) and runs
    /// `snapctl restart microk8s.daemon-apiserver-proxy` unconditionally
    /// (1.25:configure:L642; 1.26:L648; 1.27:L675; 1.28:L538; 1.30:L552; 1.34:L568),
    /// which starts it even when disabled. Our own units are not the snap's: untouched.
    fn refresh(&mut self) {
        self.event("snap refresh microk8s");
        let units = self.snap_units();
        for u in &units {
            self.stop(u);
        }
        if self.minor >= 25 {
            if !self.snap_data("args/traefik").exists() {
                self.lay_out_traefik_args();
            }
            if !self.snap_data("args/apiserver-proxy").exists() {
                self.lay_out_apiserver_proxy_args();
            }
        }
        for u in units.iter().filter(|u| self.enabled(u)) {
            self.start(u);
        }
        if self.minor >= 25 {
            self.append("calls.log", "snapctl restart microk8s.daemon-apiserver-proxy");
            self.snapctl(&["restart".into(), "microk8s.daemon-apiserver-proxy".into()]);
        }
    }

    /// A reboot: every process ends; systemd starts the enabled units.
    fn reboot(&self) {
        self.event("reboot");
        for u in self.pid_units() {
            self.kill(&u);
        }
        let mut units = if self.installed() { self.snap_units() } else { Vec::new() };
        if let Ok(d) = fs::read_dir(self.dir.join("enabled")) {
            units.extend(d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()));
        }
        for u in units.iter().filter(|u| self.enabled(u) && self.known(u)) {
            self.start(u);
        }
    }
}

// ---------------------------------------------------------------------------
// `microk8s join IP:PORT/TOKEN[/CHECK] --worker`: what that version's join.py does,
// in order. Sources: 1.24:scripts/cluster/join.py (J24), 1.27:scripts/wrappers/join.py
// (J27), 1.30:scripts/wrappers/join.py (J30, identical in 1.34), and
// 1.30:scripts/wrappers/common/cluster/utils.py (CU30).

/// `IP:PORT/<token>/CHECK` with the token hidden, for logs.
pub fn redact_connection(arg: &str) -> String {
    let parts: Vec<&str> = arg.split('/').collect();
    if parts.len() >= 2 && parts[0].contains(':') {
        let mut out = vec![parts[0].to_string(), "<token>".to_string()];
        out.extend(parts[2..].iter().map(|p| p.to_string()));
        out.join("/")
    } else {
        arg.to_string()
    }
}

/// A failed join: its exit code and message (join.py prints and `exit(code)`s).
struct JoinExit(i32, String);

impl Ctx {
    fn microk8s(&mut self, args: &[String]) -> i32 {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["join", conn, rest @ ..] => {
                let worker = rest.contains(&"--worker");
                if self.minor < 23 && worker {
                    // 1.20-1.22 have no --worker (1.22:scripts/cluster/join.py:L1057-1100).
                    eprintln!("Error: no such option: --worker");
                    return 2;
                }
                if !worker {
                    eprintln!("mk8s-node-model: only `microk8s join ... --worker` is modelled");
                    return 1;
                }
                match self.join_worker(conn) {
                    Ok(()) => {
                        println!("The node has joined the cluster and will appear in the nodes list in a few seconds.");
                        0
                    }
                    Err(JoinExit(code, msg)) => {
                        eprintln!("{msg}");
                        code
                    }
                }
            }
            _ => {
                eprintln!("mk8s-node-model: microk8s {args:?} is not modelled");
                1
            }
        }
    }

    /// `service("restart", name)`: `snapctl restart microk8s.daemon-NAME`, which
    /// starts even a disabled unit (1.30:CU30:L371-383; 1.24:scripts/cluster/common/utils.py:L308-326).
    fn restart_service(&self, daemon: &str) {
        let unit = snap_unit(daemon);
        if self.known(&unit) {
            self.append("calls.log", &format!("snapctl restart microk8s.daemon-{daemon}"));
            self.stop(&unit);
            self.start(&unit);
        }
    }

    /// `set_arg(key, value, file)`: replace or append `key=value`; None removes it.
    fn set_arg(&self, file: &str, key: &str, value: Option<&str>) {
        let p = self.snap_data(&format!("args/{file}"));
        let text = fs::read_to_string(&p).unwrap_or_default();
        let flag = |l: &str| l.split(['=', ' ']).next().unwrap_or("").to_string();
        let mut lines: Vec<String> = Vec::new();
        let mut done = false;
        for l in text.lines() {
            if flag(l) == key {
                if let (Some(v), false) = (value, done) {
                    lines.push(format!("{key}={v}"));
                    done = true;
                }
                continue;
            }
            lines.push(l.to_string());
        }
        if let (Some(v), false) = (value, done) {
            lines.push(format!("{key}={v}"));
        }
        self.write_args(file, &(lines.join("\n") + "\n"));
    }

    /// `UpdateServiceArguments` (CA 1.30:pkg/snap/services.go:L39-107): a line's key
    /// is what precedes the first `=` (else the first space,
    /// CA 1.30:pkg/util/files.go:L40-52); a line whose key is updated becomes
    /// `key=value` in place, a deleted one goes, new keys are appended (in the
    /// document's order here; Go's map order upstream). Whether anything changed.
    fn update_service_arguments(&self, file: &str, updates: &[(String, Option<String>)]) -> bool {
        if updates.is_empty() {
            return false;
        }
        let text = fs::read_to_string(self.snap_data(&format!("args/{file}"))).unwrap_or_default();
        let parse = |l: &str| -> (String, String) {
            match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.split('=').next().unwrap_or("").to_string()),
                None => match l.split_once(' ') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (l.to_string(), String::new()),
                },
            }
        };
        let mut changed = false;
        let mut seen: Vec<String> = Vec::new();
        let mut lines = Vec::new();
        for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, old) = parse(l);
            seen.push(key.clone());
            match updates.iter().rev().find(|(k, _)| *k == key) {
                Some((_, Some(new))) => {
                    lines.push(format!("{key}={new}"));
                    changed |= old != *new;
                }
                Some((_, None)) => changed = true,
                None => lines.push(l.to_string()),
            }
        }
        for (k, v) in updates {
            if let (Some(v), false) = (v, seen.contains(k)) {
                seen.push(k.clone());
                lines.push(format!("{k}={v}"));
                changed = true;
            }
        }
        self.write_args(file, &(lines.join("\n") + "\n"));
        changed
    }

    fn join_worker(&mut self, conn: &str) -> Result<(), JoinExit> {
        let fail = |code: i32, m: String| Err(JoinExit(code, m));
        let parts: Vec<&str> = conn.split('/').collect();
        // 1.29+: get_valid_connection_parts (CU30:L557-597): 2 or 3 parts, an IP
        // literal and a port (exactly one ':', so no IPv6), token >= 32, check >= 12.
        if self.minor >= 29 {
            let ep: Vec<&str> = parts[0].split(':').collect();
            let valid = (2..=3).contains(&parts.len())
                && ep.len() == 2
                && ep[0].parse::<std::net::IpAddr>().is_ok()
                && ep[1].parse::<u16>().is_ok_and(|p| p > 0)
                && parts[1].len() >= 32
                && parts.get(2).is_none_or(|c| c.len() >= 12);
            if !valid {
                return fail(1, format!("Invalid connection string {}", redact_connection(conn)));
            }
        }
        if parts.len() < 2 {
            return fail(1, "Invalid connection string".into());
        }
        // 1.28+ rsplit(":", 1) (J30:L654, 8ca2d59c); 1.24-1.27 split(":") (J27:L743, J24:L739).
        let Some((ip, port)) = (if self.minor >= 28 { parts[0].rsplit_once(':') } else { parts[0].split_once(':') })
        else {
            return fail(1, "Invalid connection string".into());
        };
        let token = parts[1].to_string();
        let fingerprint = parts.get(2).map(|s| s.to_string());
        // join_dqlite only on an HA node (J30:L1007-1010); the etcd path is not modelled.
        if !self.lock("ha-cluster") {
            return fail(1, "mk8s-node-model: the non-HA (etcd) join is not modelled".into());
        }
        // mark_join_in_progress (J27:L942-949, J30:L916-922); absent in 1.24.
        if self.minor >= 27 {
            let _ = fs::write(self.snap_data("var/lock/join-in-progress"), "");
        }
        let agent: SocketAddr = match format!("{ip}:{port}").parse() {
            Ok(a) => a,
            Err(e) => return fail(1, format!("Invalid connection string: {e}")),
        };
        let node_ip: std::net::IpAddr = self.s("nodeIP").parse().map_err(|_| JoinExit(1, "bad nodeIP".into()))?;
        let hostname = self.s("hostname").to_lowercase();
        // The request (J30:L155-170; J27:L153-159 and J24:L153-161 without the two
        // can_handle fields); `port` is the local agent's --bind port, a string
        // (CU30:L205-222; default "25000": no args/cluster-agent in the model).
        let mut req = json!({"token": token, "hostname": hostname, "port": "25000", "worker": "as-worker"});
        if self.minor >= 28 {
            req["can_handle_x509_auth"] = json!(true);
            req["can_handle_custom_etcd"] = json!(true);
        }
        // The fingerprint: >= 12 characters, a prefix of sha256(DER of the peer's
        // leaf), checked after the handshake and before the request is sent; no CA
        // or name verification (J30:L84-100; J24:L72-108). Exit 4 otherwise.
        if let Some(f) = &fingerprint {
            if f.len() < 12 {
                return fail(4, "Joining cluster failed. Fingerprint too short.".into());
            }
        }
        let fp = fingerprint.clone();
        let r = crate::tls::https_post_checked(
            Some(node_ip),
            agent,
            "/cluster/api/v2.0/join",
            &req.to_string(),
            move |der| fp.as_ref().is_none_or(|f| hex::encode(sha2::Sha256::digest(der)).starts_with(f.as_str())),
        );
        let r = match r {
            Ok(Some(r)) => r,
            Ok(None) => {
                return fail(
                    4,
                    format!("Joining cluster failed. Could not verify the identity of {ip}. Use '--skip-verify' to skip server certificate check."),
                )
            }
            Err(e) => return fail(1, format!("Connection failed. {e}")),
        };
        if r.status != 200 {
            // J30:L104-107, L118-128: "Connection failed. <error> (<status>)." exit 6.
            let err = serde_json::from_str::<Value>(&r.body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(r.body.clone());
            return fail(6, format!("Connection failed. {err} ({}).", r.status));
        }
        let info: Value = serde_json::from_str(&r.body).map_err(|e| JoinExit(1, format!("bad answer: {e}")))?;
        let hostname_override = info["hostname_override"].as_str().unwrap_or("").to_string();
        // cluster_cidr (1.27+, J30:L676-687; J27:L765-776): update kube-proxy's and restart.
        if self.minor >= 27 {
            if let Some(cidr) = info["cluster_cidr"].as_str() {
                if self.args("kube-proxy").get("--cluster-cidr").map(String::as_str) != Some(cidr) {
                    self.set_arg("kube-proxy", "--cluster-cidr", Some(cidr));
                    self.restart_service("kubelite");
                }
            }
        }
        // join_dqlite_worker_node (J30:L750-784; J27:L825-853; J24:L824-852).
        if !info["ca_key"].is_null() {
            return fail(1, "Make sure the cluster you connect to supports joining worker nodes.".into());
        }
        let ca = info["ca"].as_str().unwrap_or("").to_string();
        // store_remote_ca (J30:L405-413)
        fs::write(self.snap_data("certs/ca.remote.crt"), &ca).map_err(|e| JoinExit(1, e.to_string()))?;
        // update_apiserver (1.28+, J30:L768, L391-402)
        if self.minor >= 28 {
            if let Some(mode) = info["api_authz_mode"].as_str() {
                self.set_arg("kube-apiserver", "--authorization-mode", Some(mode));
            }
            if let Some(port) = info["apiport"].as_str() {
                self.set_arg("kube-apiserver", "--secure-port", Some(port));
            }
            self.restart_service("kubelite");
        }
        // store_base_kubelet_args: OVERWRITES args/kubelet (J30:L445-454; J24:L539-548).
        let kubelet_args = info["kubelet_args"].as_str().unwrap_or("").to_string();
        self.write_args("kubelet", &kubelet_args);
        // update_kubelet_node_ip: only if the copied args have --node-ip (J30:L457-465).
        if kubelet_args.lines().any(|l| l.starts_with("--node-ip")) {
            self.set_arg("kubelet", "--node-ip", Some(&hostname_override));
        }
        // update_kubelet_hostname_override: removed (J30:L468-475).
        self.set_arg("kubelet", "--hostname-override", None);
        // update_cert_auth_kubeproxy (J30:L331-343: proxy.crt; J27:L413-433 and
        // J24:L411-435: kube-proxy.crt): CSR /CN=system:kube-proxy, no SANs.
        let proxy_name = if self.minor >= 28 { "proxy" } else { "kube-proxy" };
        let (proxy_crt, proxy_key) =
            self.client_cert(agent, &format!("{token}-proxy"), proxy_name, "system:kube-proxy", &[], &[])?;
        self.set_arg("kube-proxy", "--master", None);
        if self.minor >= 27 {
            // J27:L435: removed.
            self.set_arg("kube-proxy", "--hostname-override", None);
        } else {
            // G9: 1.24 (J24:L433-435), 1.25 and 1.26 (J25/J26:L415-439) set the
            // joining IP as kube-proxy's node name.
            self.set_arg("kube-proxy", "--hostname-override", Some(&hostname_override));
        }
        // update_cert_auth_kubelet (J30:L352-369): CN=system:node:HOST, O=system:nodes;
        // SANs DNS:HOST and IP:<get_ips> on 1.28+ (generate_csr_with_sans,
        // 1.30:US:L1075-1105); none on 1.24-1.27 (J27:L244-308).
        let node_ip_s = node_ip.to_string();
        let sans: Vec<&str> = if self.minor >= 28 { vec![hostname.as_str(), node_ip_s.as_str()] } else { vec![] };
        let (kubelet_crt, kubelet_key) = self.client_cert(
            agent,
            &format!("{token}-kubelet"),
            "kubelet",
            &format!("system:node:{hostname}"),
            &["system:nodes"],
            &sans,
        )?;
        self.set_arg("kubelet", "--client-ca-file", Some("${SNAP_DATA}/certs/ca.remote.crt"));
        self.set_arg(
            "kubelet",
            "--node-labels",
            Some("microk8s.io/cluster=true,node.kubernetes.io/microk8s-worker=microk8s-worker"),
        );
        // Kubeconfigs to the local proxy, 127.0.0.1:<apiserver port> (16443 real):
        // 1.28+ create_worker_kubeconfigs, data embedded, CA ca.remote.crt
        // (J30:L774-778; 1.30:US:L620-640); 1.24-1.27 create_x509_kubeconfig, CA data
        // embedded, certificate and key by path (J27:L367-395;
        // 1.27:microk8s-resources/client-x509.config.template).
        let port = self.n("apiserverPort");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        for (file, user, crt, key) in [
            ("kubelet.config", "kubelet", &kubelet_crt, &kubelet_key),
            ("proxy.config", "kubeproxy", &proxy_crt, &proxy_key),
        ] {
            let user_part = if self.minor >= 28 {
                let c = fs::read_to_string(self.snap_data(crt)).unwrap_or_default();
                let k = fs::read_to_string(self.snap_data(key)).unwrap_or_default();
                format!("    client-certificate-data: {}\n    client-key-data: {}\n", b64(&c), b64(&k))
            } else {
                format!(
                    "    client-certificate: /var/snap/microk8s/current/{crt}\n    client-key: /var/snap/microk8s/current/{key}\n"
                )
            };
            let text = format!("apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://127.0.0.1:{port}\n  name: microk8s-cluster\ncontexts:\n- context:\n    cluster: microk8s-cluster\n    user: {user}\n  name: microk8s\ncurrent-context: microk8s\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n{user_part}", b64(&ca));
            self.write_secret(&format!("credentials/{file}"), &text);
        }
        // store_callback_token (J30:L565-574)
        self.write_secret("credentials/callback-token.txt", info["callback_token"].as_str().unwrap_or(""));
        let apiport = info["apiport"].as_str().unwrap_or("16443").to_string();
        let provider = provider_yaml;
        let lb = if self.minor >= 25 {
            // update_apiserver_proxy (J30:L695-716): no-apiserver-proxy removed, the
            // ONE server joined through, restart.
            let _ = fs::remove_file(self.snap_data("var/lock/no-apiserver-proxy"));
            self.write_args("traefik/provider.yaml", &provider(&[format!("{ip}:{apiport}")]));
            self.restart_service("apiserver-proxy");
            "apiserver-proxy"
        } else {
            // update_traefik (J24:L767-794): no-traefik removed, the server joined
            // through plus the other control planes, restart.
            let _ = fs::remove_file(self.snap_data("var/lock/no-traefik"));
            let mut servers = vec![format!("{ip}:{apiport}")];
            for cp in info["control_plane_nodes"].as_array().into_iter().flatten().filter_map(|v| v.as_str()) {
                if cp != ip {
                    servers.push(format!("{cp}:{apiport}"));
                }
            }
            self.write_args("traefik/provider.yaml", &provider(&servers));
            self.restart_service("traefik");
            "traefik"
        };
        // mark_worker_node (J30:L416-428; J24:L510-522): the locks, then restarts.
        for l in ["clustered.lock", "no-k8s-dqlite"] {
            let _ = fs::write(self.snap_data(&format!("var/lock/{l}")), "");
        }
        for d in ["kubelite", "etcd", "apiserver-kicker", lb, "k8s-dqlite"] {
            self.restart_service(d);
        }
        // mark_no_cert_reissue (CU30:L386-394)
        let _ = fs::write(self.snap_data("var/lock/no-cert-reissue"), "");
        let _ = fs::remove_file(self.snap_data("var/lock/join-in-progress"));
        self.event(&format!("joined as a worker through {ip}"));
        Ok(())
    }

    /// `get_client_cert` (J30:L224-266): a key and CSR, `POST /cluster/api/v1.0/sign-cert`
    /// to the agent joined through with `verify=False`, the certificate written to
    /// `certs/NAME.crt`. Returns the paths relative to `$SNAP_DATA`.
    fn client_cert(
        &self,
        agent: SocketAddr,
        token: &str,
        name: &str,
        cn: &str,
        orgs: &[&str],
        sans: &[&str],
    ) -> Result<(String, String), JoinExit> {
        let (csr, key) = crate::pki::csr(cn, orgs, sans);
        let (crt_rel, key_rel) = (format!("certs/{name}.crt"), format!("certs/{name}.key"));
        self.write_secret(&key_rel, &key);
        let body = json!({"token": token, "request": csr}).to_string();
        let r = crate::tls::https_post_unverified(None, agent, "/cluster/api/v1.0/sign-cert", &body)
            .map_err(|e| JoinExit(1, format!("Failed to sign {name} certificate: {e}")))?;
        if r.status != 200 {
            return Err(JoinExit(1, format!("Failed to sign {name} certificate ({}). {}", r.status, r.body)));
        }
        let info: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let pem = info["certificate"].as_str().unwrap_or("");
        fs::write(self.snap_data(&crt_rel), pem).map_err(|e| JoinExit(1, e.to_string()))?;
        Ok((crt_rel, key_rel))
    }
}

/// MicroK8s's own apiserver proxy: a TCP proxy on 127.0.0.1:<apiserver port> to
/// the first server of `args/traefik/provider.yaml` that accepts the connection
/// (apiserver-proxy: round-robin, skipping a server whose dial fails,
/// cluster-agent 1.30:pkg/proxy/userspace.go:L102-195).
fn provider_servers(ctx: &Ctx) -> Vec<String> {
    let text = fs::read_to_string(ctx.snap_data("args/traefik/provider.yaml")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix("address:"))
        .map(|a| a.trim().trim_matches('"').to_string())
        .collect()
}

/// `args/traefik/provider.yaml` as MicroK8s's join and apiserver-proxy write it.
fn provider_yaml(servers: &[String]) -> String {
    let list: String = servers.iter().map(|s| format!("          - address: \"{s}\"\n")).collect();
    format!("tcp:\n  routers:\n    Router-1:\n      rule: \"HostSNI(`*`)\"\n      service: \"kube-apiserver\"\n      tls:\n        passthrough: true\n  services:\n    kube-apiserver:\n      loadBalancer:\n        servers:\n{list}")
}

/// G7, the apiserver-proxy's refresh (1.25+; canonical/microk8s-cluster-agent
/// 1.30:pkg/proxy/apiserver.go L60-92, pkg/proxy/internal/config.go L64-106): every
/// `--refresh-interval` it reads the `kubernetes` Service's endpoints with
/// `--kubeconfig` (the kubelet's credential, through the proxy itself): Endpoints
/// on 1.25-1.33, EndpointSlices with a fallback to Endpoints from 1.34. When the
/// `IP:port` list (the port named https; an IPv6 address unbracketed, as upstream
/// writes it) differs from provider.yaml's, it rewrites provider.yaml and restarts
/// with the new list. A failed read keeps the list.
fn refresh_endpoints(ctx: &Ctx) -> Result<Vec<String>, String> {
    let args = ctx.args("apiserver-proxy");
    let kc = load_kubeconfig(ctx, args.get("--kubeconfig").map(String::as_str).unwrap_or(""))?;
    let endpoints = || -> Result<Vec<String>, String> {
        let r = kc.call("GET", "/api/v1/namespaces/default/endpoints/kubernetes", None)?;
        if r.status != 200 {
            return Err(format!("endpoints: {} {}", r.status, r.body));
        }
        let v: Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for subset in v["subsets"].as_array().into_iter().flatten() {
            let port = subset["ports"].as_array().into_iter().flatten().find(|p| p["name"] == "https");
            let Some(port) = port.and_then(|p| p["port"].as_u64()) else { continue };
            for a in subset["addresses"].as_array().into_iter().flatten() {
                if let Some(ip) = a["ip"].as_str() {
                    out.push(format!("{ip}:{port}"));
                }
            }
        }
        Ok(out)
    };
    if ctx.minor < 34 {
        return endpoints();
    }
    let r = kc.call(
        "GET",
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes",
        None,
    )?;
    if r.status != 200 {
        return endpoints();
    }
    let v: Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for slice in v["items"].as_array().into_iter().flatten() {
        let port = slice["ports"].as_array().into_iter().flatten().find(|p| p["name"] == "https");
        let Some(port) = port.and_then(|p| p["port"].as_u64()) else { continue };
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            for ip in e["addresses"].as_array().into_iter().flatten().filter_map(|a| a.as_str()) {
                out.push(format!("{ip}:{port}"));
            }
        }
    }
    if out.is_empty() {
        return endpoints();
    }
    Ok(out)
}

fn tcp_proxy(ctx: &Arc<Ctx>, refreshes: bool) {
    let parse = |list: &[String]| -> Vec<SocketAddr> { list.iter().filter_map(|a| a.parse().ok()).collect() };
    let servers = Arc::new(Mutex::new(parse(&provider_servers(ctx))));
    if refreshes && ctx.minor >= 25 {
        let (ctx, servers) = (ctx.clone(), servers.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(ctx.n("proxyRefreshMs").max(100)));
            match refresh_endpoints(&ctx) {
                Ok(list) if !list.is_empty() && list != provider_servers(&ctx) => {
                    let _ = fs::write(ctx.snap_data("args/traefik/provider.yaml"), provider_yaml(&list));
                    ctx.event(&format!("apiserver-proxy: endpoints changed, restarting with {list:?}"));
                    *servers.lock().unwrap_or_else(|e| e.into_inner()) = parse(&list);
                }
                Ok(_) => {}
                Err(e) => ctx.event(&format!("apiserver-proxy: cannot refresh the endpoints: {e}")),
            }
        });
    }
    let addr = format!("127.0.0.1:{}", ctx.n("apiserverPort"));
    let end = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match std::net::TcpListener::bind(&addr) {
            Ok(l) => break l,
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                ctx.event(&format!("proxy: cannot listen on {addr}: {e}"));
                return;
            }
        }
    };
    ctx.event(&format!("proxy: {addr} -> {:?}", servers.lock().unwrap_or_else(|e| e.into_inner())));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let servers = servers.lock().unwrap_or_else(|e| e.into_inner()).clone();
            std::thread::spawn(move || {
                let Some(upstream) =
                    servers.iter().find_map(|s| std::net::TcpStream::connect_timeout(s, Duration::from_secs(2)).ok())
                else {
                    return;
                };
                let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else { return };
                let (mut c, mut u) = (client, upstream);
                let t = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut u2);
                    let _ = u2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut u, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
                let _ = t.join();
            });
        }
    });
}

fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the field after the ")" closing the command name; Z = zombie, X = dead
        Ok(s) => {
            s.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()).is_some_and(|c| c != 'Z' && c != 'X')
        }
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------
// The CLI and the daemons.

/// The binary's main: `mk8s-node-model --state DIR (snap|systemctl|snapctl|daemon|model) ARGS...`.
pub fn cli_main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some("--state"), Some(dir)) = (args.first().map(String::as_str), args.get(1)) else {
        eprintln!("usage: mk8s-node-model --state DIR (snap|systemctl|snapctl|daemon|model) ARGS...");
        return 64;
    };
    let mut ctx = Ctx::load(Path::new(dir));
    let (cmd, rest) = (args.get(2).map(String::as_str).unwrap_or(""), &args[3.min(args.len())..]);
    if matches!(cmd, "snap" | "systemctl" | "snapctl") {
        ctx.append("calls.log", &format!("{cmd} {}", rest.join(" ")));
    }
    if cmd == "microk8s" {
        // Never the token in the log: `join IP:PORT/<token>/CHECK`.
        let shown: Vec<String> = rest.iter().map(|a| redact_connection(a)).collect();
        ctx.append("calls.log", &format!("microk8s {}", shown.join(" ")));
    }
    match cmd {
        "microk8s" => ctx.microk8s(rest),
        "snap" => ctx.snap(rest),
        "systemctl" => ctx.systemctl(rest),
        "snapctl" => ctx.snapctl(rest),
        "model" => match rest.first().map(String::as_str) {
            Some("refresh") => {
                ctx.append("calls.log", "snap refresh microk8s");
                ctx.refresh();
                0
            }
            Some("reboot") => {
                ctx.append("calls.log", "reboot");
                ctx.reboot();
                0
            }
            _ => 64,
        },
        "daemon" => {
            let unit = rest.first().cloned().unwrap_or_default();
            daemon(ctx, &unit, rest.iter().any(|a| a == "--restarted"))
        }
        _ => {
            eprintln!("mk8s-node-model: unknown command {cmd:?}");
            64
        }
    }
}

/// What a wrapper decides when its daemon starts.
enum Decision {
    /// exit 0 with this message: the unit ends, "inactive".
    Exit(String),
    /// exit 1: the unit failed.
    Fail(String),
    Idle,
    /// kubelite: control plane on or off, kubelet and kube-proxy always.
    Kubelite {
        control_plane: bool,
    },
    /// 1.20 daemon-apiserver.
    Apiserver,
    Kubelet,
    KubeProxy,
    /// The cluster-agent; from 1.27 it also applies launch configurations.
    ClusterAgent,
    /// MicroK8s's own apiserver proxy (apiserver-proxy 1.25+, the snap's traefik
    /// 1.23-1.24): TCP from the apiserver port on 127.0.0.1 to provider.yaml's servers.
    Proxy,
    /// The real containerd ([`RealPrograms`]).
    Containerd,
}

fn decide(ctx: &Ctx, daemon: &str) -> Decision {
    let lock = |l: &str| ctx.lock(l);
    let r = ctx.row();
    if r.null_daemons.contains(&daemon) {
        // 1.22:WR/run-null-daemon:L8-15
        return if lock("lite.lock") {
            Decision::Exit("Will not run along with kubelite".into())
        } else {
            Decision::Fail("no lite.lock".into())
        };
    }
    match daemon {
        "containerd" if ctx.state["real"].is_object() => Decision::Containerd,
        "kubelite" => {
            // 1.22:WR/run-kubelite-with-args:L16-27; 1.30:WR/run-kubelite-with-args:L11-26:
            // clustered.lock is read here, at start, and written into args/kubelite.
            if !lock("lite.lock") {
                return Decision::Exit("kubelite will not run".into());
            }
            let control_plane = !lock("clustered.lock");
            let p = ctx.snap_data("args/kubelite");
            let text = fs::read_to_string(&p).unwrap_or_default();
            let line = format!("--start-control-plane={control_plane}");
            let mut lines: Vec<String> =
                text.lines().filter(|l| !l.starts_with("--start-control-plane=")).map(str::to_string).collect();
            // refresh_opt_in_local_config: replace the line, or insert it first (1.30:US:L116-128).
            lines.insert(0, line);
            let _ = fs::write(&p, lines.join("\n") + "\n");
            Decision::Kubelite { control_plane }
        }
        // 1.20:WR/run-apiserver-with-args:L12-16
        "apiserver" if lock("clustered.lock") => Decision::Exit("kube-apiserver will not run on a cluster node".into()),
        "apiserver" => Decision::Apiserver,
        // 1.20:WR/run-with-config-args:L12-19
        "controller-manager" | "scheduler" if lock("clustered.lock") => {
            Decision::Exit(format!("kube-{daemon} will not run on a cluster node"))
        }
        "kubelet" => Decision::Kubelet,
        "proxy" => Decision::KubeProxy,
        // 1.20:WR/apiservice-kicker:L12-16; 1.30:WR/apiservice-kicker:L9-13
        "apiserver-kicker" if lock("clustered.lock") => {
            Decision::Exit("api service kicker will not run on a cluster node".into())
        }
        // 1.30:WR/run-k8s-dqlite-with-args:L9-22 (exit_if_service_not_expected_to_start, 1.30:US:L47-54)
        "k8s-dqlite" if lock("no-k8s-dqlite") => Decision::Exit("k8s-dqlite is not expected to start".into()),
        "k8s-dqlite" if !ctx.snap_data("args/k8s-dqlite").exists() => Decision::Exit("no args/k8s-dqlite".into()),
        // 1.20:WR/run-etcd-with-args:L10-16
        "etcd" if lock("no-etcd") || lock("clustered.lock") => Decision::Exit("etcd will not run".into()),
        "flanneld" if lock("no-flanneld") => Decision::Exit("flanneld will not run".into()),
        // 1.24:WR/run-traefik-with-args:L9-20
        "traefik" if lock("no-traefik") || !ctx.snap_data("args/traefik").exists() => {
            Decision::Exit("traefik is not expected to start".into())
        }
        // 1.30:WR/run-cluster-agent-with-args:L16-18: no lock checks, on every node.
        "cluster-agent" => Decision::ClusterAgent,
        // A worker joined by `microk8s join --worker` (1.23-1.24): the snap's traefik
        // proxies 127.0.0.1:16443 to the servers of args/traefik/provider.yaml
        // (1.24:scripts/cluster/join.py:L767-794).
        "traefik" if ctx.snap_data("args/traefik/provider.yaml").exists() => Decision::Proxy,
        "apiserver-proxy" => {
            // 1.30:WR/run-apiserver-proxy-with-args:L7-26: no check of no-apiserver-proxy.
            if !lock("clustered.lock") {
                Decision::Exit("Not a worker node, exiting".into())
            } else if !ctx.snap_data("args/traefik").exists() || !ctx.snap_data("args/apiserver-proxy").exists() {
                Decision::Exit("no args/traefik or args/apiserver-proxy".into())
            } else if !ctx.snap_data("args/traefik/provider.yaml").exists() {
                // cluster-agent pkg/proxy/internal/config.go L34 (F5): it cannot load its config.
                Decision::Fail("apiserver-proxy: open args/traefik/provider.yaml: no such file or directory".into())
            } else {
                // It proxies `:16443` to the provider file's servers (cluster-agent
                // 1.30:pkg/proxy/proxy.go:L13-55; the refresh from the kubernetes
                // Endpoints every 30 s is not modelled).
                Decision::Proxy
            }
        }
        _ => Decision::Idle,
    }
}

fn daemon(ctx: Ctx, unit: &str, restarted: bool) -> i32 {
    // Wait until the starter recorded our pid (so a quick exit can clear it).
    let me = std::process::id();
    let end = Instant::now() + if ctx.systemd() { Duration::ZERO } else { Duration::from_secs(2) };
    while fs::read_to_string(ctx.pid_file(unit)).ok().and_then(|t| t.trim().parse::<u32>().ok()) != Some(me)
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    watchdog(&ctx);
    let ctx = Arc::new(ctx);
    if restarted && !ctx.systemd() {
        // systemd's RestartSec before the new process starts.
        std::thread::sleep(Duration::from_millis(300));
    }
    let ended = |code: i32, msg: &str| {
        ctx.event(&format!("{unit}: {msg}"));
        if fs::read_to_string(ctx.pid_file(unit)).ok().and_then(|t| t.trim().parse::<u32>().ok()) == Some(me) {
            let _ = fs::remove_file(ctx.pid_file(unit));
        }
        code
    };
    let Some(name) = unit.strip_prefix(SNAP_PREFIX).and_then(|u| u.strip_suffix(".service")) else {
        return own_unit(&ctx, unit);
    };
    let decision = decide(&ctx, name);
    match decision {
        Decision::Exit(m) => ended(0, &format!("exited: {m}")),
        Decision::Fail(m) => ended(1, &format!("failed: {m}")),
        Decision::Idle => {
            ctx.event(&format!("{unit}: running"));
            park()
        }
        Decision::Apiserver => {
            ctx.event(&format!("{unit}: running the local control plane"));
            let _cp = control_plane(&ctx);
            park()
        }
        Decision::Kubelet => {
            ctx.event(&format!("{unit}: running kubelet"));
            if ctx.lock("clustered.lock") && ctx.state["real"].is_object() {
                if let Some(child) = real_kubelet(&ctx) {
                    return exits_with(&ctx, unit, child);
                }
            } else {
                kubelet(ctx.clone());
            }
            park()
        }
        Decision::KubeProxy => {
            ctx.event(&format!("{unit}: running kube-proxy"));
            kube_proxy(ctx.clone());
            park()
        }
        Decision::Proxy => {
            ctx.event(&format!("{unit}: proxying the apiserver port"));
            tcp_proxy(&ctx, name == "apiserver-proxy");
            park()
        }
        Decision::ClusterAgent => {
            ctx.event(&format!("{unit}: running"));
            if ctx.minor >= 27 {
                launcher(&ctx);
            }
            park()
        }
        Decision::Containerd => {
            ctx.event(&format!("{unit}: running the real containerd"));
            match real_containerd(&ctx) {
                Some(child) => exits_with(&ctx, unit, child),
                None => park(),
            }
        }
        Decision::Kubelite { control_plane: cp } => {
            ctx.event(&format!("{unit}: running, --start-control-plane={cp}"));
            let _cp = cp.then(|| control_plane(&ctx));
            // The real kubelet runs on a worker; a fresh install's kubelite (its
            // local control plane up) keeps the model's.
            let real = if !cp && ctx.state["real"].is_object() {
                real_kubelet(&ctx)
            } else {
                kubelet(ctx.clone());
                None
            };
            kube_proxy(ctx.clone());
            if let Some(child) = real {
                return exits_with(&ctx, unit, child);
            }
            if !(cp && ctx.row().separate_dqlite) {
                return park();
            }
            // F1b: with its datastore (k8s-dqlite) gone, the control plane fails
            // (controller-manager leader election, `--leader-elect-renew-deadline=30s`
            // in 1.34:DA/kube-controller-manager) and kubelite exits; the unit is
            // restarted and its wrapper reads the locks again.
            let delay = Duration::from_millis(ctx.n("crashDelayMs"));
            let dqlite = snap_unit("k8s-dqlite");
            let mut gone_since: Option<Instant> = None;
            loop {
                std::thread::sleep(Duration::from_millis(100));
                if ctx.running(&dqlite).is_some() {
                    gone_since = None;
                    continue;
                }
                let since = *gone_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= delay {
                    ctx.event(&format!("{unit}: exited with an error: the datastore (k8s-dqlite) is gone; restarting"));
                    if !ctx.systemd() {
                        ctx.spawn_daemon(unit, true);
                    }
                    // Under the node's systemd, Restart=on-failure starts it again.
                    return 1;
                }
            }
        }
    }
}

/// The cluster-agent's launch-configuration handler (canonical/microk8s-cluster-agent
/// 1.30:cmd/cluster-agent.go:L47-95): on every tick (5 s, the minimum; the first
/// after one interval) it applies each `$SNAP_COMMON/etc/launcher/*.yaml`
/// ([`apply_launch_config`]) and renames it `.applied` on success; a failed file
/// (a failed join included) is retried whole on the next tick, forever. The model
/// ticks every `launcherTickMs` and keeps `launcher.json`: {applied: [...],
/// failures: N, lastError}.
fn launcher(ctx: &Ctx) {
    let dir = ctx.root.join(SNAP_COMMON).join("etc/launcher");
    let tick = Duration::from_millis(ctx.n("launcherTickMs"));
    let mut failures = 0u64;
    let mut applied: Vec<String> = Vec::new();
    let mut last_error = Value::Null;
    loop {
        std::thread::sleep(tick);
        let mut files: Vec<PathBuf> =
            fs::read_dir(&dir).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
        files.sort();
        for file in files {
            let result = fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|text| apply_launch_config(ctx, &text, false));
            if let Err(e) = result {
                failures += 1;
                last_error = json!(format!("Failed to apply configuration file {}: {e}", file.display()));
                continue;
            }
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            if fs::rename(&file, file.with_file_name(format!("{name}.applied"))).is_ok() {
                ctx.event(&format!("cluster-agent: Successfully applied {}", file.display()));
                applied.push(name);
            }
        }
        write_status(ctx, "launcher.json", json!({"applied": applied, "failures": failures, "lastError": last_error}));
    }
}

/// `k8sinit.ParseMultiPartConfiguration` then `Launcher.Apply`
/// (CA 1.30:pkg/k8sinit/schema.go:L166-223, apply.go:L18-121), for the fields the
/// model knows: the documents in order, the first failing one ends it ("failed to
/// apply config part N"); within one, addons (not pre-init), the service
/// arguments, then the join, last (not pre-init); the services whose arguments
/// changed restarted once, after all documents (not pre-init).
///
/// - Addons: enabling one fails on a clustered node (`microk8s enable` exits 1
///   there, 1.30:scripts/wrappers/enable.py:L32, `is_cluster_locked`,
///   1.30:scripts/wrappers/common/utils.py:L181-185), and with no local control
///   plane there is nothing to enable it in.
/// - `extraKubeAPIServerArgs`, `extraKubeletArgs`, `extraKubeProxyArgs`:
///   `UpdateServiceArguments` on `args/<file>` (CA 1.30:pkg/snap/services.go:L39-107);
///   a change marks `kubelite` for restart (apply.go:L74-76, L95-101).
/// - `join: {url, worker}`: `$SNAP/microk8s-join.wrapper URL [--worker]`
///   (CA 1.30:pkg/snap/snap.go:L431-440), here the model's `microk8s join`; a
///   non-zero exit fails the document.
fn apply_launch_config(ctx: &Ctx, text: &str, pre_init: bool) -> Result<(), String> {
    use serde::Deserialize as _;
    let mut parts = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = serde_yaml::Value::deserialize(doc).map_err(|e| format!("failed to parse configuration: {e}"))?;
        if !v.is_null() {
            parts.push(v);
        }
    }
    let mut restart: Vec<&str> = Vec::new();
    for (idx, part) in parts.iter().enumerate() {
        apply_part(ctx, part, pre_init, &mut restart).map_err(|e| format!("failed to apply config part {idx}: {e}"))?;
    }
    if !pre_init {
        for svc in restart {
            ctx.restart_service(svc);
        }
    }
    Ok(())
}

fn apply_part(
    ctx: &Ctx,
    part: &serde_yaml::Value,
    pre_init: bool,
    restart: &mut Vec<&'static str>,
) -> Result<(), String> {
    let enables = part.get("addons").and_then(|a| a.as_sequence()).is_some_and(|a| !a.is_empty());
    if !pre_init && enables && (ctx.lock("clustered.lock") || ctx.running(&snap_unit("kubelite")).is_none()) {
        return Err("failed to reconcile addons: This MicroK8s deployment is acting as a node in a cluster.".into());
    }
    for (key, file) in [
        ("extraKubeAPIServerArgs", "kube-apiserver"),
        ("extraKubeletArgs", "kubelet"),
        ("extraKubeProxyArgs", "kube-proxy"),
    ] {
        let Some(map) = part.get(key).and_then(|m| m.as_mapping()) else { continue };
        let mut updates: Vec<(String, Option<String>)> = Vec::new();
        for (k, v) in map {
            let k = k.as_str().ok_or_else(|| format!("{key}: a key is not a string"))?.to_string();
            let v = match v {
                serde_yaml::Value::Null => None,
                serde_yaml::Value::String(s) => Some(s.clone()),
                serde_yaml::Value::Number(n) => Some(n.to_string()),
                serde_yaml::Value::Bool(b) => Some(b.to_string()),
                _ => return Err(format!("{key}: {k} is not a string")),
            };
            updates.push((k, v));
        }
        if ctx.update_service_arguments(file, &updates) && !restart.contains(&"kubelite") {
            restart.push("kubelite");
        }
    }
    if pre_init {
        return Ok(());
    }
    let join = part.get("join");
    let url = join.and_then(|j| j.get("url")).and_then(|u| u.as_str()).unwrap_or("");
    if url.is_empty() {
        return Ok(());
    }
    let worker = join.and_then(|j| j.get("worker")).and_then(|w| w.as_bool()).unwrap_or(false);
    let mut args = vec!["microk8s".to_string(), "join".into(), url.to_string()];
    if worker {
        args.push("--worker".into());
    }
    let shown = format!("{}{}", redact_connection(url), if worker { " --worker" } else { "" });
    ctx.append("calls.log", &format!("cluster-agent: $SNAP/microk8s-join.wrapper {shown}"));
    let out = Command::new(&ctx.bin)
        .arg("--state")
        .arg(&ctx.dir)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("failed to join cluster: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "failed to join cluster: failed to execute microk8s join command: {} ({})",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn park() -> i32 {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A daemon never outlives its node: when the state directory is removed (the
/// test's temp dir), or after 15 minutes, it kills its own process group.
fn watchdog(ctx: &Ctx) {
    if ctx.systemd() {
        // The node's systemd owns the daemon's life (the container ends with it).
        return;
    }
    let dir = ctx.dir.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        while dir.join("model.json").exists() && start.elapsed() < Duration::from_secs(900) {
            std::thread::sleep(Duration::from_millis(500));
        }
        let me = std::process::id();
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{me}")]).status();
        std::process::exit(0);
    });
}

/// Our own systemd units (mk8s-traefik.service, ...): ExecStart= from the unit
/// file under the root, run with `Restart=`/`RestartSec=` as systemd would. Node
/// paths are mapped under the root where they exist there (a configuration file
/// naming other node paths is copied with those mapped); a program that is not
/// under the root (or is an empty placeholder) comes from PATH.
fn own_unit(ctx: &Ctx, unit: &str) -> i32 {
    let text = fs::read_to_string(ctx.own_unit_file(unit)).unwrap_or_default();
    let value = |key: &str| {
        text.lines().rev().find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string())).unwrap_or_default()
    };
    let exec = value("ExecStart=");
    let restart = value("Restart=");
    let restart_sec: f64 = value("RestartSec=").parse().unwrap_or(0.1);
    let mut words = exec.split_whitespace();
    let Some(program) = words.next().map(|p| ctx.map_program(p)) else {
        ctx.event(&format!("{unit}: failed: no ExecStart="));
        return 1;
    };
    let args: Vec<String> = words.map(|w| ctx.map_arg(w)).collect();
    ctx.event(&format!("{unit}: running {program} {}", args.join(" ")));
    loop {
        let log =
            fs::OpenOptions::new().create(true).append(true).open(ctx.dir.join("logs").join(format!("{unit}.out")));
        let mut cmd = Command::new(&program);
        cmd.args(&args).stdin(Stdio::null());
        if let Ok(f) = log {
            cmd.stdout(f.try_clone().map(Stdio::from).unwrap_or(Stdio::null())).stderr(Stdio::from(f));
        }
        let status = cmd.status();
        let ok = matches!(&status, Ok(s) if s.success());
        ctx.event(&format!("{unit}: process exited ({status:?})"));
        let again = restart == "always" || (restart == "on-failure" && !ok);
        if !again {
            return if ok { 0 } else { 1 };
        }
        std::thread::sleep(Duration::from_secs_f64(restart_sec.max(0.1)));
    }
}

impl Ctx {
    /// One word of an ExecStart= line, mapped to this root.
    fn map_arg(&self, word: &str) -> String {
        let (prefix, path) = match word.split_once('=') {
            Some((k, v)) if k.starts_with('-') => (format!("{k}="), v),
            _ => (String::new(), word),
        };
        if !path.starts_with('/') {
            return word.to_string();
        }
        let under = self.root.join(path.trim_start_matches('/'));
        match fs::read_to_string(&under) {
            Ok(text) => {
                // A configuration file: copy it with the node paths it names mapped.
                let mapped = self.map_paths_in(&text);
                let dest = self.dir.join("relocated").join(path.trim_start_matches('/'));
                let _ = fs::create_dir_all(dest.parent().unwrap());
                let _ = fs::write(&dest, mapped);
                format!("{prefix}{}", dest.display())
            }
            Err(_) => format!("{prefix}{}", under.display()),
        }
    }

    /// The program of an ExecStart= line: under the root if it is a real
    /// executable there, else the host's (from PATH).
    fn map_program(&self, path: &str) -> String {
        let under = self.root.join(path.trim_start_matches('/'));
        let usable = fs::metadata(&under).map(|m| m.len() > 0 && m.permissions().mode() & 0o111 != 0);
        if usable.unwrap_or(false) {
            return under.display().to_string();
        }
        let base = Path::new(path).file_name().and_then(|b| b.to_str()).unwrap_or("");
        crate::tools::require(base).display().to_string()
    }

    fn map_paths_in(&self, text: &str) -> String {
        let mut out = String::new();
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String| {
            if word.starts_with('/') && self.root.join(word.trim_start_matches('/')).exists() {
                out.push_str(&self.root.join(word.trim_start_matches('/')).display().to_string());
            } else {
                out.push_str(word);
            }
            word.clear();
        };
        for c in text.chars() {
            if c.is_whitespace() || c == '"' || c == '\'' {
                flush(&mut word, &mut out);
                out.push(c);
            } else {
                word.push(c);
            }
        }
        flush(&mut word, &mut out);
        out
    }
}

/// The local control plane: a real TLS listener with the node's `server.crt`
/// (signed by the node-local CA) on `--secure-port`, bound on 127.0.0.1 and the
/// node address (see the module's deviations). It retries a port that is taken.
fn control_plane(ctx: &Arc<Ctx>) -> Vec<TlsServer> {
    let args = ctx.args("kube-apiserver");
    let port = args.get("--secure-port").cloned().unwrap_or_else(|| "16443".into());
    let cert = fs::read_to_string(args.get("--tls-cert-file").cloned().unwrap_or_default()).unwrap_or_default();
    let key = fs::read_to_string(args.get("--tls-private-key-file").cloned().unwrap_or_default()).unwrap_or_default();
    let Some(leaf) = Leaf::from_pem(&cert, &key) else {
        ctx.event("control plane: no server.crt/server.key");
        return Vec::new();
    };
    let config = server_config(&leaf, true);
    let handler: Handler = Arc::new(|req: &Request| match (req.method.as_str(), req.path.as_str()) {
        (_, "/readyz" | "/livez" | "/healthz") => Response::text(200, "ok"),
        ("GET", "/version") => Response::json(200, r#"{"major":"1","gitVersion":"local-control-plane"}"#),
        ("POST", _) => Response::json(201, "{}"),
        _ => Response::json(200, "{}"),
    });
    let mut servers = Vec::new();
    for ip in ["127.0.0.1".to_string(), ctx.s("nodeIP")] {
        let addr = format!("{ip}:{port}");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            match TlsServer::start(&addr, config.clone(), handler.clone()) {
                Ok(s) => {
                    ctx.event(&format!("control plane: listening on {addr}"));
                    servers.push(s);
                    break;
                }
                Err(e) if Instant::now() < end => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    ctx.event(&format!("control plane: cannot listen on {addr}: {e}"));
                    break;
                }
            }
        }
    }
    servers
}

/// A kubeconfig as a client uses it.
#[derive(Debug, Default)]
struct Kubeconfig {
    server: String,
    ca_pem: String,
    token: Option<String>,
    cert_pem: Option<String>,
    key_pem: Option<String>,
}

fn load_kubeconfig(ctx: &Ctx, path: &str) -> Result<Kubeconfig, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut kc = Kubeconfig::default();
    let b64 = |v: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .unwrap_or_default()
    };
    let file = |v: &str| fs::read_to_string(ctx.node_path(&ctx.expand(v))).unwrap_or_default();
    for line in text.lines() {
        let Some((k, v)) = line.trim().trim_start_matches("- ").split_once(':') else { continue };
        let v = v.trim().trim_matches('"').trim_matches('\'');
        match k.trim() {
            "server" => kc.server = v.to_string(),
            "certificate-authority-data" => kc.ca_pem = b64(v),
            "certificate-authority" => kc.ca_pem = file(v),
            "token" => kc.token = Some(v.to_string()),
            "client-certificate-data" => kc.cert_pem = Some(b64(v)),
            "client-key-data" => kc.key_pem = Some(b64(v)),
            "client-certificate" => kc.cert_pem = Some(file(v)),
            "client-key" => kc.key_pem = Some(file(v)),
            _ => {}
        }
    }
    if kc.server.is_empty() {
        return Err(format!("{path}: no server"));
    }
    Ok(kc)
}

impl Kubeconfig {
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<crate::tls::Fetched, String> {
        let hostport = self.server.trim_start_matches("https://").trim_end_matches('/');
        let addr: SocketAddr = hostport.parse().map_err(|e| format!("server {}: {e}", self.server))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut self.ca_pem.as_bytes()).flatten() {
            let _ = roots.add(c);
        }
        let client = match (&self.cert_pem, &self.key_pem) {
            (Some(c), Some(k)) => Leaf::from_pem(c, k).map(|l| (l.rustls_chain(), l.rustls_key())),
            _ => None,
        };
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        https_call(addr, name, Trust::Roots(roots), method, path, body, self.token.as_deref(), client)
            .map_err(|e| format!("{method} {}{path}: {e}", self.server))
    }
}

fn write_status(ctx: &Ctx, file: &str, v: Value) {
    let tmp = ctx.dir.join(format!(".{file}.tmp"));
    if fs::write(&tmp, v.to_string()).is_ok() {
        let _ = fs::rename(tmp, ctx.dir.join(file));
    }
}

/// The kubelet: reads `args/kubelet` at start; registers its Node through the
/// kubeconfig's server (the node-local load balancer, or the local control plane
/// at install time) and heartbeats `Ready` with `lastHeartbeatTime`; serves its
/// own TLS endpoint with `cert-dir/kubelet.crt` if present, else a self-signed
/// certificate it writes there (kubernetes cmd/kubelet/app/server.go
/// `InitializeTLS`: `kubelet.crt`/`kubelet.key` in `--cert-dir`, generated only
/// when they cannot be read).
fn kubelet(ctx: Arc<Ctx>) {
    let args = ctx.args("kubelet");
    let name = args.get("--hostname-override").cloned().unwrap_or_else(|| ctx.s("hostname").to_lowercase());
    let node_ip = args.get("--node-ip").cloned().unwrap_or_else(|| ctx.s("nodeIP"));
    let port = ctx.n("kubeletPort");
    // Serving endpoint.
    let cert_dir = PathBuf::from(args.get("--cert-dir").cloned().unwrap_or_default());
    let (crt, key) = (cert_dir.join("kubelet.crt"), cert_dir.join("kubelet.key"));
    let leaf = match (fs::read_to_string(&crt), fs::read_to_string(&key)) {
        (Ok(c), Ok(k)) => Leaf::from_pem(&c, &k),
        _ => None,
    };
    let leaf = leaf.unwrap_or_else(|| {
        let ca = Ca::new(&format!("{name}-ca@{}", unix_ms() / 1000));
        let l = ca.serving(&format!("{name}@{}", unix_ms() / 1000), &[], &[&name]);
        // Recorded first: whoever sees the file can tell who wrote it.
        ctx.event("kubelet: generated a self-signed serving certificate");
        let _ = fs::write(&crt, &l.cert_pem);
        let _ = fs::write(&key, &l.key_pem);
        l
    });
    let handler: Handler = Arc::new(|req: &Request| {
        if req.method == "GET" && req.path.starts_with("/containerLogs/") {
            Response::text(200, LOG_BODY)
        } else if req.path == "/healthz" {
            Response::text(200, "ok")
        } else {
            Response::text(404, "404 page not found")
        }
    });
    let ctx2 = ctx.clone();
    let config = server_config(&leaf, false);
    let addr = format!("{node_ip}:{port}");
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(10);
        let server = loop {
            match TlsServer::start(&addr, config.clone(), handler.clone()) {
                Ok(s) => break Some(s),
                Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => {
                    ctx2.event(&format!("kubelet: cannot listen on {addr}: {e}"));
                    break None;
                }
            }
        };
        // Keep serving for the life of the process.
        let _server = server;
        park();
    });
    // Registration and heartbeats.
    let labels: serde_json::Map<String, Value> = args
        .get("--node-labels")
        .map(|l| {
            l.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), Value::from(v))).collect()
        })
        .unwrap_or_default();
    let taints: Vec<Value> = args
        .get("--register-with-taints")
        .map(|t| {
            t.split(',')
                .filter_map(|t| {
                    let (kv, effect) = t.split_once(':')?;
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some(json!({"key": k, "value": v, "effect": effect}))
                })
                .collect()
        })
        .unwrap_or_default();
    let kubeconfig = args.get("--kubeconfig").cloned().unwrap_or_default();
    let heartbeat = Duration::from_millis(ctx.n("heartbeatMs").max(100));
    std::thread::spawn(move || {
        let mut labels = labels;
        labels.insert("kubernetes.io/hostname".into(), Value::from(name.clone()));
        let addresses = json!([{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": name}]);
        let endpoints = json!({"kubeletEndpoint": {"Port": port}});
        let mut registered = false;
        let mut kc: Option<Kubeconfig> = None;
        loop {
            if kc.is_none() {
                match load_kubeconfig(&ctx, &kubeconfig) {
                    Ok(k) => kc = Some(k),
                    Err(e) => write_status(&ctx, "kubelet.json", json!({"ok": false, "detail": e})),
                }
            }
            if let Some(k) = &kc {
                let now = rfc3339(SystemTime::now());
                let ready = json!([{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}]);
                let result = if registered {
                    let body =
                        json!({"status": {"conditions": ready, "addresses": addresses, "daemonEndpoints": endpoints}});
                    k.call("PATCH", &format!("/api/v1/nodes/{name}/status"), Some(&body.to_string()))
                } else {
                    let body = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}, "status": {"conditions": ready, "addresses": addresses, "daemonEndpoints": endpoints}});
                    k.call("POST", "/api/v1/nodes", Some(&body.to_string()))
                };
                let (ok, detail) = match result {
                    Ok(r) if (200..300).contains(&r.status) || (!registered && r.status == 409) => {
                        if !registered {
                            registered = true;
                            ctx.event(&format!("kubelet: registered node {name} with {}", k.server));
                            // 409: it exists; heartbeat it at once.
                            if r.status == 409 {
                                continue;
                            }
                        }
                        (true, format!("{} {}", r.status, k.server))
                    }
                    Ok(r) => (false, format!("{} from {}: {}", r.status, k.server, r.body)),
                    Err(e) => (false, e),
                };
                write_status(&ctx, "kubelet.json", json!({"ok": ok, "server": k.server, "detail": detail, "at": now}));
            }
            std::thread::sleep(heartbeat);
        }
    });
}

/// A real program, in the daemon's process group (stopping the unit kills it),
/// its output in `logs/NAME.out`.
fn spawn_real(ctx: &Ctx, name: &str, cmd: &mut Command) -> Option<std::process::Child> {
    let _ = fs::create_dir_all(ctx.dir.join("logs"));
    let out = fs::OpenOptions::new().create(true).append(true).open(ctx.dir.join("logs").join(format!("{name}.out")));
    let out = match out {
        Ok(f) => f,
        Err(e) => {
            ctx.event(&format!("{name}: cannot open its log: {e}"));
            return None;
        }
    };
    let err = out.try_clone().ok()?;
    match cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn() {
        Ok(c) => Some(c),
        Err(e) => {
            ctx.event(&format!("{name}: cannot start: {e}"));
            None
        }
    }
}

/// A unit whose real program exited: the unit fails and, as the snap's daemons
/// (`restart-condition: always`), is started again; a kubelet that found
/// containerd not ready yet exits, and kubelite restarts it so.
fn exits_with(ctx: &Arc<Ctx>, unit: &str, mut child: std::process::Child) -> i32 {
    let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
    ctx.event(&format!("{unit}: its program exited ({status}); restarting"));
    if !ctx.systemd() {
        ctx.spawn_daemon(unit, true);
    }
    1
}

/// The snap's containerd, as [`RealPrograms`] describes: its configuration, the
/// CNI configuration, then the sandbox image imported (`ctr images import`).
fn real_containerd(ctx: &Arc<Ctx>) -> Option<std::process::Child> {
    let real = &ctx.state["real"];
    let sc = ctx.root.join(SNAP_COMMON);
    let sock = sc.join("run/containerd.sock");
    let _ = fs::create_dir_all(sc.join("run"));
    let cni = ctx.snap_data("args/cni-network");
    let _ = fs::create_dir_all(&cni);
    let _ = fs::create_dir_all(ctx.snap_data("opt/cni/bin"));
    let conflist = json!({"cniVersion": "1.0.0", "name": "mk8s-test", "plugins": [
        {"type": "bridge", "bridge": real["cniBridge"], "isGateway": false, "ipMasq": false,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": real["podSubnet"]}]],
                  "dataDir": sc.join("var/lib/cni/networks").display().to_string()}},
        {"type": "loopback"}]});
    let _ = fs::write(cni.join("10-mk8s-test.conflist"), conflist.to_string());
    let config = format!(
        "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n[grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{pause}\"\n  stream_server_address = \"{ip}\"\n  stream_server_port = \"0\"\n  restrict_oom_score_adj = true\n  netns_mounts_under_state_dir = true\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n    snapshotter = \"overlayfs\"\n    default_runtime_name = \"runc\"\n    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n      runtime_type = \"io.containerd.runc.v2\"\n      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n        SystemdCgroup = false\n        Root = \"{state}/runc\"\n  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n    bin_dir = \"/usr/lib/cni\"\n    conf_dir = \"{cni}\"\n    max_conf_num = 1\n",
        root = sc.join("var/lib/containerd").display(),
        state = sc.join("run/containerd").display(),
        sock = sock.display(),
        pause = real["pauseRef"].as_str().unwrap_or(""),
        ip = ctx.s("nodeIP"),
        cni = cni.display(),
    );
    let path = ctx.snap_data("args/containerd.toml");
    let _ = fs::write(&path, config);
    let child = spawn_real(ctx, "containerd", Command::new("containerd").arg("--config").arg(&path))?;
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let o = Command::new("ctr")
            .arg("-a")
            .arg(&sock)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(real["pauseTar"].as_str().unwrap_or(""))
            .stdin(Stdio::null())
            .output();
        match o {
            Ok(o) if o.status.success() => {
                ctx.event("containerd: the sandbox image is imported");
                break;
            }
            Ok(o) if Instant::now() > end => {
                ctx.event(&format!(
                    "containerd: cannot import the sandbox image: {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
                break;
            }
            Err(e) => {
                ctx.event(&format!("containerd: no ctr: {e}"));
                break;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    Some(child)
}

/// The kubelet's command line as kubelite passes `args/kubelet` (the wrapper's
/// shell word splitting and quote removal, `${SNAP_DATA}` and `${SNAP_COMMON}`
/// expanded), with [`RealPrograms`]'s changes.
pub fn real_kubelet_args(ctx_text: &str, expand: impl Fn(&str) -> String, real: &Value, port: u64) -> Vec<String> {
    const OURS: &[&str] =
        &["--port", "--cgroup-root", "--cgroup-driver", "--healthz-port", "--make-iptables-util-chains"];
    let mut args: Vec<String> = ctx_text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("--"))
        .filter(|l| crate::microk8s_args::dropped_by_kube_1_34(l).is_none())
        .filter(|l| !OURS.contains(&crate::microk8s_args::flag_name(l)))
        .map(|l| match crate::microk8s_args::split_arg(l) {
            (k, Some(v)) => format!("{k}={}", expand(&v)),
            (k, None) => k,
        })
        .collect();
    args.push(format!("--cgroup-root=/{}", real["cgroupRoot"].as_str().unwrap_or("mk8s-test")));
    args.push("--cgroup-driver=cgroupfs".into());
    args.push(format!("--port={port}"));
    args.push("--healthz-port=0".into());
    args.push("--make-iptables-util-chains=false".into());
    args
}

fn real_kubelet(ctx: &Arc<Ctx>) -> Option<std::process::Child> {
    let real = &ctx.state["real"];
    let text = fs::read_to_string(ctx.snap_data("args/kubelet")).unwrap_or_default();
    let args = real_kubelet_args(&text, |v| ctx.expand(v), real, ctx.n("kubeletPort"));
    ctx.event(&format!("kubelet: the real kubelet {}", args.join(" ")));
    spawn_real(ctx, "kubelet", Command::new(real["kubelet"].as_str().unwrap_or("kubelet")).args(&args))
}

/// kube-proxy: loads `--kubeconfig` from `args/kube-proxy` and reads its Node
/// (`GET /api/v1/nodes/NAME`) through that server until it succeeds.
fn kube_proxy(ctx: Arc<Ctx>) {
    std::thread::spawn(move || {
        let args = ctx.args("kube-proxy");
        let name = args.get("--hostname-override").cloned().unwrap_or_else(|| ctx.s("hostname").to_lowercase());
        let path = args.get("--kubeconfig").cloned().unwrap_or_default();
        loop {
            let r = load_kubeconfig(&ctx, &path).and_then(|k| {
                k.call("GET", &format!("/api/v1/nodes/{name}"), None).map(|r| (k.server.clone(), r.status))
            });
            let done = matches!(r, Ok((_, 200)));
            let v = match r {
                Ok((server, status)) => json!({"ok": status == 200, "status": status, "server": server}),
                Err(e) => json!({"ok": false, "detail": e}),
            };
            write_status(&ctx, "kube-proxy.json", v);
            if done {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_from_channels() {
        assert_eq!(Range::from_channel("1.20/stable", false), Range::R119_120);
        assert_eq!(Range::from_channel("1.22/stable", false), Range::R121_122);
        assert_eq!(Range::from_channel("1.24/stable", false), Range::R123_124);
        assert_eq!(Range::from_channel("1.27/stable", true), Range::R125_127);
        assert_eq!(Range::from_channel("1.30/stable", false), Range::R128Fresh);
        assert_eq!(Range::from_channel("1.34/stable", true), Range::R128Upgraded);
        assert_eq!(Range::from_channel("latest/edge", false), Range::R128Fresh);
    }

    #[test]
    fn rfc3339_round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 3723);
        assert_eq!(rfc3339(t), "2026-01-01T01:02:03Z");
        assert_eq!(parse_rfc3339("2026-01-01T01:02:03Z"), Some(t));
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2024-02-29T23:59:59Z").map(rfc3339).as_deref(), Some("2024-02-29T23:59:59Z"));
    }
}
