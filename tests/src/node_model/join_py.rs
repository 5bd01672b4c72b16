//! `microk8s join IP:PORT/TOKEN[/CHECK] --worker`: what that version's join.py does,
//! in order. Sources: 1.24:scripts/cluster/join.py (J24), 1.27:scripts/wrappers/join.py
//! (J27), 1.30:scripts/wrappers/join.py (J30, identical in 1.34), and
//! 1.30:scripts/wrappers/common/cluster/utils.py (CU30).

use std::fs;
use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;

use super::daemons::proxy::provider_yaml;
use super::state::Ctx;

/// `IP:PORT/<token>/CHECK` with the token hidden, for logs.
pub fn redact_connection(arg: &str) -> String {
    let parts: Vec<&str> = arg.split('/').collect();
    if parts.len() >= 2 && parts[0].contains(':') {
        let mut out = vec![parts[0].to_string(), "<token>".to_string()];
        out.extend(parts[2..].iter().map(|p| p.to_string()));
        out.join("/")
    } else {
        arg.to_string()
    }
}

/// A failed join: its exit code and message (join.py prints and `exit(code)`s).
struct JoinExit(i32, String);

fn fail<T>(code: i32, message: impl Into<String>) -> Result<T, JoinExit> {
    Err(JoinExit(code, message.into()))
}

/// `IP:PORT/TOKEN[/CHECK]`, split.
struct Connection {
    ip: String,
    port: String,
    token: String,
    fingerprint: Option<String>,
}

/// A join the agent answered: where it went, who asked, and the answer.
struct Joined {
    agent: SocketAddr,
    /// The agent's IP as the connection string gives it.
    ip: String,
    token: String,
    node_ip: IpAddr,
    /// The node's hostname, lower-cased.
    hostname: String,
    info: Value,
}

impl Joined {
    /// The cluster's CA (PEM).
    fn ca(&self) -> &str {
        self.info["ca"].as_str().unwrap_or("")
    }
}

