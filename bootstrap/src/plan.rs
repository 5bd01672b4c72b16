//! The JoinPlan: the contract between `mk8s-gen` (which decides everything) and
//! `mk8s-bootstrap` (which executes and verifies). Serialized as JSON, written 0600.
//!
//! Compatibility rule: a change that an older bootstrap could misread bumps
//! [`API_VERSION`]; unknown fields are rejected so a plan from a newer generator fails
//! loudly (exit 78) instead of being half-applied.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::node::Node;

/// The only plan version this bootstrap executes.
pub const API_VERSION: &str = "mk8s-worker/v1";
/// The `kind` field of a plan.
pub const KIND: &str = "JoinPlan";
/// Where the user-data puts the plan on the node.
pub const PLAN_PATH: &str = "/etc/mk8s-worker/plan.json";
/// Where the bootstrap binary lives on the node.
pub const BOOTSTRAP_PATH: &str = "/usr/local/bin/mk8s-bootstrap";
/// The MicroK8s snap's data directory (`$SNAP_DATA` for revision `current`).
pub use crate::node::SNAP_DATA;

/// Everything a node needs to become a worker, already decided by the generator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinPlan {
    pub api_version: String,
    pub kind: String,
    pub cluster: String,
    pub node: NodeSpec,
    pub microk8s: MicroK8sSpec,
    pub ca: CaSpec,
    pub apiserver: ApiserverSpec,
    pub credentials: CredentialsSpec,
    /// Files the user-data staged on the node, installed by the bootstrap into the
    /// snap's data directory once the snap exists.
    pub install: Vec<InstallFile>,
    /// Lines the bootstrap makes sure are present in `args/kubelet`.
    pub kubelet_args: Vec<String>,
    /// Lines the bootstrap makes sure are present in `args/kube-proxy`.
    pub kube_proxy_args: Vec<String>,
    pub load_balancer: LoadBalancerSpec,
    pub timing: TimingSpec,
    /// `auth: microk8s-join`: the node joins with MicroK8s's own
    /// `microk8s join IP:PORT/TOKEN/CHECK --worker`, the control plane's
    /// cluster-agent signing its certificates; the token is `credentials.kubelet`
    /// (a [`Credential::JoinToken`]). Absent in the other modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinSpec>,
    /// The node-local balancer's files as the user-data (or the image) wrote them:
    /// what `mk8s-bootstrap maintain` holds them to. Files the balancer itself
    /// rewrites (MicroK8s's apiserver-proxy refreshes its provider file) are not
    /// listed. Empty when no balancer of ours runs on the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub balancer_files: Vec<PlannedFile>,
}

/// A file whose content the plan fixes (by its hash), at an absolute node path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlannedFile {
    pub path: String,
    /// sha256 of the content.
    pub sha256: String,
    /// Octal mode, e.g. 0o644.
    pub mode: u32,
}

/// How the node joins in `auth: microk8s-join` mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinSpec {
    /// The control planes' cluster-agent endpoints (`IP:25000`), tried in turn.
    pub agents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSpec {
    /// The Kubernetes node name (kubelet registers with it).
    pub name: String,
    /// The facts' `workers[].epoch`: which machine, of those that held this name,
    /// this plan is for. Absent (1) in plans of epoch 1, as before epochs existed.
    #[serde(default = "first_epoch", skip_serializing_if = "is_first_epoch")]
    pub epoch: u32,
}

fn first_epoch() -> u32 {
    1
}

fn is_first_epoch(epoch: &u32) -> bool {
    *epoch == 1
}

