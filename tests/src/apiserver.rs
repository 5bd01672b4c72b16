//! The simulated kube-apiserver: the only stand-in in the test suite, kept here.
//!
//! Honest where it matters to the bootstrap: real TLS with a leaf certificate
//! signed by a test CA (SANs 127.0.0.1 and its own address, like MicroK8s's
//! apiserver certificate); token authentication from a `known_tokens.csv` in the
//! format MicroK8s uses (`token,user,uid,"group1,group2"`, last duplicate wins);
//! client-certificate authentication against the CA (CN = user, O = groups);
//! anonymous access to `/readyz`, `/livez`, `/version` only under RBAC,Node, and none
//! at all under AlwaysAllow (as kube-apiserver, which then turns anonymous
//! authentication off); the Node authorizer's
//! rule that a node may read only its own Node (and write any, MicroK8s enabling no
//! NodeRestriction); real status codes with
//! `Status` bodies. It can go down and come back on the same address, and
//! `/readyz` can be switched between 503 and 200.
//!
//! Nodes: the kubelet creates its Node (`POST /api/v1/nodes`) and heartbeats its
//! status (`PATCH`/`PUT /api/v1/nodes/NAME/status`); `GET` returns the stored
//! object. Authorization is either `AlwaysAllow`, MicroK8s's default in every
//! branch (`1.20:microk8s-resources/default-args/kube-apiserver:L3`,
//! `1.30:…/kube-apiserver:L3`, `1.34:…/kube-apiserver:L3`), or `RBAC,Node` (what
//! `microk8s enable rbac` sets; the simulator's default, as before: the Node
//! authorizer's own-node rule). The control plane's view of a worker's kubelet
//! ([`SimApiserver::logs_from`]) dials the kubelet the way that version's
//! apiserver does ([`KubeletClient`]).

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

/// `--authorization-mode` of the simulated apiserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Authz {
    /// MicroK8s's default (`default-args/kube-apiserver` L3 in every branch), and
    /// so the simulator's: every authenticated user may do anything, and nobody
    /// unauthenticated may do anything at all.
    #[default]
    AlwaysAllow,
    /// `RBAC,Node`: a node may read only its own Node, but create, update and
    /// patch any Node (and its status): the Node authorizer leaves "only its own"
    /// to the NodeRestriction admission plugin, which MicroK8s does not enable
    /// (kubernetes v1.34.4 plugin/pkg/auth/authorizer/node/node_authorizer.go
    /// `authorizeNode`; MicroK8s 1.28+ default-args/kube-apiserver
    /// `--enable-admission-plugins=EventRateLimit`). kube-proxy may read nodes
    /// (`system:node-proxier`); `system:masters` may do anything.
    RbacNode,
}

/// How the apiserver reaches a worker's kubelet (for logs, exec, port-forward).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletClient {
    /// `--kubelet-preferred-address-types`: the first type the Node has wins
    /// (the apiserver does not fall back to the next address when a dial fails).
    pub preferred: Vec<String>,
    /// `--kubelet-certificate-authority`: verify the kubelet's serving
    /// certificate against the cluster CA (else any certificate is accepted).
    pub verify: bool,
}

impl KubeletClient {
    /// kube-apiserver's built-in default when the flag is absent:
    /// Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP (kubernetes
    /// cmd/kube-apiserver/app/options/options.go, `PreferredAddressTypes`), and no
    /// `--kubelet-certificate-authority`: MicroK8s 1.19 to 1.27, and 1.28+ control
    /// planes upgraded from those (`1.27:microk8s-resources/default-args/kube-apiserver`
    /// has neither flag; the 1.28 lines are in default-args only, so an existing
    /// args file keeps its old content).
    pub fn legacy() -> KubeletClient {
        KubeletClient {
            preferred: ["Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP"].map(String::from).into(),
            verify: false,
        }
    }