impl Ctx {
    pub(super) fn microk8s(&mut self, args: &[String]) -> i32 {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["join", conn, rest @ ..] => {
                let worker = rest.contains(&"--worker");
                if !self.row.join_worker && worker {
                    // 1.20-1.22 have no --worker (1.22:scripts/cluster/join.py:L1057-1100).
                    eprintln!("Error: no such option: --worker");
                    return 2;
                }
                if !worker {
                    eprintln!("mk8s-node-model: only `microk8s join ... --worker` is modelled");
                    return 1;
                }
                match self.join_worker(conn) {
                    Ok(()) => {
                        println!("The node has joined the cluster and will appear in the nodes list in a few seconds.");
                        0
                    }
                    Err(JoinExit(code, msg)) => {
                        eprintln!("{msg}");
                        code
                    }
                }
            }
            _ => {
                eprintln!("mk8s-node-model: microk8s {args:?} is not modelled");
                1
            }
        }
    }

    /// `microk8s join CONN --worker`, in join.py's order: the connection string
    /// parsed, the join requested from the agent (its certificate verified against
    /// the fingerprint first), the answer checked and applied to the services,
    /// the worker's certificates and kubeconfigs written, then MicroK8s's proxy
    /// pointed at the control plane and the node restarted as a worker.
    fn join_worker(&mut self, conn: &str) -> Result<(), JoinExit> {
        let connection = self.parse_connection(conn)?;
        // join_dqlite only on an HA node (J30:L1007-1010); the etcd path is not modelled.
        if !self.lock("ha-cluster") {
            return fail(1, "mk8s-node-model: the non-HA (etcd) join is not modelled");
        }
        // mark_join_in_progress (J27:L942-949, J30:L916-922); absent in 1.24.
        if self.row.join_marks_in_progress {
            let _ = fs::write(self.snap_data("var/lock/join-in-progress"), "");
        }
        let joined = self.request_join(connection)?;
        self.verify_and_apply_answer(&joined)?;
        self.write_credentials(&joined)?;
        let proxy = self.point_proxy(&joined);
        self.restart_as_worker(&joined, proxy);
        Ok(())
    }

    /// The connection string `IP:PORT/TOKEN[/CHECK]` as that version's join.py splits it.
    fn parse_connection(&self, conn: &str) -> Result<Connection, JoinExit> {
        let parts: Vec<&str> = conn.split('/').collect();
        // 1.29+: get_valid_connection_parts (CU30:L557-597): 2 or 3 parts, an IP
        // literal and a port (exactly one ':', so no IPv6), token >= 32, check >= 12.
        if self.row.join_checks_connection {
            let ep: Vec<&str> = parts[0].split(':').collect();
            let valid = (2..=3).contains(&parts.len())
                && ep.len() == 2
                && ep[0].parse::<IpAddr>().is_ok()
                && ep[1].parse::<u16>().is_ok_and(|p| p > 0)
                && parts[1].len() >= 32
                && parts.get(2).is_none_or(|c| c.len() >= 12);
            if !valid {
                return fail(1, format!("Invalid connection string {}", redact_connection(conn)));
            }
        }
        if parts.len() < 2 {
            return fail(1, "Invalid connection string");
        }
        // 1.28+ rsplit(":", 1) (J30:L654, 8ca2d59c); 1.24-1.27 split(":") and its
        // first two fields (J27:L743, J24:L739): `[fd00::2]:25000` gives `[fd00` and
        // an empty port (G6), which the request then cannot use.
        let split = if self.row.join_rsplits_endpoint {
            parts[0].rsplit_once(':')
        } else {
            let mut fields = parts[0].split(':');
            fields.next().zip(fields.next())
        };
        let Some((ip, port)) = split else {
            return fail(1, "Invalid connection string");
        };
        Ok(Connection {
            ip: ip.to_string(),
            port: port.to_string(),
            token: parts[1].to_string(),
            fingerprint: parts.get(2).map(|s| s.to_string()),
        })
    }

    /// `POST /cluster/api/v2.0/join` to the agent, from the node's address.
    fn request_join(&self, c: Connection) -> Result<Joined, JoinExit> {
        let agent: SocketAddr = match format!("{}:{}", c.ip, c.port).parse() {
            Ok(a) => a,
            Err(e) => return fail(1, format!("Invalid connection string: {e}")),
        };
        let node_ip: IpAddr = self.s("nodeIP").parse().map_err(|_| JoinExit(1, "bad nodeIP".into()))?;
        let hostname = self.s("hostname").to_lowercase();
        // The request (J30:L155-170; J27:L153-159 and J24:L153-161 without the two
        // can_handle fields); `port` is the local agent's --bind port, a string
        // (CU30:L205-222; default "25000": no args/cluster-agent in the model).
        let mut req = json!({"token": c.token, "hostname": hostname, "port": "25000", "worker": "as-worker"});
        if self.row.join_writes_x509 {
            req["can_handle_x509_auth"] = json!(true);
            req["can_handle_custom_etcd"] = json!(true);
        }
        // The fingerprint: >= 12 characters, a prefix of sha256(DER of the peer's
        // leaf), checked after the handshake and before the request is sent; no CA
        // or name verification (J30:L84-100; J24:L72-108). Exit 4 otherwise.
        if let Some(f) = &c.fingerprint {
            if f.len() < 12 {
                return fail(4, "Joining cluster failed. Fingerprint too short.");
            }
        }
        let fp = c.fingerprint.clone();
        let r = crate::tls::https_post_checked(
            Some(node_ip),
            agent,
            "/cluster/api/v2.0/join",
            &req.to_string(),
            move |der| fp.as_ref().is_none_or(|f| hex::encode(sha2::Sha256::digest(der)).starts_with(f.as_str())),
        );
        let r = match r {
            Ok(Some(r)) => r,
            Ok(None) => {
                return fail(
                    4,
                    format!("Joining cluster failed. Could not verify the identity of {}. Use '--skip-verify' to skip server certificate check.", c.ip),
                )
            }
            Err(e) => return fail(1, format!("Connection failed. {e}")),
        };
        if r.status != 200 {
            // J30:L104-107, L118-128: "Connection failed. <error> (<status>)." exit 6.
            let err = serde_json::from_str::<Value>(&r.body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(r.body.clone());
            return fail(6, format!("Connection failed. {err} ({}).", r.status));
        }
        let info: Value = serde_json::from_str(&r.body).map_err(|e| JoinExit(1, format!("bad answer: {e}")))?;
        Ok(Joined { agent, ip: c.ip, token: c.token, node_ip, hostname, info })
    }

    /// The agent's answer: the pod CIDR taken, a worker join checked for, the
    /// cluster's CA stored, the control plane's apiserver arguments taken.
    fn verify_and_apply_answer(&self, j: &Joined) -> Result<(), JoinExit> {
        let info = &j.info;
        // cluster_cidr (1.27+, J30:L676-687; J27:L765-776): update kube-proxy's and restart.
        if self.row.cluster_cidr_in_join {
            if let Some(cidr) = info["cluster_cidr"].as_str() {
                if self.args("kube-proxy").get("--cluster-cidr").map(String::as_str) != Some(cidr) {
                    self.set_arg("kube-proxy", "--cluster-cidr", Some(cidr));
                    self.restart_service("kubelite");
                }
            }
        }
        // join_dqlite_worker_node (J30:L750-784; J27:L825-853; J24:L824-852).
        if !info["ca_key"].is_null() {
            return fail(1, "Make sure the cluster you connect to supports joining worker nodes.");
        }
        // store_remote_ca (J30:L405-413)
        fs::write(self.snap_data("certs/ca.remote.crt"), j.ca()).map_err(|e| JoinExit(1, e.to_string()))?;
        // update_apiserver (1.28+, J30:L768, L391-402)
        if self.row.join_updates_apiserver {
            if let Some(mode) = info["api_authz_mode"].as_str() {
                self.set_arg("kube-apiserver", "--authorization-mode", Some(mode));
            }
            if let Some(port) = info["apiport"].as_str() {
                self.set_arg("kube-apiserver", "--secure-port", Some(port));
            }
            self.restart_service("kubelite");
        }
        Ok(())
    }

    /// The kubelet's arguments from the control plane's, kube-proxy's and the
    /// kubelet's certificates signed by the agent, their kubeconfigs, the callback token.
    fn write_credentials(&self, j: &Joined) -> Result<(), JoinExit> {
        let hostname_override = j.info["hostname_override"].as_str().unwrap_or("");
        // store_base_kubelet_args: OVERWRITES args/kubelet (J30:L445-454; J24:L539-548).
        let kubelet_args = j.info["kubelet_args"].as_str().unwrap_or("").to_string();
        self.write_args("kubelet", &kubelet_args);
        // update_kubelet_node_ip: only if the copied args have --node-ip (J30:L457-465).
        if kubelet_args.lines().any(|l| l.starts_with("--node-ip")) {
            self.set_arg("kubelet", "--node-ip", Some(hostname_override));
        }
        // update_kubelet_hostname_override: removed (J30:L468-475).
        self.set_arg("kubelet", "--hostname-override", None);
        // update_cert_auth_kubeproxy (J30:L331-343: proxy.crt; J27:L413-433 and
        // J24:L411-435: kube-proxy.crt): CSR /CN=system:kube-proxy, no SANs.
        let proxy_name = if self.row.join_writes_x509 { "proxy" } else { "kube-proxy" };
        let proxy =
            self.client_cert(j.agent, &format!("{}-proxy", j.token), proxy_name, "system:kube-proxy", &[], &[])?;
        self.set_arg("kube-proxy", "--master", None);
        if self.row.join_drops_proxy_hostname_override {
            // J27:L435: removed.
            self.set_arg("kube-proxy", "--hostname-override", None);
        } else {
            // G9: 1.24 (J24:L433-435), 1.25 and 1.26 (J25/J26:L415-439) set the
            // joining IP as kube-proxy's node name.
            self.set_arg("kube-proxy", "--hostname-override", Some(hostname_override));
        }
        // update_cert_auth_kubelet (J30:L352-369): CN=system:node:HOST, O=system:nodes;
        // SANs DNS:HOST and IP:<get_ips> on 1.28+ (generate_csr_with_sans,
        // 1.30:US:L1075-1105); none on 1.24-1.27 (J27:L244-308).
        let hostname = j.hostname.as_str();
        let node_ip = j.node_ip.to_string();
        let sans: Vec<&str> = if self.row.join_writes_x509 { vec![hostname, node_ip.as_str()] } else { vec![] };
        let cn = format!("system:node:{hostname}");
        let kubelet =
            self.client_cert(j.agent, &format!("{}-kubelet", j.token), "kubelet", &cn, &["system:nodes"], &sans)?;
        self.set_arg("kubelet", "--client-ca-file", Some("${SNAP_DATA}/certs/ca.remote.crt"));
        self.set_arg(
            "kubelet",
            "--node-labels",
            Some("microk8s.io/cluster=true,node.kubernetes.io/microk8s-worker=microk8s-worker"),
        );
        self.write_worker_kubeconfigs(
            j,
            [("kubelet.config", "kubelet", &kubelet), ("proxy.config", "kubeproxy", &proxy)],
        );
        // store_callback_token (J30:L565-574)
        self.write_secret("credentials/callback-token.txt", j.info["callback_token"].as_str().unwrap_or(""));
        Ok(())
    }

    /// Kubeconfigs to the local proxy, 127.0.0.1:<the node's own port>, which
    /// stands for the snap's traefik template port (16443 real), not the control
    /// plane's `apiport` (`get_traefik_port()`, J27; G4):
    /// 1.28+ create_worker_kubeconfigs, data embedded, CA ca.remote.crt
    /// (J30:L774-778; 1.30:US:L620-640); 1.24-1.27 create_x509_kubeconfig, CA data
    /// embedded, certificate and key by path (J27:L367-395;
    /// 1.27:microk8s-resources/client-x509.config.template). Each of `users` is
    /// (file, user, (certificate, key)), the paths relative to `$SNAP_DATA`.
    fn write_worker_kubeconfigs(&self, j: &Joined, users: [(&str, &str, &(String, String)); 2]) {
        let port = self.n("apiserverPort");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        for (file, user, (crt, key)) in users {
            let user_part = if self.row.join_writes_x509 {
                let c = fs::read_to_string(self.snap_data(crt)).unwrap_or_default();
                let k = fs::read_to_string(self.snap_data(key)).unwrap_or_default();
                format!("    client-certificate-data: {}\n    client-key-data: {}\n", b64(&c), b64(&k))
            } else {
                format!(
                    "    client-certificate: /var/snap/microk8s/current/{crt}\n    client-key: /var/snap/microk8s/current/{key}\n"
                )
            };
            let text = format!("apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://127.0.0.1:{port}\n  name: microk8s-cluster\ncontexts:\n- context:\n    cluster: microk8s-cluster\n    user: {user}\n  name: microk8s\ncurrent-context: microk8s\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n{user_part}", b64(j.ca()));
            self.write_secret(&format!("credentials/{file}"), &text);
        }
    }

    /// MicroK8s's proxy to the control plane, pointed at the server joined
    /// through and restarted; which daemon that is.
    fn point_proxy(&self, j: &Joined) -> &'static str {
        let ip = j.ip.as_str();
        let apiport = j.info["apiport"].as_str().unwrap_or("16443").to_string();
        if self.row.proxy_is_apiserver_proxy {
            // update_apiserver_proxy (J30:L695-716): no-apiserver-proxy removed, the
            // ONE server joined through, restart.
            let _ = fs::remove_file(self.snap_data("var/lock/no-apiserver-proxy"));
            self.write_args("traefik/provider.yaml", &provider_yaml(&[format!("{ip}:{apiport}")]));
            self.restart_service("apiserver-proxy");
            "apiserver-proxy"
        } else {
            // update_traefik (J24:L767-794): no-traefik removed, the server joined
            // through plus the other control planes, restart.
            let _ = fs::remove_file(self.snap_data("var/lock/no-traefik"));
            let mut servers = vec![format!("{ip}:{apiport}")];
            for cp in j.info["control_plane_nodes"].as_array().into_iter().flatten().filter_map(|v| v.as_str()) {
                if cp != ip {
                    servers.push(format!("{cp}:{apiport}"));
                }
            }
            self.write_args("traefik/provider.yaml", &provider_yaml(&servers));
            self.restart_service("traefik");
            "traefik"
        }
    }

    /// The worker's locks, then its services restarted.
    fn restart_as_worker(&self, j: &Joined, proxy: &str) {
        // mark_worker_node (J30:L416-428; J24:L510-522): the locks, then restarts.
        for l in ["clustered.lock", "no-k8s-dqlite"] {
            let _ = fs::write(self.snap_data(&format!("var/lock/{l}")), "");
        }
        for d in ["kubelite", "etcd", "apiserver-kicker", proxy, "k8s-dqlite"] {
            self.restart_service(d);
        }
        // mark_no_cert_reissue (CU30:L386-394)
        let _ = fs::write(self.snap_data("var/lock/no-cert-reissue"), "");
        let _ = fs::remove_file(self.snap_data("var/lock/join-in-progress"));
        self.event(&format!("joined as a worker through {}", j.ip));
    }

    /// `get_client_cert` (J30:L224-266): a key and CSR, `POST /cluster/api/v1.0/sign-cert`
    /// to the agent joined through with `verify=False`, the certificate written to
    /// `certs/NAME.crt`. Returns the paths relative to `$SNAP_DATA`.
    fn client_cert(
        &self,
        agent: SocketAddr,
        token: &str,
        name: &str,
        cn: &str,
        orgs: &[&str],
        sans: &[&str],
    ) -> Result<(String, String), JoinExit> {
        let (csr, key) = crate::pki::csr(cn, orgs, sans);
        let (crt_rel, key_rel) = (format!("certs/{name}.crt"), format!("certs/{name}.key"));
        self.write_secret(&key_rel, &key);
        let body = json!({"token": token, "request": csr}).to_string();
        let r = crate::tls::https_post_unverified(None, agent, "/cluster/api/v1.0/sign-cert", &body)
            .map_err(|e| JoinExit(1, format!("Failed to sign {name} certificate: {e}")))?;
        if r.status != 200 {
            return Err(JoinExit(1, format!("Failed to sign {name} certificate ({}). {}", r.status, r.body)));
        }
        let info: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let pem = info["certificate"].as_str().unwrap_or("");
        fs::write(self.snap_data(&crt_rel), pem).map_err(|e| JoinExit(1, e.to_string()))?;
        Ok((crt_rel, key_rel))
    }
}
