//! `kind: haproxy`: HAProxy from the distribution (installed by cloud-init's
//! `packages`), with HTTP checks of `/readyz`.

use anyhow::ensure;
use mk8s_bootstrap::plan::LoadBalancerSpec;
use serde_json::json;

use super::{health_check, not_mine, Balancer, CheckCx, RenderCx, Rendered, BASE};
use crate::facts::RawLoadBalancer;
use crate::files::{FileContent, NodeFile, HAPROXY_UNIT, STAGE_DIR, UNIT_DIR};
use crate::model::{LoadBalancer, DEFAULT_HAPROXY_PATH};
use crate::report::Report;
use crate::templates;

pub struct Haproxy;

impl Balancer for Haproxy {
    fn kind(&self) -> &'static str {
        "haproxy"
    }

    fn check(&self, raw: &RawLoadBalancer, _: &CheckCx, report: &mut Report) -> Option<LoadBalancer> {
        if raw.traefik.is_some() {
            report.error(
                format!("{BASE}.traefik"),
                "`traefik` settings do not apply to `kind: haproxy`",
                "remove them",
            );
        }
        let (health_interval, health_timeout) = health_check(raw, super::ACTIVE_CHECKS, report)?;
        Some(LoadBalancer::Haproxy { path: DEFAULT_HAPROXY_PATH.into(), health_interval, health_timeout })
    }

    fn render(&self, lb: &LoadBalancer, cx: &RenderCx) -> anyhow::Result<Rendered> {
        let LoadBalancer::Haproxy { path, health_interval, health_timeout } = lb else {
            return Err(not_mine(self.kind()));
        };
        let config = format!("{STAGE_DIR}/haproxy/haproxy.cfg");
        let servers: Vec<_> = cx
            .facts
            .control_plane
            .iter()
            .zip(cx.endpoints)
            .map(|(c, e)| json!({"name": c.name, "address": e}))
            .collect();
        let cfg = templates::render(
            "haproxy.cfg",
            json!({"listen": cx.listen, "servers": servers, "check_interval": health_interval, "check_timeout": health_timeout, "connect_timeout": "5s"}),
        )?;
        parse_back(&cfg, cx.listen, cx.endpoints)?;
        let unit =
            templates::render("mk8s-haproxy.service", json!({"binary": path, "config": config, "allow": cx.allow}))?;
        Ok(Rendered {
            files: vec![
                NodeFile { path: config, content: FileContent::Text(cfg), mode: 0o644 },
                NodeFile { path: format!("{UNIT_DIR}/{HAPROXY_UNIT}"), content: FileContent::Text(unit), mode: 0o644 },
            ],
            install: Vec::new(),
            spec: LoadBalancerSpec::Haproxy {
                unit: HAPROXY_UNIT.into(),
                listen: cx.listen.into(),
                binary: path.clone(),
            },
        })
    }

    fn packages(&self) -> &'static [&'static str] {
        &["haproxy"]
    }
}

/// HAProxy's configuration is not YAML; check its structure line by line: the
/// sections we write, TCP mode, the loopback bind, a TLS /readyz check with
/// shutdown-sessions, and exactly the control-plane servers. Tests also run the
/// real `haproxy -c`.
pub fn parse_back(cfg: &str, listen: &str, servers: &[String]) -> anyhow::Result<()> {
    let mut section = String::new();
    let mut sections = Vec::new();
    let mut got_servers = Vec::new();
    let mut has = std::collections::BTreeSet::new();
    for line in cfg.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "global" | "defaults" | "frontend" | "backend" => {
                section = line.to_string();
                sections.push(section.clone());
            }
            "server" if section == "backend kube-apiserver" => {
                got_servers.push(words.get(2).copied().unwrap_or("").to_string())
            }
            _ => {
                has.insert(format!("{section}|{line}"));
            }
        }
    }
    ensure!(
        sections == ["global", "defaults", "frontend kube-apiserver", "backend kube-apiserver"],
        "internal error: haproxy.cfg sections: {sections:?}"
    );
    ensure!(has.contains("defaults|mode tcp"), "internal error: haproxy must pass TLS through (mode tcp)");
    ensure!(
        has.contains(&format!("frontend kube-apiserver|bind {listen}")),
        "internal error: haproxy must listen on {listen}"
    );
    ensure!(has.contains("backend kube-apiserver|option httpchk GET /readyz"), "internal error: haproxy health check");
    ensure!(
        has.iter().any(|l| l.starts_with("backend kube-apiserver|default-server check check-ssl verify none")
            && l.contains("on-marked-down shutdown-sessions")),
        "internal error: haproxy server defaults"
    );
    ensure!(got_servers == servers, "internal error: haproxy servers differ from the control plane");
    Ok(())
}
