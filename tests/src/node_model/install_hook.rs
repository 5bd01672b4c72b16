//! The snap's install hook: default args, certificates, credentials, locks and
//! the launch configuration, then snapd starts every service.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use serde_json::json;

use super::launcher::apply_launch_config;
use super::state::{unix_ms, Ctx};
use super::versions::Range;
use super::SNAP_COMMON;
use crate::pki::Ca;

impl Ctx {
    /// What the install hook lays out, then snapd starts every service.
    pub(super) fn install(&mut self) {
        let range = self.range;
        let port = self.n("apiserverPort");
        let node_ip = self.s("nodeIP");
        // Every branch lower-cases the hostname for node identities
        // (1.22:snap/hooks/install:L40; 1.30:US:L1090).
        let hostname = self.s("hostname").to_lowercase();
        self.link_revision(self.revision());
        // snapd makes the common data directory before the hook runs
        // (snapd overlord/snapstate/backend/copydata.go `CopySnapData`).
        fs::create_dir_all(self.root.join(SNAP_COMMON)).unwrap();
        for d in ["args", "certs", "credentials", "var/lock", "var/kubernetes/backend"] {
            fs::create_dir_all(self.snap_data(d)).unwrap();
        }
        self.lay_out_default_args(port);
        self.make_certs(&hostname, &node_ip);
        self.make_credentials(&hostname, port);
        // Locks: 1.20:snap/hooks/install:L92-96; 1.22:L102-107; 1.24:L106-112; 1.30:L124-130,L151.
        for l in self.row.install_locks {
            let _ = fs::write(self.snap_data(&format!("var/lock/{l}")), "");
        }
        if self.row.launch_config {
            self.lay_out_launch_config();
        }
        if self.minor >= 25 {
            self.copy_default_hooks();
        }
        self.event(&format!("installed microk8s {} ({:?})", self.s("channel"), range));
        if self.systemd() {
            self.write_snap_units();
        }
        // snapd starts every service of the snap after the install hook.
        for unit in self.snap_units() {
            self.start(&unit);
        }
    }

