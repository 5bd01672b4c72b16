//! Facts + one worker -> the JoinPlan and every file the node needs -> cloud-config.
//!
//! All decisions are made here (paths, services, flags, tokens); the bootstrap only
//! executes the plan. Output is a pure function of its inputs: no clock, no
//! randomness, no environment, so the same inputs give byte-identical user-data.

use std::io::Write as _;

use base64::Engine as _;
use mk8s_bootstrap::plan::{
    self, ApiserverSpec, CaSpec, CredentialsSpec, InstallFile, JoinPlan, LoadBalancerSpec, MicroK8sSpec, NodeSpec,
    TimingSpec,
};
use serde::Serialize;
use serde_json::json;

use crate::model::release::{apiserver_proxy_unit, services, CLUSTER_AGENT_PORT};
use crate::model::{host_port, Facts, Worker};
use crate::secrets::Secrets;
use crate::selfcheck;
use crate::templates;

pub use crate::files::*;

/// How the bootstrap binary reaches the node.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// In the user-data, gzip + base64 (compressed once, deterministically).
    Embedded { gz_b64: std::sync::Arc<String> },
    /// Downloaded at boot and verified by sha256 before it runs.
    Fetched { url: String, sha256: String },
    /// Already in the image at [`plan::BOOTSTRAP_PATH`].
    Preinstalled,
}

impl Delivery {
    pub fn embedded(binary: &[u8]) -> Delivery {
        Delivery::Embedded {
            gz_b64: std::sync::Arc::new(base64::engine::general_purpose::STANDARD.encode(gzip(binary))),
        }
    }
}

