//! The MicroK8s releases the model knows, and how each behaves: the model's own
//! table, independent of the generator's.

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
}
