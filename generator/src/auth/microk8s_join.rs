//! `auth: microk8s-join`: MicroK8s's own worker join (1.23+). The control plane's
//! cluster-agent signs the node's certificates; the bundle registers the join tokens.

use mk8s_bootstrap::plan::{Credential, JoinSpec, LoadBalancerSpec};

use super::{AuthMode, BundleFile, CheckCx, CrossCx, Joined, NodeCredentials, NodeCx};
use crate::facts::RawCluster;
use crate::model::release::{apiserver_proxy_unit, snap_unit, CLUSTER_AGENT_PORT};
use crate::model::{host_port, Auth, Facts, Worker, DEFAULT_JOIN_TOKEN_TTL_HOURS};
use crate::report::Report;
use crate::secrets::Secrets;
use crate::templates;

pub struct MicroK8sJoin;

/// The port MicroK8s's own proxy listens on after a worker join: the snap's
/// `args/traefik/traefik-template.yaml` (`address: ":16443"`,
/// 1.30:microk8s-resources/default-args/traefik/traefik-template.yaml), which the
/// join writes into the kubeconfigs as `127.0.0.1:<that port>`
/// (`create_worker_kubeconfigs`, 1.30:microk8s-resources/actions/common/utils.sh
/// L620-640; `get_traefik_port()`, 1.27:scripts/wrappers/join.py).
pub const PROXY_PORT: u16 = 16443;

