//! The MicroK8s releases the model knows, and how each behaves: the model's own
//! table, read through its fields. It is an independent oracle: nothing here comes
//! from the generator's table of releases, which the tests hold to this one.

/// Version ranges whose node layout differs for a worker join (the ranges of
/// docs/join-flavours.md, "The node model").
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
    /// 1.28+, control plane upgraded from 1.27 or older. The worker is installed
    /// fresh (as R128Fresh); only the control plane's kube-apiserver args differ
    /// (0071dd1d, 4086f4ac touch default-args only). Sources: as 1.28+ fresh for
    /// the node; the control plane keeps its <=1.27 args/kube-apiserver (git grep
    /// of 1.30 snap/ scripts/ upgrade-scripts/ finds the 1.28 flags only in
    /// default-args).
    R128Upgraded,
}

impl Range {
    pub fn from_channel(channel: &str, upgraded: bool) -> Range {
        match Row::of(channel).range {
            Range::R128Fresh if upgraded => Range::R128Upgraded,
            range => range,
        }
    }
}

/// "1.30/stable" -> 30 (a channel without a version, e.g. "latest/stable", is the newest).
pub fn minor_of(channel: &str) -> u32 {
    channel.split('/').next().and_then(|v| v.split('.').nth(1)).and_then(|m| m.parse().ok()).unwrap_or(99)
}

/// One row of the behaviour table: the MicroK8s releases from `since` to the
/// next row's, and what they do.
#[derive(Debug)]
pub struct Row {
    /// The first minor this row covers ("1.27" -> 27).
    pub since: u32,
    pub range: Range,
    pub versions: &'static str,
    // --- the snap: snapcraft.yaml, the install hook, default-args ---
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
    /// `--node-labels` of default-args/kubelet.
    pub kubelet_node_labels: &'static str,
    /// default-args has `k8s-dqlite` and `traefik/`.
    pub dqlite_and_traefik_args: bool,
    /// A worker's way to the control planes is the apiserver-proxy: default-args
    /// has `apiserver-proxy`, the configure hook restarts it on a refresh, the
    /// join configures it, and it refreshes its servers from the `kubernetes`
    /// endpoints. Else (1.23-1.24) the snap's traefik.
    pub proxy_is_apiserver_proxy: bool,
    /// The apiserver-proxy's refresh reads EndpointSlices first, else Endpoints.
    pub proxy_reads_endpoint_slices: bool,
    /// The install hook copies a launch configuration, which the cluster-agent applies.
    pub launch_config: bool,
    // --- `microk8s join ... --worker` (join.py) ---
    /// `microk8s join` has `--worker`.
    pub join_worker: bool,
    /// The connection string is checked first: an IP literal and a port, token >= 32,
    /// check >= 12 (get_valid_connection_parts).
    pub join_checks_connection: bool,
    /// `IP:PORT` is split at the last ':' (else at the first).
    pub join_rsplits_endpoint: bool,
    /// `var/lock/join-in-progress` while the join runs.
    pub join_marks_in_progress: bool,
    /// The agent answers `cluster_cidr`, which the join writes into kube-proxy's args.
    pub cluster_cidr_in_join: bool,
    /// The join takes the control plane's `--authorization-mode` and `--secure-port`
    /// (update_apiserver).
    pub join_updates_apiserver: bool,
    /// The join says it can handle x509 auth, names kube-proxy's certificate
    /// `proxy.crt` (else `kube-proxy.crt`), gives the kubelet's CSR SANs, and
    /// embeds the certificates in the kubeconfigs (else names their paths).
    pub join_writes_x509: bool,
    /// The join removes kube-proxy's `--hostname-override` (else sets it to the
    /// joining IP).
    pub join_drops_proxy_hostname_override: bool,
    // --- the control plane joined: its cluster-agent and kube-apiserver ---
    /// The agent also accepts the tokens of `persistent-cluster-tokens.txt`.
    pub persistent_tokens: bool,
    /// The agent signs a CSR itself, an X.509 v3 certificate (else with
    /// `openssl x509 -req`, a v1 certificate).
    pub agent_signs_x509_v3: bool,
    /// A control plane installed fresh runs kube-apiserver with
    /// `--kubelet-certificate-authority` and InternalIP first in
    /// `--kubelet-preferred-address-types`; one upgraded from 1.27 or older keeps
    /// its old args ([`Range::R128Upgraded`]).
    pub fresh_apiserver_kubelet_args: bool,
    pub sources: &'static str,
}

