//! The simulated kube-apiserver: the only stand-in in the test suite, kept here.
//!
//! Honest where it matters to the bootstrap: real TLS with a leaf certificate
//! signed by a test CA (SANs 127.0.0.1 and its own address, like MicroK8s's
//! apiserver certificate); token authentication from a `known_tokens.csv` in the
//! format MicroK8s uses (`token,user,uid,"group1,group2"`, last duplicate wins);
//! client-certificate authentication against the CA (CN = user, O = groups);
//! anonymous access to `/readyz`, `/livez`, `/version` only; the Node authorizer's
//! rule that a node may read only its own Node; real status codes with
//! `Status` bodies. It can go down and come back on the same address, and
//! `/readyz` can be switched between 503 and 200.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::pki::Ca;
use crate::tls::{server_config, Handler, Request, Response, TlsServer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

#[derive(Default)]
struct State {
    ready: bool,
    tokens: HashMap<String, User>,
    /// name -> (Ready, the kubelet's last heartbeat in Unix seconds)
    nodes: HashMap<String, (bool, u64)>,
    /// (method, path, authenticated user or "-", status)
    log: Vec<(String, String, String, u16)>,
    /// How long a watch (`GET /api/v1/watch/...`) keeps its connection open.
    watch_hold: std::time::Duration,
}

pub struct SimApiserver {
    pub ca: Arc<Ca>,
    /// DER of this apiserver's own certificate (what a client should see).
    pub cert_der: Vec<u8>,
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    config: Arc<rustls::ServerConfig>,
    server: Option<TlsServer>,
}

/// Parse MicroK8s's `known_tokens.csv`: `token,user,uid[,"g1,g2"]`.
pub fn parse_known_tokens(csv: &str) -> HashMap<String, User> {
    let mut out = HashMap::new();
    for line in csv.lines().filter(|l| !l.trim().is_empty()) {
        let fields = split_csv(line);
        if fields.len() < 3 {
            continue;
        }
        let groups = fields
            .get(3)
            .map(|g| g.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        // A duplicated token keeps the last line, as kube-apiserver's tokenfile does.
        out.insert(fields[0].clone(), User { name: fields[1].clone(), groups });
    }
    out
}

fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

/// The user of a client certificate: verified against the CA (signature and
/// validity period) first; CN is the user, O values the groups.
fn cert_user(der: &[u8], ca_der: &[u8]) -> Result<User, ()> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| ())?;
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der).map_err(|_| ())?;
    cert.verify_signature(Some(ca.public_key())).map_err(|_| ())?;
    if cert.issuer() != ca.subject() || !cert.validity().is_valid() {
        return Err(());
    }
    let client_auth = cert.extended_key_usage().ok().flatten().is_some_and(|e| e.value.client_auth);
    if !client_auth {
        return Err(());
    }
    user_of(&cert).ok_or(())
}

fn user_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<User> {
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = cert.subject().iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some(User { name, groups })
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code});
    Response::json(code, body.to_string())
}

