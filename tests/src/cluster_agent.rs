//! The simulated MicroK8s cluster-agent of a control-plane node: the one place the
//! worker join's server side is modelled (canonical/microk8s-cluster-agent, cited
//! as `CA BRANCH:path:lines`; canonical/microk8s as `MK BRANCH:path:lines`).
//!
//! Where it is still used, and why: the real agent ([`crate::real_agent`]) runs in
//! the real-peer tier (joins on 1.26 and 1.30; 1.24, 1.27 and 1.34 are vendored
//! too; `native_join.rs`'s zero-touch joins and `launch_config.rs` use them);
//! this model serves the testkit's `microk8s_join.rs` and fault injection (an agent stopped and restarted mid-join, every
//! request recorded to show what a join sent). `tests/tests/it/agent_differential.rs`
//! sends it and the real agents the same requests and holds it to their answers.
//!
//! What is real: TLS with a `server.crt` signed by the cluster CA (the agent
//! serves the node's `certs/server.crt`, `MK 1.30:microk8s-resources/default-args/cluster-agent:L1-4`,
//! signed by `certs/ca.crt`/`ca.key` in `gen_server_cert`,
//! `MK 1.30:microk8s-resources/actions/common/utils.sh:L586-589`); the two routes a
//! worker join uses with the real request and response JSON fields; the token
//! files in the control plane's `$SNAP_DATA/credentials/` with the agent's
//! semantics (so a control-plane script can be run against the same directory);
//! status codes and error bodies as upstream; certificates signed with the
//! cluster CA.
//!
//! Routes:
//! - `POST /cluster/api/v2.0/join` (`CA 1.24:pkg/api/v2/join.go`, `CA 1.27:pkg/api/v2/join.go`,
//!   `CA 1.30:pkg/api/v2/join.go:L101-251`, identical in 1.34), in upstream's order:
//!   1. the token is consumed **first** (`ConsumeClusterToken`; 500 `{"error":"Invalid token"}`,
//!      `CA 1.30:pkg/api/v2/join.go:L102-104`, 1.24 L83-85, 1.27 L85-87): a single-use token is
//!      gone even when a later check refuses the join;
//!   2. no `var/lock/ha-cluster`: 501 (L105-107);
//!   3. `port` (a string) differs from this agent's `--bind` port: 502 (L109-114);
//!   4. the joining IP is the agent's own: 503 (L116-120);
//!   5. the hostname check: unless kube-apiserver prefers InternalIP for kubelets
//!      (1.28+ fresh: `--kubelet-preferred-address-types=InternalIP,...`,
//!      `MK 1.30:microk8s-resources/default-args/kube-apiserver:L31`; skip added in
//!      `CA 1.28` commit 2f74d08, `CA 1.30:pkg/api/v2/api_util.go:L71-83`), the joining
//!      hostname must resolve **on the control plane** to the request's source IP, else
//!      400 (`CA 1.30:pkg/api/v2/join.go:L122-126`; unconditional in `CA 1.24:…:L103-106`,
//!      `CA 1.27:…:L105-108`; `GetRemoteHost`, `CA 1.30:pkg/util/remote.go:L9-20`);
//!   6. `no-cert-reissue` is created on the control plane (L167-169);
//!   7. a worker join registers `TOKEN-kubelet` and `TOKEN-proxy` as certificate-request
//!      tokens (L180-192) and answers 200 with `ca`, `callback_token`, `apiport`,
//!      `api_authz_mode`, `kubelet_args`, `hostname_override` (the joining IP),
//!      `service_account_key: ""`, `ca_key: null`, `control_plane_nodes` and, 1.27+,
//!      `cluster_cidr` (`CA 1.30:pkg/api/v2/join.go:L48-97,L170-192`; 1.24 has no
//!      `cluster_cidr`, `CA 1.24:pkg/api/v2/join.go:L43-78`).
//! - `POST /cluster/api/v1.0/sign-cert` (`CA 1.30:pkg/api/v1/sign_cert.go:L8-33`, the same in
//!   every branch): `{"token", "request"}` -> `{"certificate"}`; the certificate-request
//!   token is consumed whether or not it carries a TTL (`CA 1.30:pkg/snap/snap.go:L256-267`);
//!   every error is a 500 (`CA 1.30:pkg/api/v1/register.go:L51-55`). The CSR is signed with
//!   the cluster CA for 3650 days; 1.28+ copy its subjectAltName (`sign_certificate`,
//!   `MK 1.30:microk8s-resources/actions/common/utils.sh:L1127-1151`, via
//!   `CA 1.30:pkg/snap/snap.go:L352-363`), 1.24-1.27 sign with plain `openssl x509 -req`
//!   and copy none (`CA 1.24:pkg/snap/snap.go:L315-330`, `CA 1.27:pkg/snap/snap.go:L352-367`).
//!   **The subject is not restricted**: whatever CN and O the CSR asks for is signed,
//!   `O=system:masters` included. A usable join token is therefore a cluster-admin
//!   credential.
//!
//! Tokens (`CA 1.30:pkg/snap/snap.go:L240-284`, `CA 1.30:pkg/util/token.go:L38-116`):
//! `credentials/cluster-tokens.txt` lines are `token` (single use: removed when used)
//! or `token|<unix expiry>` (reusable until it expires, never removed);
//! `credentials/persistent-cluster-tokens.txt` (1.27+; absent in 1.24-1.26) is read
//! first and never consumed; `credentials/certs-request-tokens.txt` tokens are always
//! consumed. The first line whose token matches decides; removal drops the first
//! line that *starts with* the token (`RemoveToken`, `strings.HasPrefix`).
//!
//! Deviations, on purpose: the agent listens on a free port, while the `port` a
//! join must send is its configured `--bind` port (`"25000"`, the default on both
//! sides: `MK 1.30:microk8s-resources/default-args/cluster-agent:L1`); control-plane
//! joins, the dqlite membership check and the Calico patch are not modelled (a
//! control-plane join answers 501 here).

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::node_model::Row;
use crate::pki::Ca;
use crate::tls::{server_config, Handler, Request, Response, TlsServer};

