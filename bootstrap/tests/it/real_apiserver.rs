//! The other side is real: the bootstrap's apiserver client, and the simulated
//! apiserver the other scenarios use, against the real kube-apiserver (built from
//! its Go module by `scripts/build-upstream`, started with MicroK8s's default args
//! for the version, `mk8s_testkit::upstream`), on MicroK8s's default
//! `AlwaysAllow` and on `RBAC,Node`.

use std::sync::Arc;

use mk8s_bootstrap::api::{Api, NodeState};
use mk8s_bootstrap::plan::Credential;
use mk8s_bootstrap::retry::Failure;
use mk8s_testkit::apiserver::{Authz, SimApiserver};
use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::pki::{Ca, Leaf};
use mk8s_testkit::upstream::{ControlPlane, Options};

use crate::common;

const KUBELET: &str = "0123456789abcdef0123456789abcdef";
const PROXY: &str = "fedcba9876543210fedcba9876543210";
const ADMIN: &str = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0";

fn known_tokens() -> String {
    format!(
        "{ADMIN},admin,admin,\"system:masters\"\n{KUBELET},system:node:worker-1,kubelet-worker-1,\"system:nodes\"\n\
         {PROXY},system:kube-proxy,kube-proxy\n"
    )
}

/// One real apiserver with MicroK8s 1.26's default args (it reads
/// `known_tokens.csv`), `authz` as given.
fn control_plane(authz: Authz) -> ControlPlane {
    let mut o = Options::new(26, authz);
    o.ips.truncate(1);
    o.known_tokens = known_tokens();
    ControlPlane::start(o)
}

fn url(cp: &ControlPlane) -> String {
    format!("https://{}", cp.apiservers[0].addr)
}

fn token(t: &str) -> Credential {
    Credential::Token { token: t.into() }
}

fn cert(leaf: &Leaf) -> Credential {
    Credential::ClientCertificate { cert_pem: leaf.cert_pem.clone(), key_pem: leaf.key_pem.clone() }
}

/// A kubelet certificate for worker-1 as a MicroK8s 1.24-1.27 control plane signs
/// it on a worker join: `openssl x509 -req`, X.509 v1.
fn v1_kubelet_cert(cp: &ControlPlane) -> Leaf {
    let (csr, key) = mk8s_testkit::pki::csr("system:node:worker-1", &["system:nodes"], &[]);
    let pem = mk8s_testkit::pki::openssl_x509_req(&csr, &cp.apiservers[0].snap_data.join("certs")).unwrap();
    let der = mk8s_bootstrap::pin::pem_to_der(&pem).unwrap();
    assert_eq!(mk8s_bootstrap::pin::Cert::from_der(&der).unwrap().version, 1);
    Leaf::from_pem(&pem, &key).unwrap()
}

fn api(cp: &ControlPlane, cred: &Credential, who: &'static str) -> Api {
    Api::for_node(&cp.ca.cert_pem, "worker-1", &url(cp), cred, who).unwrap()
}

fn anonymous_readyz(cp: &ControlPlane) -> u16 {
    mk8s_testkit::tls::https_get(cp.apiservers[0].addr, "/readyz", Some(&cp.ca), None).unwrap().status
}

/// G1: on MicroK8s's default AlwaysAllow, kube-apiserver refuses an anonymous
/// `/readyz` (401); the bootstrap's readiness check authenticates, so it passes
/// there and on RBAC,Node, and a 401 is about the credential it sent.
#[test]
fn readiness_authenticates_on_always_allow_and_rbac() {
    for (authz, anonymous) in [(Authz::AlwaysAllow, 401), (Authz::RbacNode, 200)] {
        let cp = control_plane(authz);
        assert_eq!(anonymous_readyz(&cp), anonymous, "{authz:?}: the real apiserver's anonymous /readyz");
        for (cred, who) in [(token(KUBELET), "kubelet"), (token(PROXY), "kube-proxy")] {
            let a = api(&cp, &cred, who);
            assert_eq!(a.readyz(), Ok(()), "{authz:?}: {who} token");
            assert_eq!(a.node(), Ok(NodeState::Absent), "{authz:?}: {who}");
        }
        let x509 = cp.ca.client("system:node:worker-1", &["system:nodes"]);
        assert_eq!(api(&cp, &cert(&x509), "kubelet").readyz(), Ok(()), "{authz:?}: x509");
        match api(&cp, &token("ffffffffffffffffffffffffffffffff"), "kubelet").readyz() {
            Err(Failure::Fatal(m)) => assert!(m.contains("(401)") && m.contains("does not know it"), "{m}"),
            other => panic!("{authz:?}: an unknown token must be a 401 about the credential: {other:?}"),
        }
    }
}

/// G2: the v1 certificates 1.24-1.27 control planes sign work as the kubelet's
/// credential, for readiness, reading and patching its Node (no panic in the TLS
/// client), on AlwaysAllow and RBAC,Node.
#[test]
fn v1_certificates_of_1_27_control_planes_authenticate() {
    for authz in [Authz::AlwaysAllow, Authz::RbacNode] {
        let cp = control_plane(authz);
        let v1 = v1_kubelet_cert(&cp);
        let a = api(&cp, &cert(&v1), "kubelet");
        assert_eq!(a.readyz(), Ok(()), "{authz:?}");
        assert_eq!(a.node(), Ok(NodeState::Absent), "{authz:?}");
        let node = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"}});
        let created = mk8s_testkit::tls::https_call(
            cp.apiservers[0].addr,
            rustls::pki_types::ServerName::IpAddress(cp.apiservers[0].addr.ip().into()),
            mk8s_testkit::tls::Trust::Roots(cp.ca.rustls_root()),
            "POST",
            "/api/v1/nodes",
            Some(&node.to_string()),
            None,
            Some((v1.rustls_chain(), v1.rustls_key())),
        )
        .unwrap();
        assert_eq!(created.status, 201, "{authz:?}: the kubelet registers its Node: {}", created.body);
        let labels = serde_json::json!({"metadata": {"labels": {"node.kubernetes.io/worker": "worker"}}});
        assert_eq!(a.patch_node(&labels), Ok(()), "{authz:?}");
        let (code, body) = cp.admin_get("/api/v1/nodes/worker-1");
        assert_eq!(code, 200);
        assert!(body.contains("node.kubernetes.io/worker"), "{body}");
        assert!(matches!(a.node(), Ok(NodeState::NotReady(_))), "{authz:?}");
        // The key must be the certificate's: a mismatch is an error, not a panic.
        let other_key = cp.ca.client("x", &[]).key_pem;
        let mismatched = Credential::ClientCertificate { cert_pem: v1.cert_pem.clone(), key_pem: other_key };
        match Api::for_node(&cp.ca.cert_pem, "worker-1", &url(&cp), &mismatched, "kubelet") {
            Err(Failure::Fatal(m)) => assert!(m.contains("does not belong"), "{m}"),
            other => panic!("{:?}", other.map(|_| "an Api")),
        }
    }
}

