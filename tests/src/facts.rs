//! Cluster facts for tests, built as values and serialized, instead of YAML
//! pasted together with `format!`. The shapes below follow `docs/cluster-facts.md`
//! on their own: the test kit does not link the generator, whose parser is what
//! the tests exercise.
//!
//! ```
//! use mk8s_testkit::facts::{FactsYaml, Worker};
//! let yaml = FactsYaml::new("c")
//!     .channel("1.30/stable")
//!     .ca_file("ca.crt")
//!     .control_plane("cp-1", "10.0.0.2")
//!     .lb_haproxy()
//!     .health_check("1s", "500ms")
//!     .worker(Worker::new("w-1").address("10.0.0.5").label("example.com/tier", "gpu"))
//!     .yaml();
//! assert!(yaml.contains("kind: haproxy"));
//! ```
//!
//! Facts that test the parser itself (malformed or hostile YAML, unknown keys, a
//! particular YAML syntax) stay literal in their tests.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

/// A whole facts file: `cluster:` and `workers:`.
#[derive(Debug, Clone, Serialize)]
pub struct FactsYaml {
    cluster: Cluster,
    workers: Vec<Worker>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    microk8s: Option<MicroK8s>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<Ca>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    microk8s_join: Option<MicroK8sJoin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificates: Option<ClientCertificates>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apiserver_port: Option<u16>,
    control_plane: Vec<ControlPlane>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_balancer: Option<LoadBalancer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<Dns>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_cidr: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
struct MicroK8s {
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_snap: Option<LocalSnap>,
}

#[derive(Debug, Clone, Serialize)]
struct LocalSnap {
    file: String,
    assert: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    base: Option<SnapFile>,
}

#[derive(Debug, Clone, Serialize)]
struct SnapFile {
    file: String,
    assert: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
struct Ca {
    cert_file: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
struct MicroK8sJoin {
    token_ttl_hours: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClientCertificates {
    not_before: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    validity_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
struct ControlPlane {
    name: String,
    address: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
struct LoadBalancer {
    mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traefik: Option<Traefik>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<HealthCheck>,
}

/// `load-balancer.traefik`: where the node has the program, or where to fetch it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Traefik {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Traefik {
    /// Fetched from `url` when absent, refused unless its sha256 is `sha256`.
    pub fn fetched(version: &str, url: &str, sha256: &str) -> Traefik {
        Traefik {
            version: Some(version.into()),
            url: Some(url.into()),
            sha256: Some(sha256.into()),
            ..Traefik::default()
        }
    }

    /// Installed at `path` instead of the default.
    pub fn path(mut self, path: &str) -> Traefik {
        self.path = Some(path.into());
        self
    }
}

#[derive(Debug, Clone, Serialize)]
struct HealthCheck {
    interval: String,
    timeout: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
struct Dns {
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_dns: Option<String>,
}

/// One entry of `workers:`. A name alone converts into one (`.worker("w-1")`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Worker {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    kubelet_args: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    retired: bool,
}

impl Worker {
    pub fn new(name: &str) -> Worker {
        Worker {
            name: name.into(),
            address: None,
            labels: BTreeMap::new(),
            kubelet_args: Vec::new(),
            generation: None,
            epoch: None,
            retired: false,
        }
    }

    pub fn address(mut self, address: &str) -> Worker {
        self.address = Some(address.into());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Worker {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn kubelet_arg(mut self, arg: &str) -> Worker {
        self.kubelet_args.push(arg.into());
        self
    }

    /// `auth: microk8s-join`: raised for a new join token.
    pub fn generation(mut self, generation: u32) -> Worker {
        self.generation = Some(generation);
        self
    }

    /// `epoch`: raised when a new machine replaces this worker under its name.
    pub fn epoch(mut self, epoch: u32) -> Worker {
        self.epoch = Some(epoch);
        self
    }

    /// `retired: true`: taken out of the cluster.
    pub fn retired(mut self) -> Worker {
        self.retired = true;
        self
    }
}

impl From<&str> for Worker {
    fn from(name: &str) -> Worker {
        Worker::new(name)
    }
}

impl FactsYaml {
    /// A cluster named `name`, with nothing else set.
    pub fn new(name: &str) -> FactsYaml {
        FactsYaml { cluster: Cluster { name: name.into(), ..Cluster::default() }, workers: Vec::new() }
    }

    /// `microk8s.channel`.
    pub fn channel(mut self, channel: &str) -> FactsYaml {
        self.cluster.microk8s.get_or_insert_with(MicroK8s::default).channel = Some(channel.into());
        self
    }

    /// `microk8s.local-snap`: MicroK8s from files on the node.
    pub fn local_snap(mut self, file: &str, assert: &str) -> FactsYaml {
        let local = LocalSnap { file: file.into(), assert: assert.into(), base: None };
        self.cluster.microk8s.get_or_insert_with(MicroK8s::default).local_snap = Some(local);
        self
    }

    /// `microk8s.local-snap.base`: the base snap, also from files (after `local_snap`).
    pub fn local_base_snap(mut self, file: &str, assert: &str) -> FactsYaml {
        let local = self.cluster.microk8s.as_mut().and_then(|m| m.local_snap.as_mut()).expect("local_snap first");
        local.base = Some(SnapFile { file: file.into(), assert: assert.into() });
        self
    }

    /// `ca.cert-file`: relative to the facts file, or absolute.
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> FactsYaml {
        self.cluster.ca = Some(Ca { cert_file: path.as_ref().display().to_string() });
        self
    }

    /// `auth: token`, said explicitly (it is also the default).
    pub fn auth_token(mut self) -> FactsYaml {
        self.cluster.auth = Some("token".into());
        self
    }

    /// `auth: x509`, certificates valid from `not_before` (YYYY-MM-DD) for
    /// `validity_days` (None: the generator's default).
    pub fn auth_x509(mut self, not_before: &str, validity_days: impl Into<Option<u32>>) -> FactsYaml {
        self.cluster.auth = Some("x509".into());
        self.cluster.client_certificates =
            Some(ClientCertificates { not_before: not_before.into(), validity_days: validity_days.into() });
        self
    }

    /// `auth: microk8s-join`.
    pub fn auth_join(mut self) -> FactsYaml {
        self.cluster.auth = Some("microk8s-join".into());
        self
    }

    /// `microk8s-join.token-ttl-hours`.
    pub fn join_token_ttl_hours(mut self, hours: u32) -> FactsYaml {
        self.cluster.microk8s_join = Some(MicroK8sJoin { token_ttl_hours: hours });
        self
    }

    /// `apiserver-port`.
    pub fn port(mut self, port: u16) -> FactsYaml {
        self.cluster.apiserver_port = Some(port);
        self
    }

    /// One more entry of `control-plane`.
    pub fn control_plane(mut self, name: &str, address: &str) -> FactsYaml {
        self.cluster.control_plane.push(ControlPlane { name: name.into(), address: address.into() });
        self
    }

    /// `load-balancer: { mode: node-local, kind: KIND }`, any kind by name
    /// (`builtin`, `traefik`, `haproxy`, `microk8s-proxy`).
    pub fn lb_node_local(mut self, kind: &str) -> FactsYaml {
        self.cluster.load_balancer =
            Some(LoadBalancer { mode: "node-local".into(), kind: Some(kind.into()), ..LoadBalancer::default() });
        self
    }

    pub fn lb_builtin(self) -> FactsYaml {
        self.lb_node_local("builtin")
    }

    /// `kind: traefik`, with its `traefik:` settings when there are any.
    pub fn lb_traefik(self, traefik: Option<Traefik>) -> FactsYaml {
        let mut f = self.lb_node_local("traefik");
        f.lb().traefik = traefik;
        f
    }

    pub fn lb_haproxy(self) -> FactsYaml {
        self.lb_node_local("haproxy")
    }

    pub fn lb_microk8s_proxy(self) -> FactsYaml {
        self.lb_node_local("microk8s-proxy")
    }

    /// `load-balancer: { mode: external, address: HOST, port: PORT }` (port None:
    /// the apiserver port).
    pub fn lb_external(mut self, host: &str, port: impl Into<Option<u16>>) -> FactsYaml {
        self.cluster.load_balancer = Some(LoadBalancer {
            mode: "external".into(),
            address: Some(host.into()),
            port: port.into(),
            ..LoadBalancer::default()
        });
        self
    }

    /// `load-balancer.health-check` of the balancer set before.
    pub fn health_check(mut self, interval: &str, timeout: &str) -> FactsYaml {
        self.lb().health_check = Some(HealthCheck { interval: interval.into(), timeout: timeout.into() });
        self
    }

    /// `dns.cluster-domain` and `dns.cluster-dns`.
    pub fn dns(mut self, cluster_domain: &str, cluster_dns: &str) -> FactsYaml {
        self.cluster.dns =
            Some(Dns { cluster_domain: Some(cluster_domain.into()), cluster_dns: Some(cluster_dns.into()) });
        self
    }

    /// `pod-cidr`.
    pub fn pod_cidr(mut self, cidr: &str) -> FactsYaml {
        self.cluster.pod_cidr = Some(cidr.into());
        self
    }

    /// One more entry of `workers`.
    pub fn worker(mut self, worker: impl Into<Worker>) -> FactsYaml {
        self.workers.push(worker.into());
        self
    }

    /// The entry of worker `name` (every one of that name) through `edit`.
    pub fn edit_worker(mut self, name: &str, edit: impl Fn(Worker) -> Worker) -> FactsYaml {
        self.workers = self.workers.into_iter().map(|w| if w.name == name { edit(w) } else { w }).collect();
        self
    }

    /// Every worker of `workers`, in order.
    pub fn workers(mut self, workers: impl IntoIterator<Item = Worker>) -> FactsYaml {
        self.workers.extend(workers);
        self
    }

    /// The facts file's text.
    pub fn yaml(&self) -> String {
        serde_yaml::to_string(self).expect("facts serialize")
    }

    fn lb(&mut self) -> &mut LoadBalancer {
        self.cluster.load_balancer.as_mut().expect("a load balancer set before its settings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text reads back as the documented shape, values of every type intact.
    #[test]
    fn serializes_the_documented_keys() {
        let yaml = FactsYaml::new("c")
            .channel("1.30/stable")
            .ca_file("ca.crt")
            .auth_x509("2026-01-01", 3650)
            .port(16443)
            .control_plane("cp-1", "10.0.0.2")
            .lb_traefik(Some(Traefik::fetched("3.7.15", "https://x.invalid/t.tar.gz", "ab").path("/opt/t")))
            .health_check("1s", "500ms")
            .pod_cidr("10.2.0.0/16")
            .worker(Worker::new("w").address("10.0.0.5").label("example.com/tier", "gpu").kubelet_arg("--max-pods=200"))
            .worker("w-2")
            .yaml();
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let c = &v["cluster"];
        assert_eq!(c["microk8s"]["channel"], "1.30/stable", "{yaml}");
        assert_eq!(c["ca"]["cert-file"], "ca.crt");
        assert_eq!(c["auth"], "x509");
        assert_eq!(c["client-certificates"]["not-before"], "2026-01-01");
        assert_eq!(c["client-certificates"]["validity-days"], 3650);
        assert_eq!(c["apiserver-port"], 16443);
        assert_eq!(c["control-plane"][0]["address"], "10.0.0.2");
        assert_eq!(c["load-balancer"]["mode"], "node-local");
        assert_eq!(c["load-balancer"]["traefik"]["version"], "3.7.15");
        assert_eq!(c["load-balancer"]["health-check"]["timeout"], "500ms");
        assert_eq!(c["pod-cidr"], "10.2.0.0/16");
        assert_eq!(v["workers"][0]["labels"]["example.com/tier"], "gpu");
        assert_eq!(v["workers"][0]["kubelet-args"][0], "--max-pods=200");
        assert_eq!(v["workers"][1], serde_yaml::from_str::<serde_yaml::Value>("{ name: w-2 }").unwrap());
        assert!(c.get("dns").is_none() && c.get("load-balancer").unwrap().get("port").is_none(), "{yaml}");
    }

    /// A string that YAML would read as another type stays a string.
    #[test]
    fn strings_stay_strings() {
        let yaml = FactsYaml::new("c").lb_traefik(Some(Traefik { version: Some("3.6".into()), ..Traefik::default() }));
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml.yaml()).unwrap();
        assert_eq!(v["cluster"]["load-balancer"]["traefik"]["version"], "3.6");
    }
}