/// Deterministic gzip: mtime 0, no file name, fixed OS byte.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc =
        flate2::GzBuilder::new().mtime(0).operating_system(255).write(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

/// Everything generated for one worker.
#[derive(Debug, Clone)]
pub struct NodeOutput {
    pub plan: JoinPlan,
    pub files: Vec<NodeFile>,
    /// Distribution packages cloud-init installs (before `runcmd`).
    pub packages: Vec<String>,
    /// Commands run once the files are written.
    pub commands: Vec<Vec<String>>,
}

/// The URL kubelet and kube-proxy use: MicroK8s's own proxy when the mode joins
/// through it, else the balancer's.
pub fn server_url(facts: &Facts) -> String {
    let listen = host_port("127.0.0.1", facts.apiserver_port);
    if crate::auth::of(&facts.auth).joined(facts).is_some() {
        // What the join writes into the kubeconfigs: the local proxy.
        return format!("https://{listen}");
    }
    crate::balancer::of(&facts.load_balancer).server_url(&facts.load_balancer, &listen)
}

/// What every node of a cluster shares (load-balancer files, the bootstrap binary or
/// its fetch script, units): rendered and checked once per run, not once per node.
#[derive(Debug, Clone)]
pub struct Shared {
    endpoints: Vec<String>,
    files: Vec<NodeFile>,
    load_balancer: LoadBalancerSpec,
    /// What MicroK8s's own join brings, when the auth mode joins through it.
    joined: Option<crate::auth::Joined>,
    /// Set once a node's kubeconfigs were parsed back in full (see
    /// [`crate::auth::NodeCx`]).
    kubeconfig_parsed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The `write_files` entry of each shared file, emitted once (by path).
    emitted: std::collections::HashMap<String, String>,
    /// Shared staged files the bootstrap installs into the snap's data directory.
    install: Vec<InstallFile>,
    /// The shared files are baked into the image (`mk8s-gen packer`): user-data
    /// carries only the node's own files and the plan.
    baked: bool,
}

impl Shared {
    pub fn new(facts: &Facts, delivery: &Delivery) -> anyhow::Result<Shared> {
        let endpoints: Vec<String> =
            facts.control_plane.iter().map(|c| host_port(&c.address.to_string(), facts.apiserver_port)).collect();

        let mut files = Vec::new();
        let mut install = Vec::new();
        let listen = host_port("127.0.0.1", facts.apiserver_port);
        // The only addresses a load balancer's unit lets it reach, beside loopback.
        let allow: Vec<String> = facts.control_plane.iter().map(|c| c.address.to_string()).collect();
        let balancer = crate::balancer::of(&facts.load_balancer);
        let joined = crate::auth::of(&facts.auth).joined(facts);
        let load_balancer = if let Some(j) = &joined {
            j.balancer.clone()
        } else {
            let cx = crate::balancer::RenderCx { facts, endpoints: &endpoints, listen: &listen, allow: &allow };
            let rendered = balancer.render(&facts.load_balancer, &cx)?;
            files.extend(rendered.files);
            install.extend(rendered.install);
            rendered.spec
        };

        // MicroK8s 1.27+ (and `latest`): a launch configuration that enables no addon,
        // written before the bootstrap installs the snap. Without it the install hook
        // takes $SNAP/microk8s.default.yaml (`addons: [dns]`), and the worker's
        // cluster-agent retries enabling dns every 5 s forever (snap/hooks/install,
        // microk8s-resources/microk8s.default.yaml from 1.27; cluster-agent 1.27+
        // cmd/cluster-agent.go keeps a file that fails and applies it again).
        if facts.channel.release.launch_config {
            let text = templates::render("microk8s.yaml", json!({}))?;
            selfcheck::launch_configuration(&text)?;
            files.push(NodeFile { path: LAUNCH_CONFIG.into(), content: FileContent::Text(text), mode: 0o644 });
        }

        // The bootstrap binary and its unit.
        let fetch_script = match delivery {
            Delivery::Embedded { gz_b64 } => {
                files.push(NodeFile {
                    path: plan::BOOTSTRAP_PATH.into(),
                    content: FileContent::GzipBase64(gz_b64.clone()),
                    mode: 0o755,
                });
                None
            }
            Delivery::Fetched { url, sha256 } => {
                let script = templates::render(
                    "fetch-bootstrap.sh",
                    json!({"url": url, "sha256": sha256, "dest": plan::BOOTSTRAP_PATH}),
                )?;
                // 0700: a presigned URL's signature is in it; only root (systemd) runs it.
                files.push(NodeFile { path: FETCH_SCRIPT.into(), content: FileContent::Text(script), mode: 0o700 });
                Some(FETCH_SCRIPT)
            }
            Delivery::Preinstalled => None,
        };
        let unit = templates::render(
            "mk8s-bootstrap.service",
            json!({"binary": plan::BOOTSTRAP_PATH, "plan": plan::PLAN_PATH, "fetch_script": fetch_script}),
        )?;
        files.push(NodeFile {
            path: format!("{UNIT_DIR}/{BOOTSTRAP_UNIT}"),
            content: FileContent::Text(unit),
            mode: 0o644,
        });

        let emitted = files.iter().map(|f| (f.path.clone(), write_file_item(f))).collect();
        Ok(Shared {
            endpoints,
            files,
            load_balancer,
            joined,
            kubeconfig_parsed: Default::default(),
            emitted,
            install,
            baked: false,
        })
    }

    /// For an image baked with `mk8s-gen packer` from the same facts.
    pub fn baked(mut self) -> Shared {
        self.baked = true;
        self
    }

    /// The files every node shares, to bake into an image.
    pub fn files(&self) -> &[NodeFile] {
        &self.files
    }
}

/// Render a worker's output. Template errors and failed self-checks are bugs in
/// mk8s-gen, not in the input (the facts were validated), and say so.
pub fn render_node(
    facts: &Facts,
    secrets: &Secrets,
    worker: &Worker,
    delivery: &Delivery,
) -> anyhow::Result<NodeOutput> {
    render_node_with(facts, secrets, worker, &Shared::new(facts, delivery)?)
}

/// As [`render_node`], with the shared parts rendered once by the caller.
pub fn render_node_with(
    facts: &Facts,
    secrets: &Secrets,
    worker: &Worker,
    shared: &Shared,
) -> anyhow::Result<NodeOutput> {
    let server = server_url(facts);
    let joined = shared.joined.as_ref();
    let cx =
        crate::auth::NodeCx { facts, secrets, worker, server: &server, kubeconfig_parsed: &shared.kubeconfig_parsed };
    let creds = crate::auth::of(&facts.auth).credentials(&facts.auth, &cx)?;

    let mut files = Vec::new();
    let mut install = Vec::new();
    for st in creds.staged {
        let path = format!("{STAGE_DIR}/{}", st.name);
        install.push(InstallFile {
            staged: path.clone(),
            target: st.target.into(),
            mode: st.mode,
            sha256: plan::sha256_hex(st.text.as_bytes()),
            secret: st.secret,
        });
        files.push(NodeFile { path, content: FileContent::Text(st.text), mode: st.mode });
    }

    let (mut stop_services, mut start_services, locks) = services(facts.channel.release.flavour);
    if crate::balancer::of(&facts.load_balancer).keeps_apiserver_proxy() || joined.is_some() {
        // MicroK8s's own proxy is the load balancer here: keep it.
        stop_services.retain(|u| *u != apiserver_proxy_unit());
    }
    if let Some(j) = joined {
        start_services.push(j.proxy_unit.clone());
    }
    let mut labels =
        vec!["microk8s.io/cluster=true".to_string(), "node.kubernetes.io/microk8s-worker=microk8s-worker".into()];
    labels.extend(worker.labels.iter().map(|(k, v)| format!("{k}={v}")));
    // G5: MicroK8s's own join copies the control plane's whole args/kubelet (its
    // DNS lines included) and, from 1.27, its pod CIDR into kube-proxy's args
    // (canonical/microk8s 1.30:scripts/wrappers/join.py L445-454, L676-687): in
    // `auth: microk8s-join` a value the facts leave to its default is not ours to
    // write over what the join copied.
    let joins = joined.is_some();
    let mut kubelet_args = Vec::new();
    if !joins || facts.dns.domain_given {
        kubelet_args.push(format!("--cluster-domain={}", facts.dns.cluster_domain));
    }
    if !joins || facts.dns.dns_given {
        kubelet_args.push(format!("--cluster-dns={}", facts.dns.cluster_dns));
    }
    kubelet_args.extend([
        // MicroK8s's own join keeps the cluster CA apart from the node's (join.py).
        "--client-ca-file=${SNAP_DATA}/certs/ca.remote.crt".to_string(),
        format!("--node-labels={}", labels.join(",")),
        // The token is bound to system:node:NAME; register under exactly that name.
        format!("--hostname-override={}", worker.name),
    ]);
    if let Some(ip) = worker.address {
        kubelet_args.push(format!("--node-ip={ip}"));
    }
    kubelet_args.extend(worker.kubelet_args.iter().cloned());
    let mut kube_proxy_args = vec![format!("--hostname-override={}", worker.name)];
    // The cluster's pod network, as MicroK8s's own join copies it from the control
    // plane (canonical/microk8s 1.27+ scripts/wrappers/join.py, `update_kubeproxy_cidr`
    // after comparing `info["cluster_cidr"]`); before 1.27 the join left the default
    // of default-args/kube-proxy (`--cluster-cidr=10.1.0.0/16`). 1.28+
    // run-kubelite-with-args also reads it for its FORWARD rule. Joined: only when
    // the facts give it (G5).
    if !joins || facts.pod_cidr_given {
        kube_proxy_args.push(format!("--cluster-cidr={}", facts.pod_cidr));
    }

    if !shared.baked {
        files.extend(shared.files.iter().cloned());
    }
    install.extend(shared.install.iter().cloned());
    let endpoints = shared.endpoints.clone();
    let load_balancer = shared.load_balancer.clone();

    let plan = JoinPlan {
        api_version: plan::API_VERSION.into(),
        kind: plan::KIND.into(),
        cluster: facts.name.clone(),
        node: NodeSpec { name: worker.name.clone() },
        microk8s: MicroK8sSpec {
            channel: facts.channel.text.clone(),
            flavour: facts.channel.release.flavour,
            stop_services,
            start_services,
            locks,
            local_snap: facts.channel.local_snap.as_ref().map(|l| plan::LocalSnap {
                file: l.file.clone(),
                assert: l.assert.clone(),
                base: l
                    .base
                    .as_ref()
                    .map(|(file, assert)| plan::SnapFile { file: file.clone(), assert: assert.clone() }),
            }),
        },
        ca: CaSpec { pem: facts.ca.pem.clone(), pin: facts.ca.pin.clone() },
        apiserver: ApiserverSpec { url: server, endpoints },
        credentials: CredentialsSpec { kubelet: creds.kubelet, kube_proxy: creds.kube_proxy },
        install,
        kubelet_args,
        kube_proxy_args,
        load_balancer,
        timing: TimingSpec { ready_deadline_secs: facts.ready_deadline_secs, ..TimingSpec::default() },
        join: joined.map(|j| j.spec.clone()),
    };
    plan.check().map_err(|e| anyhow::anyhow!("internal error: mk8s-gen produced an invalid plan: {e}"))?;
    files.push(NodeFile { path: plan::PLAN_PATH.into(), content: FileContent::Text(plan.to_json()), mode: 0o600 });

    let mut commands = vec![
        vec!["systemctl".into(), "daemon-reload".into()],
        vec!["systemctl".into(), "enable".into(), "--now".into(), "--no-block".into(), BOOTSTRAP_UNIT.into()],
    ];
    if joined.is_some() {
        // `microk8s join` registers the node under the machine's hostname
        // (join.py `socket.gethostname().lower()`): make it the node's name, before
        // the bootstrap starts (it refuses another). /etc/hostname also serves Ignition.
        files.push(NodeFile {
            path: "/etc/hostname".into(),
            content: FileContent::Text(format!("{}\n", worker.name)),
            mode: 0o644,
        });
        commands.insert(0, vec!["hostnamectl".into(), "set-hostname".into(), worker.name.clone()]);
    }
    let packages = crate::balancer::of(&facts.load_balancer).packages().iter().map(|p| p.to_string()).collect();
    Ok(NodeOutput { plan, files, packages, commands })
}

#[derive(Serialize)]
struct WriteFile<'a> {
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    content: &'a str,
    owner: &'static str,
    /// cloud-init wants an octal string.
    permissions: String,
}

