//! The load-balancer kinds: one file each, behind [`Balancer`], listed once in
//! [`BALANCERS`]. The facts' `kind:` string is compared here only ([`by_kind`]).

pub mod builtin;
pub mod external;
pub mod haproxy;
pub mod microk8s_proxy;
pub mod traefik;

use mk8s_bootstrap::plan::{InstallFile, LoadBalancerSpec};

use crate::facts::RawLoadBalancer;
use crate::files::NodeFile;
use crate::model::release::Release;
use crate::model::{ControlPlaneNode, Facts, LoadBalancer};
use crate::report::Report;
use crate::values::{duration_ms, is_duration, quote_value};

pub use builtin::Builtin;
pub use external::External;
pub use haproxy::Haproxy;
pub use microk8s_proxy::MicroK8sProxy;
pub use traefik::Traefik;

/// The checks of the kinds that find failures by checking (traefik, HAProxy):
/// interval and timeout.
const ACTIVE_CHECKS: (&str, &str) = ("5s", "3s");

/// YAML path of the facts' load-balancer section.
const BASE: &str = "$.cluster.load-balancer";

/// What the checks of a kind may read besides its own section.
pub struct CheckCx {
    pub apiserver_port: u16,
    /// The channel's release, when the channel is valid.
    pub release: Option<&'static Release>,
}

/// What a kind's rules on the rest of the facts may read.
pub struct CrossCx<'a> {
    pub release: Option<&'static Release>,
    pub control_plane: &'a [ControlPlaneNode],
}

/// What the rendering of a kind may read.
pub struct RenderCx<'a> {
    pub facts: &'a Facts,
    /// `host:port` of every control-plane apiserver, in the facts' order.
    pub endpoints: &'a [String],
    /// Where a node-local balancer listens (`127.0.0.1:PORT`).
    pub listen: &'a str,
    /// The only addresses a balancer's unit may reach, beside loopback.
    pub allow: &'a [String],
}

/// A kind's files (the same on every node), the files it installs into the snap's
/// data directory, and what the plan tells the bootstrap.
pub struct Rendered {
    pub files: Vec<NodeFile>,
    pub install: Vec<InstallFile>,
    pub spec: LoadBalancerSpec,
}

impl Rendered {
    fn spec(spec: LoadBalancerSpec) -> Rendered {
        Rendered { files: Vec::new(), install: Vec::new(), spec }
    }
}

/// One kind of load balancer.
pub trait Balancer: Sync {
    /// `kind:` in the facts (`mode: external` for [`External`]).
    fn kind(&self) -> &'static str;
    /// `mode:` it belongs to.
    fn mode(&self) -> &'static str {
        "node-local"
    }
    /// Check the facts' section for this kind; the checked balancer, or `None` with
    /// the problems in `report`.
    fn check(&self, raw: &RawLoadBalancer, cx: &CheckCx, report: &mut Report) -> Option<LoadBalancer>;
    /// Rules the kind imposes on the rest of the facts.
    fn cross_check(&self, cx: &CrossCx, report: &mut Report) {
        let _ = (cx, report);
    }
    /// Render and parse back this kind's files. `lb` is what [`Balancer::check`]
    /// returned.
    fn render(&self, lb: &LoadBalancer, cx: &RenderCx) -> anyhow::Result<Rendered>;
    /// The URL kubelet and kube-proxy use: the node-local listener, unless the
    /// balancer is elsewhere.
    fn server_url(&self, lb: &LoadBalancer, listen: &str) -> String {
        let _ = lb;
        format!("https://{listen}")
    }
    /// Distribution packages cloud-init installs for it.
    fn packages(&self) -> &'static [&'static str] {
        &[]
    }
    /// It is MicroK8s's own `apiserver-proxy`, which the worker must keep running.
    fn keeps_apiserver_proxy(&self) -> bool {
        false
    }
    /// Install targets (under `$SNAP_DATA`) the balancer itself rewrites once
    /// running: not held to their rendered content by `mk8s-bootstrap maintain`.
    fn rewrites(&self) -> &'static [&'static str] {
        &[]
    }
}