/// How MicroK8s behaves on a worker depends on its version; the generator picks the
/// flavour from the channel (see `docs/join-flavours.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavour {
    /// 1.19 and 1.20: separate daemons for every Kubernetes component.
    Daemons,
    /// 1.21 to 1.24: one `kubelite` daemon; `clustered.lock` keeps its control plane off.
    Kubelite,
    /// 1.25 and later: kubelite, plus MicroK8s's own `apiserver-proxy` on workers.
    KubeliteApiserverProxy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MicroK8sSpec {
    pub channel: String,
    pub flavour: Flavour,
    /// systemd units to stop and disable so no control plane runs on the node.
    pub stop_services: Vec<String>,
    /// systemd units that run the worker (kubelet and kube-proxy, or kubelite).
    pub start_services: Vec<String>,
    /// Files created under `var/lock/` before anything is (re)started, so the control
    /// plane stays off across restarts and snap refreshes.
    pub locks: Vec<String>,
    /// Air-gapped sites: install from this local snap and its assertion instead of
    /// the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_snap: Option<LocalSnap>,
    /// Hold snapd's automatic refreshes of MicroK8s (`snap refresh --hold`), so a
    /// new release lands only when the operator refreshes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold_refresh: bool,
    /// MicroK8s 1.25+: the text of our post-refresh hook, installed once the snap
    /// is (`$SNAP_COMMON/hooks/post-refresh.d/`, see [`REFRESH_HOOK_PATH`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_hook: Option<String>,
}

