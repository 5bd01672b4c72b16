//! `kind: traefik` (the default): traefik with the original method's TCP router and
//! TCP health checks.

use super::{health_check, Balancer, CheckCx, BASE};
use crate::facts::{RawLoadBalancer, RawTraefik};
use crate::model::{LoadBalancer, TraefikLb, DEFAULT_TRAEFIK_PATH, MIN_TRAEFIK};
use crate::report::Report;
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
        let (health_interval, health_timeout) = health_check(raw, report)?;
        Some(LoadBalancer::Traefik(TraefikLb { path, fetch, health_interval, health_timeout }))
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
