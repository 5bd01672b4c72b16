//! Replace and retire against three real
//! kube-apiservers (MicroK8s 1.26's default args: they read `known_tokens.csv`)
//! on `AlwaysAllow` and `RBAC,Node`: the operator regenerates the bundle from the
//! edited facts (`epoch: 2` on a replaced worker, `retired: true` on a retired
//! one), runs its `merge-known-tokens.sh` on each control-plane node's
//! `SNAP_DATA` and restarts that node's apiserver, one node at a time. The
//! script's `systemctl` is a stub that records the restart it asks for; the test
//! then restarts that apiserver (`ControlPlane::restart`), as systemd would.
//! Then a whole replacement through the real node agent (`peers_with`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mk8s_gen::model::Facts;
use mk8s_gen::pki::Identity;
use mk8s_gen::secrets::Secrets;
use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::facts::{FactsYaml, Worker};
use mk8s_testkit::pki::{Ca, Leaf};
use mk8s_testkit::upstream::{ControlPlane, Options};

use crate::common;

const ADMIN: &str = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0";
const AUTHZ: [Authz; 2] = [Authz::AlwaysAllow, Authz::RbacNode];

struct Site {
    cp: ControlPlane,
    ca: Arc<Ca>,
    dir: tempfile::TempDir,
    /// Where the stub `systemctl` is, and the log of what it was asked.
    bin: PathBuf,
}

impl Site {
    /// The control plane with MicroK8s's admin line and the token lines of
    /// `workers` (as an earlier merge left them).
    fn start(authz: Authz, workers: &[Worker]) -> Site {
        let ca = Arc::new(Ca::new("10.152.183.1"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        let mut options = Options::new(26, authz);
        options.ca = Some(ca.clone());
        let mut site = Site { cp: ControlPlane::new(options), ca, bin: dir.path().join("bin"), dir };
        let (facts, secrets) = site.facts(workers, false);
        let lines: String =
            facts.workers.iter().map(|w| mk8s_gen::auth::token::token_lines(&facts, &secrets, w)).collect();
        for a in &site.cp.apiservers {
            std::fs::write(
                a.snap_data.join("credentials/known_tokens.csv"),
                format!("{ADMIN},admin,admin,\"system:masters\"\n{lines}"),
            )
            .unwrap();
        }
        site.cp.start_all();
        std::fs::create_dir_all(&site.bin).unwrap();
        let stub = site.bin.join("systemctl");
        let log = site.dir.path().join("systemctl.log");
        std::fs::write(&stub, format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display())).unwrap();
        std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        site
    }

    /// The facts with `workers` on this control plane (`x509`: `auth: x509`).
    fn facts(&self, workers: &[Worker], x509: bool) -> (Facts, Secrets) {
        let facts = FactsYaml::new("real").channel("1.26/stable").ca_file("ca.crt").port(self.cp.options.port);
        let facts = if x509 { facts.auth_x509("2026-01-01", 3650) } else { facts };
        let facts =
            self.cp.options.ips.iter().enumerate().fold(facts, |f, (i, ip)| f.control_plane(&format!("cp-{i}"), ip));
        let facts = facts.workers(workers.iter().cloned());
        common::facts_and_secrets(&facts.yaml(), self.dir.path(), &self.ca.key_pem)
    }

    /// `mk8s-gen control-plane` for `workers`: the bundle's directory.
    fn bundle(&self, workers: &[Worker], name: &str) -> PathBuf {
        let (facts, secrets) = self.facts(workers, false);
        let dir = self.dir.path().join(name);
        let serving: Vec<_> = facts.workers.iter().collect();
        mk8s_gen::controlplane::write_bundle(&facts, &secrets, &serving, &dir).unwrap();
        dir
    }

    /// The bundle's `merge-known-tokens.sh` on control-plane node `i`; it must
    /// succeed and ask for the apiserver's restart, which then happens.
    fn merge_and_restart(&mut self, bundle: &Path, i: usize) {
        let a = &self.cp.apiservers[i];
        let log = self.dir.path().join("systemctl.log");
        let before = std::fs::read_to_string(&log).unwrap_or_default().lines().count();
        let o = std::process::Command::new(mk8s_testkit::tools::require("bash"))
            .arg(bundle.join("merge-known-tokens.sh"))
            .env("SNAP_DATA", &a.snap_data)
            .env("MK8S_READYZ_URL", format!("https://{}/readyz", a.addr))
            .env("PATH", format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default()))
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "merge on cp-{i}: {text}");
        let restarts = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(restarts.lines().count(), before + 1, "merge on cp-{i} asked for one restart: {text}");
        assert!(restarts.lines().last().is_some_and(|l| l.starts_with("restart ")), "{restarts}");
        self.cp.restart(i);
    }

    /// The status of `GET /api/v1/nodes/NODE` on apiserver `i` with `token`:
    /// 401 when the apiserver does not know the token, 404 (or 403 for an
    /// identity the Node authorizer does not let read it) when it does.
    fn status(&self, i: usize, node: &str, token: &str) -> u16 {
        let path = format!("/api/v1/nodes/{node}");
        mk8s_testkit::tls::https_get(self.cp.apiservers[i].addr, &path, Some(&self.ca), Some(token)).unwrap().status
    }

    fn tokens(&self, facts: &Facts, secrets: &Secrets, node: &str) -> [String; 2] {
        let w = facts.worker(node).unwrap();
        [Identity::Kubelet, Identity::KubeProxy].map(|id| secrets.token(&facts.name, id, w.id()))
    }

    /// Whether apiserver `i` accepts (anything but 401) each of `tokens`.
    fn accepted(&self, i: usize, node: &str, tokens: &[String]) -> Vec<bool> {
        tokens.iter().map(|t| self.status(i, node, t) != 401).collect()
    }
}