const V1_19: Row = Row {
    since: 19,
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
    // 1.20:DA/kubelet:L15, 1.22:DA/kubelet:L15
    kubelet_node_labels: "microk8s.io/cluster=true",
    dqlite_and_traefik_args: false,
    proxy_is_apiserver_proxy: false,
    proxy_reads_endpoint_slices: false,
    launch_config: false,
    // 1.20-1.22 have no --worker (1.22:scripts/cluster/join.py:L1057-1100).
    join_worker: false,
    join_checks_connection: false,
    join_rsplits_endpoint: false,
    join_marks_in_progress: false,
    cluster_cidr_in_join: false,
    join_updates_apiserver: false,
    join_writes_x509: false,
    join_drops_proxy_hostname_override: false,
    // CA 1.24:pkg/snap/snap.go:L221-232 (no persistent file)
    persistent_tokens: false,
    // CA 1.24:pkg/snap/snap.go:L315-330 (openssl x509 -req)
    agent_signs_x509_v3: false,
    fresh_apiserver_kubelet_args: false,
    sources: "1.20:snap/snapcraft.yaml:L21-54; 1.20:snap/hooks/install:L12-96; 1.20:WR/run-apiserver-with-args:L12-16; 1.20:WR/run-with-config-args:L12-19; 1.20:WR/apiservice-kicker:L12-16",
};

const V1_21: Row = Row {
    since: 21,
    range: Range::R121_122,
    versions: "1.21-1.22",
    // 1.22:snap/snapcraft.yaml:L18-58; no k8s-dqlite daemon (1.22:DA/kube-apiserver:L13-14).
    daemons: &["etcd", "flanneld", "containerd", "kubelite", "apiserver-kicker", "cluster-agent"],
    null_daemons: &["apiserver", "control-plane-kicker", "controller-manager", "scheduler", "kubelet", "proxy"],
    // 1.22:snap/hooks/install:L102-107
    install_locks: &["no-etcd", "no-flanneld", "ha-cluster", "lite.lock"],
    sources: "1.22:snap/snapcraft.yaml:L18-58; 1.22:snap/hooks/install:L31-107; 1.22:WR/run-kubelite-with-args:L16-27; 1.22:WR/run-null-daemon:L8-15",
    ..V1_19
};

const V1_23: Row = Row {
    since: 23,
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
    // 1.24:snap/hooks/install:L106-112 (no-traefik new in 1.23; no no-k8s-dqlite)
    install_locks: &["no-etcd", "no-flanneld", "no-traefik", "ha-cluster", "lite.lock"],
    separate_dqlite: true,
    // 1.23:DA/kubelet:L15, 1.30:DA/kubelet:L10
    kubelet_node_labels: "microk8s.io/cluster=true,node.kubernetes.io/microk8s-controlplane=microk8s-controlplane",
    // 1.24:DA/k8s-dqlite; 1.30:DA/traefik/traefik-template.yaml, provider-template.yaml
    dqlite_and_traefik_args: true,
    // 1.24:scripts/cluster/join.py (J24)
    join_worker: true,
    sources: "1.24:snap/snapcraft.yaml:L18-66; 1.24:snap/hooks/install:L35-112; 1.24:WR/run-kubelite-with-args:L16-31; 1.24:WR/run-k8s-dqlite-with-args:L14; 1.24:WR/run-traefik-with-args:L9-20",
    ..V1_21
};

const V1_25: Row = Row {
    since: 25,
    range: Range::R125_127,
    versions: "1.25-1.26",
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
    // 1.30:DA/apiserver-proxy:L1-3; 1.25:configure:L642; 1.26:L648
    proxy_is_apiserver_proxy: true,
    sources: "1.26:snap/snapcraft.yaml:L280-309; 1.26:snap/hooks/install:L18-144; 1.26:WR/run-apiserver-proxy-with-args:L9-28; 1.26:snap/hooks/configure:L163-174,L648",
    ..V1_23
};

const V1_27: Row = Row {
    since: 27,
    versions: "1.27",
    // 1.27:snap/hooks/install:L67-77
    launch_config: true,
    // J27:L942-949
    join_marks_in_progress: true,
    // J27:L765-776
    cluster_cidr_in_join: true,
    // J27:L435
    join_drops_proxy_hostname_override: true,
    // CA 1.30:pkg/snap/snap.go:L240-254
    persistent_tokens: true,
    sources:
        "as 1.25-1.26, and 1.27:snap/hooks/install:L67-77; 1.27:scripts/wrappers/join.py (J27):L435,L765-776,L942-949",
    ..V1_25
};