    /// A 1.28+ control plane installed fresh: `--kubelet-certificate-authority=${SNAP_DATA}/certs/ca.crt`
    /// (`1.30:microk8s-resources/default-args/kube-apiserver:L30`, added by 0071dd1d) and
    /// `--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP`
    /// (`1.30:…/kube-apiserver:L31`, `1.34:…:L31-L32`, added by 4086f4ac).
    pub fn fresh_1_28() -> KubeletClient {
        KubeletClient {
            preferred: ["InternalIP", "Hostname", "InternalDNS", "ExternalDNS", "ExternalIP"].map(String::from).into(),
            verify: true,
        }
    }

    /// The client of a control plane at `channel` ("1.30/stable"), `upgraded`
    /// from 1.27 or older or not (the node model's table of releases).
    pub fn for_channel(channel: &str, upgraded: bool) -> KubeletClient {
        if crate::node_model::Row::of(channel).fresh_apiserver_kubelet_args && !upgraded {
            KubeletClient::fresh_1_28()
        } else {
            KubeletClient::legacy()
        }
    }
}

#[derive(Default)]
struct State {
    ready: bool,
    tokens: HashMap<String, User>,
    /// name -> the stored Node object
    nodes: HashMap<String, serde_json::Value>,
    authz: Authz,
    kubelet_client: Option<KubeletClient>,
    /// What the control plane's resolver (/etc/hosts, DNS) knows: name -> IP.
    hosts: HashMap<String, String>,
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
    // Go's x509 verification (kube-apiserver's x509 authenticator asks for
    // ExtKeyUsageClientAuth): a certificate without the extension is valid for
    // any usage, as those `openssl x509 -req` signs for MicroK8s's worker join.
    let client_auth = match cert.extended_key_usage() {
        Ok(Some(e)) => e.value.client_auth || e.value.any,
        Ok(None) => true,
        Err(_) => false,
    };
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

/// The authorizer: Ok, or the 401/403 answer.
fn allowed(st: &State, user: &Option<User>, verb: &str, name: &str) -> Result<(), Response> {
    let Some(u) = user else {
        return Err(status(
            403,
            "Forbidden",
            &format!("nodes \"{name}\" is forbidden: User \"system:anonymous\" cannot {verb} resource \"nodes\""),
        ));
    };
    let ok = match st.authz {
        Authz::AlwaysAllow => true,
        Authz::RbacNode => {
            let is_node = u.groups.iter().any(|g| g == "system:nodes");
            let own = u.name == format!("system:node:{name}");
            (is_node && (own || matches!(verb, "create" | "update" | "patch")))
                || (u.name == "system:kube-proxy" && verb == "get")
                || u.groups.iter().any(|g| g == "system:masters")
        }
    };
    if ok {
        Ok(())
    } else {
        Err(status(
            403,
            "Forbidden",
            &format!("nodes \"{name}\" is forbidden: User \"{}\" cannot {verb} resource \"nodes\"", u.name),
        ))
    }
}

/// A minimal Node with a Ready condition (for tests that stand in for kubelet).
/// A Node as a kubelet's status update leaves it: Ready or not, with the
/// kubelet's heartbeat time (`heartbeat`, Unix seconds).
fn node_object(name: &str, ready: bool, heartbeat: u64) -> serde_json::Value {
    let beat = crate::node_model::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(heartbeat));
    serde_json::json!({
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name},
        "status": {"conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }, "reason": if ready { "KubeletReady" } else { "KubeletNotReady" },
             "lastHeartbeatTime": beat, "lastTransitionTime": beat}
        ]}
    })
}