/// Where our post-refresh hook goes: MicroK8s 1.25+ runs the executable files of
/// `$SNAP_COMMON/hooks/post-refresh.d/` in sorted order after a refresh, each with
/// a 120 s timeout (canonical/microk8s 1.25..1.34 `snap/hooks/post-refresh` and
/// `scripts/run-lifecycle-hooks.py`). Written only once the snap is installed: the
/// install hook copies its default hooks with `cp -r $SNAP/default-hooks
/// $SNAP_COMMON/hooks` (1.25 `snap/hooks/install` L97, 1.30 L109), which nests them
/// in a `hooks/default-hooks/` directory when `hooks/` already exists.
pub const REFRESH_HOOK_PATH: &str = "/var/snap/microk8s/common/hooks/post-refresh.d/50-mk8s-worker";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalSnap {
    /// Absolute path of the `.snap` file on the node.
    pub file: String,
    /// Absolute path of its `.assert` file.
    pub assert: String,
    /// MicroK8s's base snap (core, core18, core20, core22), installed first when the
    /// image may not have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<SnapFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapFile {
    pub file: String,
    pub assert: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaSpec {
    /// PEM of the cluster CA certificate.
    pub pem: String,
    /// `sha256:<hex>` over the CA's DER SubjectPublicKeyInfo (kubeadm's discovery hash).
    pub pin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiserverSpec {
    /// What kubelet and kube-proxy talk to: the node-local LB or the external LB.
    pub url: String,
    /// The control-plane endpoints behind it (for diagnostics in the status file).
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialsSpec {
    /// The kubelet's credential, used by the bootstrap to check it is accepted
    /// before starting anything that depends on it.
    pub kubelet: Credential,
    /// kube-proxy's credential, checked the same way: the Node becomes Ready without
    /// kube-proxy, so a wrong proxy credential would otherwise go unnoticed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_proxy: Option<Credential>,
    /// `auth: x509`: the kubelet's first serving certificate and key, which the
    /// install phase seeds into the kubelet's serving store (`--cert-dir`'s
    /// `kubelet-server-current.pem`, [`crate::store`]); the kubelet renews it from
    /// there itself (`--rotate-server-certificates`). Taken out with the other
    /// credentials once the node joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_serving: Option<ServingPair>,
}

/// A certificate and its key, PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServingPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ServingPair {
    // The key is a secret: never printed, not even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServingPair(<redacted>)")
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", tag = "type")]
pub enum Credential {
    Token {
        token: String,
    },
    ClientCertificate {
        cert_pem: String,
        key_pem: String,
    },
    /// `auth: microk8s-join`: the join token the control planes' cluster-agents know
    /// (at least 32 hex characters). Not a credential the apiserver accepts: the
    /// join turns it into certificates.
    JoinToken {
        token: String,
    },
    /// Taken out of the plan on the node once it joined: the installed kubeconfigs
    /// (0600) are the only copies left.
    Removed,
}

impl std::fmt::Debug for Credential {
    // Never print a secret, not even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token { .. } => f.write_str("Token(<redacted>)"),
            Credential::ClientCertificate { .. } => f.write_str("ClientCertificate(<redacted>)"),
            Credential::JoinToken { .. } => f.write_str("JoinToken(<redacted>)"),
            Credential::Removed => f.write_str("Removed"),
        }
    }
}

/// A file staged by the user-data and installed by the bootstrap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstallFile {
    /// Absolute path where the user-data wrote it.
    pub staged: String,
    /// Path relative to the snap's data directory.
    pub target: String,
    /// Octal mode, e.g. 0o600.
    pub mode: u32,
    /// sha256 of the content, checked before installing.
    pub sha256: String,
    /// Remove the staged copy once the node has joined (it holds a secret).
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", tag = "kind")]
pub enum LoadBalancerSpec {
    /// This binary's own balancer (`mk8s-bootstrap balance`), run by our own
    /// systemd unit from the files the user-data wrote.
    Builtin { unit: String, listen: String },
    /// A node-local traefik run by our own systemd unit.
    Traefik {
        unit: String,
        /// host:port it listens on (loopback).
        listen: String,
        binary: BinarySpec,
    },
    /// HAProxy from the distribution, run by our own systemd unit.
    Haproxy {
        unit: String,
        listen: String,
        /// Path of the haproxy binary (installed by cloud-init's `packages`).
        binary: String,
    },
    /// MicroK8s's own apiserver-proxy, fed through `args/traefik/` (installed from
    /// the plan's `install` entries before the unit is restarted).
    Microk8sProxy { unit: String, listen: String },
    /// No node-local proxy: kubeconfigs point at an external load balancer.
    External,
    /// `auth: microk8s-join`: MicroK8s's own proxy on `listen`, configured by the
    /// join (the snap's traefik on 1.23-1.24, apiserver-proxy on 1.25+); the
    /// bootstrap runs nothing of its own.
    Joined { listen: String },
}

impl LoadBalancerSpec {
    /// The balancer this bootstrap starts on the node: its systemd unit and the
    /// `host:port` it listens on. None when nothing of ours runs here (an external
    /// balancer, or MicroK8s's own proxy configured by the join).
    pub fn local(&self) -> Option<(&str, &str)> {
        match self {
            LoadBalancerSpec::Builtin { unit, listen }
            | LoadBalancerSpec::Traefik { unit, listen, .. }
            | LoadBalancerSpec::Haproxy { unit, listen, .. }
            | LoadBalancerSpec::Microk8sProxy { unit, listen } => Some((unit, listen)),
            LoadBalancerSpec::External | LoadBalancerSpec::Joined { .. } => None,
        }
    }

    /// What must already hold on the node before anything on it changes: the
    /// balancer's program is there, or the plan says where to fetch it.
    pub fn precondition(&self, node: &Node) -> Result<(), String> {
        match self {
            LoadBalancerSpec::Traefik { binary, .. } if binary.fetch.is_none() && !node.path(&binary.path).exists() => {
                Err(format!(
                    "{} is not on this node and the plan gives no URL to fetch it from: the image must \
                     provide it (mk8s-gen packer bakes it), or generate the user-data with `traefik.url`; \
                     nothing was changed",
                    binary.path
                ))
            }
            LoadBalancerSpec::Haproxy { binary, .. } if !node.path(binary).exists() => Err(format!(
                "{binary} is not on this node: the user-data's `packages: [haproxy]` did not install it \
                 (check cloud-init's log); nothing was changed"
            )),
            _ => Ok(()),
        }
    }
}

/// Where a program comes from: already at `path`, or fetched and verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BinarySpec {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<Fetch>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Fetch {
    pub url: String,
    /// Of the downloaded file (the archive, for an archive).
    pub sha256: String,
    /// A `.tar.gz` whose member `traefik` (as traefik's release archives have it) is
    /// the program; decided by the generator from the URL's path, never guessed here.
    #[serde(default)]
    pub archive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TimingSpec {
    /// Give up (exit 75, systemd restarts us) after this long without the node Ready.
    pub ready_deadline_secs: u64,
    /// First retry delay; doubles up to `retry_cap_ms`, with full jitter.
    pub retry_initial_ms: u64,
    pub retry_cap_ms: u64,
    /// How long a 401/403 is retried before it is final: a token merged on one
    /// control-plane node but not yet on the one the balancer picked, or merged a
    /// few seconds after the node booted, heals by itself.
    #[serde(default = "default_auth_grace")]
    pub auth_grace_secs: u64,
}

fn default_auth_grace() -> u64 {
    120
}

impl Default for TimingSpec {
    fn default() -> Self {
        TimingSpec {
            ready_deadline_secs: 900,
            retry_initial_ms: 500,
            retry_cap_ms: 30_000,
            auth_grace_secs: default_auth_grace(),
        }
    }
}

/// Bounds on the plan's timing: a deadline far in the future overflows `Instant`
/// arithmetic, and a zero retry delay is a hot loop against the control plane.
pub const MAX_DEADLINE_SECS: u64 = 7 * 24 * 3600;
pub const MIN_RETRY_MS: u64 = 10;
pub const MAX_RETRY_CAP_MS: u64 = 10 * 60 * 1000;

/// Why a plan cannot be executed. All of these are "bad plan" (exit 78).
#[derive(Debug, PartialEq, Eq)]
pub enum PlanError {
    Parse(String),
    Version(String),
    Invalid(String),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Parse(e) => write!(f, "the plan is not valid JSON for this bootstrap: {e}"),
            PlanError::Version(v) => write!(
                f,
                "the plan has apiVersion {v:?}, this bootstrap executes {API_VERSION:?}; \
                 regenerate the user-data with a matching mk8s-gen"
            ),
            PlanError::Invalid(e) => write!(f, "the plan is inconsistent: {e}"),
        }
    }
}

