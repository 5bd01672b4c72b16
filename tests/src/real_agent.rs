//! The real MicroK8s cluster-agent (canonical/microk8s-cluster-agent) beside a real
//! kube-apiserver of [`crate::upstream::ControlPlane`]: the program a control-plane
//! node runs as `microk8s.daemon-cluster-agent`, built by `scripts/build-upstream`
//! from the source vendored per branch in `tests/upstream/cluster-agent/<branch>/`
//! (the Go module proxy refuses the module; see the README there).
//!
//! Started as the snap's wrapper starts it (`MK 1.30:microk8s-resources/wrappers/run-cluster-agent-with-args`:
//! `${SNAP}/bin/cluster-agent cluster-agent` with the lines of `args/cluster-agent`),
//! with `SNAP`, `SNAP_DATA`, `SNAP_COMMON` and the variables the snap's environment
//! sets (`MK 1.34:snap/snapcraft.yaml:L15-19`: `REAL_PATH`, `SNAPCRAFT_ARCH_TRIPLET`),
//! in a mount namespace where the node's `/etc/hosts` (the one the apiserver
//! resolves with, which the bundle's `hosts-entries.sh` edits) is `/etc/hosts`: the
//! agent's hostname check resolves the joining node there.
//!
//! The node's `$SNAP_DATA` is the apiserver's ([`crate::upstream`] lays out `certs/`
//! and `credentials/`; `args/kube-apiserver` is what the apiserver runs with, so the
//! agent answers its real `--secure-port` and `--authorization-mode`). Added here,
//! as the snap has them on a control-plane node:
//! - `args/cluster-agent`: the branch's `default-args/cluster-agent`, with `--bind`
//!   on the node's own address instead of `0.0.0.0` (three agents share a machine;
//!   the port, which a join must match, stays 25000);
//! - `args/kubelet` (the branch's default args and the dns addon's two lines, what a
//!   control plane sends a joining worker as `kubelet_args`) and `args/kube-proxy`
//!   (the branch's, for `cluster_cidr`);
//! - `credentials/client.config`: the admin kubeconfig (the agent lists the
//!   control-plane Nodes with it, `CA 1.30:pkg/snap/util/kubectl.go:L28-46`);
//! - `var/kubernetes/backend/cluster.yaml`: the dqlite members, one per control-plane
//!   node (`CA 1.30:pkg/snap/util/dqlite.go:L14-40`; there is no dqlite here, see
//!   [`crate::upstream`]).
//!
//! `$SNAP` holds what the agent runs from the snap: on 1.28+ `sign_certificate` of
//! the snap's own `actions/common/utils.sh` and `openssl.wrapper` (vendored from
//! canonical/microk8s, `CA 1.30:pkg/snap/snap.go:L352-363`), with `bin/`, `usr/`,
//! `sbin/` and `etc/ssl` the machine's (Debian's coreutils, grep, sed, openssl in
//! place of the snap's copies of them). 1.24-1.27 run `openssl` from `PATH`
//! (`CA 1.26:pkg/snap/snap.go` `SignCertificate`). `snapctl` (service restarts, only
//! on control-plane joins and launch configurations) is not provided: no worker
//! join calls it.
//!
//! The control-plane Nodes a worker join returns (`control_plane_nodes`) are the
//! Nodes labelled `node.kubernetes.io/microk8s-controlplane=microk8s-controlplane`
//! with their InternalIP: [`register_control_plane_nodes`] creates them as the
//! control planes' kubelets would (there is no kubelet on these control planes).

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::proc::Guard;
use crate::upstream::ControlPlane;

/// The branches whose agent is vendored and built: a channel `1.X` runs the agent
/// of branch `1.X`, when there is one.
pub const BRANCHES: [&str; 5] = ["1.24", "1.26", "1.27", "1.30", "1.34"];

/// The port of `--bind` in every branch's `default-args/cluster-agent`.
pub const PORT: u16 = 25000;

/// The vendored branch for `channel` ("1.30/stable"), if any.
pub fn branch_for(channel: &str) -> Option<&'static str> {
    let track = channel.split('/').next().unwrap_or(channel);
    BRANCHES.into_iter().find(|b| *b == track)
}

/// The built agent of `branch` and its `$SNAP` files (1.28+), from the bin
/// directory's `CLUSTER-AGENTS` (written by `scripts/build-upstream`). Panics with
/// what to run when it is missing: a test that needs the real agent never skips.
pub fn binary(branch: &str) -> (PathBuf, Option<PathBuf>) {
    let list = crate::upstream::bin("CLUSTER-AGENTS");
    let text = fs::read_to_string(&list).unwrap_or_default();
    for line in text.lines() {
        let Some((b, rest)) = line.split_once('=') else { continue };
        let (program, snap) = rest.split_once(' ').unwrap_or((rest, "-"));
        if b == branch && Path::new(program).is_file() {
            return (PathBuf::from(program), (snap != "-").then(|| PathBuf::from(snap)));
        }
    }
    panic!("the cluster-agent of MicroK8s {branch} is not in {list:?}: run scripts/build-upstream")
}

/// One running cluster-agent, on its node's address and port 25000.
pub struct RealClusterAgent {
    pub addr: SocketAddr,
    pub snap_data: PathBuf,
    pub log: PathBuf,
    _guard: Guard,
}

