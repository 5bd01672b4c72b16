//! `--merge extra.yaml`: the operator's own cloud-config (users, ssh keys, packages,
//! ntp, ...) and ours in one MIME multipart user-data.
//!
//! The operator's document goes in byte for byte: re-serializing it could change
//! what cloud-init (PyYAML, YAML 1.1) reads from it, e.g. an unquoted `yes`. Our part
//! comes second with `Merge-Type: list(append)+dict(recurse_array)+str()`, so our
//! `write_files`, `packages` and `runcmd` are appended to the operator's instead of
//! replacing them. Files we write may not also be written by the operator.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::render::{NodeOutput, STAGE_DIR, UNIT_DIR};

pub const MERGE_TYPE: &str = "list(append)+dict(recurse_array)+str()";

/// Check the operator's document and return it with the paths it writes.
pub fn check_extra(extra: &str, ours: &NodeOutput) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if !extra.starts_with("#cloud-config") {
        problems.push("it must be a cloud-config document starting with `#cloud-config`".to_string());
        return Err(problems);
    }
    let doc = match crate::input::parse(extra) {
        Ok(v) => v.unwrap_or_else(crate::input::null),
        Err(e) => return Err(vec![format!("it cannot be read: {e}")]),
    };
    if !matches!(doc.kind, crate::input::Kind::Map(_)) && !doc.is_null() {
        return Err(vec!["its top level must be a mapping".into()]);
    }
    if let Some(files) = doc.get("write_files").and_then(|w| w.items()) {
        // Compared as cloud-init writes them: `//`, `/./` and `/../` resolved, and
        // whether the entry is deferred (`defer: true`, written in the final stage)
        // or not, it lands on the same file.
        let owned: Vec<String> = ours.files.iter().map(|o| normalise(&o.path)).collect();
        for (i, f) in files.iter().enumerate() {
            let Some(path) = f.get("path").and_then(|p| p.as_str()) else { continue };
            if !path.starts_with('/') {
                problems.push(format!("write_files[{i}] writes {path:?}, a relative path; give an absolute path"));
                continue;
            }
            let n = normalise(path);
            let inside_ours = n == STAGE_DIR || n.starts_with(&format!("{STAGE_DIR}/"));
            if let Some(unit) = overrides_unit(&n, ours) {
                problems.push(format!(
                    "write_files[{i}] writes {path}, which would replace or change mk8s-worker's unit {unit} \
                     (systemd reads it with, or instead of, /etc/systemd/system/{unit}); remove it from your cloud-config"
                ));
            } else if owned.contains(&n) || inside_ours || n == mk8s_bootstrap::plan::BOOTSTRAP_PATH {
                let resolved = if n == path { String::new() } else { format!(" ({n})") };
                problems.push(format!(
                    "write_files[{i}] writes {path}{resolved}, which mk8s-worker owns; remove it from your cloud-config"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The systemd directories where a unit file or drop-in takes precedence over, or
/// adds to, one in `/etc/systemd/system` (systemd.unit(5), "Unit File Load Path").
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/etc/systemd/system",
    "/run/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system.attached",
];

/// `path` would replace or change one of our units: the same unit file in a
/// directory systemd reads first, or a drop-in for it (`NAME.service.d/`, the
/// prefix drop-ins `mk8s-.service.d/`, and the `service.d/` of every service).
fn overrides_unit<'a>(path: &str, ours: &'a NodeOutput) -> Option<&'a str> {
    let units: Vec<&str> = ours
        .files
        .iter()
        .filter_map(|f| f.path.strip_prefix(&format!("{UNIT_DIR}/")))
        .filter(|name| !name.contains('/'))
        .collect();
    let rest = UNIT_DIRS.iter().find_map(|d| path.strip_prefix(d)?.strip_prefix('/'))?;
    let (first, below) = match rest.split_once('/') {
        Some((first, below)) => (first, !below.is_empty()),
        None => (rest, false),
    };
    units.into_iter().find(|unit| {
        let (stem, kind) = unit.rsplit_once('.').unwrap_or((unit, ""));
        // Every dash-prefix of the name has its drop-in directory: `mk8s-.service.d`.
        let prefixes = stem.match_indices('-').map(|(i, _)| format!("{}.{kind}.d", &stem[..=i]));
        let drop_in =
            first == format!("{unit}.d") || first == format!("{kind}.d") || prefixes.into_iter().any(|p| first == p);
        // Our own unit file in /etc/systemd/system is owned, and said so above.
        (first == *unit && !below && !path.starts_with(&format!("{UNIT_DIR}/"))) || (drop_in && below)
    })
}

/// A path as the file system resolves it, without following links: empty and `.`
/// components dropped, `..` taking one back (never above `/`).
pub fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// RFC 5322 (2.1.1) and RFC 2045 (2.8): a `7bit` body has lines of at most 998
/// octets; an embedded bootstrap is one base64 line of more than a megabyte.
const MAX_7BIT_LINE: usize = 998;

fn part(name: &str, body: &str, merge_type: Option<&str>) -> String {
    let (encoding, text) = if body.is_ascii() && body.lines().all(|l| l.len() <= MAX_7BIT_LINE) {
        ("7bit", body.to_string())
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
        let lines: Vec<&str> = b64.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
        ("base64", lines.join("\n") + "\n")
    };
    let mut head = format!(
        "Content-Type: text/cloud-config; charset=\"utf-8\"\nMIME-Version: 1.0\nContent-Transfer-Encoding: {encoding}\nContent-Disposition: attachment; filename=\"{name}\"\n"
    );
    if let Some(m) = merge_type {
        head.push_str(&format!("Merge-Type: {m}\n"));
    }
    // The line break before a boundary belongs to the boundary (RFC 2046), so a
    // body that ends with one needs another for its last byte to survive.
    let mut out = format!("{head}\n{text}");
    out.push('\n');
    out
}

/// The multipart user-data: the operator's part, then ours. Deterministic: the
/// boundary is derived from the content (and checked not to occur in it).
pub fn multipart(extra: &str, ours: &str) -> String {
    let digest = hex::encode(Sha256::digest(format!("{extra}\0{ours}").as_bytes()));
    let mut boundary = format!("mk8s-worker-{}", &digest[..32]);
    while extra.contains(&boundary) || ours.contains(&boundary) {
        boundary.push('x');
    }
    format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n--{boundary}\n{}--{boundary}\n{}--{boundary}--\n",
        part("operator.yaml", extra, None),
        part("mk8s-worker.yaml", ours, Some(MERGE_TYPE)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_as_the_file_system_would() {
        assert_eq!(normalise("/etc//mk8s-worker/./plan.json"), "/etc/mk8s-worker/plan.json");
        assert_eq!(normalise("/etc/x/../mk8s-worker/plan.json"), "/etc/mk8s-worker/plan.json");
        assert_eq!(normalise("/../../etc/motd"), "/etc/motd");
        assert_eq!(normalise("/"), "/");
    }

    #[test]
    fn long_lines_are_not_sent_as_7bit() {
        let long = format!("#cloud-config\nx: {}\n", "a".repeat(2000));
        let p = part("p", &long, None);
        assert!(p.contains("Content-Transfer-Encoding: base64"), "{}", &p[..200]);
        assert!(p.lines().all(|l| l.len() <= 76 + 2));
        assert!(part("p", "#cloud-config\nx: 1\n", None).contains("Content-Transfer-Encoding: 7bit"));
    }
}