/// What the control plane behind the agent is.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// "1.30/stable": decides the version differences above.
    pub channel: String,
    /// A 1.28+ control plane upgraded from 1.27 or older keeps its old
    /// kube-apiserver args, so the hostname check stays on.
    pub upgraded: bool,
    /// `--bind` port of this agent as configured (what a join must send as `port`).
    pub bind_port: String,
    /// kube-apiserver `--secure-port` (`apiport` in the answer).
    pub apiport: u16,
    /// kube-apiserver `--authorization-mode`.
    pub authz_mode: String,
    /// The control plane's own `args/kubelet`, sent whole as `kubelet_args`.
    pub kubelet_args: String,
    /// kube-proxy `--cluster-cidr` (`cluster_cidr`, 1.27+).
    pub cluster_cidr: String,
    /// InternalIPs of the control-plane nodes (`control_plane_nodes`).
    pub control_plane_nodes: Vec<String>,
}

impl AgentConfig {
    /// A control plane at `channel` with MicroK8s's defaults: its kubelet args are
    /// the control plane's `args/kubelet` (`MK 1.30:microk8s-resources/default-args/kubelet`),
    /// its pod CIDR `10.1.0.0/16` (`MK 1.30:microk8s-resources/default-args/kube-proxy:L2`).
    pub fn new(channel: &str, apiport: u16) -> AgentConfig {
        AgentConfig {
            channel: channel.to_string(),
            upgraded: false,
            bind_port: "25000".into(),
            apiport,
            authz_mode: "AlwaysAllow".into(),
            kubelet_args: crate::microk8s_args::control_plane_kubelet_args(crate::node_model::minor_of(channel)),
            cluster_cidr: "10.1.0.0/16".into(),
            control_plane_nodes: Vec::new(),
        }
    }

    /// What the control plane's release does (the node model's table).
    fn row(&self) -> &'static Row {
        Row::of(&self.channel)
    }

    /// kube-apiserver prefers InternalIP over Hostname for kubelets: MicroK8s 1.28+
    /// installed fresh (`MK 1.30:microk8s-resources/default-args/kube-apiserver:L31`).
    pub fn prefers_internal_ip(&self) -> bool {
        self.row().fresh_apiserver_kubelet_args && !self.upgraded
    }
}