impl std::error::Error for PlanError {}

impl JoinPlan {
    /// Serialize the plan as the bytes written to the node: JSON on one line
    /// (user-data is size-bound: the indentation of pretty JSON cost as much as
    /// the maintain units that came with `maintain`; `jq . plan.json` reads it),
    /// trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string(self).expect("a plan always serializes");
        s.push('\n');
        s
    }

    /// Parse and check a plan.
    pub fn from_json(text: &str) -> Result<JoinPlan, PlanError> {
        // Look at the version first so an old bootstrap names the real problem.
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| PlanError::Parse(e.to_string()))?;
        match v.get("apiVersion").and_then(|a| a.as_str()) {
            Some(API_VERSION) => {}
            Some(other) => return Err(PlanError::Version(other.to_string())),
            None => return Err(PlanError::Parse("missing apiVersion".into())),
        }
        let plan: JoinPlan = serde_json::from_value(v).map_err(|e| PlanError::Parse(e.to_string()))?;
        plan.check()?;
        Ok(plan)
    }

    /// Internal consistency checks that do not need the filesystem.
    pub fn check(&self) -> Result<(), PlanError> {
        let bad = |m: String| Err(PlanError::Invalid(m));
        if self.kind != KIND {
            return bad(format!("kind is {:?}, expected {KIND:?}", self.kind));
        }
        if self.node.name.is_empty() || !self.node.name.bytes().all(is_dns_byte) {
            return bad("node name is not an RFC 1123 name".into());
        }
        if !self.ca.pin.starts_with("sha256:") || self.ca.pin.len() != 7 + 64 {
            return bad("ca.pin is not of the form sha256:<64 hex digits>".into());
        }
        for f in &self.install {
            if !f.staged.starts_with('/') || f.target.starts_with('/') || f.target.contains("..") {
                return bad(format!("install entry {:?} -> {:?} has a bad path", f.staged, f.target));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad(format!("install entry {:?} has a bad sha256", f.staged));
            }
            if f.mode > 0o777 {
                return bad(format!("install entry {:?} has a bad mode", f.staged));
            }
        }
        for l in &self.microk8s.locks {
            if l.is_empty() || l.contains('/') || l.starts_with('.') {
                return bad(format!("lock name {l:?} is not a plain file name"));
            }
        }
        let t = &self.timing;
        if !(1..=MAX_DEADLINE_SECS).contains(&t.ready_deadline_secs) {
            return bad(format!("timing.readyDeadlineSecs must be 1 to {MAX_DEADLINE_SECS}"));
        }
        if !(MIN_RETRY_MS..=MAX_RETRY_CAP_MS).contains(&t.retry_initial_ms)
            || !(t.retry_initial_ms..=MAX_RETRY_CAP_MS).contains(&t.retry_cap_ms)
        {
            return bad(format!(
                "timing: retryInitialMs must be {MIN_RETRY_MS} to {MAX_RETRY_CAP_MS} and retryCapMs between it and {MAX_RETRY_CAP_MS}"
            ));
        }
        if t.auth_grace_secs > MAX_DEADLINE_SECS {
            return bad(format!("timing.authGraceSecs must be at most {MAX_DEADLINE_SECS}"));
        }
        if let Some(j) = &self.join {
            if j.agents.is_empty() || j.agents.iter().any(|a| a.parse::<std::net::SocketAddr>().is_err()) {
                return bad("join.agents must list IP:PORT endpoints".into());
            }
            match &self.credentials.kubelet {
                Credential::JoinToken { token }
                    if token.len() >= 32 && token.bytes().all(|b| b.is_ascii_hexdigit()) => {}
                Credential::Removed => {}
                _ => return bad("with join, credentials.kubelet must be a joinToken of at least 32 hex digits".into()),
            }
        } else if matches!(self.credentials.kubelet, Credential::JoinToken { .. }) {
            return bad("a joinToken credential needs a join section".into());
        }
        for f in &self.balancer_files {
            if !f.path.starts_with('/') || f.path.contains("..") || f.sha256.len() != 64 || f.mode > 0o777 {
                return bad(format!("balancer file {:?} has a bad path, sha256 or mode", f.path));
            }
        }
        for line in self.kubelet_args.iter().chain(&self.kube_proxy_args) {
            if line.contains('\n') || !line.starts_with("--") {
                return bad(format!("argument {line:?} is not one --flag line"));
            }
        }
        Ok(())
    }
}