/// Retire, token mode: the retired worker's kubelet and kube-proxy tokens work
/// on each apiserver until that apiserver restarted after the regenerated
/// bundle's merge, then get 401; the other worker's tokens work throughout.
#[test]
fn a_retired_token_workers_tokens_get_401_after_the_rolling_merge() {
    for authz in AUTHZ {
        let workers = [Worker::new("worker-1"), Worker::new("worker-2")];
        let mut site = Site::start(authz, &workers);
        let (facts, secrets) = site.facts(&workers, false);
        let (gone, kept) = (site.tokens(&facts, &secrets, "worker-2"), site.tokens(&facts, &secrets, "worker-1"));
        let n = site.cp.apiservers.len();
        for i in 0..n {
            assert_eq!(site.accepted(i, "worker-2", &gone), [true, true], "{authz:?} cp-{i}: before");
        }
        let bundle = site.bundle(&[Worker::new("worker-1"), Worker::new("worker-2").retired()], "retired");
        for i in 0..n {
            site.merge_and_restart(&bundle, i);
            for j in 0..n {
                let refused = j <= i;
                assert_eq!(site.accepted(j, "worker-2", &gone), [!refused; 2], "{authz:?}: cp-{j} after cp-{i}");
                assert_eq!(site.accepted(j, "worker-1", &kept), [true, true], "{authz:?}: cp-{j} after cp-{i}");
            }
        }
    }
}

/// Replace, token mode: `epoch: 2` gives the worker new tokens; until the
/// regenerated bundle is merged an apiserver knows only the old machine's, and
/// after its merge and restart only the new machine's (the lines are replaced by
/// user-id, nothing else changes).
#[test]
fn a_replaced_token_worker_gets_new_tokens_and_the_old_ones_get_401() {
    for authz in AUTHZ {
        let old = [Worker::new("worker-1"), Worker::new("worker-2")];
        let mut site = Site::start(authz, &old);
        let new = [Worker::new("worker-1").epoch(2), Worker::new("worker-2")];
        let (facts, secrets) = site.facts(&old, false);
        let (was, other) = (site.tokens(&facts, &secrets, "worker-1"), site.tokens(&facts, &secrets, "worker-2"));
        let (facts, secrets) = site.facts(&new, false);
        let now = site.tokens(&facts, &secrets, "worker-1");
        assert!(was.iter().all(|t| !now.contains(t)), "epoch 2 derives new tokens");
        assert_eq!(site.tokens(&facts, &secrets, "worker-2"), other, "another worker's tokens stay");
        let bundle = site.bundle(&new, "replaced");
        let n = site.cp.apiservers.len();
        for i in 0..n {
            site.merge_and_restart(&bundle, i);
            for j in 0..n {
                let merged = j <= i;
                assert_eq!(site.accepted(j, "worker-1", &was), [!merged; 2], "{authz:?}: old, cp-{j} after cp-{i}");
                assert_eq!(site.accepted(j, "worker-1", &now), [merged; 2], "{authz:?}: new, cp-{j} after cp-{i}");
                assert_eq!(site.accepted(j, "worker-2", &other), [true, true], "{authz:?}: cp-{j} after cp-{i}");
            }
        }
        // The new machine's kubelet token is system:node:worker-1: the Node
        // authorizer lets it read its own Node (absent here: 404).
        assert_eq!(site.status(0, "worker-1", &now[0]), 404, "{authz:?}");
    }
}