/// One request the agent saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub body: String,
    pub peer: Option<SocketAddr>,
    pub status: u16,
}

struct State {
    cfg: AgentConfig,
    ca: Arc<Ca>,
    snap_data: PathBuf,
    /// What the control plane's resolver (/etc/hosts, DNS) knows: name -> IPs.
    hosts: HashMap<String, Vec<String>>,
    log: Vec<Seen>,
}

pub struct SimClusterAgent {
    pub addr: SocketAddr,
    /// DER of the agent's `server.crt` (what a joining node sees).
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    /// The control plane's `$SNAP_DATA` (credentials/, var/lock/).
    pub snap_data: PathBuf,
    state: Arc<Mutex<State>>,
    config: Arc<rustls::ServerConfig>,
    server: Option<TlsServer>,
}

/// The error body of the agent: `{"error":"<message, first rune upper-cased>"}`
/// (`CA 1.30:pkg/httputil/httputil.go:L21-36`).
fn error(status: u16, msg: &str) -> Response {
    let mut c = msg.chars();
    let msg = match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    };
    Response::json(status, json!({ "error": msg }).to_string())
}

/// `IsValidToken` (`CA 1.30:pkg/util/token.go:L38-73`): (valid, has a TTL).
pub fn is_valid_token(token: &str, file: &Path) -> (bool, bool) {
    if token.is_empty() {
        return (false, false);
    }
    let token = token.trim();
    let text = fs::read_to_string(file).unwrap_or_default();
    for line in text.lines() {
        let parts: Vec<&str> = line.trim().splitn(2, '|').collect();
        if parts[0] != token {
            continue;
        }
        if parts.len() == 1 {
            return (true, false);
        }
        return match parts[1].parse::<i64>() {
            Ok(expiry) => (unix_now() < expiry, true),
            Err(_) => (false, true),
        };
    }
    (false, false)
}