fn handle(state: &Mutex<State>, ca_der: &[u8], req: &Request) -> (Response, String) {
    let st = state.lock().unwrap();
    let user = match req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")) {
        Some(token) => match st.tokens.get(token.trim()) {
            Some(u) => Some(u.clone()),
            None => return (status(401, "Unauthorized", "Unauthorized"), "-".into()),
        },
        None => match req.client_cert.as_deref().map(|c| cert_user(c, ca_der)) {
            None => None,
            Some(Ok(u)) => Some(u),
            Some(Err(())) => return (status(401, "Unauthorized", "Unauthorized"), "-".into()),
        },
    };
    let who = user.as_ref().map(|u| u.name.clone()).unwrap_or_else(|| "-".into());
    let path = req.path.split('?').next().unwrap_or("");
    let resp = match (req.method.as_str(), path) {
        ("GET", "/readyz") if st.ready => Response::text(200, "ok"),
        ("GET", "/readyz") => Response::text(503, "[-]etcd failed: reason withheld\nreadyz check failed"),
        ("GET", "/livez") => Response::text(200, "ok"),
        ("GET", p) if p.starts_with("/api/v1/watch/") => {
            let mut r = Response::json(200, "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Node\"}}\n");
            r.hold = Some(st.watch_hold);
            r
        }
        ("GET", "/version") => Response::json(200, r#"{"major":"1","minor":"30","gitVersion":"v1.30.0-sim"}"#),
        ("GET", p) if p.starts_with("/api/v1/nodes/") => {
            let name = &p["/api/v1/nodes/".len()..];
            match &user {
                None => status(401, "Unauthorized", "Unauthorized"),
                Some(u) => {
                    let is_node = u.groups.iter().any(|g| g == "system:nodes");
                    let own = u.name == format!("system:node:{name}");
                    let allowed = (is_node && own)
                        || u.name == "system:kube-proxy"
                        || u.groups.iter().any(|g| g == "system:masters");
                    if !allowed {
                        status(
                            403,
                            "Forbidden",
                            &format!(
                                "nodes \"{name}\" is forbidden: User \"{}\" cannot get resource \"nodes\"",
                                u.name
                            ),
                        )
                    } else {
                        match st.nodes.get(name) {
                            None => status(404, "NotFound", &format!("nodes \"{name}\" not found")),
                            Some((ready, beat)) => {
                                let beat = rfc3339(*beat);
                                let body = serde_json::json!({
                                    "kind": "Node", "apiVersion": "v1",
                                    "metadata": {"name": name},
                                    "status": {"conditions": [
                                        {"type": "Ready", "status": if *ready { "True" } else { "False" }, "reason": if *ready { "KubeletReady" } else { "KubeletNotReady" },
                                         "lastHeartbeatTime": beat, "lastTransitionTime": beat}
                                    ]}
                                });
                                Response::json(200, body.to_string())
                            }
                        }
                    }
                }
            }
        }
        _ => status(404, "NotFound", "the server could not find the requested resource"),
    };
    (resp, who)
}

/// A cloneable handle to the simulator's state, for threads that stand in for
/// kubelet while a test holds the server itself.
#[derive(Clone)]
pub struct Control(Arc<Mutex<State>>);

impl Control {
    /// A kubelet's status update: Ready or not, heartbeat now.
    pub fn register_node(&self, name: &str, ready: bool) {
        self.0.lock().unwrap().nodes.insert(name.to_string(), (ready, unix_now()));
    }

    /// What an operator's merge on the control plane does (the apiserver rereads
    /// the file when restarted).
    pub fn set_tokens(&self, known_tokens_csv: &str) {
        self.0.lock().unwrap().tokens = parse_known_tokens(known_tokens_csv);
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Kubernetes' time format (RFC 3339, seconds, UTC).
fn rfc3339(unix: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix as i64).expect("a valid time");
    t.format(&time::format_description::well_known::Rfc3339).expect("formats")
}

impl SimApiserver {
    pub fn control(&self) -> Control {
        Control(self.state.clone())
    }

    /// Start on `ip` (a loopback address) at a free port, trusting `known_tokens_csv`.
    pub fn start(ca: Arc<Ca>, ip: &str, known_tokens_csv: &str) -> SimApiserver {
        Self::start_at(ca, format!("{ip}:0").parse().expect("ip"), known_tokens_csv)
    }

    /// Start on a given address (port 0 picks one).
    pub fn start_at(ca: Arc<Ca>, addr: SocketAddr, known_tokens_csv: &str) -> SimApiserver {
        let ip = addr.ip().to_string();
        let ip = ip.as_str();
        let leaf = ca.server(&["127.0.0.1", ip, "kubernetes", "kubernetes.default"]);
        let config = server_config(&leaf, true);
        let state = Arc::new(Mutex::new(State {
            ready: true,
            tokens: parse_known_tokens(known_tokens_csv),
            ..State::default()
        }));
        let mut sim = SimApiserver { ca, cert_der: leaf.cert_der.clone(), addr, state, config, server: None };
        sim.bring_up();
        sim
    }