/// Replace, x509: `epoch: 2` issues the worker a new key and serial under the
/// same subject; the old machine's certificate still authenticates (a
/// certificate cannot be revoked, and the retire denylist would refuse the new
/// machine too: same name). docs/day2.md, Replace, says what bounds it.
#[test]
fn a_replaced_x509_worker_gets_a_new_key_and_the_old_certificate_stays_valid() {
    let mut site = Site::start(Authz::RbacNode, &[]);
    let leaf = |site: &Site, workers: &[Worker]| {
        let (facts, secrets) = site.facts(workers, true);
        let mk8s_gen::model::Auth::X509(validity) = facts.auth else { panic!("x509 facts") };
        let signer = secrets.signer(&facts.ca, &facts.name).unwrap();
        let w = facts.worker("worker-1").unwrap();
        let c = mk8s_gen::pki::issue(&signer, Identity::Kubelet, w.id(), validity).unwrap();
        Leaf::from_pem(&c.cert_pem, &c.key_pem).unwrap()
    };
    let (was, now) = (leaf(&site, &[Worker::new("worker-1")]), leaf(&site, &[Worker::new("worker-1").epoch(2)]));
    assert_ne!(was.key_pem, now.key_pem);
    assert_ne!(was.cert_pem, now.cert_pem);
    let get = |site: &Site, l: &Leaf| {
        let a = site.cp.apiservers[0].addr;
        mk8s_testkit::tls::https_get_as(a, "/api/v1/nodes/worker-1", Some(&site.ca), None, Some(l)).unwrap().status
    };
    assert_eq!((get(&site, &was), get(&site, &now)), (404, 404));
    site.cp.restart(0);
    assert_eq!(get(&site, &was), 404, "a restart revokes no certificate");
}

// ---------------------------------------------------------------------------
// A whole replacement through the real node agent (`peers_with`): the worker's
// facts say `epoch: 2`, the operator merged the regenerated bundle before the new
// machine boots (the control plane holds only the new machine's token lines), and
// the Node the old machine left is still there, with its labels and no epoch.

/// The operator's view before the new machine boots: the old machine's Node
/// (another label, no `example.com/tier`, no epoch annotation), and in token mode
/// the old machine's kubelet token refused by every apiserver.
fn stale_node_left(cp: &ControlPlane, auth: crate::real_apiserver::Auth) {
    use mk8s_testkit::tls::{https_call, Trust};
    let node = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"worker-1","labels":{"example.com/old":"yes"},"annotations":{"mk8s-worker.io/plan-sha256":"00"}}}"#;
    let addr = cp.apiservers[0].addr;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let chain = Some((cp.admin.rustls_chain(), cp.admin.rustls_key()));
    let r = https_call(addr, name, Trust::Roots(cp.ca.rustls_root()), "POST", "/api/v1/nodes", Some(node), None, chain)
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    if auth == crate::real_apiserver::Auth::Token {
        let text = std::fs::read_to_string(mk8s_testkit::workspace().join("fixtures/seed/secrets.yaml")).unwrap();
        let old =
            Secrets::parse(&text).unwrap().token("real", Identity::Kubelet, mk8s_gen::pki::NodeId::first("worker-1"));
        for a in &cp.apiservers {
            let got = mk8s_testkit::tls::https_get(a.addr, "/api/v1/nodes/worker-1", Some(&cp.ca), Some(&old)).unwrap();
            assert_eq!(got.status, 401, "the old machine's token on {}", a.addr);
        }
    }
}

fn a_replacement_joins_under_the_same_name(channel: &str, auth: crate::real_apiserver::Auth, node_ip: Option<&str>) {
    use crate::real_apiserver::{peers_with, Lb, Setup};
    for authz in AUTHZ {
        let what = |s: &str| format!("{channel} {auth:?} {authz:?}: {s}");
        let facts = |f: FactsYaml| f.edit_worker("worker-1", |w| w.epoch(2));
        let started = move |cp: &ControlPlane, _: &Path| stale_node_left(cp, auth);
        let setup = Setup { facts: Some(&facts), started: Some(&started), ..Setup::default() };
        let w = peers_with(channel, auth, Lb::Builtin, authz, node_ip, &setup);
        let since = std::time::SystemTime::now();
        let (code, log) = w.run();
        assert_eq!(code, 0, "{}:\n{log}\n{}", what("the replacement's join"), w.story());
        assert!(log.contains("left by an earlier machine (epoch 1)"), "{}:\n{log}", what("stale Node"));
        w.wait_heartbeat(since, &what("after the join"));
        let node = w.node().unwrap();
        let labels = &node["metadata"]["labels"];
        assert_eq!(labels["example.com/tier"], "gpu", "{}: {labels}", what("the facts' label put back"));
        assert_eq!(labels["example.com/old"], "yes", "{}: {labels}", what("other labels kept"));
        assert_eq!(node["metadata"]["annotations"]["mk8s-worker.io/epoch"], "2", "{}", what("epoch recorded"));
        let plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(w.root.join("etc/mk8s-worker/plan.json")).unwrap()).unwrap();
        assert_eq!(plan["node"]["epoch"], 2, "{}", what("the plan's epoch"));
    }
}

#[test]
fn real_replacement_v1_26_token() {
    a_replacement_joins_under_the_same_name("1.26/stable", crate::real_apiserver::Auth::Token, Some("127.0.0.147"));
}

#[test]
fn real_replacement_v1_30_x509() {
    a_replacement_joins_under_the_same_name("1.30/stable", crate::real_apiserver::Auth::X509, Some("127.0.0.148"));
}

/// The real kubelet and containerd take over the old machine's Node.
#[test]
fn real_kubelet_replacement_v1_34_x509() {
    a_replacement_joins_under_the_same_name("1.34/stable", crate::real_apiserver::Auth::X509, None);
}