/// `RemoveToken` (`CA 1.30:pkg/util/token.go:L91-116`): drop the first line that
/// starts with the token.
fn remove_token(token: &str, file: &Path) {
    let text = fs::read_to_string(file).unwrap_or_default();
    let mut removed = false;
    let mut out = String::new();
    for line in text.lines() {
        if !removed && line.starts_with(token) {
            removed = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let _ = fs::write(file, out);
}

/// `AppendToken` (`CA 1.30:pkg/util/token.go:L75-89`).
fn append_token(token: &str, file: &Path) {
    use std::io::Write;
    if let Some(d) = file.parent() {
        let _ = fs::create_dir_all(d);
    }
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(file) {
        let _ = writeln!(f, "{token}");
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl State {
    fn cred(&self, name: &str) -> PathBuf {
        self.snap_data.join("credentials").join(name)
    }

    /// `ConsumeClusterToken` (`CA 1.30:pkg/snap/snap.go:L240-254`; 1.24 without the
    /// persistent file, `CA 1.24:pkg/snap/snap.go:L221-232`).
    fn consume_cluster_token(&self, token: &str) -> bool {
        if self.cfg.row().persistent_tokens && is_valid_token(token, &self.cred("persistent-cluster-tokens.txt")).0 {
            return true;
        }
        let file = self.cred("cluster-tokens.txt");
        let (valid, ttl) = is_valid_token(token, &file);
        if valid && !ttl {
            remove_token(token, &file);
        }
        valid
    }

    /// `ConsumeCertificateRequestToken` (`CA 1.30:pkg/snap/snap.go:L256-267`).
    fn consume_cert_token(&self, token: &str) -> bool {
        let file = self.cred("certs-request-tokens.txt");
        let (valid, _) = is_valid_token(token, &file);
        if valid {
            remove_token(token, &file);
        }
        valid
    }

    fn join(&self, req: &Request, own: SocketAddr) -> Response {
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return error(400, "invalid character in the request body");
        };
        // Field types as the Go struct has them (`CA 1.30:pkg/api/v2/join.go:L28-45`):
        // a non-string `port` fails json.Unmarshal with 400.
        let text = |k: &str| -> Result<String, Response> {
            match body.get(k) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(error(
                    400,
                    &format!("json: cannot unmarshal {other} into Go struct field JoinRequest.{k} of type string"),
                )),
            }
        };
        let (token, hostname, port) = match (text("token"), text("hostname"), text("port")) {
            (Ok(t), Ok(h), Ok(p)) => (t, h, p),
            (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
        };
        // `WorkerOnlyField`: JSON true or "as-worker" (`CA 1.30:pkg/api/v2/join.go:L22-25`).
        let worker = matches!(body.get("worker"), Some(Value::Bool(true)))
            || body.get("worker").and_then(|w| w.as_str()) == Some("as-worker");
        if !self.consume_cluster_token(&token) {
            return error(500, "invalid token");
        }
        if !self.snap_data.join("var/lock/ha-cluster").exists() {
            return error(501, "not possible to join. This is not an HA MicroK8s cluster");
        }
        if port != self.cfg.bind_port {
            return error(502, &format!("the port of the cluster agent port has to be set to {}", self.cfg.bind_port));
        }
        let remote_ip = req.peer.map(|p| p.ip().to_string()).unwrap_or_default();
        let host_ip = req.header("host").and_then(|h| h.rsplit_once(':')).map(|(h, _)| h.to_string());
        if host_ip.as_deref().unwrap_or(&own.ip().to_string()) == remote_ip {
            return error(503, &format!("the joining node has the same IP ({remote_ip}) as the node we contact"));
        }
        let resolves = self.hosts.get(&hostname).is_some_and(|ips| ips.contains(&remote_ip));
        if !self.cfg.prefers_internal_ip() && !resolves {
            return error(
                400,
                &format!(
                    "the hostname ({hostname}) of the joining node does not resolve to the IP {remote_ip:?}. Refusing join"
                ),
            );
        }
        let _ = fs::create_dir_all(self.snap_data.join("var/lock"));
        let _ = fs::write(self.snap_data.join("var/lock/no-cert-reissue"), "");
        if !worker {
            return error(501, "control-plane joins are not modelled by the simulated cluster-agent");
        }
        append_token(&format!("{token}-kubelet"), &self.cred("certs-request-tokens.txt"));
        append_token(&format!("{token}-proxy"), &self.cred("certs-request-tokens.txt"));
        let callback = fs::read_to_string(self.cred("callback-token.txt")).unwrap_or_default();
        let mut resp = json!({
            "ca": self.ca.cert_pem,
            "callback_token": callback.trim(),
            "apiport": self.cfg.apiport.to_string(),
            "api_authz_mode": self.cfg.authz_mode,
            "kubelet_args": self.cfg.kubelet_args,
            "hostname_override": remote_ip,
            "service_account_key": "",
            "ca_key": Value::Null,
            "control_plane_nodes": self.cfg.control_plane_nodes,
        });
        if self.cfg.row().cluster_cidr_in_join {
            resp["cluster_cidr"] = json!(self.cfg.cluster_cidr);
        }
        Response::json(200, resp.to_string())
    }

    fn sign_cert(&self, req: &Request) -> Response {
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return error(400, "invalid character in the request body");
        };
        let token = body["token"].as_str().unwrap_or("");
        let csr = body["request"].as_str().unwrap_or("");
        if !self.consume_cert_token(token) {
            return error(500, "invalid token");
        }
        let signed = if self.cfg.row().agent_signs_x509_v3 {
            self.ca.sign_csr(csr, true, 3650)
        } else {
            // The program the agent runs, as it runs it (`CA 1.24:pkg/snap/snap.go:L315-330`,
            // `CA 1.27:pkg/snap/snap.go:L352-367`): an X.509 v1 certificate.
            crate::pki::openssl_x509_req(csr, &self.snap_data.join("certs"))
        };
        match signed {
            Ok(pem) => Response::json(200, json!({ "certificate": pem }).to_string()),
            Err(e) => error(500, &format!("failed to sign certificate: {e}")),
        }
    }
}

fn handle(state: &Mutex<State>, own: SocketAddr, req: &Request) -> Response {
    let st = state.lock().unwrap();
    let path = req.path.split('?').next().unwrap_or("");
    match (req.method.as_str(), path) {
        ("POST", "/cluster/api/v2.0/join") => st.join(req, own),
        ("POST", "/cluster/api/v1.0/sign-cert") => st.sign_cert(req),
        // Wrong method on a known route: 404, empty body (`CA 1.30:pkg/api/v2/register.go:L14-35`).
        (_, "/cluster/api/v2.0/join" | "/cluster/api/v1.0/sign-cert") => Response::json(404, ""),
        // The catch-all (`CA 1.30:pkg/server/server.go:L24-27`).
        _ => error(404, "not found"),
    }
}

impl SimClusterAgent {
    /// Start the agent of the control-plane node at `ip` (a loopback address) on a
    /// free port, with a `server.crt` signed by `ca` (SANs as MicroK8s's
    /// `csr.conf.template`: 127.0.0.1, 10.152.183.1, the node's IP, kubernetes.*).
    /// `snap_data` is that node's `$SNAP_DATA` (created, with `var/lock/ha-cluster`
    /// as every install since 1.19 makes it, and a callback token).
    pub fn start(ca: Arc<Ca>, ip: &str, cfg: AgentConfig, snap_data: &Path) -> SimClusterAgent {
        SimClusterAgent::start_on(ca, ip, 0, cfg, snap_data)
    }

    /// [`SimClusterAgent::start`] on a given port (0: a free one), e.g. 25000, the
    /// port a generated join URL names.
    pub fn start_on(ca: Arc<Ca>, ip: &str, port: u16, cfg: AgentConfig, snap_data: &Path) -> SimClusterAgent {
        let leaf = ca.server(&["127.0.0.1", "10.152.183.1", ip, "kubernetes", "kubernetes.default"]);
        fs::create_dir_all(snap_data.join("credentials")).unwrap();
        fs::create_dir_all(snap_data.join("var/lock")).unwrap();
        fs::write(snap_data.join("var/lock/ha-cluster"), "").unwrap();
        // The cluster CA where the snap keeps it (the agent's `openssl` reads these).
        fs::create_dir_all(snap_data.join("certs")).unwrap();
        fs::write(snap_data.join("certs/ca.crt"), &ca.cert_pem).unwrap();
        let key = snap_data.join("certs/ca.key");
        fs::write(&key, &ca.key_pem).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let callback = hex::encode(Sha256::digest(format!("{ip}{}", unix_now()).as_bytes()));
        fs::write(snap_data.join("credentials/callback-token.txt"), callback).unwrap();
        let state = Arc::new(Mutex::new(State {
            cfg,
            ca: ca.clone(),
            snap_data: snap_data.to_path_buf(),
            hosts: HashMap::new(),
            log: Vec::new(),
        }));
        let mut agent = SimClusterAgent {
            addr: format!("{ip}:{port}").parse().expect("ip"),
            cert_der: leaf.cert_der.clone(),
            cert_pem: leaf.cert_pem.clone(),
            snap_data: snap_data.to_path_buf(),
            state,
            config: server_config(&leaf, false),
            server: None,
        };
        agent.bring_up();
        agent
    }

    fn bring_up(&mut self) {
        let state = self.state.clone();
        let own = self.addr;
        let own_cell = Arc::new(Mutex::new(own));
        let own_cell2 = own_cell.clone();
        let handler: Handler = Arc::new(move |req: &Request| {
            let own = *own_cell2.lock().unwrap();
            let resp = handle(&state, own, req);
            state.lock().unwrap().log.push(Seen {
                path: req.path.clone(),
                body: String::from_utf8_lossy(&req.body).into_owned(),
                peer: req.peer,
                status: resp.status,
            });
            resp
        });
        let mut tries = 0;
        let server = loop {
            match TlsServer::start(&self.addr.to_string(), self.config.clone(), handler.clone()) {
                Ok(s) => break s,
                Err(_) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("simulated cluster-agent cannot listen on {}: {e}", self.addr),
            }
        };
        self.addr = server.addr;
        *own_cell.lock().unwrap() = server.addr;
        self.server = Some(server);
    }

    /// Take the agent down (connections refused) ...
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
    }

    /// ... and bring it back on the same address.
    pub fn restart(&mut self) {
        if self.server.is_none() {
            self.bring_up();
        }
    }

    /// Make `name` resolve to `ip` on this control plane (its /etc/hosts or DNS).
    pub fn add_host(&self, name: &str, ip: &str) {
        self.state.lock().unwrap().hosts.entry(name.to_string()).or_default().push(ip.to_string());
    }

    /// What `microk8s add-node` prints as the check: hex sha256 of the DER
    /// `server.crt` (`server_cert_check` keeps the first 12 characters,
    /// `MK 1.30:microk8s-resources/actions/common/utils.sh:L1071-1073`).
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.cert_der))
    }

    /// A file in the control plane's `credentials/`.
    pub fn credentials(&self, name: &str) -> PathBuf {
        self.snap_data.join("credentials").join(name)
    }

    /// `microk8s add-node --token T [--token-ttl N]`: `T` or `T|expiry` appended to
    /// `cluster-tokens.txt` (`MK 1.30:scripts/wrappers/add_token.py:L22-43`).
    pub fn add_token(&self, token: &str, ttl_secs: Option<i64>) {
        let line = match ttl_secs {
            Some(ttl) => format!("{token}|{}", unix_now() + ttl),
            None => token.to_string(),
        };
        append_token(&line, &self.credentials("cluster-tokens.txt"));
    }

    /// A launch configuration's `persistentClusterToken` (1.27+,
    /// `AddPersistentClusterToken`, `CA 1.30:pkg/snap/snap.go:L274-278`).
    pub fn add_persistent_token(&self, token: &str) {
        append_token(token, &self.credentials("persistent-cluster-tokens.txt"));
    }

    /// Requests seen, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    /// Whether any request carried `secret` (in its body).
    pub fn saw(&self, secret: &str) -> bool {
        self.requests().iter().any(|r| r.body.contains(secret))
    }

    pub fn config(&self) -> AgentConfig {
        self.state.lock().unwrap().cfg.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::https_post_unverified;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    struct T {
        agent: SimClusterAgent,
        ca: Arc<Ca>,
        _tmp: tempdir::Dir,
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn agent(channel: &str, ip: &str) -> T {
        let dir =
            std::env::temp_dir().join(format!("mk8s-agent-{}-{ip}-{}", std::process::id(), channel.replace('/', "-")));
        let _ = fs::remove_dir_all(&dir);
        let ca = Arc::new(Ca::new("agent-test-ca"));
        let agent = SimClusterAgent::start(ca.clone(), ip, AgentConfig::new(channel, 16443), &dir);
        T { agent, ca, _tmp: tempdir::Dir(dir) }
    }

    fn join(t: &T, from: &str, token: &str, hostname: &str) -> (u16, Value) {
        let body = json!({"token": token, "hostname": hostname, "port": "25000", "worker": "as-worker"}).to_string();
        let r =
            https_post_unverified(Some(from.parse().unwrap()), t.agent.addr, "/cluster/api/v2.0/join", &body).unwrap();
        (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null))
    }

    fn sign(t: &T, token: &str, csr: &str) -> (u16, Value) {
        let body = json!({"token": token, "request": csr}).to_string();
        let r = https_post_unverified(None, t.agent.addr, "/cluster/api/v1.0/sign-cert", &body).unwrap();
        (r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null))
    }

    fn cert_of(pem: &str) -> Vec<u8> {
        rustls_pemfile::certs(&mut pem.as_bytes()).next().unwrap().unwrap().to_vec()
    }

    #[test]
    fn serves_a_server_certificate_of_the_cluster_ca() {
        let t = agent("1.30/stable", "127.0.0.41");
        // Verified against the cluster CA, for the agent's IP.
        let r = crate::tls::https_get(t.agent.addr, "/health", Some(&t.ca), None).unwrap();
        assert_eq!(r.peer_cert, t.agent.cert_der);
        assert_eq!(r.status, 404);
        assert_eq!(r.body, r#"{"error":"Not found"}"#);
        assert!(crate::tls::https_get(t.agent.addr, "/", Some(&Ca::new("other")), None).is_err());
        assert_eq!(t.agent.fingerprint().len(), 64);
    }

    #[test]
    fn a_single_use_token_is_consumed_first_and_a_worker_gets_its_certificates() {
        let t = agent("1.30/stable", "127.0.0.42");
        t.agent.add_token(TOKEN, None);
        assert_eq!(
            join(&t, "127.0.0.43", "wrong-token-wrong-token-wrong-tok", "w1"),
            (500, json!({"error": "Invalid token"}))
        );
        let (code, body) = join(&t, "127.0.0.43", TOKEN, "w1");
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["ca_key"], Value::Null);
        assert_eq!(body["hostname_override"], "127.0.0.43");
        assert_eq!(body["apiport"], "16443");
        assert_eq!(body["cluster_cidr"], "10.1.0.0/16");
        assert_eq!(body["service_account_key"], "");
        assert!(body["kubelet_args"].as_str().unwrap().contains("--kubeconfig"));
        assert_eq!(body["ca"], t.ca.cert_pem);
        // Single use.
        assert_eq!(join(&t, "127.0.0.43", TOKEN, "w1").0, 500);
        assert!(t.agent.snap_data.join("var/lock/no-cert-reissue").exists());
        // Certificate-request tokens: each once. The subject is not restricted.
        let (csr, _key) = crate::pki::csr("system:node:w1", &["system:nodes"], &["w1", "127.0.0.43"]);
        let (code, body) = sign(&t, &format!("{TOKEN}-kubelet"), &csr);
        assert_eq!(code, 200, "{body}");
        let der = cert_of(body["certificate"].as_str().unwrap());
        assert!(crate::node_model::signed_by(&der, &t.ca.cert_der));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.subject().to_string(), "CN=system:node:w1, O=system:nodes");
        let sans = cert.subject_alternative_name().unwrap().unwrap().value.general_names.len();
        assert_eq!(sans, 2, "1.28+ copies the CSR's SANs");
        assert_eq!(sign(&t, &format!("{TOKEN}-kubelet"), &csr), (500, json!({"error": "Invalid token"})));
        let (admin, _) = crate::pki::csr("mallory", &["system:masters"], &[]);
        let (code, body) = sign(&t, &format!("{TOKEN}-proxy"), &admin);
        assert_eq!(code, 200, "any subject is signed: {body}");
        let der = cert_of(body["certificate"].as_str().unwrap());
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.subject().to_string(), "CN=mallory, O=system:masters");
    }

    #[test]
    fn ttl_and_persistent_tokens_are_reusable_and_expired_ones_are_not() {
        let t = agent("1.27/stable", "127.0.0.44");
        t.agent.add_host("w1", "127.0.0.45");
        t.agent.add_token(TOKEN, Some(3600));
        let expired = "ffffffffffffffffffffffffffffffff";
        t.agent.add_token(expired, Some(-10));
        let persistent = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
        t.agent.add_persistent_token(persistent);
        for _ in 0..2 {
            assert_eq!(join(&t, "127.0.0.45", TOKEN, "w1").0, 200);
            assert_eq!(join(&t, "127.0.0.45", persistent, "w1").0, 200);
        }
        assert_eq!(join(&t, "127.0.0.45", expired, "w1").0, 500);
        let tokens = fs::read_to_string(t.agent.credentials("cluster-tokens.txt")).unwrap();
        assert!(tokens.contains(TOKEN) && tokens.contains(expired), "TTL tokens stay in the file: {tokens}");
        // 1.27 signs without copying SANs.
        let (csr, _) = crate::pki::csr("system:node:w1", &["system:nodes"], &["w1", "127.0.0.45"]);
        let (code, body) = sign(&t, &format!("{TOKEN}-kubelet"), &csr);
        assert_eq!(code, 200);
        let der = cert_of(body["certificate"].as_str().unwrap());
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(cert.subject_alternative_name().unwrap().is_none());
        assert_eq!(cert.version(), x509_parser::x509::X509Version::V1, "openssl x509 -req with no -extfile");
        assert!(crate::node_model::signed_by(&der, &t.ca.cert_der));
        assert_eq!(cert.subject().to_string(), "CN=system:node:w1, O=system:nodes");
        // 1.24 has no persistent tokens and no cluster_cidr.
        let old = agent("1.24/stable", "127.0.0.46");
        old.agent.add_host("w1", "127.0.0.45");
        old.agent.add_persistent_token(persistent);
        assert_eq!(join(&old, "127.0.0.45", persistent, "w1").0, 500);
        old.agent.add_token(TOKEN, None);
        let (code, body) = join(&old, "127.0.0.45", TOKEN, "w1");
        assert_eq!(code, 200, "{body}");
        assert!(body.get("cluster_cidr").is_none());
    }

    #[test]
    fn the_hostname_check_burns_the_token_and_is_skipped_on_fresh_1_28() {
        let t = agent("1.27/stable", "127.0.0.47");
        t.agent.add_token(TOKEN, None);
        let (code, body) = join(&t, "127.0.0.48", TOKEN, "w1");
        assert_eq!(code, 400);
        assert!(body["error"].as_str().unwrap().starts_with("The hostname (w1) of the joining node does not resolve"));
        // The token was consumed before the check.
        t.agent.add_host("w1", "127.0.0.48");
        assert_eq!(join(&t, "127.0.0.48", TOKEN, "w1").0, 500);
        // Resolving to another IP is no better.
        t.agent.add_token(TOKEN, None);
        t.agent.add_host("w2", "127.0.0.99");
        assert_eq!(join(&t, "127.0.0.48", TOKEN, "w2").0, 400);
        let fresh = agent("1.30/stable", "127.0.0.49");
        fresh.agent.add_token(TOKEN, None);
        assert_eq!(join(&fresh, "127.0.0.48", TOKEN, "nowhere").0, 200);
        let mut upgraded = AgentConfig::new("1.30/stable", 16443);
        upgraded.upgraded = true;
        assert!(!upgraded.prefers_internal_ip());
    }

    #[test]
    fn other_refusals_in_upstream_order() {
        let t = agent("1.30/stable", "127.0.0.50");
        // Same IP as the agent: 503 (after the token).
        t.agent.add_token(TOKEN, None);
        assert_eq!(join(&t, "127.0.0.50", TOKEN, "w1").0, 503);
        // Wrong port: 502; a number: 400 (json.Unmarshal).
        t.agent.add_token(TOKEN, None);
        let body = json!({"token": TOKEN, "hostname": "w1", "port": "25001", "worker": true}).to_string();
        let r =
            https_post_unverified(Some("127.0.0.51".parse().unwrap()), t.agent.addr, "/cluster/api/v2.0/join", &body)
                .unwrap();
        assert_eq!(r.status, 502);
        assert_eq!(r.body, r#"{"error":"The port of the cluster agent port has to be set to 25000"}"#);
        let body = json!({"token": TOKEN, "hostname": "w1", "port": 25000}).to_string();
        let r = https_post_unverified(None, t.agent.addr, "/cluster/api/v2.0/join", &body).unwrap();
        assert_eq!(r.status, 400);
        // Not an HA cluster: 501.
        fs::remove_file(t.agent.snap_data.join("var/lock/ha-cluster")).unwrap();
        t.agent.add_token(TOKEN, None);
        assert_eq!(join(&t, "127.0.0.51", TOKEN, "w1").0, 501);
        // The wrong method: 404 with an empty body.
        let r = crate::tls::https_get(t.agent.addr, "/cluster/api/v2.0/join", None, None).unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, ""));
        let seen = t.agent.requests();
        assert_eq!(seen[0].peer.unwrap().ip().to_string(), "127.0.0.50");
        assert!(t.agent.saw(TOKEN));
    }
}
