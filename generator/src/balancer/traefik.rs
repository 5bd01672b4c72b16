//! `kind: traefik` (the default): traefik with the original method's TCP router and
//! TCP health checks.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context};
use mk8s_bootstrap::plan::{BinarySpec, Fetch, LoadBalancerSpec};
use serde::Deserialize;
use serde_json::json;

use super::{health_check, not_mine, Balancer, CheckCx, RenderCx, Rendered, BASE};
use crate::facts::{RawLoadBalancer, RawTraefik};
use crate::files::{FileContent, NodeFile, TRAEFIK_DIR, TRAEFIK_UNIT, UNIT_DIR};
use crate::model::{LoadBalancer, TraefikLb, DEFAULT_TRAEFIK_PATH, MIN_TRAEFIK};
use crate::report::Report;
use crate::templates;
use crate::values::{
    check_sha256, check_url, is_safe_abs_path, is_system_binary_path, quote_value, unsupported_archive_url,
    SYSTEM_BIN_DIRS,
};

pub struct Traefik;

impl Balancer for Traefik {
    fn kind(&self) -> &'static str {
        "traefik"
    }

    fn check(&self, raw: &RawLoadBalancer, _: &CheckCx, report: &mut Report) -> Option<LoadBalancer> {
        let t = raw.traefik.clone().unwrap_or(RawTraefik { version: None, path: None, url: None, sha256: None });
        let tb = format!("{BASE}.traefik");
        if let Some(v) = &t.version {
            check_version(v, &tb, report);
        }
        let path = t.path.clone().unwrap_or_else(|| DEFAULT_TRAEFIK_PATH.into());
        check_path(&path, &tb, report);
        let fetch = check_fetch(&t, &tb, report);
        let (health_interval, health_timeout) = health_check(raw, super::ACTIVE_CHECKS, report)?;
        Some(LoadBalancer::Traefik(TraefikLb { path, fetch, health_interval, health_timeout }))
    }

    fn render(&self, lb: &LoadBalancer, cx: &RenderCx) -> anyhow::Result<Rendered> {
        let LoadBalancer::Traefik(t) = lb else {
            return Err(not_mine(self.kind()));
        };
        let static_path = format!("{TRAEFIK_DIR}/traefik.yaml");
        let provider_path = format!("{TRAEFIK_DIR}/provider.yaml");
        let static_cfg =
            templates::render("traefik.yaml", json!({"listen": cx.listen, "provider_file": provider_path}))?;
        let provider = templates::render(
            "provider.yaml",
            json!({"servers": cx.endpoints, "health_interval": t.health_interval, "health_timeout": t.health_timeout, "dial_timeout": "5s"}),
        )?;
        parse_back(&static_cfg, &provider, cx.listen, &provider_path, cx.endpoints)?;
        let unit = templates::render(
            "mk8s-traefik.service",
            json!({"binary": t.path, "config": static_path, "allow": cx.allow}),
        )?;
        let binary = BinarySpec {
            path: t.path.clone(),
            fetch: t.fetch.as_ref().map(|(url, sha256)| Fetch {
                url: url.clone(),
                sha256: sha256.clone(),
                archive: crate::values::is_archive_url(url),
            }),
        };
        Ok(Rendered {
            files: vec![
                NodeFile { path: static_path, content: FileContent::Text(static_cfg), mode: 0o644 },
                NodeFile { path: provider_path, content: FileContent::Text(provider), mode: 0o644 },
                NodeFile { path: format!("{UNIT_DIR}/{TRAEFIK_UNIT}"), content: FileContent::Text(unit), mode: 0o644 },
            ],
            install: Vec::new(),
            spec: LoadBalancerSpec::Traefik { unit: TRAEFIK_UNIT.into(), listen: cx.listen.into(), binary },
        })
    }
}

/// The whole version, 2 or 3 numeric parts (`3.6.garbage` is not one), and one
/// with TCP health checks.
fn check_version(v: &str, tb: &str, report: &mut Report) {
    let parsed: Option<Vec<u32>> = v.strip_prefix('v').unwrap_or(v).split('.').map(|p| p.parse().ok()).collect();
    match parsed.as_deref() {
        Some([a, b] | [a, b, _]) if (*a, *b) >= MIN_TRAEFIK => {}
        Some([_, _] | [_, _, _]) => report.error(
            format!("{tb}.version"),
            format!("traefik {v} has no TCP health checks"),
            "use traefik 3.6 or later; without health checks a share of connections go to a dead apiserver",
        ),
        _ => report.error(
            format!("{tb}.version"),
            format!("{} is not a traefik version", quote_value(v)),
            "write it as 3.6.2",
        ),
    }
}

fn check_path(path: &str, tb: &str, report: &mut Report) {
    if !is_safe_abs_path(path) {
        report.error(
            format!("{tb}.path"),
            format!("{} is not a plain absolute path", quote_value(path)),
            "use letters, digits and / . _ - only, e.g. /usr/local/bin/traefik",
        );
    } else if !is_system_binary_path(path) {
        // The bootstrap downloads into that directory as root: a world-writable
        // one (/tmp, /var/tmp, /home/...) lets anyone plant a symlink there.
        report.error(
            format!("{tb}.path"),
            format!("{} is not in a root-owned system directory", quote_value(path)),
            &format!("use a path under {}, e.g. /usr/local/bin/traefik", SYSTEM_BIN_DIRS.join(", ")),
        );
    }
}