fn write_file_value(f: &NodeFile) -> serde_json::Value {
    let (encoding, content) = match &f.content {
        FileContent::Text(t) => (None, t.as_str()),
        FileContent::GzipBase64(b) => (Some("gz+b64"), b.as_str()),
    };
    let wf = WriteFile { path: &f.path, encoding, content, owner: "root:root", permissions: format!("{:04o}", f.mode) };
    serde_json::to_value(&wf).expect("write_files entry serializes")
}

/// One `write_files` entry as it appears in the document.
fn write_file_item(f: &NodeFile) -> String {
    crate::yaml::sequence_item(&write_file_value(f), 2)
}

/// The `#cloud-config` document for one worker.
pub fn cloud_config(out: &NodeOutput) -> String {
    cloud_config_with(out, None)
}

/// As [`cloud_config`], reusing the entries of files every node shares. The result
/// is the same document, byte for byte (`yaml::sequence_item`).
pub fn cloud_config_with(out: &NodeOutput, shared: Option<&Shared>) -> String {
    let mut doc = header(out);
    doc.push_str("write_files:\n");
    for f in &out.files {
        match shared.and_then(|s| s.emitted.get(&f.path)) {
            Some(item) => doc.push_str(item),
            None => doc.push_str(&write_file_item(f)),
        }
    }
    if !out.packages.is_empty() {
        doc.push_str("packages:\n");
        for p in &out.packages {
            doc.push_str(&crate::yaml::sequence_item(&serde_json::json!(p), 2));
        }
    }
    doc.push_str("runcmd:\n");
    for c in &out.commands {
        doc.push_str(&crate::yaml::sequence_item(&serde_json::json!(c), 2));
    }
    doc
}