fn is_dns_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
}

impl JoinPlan {
    /// The plan without its credentials: what is left on the node after the join.
    pub fn stripped(&self) -> JoinPlan {
        let mut p = self.clone();
        p.credentials.kubelet = Credential::Removed;
        p.credentials.kubelet_serving = None;
        if p.credentials.kube_proxy.is_some() {
            p.credentials.kube_proxy = Some(Credential::Removed);
        }
        p
    }

    /// What the completion stamp is bound to: the node name and this hash, the same
    /// before and after the credentials are stripped.
    pub fn identity(&self) -> String {
        sha256_hex(self.stripped().to_json().as_bytes())
    }
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> JoinPlan {
        let pem = include_str!("../../fixtures/seed/ca.crt").to_string();
        JoinPlan {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            cluster: "c".into(),
            node: NodeSpec { name: "w1".into(), epoch: 1 },
            microk8s: MicroK8sSpec {
                channel: "1.30/stable".into(),
                flavour: Flavour::KubeliteApiserverProxy,
                stop_services: vec![],
                start_services: vec![],
                locks: vec![],
                local_snap: None,
                hold_refresh: false,
                refresh_hook: None,
            },
            ca: CaSpec { pin: crate::certs::pin_of_pem(&pem).unwrap(), pem },
            apiserver: ApiserverSpec { url: "https://127.0.0.1:16443".into(), endpoints: vec![] },
            credentials: CredentialsSpec {
                kubelet: Credential::JoinToken { token: "ab".repeat(32) },
                kube_proxy: None,
                kubelet_serving: None,
            },
            install: vec![],
            kubelet_args: vec![],
            kube_proxy_args: vec![],
            load_balancer: LoadBalancerSpec::Joined { listen: "127.0.0.1:16443".into() },
            timing: TimingSpec::default(),
            join: Some(JoinSpec { agents: vec!["10.0.0.1:25000".into()] }),
            balancer_files: vec![],
        }
    }

