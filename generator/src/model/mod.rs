//! The checked cluster facts: what every later stage reads. Types and defaults only;
//! the checks that build them are in [`crate::check`], version knowledge in
//! [`release`].

pub mod release;

use std::collections::BTreeMap;
use std::net::IpAddr;

pub use release::Release;

use crate::pki::{CaCert, Validity};

pub const DEFAULT_APISERVER_PORT: u16 = 16443;
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
pub const DEFAULT_CLUSTER_DNS: &str = "10.152.183.10";
/// kube-proxy's `--cluster-cidr` in canonical/microk8s
/// `microk8s-resources/default-args/kube-proxy` (L2 on every branch, 1.19 to 1.34).
pub const DEFAULT_POD_CIDR: &str = "10.1.0.0/16";
pub const DEFAULT_TRAEFIK_PATH: &str = "/usr/local/bin/traefik";
/// TCP `healthCheck` on traefik services exists from 3.6.0 (traefik's
/// `pkg/config/dynamic/tcp_config.go`, `TCPServerHealthCheck`).
pub const MIN_TRAEFIK: (u32, u32) = (3, 6);

/// The checked cluster facts.
#[derive(Debug, Clone)]
pub struct Facts {
    pub name: String,
    pub channel: Channel,
    pub ca: CaCert,
    pub auth: Auth,
    pub control_plane: Vec<ControlPlaneNode>,
    pub apiserver_port: u16,
    pub load_balancer: LoadBalancer,
    pub dns: Dns,
    /// The pod network, as kube-proxy's `--cluster-cidr` takes it: one CIDR, or an
    /// IPv4 and an IPv6 CIDR joined by a comma (dual-stack).
    pub pod_cidr: String,
    /// `pod-cidr` is in the facts (else it is MicroK8s's default).
    pub pod_cidr_given: bool,
    pub ready_deadline_secs: u64,
    /// The workers in service; retired ones are in [`Facts::retired`] only.
    pub workers: Vec<Worker>,
    /// Workers marked `retired: true`: never rendered, registered or approved
    /// again; `mk8s-ctl retire` takes them out of the cluster.
    pub retired: Vec<Retired>,
}

/// A worker the facts mark `retired: true`.
#[derive(Debug, Clone)]
pub struct Retired {
    pub name: String,
    /// Where the facts say so (`$.workers[3]`), for located messages.
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Token,
    X509(Validity),
    /// MicroK8s's own worker join (1.23+): the control plane's cluster-agent signs
    /// the node's certificates; `token_ttl_secs` is how long a registered join token
    /// stays valid on 1.23-1.26 control planes (`token|expiry` lines).
    MicroK8sJoin {
        token_ttl_secs: u64,
    },
}

/// An air-gapped install: MicroK8s's `.snap` and `.assert`, and optionally its
/// base snap's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSnap {
    pub file: String,
    pub assert: String,
    pub base: Option<(String, String)>,
}

/// Default validity of a join token registered on a 1.23-1.26 control plane.
pub const DEFAULT_JOIN_TOKEN_TTL_HOURS: i64 = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub text: String,
    /// Air-gapped install: the snap and assert files on the node.
    pub local_snap: Option<LocalSnap>,
    /// (major, minor); None for `latest`.
    pub version: Option<(u32, u32)>,
    /// What this release does (the `latest` track: the newest row).
    pub release: &'static Release,
    /// snapd's automatic refreshes of MicroK8s are held (`refresh: hold`).
    pub hold_refresh: bool,
}

#[derive(Debug, Clone)]
pub struct ControlPlaneNode {
    pub name: String,
    pub address: IpAddr,
}

#[derive(Debug, Clone)]
pub enum LoadBalancer {
    /// mk8s-bootstrap's own balancer (`mk8s-bootstrap balance`).
    Builtin {
        health_interval: String,
        health_timeout: String,
    },
    Traefik(TraefikLb),
    /// HAProxy from the distribution (installed by cloud-init's `packages`).
    Haproxy {
        path: String,
        health_interval: String,
        health_timeout: String,
    },
    /// MicroK8s 1.25+'s own `apiserver-proxy`, fed our endpoints.
    MicroK8sProxy,
    External {
        host: String,
        port: u16,
    },
}

pub const DEFAULT_HAPROXY_PATH: &str = "/usr/sbin/haproxy";

#[derive(Debug, Clone)]
pub struct TraefikLb {
    pub path: String,
    pub fetch: Option<(String, String)>,
    pub health_interval: String,
    pub health_timeout: String,
}

#[derive(Debug, Clone)]
pub struct Dns {
    pub cluster_domain: String,
    pub cluster_dns: IpAddr,
    /// Which of the two the facts give (the others are MicroK8s's defaults):
    /// `auth: microk8s-join` keeps what the join copied from the control plane
    /// unless the facts say otherwise.
    pub domain_given: bool,
    pub dns_given: bool,
}

#[derive(Debug, Clone)]
pub struct Worker {
    pub name: String,
    /// `generation:` (0 when absent): part of the worker's join token, so raising
    /// it gives a replacement machine, or a rejoin, a token no old copy holds.
    pub generation: u32,
    /// `epoch:` (1 when absent): part of every per-node secret's derivation, so
    /// raising it gives a replacement machine under the same name a new identity.
    pub epoch: u32,
    pub address: Option<IpAddr>,
    pub labels: BTreeMap<String, String>,
    pub kubelet_args: Vec<String>,
}

impl Worker {
    /// The worker's name and epoch, as the secrets' derivations take them.
    pub fn id(&self) -> crate::pki::NodeId<'_> {
        crate::pki::NodeId { name: &self.name, epoch: self.epoch }
    }
}

impl Facts {
    /// A worker in service (not retired) of this name.
    pub fn worker(&self, name: &str) -> Option<&Worker> {
        self.workers.iter().find(|w| w.name == name)
    }

    /// The retired worker of this name.
    pub fn retired(&self, name: &str) -> Option<&Retired> {
        self.retired.iter().find(|r| r.name == name)
    }
}

/// `host:port` with IPv6 bracketed.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The first worker without an `address` (its index) and how a warning names it
/// and the others like it ("worker \"w-1\" has" / "... and 2 other worker(s) have").
pub fn without_address(workers: &[Worker]) -> Option<(usize, String)> {
    let mut missing = workers.iter().enumerate().filter(|(_, w)| w.address.is_none());
    let (i, first) = missing.next()?;
    let who = match missing.count() {
        0 => format!("worker {:?} has", first.name),
        n => format!("worker {:?} and {n} other worker(s) have", first.name),
    };
    Some((i, who))
}