/// `url` and `sha256`: both or neither; the URL's archive must be one the bootstrap
/// unpacks.
fn check_fetch(t: &RawTraefik, tb: &str, report: &mut Report) -> Option<(String, String)> {
    match (&t.url, &t.sha256) {
        (None, None) => None,
        (Some(u), Some(h)) => {
            let mut ok_u = check_url(u, &format!("{tb}.url"), report);
            if let Some(ext) = unsupported_archive_url(u).filter(|_| ok_u) {
                report.error(
                    format!("{tb}.url"),
                    format!("a {ext} archive: the bootstrap unpacks only gzip tar archives (.tar.gz, .tgz)"),
                    "use traefik's .tar.gz release asset, or the program itself",
                );
                ok_u = false;
            }
            let ok_h = check_sha256(h, &format!("{tb}.sha256"), report);
            (ok_u && ok_h).then(|| (u.clone(), h.to_ascii_lowercase()))
        }
        (url, sha) => {
            report.error(tb, "`url` and `sha256` go together", "give both, so the node verifies what it downloads");
            if let Some(u) = url {
                check_url(u, &format!("{tb}.url"), report);
            }
            if let Some(h) = sha {
                check_sha256(h, &format!("{tb}.sha256"), report);
            }
            None
        }
    }
}

// The static configuration (the subset we write).

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TraefikStatic {
    pub global: TraefikGlobal,
    pub log: TraefikLog,
    pub entry_points: BTreeMap<String, TraefikEntryPoint>,
    pub providers: TraefikProviders,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TraefikGlobal {
    pub check_new_version: bool,
    pub send_anonymous_usage: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct TraefikLog {
    pub level: String,
    /// Plain text for the journal (traefik colours its log by default).
    pub no_color: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraefikEntryPoint {
    pub address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraefikProviders {
    pub file: TraefikFileProvider,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraefikFileProvider {
    pub filename: String,
    pub watch: bool,
}

// The dynamic configuration.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraefikDynamic {
    pub tcp: TraefikTcp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TraefikTcp {
    pub routers: BTreeMap<String, TcpRouter>,
    pub services: BTreeMap<String, TcpService>,
    pub servers_transports: BTreeMap<String, TcpServersTransport>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpRouter {
    pub entry_points: Vec<String>,
    pub rule: String,
    pub service: String,
    pub tls: TcpRouterTls,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpRouterTls {
    pub passthrough: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpService {
    pub load_balancer: TcpLoadBalancer,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpLoadBalancer {
    pub servers_transport: String,
    pub health_check: TcpHealthCheck,
    pub servers: Vec<TcpServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpHealthCheck {
    pub interval: String,
    pub timeout: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpServer {
    pub address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpServersTransport {
    pub dial_timeout: String,
    pub dial_keep_alive: String,
}

/// Parse both traefik files back and check they mean what we intended.
pub fn parse_back(
    static_cfg: &str,
    provider: &str,
    listen: &str,
    provider_path: &str,
    servers: &[String],
) -> anyhow::Result<()> {
    let s: TraefikStatic =
        crate::input::from_str(static_cfg).context("internal error: generated traefik.yaml does not parse back")?;
    let d: TraefikDynamic =
        crate::input::from_str(provider).context("internal error: generated provider.yaml does not parse back")?;
    ensure!(!s.global.check_new_version && !s.global.send_anonymous_usage, "internal error: traefik would phone home");
    ensure!(
        s.providers.file.filename == provider_path,
        "internal error: traefik.yaml names a provider file that is not written"
    );
    let ep: Vec<_> = s.entry_points.keys().cloned().collect();
    ensure!(
        s.entry_points.values().all(|e| e.address == listen),
        "internal error: traefik listens on the wrong address"
    );
    ensure!(
        d.tcp.routers.len() == 1 && d.tcp.services.len() == 1,
        "internal error: unexpected traefik routers/services"
    );
    for r in d.tcp.routers.values() {
        ensure!(r.tls.passthrough, "internal error: traefik would terminate TLS");
        ensure!(r.entry_points == ep, "internal error: router is not bound to the entry point");
        let svc = d.tcp.services.get(&r.service).context("internal error: router names a missing service")?;
        let got: Vec<_> = svc.load_balancer.servers.iter().map(|s| s.address.clone()).collect();
        ensure!(got == servers, "internal error: traefik servers differ from the control plane");
        ensure!(
            d.tcp.servers_transports.contains_key(&svc.load_balancer.servers_transport),
            "internal error: service names a missing serversTransport"
        );
    }
    // traefik runs the file provider's files through Go templates.
    if static_cfg.contains("{{") || provider.contains("{{") {
        bail!("internal error: traefik configuration contains a Go template marker");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The original method's provider file: `routers:` and `services:` are not under
    /// `tcp:`. Our typed parse-back refuses it.
    #[test]
    fn the_seed_mis_nesting_is_refused() {
        let seed = include_str!("../../../fixtures/seed-original/provider.yaml");
        let err = crate::input::from_str::<TraefikDynamic>(seed).err().expect("seed provider must not parse");
        assert!(err.to_string().contains("routers"), "{err}");
    }
}