fn handle(state: &Mutex<State>, ca_der: &[u8], req: &Request) -> (Response, String) {
    let mut st = state.lock().unwrap();
    let user = match authenticate(&st, ca_der, req) {
        Ok(u) => u,
        Err(r) => return (r, "-".into()),
    };
    let who = user.as_ref().map(|u| u.name.clone()).unwrap_or_else(|| "-".into());
    let path = req.path.split('?').next().unwrap_or("");
    const NODES: &str = "/api/v1/nodes/";
    // `/api/v1/nodes/NAME` (the Node itself), or `/api/v1/nodes/NAME/status`.
    let node_name = path.strip_prefix(NODES).filter(|n| !n.contains('/'));
    let status_of = path.strip_prefix(NODES).and_then(|n| n.strip_suffix("/status")).filter(|n| !n.contains('/'));
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
        ("GET", _) if node_name.is_some() => get_node(&st, &user, node_name.unwrap_or_default()),
        ("DELETE", _) if node_name.is_some() => delete_node(&mut st, &user, node_name.unwrap_or_default()),
        ("POST", "/api/v1/nodes") => create_node(&mut st, &user, &req.body),
        // A merge patch of a Node's labels, taints and annotations (what a client may change on
        // the object itself; the rest is kept).
        ("PATCH", _) if node_name.is_some() => {
            change_node(&mut st, &user, "patch", node_name.unwrap_or_default(), &req.body, |node, patch| {
                if let Some(labels) = patch.pointer("/metadata/labels").and_then(|l| l.as_object()) {
                    for (k, v) in labels {
                        node["metadata"]["labels"][k] = v.clone();
                    }
                }
                if let Some(taints) = patch.pointer("/spec/taints") {
                    node["spec"]["taints"] = taints.clone();
                }
                // RFC 7386: a null removes the key.
                if let Some(ann) = patch.pointer("/metadata/annotations").and_then(|a| a.as_object()) {
                    for (k, v) in ann {
                        match node["metadata"]["annotations"].as_object_mut() {
                            Some(m) if v.is_null() => {
                                m.remove(k);
                            }
                            _ if v.is_null() => {}
                            _ => node["metadata"]["annotations"][k] = v.clone(),
                        }
                    }
                }
            })
        }
        ("PATCH" | "PUT", _) if status_of.is_some() => {
            change_node(&mut st, &user, "update", status_of.unwrap_or_default(), &req.body, |node, patch| {
                if let Some(new) = patch.get("status").and_then(|s| s.as_object()) {
                    for (k, v) in new {
                        node["status"][k] = v.clone();
                    }
                }
            })
        }
        _ => status(404, "NotFound", "the server could not find the requested resource"),
    };
    (resp, who)
}

/// Who sent the request: a known bearer token or a client certificate of the CA;
/// `None` for anonymous. An unknown token or a foreign certificate is 401.
///
/// Under AlwaysAllow kube-apiserver turns anonymous authentication off
/// (kubernetes pkg/kubeapiserver/options/authentication.go, `ApplyAuthorization`:
/// "AnonymousAuth is not allowed with the AlwaysAllow authorizer"), so a request
/// without a credential is 401 on every path, `/readyz` included. Under RBAC,Node
/// it is `system:anonymous`, which `system:public-info-viewer` lets read `/readyz`,
/// `/livez`, `/healthz` and `/version` only.
fn authenticate(st: &State, ca_der: &[u8], req: &Request) -> Result<Option<User>, Response> {
    let unauthorized = || status(401, "Unauthorized", "Unauthorized");
    let user = match req.header("authorization").and_then(|h| h.strip_prefix("Bearer ")) {
        Some(token) => Some(st.tokens.get(token.trim()).cloned().ok_or_else(unauthorized)?),
        None => match req.client_cert.as_deref().map(|c| cert_user(c, ca_der)) {
            None => None,
            Some(u) => Some(u.map_err(|()| unauthorized())?),
        },
    };
    if user.is_none() && st.authz == Authz::AlwaysAllow {
        return Err(unauthorized());
    }
    Ok(user)
}

fn not_found(name: &str) -> Response {
    status(404, "NotFound", &format!("nodes \"{name}\" not found"))
}

