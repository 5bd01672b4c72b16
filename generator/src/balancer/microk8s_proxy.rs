//! `kind: microk8s-proxy`: MicroK8s 1.25+'s own `apiserver-proxy`, fed our endpoints.

use mk8s_bootstrap::plan::Flavour;

use super::{Balancer, CheckCx, BASE};
use crate::facts::RawLoadBalancer;
use crate::model::LoadBalancer;
use crate::report::Report;

pub struct MicroK8sProxy;

impl Balancer for MicroK8sProxy {
    fn kind(&self) -> &'static str {
        "microk8s-proxy"
    }

    fn check(&self, raw: &RawLoadBalancer, cx: &CheckCx, report: &mut Report) -> Option<LoadBalancer> {
        if raw.traefik.is_some() || raw.health_check.is_some() {
            report.error(
                format!("{BASE}.kind"),
                "`traefik` and `health-check` do not apply to `kind: microk8s-proxy`",
                "remove them: MicroK8s's proxy has its own behaviour",
            );
        }
        if !cx.release.is_some_and(|r| r.flavour == Flavour::KubeliteApiserverProxy) {
            report.error(
                format!("{BASE}.kind"),
                "`kind: microk8s-proxy` needs MicroK8s 1.25 or later",
                "use `kind: traefik` or `kind: haproxy` for older channels",
            );
            return None;
        }
        Some(LoadBalancer::MicroK8sProxy)
    }
}