const V1_28: Row = Row {
    since: 28,
    range: Range::R128Fresh,
    versions: "1.28",
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
    // 1.30:snap/hooks/install:L124-130, installed.lock L151
    install_locks: &["no-etcd", "no-flanneld", "no-apiserver-proxy", "ha-cluster", "lite.lock", "installed.lock"],
    // 1.30:snap/hooks/install:L106 -> US:L601-618 (create_user_certs_and_configs)
    token_credentials: false,
    kubelet_crt: true,
    // J30:L654, 8ca2d59c
    join_rsplits_endpoint: true,
    // J30:L768, L391-402
    join_updates_apiserver: true,
    // J30:L155-170, L331-343, L352-369, L774-778
    join_writes_x509: true,
    // CA 1.27:pkg/snap/snap.go:L352-367 signs with openssl before
    agent_signs_x509_v3: true,
    // 0071dd1d, 4086f4ac: 1.30:DA/kube-apiserver:L30-31
    fresh_apiserver_kubelet_args: true,
    sources: "1.30:snap/snapcraft.yaml:L321-350; 1.30:snap/hooks/install:L28-151; 1.30:US:L601-618,L1127-1151; 1.30:DA/kube-apiserver:L30-31; 1.30:snap/hooks/configure:L168-179,L552",
    ..V1_27
};

const V1_29: Row = Row {
    since: 29,
    versions: "1.29-1.33",
    // CU30:L557-597
    join_checks_connection: true,
    sources: "as 1.28, and 1.30:scripts/wrappers/common/cluster/utils.py (CU30):L557-597",
    ..V1_28
};

const V1_34: Row = Row {
    since: 34,
    versions: "1.34+",
    proxy_reads_endpoint_slices: true,
    sources: "as 1.29-1.33, and the apiserver-proxy's EndpointSlices (see daemons/proxy.rs)",
    ..V1_29
};

/// The behaviour table, oldest first. Its node layout by `range` is the table of
/// docs/join-flavours.md, "The node model".
pub const TABLE: &[Row] = &[V1_19, V1_21, V1_23, V1_25, V1_27, V1_28, V1_29, V1_34];

impl Row {
    /// The row of a channel ("1.30/stable"; "latest/..." is the newest).
    pub fn of(channel: &str) -> &'static Row {
        Row::of_minor(minor_of(channel))
    }

    /// The row of a minor version (1.19 and older: the first row).
    pub fn of_minor(minor: u32) -> &'static Row {
        TABLE.iter().rev().find(|r| r.since <= minor).unwrap_or(&TABLE[0])
    }
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
        assert_eq!(Range::from_channel("1.18/stable", false), Range::R119_120);
    }

    #[test]
    fn rows_are_in_order_and_each_range_has_one_node_layout() {
        assert!(TABLE.windows(2).all(|w| w[0].since < w[1].since));
        for pair in TABLE.windows(2).filter(|w| w[0].range == w[1].range) {
            let layout = |r: &Row| (r.daemons, r.null_daemons, r.install_locks, r.token_credentials, r.kubelet_crt);
            assert_eq!(layout(&pair[0]), layout(&pair[1]), "{} and {}", pair[0].versions, pair[1].versions);
        }
    }

    /// Each behaviour starts at the release that introduced it and stays.
    #[test]
    fn each_behaviour_starts_at_its_release() {
        let since = |field: fn(&Row) -> bool| {
            let first = (19..=40).find(|m| field(Row::of_minor(*m))).expect("some release has it");
            assert!((first..=40).all(|m| field(Row::of_minor(m))), "it stays from 1.{first}");
            first
        };
        assert_eq!(since(|r| r.separate_dqlite), 23);
        assert_eq!(since(|r| r.dqlite_and_traefik_args), 23);
        assert_eq!(since(|r| r.join_worker), 23);
        assert_eq!(since(|r| r.proxy_is_apiserver_proxy), 25);
        assert_eq!(since(|r| r.launch_config), 27);
        assert_eq!(since(|r| r.join_marks_in_progress), 27);
        assert_eq!(since(|r| r.cluster_cidr_in_join), 27);
        assert_eq!(since(|r| r.join_drops_proxy_hostname_override), 27);
        assert_eq!(since(|r| r.persistent_tokens), 27);
        assert_eq!(since(|r| r.kubelet_crt), 28);
        assert_eq!(since(|r| !r.token_credentials), 28);
        assert_eq!(since(|r| r.join_rsplits_endpoint), 28);
        assert_eq!(since(|r| r.join_updates_apiserver), 28);
        assert_eq!(since(|r| r.join_writes_x509), 28);
        assert_eq!(since(|r| r.agent_signs_x509_v3), 28);
        assert_eq!(since(|r| r.fresh_apiserver_kubelet_args), 28);
        assert_eq!(since(|r| r.join_checks_connection), 29);
        assert_eq!(since(|r| r.proxy_reads_endpoint_slices), 34);
        assert_eq!(Row::of("1.22/stable").kubelet_node_labels, "microk8s.io/cluster=true");
        assert!(Row::of("1.23/stable").kubelet_node_labels.ends_with("microk8s-controlplane=microk8s-controlplane"));
    }
}