/// The files of a rendered balancer that `mk8s-bootstrap maintain` holds to their
/// content: every file it writes, at its node path, and what it installs into the
/// snap's data directory, except what the balancer rewrites itself.
pub fn planned_files(balancer: &dyn Balancer, rendered: &Rendered) -> Vec<mk8s_bootstrap::plan::PlannedFile> {
    use mk8s_bootstrap::plan::{sha256_hex, PlannedFile, SNAP_DATA};
    let staged: Vec<&str> = rendered.install.iter().map(|i| i.staged.as_str()).collect();
    let mut out: Vec<PlannedFile> = rendered
        .files
        .iter()
        .filter(|f| !staged.contains(&f.path.as_str()))
        .filter_map(|f| match &f.content {
            crate::files::FileContent::Text(t) => {
                Some(PlannedFile { path: f.path.clone(), sha256: sha256_hex(t.as_bytes()), mode: f.mode })
            }
            crate::files::FileContent::GzipBase64(_) => None,
        })
        .collect();
    out.extend(
        rendered.install.iter().filter(|i| !balancer.rewrites().contains(&i.target.as_str())).map(|i| PlannedFile {
            path: format!("{SNAP_DATA}/{}", i.target),
            sha256: i.sha256.clone(),
            mode: i.mode,
        }),
    );
    out
}

/// The kind of a checked load balancer: the one match on [`LoadBalancer`].
pub fn of(lb: &LoadBalancer) -> &'static dyn Balancer {
    match lb {
        LoadBalancer::Builtin { .. } => &Builtin,
        LoadBalancer::Traefik(_) => &Traefik,
        LoadBalancer::Haproxy { .. } => &Haproxy,
        LoadBalancer::MicroK8sProxy => &MicroK8sProxy,
        LoadBalancer::External { .. } => &External,
    }
}

/// A kind was handed another kind's settings: a bug in the caller.
fn not_mine(kind: &str) -> anyhow::Error {
    anyhow::anyhow!("internal error: the {kind} balancer was given another kind's settings")
}

/// Every kind; the first node-local one is the default.
pub const BALANCERS: &[&dyn Balancer] = &[&Builtin, &Traefik, &Haproxy, &MicroK8sProxy, &External];

/// The node-local kind named `kind`.
pub fn by_kind(kind: &str) -> Option<&'static dyn Balancer> {
    BALANCERS.iter().copied().find(|b| b.mode() == "node-local" && b.kind() == kind)
}

/// The node-local kinds, as the help of an unknown kind lists them.
fn kinds_help() -> String {
    let kinds: Vec<String> = BALANCERS
        .iter()
        .filter(|b| b.mode() == "node-local")
        .enumerate()
        .map(|(i, b)| if i == 0 { format!("`kind: {}` (default)", b.kind()) } else { format!("`{}`", b.kind()) })
        .collect();
    match kinds.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("use {} or {last}", rest.join(", ")),
        _ => format!("use {}", kinds.join("")),
    }
}