    #[test]
    fn join_plans_round_trip_and_are_checked() {
        let p = plan();
        assert_eq!(JoinPlan::from_json(&p.to_json()).unwrap(), p);
        assert!(!format!("{:?}", p.credentials.kubelet).contains("abab"), "never printed");
        let stripped = p.stripped();
        assert_eq!(stripped.credentials.kubelet, Credential::Removed);
        assert_eq!(stripped.identity(), p.identity());
        // Each inconsistency is refused for its own reason.
        let refused = |bad: JoinPlan, why: &str| match bad.check() {
            Err(PlanError::Invalid(m)) => assert_eq!(m, why),
            other => panic!("{other:?}, expected {why:?}"),
        };
        let mut bad = p.clone();
        bad.join = Some(JoinSpec { agents: vec!["cp-1:25000".into()] });
        refused(bad, "join.agents must list IP:PORT endpoints");
        let mut bad = p.clone();
        bad.credentials.kubelet = Credential::JoinToken { token: "short".into() };
        refused(bad, "with join, credentials.kubelet must be a joinToken of at least 32 hex digits");
        let mut bad = p.clone();
        bad.join = None;
        refused(bad, "a joinToken credential needs a join section");
        // Plans without a join section (every other mode) still parse.
        let mut old: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        old.as_object_mut().unwrap().remove("join");
        old["credentials"]["kubelet"] = serde_json::json!({"type": "token", "token": "t"});
        assert!(JoinPlan::from_json(&old.to_string()).unwrap().join.is_none());
    }

    #[test]
    fn a_balancer_of_ours_is_local_and_needs_its_program() {
        let root = tempfile::tempdir().unwrap();
        let node = Node::under(root.path());
        let (unit, listen) = ("mk8s-lb.service".to_string(), "127.0.0.1:16443".to_string());
        let baked = BinarySpec { path: "/usr/local/bin/traefik".into(), fetch: None };
        let traefik = LoadBalancerSpec::Traefik { unit: unit.clone(), listen: listen.clone(), binary: baked.clone() };
        let haproxy = LoadBalancerSpec::Haproxy {
            unit: unit.clone(),
            listen: listen.clone(),
            binary: "/usr/sbin/haproxy".into(),
        };
        assert_eq!(traefik.local(), Some((unit.as_str(), listen.as_str())));
        assert_eq!(LoadBalancerSpec::External.local(), None);
        assert_eq!(LoadBalancerSpec::Joined { listen: listen.clone() }.local(), None);
        assert!(traefik.precondition(&node).unwrap_err().contains("/usr/local/bin/traefik is not on this node"));
        assert!(haproxy.precondition(&node).unwrap_err().contains("packages: [haproxy]"));
        let fetched = BinarySpec {
            fetch: Some(Fetch { url: "https://a.example/traefik".into(), sha256: "0".repeat(64), archive: false }),
            ..baked
        };
        assert_eq!(LoadBalancerSpec::Traefik { unit, listen, binary: fetched }.precondition(&node), Ok(()));
        std::fs::create_dir_all(root.path().join("usr/sbin")).unwrap();
        std::fs::write(root.path().join("usr/sbin/haproxy"), b"").unwrap();
        assert_eq!(haproxy.precondition(&node), Ok(()));
        assert_eq!(LoadBalancerSpec::External.precondition(&node), Ok(()));
    }
}
