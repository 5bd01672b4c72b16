//! Day 2, against the real control plane: an `auth: x509` worker's kubelet client
//! certificate outlives the one `mk8s-gen` issued. The real kubelet (with
//! `--rotate-certificates` and its store under `${SNAP_COMMON}`), the real
//! kube-apiserver and the real kube-controller-manager (MicroK8s 1.34's default
//! args: csrapproving, and csrsigning with the cluster CA) renew it through a
//! `kube-apiserver-client-kubelet` CSR; the node model refreshes the snap as
//! snapd does (revisioned `$SNAP_DATA`, two revisions retained).
//!
//! Proven: the Node stays Ready past the first certificate's `notAfter`; two
//! refreshes later the rotated certificate still loads (no second CSR); MicroK8s's
//! own `--cert-dir=${SNAP_DATA}/certs` strands it after two refreshes (the control);
//! under RBAC,Node the bundle's `apply-day2.sh` is what lets the renewal through,
//! and without it the CSR stays pending. kube-proxy's certificate renews through
//! the request `mk8s-bootstrap maintain` files, `mk8s-ctl approve` approves and
//! kube-controller-manager signs.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mk8s_bootstrap::certs::Cert;
use mk8s_testkit::apiserver::Authz;
use mk8s_testkit::facts::FactsYaml;
use mk8s_testkit::upstream::ControlPlane;

use crate::common;
use crate::real_apiserver::{peers_with, Auth, Lb, Peers, Setup, NODE};

const CHANNEL: &str = "1.34/stable";
const KUBELET_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Where the plan moves the kubelet's certificate store.
const STORE: &str = "var/snap/microk8s/common/var/lib/kubelet/pki";
/// MicroK8s's own `--cert-dir` (`default-args/kubelet`), through `current`.
const DEFAULT_STORE: &str = "var/snap/microk8s/current/certs";

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `not-before` for certificates of `NODE` in cluster `real` valid for one day
/// that expire `lead` from now: the day, less the node's validity spread (which
/// `mk8s-gen` derives from the seed, the cluster and the node).
/// How long after the facts are made the first certificate of the expiring cases
/// ends: long enough for three real apiservers to start and the worker to join on
/// a loaded machine (a full `scripts/test` runs two tests at a time beside the
/// real kubelet and the boot tier).
///
/// The lead counts from the facts' edit, which [`peers_with`] makes once it holds
/// the machine's real-kubelet lock: made before it, the minutes another test held
/// that lock ate the lead, and the first certificate had ended before the join
/// (the apiserver's 401 for the whole join, seen on CI).
const FIRST_CERT_LEAD: Duration = Duration::from_secs(200);

fn expiring_in(lead: Duration) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ca = mk8s_testkit::pki::Ca::new("10.152.183.1");
    std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
    let facts = FactsYaml::new("real").channel(CHANNEL).ca_file("ca.crt").auth_x509("2026-01-01", 1);
    let facts = facts.control_plane("cp-0", "127.0.0.2").lb_haproxy().worker(NODE);
    let (facts, secrets) = common::facts_and_secrets(&facts.yaml(), dir.path(), &ca.key_pem);
    let signer = secrets.signer(&facts.ca, &facts.name).unwrap();
    // 2026-01-01T00:00:00Z.
    let day = time::OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap();
    let v = mk8s_gen::pki::Validity { not_before: day, days: 1 };
    let issued =
        mk8s_gen::pki::issue(&signer, mk8s_gen::pki::Identity::Kubelet, mk8s_gen::pki::NodeId::first(NODE), v).unwrap();
    let spread = Cert::from_pem(&issued.cert_pem).unwrap().not_after - (day.unix_timestamp() + 86_400);
    let at = time::OffsetDateTime::from_unix_timestamp(now() + lead.as_secs() as i64 - 86_400 - spread).unwrap();
    let (y, mo, d) = (at.year(), at.month() as u8, at.day());
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z", at.hour(), at.minute(), at.second())
}

/// The certificate a kubelet's store holds as current (its `-current.pem`).
fn store_cert(root: &Path, store: &str) -> Option<Cert> {
    let text = std::fs::read_to_string(root.join(store).join("kubelet-client-current.pem")).ok()?;
    Cert::from_pem(&text)
}