impl AuthMode for MicroK8sJoin {
    fn name(&self) -> &'static str {
        "microk8s-join"
    }

    fn summary(&self) -> &'static str {
        "MicroK8s's own worker join, 1.23+"
    }

    fn check(&self, c: &RawCluster, cx: &CheckCx, report: &mut Report) -> Option<Auth> {
        let mut ok = true;
        if let Some(v) = cx.channel.filter(|ch| !ch.release.worker_join).and_then(|ch| ch.version) {
            report.error(
                "$.cluster.auth",
                format!("`auth: microk8s-join` needs MicroK8s 1.23 or later; the channel is {}.{}", v.0, v.1),
                "`microk8s join --worker` first appears in 1.23 (canonical/microk8s 1.23:scripts/cluster/join.py); use `auth: token` or `auth: x509` for older channels",
            );
            ok = false;
        }
        if let Some(lb) = &c.load_balancer {
            let own = lb.mode.as_deref().unwrap_or("node-local") == "node-local"
                && lb.kind.as_deref() == Some("microk8s-proxy")
                && lb.address.is_none()
                && lb.traefik.is_none();
            if !own {
                report.error(
                    "$.cluster.load-balancer",
                    "with `auth: microk8s-join` the load balancer is MicroK8s's own: the join writes kubeconfigs for 127.0.0.1:16443 and configures the snap's proxy (traefik on 1.23-1.24, apiserver-proxy on 1.25+)",
                    "remove `load-balancer` (or say `kind: microk8s-proxy`)",
                );
                ok = false;
            }
        }
        if c.client_certificates.is_some() {
            report.warning(
                "$.cluster.client-certificates",
                "ignored with `auth: microk8s-join`",
                "remove it: the control plane's cluster-agent signs the certificates",
            );
        }
        let hours = c.microk8s_join.as_ref().and_then(|j| j.token_ttl_hours).unwrap_or(DEFAULT_JOIN_TOKEN_TTL_HOURS);
        if !(1..=8760).contains(&hours) {
            report.error(
                "$.cluster.microk8s-join.token-ttl-hours",
                format!("{hours} is out of range"),
                "give 1 to 8760 hours (default 24)",
            );
            ok = false;
        }
        ok.then(|| Auth::MicroK8sJoin { token_ttl_secs: hours.unsigned_abs() * 3600 })
    }

    /// The join writes the CA and both kubeconfigs itself: nothing is staged.
    fn credentials(&self, _: &Auth, cx: &NodeCx) -> anyhow::Result<NodeCredentials> {
        let token = cx.secrets.join_token(&cx.facts.name, cx.worker.id(), cx.worker.generation);
        Ok(NodeCredentials {
            staged: Vec::new(),
            kubelet: Credential::JoinToken { token },
            kube_proxy: None,
            kubelet_serving: None,
        })
    }

    fn joined(&self, facts: &Facts) -> Option<Joined> {
        // MicroK8s's proxy listens where the snap's traefik template says, on every
        // address, whatever port the control plane's apiservers use (only the
        // provider's servers get the control plane's `apiport`); G4.
        let listen = format!(":{PROXY_PORT}");
        let agents = facts
            .control_plane
            .iter()
            // IPv4 only (G6, see cross_check; validated: at least one is IPv4).
            .filter(|c| c.address.is_ipv4())
            .map(|c| host_port(&c.address.to_string(), CLUSTER_AGENT_PORT))
            .collect();
        // The join starts MicroK8s's own proxy (1.24:scripts/cluster/join.py
        // update_traefik; 1.30:scripts/wrappers/join.py update_apiserver_proxy);
        // restarts and reboots keep it running with kubelite.
        let proxy_unit = match facts.channel.release.flavour {
            mk8s_bootstrap::plan::Flavour::KubeliteApiserverProxy => apiserver_proxy_unit(),
            _ => snap_unit("traefik"),
        };
        Some(Joined { spec: JoinSpec { agents }, balancer: LoadBalancerSpec::Joined { listen }, proxy_unit })
    }

    fn bundle(&self, facts: &Facts, secrets: &Secrets, workers: &[&Worker]) -> anyhow::Result<Vec<BundleFile>> {
        let Auth::MicroK8sJoin { token_ttl_secs } = facts.auth else {
            anyhow::bail!("internal error: the microk8s-join mode was given another mode's settings");
        };
        // 1.27+ control planes: persistent tokens (never consumed); 1.23-1.26:
        // tokens with an expiry (reusable until then), as `add-node --token-ttl`.
        let persistent = facts.channel.release.persistent_join_tokens;
        let script = templates::render(
            "register-join-tokens.sh",
            serde_json::json!({
                "cluster": facts.name,
                "token_file": if persistent { "persistent-cluster-tokens.txt" } else { "cluster-tokens.txt" },
                "ttl": if persistent { 0 } else { token_ttl_secs },
            }),
        )?;
        let files = vec![
            ("join-tokens.txt", join_token_lines(facts, secrets, workers), 0o600),
            ("register-join-tokens.sh", script, 0o755),
            super::check_script(facts)?,
        ];
        Ok(files)
    }

    fn cross_check(&self, cx: &CrossCx, report: &mut Report) {
        // G6: no release joins through an IPv6 address and keeps working.
        // - 1.23-1.27 join.py splits the connection string with `split(":")`
        //   (1.24:scripts/cluster/join.py L739, 1.27:scripts/wrappers/join.py L743):
        //   `[fd00::2]:25000` gives the address `[fd00` and an empty port.
        // - 1.29+ accepts only an IPv4 literal (1.30:scripts/wrappers/common/cluster/
        //   utils.py L557-597, get_valid_connection_parts: exactly one ':'; 3488ddd3).
        // - 1.28 parses it (`rsplit(":", 1)`), but the joined worker's
        //   apiserver-proxy then refreshes its servers from the `kubernetes`
        //   Endpoints and writes IPv6 ones unbracketed (cluster-agent
        //   1.30:pkg/proxy/endpoints.go L14-35, 1.25-1.33), which it cannot dial.
        let control_plane = cx.control_plane;
        if control_plane.is_empty() {
            return;
        }
        if control_plane.iter().all(|c| c.address.is_ipv6()) {
            report.error(
                "$.cluster.control-plane",
                "with `auth: microk8s-join`, `microk8s join` needs an IPv4 control plane, and every control-plane address here is IPv6: 1.23-1.27 cannot parse an IPv6 address, 1.29+ refuses one, and a 1.28 worker's apiserver-proxy loses IPv6 servers at its first refresh",
                "give the control planes' IPv4 addresses, or use `auth: x509` with `kind: builtin`, `traefik` or `haproxy` (they keep the facts' addresses)",
            );
        } else if let Some(i) = control_plane.iter().position(|c| c.address.is_ipv6()) {
            report.warning(
                format!("$.cluster.control-plane[{i}]"),
                "IPv6: `microk8s join` works through IPv4 addresses only; workers join through the IPv4 control planes",
                "give this control plane's IPv4 address if it has one",
            );
        }
    }

    fn uses_worker_generation(&self) -> bool {
        true
    }

    fn operator_steps(&self) -> &'static str {
        "register-join-tokens.sh, check-control-plane.sh and hosts-entries.sh (and register-join-tokens.sh again once workers joined)"
    }

    fn retire_steps(&self) -> &'static str {
        "regenerate the bundle (mk8s-gen control-plane) and run register-join-tokens.sh on every \
         control-plane node: the worker's join token and the certificate-request tokens of its \
         join are removed. The certificates the cluster-agent signed (3650 days) cannot be \
         revoked; the denylist refuses the kubelet's writes (1.30+). The worker also holds the \
         control plane's own callback token (credentials/callback-token.txt), which nothing \
         revokes short of replacing that control plane's callback-token.txt (docs/day2.md, Retire)"
    }
}

/// `auth: microk8s-join`: `NAME TOKEN` lines for `register-join-tokens.sh`.
pub fn join_token_lines(facts: &Facts, secrets: &Secrets, workers: &[&Worker]) -> String {
    workers.iter().map(|w| format!("{} {}\n", w.name, secrets.join_token(&facts.name, w.id(), w.generation))).collect()
}