impl RealClusterAgent {
    /// The agent of `branch` on control-plane node `i`, once it accepts connections.
    pub fn start(cp: &ControlPlane, i: usize, branch: &str) -> RealClusterAgent {
        let a = &cp.apiservers[i];
        let ip = a.addr.ip().to_string();
        let node = a.snap_data.parent().expect("cpN").to_path_buf();
        lay_out(cp, i, &ip);
        let (program, snap_files) = binary(branch);
        let snap = node.join("snap");
        make_snap(&snap, snap_files.as_deref());
        let common = node.join("snap_common");
        fs::create_dir_all(&common).expect("snap_common");
        let args = read_args(&a.snap_data.join("args/cluster-agent"), &a.snap_data);
        let log = node.join("cluster-agent.log");
        let out = fs::OpenOptions::new().create(true).append(true).open(&log).expect("agent log");
        let mut cmd = crate::upstream::in_hosts_namespace(&a.hosts, &program);
        cmd.arg("cluster-agent")
            .args(&args)
            .env("SNAP", &snap)
            .env("SNAP_DATA", &a.snap_data)
            .env("SNAP_COMMON", &common)
            .env("REAL_PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SNAPCRAFT_ARCH_TRIPLET", "x86_64-linux-gnu")
            .env("SNAP_LIBRARY_PATH", "")
            .current_dir(&node)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        let guard = Guard::spawn(&mut cmd);
        let addr: SocketAddr = format!("{ip}:{PORT}").parse().expect("agent address");
        let agent = RealClusterAgent { addr, snap_data: a.snap_data.clone(), log, _guard: guard };
        assert!(
            crate::proc::wait_listening(addr, Duration::from_secs(30)),
            "the cluster-agent of {branch} did not listen on {addr}:\n{}",
            agent.log_tail()
        );
        agent
    }

    /// The last lines of the agent's log.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// What `microk8s add-node` prints as the check: hex sha256 of the DER of the
    /// `certs/server.crt` the agent serves.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let pem = fs::read_to_string(self.snap_data.join("certs/server.crt")).expect("server.crt");
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("a PEM certificate");
        hex::encode(sha2::Sha256::digest(&p.contents))
    }

    /// This node's `credentials/<name>`.
    pub fn credentials(&self, name: &str) -> PathBuf {
        self.snap_data.join("credentials").join(name)
    }
}

/// The lines of an args file as the wrapper passes them (`declare -a args="($(cat …))"`:
/// words, quotes removed, `${SNAP_DATA}` expanded).
fn read_args(path: &Path, snap_data: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).expect("args file");
    let text = text.replace("${SNAP_DATA}", &snap_data.to_string_lossy());
    text.split_whitespace().map(|w| w.trim_matches('"').to_string()).collect()
}

/// What a control-plane node's `$SNAP_DATA` has for its agent, beyond what
/// [`crate::upstream`] lays out for its apiserver.
fn lay_out(cp: &ControlPlane, i: usize, ip: &str) {
    let sd = &cp.apiservers[i].snap_data;
    let defaults = crate::microk8s_args::for_minor(cp.options.minor);
    let agent_args = format!(
        "--bind {ip}:{PORT}\n--keyfile \"${{SNAP_DATA}}/certs/server.key\"\n--certfile \"${{SNAP_DATA}}/certs/server.crt\"\n--timeout 240\n"
    );
    fs::write(sd.join("args/cluster-agent"), agent_args).expect("args/cluster-agent");
    let kubelet = crate::microk8s_args::control_plane_kubelet_args(cp.options.minor);
    fs::write(sd.join("args/kubelet"), kubelet).expect("args/kubelet");
    let proxy: String = defaults.kube_proxy.iter().map(|l| format!("{l}\n")).collect();
    fs::write(sd.join("args/kube-proxy"), proxy).expect("args/kube-proxy");
    fs::copy(cp.admin_kubeconfig(i), sd.join("credentials/client.config")).expect("client.config");
    let backend = sd.join("var/kubernetes/backend");
    fs::create_dir_all(&backend).expect("backend");
    let members: String = cp
        .apiservers
        .iter()
        .enumerate()
        .map(|(n, a)| format!("- Address: {}:19001\n  ID: {}\n  Role: 0\n", a.addr.ip(), n + 1))
        .collect();
    fs::write(backend.join("cluster.yaml"), members).expect("cluster.yaml");
}

/// `$SNAP`: the machine's programs where the snap has its own copies, and the
/// snap's scripts the agent runs.
fn make_snap(snap: &Path, files: Option<&Path>) {
    if snap.exists() {
        return;
    }
    fs::create_dir_all(snap.join("etc")).expect("snap/etc");
    for (link, target) in [("bin", "/usr/bin"), ("usr", "/usr"), ("sbin", "/usr/sbin"), ("etc/ssl", "/etc/ssl")] {
        symlink(target, snap.join(link)).expect("snap link");
    }
    if let Some(files) = files {
        for name in ["actions", "openssl.wrapper"] {
            symlink(files.join(name), snap.join(name)).expect("snap file");
        }
    }
}

/// The control-plane nodes' Nodes, as their kubelets register them: the MicroK8s
/// control-plane label and the node's address as InternalIP.
pub fn register_control_plane_nodes(cp: &ControlPlane) {
    for (i, a) in cp.apiservers.iter().enumerate() {
        cp.admin_create(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": format!("cp-{i}"),
                "labels": { "node.kubernetes.io/microk8s-controlplane": "microk8s-controlplane" },
            },
            "status": { "addresses": [{ "type": "InternalIP", "address": a.addr.ip().to_string() }] },
        }));
    }
}