    fn bring_up(&mut self) {
        let state = self.state.clone();
        let ca_der = self.ca.cert_der.clone();
        let handler: Handler = Arc::new(move |req: &Request| {
            let (resp, who) = handle(&state, &ca_der, req);
            state.lock().unwrap().log.push((req.method.clone(), req.path.clone(), who, resp.status));
            resp
        });
        // The same address every time (port chosen on first start).
        let mut tries = 0;
        let server = loop {
            match TlsServer::start(&self.addr.to_string(), self.config.clone(), handler.clone()) {
                Ok(s) => break s,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("simulated apiserver cannot listen on {}: {e}", self.addr),
            }
        };
        self.addr = server.addr;
        self.server = Some(server);
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Take the apiserver down (connections refused) ...
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

    pub fn set_ready(&self, ready: bool) {
        self.state.lock().unwrap().ready = ready;
    }

    /// Stand in for kubelet: the Node object appears (Ready or not), heartbeat now.
    pub fn register_node(&self, name: &str, ready: bool) {
        self.control().register_node(name, ready);
    }

    /// A Node whose kubelet last reported `ago` before now (a machine that was
    /// replaced under the same name left it Ready).
    pub fn register_stale_node(&self, name: &str, ready: bool, ago: std::time::Duration) {
        self.state.lock().unwrap().nodes.insert(name.to_string(), (ready, unix_now() - ago.as_secs()));
    }

    pub fn set_watch_hold(&self, hold: std::time::Duration) {
        self.state.lock().unwrap().watch_hold = hold;
    }

    pub fn set_tokens(&self, known_tokens_csv: &str) {
        self.control().set_tokens(known_tokens_csv);
    }

    /// Requests seen: (method, path, user or "-", status).
    pub fn requests(&self) -> Vec<(String, String, String, u16)> {
        self.state.lock().unwrap().log.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_tokens_parse_like_the_apiserver() {
        let csv = "t1,system:kube-proxy,kube-proxy\nt2,system:node:w1,kubelet-1,\"system:nodes\"\nt3,admin,admin,\"system:masters,other\"\nt1,system:node:w1,dup,\"system:nodes\"\n";
        let m = parse_known_tokens(csv);
        assert_eq!(m["t2"], User { name: "system:node:w1".into(), groups: vec!["system:nodes".into()] });
        assert_eq!(m["t3"].groups, vec!["system:masters".to_string(), "other".into()]);
        // The original method's bug: one token on two lines; the last one wins.
        assert_eq!(m["t1"].name, "system:node:w1");
    }

    #[test]
    fn authentication_and_authorization() {
        let ca = Arc::new(Ca::new("sim-ca"));
        let sim = SimApiserver::start(ca.clone(), "127.0.0.1", "good,system:node:w1,u1,\"system:nodes\"\n");
        let get =
            |path: &str, token: Option<&str>| crate::tls::https_get(sim.addr, path, Some(&ca), token).unwrap().status;
        assert_eq!(get("/readyz", None), 200);
        assert_eq!(get("/version", None), 200);
        assert_eq!(get("/api/v1/nodes/w1", None), 401);
        assert_eq!(get("/api/v1/nodes/w1", Some("bad")), 401);
        assert_eq!(get("/api/v1/nodes/w1", Some("good")), 404);
        assert_eq!(get("/api/v1/nodes/w2", Some("good")), 403);
        sim.register_node("w1", true);
        assert_eq!(get("/api/v1/nodes/w1", Some("good")), 200);
        sim.set_ready(false);
        assert_eq!(get("/readyz", None), 503);
        // A client that does not trust the sim's CA cannot talk to it.
        let other = Ca::new("other-ca");
        assert!(crate::tls::https_get(sim.addr, "/readyz", Some(&other), None).is_err());
    }

    #[test]
    fn client_certificates_are_verified_against_the_ca() {
        let ca = Arc::new(Ca::new("sim-ca"));
        let sim = SimApiserver::start(ca.clone(), "127.0.0.1", "");
        sim.register_node("w1", true);
        let get = |leaf: &crate::pki::Leaf, node: &str| {
            crate::tls::https_get_as(sim.addr, &format!("/api/v1/nodes/{node}"), Some(&ca), None, Some(leaf))
                .unwrap()
                .status
        };
        let node = ca.client("system:node:w1", &["system:nodes"]);
        assert_eq!(get(&node, "w1"), 200);
        assert_eq!(get(&node, "w2"), 403);
        // Same names, signed by another CA: authenticated by nobody.
        let other = Ca::new("sim-ca").client("system:node:w1", &["system:nodes"]);
        assert_eq!(get(&other, "w1"), 401);
        let log = sim.requests();
        assert_eq!(log[0].2, "system:node:w1");
        assert_eq!(log[2].2, "-");
    }

    #[test]
    fn goes_down_and_comes_back_on_the_same_address() {
        let ca = Arc::new(Ca::new("sim-ca"));
        let mut sim = SimApiserver::start(ca.clone(), "127.0.0.1", "");
        let addr = sim.addr;
        sim.stop();
        assert!(crate::tls::https_get(addr, "/readyz", Some(&ca), None).is_err());
        sim.restart();
        assert_eq!(sim.addr, addr);
        assert_eq!(crate::tls::https_get(addr, "/readyz", Some(&ca), None).unwrap().status, 200);
    }
}