/// The same document through the generic emitter in one piece; tests compare the
/// two so the piecewise assembly above cannot drift.
pub fn cloud_config_whole(out: &NodeOutput) -> String {
    let files: Vec<serde_json::Value> = out.files.iter().map(write_file_value).collect();
    let value = if out.packages.is_empty() {
        serde_json::json!({ "write_files": files, "runcmd": out.commands })
    } else {
        serde_json::json!({ "write_files": files, "packages": out.packages, "runcmd": out.commands })
    };
    format!("{}{}", header(out), crate::yaml::to_string(&value))
}

fn header(out: &NodeOutput) -> String {
    format!(
        "#cloud-config\n# mk8s-worker: node {} of cluster {}. Generated by mk8s-gen; holds secrets.\n",
        out.plan.node.name, out.plan.cluster
    )
}

/// `mk8s-gen --format launch-config`: the `.microk8s.yaml` an operator drops into an
/// image (as `/etc/microk8s.yaml`, before `snap install microk8s`) to join the node
/// with MicroK8s alone, 1.27+: the MicroK8s-only path, without mk8s-bootstrap.
///
/// Two documents (canonical/microk8s-cluster-agent 1.30:pkg/k8sinit/schema.go,
/// `ParseMultiPartConfiguration`; apply.go applies parts in order and, within a part,
/// the join last): the join, then our kubelet and kube-proxy arguments, which must come
/// after it because the join replaces `args/kubelet` with the control plane's
/// (canonical/microk8s 1.30:scripts/wrappers/join.py `store_base_kubelet_args`).
/// `extraKubeletArgs` changed kubelite's args, so the agent restarts kubelite after
/// the last part (apply.go). Limits: one control plane in the URL, no failover; the
/// control plane is verified only by CHECK (join.py compares a prefix of the sha256 of
/// its certificate), which changes whenever that node's `server.crt` is issued again;
/// the node's name is the machine's hostname.
pub fn launch_config(facts: &Facts, secrets: &Secrets, worker: &Worker, check: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        crate::auth::of(&facts.auth).joined(facts).is_some(),
        "--format launch-config needs `auth: microk8s-join` (the control-plane bundle registers the join tokens)"
    );
    anyhow::ensure!(
        facts.channel.release.launch_config,
        "--format launch-config needs MicroK8s 1.27 or later (launch configurations with `join` appear in 1.27); \
         use the user-data (mk8s-bootstrap runs `microk8s join` on 1.23+)"
    );
    // MicroK8s compares only as many characters as CHECK has (join.py wants at
    // least 12): a 48-bit prefix is a match a man-in-the-middle can precompute once
    // per control-plane certificate. The full digest leaves no such room.
    anyhow::ensure!(
        check.len() == 64 && check.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "--join-check must be the whole sha256, 64 lower-case hex characters: MicroK8s compares only as many \
         characters as it is given, and a short prefix can be matched by a forged certificate"
    );
    let cp = facts
        .control_plane
        .iter()
        .find(|c| c.address.is_ipv4())
        .ok_or_else(|| anyhow::anyhow!("a launch configuration's join URL needs an IPv4 control plane"))?;
    let token = secrets.join_token(&facts.name, &worker.name, worker.generation);
    let url = format!("{}:{}/{token}/{check}", cp.address, CLUSTER_AGENT_PORT);
    let mut labels =
        vec!["microk8s.io/cluster=true".to_string(), "node.kubernetes.io/microk8s-worker=microk8s-worker".into()];
    labels.extend(worker.labels.iter().map(|(k, v)| format!("{k}={v}")));
    let mut kubelet = serde_json::Map::new();
    let mut put = |k: &str, v: String| {
        kubelet.insert(k.to_string(), json!(v));
    };
    put("--cluster-domain", facts.dns.cluster_domain.clone());
    put("--cluster-dns", facts.dns.cluster_dns.to_string());
    put("--node-labels", labels.join(","));
    if let Some(ip) = worker.address {
        put("--node-ip", ip.to_string());
    }
    for a in &worker.kubelet_args {
        let (k, v) = a.split_once('=').unwrap_or((a.as_str(), "true"));
        put(k, v.to_string());
    }
    let join = json!({"version": "0.1.0", "join": {"url": url, "worker": true}});
    let args = json!({
        "version": "0.1.0",
        "extraKubeletArgs": kubelet,
        "extraKubeProxyArgs": {"--cluster-cidr": facts.pod_cidr},
    });
    let text = format!(
        "# MicroK8s launch configuration for node {node} of cluster {cluster}, by mk8s-gen. Holds a\n\
         # join token: a cluster-admin credential until the control plane prunes it.\n\
         # Put it at /etc/microk8s.yaml before `snap install microk8s --channel {channel}`, on a\n\
         # machine whose hostname is {node}. Part 1 joins through {cp}; part 2 applies our\n\
         # kubelet arguments after the join replaced args/kubelet.\n---\n{}---\n{}",
        crate::yaml::to_string(&join),
        crate::yaml::to_string(&args),
        node = worker.name,
        cluster = facts.name,
        channel = facts.channel.text,
        cp = cp.address,
    );
    selfcheck::launch_configuration_join(&text, &url)?;
    Ok(text)
}