/// Check the facts' `load-balancer` (absent: the default node-local kind).
pub fn check(raw: Option<&RawLoadBalancer>, cx: &CheckCx, report: &mut Report) -> Option<LoadBalancer> {
    let default =
        RawLoadBalancer { mode: None, kind: None, address: None, port: None, traefik: None, health_check: None };
    let raw = raw.unwrap_or(&default);
    match raw.mode.as_deref().unwrap_or("node-local") {
        "node-local" => {
            if raw.address.is_some() || raw.port.is_some() {
                report.error(
                    format!("{BASE}.address"),
                    "`address` and `port` belong to `mode: external`",
                    "remove them, or set `mode: external`",
                );
            }
            let default_kind = BALANCERS.iter().find(|b| b.mode() == "node-local").map_or("", |b| b.kind());
            let kind = raw.kind.as_deref().unwrap_or(default_kind);
            let Some(b) = by_kind(kind) else {
                report.error(
                    format!("{BASE}.kind"),
                    format!("load-balancer kind {} is not supported", quote_value(kind)),
                    &kinds_help(),
                );
                return None;
            };
            b.check(raw, cx, report)
        }
        "external" => External.check(raw, cx, report),
        other => {
            report.error(
                format!("{BASE}.mode"),
                format!("load-balancer mode {other:?} is not supported"),
                "use `node-local` or `external`",
            );
            None
        }
    }
}

/// The health-check interval and timeout (the kind's defaults); `None` when either is
/// not a sane duration, with the problem reported.
fn health_check(raw: &RawLoadBalancer, default: (&str, &str), report: &mut Report) -> Option<(String, String)> {
    let hc = raw.health_check.as_ref();
    let interval = hc.and_then(|h| h.interval.clone()).unwrap_or_else(|| default.0.into());
    let timeout = hc.and_then(|h| h.timeout.clone()).unwrap_or_else(|| default.1.into());
    let mut ok = true;
    for (v, k) in [(&interval, "interval"), (&timeout, "timeout")] {
        if !is_duration(v) {
            report.error(
                format!("{BASE}.health-check.{k}"),
                format!("{} is not a duration", quote_value(v)),
                "write a whole number with ms, s or m, e.g. 5s",
            );
            ok = false;
        } else if duration_ms(v) > 3_600_000 {
            report.error(
                format!("{BASE}.health-check.{k}"),
                format!("{} is longer than an hour", quote_value(v)),
                "health checks find a dead apiserver within seconds: use e.g. interval 5s, timeout 3s",
            );
            ok = false;
        }
    }
    if ok && duration_ms(&timeout) > duration_ms(&interval) {
        report.error(
            format!("{BASE}.health-check.timeout"),
            format!("timeout {timeout} is longer than the interval {interval}"),
            "a check must end before the next one starts: make the timeout at most the interval, e.g. interval 5s, timeout 3s",
        );
        ok = false;
    }
    ok.then_some((interval, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_help_lists_the_table() {
        assert_eq!(kinds_help(), "use `kind: builtin` (default), `traefik`, `haproxy` or `microk8s-proxy`");
        assert!(by_kind("external").is_none() && by_kind("haproxy").is_some());
    }

    #[test]
    fn health_check_durations_are_sane() {
        for (interval, timeout, bad) in [
            ("5s", "3s", None),
            ("5s", "5s", None),
            ("1s", "3s", Some("timeout")),
            ("2h", "1s", Some("interval")),
            ("61m", "1s", Some("interval")),
            ("5x", "1s", Some("interval")),
        ] {
            for kind in ["builtin", "haproxy", "traefik"] {
                let mut r = Report::default();
                let raw = RawLoadBalancer {
                    mode: None,
                    kind: Some(kind.into()),
                    address: None,
                    port: None,
                    traefik: None,
                    health_check: Some(crate::facts::RawHealthCheck {
                        interval: Some(interval.into()),
                        timeout: Some(timeout.into()),
                    }),
                };
                let lb = check(Some(&raw), &CheckCx { apiserver_port: 16443, release: None }, &mut r);
                let paths: Vec<&str> = r.problems.iter().map(|p| p.path.as_str()).collect();
                match bad {
                    None => assert!(lb.is_some() && paths.is_empty(), "{kind} {interval} {timeout}: {paths:?}"),
                    Some(k) => assert_eq!(
                        (lb.is_some(), paths),
                        (false, vec![format!("{BASE}.health-check.{k}").as_str()]),
                        "{kind} {interval} {timeout}"
                    ),
                }
            }
        }
    }
}
