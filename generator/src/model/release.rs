//! What differs between MicroK8s releases, read from one place.

use mk8s_bootstrap::plan::Flavour;

/// The cluster-agent's port (`--bind 0.0.0.0:25000`, every branch's
/// `microk8s-resources/default-args/cluster-agent:L1`).
pub const CLUSTER_AGENT_PORT: u16 = 25000;

/// The base snap of a MicroK8s track (`base:` in `snap/snapcraft.yaml`):
/// 1.19-1.20 `core` (1.20 L16), 1.21-1.26 `core18` (1.22 L13, 1.26 L13),
/// 1.27-1.33 `core20` (1.27 L13, 1.30 L13), 1.34+ `core22` (1.34 L13, commit
/// 320c493d). `latest` follows the newest track.
pub fn base_snap(version: Option<(u32, u32)>) -> &'static str {
    match version {
        Some((1, m)) if m <= 20 => "core",
        Some((1, m)) if m <= 26 => "core18",
        Some((1, m)) if m <= 33 => "core20",
        _ => "core22",
    }
}

/// systemd unit names of a MicroK8s snap service.
pub fn snap_unit(daemon: &str) -> String {
    format!("snap.microk8s.daemon-{daemon}.service")
}

/// Which services are kept off and which run the worker, per flavour.
/// Sources (canonical/microk8s):
/// - 1.20 `microk8s-resources/wrappers/run-apiserver-with-args` and
///   `run-with-config-args`: apiserver, controller-manager and scheduler exit on
///   `clustered.lock`; stopping `daemon-apiserver` frees :16443 at once.
/// - 1.21+ `microk8s-resources/wrappers/run-kubelite-with-args` (1.22 L22-27, 1.30
///   L17-26) reads `clustered.lock` only when kubelite STARTS: `snap install` starts
///   kubelite before the lock exists, so its apiserver holds `*:16443` until kubelite
///   restarts. On 1.21/1.22 dqlite is embedded in that apiserver (no
///   `daemon-k8s-dqlite` in 1.22 `snap/snapcraft.yaml`), so nothing else frees the
///   port. kubelite is therefore stopped first, right after the locks, and started
///   again (reading the lock: no control plane) once the credentials are in place,
///   as `scripts/wrappers/join.py` `mark_worker_node` restarts it with the locks.
/// - `no-k8s-dqlite` makes `run-k8s-dqlite-with-args` exit (1.23+); the kicker exits
///   on `clustered.lock` (`wrappers/apiservice-kicker`); 1.25+
///   `run-apiserver-proxy-with-args` runs on workers on :16443, the port of our own
///   load balancer (unless it is the balancer: kind `microk8s-proxy`).
pub fn services(flavour: Flavour) -> (Vec<String>, Vec<String>, Vec<String>) {
    let names = |v: &[&str]| v.iter().map(|d| snap_unit(d)).collect::<Vec<_>>();
    match flavour {
        Flavour::Daemons => (
            names(&["apiserver", "apiserver-kicker", "controller-manager", "control-plane-kicker", "scheduler"]),
            names(&["kubelet", "proxy"]),
            vec!["clustered.lock".into()],
        ),
        Flavour::Kubelite => (
            names(&["kubelite", "k8s-dqlite", "apiserver-kicker"]),
            names(&["kubelite"]),
            vec!["clustered.lock".into(), "no-k8s-dqlite".into()],
        ),
        Flavour::KubeliteApiserverProxy => (
            names(&["kubelite", "k8s-dqlite", "apiserver-kicker", "apiserver-proxy"]),
            names(&["kubelite"]),
            vec!["clustered.lock".into(), "no-k8s-dqlite".into()],
        ),
    }
}

/// The apiserver's systemd unit on control-plane nodes of this flavour.
pub fn apiserver_unit(flavour: Flavour) -> String {
    match flavour {
        Flavour::Daemons => snap_unit("apiserver"),
        _ => snap_unit("kubelite"),
    }
}

/// MicroK8s 1.25+'s `daemon-apiserver-proxy` (run-apiserver-proxy-with-args).
pub fn apiserver_proxy_unit() -> String {
    snap_unit("apiserver-proxy")
}
