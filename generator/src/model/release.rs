//! What differs between MicroK8s releases, read from one place.

use mk8s_bootstrap::plan::Flavour;

/// The cluster-agent's port (`--bind 0.0.0.0:25000`, every branch's
/// `microk8s-resources/default-args/cluster-agent:L1`).
pub const CLUSTER_AGENT_PORT: u16 = 25000;

/// What a fresh MicroK8s 1.28+ apiserver does when it talks to a kubelet
/// (canonical/microk8s 1.28+ `microk8s-resources/default-args/kube-apiserver`:
/// `--kubelet-certificate-authority=${SNAP_DATA}/certs/ca.crt`, commit 0071dd1d, and
/// `--kubelet-preferred-address-types=InternalIP,...`, commit 4086f4ac).
pub const KUBELET_VERIFIED: &str = "a MicroK8s 1.28+ apiserver installed fresh dials each kubelet by its InternalIP and verifies the kubelet's serving certificate against the cluster CA";

/// How to make a control plane's apiserver certificate name an external load
/// balancer, per release (`csr-alt-names.txt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanSteps {
    /// 1.19-1.20: edit `csr.conf.template`; the apiservice-kicker re-issues.
    TemplateKicker,
    /// 1.21: `csr.conf.template` and `csr.conf`, then `refresh-certs` (it signs from
    /// csr.conf without re-reading the template).
    TemplateAndCsrConf,
    /// 1.22-1.26: `csr.conf.template`, then `refresh-certs`.
    TemplateRefresh,
    /// 1.27+: the template or a launch configuration's `extraSANs`, then `refresh-certs`.
    TemplateOrLaunchConfig,
}

/// What one range of MicroK8s releases does that matters to a worker. A row covers
/// the minors from `since` up to the next row's; `latest` is the last row.
/// `docs/join-flavours.md` ("Releases at a glance") shows this table, and a test
/// holds the two together.
#[derive(Debug, PartialEq, Eq)]
pub struct Release {
    /// The first 1.x minor of the row.
    pub since: u32,
    pub flavour: Flavour,
    /// `base:` in `snap/snapcraft.yaml`: 1.19-1.20 `core` (1.20 L16), 1.21-1.26
    /// `core18` (1.22 L13, 1.26 L13), 1.27-1.33 `core20` (1.27 L13, 1.30 L13), 1.34+
    /// `core22` (1.34 L13, commit 320c493d).
    pub base_snap: &'static str,
    /// `microk8s join --worker` exists (1.23:scripts/cluster/join.py).
    pub worker_join: bool,
    /// The install hook reads `/etc/microk8s.yaml` (1.27+), and registered join
    /// tokens are never consumed by a worker join (cluster-agent 1.27+).
    pub launch_config: bool,
    pub persistent_join_tokens: bool,
    /// A fresh install uses certificate auth and passes no --token-auth-file
    /// (805dfe59, first in 1.28).
    pub fresh_is_x509_only: bool,
    /// A fresh install's apiserver dials kubelets by InternalIP first (4086f4ac) and
    /// verifies them against `certs/ca.crt` (0071dd1d), both first in 1.28; older
    /// ones dial by the Node's Hostname and verify nothing.
    pub verifies_kubelet_when_fresh: bool,
    /// The apiserver-proxy's refresh writes IPv6 servers bracketed: it reads
    /// EndpointSlices first from 1.34 (cluster-agent main:pkg/proxy/apiserver.go);
    /// 1.25-1.33 read Endpoints and write `fd00::2:16443`, which they cannot dial
    /// (1.30:pkg/proxy/endpoints.go L14-35).
    pub proxy_keeps_ipv6: bool,
    pub san_steps: SanSteps,
    /// The snap runs the executable files of `$SNAP_COMMON/hooks/post-refresh.d/`
    /// after a refresh: `snap/hooks/post-refresh` and `scripts/run-lifecycle-hooks.py`
    /// exist from 1.25 (1.25, 1.30, 1.34; absent on 1.24). Our hook starts
    /// `mk8s-maintain.service`; older releases have the timer alone.
    pub post_refresh_hooks: bool,
}

const fn row(since: u32, flavour: Flavour, base_snap: &'static str, san_steps: SanSteps) -> Release {
    Release {
        since,
        flavour,
        base_snap,
        worker_join: since >= 23,
        launch_config: since >= 27,
        persistent_join_tokens: since >= 27,
        fresh_is_x509_only: since >= 28,
        verifies_kubelet_when_fresh: since >= 28,
        proxy_keeps_ipv6: since >= 34,
        san_steps,
        post_refresh_hooks: since >= 25,
    }
}

