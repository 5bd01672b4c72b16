//! Helpers shared by the scenario files: a real control plane with facts and
//! secrets beside it, kubeconfigs for the admin and for nodes, and runs of the
//! real binary.
#![allow(dead_code)]

pub mod rbac;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::pki::Leaf;
use mk8s_testkit::upstream::{ControlPlane, Options};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mk8s-ctl");

/// The facts' workers: (name, address).
pub const WORKERS: &[(&str, &str)] = &[("worker-1", "10.0.0.11"), ("worker-2", "10.0.0.12"), ("worker-3", "10.0.0.13")];

/// One real apiserver (MicroK8s 1.34's default args, `authz` as given) and, in
/// its directory, facts naming its CA (channel 1.34, workers [`WORKERS`] plus
/// `extra` workers), the seed secrets and an admin kubeconfig.
pub struct Cluster {
    pub cp: ControlPlane,
    pub facts: PathBuf,
    pub secrets: PathBuf,
    pub admin: PathBuf,
}

impl Cluster {
    pub fn start(authz: Authz, extra: &[Worker]) -> Cluster {
        let mut o = Options::new(34, authz);
        o.ips.truncate(1);
        let cp = ControlPlane::start(o);
        let dir = cp.dir.path().to_path_buf();
        fs::write(dir.join("ca.crt"), &cp.ca.cert_pem).unwrap();
        let facts = FactsYaml::new("ctl")
            .channel("1.34/stable")
            .ca_file("ca.crt")
            .control_plane("cp-1", "10.0.0.2")
            .lb_builtin()
            .workers(WORKERS.iter().map(|(n, a)| Worker::new(n).address(a)))
            .workers(extra.iter().cloned());
        fs::write(dir.join("cluster.yaml"), facts.yaml()).unwrap();
        let secrets = dir.join("secrets.yaml");
        fs::copy(mk8s_testkit::workspace().join("fixtures/seed/secrets.yaml"), &secrets).unwrap();
        fs::set_permissions(&secrets, fs::Permissions::from_mode(0o600)).unwrap();
        let admin = cp.admin_kubeconfig(0);
        Cluster { facts: dir.join("cluster.yaml"), secrets, admin, cp }
    }

    pub fn dir(&self) -> &Path {
        self.cp.dir.path()
    }

    /// A kubeconfig (written as JSON, which is YAML) for `user`'s certificate.
    pub fn kubeconfig_for(&self, name: &str, user: &Leaf) -> PathBuf {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let doc = serde_json::json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {
                "server": format!("https://{}", self.cp.apiservers[0].addr),
                "certificate-authority-data": b64(&self.cp.ca.cert_pem)}}],
            "users": [{"name": "u", "user": {
                "client-certificate-data": b64(&user.cert_pem), "client-key-data": b64(&user.key_pem)}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        });
        let path = self.dir().join(format!("{name}.kubeconfig"));
        fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
        path
    }

    /// A node's kubelet client credential as the cluster CA issues it:
    /// `CN=system:node:NAME, O=system:nodes`.
    pub fn node_kubeconfig(&self, node: &str) -> PathBuf {
        let leaf = self.cp.ca.client(&format!("system:node:{node}"), &["system:nodes"]);
        self.kubeconfig_for(node, &leaf)
    }

    /// A kube-rs client from a kubeconfig file, as the tool makes one.
    pub async fn client(kubeconfig: &Path) -> kube::Client {
        mk8s_ctl::client::connect(Some(kubeconfig)).await.unwrap()
    }

    /// The real binary with `--kubeconfig` the admin's and `args`:
    /// (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        run_with(&self.admin, args)
    }
}

/// The real binary with this kubeconfig: (exit code, stdout, stderr).
pub fn run_with(kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).arg("--kubeconfig").arg(kubeconfig).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}