/// Each request the bootstrap, the balancers' checks and the control-plane scripts
/// make, with each kind of credential, answered by the real kube-apiserver and by
/// the simulated one that the other scenarios use: the status codes must agree.
#[test]
fn the_simulated_apiserver_answers_as_the_real_one() {
    for authz in [Authz::AlwaysAllow, Authz::RbacNode] {
        let cp = control_plane(authz);
        let sim = SimApiserver::start(Arc::clone(&cp.ca), "127.0.0.1", &known_tokens());
        sim.set_authz(authz);
        let other_ca = Ca::new("another CA");
        let creds: Vec<(&str, Option<&str>, Option<Leaf>)> = vec![
            ("anonymous", None, None),
            ("kubelet token", Some(KUBELET), None),
            ("kube-proxy token", Some(PROXY), None),
            ("admin token", Some(ADMIN), None),
            ("unknown token", Some("ffffffffffffffffffffffffffffffff"), None),
            ("kubelet cert", None, Some(cp.ca.client("system:node:worker-1", &["system:nodes"]))),
            ("v1 kubelet cert", None, Some(v1_kubelet_cert(&cp))),
            ("another CA's cert", None, Some(other_ca.client("system:node:worker-1", &["system:nodes"]))),
        ];
        let paths = ["/readyz", "/livez", "/version", "/api/v1/nodes/worker-1", "/api/v1/nodes/worker-2"];
        let mut differences = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (name, tok, leaf) in &creds {
            for path in paths {
                let real =
                    mk8s_testkit::tls::https_get_as(cp.apiservers[0].addr, path, Some(&cp.ca), *tok, leaf.as_ref())
                        .map(|f| f.status);
                let simulated = mk8s_testkit::tls::https_get_as(sim.addr, path, Some(&cp.ca), *tok, leaf.as_ref())
                    .map(|f| f.status);
                let (real, simulated) = (real.unwrap(), simulated.unwrap());
                seen.insert(format!("{name} GET {path}: {real}"));
                if real != simulated {
                    differences.push(format!("{authz:?} {name} GET {path}: real {real}, simulated {simulated}"));
                }
            }
        }
        // Writes: `maintain`'s merge patch of annotations on its own Node and on
        // another, once both Nodes exist (created by the admin).
        let call = |addr: std::net::SocketAddr,
                    method: &str,
                    path: &str,
                    body: &str,
                    tok: Option<&str>,
                    leaf: Option<&Leaf>| {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let client = leaf.map(|l| (l.rustls_chain(), l.rustls_key()));
            let trust = mk8s_testkit::tls::Trust::Roots(cp.ca.rustls_root());
            mk8s_testkit::tls::https_call(addr, name, trust, method, path, Some(body), tok, client).unwrap().status
        };
        for addr in [cp.apiservers[0].addr, sim.addr] {
            for n in ["worker-1", "worker-2"] {
                let node = format!(r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{n}"}}}}"#);
                assert_eq!(call(addr, "POST", "/api/v1/nodes", &node, Some(ADMIN), None), 201, "{addr}");
            }
        }
        let patch = r#"{"metadata":{"annotations":{"mk8s-worker.io/drift":""}}}"#;
        for (name, tok, leaf) in &creds {
            for path in ["/api/v1/nodes/worker-1", "/api/v1/nodes/worker-2"] {
                let real = call(cp.apiservers[0].addr, "PATCH", path, patch, *tok, leaf.as_ref());
                let simulated = call(sim.addr, "PATCH", path, patch, *tok, leaf.as_ref());
                seen.insert(format!("{name} PATCH {path}: {real}"));
                if real != simulated {
                    differences.push(format!("{authz:?} {name} PATCH {path}: real {real}, simulated {simulated}"));
                }
            }
        }
        assert!(differences.is_empty(), "the simulation differs from kube-apiserver:\n{}", differences.join("\n"));
        // What the real one answered, as the fidelity docs state it.
        let seen: Vec<String> = seen.into_iter().collect();
        let expect = |line: &str| assert!(seen.contains(&line.to_string()), "{authz:?}: {line} not in {seen:#?}");
        expect(&format!("anonymous GET /readyz: {}", if authz == Authz::AlwaysAllow { 401 } else { 200 }));
        expect("kubelet token GET /api/v1/nodes/worker-1: 404");
        expect("v1 kubelet cert GET /readyz: 200");
        expect("another CA's cert GET /readyz: 401");
        expect("unknown token GET /readyz: 401");
        // No NodeRestriction in MicroK8s: a node writes any Node under RBAC,Node.
        expect("kubelet cert PATCH /api/v1/nodes/worker-2: 200");
        expect(&format!(
            "kube-proxy token PATCH /api/v1/nodes/worker-1: {}",
            if authz == Authz::AlwaysAllow { 200 } else { 403 }
        ));
    }
}

// ---------------------------------------------------------------------------
// The real-peer tier: a worker on the node model (the snap's part: wrappers,
// hooks, kubelite, refresh, reboot) joins three real kube-apiservers with
// MicroK8s's default args for its version, through the generated user-data and
// the real mk8s-bootstrap; the control plane ran the generated bundle's
// hosts-entries.sh (and register-join-tokens.sh) first, as the operator does.

/// How the worker authenticates.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Auth {
    Token,
    X509,
    /// MicroK8s's own worker join, through the real cluster-agent of the channel's
    /// branch (`mk8s_testkit::real_agent`).
    Join,
}

impl Auth {
    /// The facts' `auth` (and its settings).
    fn facts(self, facts: FactsYaml) -> FactsYaml {
        match self {
            Auth::Token => facts,
            Auth::X509 => facts.auth_x509("2026-01-01", 3650),
            Auth::Join => facts.auth_join(),
        }
    }
}

/// The node-local balancer (`Join` takes MicroK8s's own).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Lb {
    /// `kind: builtin`, the default: the agent's own balancer.
    Builtin,
    Traefik,
    Haproxy,
    /// `kind: microk8s-proxy`: the snap's apiserver-proxy (the real program on
    /// 1.26, 1.30 and 1.34, the node model's on other channels).
    Microk8sProxy,
    /// MicroK8s's own, as its join configures it (`auth: microk8s-join`).
    Own,
    /// `mode: external`: the operator's balancer in front of the control plane,
    /// here a real HAProxy on an address of its own ([`external_balancer`]).
    External,
}

impl Lb {
    /// The facts' `load-balancer` (none for `Own`); `external`: the address of
    /// the external balancer, on the control plane's `port`.
    fn facts(self, facts: FactsYaml, external: &str, port: u16) -> FactsYaml {
        match self {
            Lb::Builtin => facts.lb_builtin().health_check("1s", "500ms"),
            Lb::Traefik => facts.lb_traefik(None).health_check("1s", "500ms"),
            Lb::Haproxy => facts.lb_haproxy().health_check("1s", "500ms"),
            Lb::Microk8sProxy => facts.lb_microk8s_proxy(),
            Lb::Own => facts,
            Lb::External => facts.lb_external(external, port),
        }
    }

    /// The kind whose real program the node has at its plan's path.
    fn program(self) -> Option<&'static str> {
        match self {
            Lb::Builtin => Some("builtin"),
            Lb::Traefik => Some("traefik"),
            Lb::Haproxy => Some("haproxy"),
            Lb::Microk8sProxy | Lb::Own | Lb::External => None,
        }
    }
}