/// The client certificate `mk8s-gen` issued, from the installed kubeconfig.
fn issued_cert(root: &Path) -> Cert {
    use base64::Engine as _;
    let path = root.join("var/snap/microk8s/current/credentials/kubelet.config");
    let text = std::fs::read_to_string(&path).unwrap();
    let k: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let b64 = k["users"][0]["user"]["client-certificate-data"].as_str().expect("embedded");
    let pem = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    Cert::from_pem(&String::from_utf8(pem).unwrap()).unwrap()
}

/// The node's renewal CSRs: (approved, has a certificate).
fn node_csrs(w: &Peers) -> Vec<(bool, bool)> {
    node_requests(w, KUBELET_SIGNER).into_iter().map(|c| (c.approved, c.issued)).collect()
}

/// One of the node's CSRs.
struct Request {
    approved: bool,
    issued: bool,
    /// The messages of its conditions.
    messages: Vec<String>,
}

/// The node's CSRs for `signer`.
fn node_requests(w: &Peers, signer: &str) -> Vec<Request> {
    let o = w.kubectl(&["get", "csr", "-o", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let user = format!("system:node:{NODE}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["spec"]["username"] == user.as_str() && c["spec"]["signerName"] == signer)
        .map(|c| {
            let conds = c["status"]["conditions"].as_array().cloned().unwrap_or_default();
            Request {
                approved: conds.iter().any(|k| k["type"] == "Approved" && k["status"] == "True"),
                issued: c["status"]["certificate"].as_str().is_some_and(|s| !s.is_empty()),
                messages: conds.iter().filter_map(|k| k["message"].as_str().map(str::to_string)).collect(),
            }
        })
        .collect()
}

/// Wait until the store's current certificate is one the cluster signed (not
/// `issued`, from the cluster CA, about a year long); returns it.
fn wait_rotated(w: &Peers, store: &str, issued: &Cert, what: &str) -> Cert {
    let ca = Cert::from_pem(&w.cp.ca.cert_pem).unwrap();
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(c) = store_cert(&w.root, store) {
            if c.tbs != issued.tbs {
                assert!(c.signed_by(&ca), "{what}: the rotated certificate is not from the cluster CA");
                assert!(c.not_after > now() + 300 * 86_400, "{what}: not kube-controller-manager's year");
                assert_eq!(c.common_name.as_deref(), Some("system:node:worker-1"), "{what}");
                return c;
            }
        }
        assert!(Instant::now() < end, "{what}: never rotated: CSRs {:?}\n{}", node_csrs(w), w.story());
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn wait_csrs(w: &Peers, n: usize, what: &str) {
    let end = Instant::now() + Duration::from_secs(180);
    while node_csrs(w).len() < n {
        assert!(Instant::now() < end, "{what}: {} CSR(s), want {n}\n{}", node_csrs(w).len(), w.story());
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The bundle's apply-day2.sh, run by the operator on control-plane node 0 with
/// the real kubectl as MicroK8s's.
fn apply_day2(cp: &ControlPlane, bundle: &Path) {
    let kubectl = mk8s_testkit::tools::require("kubectl");
    let o = std::process::Command::new(mk8s_testkit::tools::require("bash"))
        .arg(bundle.join("apply-day2.sh"))
        .env("SNAP_DATA", &cp.apiservers[0].snap_data)
        .env("MK8S_KUBECTL", format!("{} --kubeconfig {}", kubectl.display(), cp.admin_kubeconfig(0).display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "apply-day2.sh: {}", String::from_utf8_lossy(&o.stderr));
}

fn joined(w: &Peers, what: &str) {
    let started = SystemTime::now();
    let (code, log) = w.run();
    assert_eq!(code, 0, "{what}: the join failed:\n{log}\n{}", w.story());
    w.wait_heartbeat(started, what);
}

/// Two snap refreshes, each followed by a fresh heartbeat.
fn refresh_twice(w: &Peers, what: &str) {
    for i in 1..=2 {
        let at = SystemTime::now();
        w.model.refresh();
        w.wait_heartbeat(at, &format!("{what}: after refresh {i}"));
    }
}

#[test]
fn x509_nodes_stay_ready_past_their_first_certificate_and_two_refreshes() {
    let expiring = |f: FactsYaml| f.auth_x509(&expiring_in(FIRST_CERT_LEAD), 1);
    let setup = Setup { facts: Some(&expiring), ..Setup::default() };
    let w = peers_with(CHANNEL, Auth::X509, Lb::Haproxy, Authz::AlwaysAllow, None, &setup);
    joined(&w, "AlwaysAllow");
    let issued = issued_cert(&w.root);
    let lead = FIRST_CERT_LEAD.as_secs() as i64;
    assert!(
        issued.not_after > now() && issued.not_after < now() + lead,
        "the test's certificate: {}",
        issued.not_after
    );
    let rotated = wait_rotated(&w, STORE, &issued, "AlwaysAllow");
    assert_eq!(node_csrs(&w), [(true, true)]);

    // Past the first certificate's notAfter: still heartbeating, so on the rotated one.
    while now() <= issued.not_after + 1 {
        std::thread::sleep(Duration::from_millis(500));
    }
    w.wait_heartbeat(SystemTime::now(), "after the first certificate expired");

    refresh_twice(&w, "AlwaysAllow");
    let after = store_cert(&w.root, STORE).expect("the store survives refreshes");
    assert_eq!(after.tbs, rotated.tbs, "the kubelet fell back to its first certificate and renewed again");
    assert_eq!(node_csrs(&w).len(), 1, "a second renewal: the store did not load");
}

/// The control: with MicroK8s's own `--cert-dir=${SNAP_DATA}/certs` the store's
/// absolute link points into the revision snapd removes at the second refresh; the
/// kubelet falls back to the kubeconfig's certificate and files a second CSR (with
/// that certificate expired, the node would be lost).
#[test]
fn the_default_cert_dir_strands_the_rotated_certificate_after_two_refreshes() {
    let w = peers_with(CHANNEL, Auth::X509, Lb::Haproxy, Authz::AlwaysAllow, None, &Setup::default());
    common::edit_plan(&w.root, |plan| plan.kubelet_args.retain(|l| !l.starts_with("--cert-dir=")));
    joined(&w, "default cert-dir");
    let issued = issued_cert(&w.root);
    wait_rotated(&w, DEFAULT_STORE, &issued, "default cert-dir");
    let at = SystemTime::now();
    w.model.refresh();
    w.wait_heartbeat(at, "default cert-dir: after refresh 1");
    assert_eq!(node_csrs(&w).len(), 1, "one refresh: the link still resolves through the retained revision");
    let at = SystemTime::now();
    w.model.refresh();
    w.wait_heartbeat(at, "default cert-dir: after refresh 2");
    wait_csrs(&w, 2, "default cert-dir: after refresh 2, the stranded store");
    let link = w.root.join(DEFAULT_STORE).join("kubelet-client-current.pem");
    let target = std::fs::read_link(&link).unwrap();
    assert!(target.is_absolute(), "the kubelet's link is absolute: {}", target.display());
}

#[test]
fn under_rbac_the_bundles_binding_lets_the_renewal_through() {
    let setup = Setup { started: Some(&apply_day2), ..Setup::default() };
    let w = peers_with(CHANNEL, Auth::X509, Lb::Haproxy, Authz::RbacNode, None, &setup);
    joined(&w, "RBAC,Node with apply-day2.sh");
    let issued = issued_cert(&w.root);
    wait_rotated(&w, STORE, &issued, "RBAC,Node with apply-day2.sh");
    refresh_twice(&w, "RBAC,Node with apply-day2.sh");
    assert_eq!(node_csrs(&w).len(), 1);
}

#[test]
fn under_rbac_without_the_binding_the_renewal_stays_pending() {
    let w = peers_with(CHANNEL, Auth::X509, Lb::Haproxy, Authz::RbacNode, None, &Setup::default());
    joined(&w, "RBAC,Node without apply-day2.sh");
    wait_csrs(&w, 1, "RBAC,Node without apply-day2.sh");
    // kube-controller-manager looked at it (it does at once) and left it pending.
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        assert_eq!(node_csrs(&w), [(false, false)], "approved without the binding");
        std::thread::sleep(Duration::from_secs(1));
    }
    let issued = issued_cert(&w.root);
    let current = store_cert(&w.root, STORE).expect("the store holds the first certificate");
    assert_eq!(current.tbs, issued.tbs, "the kubelet keeps the certificate it has");
}

/// Retired after a rotation: `leave` (MicroK8s kept) removes the store the real
/// kubelet filled because our `--cert-dir` sent it there (a rotated key is a
/// credential), and nothing of the worker runs.
#[test]
fn leave_removes_the_rotated_store() {
    let w = peers_with(CHANNEL, Auth::X509, Lb::Haproxy, Authz::AlwaysAllow, None, &Setup::default());
    joined(&w, "AlwaysAllow");
    let issued = issued_cert(&w.root);
    wait_rotated(&w, STORE, &issued, "AlwaysAllow");
    let (code, out, err) = common::run_leave(&w.root, &w.model, &[]);
    assert_eq!(code, 0, "{out}\n{err}\n{}", w.story());
    assert!(out.contains("the kubelet's rotated client and serving certificates"), "{out}");
    assert!(!w.root.join(STORE).exists(), "the rotated store is still there");
    assert_eq!(w.model.running_units(), Vec::<String>::new(), "{}", w.story());
    assert_eq!(w.model.enabled_units(), Vec::<String>::new(), "{}", w.story());
}

const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// `mk8s-ctl approve --watch`, as the operator runs it with the admin's
/// credential; stopped when dropped.
struct Approver {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Approver {
    fn start(w: &Peers) -> Approver {
        let ctl_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ctl");
        let ctl = mk8s_testkit::node_model::workspace_binary("mk8s-ctl", "cargo build -p mk8s-ctl", &ctl_dir);
        let log = w.facts_file.with_file_name("approve.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = std::process::Command::new(ctl)
            .arg("--kubeconfig")
            .arg(w.cp.admin_kubeconfig(0))
            .args(["approve", "--watch", "--cluster"])
            .arg(&w.facts_file)
            .arg("--audit")
            .arg(w.facts_file.with_file_name("audit.jsonl"))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Approver { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Approver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The certificate the kubelet serves to a handshake that names no server, as the
/// apiserver's, dialing the kubelet at its InternalIP.
fn served_cert(w: &Peers) -> Option<Cert> {
    let node = w.node()?;
    let addresses = node["status"]["addresses"].as_array()?;
    let ip = addresses.iter().find(|a| a["type"] == "InternalIP")?["address"].as_str()?.to_string();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64()?;
    let o = std::process::Command::new(mk8s_testkit::tools::require("openssl"))
        .args(["s_client", "-noservername", "-connect", &format!("{ip}:{port}")])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    Cert::from_pem(&String::from_utf8_lossy(&o.stdout))
}

/// The serving pairs in the kubelet's store, by the file's name.
fn store_serving_pairs(root: &Path) -> Vec<(String, Cert)> {
    let dir = root.join(STORE);
    let mut out: Vec<(String, Cert)> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let stamped = name.starts_with("kubelet-server-2") && name.ends_with(".pem");
            let cert = Cert::from_pem(&std::fs::read_to_string(e.path()).ok()?)?;
            stamped.then_some((name, cert))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The kubelet's serving certificate outlives the one `mk8s-gen` issued: the join
/// seeds it into the kubelet's store, the kubelet renews it through a
/// `kubelet-serving` CSR that `mk8s-ctl approve` approves (the worker's own name
/// and address) and kube-controller-manager signs, and serves the renewed one to
/// the apiserver, which verifies it (`--kubelet-certificate-authority`, 1.28+):
/// `kubectl logs` works past the first certificate's end.
#[test]
fn x509_serving_certificates_renew_through_mk8s_ctl_approve() {
    let expiring = |f: FactsYaml| f.auth_x509(&expiring_in(FIRST_CERT_LEAD), 1);
    let setup = Setup { facts: Some(&expiring), ..Setup::default() };
    let w = peers_with(CHANNEL, Auth::X509, Lb::Haproxy, Authz::AlwaysAllow, None, &setup);
    let approver = Approver::start(&w);
    joined(&w, "serving");
    let ca = Cert::from_pem(&w.cp.ca.cert_pem).unwrap();
    let seeded: Vec<Cert> = store_serving_pairs(&w.root)
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| c.not_after < now() + FIRST_CERT_LEAD.as_secs() as i64)
        .collect();
    assert_eq!(seeded.len(), 1, "the join seeded the store with the issued pair: {:?}", store_serving_pairs(&w.root));
    let seeded = &seeded[0];
    assert!(seeded.not_after > now() - 5, "the test's certificate: {}", seeded.not_after);
    let end = Instant::now() + Duration::from_secs(90);
    let renewed = loop {
        if let Some(c) = served_cert(&w).filter(|c| c.tbs != seeded.tbs) {
            break c;
        }
        let csrs = node_requests(&w, SERVING_SIGNER).iter().map(|c| (c.approved, c.issued)).collect::<Vec<_>>();
        assert!(
            Instant::now() < end,
            "never served a renewed certificate: CSRs {csrs:?}\n{}\n{}",
            approver.log(),
            w.story()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(renewed.signed_by(&ca), "the renewed serving certificate is not from the cluster CA");
    assert!(renewed.not_after > now() + 300 * 86_400, "not kube-controller-manager's year: {}", renewed.not_after);
    assert_eq!(renewed.common_name.as_deref(), Some("system:node:worker-1"));
    let requests = node_requests(&w, SERVING_SIGNER);
    assert_eq!(requests.len(), 1, "one renewal");
    assert!(requests[0].approved && requests[0].issued);
    assert!(requests[0].messages.iter().any(|m| m.starts_with("mk8s-ctl: ")), "{:?}", requests[0].messages);

    // Past the first certificate's notAfter: the apiserver still reaches the kubelet.
    while now() <= seeded.not_after + 1 {
        std::thread::sleep(Duration::from_millis(500));
    }
    w.assert_logs("after the first serving certificate expired");
    let served = served_cert(&w).expect("the kubelet serves");
    assert_eq!(served.tbs, renewed.tbs, "the served certificate changed again");
}

const PROXY_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
const PROXY_KUBECONFIG: &str = "var/snap/microk8s/current/credentials/proxy.config";

/// The client certificate in kube-proxy's kubeconfig.
fn proxy_cert(root: &Path) -> Cert {
    use base64::Engine as _;
    let text = std::fs::read_to_string(root.join(PROXY_KUBECONFIG)).unwrap();
    let k: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let b64 = k["users"][0]["user"]["client-certificate-data"].as_str().expect("embedded");
    let pem = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    Cert::from_pem(&String::from_utf8(pem).unwrap()).unwrap()
}

/// The status file's `proxyRenewal`.
fn proxy_renewal(root: &Path) -> String {
    let text = std::fs::read_to_string(root.join("var/lib/mk8s-worker/maintain.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["proxyRenewal"].as_str().unwrap_or_default().to_string()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// kube-proxy's certificate, which `mk8s-gen` issued to end ~220 s after the
/// facts were made (about 100 s after the join): `maintain` files a request with the kubelet's (rotated) credential;
/// with no approver it stays pending across runs (one request, the kubeconfig
/// untouched, the key kept 0600); `mk8s-ctl approve --watch` approves it, the
/// controller-manager signs it, and the next `maintain`, after the first
/// certificate ended, installs it and restarts kube-proxy, which then reads its
/// Node with it. A further run changes nothing.
fn kube_proxy_certificate_renews(authz: Authz, started: Option<&crate::real_apiserver::Operator>, what: &str) {
    // The control plane starts after the facts are made: on a loaded machine that
    // start alone has taken 100 s.
    let expiring = |f: FactsYaml| f.auth_x509(&expiring_in(Duration::from_secs(220)), 1);
    let setup = Setup { facts: Some(&expiring), started, ..Setup::default() };
    let w = peers_with(CHANNEL, Auth::X509, Lb::Haproxy, authz, None, &setup);
    joined(&w, what);
    let first = proxy_cert(&w.root);
    assert!(first.not_after > now() && first.not_after < now() + 220, "{what}: the test's certificate");
    let before = std::fs::read(w.root.join(PROXY_KUBECONFIG)).unwrap();
    let pending = w.root.join("var/lib/mk8s-worker/kube-proxy-renewal.json");

    // No approver: pending, twice, one request, nothing changed.
    for run in 1..=2 {
        let (code, log) = w.maintain();
        assert_ne!(code, 78, "{what}: run {run}: {log}");
        assert!(proxy_renewal(&w.root).starts_with("pending: request mk8s-kube-proxy-worker-1-"), "{what}: {log}");
        let requests = node_requests(&w, PROXY_SIGNER);
        assert_eq!(requests.len(), 1, "{what}: run {run}: one request, reused");
        assert!(!requests[0].approved && !requests[0].issued, "{what}: decided without an approver");
        assert_eq!(std::fs::read(w.root.join(PROXY_KUBECONFIG)).unwrap(), before, "{what}: kubeconfig changed");
        assert_eq!(mode(&pending), 0o600, "{what}: the pending key");
    }

    let approver = Approver::start(&w);
    let end = Instant::now() + Duration::from_secs(60);
    while !node_requests(&w, PROXY_SIGNER).first().is_some_and(|r| r.approved && r.issued) {
        assert!(Instant::now() < end, "{what}: not approved and signed\n{}\n{}", approver.log(), w.story());
        std::thread::sleep(Duration::from_millis(500));
    }
    while now() <= first.not_after + 1 {
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = w.model.dir.join("kube-proxy.json");
    let _ = std::fs::remove_file(&status);
    let (code, log) = w.maintain();
    assert_ne!(code, 78, "{what}: {log}");
    assert!(proxy_renewal(&w.root).starts_with("renewed: "), "{what}: {}\n{log}", proxy_renewal(&w.root));
    let renewed = proxy_cert(&w.root);
    let ca = Cert::from_pem(&w.cp.ca.cert_pem).unwrap();
    assert!(renewed.signed_by(&ca), "{what}: not from the cluster CA");
    assert!(renewed.not_after > now() + 300 * 86_400, "{what}: not a year: {}", renewed.not_after);
    assert_eq!((renewed.common_name.as_deref(), renewed.organizations.len()), (Some("system:kube-proxy"), 0));
    assert_eq!(mode(&w.root.join(PROXY_KUBECONFIG)), 0o600);
    assert!(!pending.exists(), "{what}: the pending key stayed");
    // kube-proxy, restarted after the first certificate ended, reads its Node.
    let end = Instant::now() + Duration::from_secs(60);
    while !w.model.kube_proxy().is_some_and(|v| v["ok"] == true) {
        assert!(Instant::now() < end, "{what}: kube-proxy: {:?}\n{}", w.model.kube_proxy(), w.story());
        std::thread::sleep(Duration::from_millis(500));
    }
    let requests = node_requests(&w, PROXY_SIGNER);
    assert!(requests[0].messages.iter().any(|m| m.starts_with("mk8s-ctl: ")), "{:?}", requests[0].messages);

    let after = std::fs::read(w.root.join(PROXY_KUBECONFIG)).unwrap();
    let (code, log) = w.maintain();
    assert_ne!(code, 78, "{what}: {log}");
    assert_eq!(std::fs::read(w.root.join(PROXY_KUBECONFIG)).unwrap(), after, "{what}: a second renewal");
    assert_eq!(node_requests(&w, PROXY_SIGNER).len(), 1, "{what}: a second request");
    drop(approver);
}

#[test]
fn x509_kube_proxy_certificate_renews_through_maintain_and_mk8s_ctl_approve() {
    kube_proxy_certificate_renews(Authz::AlwaysAllow, None, "AlwaysAllow");
}

#[test]
fn under_rbac_the_kube_proxy_certificate_renews_with_the_bundle_applied() {
    kube_proxy_certificate_renews(Authz::RbacNode, Some(&apply_day2), "RBAC,Node with apply-day2.sh");
}