fn get_node(st: &State, user: &Option<User>, name: &str) -> Response {
    if let Err(r) = allowed(st, user, "get", name) {
        return r;
    }
    match st.nodes.get(name) {
        None => not_found(name),
        Some(node) => Response::json(200, node.to_string()),
    }
}

fn delete_node(st: &mut State, user: &Option<User>, name: &str) -> Response {
    if let Err(r) = allowed(st, user, "delete", name) {
        return r;
    }
    match st.nodes.remove(name) {
        Some(_) => Response::json(200, r#"{"kind":"Status","status":"Success"}"#),
        None => not_found(name),
    }
}

fn create_node(st: &mut State, user: &Option<User>, body: &[u8]) -> Response {
    let Ok(mut node) = serde_json::from_slice::<serde_json::Value>(body) else {
        return status(400, "BadRequest", "the body is not a Node");
    };
    let name = node.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or("").to_string();
    match allowed(st, user, "create", &name) {
        Err(r) => r,
        Ok(()) if name.is_empty() => status(422, "Invalid", "metadata.name: Required value"),
        Ok(()) if st.nodes.contains_key(&name) => {
            status(409, "AlreadyExists", &format!("nodes \"{name}\" already exists"))
        }
        Ok(()) => {
            node["kind"] = "Node".into();
            node["apiVersion"] = "v1".into();
            st.nodes.insert(name, node.clone());
            Response::json(201, node.to_string())
        }
    }
}

/// A change to an existing Node that `user` may make with `verb`: `apply` merges
/// the request's JSON body into it.
fn change_node(
    st: &mut State,
    user: &Option<User>,
    verb: &str,
    name: &str,
    body: &[u8],
    apply: impl FnOnce(&mut serde_json::Value, &serde_json::Value),
) -> Response {
    let Ok(patch) = serde_json::from_slice::<serde_json::Value>(body) else {
        return status(400, "BadRequest", "the body is not JSON");
    };
    if let Err(r) = allowed(st, user, verb, name) {
        return r;
    }
    match st.nodes.get_mut(name) {
        None => not_found(name),
        Some(node) => {
            apply(node, &patch);
            Response::json(200, node.to_string())
        }
    }
}

/// A cloneable handle to the simulator's state, for threads that stand in for
/// kubelet while a test holds the server itself.
#[derive(Clone)]
pub struct Control(Arc<Mutex<State>>);

impl Control {
    /// A kubelet's status update: Ready or not, heartbeat now.
    pub fn register_node(&self, name: &str, ready: bool) {
        self.0.lock().unwrap().nodes.insert(name.to_string(), node_object(name, ready, unix_now()));
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
        let node = node_object(name, ready, unix_now() - ago.as_secs());
        self.state.lock().unwrap().nodes.insert(name.to_string(), node);
    }

    /// The stored Node object, as `GET /api/v1/nodes/NAME` returns it.
    pub fn node(&self, name: &str) -> Option<serde_json::Value> {
        self.state.lock().unwrap().nodes.get(name).cloned()
    }

    pub fn set_authz(&self, authz: Authz) {
        self.state.lock().unwrap().authz = authz;
    }

    /// How this control plane dials kubelets (see [`KubeletClient::for_channel`]).
    pub fn set_kubelet_client(&self, client: KubeletClient) {
        self.state.lock().unwrap().kubelet_client = Some(client);
    }

    /// Make `name` resolve to `ip` for the control plane (its /etc/hosts or DNS).
    pub fn add_host(&self, name: &str, ip: &str) {
        self.state.lock().unwrap().hosts.insert(name.to_string(), ip.to_string());
    }

    /// `kubectl logs` of a pod on `node`: the apiserver dials that node's kubelet
    /// (`GET https://ADDR:PORT/containerLogs/NS/POD/CONTAINER`) at the first Node
    /// address of the first preferred type, port from
    /// `status.daemonEndpoints.kubeletEndpoint.Port`, verifying the kubelet's
    /// certificate against the cluster CA only with `--kubelet-certificate-authority`.
    /// Errors read like kube-apiserver's.
    pub fn logs_from(&self, node: &str) -> Result<String, String> {
        let (obj, client, hosts) = {
            let st = self.state.lock().unwrap();
            (st.nodes.get(node).cloned(), st.kubelet_client.clone(), st.hosts.clone())
        };
        let client = client.unwrap_or_else(KubeletClient::legacy);
        let obj = obj.ok_or_else(|| format!("nodes \"{node}\" not found"))?;
        let port =
            obj.pointer("/status/daemonEndpoints/kubeletEndpoint/Port").and_then(|p| p.as_u64()).unwrap_or(10250);
        let addresses = obj.pointer("/status/addresses").and_then(|a| a.as_array()).cloned().unwrap_or_default();
        let chosen = client.preferred.iter().find_map(|t| {
            addresses.iter().find(|a| a["type"] == t.as_str()).and_then(|a| a["address"].as_str().map(String::from))
        });
        let host = chosen.ok_or_else(|| format!("no preferred addresses found; known addresses: {addresses:?}"))?;
        let path = "/containerLogs/default/pod/container";
        let url = format!("https://{host}:{port}{path}");
        let ip: std::net::IpAddr = match host.parse() {
            Ok(ip) => ip,
            Err(_) => match hosts.get(&host).and_then(|ip| ip.parse().ok()) {
                Some(ip) => ip,
                None => return Err(format!("Get \"{url}\": dial tcp: lookup {host}: no such host")),
            },
        };
        let addr = SocketAddr::new(ip, port as u16);
        let trust =
            if client.verify { crate::tls::Trust::Roots(self.ca.rustls_root()) } else { crate::tls::Trust::Any };
        let name = rustls::pki_types::ServerName::IpAddress(ip.into());
        match crate::tls::https_call(addr, name, trust, "GET", path, None, None, None) {
            Ok(r) if r.status == 200 => Ok(r.body),
            Ok(r) => Err(format!("Get \"{url}\": the kubelet answered {}: {}", r.status, r.body)),
            Err(e) => {
                let text = e.to_string();
                if text.contains("UnknownIssuer") {
                    Err(format!("Get \"{url}\": tls: failed to verify certificate: x509: certificate signed by unknown authority ({text})"))
                } else if text.contains("NotValidForName") {
                    Err(format!("Get \"{url}\": tls: failed to verify certificate: x509: certificate is valid for other names, not {host} ({text})"))
                } else {
                    Err(format!("Get \"{url}\": {text}"))
                }
            }
        }
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
        // AlwaysAllow, MicroK8s's default: no anonymous request at all.
        assert_eq!(get("/readyz", None), 401);
        assert_eq!(get("/version", None), 401);
        assert_eq!(get("/api/v1/nodes/w1", None), 401);
        assert_eq!(get("/readyz", Some("good")), 200);
        assert_eq!(get("/api/v1/nodes/w2", Some("good")), 404, "AlwaysAllow: any Node");
        sim.set_authz(Authz::RbacNode);
        assert_eq!(get("/readyz", None), 200);
        assert_eq!(get("/version", None), 200);
        assert_eq!(get("/api/v1/nodes/w1", None), 403, "system:anonymous is authenticated, not authorized");
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
        sim.set_authz(Authz::RbacNode);
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
        sim.set_authz(Authz::RbacNode);
        let addr = sim.addr;
        sim.stop();
        assert!(crate::tls::https_get(addr, "/readyz", Some(&ca), None).is_err());
        sim.restart();
        assert_eq!(sim.addr, addr);
        assert_eq!(crate::tls::https_get(addr, "/readyz", Some(&ca), None).unwrap().status, 200);
    }

    #[test]
    fn a_node_registers_heartbeats_and_is_dialled_by_name_or_address() {
        let ca = Arc::new(Ca::new("sim-ca"));
        let sim = SimApiserver::start(ca.clone(), "127.0.0.1", "");
        sim.set_authz(Authz::RbacNode);
        let node = ca.client("system:node:w1", &["system:nodes"]);
        let call = |method: &str, path: &str, body: &str, leaf: &crate::pki::Leaf| {
            let name = rustls::pki_types::ServerName::IpAddress(sim.addr.ip().into());
            let auth = Some((leaf.rustls_chain(), leaf.rustls_key()));
            crate::tls::https_call(
                sim.addr,
                name,
                crate::tls::Trust::Roots(ca.rustls_root()),
                method,
                path,
                Some(body),
                None,
                auth,
            )
            .unwrap()
            .status
        };
        let body = r#"{"metadata":{"name":"w1"},"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"},{"type":"Hostname","address":"w1"}],"daemonEndpoints":{"kubeletEndpoint":{"Port":1}}}}"#;
        let other = ca.client("system:node:w2", &["system:nodes"]);
        let other_body = body.replace("\"w1\"", "\"w3\"");
        assert_eq!(call("POST", "/api/v1/nodes", &other_body, &node), 201, "RBAC,Node without NodeRestriction");
        assert_eq!(call("POST", "/api/v1/nodes", body, &node), 201);
        assert_eq!(call("POST", "/api/v1/nodes", body, &node), 409);
        let beat = r#"{"status":{"conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":"2026-01-01T00:00:00Z"}]}}"#;
        assert_eq!(call("PATCH", "/api/v1/nodes/w1/status", beat, &node), 200);
        assert_eq!(call("PATCH", "/api/v1/nodes/w9/status", beat, &node), 404, "authorized; no such Node");
        assert_eq!(call("GET", "/api/v1/nodes/w3", "", &node), 403, "RBAC,Node: it reads only its own Node");
        let stored = sim.node("w1").unwrap();
        assert_eq!(stored["status"]["conditions"][0]["lastHeartbeatTime"], "2026-01-01T00:00:00Z");
        assert_eq!(stored["status"]["addresses"][1]["address"], "w1", "the heartbeat keeps the addresses");
        let labels = r#"{"metadata":{"labels":{"a":"b"}},"spec":{"taints":[{"key":"k","effect":"NoSchedule"}]}}"#;
        assert_eq!(call("PATCH", "/api/v1/nodes/w1", labels, &other), 200, "RBAC,Node without NodeRestriction");
        assert_eq!(call("PATCH", "/api/v1/nodes/w1", labels, &node), 200);
        let stored = sim.node("w1").unwrap();
        assert_eq!(
            (stored["metadata"]["labels"]["a"].as_str(), stored["spec"]["taints"][0]["key"].as_str()),
            (Some("b"), Some("k"))
        );
        sim.set_authz(Authz::AlwaysAllow);
        assert_eq!(call("PATCH", "/api/v1/nodes/w1/status", beat, &other), 200, "AlwaysAllow");
        // <=1.27: by Hostname, which this control plane cannot resolve.
        sim.set_kubelet_client(KubeletClient::for_channel("1.27/stable", false));
        assert_eq!(
            sim.logs_from("w1"),
            Err("Get \"https://w1:1/containerLogs/default/pod/container\": dial tcp: lookup w1: no such host".into())
        );
        // 1.28+ fresh: by InternalIP (nothing listens on port 1 here).
        sim.set_kubelet_client(KubeletClient::for_channel("1.28/stable", false));
        assert!(sim.logs_from("w1").unwrap_err().starts_with("Get \"https://127.0.0.1:1/"));
        assert_eq!(call("DELETE", "/api/v1/nodes/w1", "", &node), 200);
        assert_eq!(call("DELETE", "/api/v1/nodes/w1", "", &node), 404);
        assert_eq!(KubeletClient::for_channel("1.34/stable", true), KubeletClient::legacy());
    }
}