    /// `cp -r --preserve=mode ${SNAP}/default-hooks ${SNAP_COMMON}/hooks` (1.25
    /// snap/hooks/install L97, 1.30 L109): the files of
    /// `microk8s-resources/default-hooks/` (1.25-1.28; 1.29+ has
    /// `reconcile.d/10-pods-restart` instead of the two `10-cni-restart*`), their
    /// content a stand-in (the model runs no lifecycle hook). `cp -r` into a `hooks/`
    /// that exists copies the tree *into* it, as `hooks/default-hooks/`.
    fn copy_default_hooks(&self) {
        let common = self.root.join(SNAP_COMMON);
        let hooks = common.join("hooks");
        let dest = if hooks.exists() { hooks.join("default-hooks") } else { hooks };
        let reconcile: &[&str] = if self.minor >= 29 {
            &["reconcile.d/10-pods-restart"]
        } else {
            &["reconcile.d/10-cni-restart", "reconcile.d/10-cni-restart-cilium"]
        };
        let files = ["post-refresh.d/30-helm", "reconcile.d/90-calico-apply", "remove.d/10-cni-link"]
            .into_iter()
            .chain(["remove.d/10-cni-link-cilium", "remove.d/20-cni-netns", "remove.d/90-containers"])
            .chain(reconcile.iter().copied());
        for f in files {
            let p = dest.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, format!("#!/bin/bash\n# MicroK8s's default hook {f} (a stand-in)\n")).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    /// `cp -r ${SNAP}/default-args ${SNAP_DATA}/args` (1.20:snap/hooks/install:L12,
    /// 1.26:L18, 1.30:L28): only the lines that matter to a worker.
    fn lay_out_default_args(&self, port: u64) {
        let r = self.row;
        let labels = self.row.kubelet_node_labels;
        // 1.20:DA/kubelet:L1-4,L6-7; 1.30:DA/kubelet:L1-14 (no --tls-cert-file in any branch)
        let kubelet = format!(
            "--kubeconfig=${{SNAP_DATA}}/credentials/kubelet.config\n--cert-dir=${{SNAP_DATA}}/certs\n--client-ca-file=${{SNAP_DATA}}/certs/ca.crt\n--anonymous-auth=false\n--root-dir=${{SNAP_COMMON}}/var/lib/kubelet\n--fail-swap-on=false\n--node-labels=\"{labels}\"\n--authentication-token-webhook=true\n--read-only-port=0\n"
        );
        if self.state["real"].is_object() {
            // The real kubelet reads all of it: the branch's file verbatim.
            let full: String =
                crate::microk8s_args::for_minor(self.minor).kubelet.iter().map(|l| format!("{l}\n")).collect();
            self.write_args("kubelet", &full);
        } else {
            self.write_args("kubelet", &kubelet);
        }
        // 1.30:DA/kube-proxy:L1-4 (same in 1.20-1.34)
        self.write_args(
            "kube-proxy",
            "--kubeconfig=${SNAP_DATA}/credentials/proxy.config\n--cluster-cidr=10.1.0.0/16\n--healthz-bind-address=127.0.0.1\n--profiling=false\n",
        );
        // 1.20:DA/kube-apiserver:L1-11; 1.26:DA/kube-apiserver:L3,L5,L11; 1.30:DA/kube-apiserver:L3,L5,L30-31.
        // --secure-port is the model's port (16443 real).
        let mut apiserver = format!(
            "--cert-dir=${{SNAP_DATA}}/certs\n--authorization-mode=AlwaysAllow\n--client-ca-file=${{SNAP_DATA}}/certs/ca.crt\n--tls-cert-file=${{SNAP_DATA}}/certs/server.crt\n--tls-private-key-file=${{SNAP_DATA}}/certs/server.key\n--secure-port={port}\n"
        );
        if r.token_credentials {
            apiserver.push_str("--token-auth-file=${SNAP_DATA}/credentials/known_tokens.csv\n");
        } else {
            // Added by 0071dd1d and 4086f4ac (1.28+, fresh installs: this node is one).
            apiserver.push_str("--kubelet-certificate-authority=${SNAP_DATA}/certs/ca.crt\n--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP\n");
        }
        self.write_args("kube-apiserver", &apiserver);
        if self.range != Range::R119_120 {
            // 1.30:DA/kubelite (the same in every branch 1.21+)
            self.write_args("kubelite", "--scheduler-args-file=$SNAP_DATA/args/kube-scheduler\n--controller-manager-args-file=$SNAP_DATA/args/kube-controller-manager\n--proxy-args-file=$SNAP_DATA/args/kube-proxy\n--kubelet-args-file=$SNAP_DATA/args/kubelet\n--apiserver-args-file=$SNAP_DATA/args/kube-apiserver\n--kubeconfig-file=$SNAP_DATA/credentials/client.config\n--start-control-plane=true\n");
        }
        if self.row.dqlite_and_traefik_args {
            // 1.24:DA/k8s-dqlite
            self.write_args(
                "k8s-dqlite",
                "--storage-dir=${SNAP_DATA}/var/kubernetes/backend/\n--listen=unix://${SNAP_DATA}/var/kubernetes/backend/kine.sock:12379\n",
            );
            self.lay_out_traefik_args();
        }
        if self.row.proxy_is_apiserver_proxy {
            self.lay_out_apiserver_proxy_args();
        }
    }

    /// Launch configuration, 1.27+ (1.27:snap/hooks/install:L67-77; 1.30:L77-87):
    /// /etc/microk8s.yaml first, else $SNAP/microk8s.default.yaml (`addons: [dns]`,
    /// 1.30:microk8s-resources/microk8s.default.yaml:L1-8), copied to
    /// $SNAP_COMMON/etc/launcher/install.yaml.
    fn lay_out_launch_config(&mut self) {
        let user = self.root.join("etc/microk8s.yaml");
        let (which, text) = match fs::read_to_string(&user) {
            Ok(t) => ("/etc/microk8s.yaml", t),
            Err(_) => ("$SNAP/microk8s.default.yaml", "version: 0.1.0\nextraKubeletArgs:\n  --cluster-domain: cluster.local\n  --cluster-dns: 10.152.183.10\naddons:\n  - name: dns\n".to_string()),
        };
        let dest = self.root.join(SNAP_COMMON).join("etc/launcher/install.yaml");
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::write(dest, &text).unwrap();
        self.set_state("launchConfig", json!(which));
        // `cluster-agent init --pre-init --config-file .../install.yaml`
        // (1.30:snap/hooks/install:L83): everything but addons, the join and the
        // restarts (CA 1.30:pkg/k8sinit/apply.go:L29,L45,L112). The file stays, so
        // the running agent applies it again, whole. (A failure fails the install
        // upstream, L76; the model records it.)
        if let Err(e) = apply_launch_config(self, &text, true) {
            self.event(&format!("install hook: cluster-agent init --pre-init failed: {e}"));
        }
    }

    /// 1.30:DA/traefik/traefik-template.yaml, provider-template.yaml; the
    /// template's port is the node's own (16443 real, where the snap's proxy
    /// listens and what the join's `get_traefik_port()` reads).
    pub(super) fn lay_out_traefik_args(&self) {
        self.write_args(
            "traefik/traefik-template.yaml",
            &format!("entryPoints:\n  apiserver:\n    address: \":{}\"\nproviders:\n  file:\n    filename: ${{SNAP_DATA}}/args/traefik/provider.yaml\n    watch: true\n", self.n("apiserverPort")),
        );
        self.write_args("traefik/provider-template.yaml", "tcp:\n  routers:\n    Router-1:\n      rule: \"HostSNI(`*`)\"\n      service: \"kube-apiserver\"\n      tls:\n        passthrough: true\n  services:\n    kube-apiserver:\n      loadBalancer:\n        servers:\n# APISERVERS\n");
    }

    /// 1.30:DA/apiserver-proxy:L1-3.
    pub(super) fn lay_out_apiserver_proxy_args(&self) {
        self.write_args("apiserver-proxy", "--traefik-config ${SNAP_DATA}/args/traefik/traefik.yaml\n--kubeconfig ${SNAP_DATA}/credentials/kubelet.config\n--refresh-interval 30s\n");
    }

    /// `produce_certs` (1.20:US:L363-413; 1.30:US:L679-690,L586-589): a node-local
    /// CA (CN=10.152.183.1) and server.crt signed by it; 1.28+ `create_user_certificates`
    /// (1.30:US:L601-609) adds kubelet.crt (CN=system:node:HOST, O=system:nodes, SANs
    /// DNS:HOST and the node's IPs, `generate_csr_with_sans` 1.30:US:L1075-1105), signed
    /// by the same local CA (`sign_certificate`, 1.30:US:L1127-1151).
    fn make_certs(&self, hostname: &str, node_ip: &str) {
        let ca = Ca::new("10.152.183.1");
        let w = |name: &str, text: &str, mode: u32| {
            let p = self.snap_data(&format!("certs/{name}"));
            fs::write(&p, text).unwrap();
            let _ = fs::set_permissions(&p, fs::Permissions::from_mode(mode));
        };
        w("ca.crt", &ca.cert_pem, 0o644);
        w("ca.key", &ca.key_pem, 0o600);
        // csr.conf.template: CN=127.0.0.1, SANs kubernetes.*, 127.0.0.1, 10.152.183.1, #MOREIPS
        let server = ca.server(&["127.0.0.1", "10.152.183.1", node_ip, "kubernetes", "kubernetes.default"]);
        w("server.crt", &server.cert_pem, 0o644);
        w("server.key", &server.key_pem, 0o600);
        if self.row.kubelet_crt {
            let kubelet = ca.serving(&format!("system:node:{hostname}"), &["system:nodes"], &[hostname, node_ip]);
            w("kubelet.crt", &kubelet.cert_pem, 0o644);
            w("kubelet.key", &kubelet.key_pem, 0o600);
        }
        // Kept for x509 kubeconfigs below (the install hook signs them with ca.key too).
        if !self.row.token_credentials {
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
            let ca_data = b64(&ca.cert_pem);
            let port = self.n("apiserverPort");
            for (file, cn, orgs) in [
                ("kubelet.config", format!("system:node:{hostname}"), vec!["system:nodes"]),
                ("proxy.config", "system:kube-proxy".to_string(), vec![]),
                ("client.config", "admin".to_string(), vec!["system:masters"]),
            ] {
                let leaf = ca.client(&cn, &orgs);
                // create_kubeconfig_x509 (1.30:US:L642-677): data embedded, server
                // 127.0.0.1:--secure-port.
                let text = format!(
                    "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca_data}\n    server: https://127.0.0.1:{port}\n  name: microk8s-cluster\ncontexts:\n- context:\n    cluster: microk8s-cluster\n    user: {cn}\n  name: microk8s\ncurrent-context: microk8s\nkind: Config\npreferences: {{}}\nusers:\n- name: {cn}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
                    b64(&leaf.cert_pem),
                    b64(&leaf.key_pem)
                );
                self.write_secret(&format!("credentials/{file}"), &text);
            }
        }
    }

    /// <=1.27: known_tokens.csv and token kubeconfigs from client.config.template
    /// (1.20:snap/hooks/install:L21-74; 1.26:L41-94; 1.22:microk8s-resources/client.config.template).
    fn make_credentials(&self, hostname: &str, port: u64) {
        if !self.row.token_credentials {
            return;
        }
        let ca_pem = fs::read_to_string(self.snap_data("certs/ca.crt")).unwrap();
        let ca_data = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
        let seed = format!("{:x}{:x}", unix_ms(), std::process::id());
        let token = |i: u32| format!("{seed}{i:04x}");
        let csv = format!(
            "{},admin,admin,\"system:masters\"\n{},system:kube-proxy,kube-proxy\n{},system:node:{hostname},kubelet-0,\"system:nodes\"\n{},system:kube-controller-manager,controller\n{},system:kube-scheduler,scheduler\n",
            token(0),
            token(1),
            token(2),
            token(3),
            token(4)
        );
        self.write_secret("credentials/known_tokens.csv", &csv);
        for (file, name, t) in [
            ("client.config", "admin", token(0)),
            ("proxy.config", "kubeproxy", token(1)),
            ("kubelet.config", "kubelet", token(2)),
        ] {
            let text = format!("apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca_data}\n    server: https://127.0.0.1:{port}\n  name: microk8s-cluster\ncontexts:\n- context:\n    cluster: microk8s-cluster\n    user: {name}\n  name: microk8s\ncurrent-context: microk8s\nkind: Config\npreferences: {{}}\nusers:\n- name: {name}\n  user:\n    username: {name}\n    token: {t}\n");
            self.write_secret(&format!("credentials/{file}"), &text);
        }
    }
}