pub(crate) struct Peers {
    // Dropped first: the real kubelet's processes, mounts and cgroup go first.
    _host: Option<mk8s_testkit::upstream::RealNodeHost>,
    external: Option<mk8s_testkit::proc::Guard>,
    // Then the apiservers, before their addresses go.
    pub(crate) cp: ControlPlane,
    pub(crate) agents: Vec<mk8s_testkit::real_agent::RealClusterAgent>,
    pub(crate) model: mk8s_testkit::node_model::Model,
    pub(crate) root: std::path::PathBuf,
    /// The machine before the user-data.
    pub(crate) image: common::Tree,
    /// The worker's apiserver port (its balancer's).
    pub(crate) port: u16,
    /// The facts, as a file (`mk8s-ctl --cluster`).
    pub(crate) facts_file: std::path::PathBuf,
    kubectl: std::path::PathBuf,
    real_kubelet: bool,
    tmp: tempfile::TempDir,
    addresses: mk8s_testkit::upstream::PeerAddresses,
    /// The cluster's facts and secrets, as the worker's user-data was rendered.
    pub(crate) facts: mk8s_gen::model::Facts,
    pub(crate) secrets: mk8s_gen::secrets::Secrets,
}

pub(crate) const NODE: &str = "worker-1";
/// The first line the image built by `scripts/build-upstream` prints (`/pause loop`).
const PAUSE_LOG: &str = "mk8s-pause: a log line\n";

/// `node_ip`: the worker's address for the node model's kubelet; `None`: the real
/// kubelet and containerd, on an address of [`mk8s_testkit::upstream::PeerAddresses`]
/// (the kubelet refuses a loopback node IP).
/// A step of the operator's on the running control plane, with the bundle's directory.
pub(crate) type Operator = dyn Fn(&ControlPlane, &std::path::Path);

/// What a scenario changes in [`peers_with`]' world.
#[derive(Default)]
pub(crate) struct Setup<'a> {
    /// The facts passed through it last.
    pub(crate) facts: Option<&'a dyn Fn(FactsYaml) -> FactsYaml>,
    /// Run as the operator once the control plane is up, before the worker boots
    /// (the bundle's directory given).
    pub(crate) started: Option<&'a Operator>,
    /// The port of the worker's own snap (its apiserver and, once joined,
    /// MicroK8s's proxy: 16443 on a real node), when not the control plane's.
    pub(crate) worker_port: Option<u16>,
    /// The control plane was upgraded from 1.27: it keeps 1.27's default args
    /// (a refresh does not rewrite `args/`), whatever the worker's channel.
    pub(crate) upgraded: bool,
    /// The operator never ran the bundle's hosts-entries.sh.
    pub(crate) no_hosts: bool,
    /// One control-plane node instead of three: for cases whose subject is the
    /// node, not the control plane's availability (each apiserver costs seconds
    /// of both cores to start).
    pub(crate) one_control_plane: bool,
}