/// Every supported range, oldest first. A threshold is a field set from its `since`
/// in [`row`], and a row starts wherever any field changes.
pub const RELEASES: &[Release] = &[
    row(19, Flavour::Daemons, "core", SanSteps::TemplateKicker),
    row(21, Flavour::Kubelite, "core18", SanSteps::TemplateAndCsrConf),
    row(22, Flavour::Kubelite, "core18", SanSteps::TemplateRefresh),
    row(23, Flavour::Kubelite, "core18", SanSteps::TemplateRefresh),
    row(25, Flavour::KubeliteApiserverProxy, "core18", SanSteps::TemplateRefresh),
    row(27, Flavour::KubeliteApiserverProxy, "core20", SanSteps::TemplateOrLaunchConfig),
    row(28, Flavour::KubeliteApiserverProxy, "core20", SanSteps::TemplateOrLaunchConfig),
    row(34, Flavour::KubeliteApiserverProxy, "core22", SanSteps::TemplateOrLaunchConfig),
];

/// The newest row: what the `latest` track runs.
pub fn latest() -> &'static Release {
    &RELEASES[RELEASES.len() - 1]
}

/// The row of a (major, minor) version; `None` (the `latest` track) is the newest.
/// `None` for a version before the first row or of another major.
pub fn release(version: Option<(u32, u32)>) -> Option<&'static Release> {
    match version {
        None => Some(latest()),
        Some((1, minor)) => RELEASES.iter().rev().find(|r| r.since <= minor),
        Some(_) => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Today's answers for every minor, written as the thresholds the checks used
    /// before the table: a row added in the wrong place changes one of them.
    #[test]
    fn every_minor_keeps_its_answers() {
        assert!(release(Some((1, 18))).is_none() && release(Some((2, 0))).is_none());
        for minor in 19..=40 {
            let r = release(Some((1, minor))).unwrap();
            let flavour = match minor {
                19..=20 => Flavour::Daemons,
                21..=24 => Flavour::Kubelite,
                _ => Flavour::KubeliteApiserverProxy,
            };
            let base = match minor {
                19..=20 => "core",
                21..=26 => "core18",
                27..=33 => "core20",
                _ => "core22",
            };
            let san = match minor {
                19..=20 => SanSteps::TemplateKicker,
                21 => SanSteps::TemplateAndCsrConf,
                22..=26 => SanSteps::TemplateRefresh,
                _ => SanSteps::TemplateOrLaunchConfig,
            };
            assert_eq!((r.flavour, r.base_snap, r.san_steps), (flavour, base, san), "1.{minor}");
            assert_eq!(r.worker_join, minor >= 23, "1.{minor}");
            assert_eq!((r.launch_config, r.persistent_join_tokens), (minor >= 27, minor >= 27), "1.{minor}");
            assert_eq!((r.fresh_is_x509_only, r.verifies_kubelet_when_fresh), (minor >= 28, minor >= 28), "1.{minor}");
            assert_eq!(r.proxy_keeps_ipv6, minor >= 34, "1.{minor}");
            assert_eq!(r.post_refresh_hooks, minor >= 25, "1.{minor}");
        }
        assert_eq!(release(None), RELEASES.last());
        assert_eq!(Some(latest()), RELEASES.last());
        assert!(RELEASES.windows(2).all(|w| w[0].since < w[1].since));
    }

    /// `docs/join-flavours.md` shows the table; every row there must be this one's.
    #[test]
    fn the_docs_show_this_table() {
        let doc = include_str!("../../../docs/join-flavours.md");
        let section = doc.split("## Releases at a glance").nth(1).expect("the docs have the section");
        let rows: Vec<Vec<String>> = section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect())
            .collect();
        assert_eq!(rows.len(), RELEASES.len(), "{rows:?}");
        let yes = |b: bool| if b { "yes" } else { "no" };
        for (cells, r) in rows.iter().zip(RELEASES) {
            let flavour = match r.flavour {
                Flavour::Daemons => "daemons",
                Flavour::Kubelite => "kubelite",
                Flavour::KubeliteApiserverProxy => "kubelite + apiserver-proxy",
            };
            let want = [
                format!("1.{}", r.since),
                flavour.to_string(),
                format!("`{}`", r.base_snap),
                yes(r.worker_join).into(),
                yes(r.launch_config).into(),
                yes(r.fresh_is_x509_only).into(),
                yes(r.proxy_keeps_ipv6).into(),
                yes(r.post_refresh_hooks).into(),
                match r.san_steps {
                    SanSteps::TemplateKicker => "template; the kicker re-issues",
                    SanSteps::TemplateAndCsrConf => "template and csr.conf; refresh-certs",
                    SanSteps::TemplateRefresh => "template; refresh-certs",
                    SanSteps::TemplateOrLaunchConfig => "template or extraSANs; refresh-certs",
                }
                .into(),
            ];
            assert_eq!(cells, &want, "docs/join-flavours.md row for 1.{}", r.since);
        }
    }
}
