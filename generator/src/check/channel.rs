//! `cluster.microk8s`: the channel (and so the release) and an air-gapped install's
//! snap files.

use crate::facts::{RawLocalSnap, RawMicroK8s};
use crate::model::{Channel, LocalSnap};
use crate::report::Report;
use crate::values::{is_dns_label, is_safe_abs_path, quote_value, required, WORLD_WRITABLE_DIRS};

/// The channel, with its local snap files when given.
pub(super) fn check_microk8s(m: Option<&RawMicroK8s>, report: &mut Report) -> Option<Channel> {
    let Some(m) = m else {
        return required::<String>(None, "$.cluster.microk8s", report).and(None);
    };
    let ch =
        required(m.channel.as_ref(), "$.cluster.microk8s.channel", report).and_then(|ch| check_channel(ch, report));
    let local = m.local_snap.as_ref().and_then(|l| local_snap(l, ch.as_ref(), report));
    let hold_refresh = match m.refresh.as_deref() {
        None | Some("hold") => true,
        Some("auto") => false,
        Some(other) => {
            report.error(
                "$.cluster.microk8s.refresh",
                format!("{} is not a refresh policy", quote_value(other)),
                "use `hold` (the default: MicroK8s is refreshed only when you say so) or `auto` (snapd refreshes it up to four times a day)",
            );
            true
        }
    };
    ch.map(|c| Channel { local_snap: local, hold_refresh, ..c })
}

/// A `.snap` file and its `.assert`, each a plain absolute path outside the
/// world-writable directories.
fn snap_files(path: &str, f: Option<&String>, a: Option<&String>, report: &mut Report) -> Option<(String, String)> {
    let file = required(f, &format!("{path}.file"), report)?;
    let assert = required(a, &format!("{path}.assert"), report)?;
    let mut ok = true;
    for (v, k, ext) in [(file, "file", ".snap"), (assert, "assert", ".assert")] {
        if !is_safe_abs_path(v) || !v.ends_with(ext) {
            report.error(
                format!("{path}.{k}"),
                format!("{} is not a plain absolute path to a {ext} file", quote_value(v)),
                "use letters, digits and / . _ - only, e.g. /var/cache/mk8s/microk8s_1234.snap",
            );
            ok = false;
        } else if WORLD_WRITABLE_DIRS.iter().any(|d| v.starts_with(d)) {
            // The bootstrap installs it as root (`snap ack`, `snap install`):
            // in a world-writable directory anyone could swap it first.
            report.error(
                format!("{path}.{k}"),
                format!("{} is in a world-writable directory", quote_value(v)),
                "put the snap files where only root writes, e.g. /var/cache/mk8s/",
            );
            ok = false;
        }
    }
    ok.then(|| (file.clone(), assert.clone()))
}

/// `local-snap`: MicroK8s's files, and its base snap's (warned about when absent).
fn local_snap(l: &RawLocalSnap, ch: Option<&Channel>, report: &mut Report) -> Option<LocalSnap> {
    let base = "$.cluster.microk8s.local-snap";
    let (file, assert) = snap_files(base, l.file.as_ref(), l.assert.as_ref(), report)?;
    let want = ch.map_or(crate::model::release::latest(), |c| c.release).base_snap;
    let base_pair = match &l.base {
        None => {
            report.warning(
                base,
                format!(
                    "no `base` snap is given: MicroK8s {} runs on the {want} snap, which snapd cannot fetch \
                     without the store, so the install fails unless the image already has {want}",
                    ch.map(|c| c.text.as_str()).unwrap_or("?")
                ),
                &format!(
                    "bake {want} into the image, or add `base: {{ file: /var/cache/mk8s/{want}_REV.snap, \
                     assert: /var/cache/mk8s/{want}_REV.assert }}` (`snap download {want}` makes both)"
                ),
            );
            None
        }
        Some(b) => {
            let p = format!("{base}.base");
            let got = snap_files(&p, b.file.as_ref(), b.assert.as_ref(), report)?;
            // `snap download NAME` names its files NAME_REV.snap.
            let name = got.0.rsplit('/').next().unwrap_or("").split('_').next().unwrap_or("");
            if name != want {
                report.error(
                    format!("{p}.file"),
                    format!("{} is not the {want} snap this MicroK8s runs on", quote_value(&got.0)),
                    &format!("use the files `snap download {want}` writes ({want}_REV.snap and .assert)"),
                );
                return None;
            }
            Some(got)
        }
    };
    Some(LocalSnap { file, assert, base: base_pair })
}

pub(super) fn check_channel(s: &str, report: &mut Report) -> Option<Channel> {
    let path = "$.cluster.microk8s.channel";
    let help = "use a snap channel such as 1.30/stable (track/risk), e.g. 1.20/stable or 1.28/candidate";
    let mut parts = s.split('/');
    let track = parts.next().unwrap_or("");
    let risk = parts.next();
    let branch = parts.next();
    let bad = parts.next().is_some()
        || !matches!(risk, None | Some("stable" | "candidate" | "beta" | "edge"))
        || branch.is_some_and(|b| !is_dns_label(b));
    if bad {
        report.error(path, format!("{} is not a MicroK8s snap channel", quote_value(s)), help);
        return None;
    }
    if track == "latest" {
        report.warning(
            path,
            "channel `latest` follows every new Kubernetes minor",
            "pin a track such as 1.30/stable so workers match the control plane",
        );
        return Some(Channel {
            text: s.into(),
            local_snap: None,
            version: None,
            release: crate::model::release::latest(),
            hold_refresh: true,
        });
    }
    if track.ends_with("-strict") || track.ends_with("-eksd") {
        report.error(path, format!("track {track:?} is not supported"), "use a classic track such as 1.30/stable");
        return None;
    }
    // Plain digits only: u32's parser also takes `+1`.
    let number = |p: &str| {
        (!p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0')))
            .then(|| p.parse::<u32>().ok())
            .flatten()
    };
    let version = track.split_once('.').and_then(|(a, b)| Some((number(a)?, number(b)?)));
    let Some((major, minor)) = version else {
        report.error(path, format!("{} is not a MicroK8s snap channel", quote_value(s)), help);
        return None;
    };
    let release = match crate::model::release::release(Some((major, minor))) {
        Some(r) => r,
        None => {
            report.error(
                path,
                format!("MicroK8s {major}.{minor} is not supported"),
                "worker-only nodes need MicroK8s 1.19 or later",
            );
            return None;
        }
    };
    Some(Channel { text: s.into(), local_snap: None, version: Some((major, minor)), release, hold_refresh: true })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// `refresh:` is `hold` unless the facts say `auto`; anything else is refused.
    #[test]
    fn refresh_policy() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/seed");
        let load = |refresh: &str| {
            let text = format!(
                "cluster:\n  name: c\n  microk8s: {{ channel: 1.30/stable{refresh} }}\n  ca: {{ cert-file: ca.crt }}\n  control-plane:\n    - {{ name: cp-1, address: 10.0.0.2 }}\nworkers:\n  - {{ name: w-1, address: 10.0.0.5 }}\n"
            );
            crate::load(&text, &dir)
        };
        assert!(load("").facts.unwrap().channel.hold_refresh);
        assert!(load(", refresh: hold").facts.unwrap().channel.hold_refresh);
        assert!(!load(", refresh: auto").facts.unwrap().channel.hold_refresh);
        let bad = load(", refresh: never");
        assert!(bad.facts.is_none());
        assert!(
            bad.report.problems.iter().any(|p| p.path == "$.cluster.microk8s.refresh"),
            "{:?}",
            bad.report.problems
        );
    }
}