pub(crate) fn peers_with(
    channel: &str,
    auth: Auth,
    lb: Lb,
    authz: Authz,
    node_ip: Option<&str>,
    setup: &Setup,
) -> Peers {
    use mk8s_gen::render::{self, Delivery};

    let real_kubelet = node_ip.is_none();
    let tmp = tempfile::tempdir().unwrap();
    // Addresses a cluster's `kubernetes` Endpoints can hold (not loopback): MicroK8s
    // 1.25+'s apiserver-proxy learns the control plane from them. Three control
    // planes, the worker, an external balancer.
    let addresses = mk8s_testkit::upstream::PeerAddresses::take(5);
    let node_ip = node_ip.unwrap_or(&addresses.ips[3]).to_string();
    let host = real_kubelet.then(|| mk8s_testkit::upstream::RealNodeHost::take(tmp.path()));
    let cluster = cluster(channel, auth, lb, authz, &addresses.ips, &node_ip, setup, tmp.path());
    let (cp, facts, secrets, agents, external) = cluster;
    let worker = facts.worker(NODE).unwrap();

    // The worker: an image with snapd, then the generated user-data, as cloud-init
    // writes it.
    let root = tmp.path().join("root");
    for d in common::IMAGE_DIRS {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    if let Some(kind) = lb.program() {
        common::balancer_program(&root, kind);
    }
    let worker_port = setup.worker_port.unwrap_or(cp.options.port);
    let dir = tmp.path().join("model");
    let model = worker_model(channel, worker_port, &node_ip, host.as_ref(), setup.upgraded, &dir, &root);
    let image = common::tree(&root);
    common::boot(&root, &render::render_node(&facts, &secrets, worker, &Delivery::Preinstalled).unwrap());
    let kubectl = mk8s_testkit::tools::require("kubectl");
    let w = Peers {
        _host: host,
        external,
        cp,
        agents,
        model,
        root,
        image,
        port: worker_port,
        facts_file: tmp.path().join("cluster.yaml"),
        kubectl,
        real_kubelet,
        tmp,
        addresses,
        facts,
        secrets,
    };
    w.shorten_plan();
    w
}

type Cluster = (
    ControlPlane,
    mk8s_gen::model::Facts,
    mk8s_gen::secrets::Secrets,
    Vec<mk8s_testkit::real_agent::RealClusterAgent>,
    Option<mk8s_testkit::proc::Guard>,
);

/// The facts of a cluster whose control planes are on `ips[..3]` (the external
/// balancer on `ips[4]`) and the control plane running, with the operator's side
/// done on every node before any worker boots.
#[allow(clippy::too_many_arguments)]
fn cluster(
    channel: &str,
    auth: Auth,
    lb: Lb,
    authz: Authz,
    ips: &[String],
    node_ip: &str,
    setup: &Setup,
    dir: &std::path::Path,
) -> Cluster {
    let ca = Arc::new(Ca::new("10.152.183.1"));
    let minor = if setup.upgraded { 27 } else { mk8s_testkit::node_model::minor_of(channel) };
    let mut options = Options::new(minor, authz);
    options.ca = Some(ca.clone());
    options.ips = ips[..if setup.one_control_plane { 1 } else { 3 }].to_vec();
    options.extra_sans = vec![ips[4].clone()];
    let port = options.port;
    std::fs::write(dir.join("ca.crt"), &ca.cert_pem).unwrap();
    let facts = FactsYaml::new("real").channel(channel).ca_file("ca.crt");
    let facts = auth.facts(facts).port(port);
    let facts = options.ips.iter().enumerate().fold(facts, |f, (i, ip)| f.control_plane(&format!("cp-{i}"), ip));
    let facts = lb.facts(facts, &ips[4], port);
    let facts = facts.worker(Worker::new(NODE).address(node_ip).label("example.com/tier", "gpu"));
    let facts = match setup.facts {
        Some(edit) => edit(facts),
        None => facts,
    };
    // The facts as a file, for `mk8s-ctl --cluster`.
    std::fs::write(dir.join("cluster.yaml"), facts.yaml()).unwrap();
    let (facts, secrets) = common::facts_and_secrets(&facts.yaml(), dir, &ca.key_pem);
    let worker = facts.worker(NODE).unwrap();
    if auth == Auth::Token {
        // MicroK8s's own lines, then ours (what merge-known-tokens.sh leaves).
        options.known_tokens = format!(
            "{ADMIN},admin,admin,\"system:masters\"\n{}",
            mk8s_gen::auth::token::token_lines(&facts, &secrets, worker)
        );
    }
    let mut cp = ControlPlane::new(options);
    let bundle = dir.join("bundle");
    let workers: Vec<_> = facts.workers.iter().collect();
    mk8s_gen::controlplane::write_bundle(&facts, &secrets, &workers, &bundle).unwrap();
    for a in cp.apiservers.iter().filter(|_| !setup.no_hosts) {
        a.run_hosts_entries(&bundle);
    }
    cp.start_all();
    cp.start_controller_manager();
    let agents = join_agents(&cp, &bundle, channel, auth);
    if let Some(started) = setup.started {
        started(&cp, &bundle);
    }
    let external = (lb == Lb::External).then(|| external_balancer(&cp, &ips[4], dir));
    (cp, facts, secrets, agents, external)
}

/// The operator's external balancer: Debian's HAProxy in TCP mode on `ip` and the
/// control plane's port, in front of every apiserver, each checked by a TCP
/// connect every second (TLS passes through: the apiservers' certificates carry
/// `ip`, as an operator adds a balancer's address to `csr.conf.template`).
fn external_balancer(cp: &ControlPlane, ip: &str, dir: &std::path::Path) -> mk8s_testkit::proc::Guard {
    let port = cp.options.port;
    let servers: String = cp
        .apiservers
        .iter()
        .enumerate()
        .map(|(i, a)| format!("  server cp-{i} {} check inter 1s fall 1 rise 1\n", a.addr))
        .collect();
    let config = format!(
        "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1h\n  timeout server 1h\n\
         frontend apiserver\n  bind {ip}:{port}\n  default_backend control-plane\n\
         backend control-plane\n{servers}"
    );
    let path = dir.join("external-haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let guard = mk8s_testkit::proc::Guard::spawn(
        std::process::Command::new(mk8s_testkit::tools::require("haproxy"))
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();
    assert!(mk8s_testkit::proc::wait_listening(addr, std::time::Duration::from_secs(10)), "the external HAProxy");
    guard
}

/// For MicroK8s's own join, what the operator runs on every control-plane node
/// before a worker boots (register-join-tokens.sh) next to that node's real
/// cluster-agent (returned, one a node); the bundle's hosts-entries.sh ran before
/// the apiservers started.
fn join_agents(
    cp: &ControlPlane,
    bundle: &std::path::Path,
    channel: &str,
    auth: Auth,
) -> Vec<mk8s_testkit::real_agent::RealClusterAgent> {
    if auth != Auth::Join {
        return Vec::new();
    }
    let branch = mk8s_testkit::real_agent::branch_for(channel)
        .unwrap_or_else(|| panic!("no real cluster-agent for {channel}: vendor its branch"));
    mk8s_testkit::real_agent::register_control_plane_nodes(cp);
    (0..cp.apiservers.len()).map(|i| join_agent(cp, i, bundle, branch)).collect()
}

/// The real cluster-agent of control-plane node `i`, with the join tokens the
/// bundle's register-join-tokens.sh registered there.
fn join_agent(
    cp: &ControlPlane,
    i: usize,
    bundle: &std::path::Path,
    branch: &str,
) -> mk8s_testkit::real_agent::RealClusterAgent {
    let a = &cp.apiservers[i];
    let o = std::process::Command::new(mk8s_testkit::tools::require("bash"))
        .arg(bundle.join("register-join-tokens.sh"))
        .env("SNAP_DATA", &a.snap_data)
        .env("MK8S_MICROK8S", "/bin/false")
        .output()
        .unwrap();
    // Exit 7: it cannot list the nodes (no `microk8s` here); it registered.
    assert_eq!(o.status.code(), Some(7), "register-join-tokens.sh: {}", String::from_utf8_lossy(&o.stderr));
    mk8s_testkit::real_agent::RealClusterAgent::start(cp, i, branch)
}

/// The node model of the worker at `node_ip`; on `host`, with the real kubelet
/// and containerd.
fn worker_model(
    channel: &str,
    port: u16,
    node_ip: &str,
    host: Option<&mk8s_testkit::upstream::RealNodeHost>,
    upgraded: bool,
    dir: &std::path::Path,
    root: &std::path::Path,
) -> mk8s_testkit::node_model::Model {
    let mut config = mk8s_testkit::node_model::ModelConfig::new(channel, port);
    config.upgraded = upgraded;
    config.node_ip = node_ip.to_string();
    config.hostname = NODE.to_string();
    // MicroK8s's own proxy on the worker (1.25+) is the real program where its
    // branch is vendored.
    config.real_apiserver_proxy =
        mk8s_testkit::real_agent::branch_for(channel).map(|b| mk8s_testkit::real_agent::binary(b).0);
    if let Some(h) = host {
        let (pause_tar, pause_ref) = mk8s_testkit::upstream::pause_image();
        config.real = Some(mk8s_testkit::node_model::RealPrograms {
            kubelet: mk8s_testkit::upstream::bin("kubelet"),
            cgroup_root: h.cgroup_root.clone(),
            pause_tar,
            pause_ref,
            cni_bridge: h.bridge.clone(),
            pod_subnet: "10.214.0.0/24".into(),
        });
    }
    mk8s_testkit::node_model::Model::new(dir, root, config)
}

impl Peers {
    pub(crate) fn run(&self) -> (i32, String) {
        common::run_bootstrap(&self.root, &self.model, Some(&self.model.microk8s))
    }

    /// `mk8s-bootstrap maintain --repair` on the worker.
    pub(crate) fn maintain(&self) -> (i32, String) {
        let out = std::process::Command::new(common::BIN)
            .args(["maintain", "--repair", "--root"])
            .arg(&self.root)
            .arg("--systemctl")
            .arg(&self.model.systemctl)
            .arg("--snap")
            .arg(&self.model.snap)
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
    }

    /// The plan on the node with this tier's timings and, for MicroK8s's own join,
    /// the real agents' addresses (as generated: `IP:25000`, which they are).
    pub(crate) fn shorten_plan(&self) {
        common::edit_plan(&self.root, |plan| {
            plan.timing.ready_deadline_secs = 60;
            plan.timing.retry_initial_ms = 100;
            plan.timing.retry_cap_ms = 1000;
            if let Some(join) = plan.join.as_mut() {
                join.agents = self.agents.iter().map(|a| a.addr.to_string()).collect();
            }
        });
    }

    /// The cloud-config `mk8s-gen` renders for another worker of the facts.
    pub(crate) fn user_data_of(&self, name: &str) -> String {
        use mk8s_gen::render::{self, Delivery};
        let worker = self.facts.worker(name).unwrap();
        let out = render::render_node(&self.facts, &self.secrets, worker, &Delivery::Preinstalled).unwrap();
        mk8s_gen::output::cloud_config::cloud_config(&out)
    }

    /// The operator's external balancer (`Lb::External`) stopped; its address.
    pub(crate) fn stop_external(&mut self) -> std::net::SocketAddr {
        assert!(self.external.take().is_some(), "no external balancer");
        format!("{}:{}", self.addresses.ips[4], self.cp.options.port).parse().unwrap()
    }

    /// The operator's external balancer started again, in front of every apiserver.
    pub(crate) fn start_external(&mut self) {
        self.external = Some(external_balancer(&self.cp, &self.addresses.ips[4], self.tmp.path()));
    }

    pub(crate) fn story(&self) -> String {
        let tail = |name: &str| {
            let text = std::fs::read_to_string(self.model.dir.join("logs").join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(25)..].join("\n")
        };
        format!(
            "calls:\n{}\nevents:\n{}\nkubelet: {:?}\nkube-proxy: {:?}\napiserver 0 (tail):\n{}\nreal kubelet (tail):\n{}\ncontainerd (tail):\n{}",
            self.model.calls().join("\n"),
            self.model.events().join("\n"),
            self.model.kubelet(),
            self.model.kube_proxy(),
            self.cp.apiservers.iter().find(|a| a.running()).map(|a| a.log_tail()).unwrap_or_default(),
            tail("kubelet.out"),
            tail("containerd.out")
        )
    }

    /// `kubectl ARGS` as the cluster's admin, through a running apiserver.
    pub(crate) fn kubectl(&self, args: &[&str]) -> std::process::Output {
        let i = self.cp.apiservers.iter().position(|a| a.running()).expect("an apiserver runs");
        std::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(self.cp.admin_kubeconfig(i))
            .args(["--request-timeout=10s"])
            .args(args)
            .output()
            .unwrap()
    }

    /// The Node, as the real apiserver has it.
    pub(crate) fn node(&self) -> Option<serde_json::Value> {
        let o = self.kubectl(&["get", "node", NODE, "-o", "json"]);
        o.status.success().then(|| serde_json::from_slice(&o.stdout).unwrap())
    }

    /// Ready with a heartbeat at or after `since`.
    pub(crate) fn wait_heartbeat(&self, since: std::time::SystemTime, what: &str) {
        use std::time::{Duration, Instant, SystemTime};
        let since = SystemTime::UNIX_EPOCH
            + Duration::from_secs(since.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs());
        let end = Instant::now() + Duration::from_secs(if self.real_kubelet { 60 } else { 30 });
        loop {
            let node = self.node();
            let ready = node.as_ref().and_then(|n| {
                n.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == "Ready").cloned()
            });
            let at = |v: &serde_json::Value| {
                // MicroTime has microseconds; RFC 3339 seconds are enough here.
                let s = v.as_str().unwrap_or("");
                let s = s.split_once('.').map(|(a, _)| format!("{a}Z")).unwrap_or_else(|| s.to_string());
                mk8s_testkit::node_model::parse_rfc3339(&s).is_some_and(|t| t >= since)
            };
            // The real kubelet heartbeats through its Lease (kube-node-lease, every
            // 10 s) and posts its status at start and when it changes.
            let renewed = self.real_kubelet && {
                let o = self.kubectl(&["-n", "kube-node-lease", "get", "lease", NODE, "-o", "json"]);
                o.status.success()
                    && serde_json::from_slice::<serde_json::Value>(&o.stdout).is_ok_and(|l| at(&l["spec"]["renewTime"]))
            };
            let fresh = ready.is_some_and(|c| c["status"] == "True" && (at(&c["lastHeartbeatTime"]) || renewed));
            if fresh {
                return;
            }
            assert!(Instant::now() < end, "{what}: no fresh Ready heartbeat: {node:?}\n{}", self.story());
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The join went through the real cluster-agent: one agent answered
    /// `POST /cluster/api/v2.0/join` 200 and signed the kubelet's and kube-proxy's
    /// certificates (`sign-cert` 200, twice), and created its `no-cert-reissue` lock.
    fn assert_real_agent_joined(&self, what: &str) {
        let served: Vec<_> = self
            .agents
            .iter()
            .filter(|a| {
                std::fs::read_to_string(&a.log).unwrap_or_default().contains("POST 200 \"/cluster/api/v2.0/join\"")
            })
            .collect();
        let logs = || self.agents.iter().map(|a| a.log_tail()).collect::<Vec<_>>().join("\n---\n");
        assert_eq!(served.len(), 1, "{what}: one agent answers the join:\n{}", logs());
        let log = std::fs::read_to_string(&served[0].log).unwrap_or_default();
        assert_eq!(log.matches("POST 200 \"/cluster/api/v1.0/sign-cert\"").count(), 2, "{what}:\n{log}");
        assert!(served[0].snap_data.join("var/lock/no-cert-reissue").exists(), "{what}");
    }

    /// MicroK8s's own proxy on the worker is the real `cluster-agent apiserver-proxy`
    /// of the channel's branch, serving.
    fn assert_real_apiserver_proxy(&self, what: &str) {
        let log = std::fs::read_to_string(self.model.dir.join("logs/apiserver-proxy.out")).unwrap_or_default();
        assert!(log.contains("ready to proxy client requests to"), "{what}:\n{log}\n{}", self.story());
    }

    /// MicroK8s's own balancer lists every apiserver: on 1.23-1.24 from the join
    /// (its `control_plane_nodes`), on 1.25+ after the apiserver-proxy's refresh from
    /// the `kubernetes` Endpoints (the join gives it only the node it joined through).
    fn wait_proxy_knows_every_apiserver(&self, what: &str) {
        use std::time::{Duration, Instant};
        let file = self.root.join(mk8s_testkit::node_model::SNAP_DATA).join("args/traefik/provider.yaml");
        // The real apiserver-proxy refreshes every 15 s (its minimum).
        let end = Instant::now() + Duration::from_secs(45);
        let log = self.model.dir.join("logs/apiserver-proxy.out");
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if self.cp.apiservers.iter().all(|a| text.contains(&a.addr.to_string())) {
                // ... and it was the real program that learned them.
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                assert!(log.contains("updating endpoints"), "{what}: the real apiserver-proxy:\n{log}");
                return;
            }
            assert!(
                Instant::now() < end,
                "{what}: the proxy's servers never listed every apiserver:\n{text}\n{}",
                self.story()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The pod `probe` bound to the worker (created once).
    fn probe_pod(&self, what: &str) {
        use std::time::{Duration, Instant};
        // The pod needs the namespace's `default` ServiceAccount, which the real
        // kube-controller-manager creates.
        let end = Instant::now() + Duration::from_secs(60);
        while !self.kubectl(&["get", "serviceaccount", "default"]).status.success() {
            assert!(Instant::now() < end, "{what}: no default ServiceAccount:\n{}", self.cp.controller_manager_log());
            std::thread::sleep(Duration::from_millis(500));
        }
        if self.kubectl(&["get", "pod", "probe"]).status.code() == Some(0) {
            return;
        }
        // On the real kubelet a real container: the image built here, which
        // prints a log line first, on the host's network (no CNI call).
        let image = if self.real_kubelet {
            mk8s_testkit::upstream::pause_image().1
        } else {
            "registry.k8s.io/pause:3.10".to_string()
        };
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": "default"},
            "spec": {"nodeName": NODE, "hostNetwork": true, "automountServiceAccountToken": false,
                     "tolerations": [{"operator": "Exists"}],
                     "containers": [{"name": "c", "image": image, "imagePullPolicy": "Never", "command": ["/pause", "loop"]}]}});
        let file = self.cp.dir.path().join("probe.json");
        std::fs::write(&file, pod.to_string()).unwrap();
        let o = self.kubectl(&["create", "-f", file.to_str().unwrap()]);
        assert!(o.status.success(), "{what}: create the probe pod: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// `kubectl logs` of the probe pod, expected to fail: its error.
    fn logs_error(&self) -> String {
        self.probe_pod("logs_error");
        let o = self.kubectl(&["logs", "probe", "-c", "c"]);
        assert!(!o.status.success(), "kubectl logs worked: {}", String::from_utf8_lossy(&o.stdout));
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// `kubectl logs` of a pod bound to the worker: the real apiserver dials the
    /// worker's kubelet the way that version's args say (address type, serving
    /// certificate verification).
    pub(crate) fn assert_logs(&self, what: &str) {
        use std::time::{Duration, Instant};
        self.probe_pod(what);
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let o = self.kubectl(&["logs", "probe", "-c", "c"]);
            if o.status.success() && !o.stdout.is_empty() {
                let got = String::from_utf8_lossy(&o.stdout);
                if self.real_kubelet {
                    assert!(got.starts_with(PAUSE_LOG), "{what}: {got:?}");
                } else {
                    assert_eq!(got, mk8s_testkit::node_model::LOG_BODY, "{what}");
                }
                return;
            }
            assert!(
                Instant::now() < end,
                "{what}: kubectl logs through the real apiserver: {}\n{}",
                String::from_utf8_lossy(&o.stderr),
                self.story()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// What the operator cares about, against the real control plane: the join exits 0,
/// the Node is Ready with a fresh heartbeat and our label, `kubectl logs` works as
/// that control plane dials kubelets, the node stays Ready when one apiserver dies
/// (and when it is back), after a snap refresh and a reboot, and a rerun changes
/// nothing.
fn real_scenario(channel: &str, auth: Auth, lb: Lb, node_ip: Option<&str>) {
    real_scenario_with(channel, auth, lb, node_ip, &Setup::default())
}

fn real_scenario_with(channel: &str, auth: Auth, lb: Lb, node_ip: Option<&str>, setup: &Setup) {
    use std::time::SystemTime;
    for authz in [Authz::AlwaysAllow, Authz::RbacNode] {
        let mut w = peers_with(channel, auth, lb, authz, node_ip, setup);
        let what = |s: &str| format!("{channel} {auth:?} {lb:?} {authz:?}: {s}");
        let started = SystemTime::now();
        let (code, log) = w.run();
        assert_eq!(code, 0, "{}:\n{log}\n{}", what("the join failed"), w.story());
        w.wait_heartbeat(started, &what("after the join"));
        let node = w.node().unwrap();
        assert_eq!(node["metadata"]["labels"]["example.com/tier"], "gpu", "{}", what("labels"));
        common::assert_joined_model(&w.model, &w.root, auth != Auth::Join, &what("after the join"), &|| w.story());
        w.assert_logs(&what("after the join"));

        if auth == Auth::Join || lb == Lb::Microk8sProxy {
            w.assert_real_apiserver_proxy(&what("MicroK8s's own proxy"));
        }
        if auth == Auth::Join {
            w.assert_real_agent_joined(&what("the real cluster-agent"));
            w.wait_proxy_knows_every_apiserver(&what("before losing one"));
        }
        // One control-plane node dies: the worker keeps heartbeating through another.
        w.cp.apiservers[0].kill();
        let lost = SystemTime::now();
        w.wait_heartbeat(lost, &what("with apiserver 0 down"));
        w.assert_logs(&what("with apiserver 0 down"));
        w.cp.restart(0);

        let refreshed = SystemTime::now();
        w.model.refresh();
        w.wait_heartbeat(refreshed, &what("after a snap refresh"));
        let rebooted = SystemTime::now();
        w.model.reboot();
        w.wait_heartbeat(rebooted, &what("after a reboot"));
        w.assert_logs(&what("after a reboot"));

        w.model.clear_calls();
        let (code, log) = w.run();
        assert_eq!(code, 0, "{}:\n{log}", what("the rerun"));
        assert!(log.contains("already joined"), "{log}");
        assert_eq!(w.model.calls(), Vec::<String>::new(), "{}", what("the rerun touched the node"));

        // `maintain` after the refresh and the reboot: no drift, reported on the
        // Node through the node-local balancer with the kubelet's own credential.
        let (code, log) = w.maintain();
        assert_eq!(code, 0, "{}:\n{log}\n{}", what("maintain"), w.story());
        let node = w.node().unwrap();
        let a = &node["metadata"]["annotations"];
        assert_eq!(a["mk8s-worker.io/drift"], "", "{}: {a}", what("maintain's report"));
        assert_eq!(a["mk8s-worker.io/agent-version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(a["mk8s-worker.io/client-not-after"].is_string(), auth != Auth::Token, "{}: {a}", what("expiry"));
    }
}

#[test]
fn real_v1_20_token_traefik() {
    real_scenario("1.20/stable", Auth::Token, Lb::Traefik, Some("127.0.0.41"));
}

#[test]
fn real_v1_22_token_haproxy() {
    real_scenario("1.22/stable", Auth::Token, Lb::Haproxy, Some("127.0.0.42"));
}

#[test]
fn real_v1_26_join() {
    real_scenario("1.26/stable", Auth::Join, Lb::Own, Some("127.0.0.43"));
}

#[test]
fn real_v1_28_x509_traefik() {
    real_scenario("1.28/stable", Auth::X509, Lb::Traefik, Some("127.0.0.44"));
}

#[test]
fn real_v1_30_join() {
    real_scenario("1.30/stable", Auth::Join, Lb::Own, Some("127.0.0.45"));
}

#[test]
fn real_v1_34_x509_haproxy() {
    real_scenario("1.34/stable", Auth::X509, Lb::Haproxy, Some("127.0.0.46"));
}

/// The default balancer (`kind: builtin`) in front of three real apiservers, from
/// the oldest channel to the newest, tokens and certificates.
#[test]
fn real_v1_20_token_builtin() {
    real_scenario("1.20/stable", Auth::Token, Lb::Builtin, Some("127.0.0.48"));
}

#[test]
fn real_v1_30_x509_builtin() {
    real_scenario("1.30/stable", Auth::X509, Lb::Builtin, Some("127.0.0.49"));
}

/// MicroK8s's own apiserver-proxy as the node-local balancer (`kind:
/// microk8s-proxy`), its server list refreshed from the real `kubernetes`
/// Endpoints (EndpointSlices on 1.34).
#[test]
fn real_v1_26_token_microk8s_proxy() {
    real_scenario("1.26/stable", Auth::Token, Lb::Microk8sProxy, Some("127.0.0.50"));
}

#[test]
fn real_v1_34_x509_microk8s_proxy() {
    real_scenario("1.34/stable", Auth::X509, Lb::Microk8sProxy, Some("127.0.0.52"));
}

/// The rest of the matrix, between the rows above: every channel with the
/// traefik of the original method and with an external balancer (a real HAProxy
/// of the operator's, `mode: external`), and the kinds the rows above do not
/// pair with that channel. Fresh 1.28+ control planes read no tokens: x509.
#[test]
fn real_v1_20_token_external() {
    real_scenario("1.20/stable", Auth::Token, Lb::External, Some("127.0.0.12"));
}

#[test]
fn real_v1_20_token_haproxy() {
    real_scenario("1.20/stable", Auth::Token, Lb::Haproxy, Some("127.0.0.30"));
}

#[test]
fn real_v1_22_token_traefik() {
    real_scenario("1.22/stable", Auth::Token, Lb::Traefik, Some("127.0.0.13"));
}

#[test]
fn real_v1_22_token_external() {
    real_scenario("1.22/stable", Auth::Token, Lb::External, Some("127.0.0.14"));
}

#[test]
fn real_v1_24_token_traefik() {
    real_scenario("1.24/stable", Auth::Token, Lb::Traefik, Some("127.0.0.15"));
}

#[test]
fn real_v1_24_token_external() {
    real_scenario("1.24/stable", Auth::Token, Lb::External, Some("127.0.0.16"));
}

#[test]
fn real_v1_24_x509_haproxy() {
    real_scenario("1.24/stable", Auth::X509, Lb::Haproxy, Some("127.0.0.26"));
}

#[test]
fn real_v1_26_token_traefik() {
    real_scenario("1.26/stable", Auth::Token, Lb::Traefik, Some("127.0.0.17"));
}

#[test]
fn real_v1_26_token_external() {
    real_scenario("1.26/stable", Auth::Token, Lb::External, Some("127.0.0.18"));
}

#[test]
fn real_v1_30_x509_traefik() {
    real_scenario("1.30/stable", Auth::X509, Lb::Traefik, Some("127.0.0.19"));
}

#[test]
fn real_v1_30_x509_external() {
    real_scenario("1.30/stable", Auth::X509, Lb::External, Some("127.0.0.20"));
}

#[test]
fn real_v1_30_x509_haproxy() {
    real_scenario("1.30/stable", Auth::X509, Lb::Haproxy, Some("127.0.0.28"));
}

/// A 1.30 control plane upgraded from 1.27 keeps 1.27's args: tokens, and the
/// kubelet dialed by its Hostname address first.
#[test]
fn real_v1_30_upgraded_token_traefik() {
    let setup = Setup { upgraded: true, ..Setup::default() };
    real_scenario_with("1.30/stable", Auth::Token, Lb::Traefik, Some("127.0.0.21"), &setup);
}

#[test]
fn real_v1_30_upgraded_token_external() {
    let setup = Setup { upgraded: true, ..Setup::default() };
    real_scenario_with("1.30/stable", Auth::Token, Lb::External, Some("127.0.0.22"), &setup);
}

#[test]
fn real_v1_34_x509_traefik() {
    real_scenario("1.34/stable", Auth::X509, Lb::Traefik, Some("127.0.0.23"));
}

#[test]
fn real_v1_34_x509_external() {
    real_scenario("1.34/stable", Auth::X509, Lb::External, Some("127.0.0.24"));
}

#[test]
fn real_v1_34_x509_builtin() {
    real_scenario("1.34/stable", Auth::X509, Lb::Builtin, Some("127.0.0.55"));
}

/// A <=1.27 control plane dials the kubelet by the Node's Hostname address (the
/// worker's name): without the bundle's hosts entries (or DNS) the real
/// apiserver cannot resolve it, and `kubectl logs` fails although the Node is Ready.
#[test]
fn a_control_plane_that_cannot_resolve_worker_names_fails_logs() {
    let setup = Setup { no_hosts: true, ..Setup::default() };
    let w = peers_with("1.26/stable", Auth::Token, Lb::External, Authz::AlwaysAllow, Some("127.0.0.31"), &setup);
    let started = std::time::SystemTime::now();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}\n{}", w.story());
    w.wait_heartbeat(started, "after the join");
    let err = w.logs_error();
    assert!(err.contains(&format!("lookup {NODE}")), "{err}");
}

/// Without our `/etc/microk8s.yaml` the install hook takes MicroK8s's default
/// launch configuration (`addons: [dns]`), which the worker's cluster-agent (the
/// node model's) retries every tick forever once the node is clustered.
#[test]
fn without_our_launch_configuration_the_agent_never_settles() {
    let w =
        peers_with("1.30/stable", Auth::X509, Lb::External, Authz::AlwaysAllow, Some("127.0.0.25"), &Setup::default());
    std::fs::remove_file(w.root.join("etc/microk8s.yaml")).unwrap();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{log}\n{}", w.story());
    assert_eq!(w.model.state()["launchConfig"], "$SNAP/microk8s.default.yaml");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let l = w.model.launcher().unwrap_or_default();
    assert!(l["failures"].as_u64().unwrap_or(0) >= 2, "{l}");
    assert!(l["applied"].as_array().is_none_or(|a| a.is_empty()), "{l}");
    assert!(l["lastError"].as_str().unwrap_or("").contains("acting as a node in a cluster"), "{l}");
}

/// The real kubelet: with Debian's containerd, runc and a sandbox image built here,
/// the worker's Node turns Ready because the real kubelet says so (its status and
/// its Lease), and `kubectl logs` reads a real container's output through the real
/// apiserver and the real kubelet.
#[test]
fn real_kubelet_v1_34_x509_haproxy() {
    real_scenario("1.34/stable", Auth::X509, Lb::Haproxy, None);
}

#[test]
fn real_kubelet_v1_20_token_traefik() {
    real_scenario("1.20/stable", Auth::Token, Lb::Traefik, None);
}

#[test]
fn real_kubelet_v1_30_join() {
    real_scenario("1.30/stable", Auth::Join, Lb::Own, None);
}

#[test]
fn real_kubelet_v1_22_token_haproxy() {
    real_scenario("1.22/stable", Auth::Token, Lb::Haproxy, None);
}

#[test]
fn real_kubelet_v1_26_join() {
    real_scenario("1.26/stable", Auth::Join, Lb::Own, None);
}

#[test]
fn real_kubelet_v1_28_x509_traefik() {
    real_scenario("1.28/stable", Auth::X509, Lb::Traefik, None);
}

/// G4: apiservers on a port other than 16443. MicroK8s's join points the worker at
/// its own proxy on the port of the snap's traefik template (16443 on a real node,
/// a port of the worker's own here), whatever the control plane's port; the
/// bootstrap waits for the Node there, through the kubeconfig the join wrote. Before
/// it waited on the control plane's port and never saw the Node.
#[test]
fn real_v1_30_join_with_another_apiserver_port() {
    let worker_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for authz in [Authz::AlwaysAllow, Authz::RbacNode] {
        let setup = Setup { worker_port: Some(worker_port), ..Setup::default() };
        let w = peers_with("1.30/stable", Auth::Join, Lb::Own, authz, Some("127.0.0.47"), &setup);
        assert_ne!(w.cp.options.port, worker_port);
        let started = std::time::SystemTime::now();
        let (code, log) = w.run();
        assert_eq!(code, 0, "{authz:?}: the join failed:\n{log}\n{}", w.story());
        w.wait_heartbeat(started, &format!("{authz:?}: after the join"));
        let kubelet = w.model.kubelet().unwrap_or_default();
        assert_eq!(kubelet["server"], format!("https://127.0.0.1:{worker_port}"), "{authz:?}");
    }
}

/// `mk8s-bootstrap maintain`'s report, the merge patch of its annotations, sent
/// with a worker's own credential (a client certificate `system:node:NAME`, group
/// `system:nodes`), against the real kube-apiserver with MicroK8s 1.30's default
/// args. Accepted on its own Node under AlwaysAllow and RBAC,Node, our keys only,
/// a `null` removing one. Under RBAC,Node the Node authorizer reads only its own
/// Node, but allows `patch` of any Node and leaves "only its own" to the
/// NodeRestriction admission plugin (kubernetes v1.34.4
/// plugin/pkg/auth/authorizer/node/node_authorizer.go `authorizeNode`), which
/// MicroK8s does not enable (1.28+ default-args `--enable-admission-plugins=
/// EventRateLimit`; kube-apiserver's defaults do not include it): a worker can
/// write another worker's annotations.
#[test]
fn real_maintain_report_patches_its_own_node() {
    use mk8s_bootstrap::maintain::report::Verdict;
    use mk8s_testkit::tls::{https_call, Trust};
    for authz in [Authz::AlwaysAllow, Authz::RbacNode] {
        let mut o = Options::new(30, authz);
        o.ips.truncate(1);
        let cp = ControlPlane::start(o);
        let addr = cp.apiservers[0].addr;
        let admin = |method: &str, path: &str, body: Option<&str>| {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let chain = Some((cp.admin.rustls_chain(), cp.admin.rustls_key()));
            https_call(addr, name, Trust::Roots(cp.ca.rustls_root()), method, path, body, None, chain).unwrap()
        };
        for n in ["worker-1", "worker-2"] {
            let node = format!(
                r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{n}","annotations":{{"theirs":"kept"}}}}}}"#
            );
            let r = admin("POST", "/api/v1/nodes", Some(&node));
            assert_eq!(r.status, 201, "{authz:?}: {}", r.body);
        }
        let mut verdict = Verdict {
            node: "worker-1".into(),
            result: "drift",
            checked_at: "2026-12-03T10:00:00Z".into(),
            plan_sha256: Some("ab".repeat(32)),
            agent_version: env!("CARGO_PKG_VERSION"),
            drift: vec!["locks", "args"],
            client_not_after: Some("2027-01-31T00:00:00Z".into()),
            serving_not_after: None,
            proxy_not_after: None,
            proxy_renewal: None,
            checks: vec![],
            channel: Some("1.30/stable".into()),
            upgrade: None,
            reported: String::new(),
        };
        let leaf = cp.ca.client("system:node:worker-1", &["system:nodes"]);
        let own = Api::for_node(&cp.ca.cert_pem, "worker-1", &url(&cp), &cert(&leaf), "kubelet").unwrap();
        assert_eq!(own.patch_node(&verdict.patch()), Ok(()), "{authz:?}: its own Node");
        let got: serde_json::Value = serde_json::from_str(&admin("GET", "/api/v1/nodes/worker-1", None).body).unwrap();
        let a = &got["metadata"]["annotations"];
        assert_eq!(a["mk8s-worker.io/drift"], "locks,args", "{authz:?}: {a}");
        assert_eq!(a["mk8s-worker.io/client-not-after"], "2027-01-31T00:00:00Z");
        assert_eq!(a["theirs"], "kept", "a merge patch of ours only");
        assert!(a.get("mk8s-worker.io/serving-not-after").is_none());
        verdict.client_not_after = None;
        assert_eq!(own.patch_node(&verdict.patch()), Ok(()));
        let got: serde_json::Value = serde_json::from_str(&admin("GET", "/api/v1/nodes/worker-1", None).body).unwrap();
        assert!(got["metadata"]["annotations"].get("mk8s-worker.io/client-not-after").is_none(), "null removes");
        // Another Node, with worker-1's credential: reading it is refused under
        // RBAC,Node, writing its annotations is not (no NodeRestriction).
        let other = Api::for_node(&cp.ca.cert_pem, "worker-2", &url(&cp), &cert(&leaf), "kubelet").unwrap();
        let read = other.node();
        assert_eq!(read.is_err(), authz == Authz::RbacNode, "{authz:?}: reading another Node: {read:?}");
        assert_eq!(other.patch_node(&verdict.patch()), Ok(()), "{authz:?}: patching another Node");
        let got: serde_json::Value = serde_json::from_str(&admin("GET", "/api/v1/nodes/worker-2", None).body).unwrap();
        assert_eq!(got["metadata"]["annotations"]["mk8s-worker.io/drift"], "locks,args", "{authz:?}");
    }
}

impl common::Joined for Peers {
    fn root(&self) -> &std::path::Path {
        &self.root
    }
    fn model(&self) -> &mk8s_testkit::node_model::Model {
        &self.model
    }
    fn image(&self) -> &common::Tree {
        &self.image
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn run(&self) -> (i32, String) {
        Peers::run(self)
    }
    fn story(&self) -> String {
        Peers::story(self)
    }
    fn annotations(&self) -> serde_json::Value {
        self.node().and_then(|n| n.pointer("/metadata/annotations").cloned()).unwrap_or_default()
    }
    fn assert_worker(&self, what: &str) {
        common::assert_no_local_control_plane(&self.model, what, &|| Peers::story(self));
        self.wait_heartbeat(std::time::SystemTime::now(), what);
    }
}

/// An `auth: x509` certificate outside its validity on the node's clock: the real
/// kube-apiserver answers 401 to it (on both authorization modes), and the
/// bootstrap says which end of the validity is the problem, with both moments,
/// instead of blaming the CA: one ended (its `not-before` too old for its
/// `validity-days`), one not valid yet (a clock behind). Nothing past the check.
#[test]
fn x509_certificates_outside_their_validity_are_named() {
    for authz in [Authz::AlwaysAllow, Authz::RbacNode] {
        for (not_before, days, says) in [
            ("2020-01-01", 1, ["the certificate ended at 2020-01-02", "later `client-certificates.not-before`"]),
            ("2099-01-01", 365, ["the certificate is valid from 2099-01-01T00:00:00Z", "clock is behind"]),
        ] {
            let what = format!("{authz:?} {not_before}");
            let validity = |f: FactsYaml| f.auth_x509(not_before, days);
            let setup = Setup { facts: Some(&validity), one_control_plane: true, ..Setup::default() };
            let w = peers_with("1.34/stable", Auth::X509, Lb::Builtin, authz, Some("127.0.0.56"), &setup);
            common::edit_plan(&w.root, |plan| plan.timing.auth_grace_secs = 2);
            let (code, log) = w.run();
            assert_eq!(code, 78, "{what}:\n{log}");
            assert!(log.contains("rejected the kubelet certificate for worker-1 (401)"), "{what}:\n{log}");
            for s in says {
                assert!(log.contains(s), "{what}: {s:?}:\n{log}");
            }
            assert!(!log.contains("--client-ca-file"), "{what}: blamed the CA:\n{log}");
            assert!(w.node().is_none(), "{what}: a Node registered");
        }
    }
}
