//! Reading the inputs every command shares: facts, secrets, binaries, delivery.

use super::*;

/// Load and check facts; problems are printed; `Invalid` when there are errors (or
/// warnings under --strict).
pub fn load_facts(common: &CommonArgs, io: &mut Io, extra: impl FnOnce(&Facts, &mut Report)) -> Result<Facts, Failure> {
    let path = common.cluster.as_ref().ok_or_else(|| Failure::Usage("--cluster FILE is required".into()))?;
    let stdin = path == Path::new("-");
    let source = if stdin {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
            .map_err(|e| Failure::Usage(format!("cannot read the cluster facts from stdin: {e}")))?;
        text
    } else {
        read(path, "cluster facts")?
    };
    // A UTF-8 byte order mark (some Windows editors write one) is not content.
    let source = match source.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => source,
    };
    let file = if stdin { "<stdin>".to_string() } else { path.display().to_string() };
    if let Some(why) = crate::secrets::looks_secret(&source) {
        // Never echo a line of it: problems would quote the seed or the key.
        let mut report = Report::default();
        report.error(
            "$",
            format!("this is not a cluster facts file: {why}, so none of its lines are shown"),
            "give the cluster facts with --cluster and the secrets file with --secrets; keep private keys in the secrets file only",
        );
        emit(&report, &file, "", common, io);
        return Err(Failure::Invalid);
    }
    // Relative paths in the facts (ca.cert-file) are relative to the facts file, or
    // to the working directory for stdin.
    let base = if stdin { Path::new(".") } else { path.parent().unwrap_or(Path::new(".")) };
    let crate::Loaded { facts, mut report, spans } = crate::load(&source, base);
    if let Some(f) = &facts {
        extra(f, &mut report);
    }
    report.locate(&spans);
    emit(&report, &file, &source, common, io);
    match facts {
        Some(f) if !report.has_errors() && (!common.strict || report.problems.is_empty()) => Ok(f),
        Some(_) if !report.has_errors() => {
            let json = serde_json::json!({ "file": file, "error": STRICT_FAILED });
            message(io, common.message_format, json, &format!("error: {STRICT_FAILED}"));
            Err(Failure::StrictWarnings)
        }
        _ => Err(Failure::Invalid),
    }
}

pub(super) fn node_exists(node: Option<&str>) -> impl FnOnce(&Facts, &mut Report) + '_ {
    move |facts, report| {
        if let Some(n) = node {
            if let Some(r) = facts.retired(n) {
                report.error(
                    format!("{}.retired", r.path),
                    format!("worker {n:?} is retired: no user-data or launch configuration is made for it"),
                    "a machine that replaces it joins under a new name (a new entry in `workers`); to bring this one back, remove `retired: true` and delete its name from the cluster's retired-nodes denylist (docs/day2.md, Retire)",
                );
            } else if facts.worker(n).is_none() {
                let names: Vec<&str> = facts.workers.iter().map(|w| w.name.as_str()).collect();
                report.error("$.workers", format!("no worker named {n:?}"), &closest_names(n, &names));
            }
        }
    }
}

/// The help for an unknown worker name: at most five of the closest names (by
/// edit distance), never the whole list (a fleet has thousands).
pub(super) fn closest_names(wanted: &str, names: &[&str]) -> String {
    if names.is_empty() {
        return "the facts list no workers".into();
    }
    let mut scored: Vec<(usize, &str)> = names.iter().map(|n| (strsim::levenshtein(wanted, n), *n)).collect();
    scored.sort();
    let shown: Vec<&str> = scored.iter().take(5).map(|(_, n)| *n).collect();
    format!("the closest of the {} worker name(s): {}", names.len(), shown.join(", "))
}

/// Load the secrets; with `auth: x509`, also the CA key, checked against the CA.
/// Also `mk8s-ctl`'s: it renders plans from the same secrets, checked the same way.
pub fn load_secrets(path: &Path, facts: &Facts, common: &CommonArgs, io: &mut Io) -> Result<Secrets, Failure> {
    let text = read(path, "secrets file")?;
    let base = path.parent().unwrap_or(Path::new("."));
    // Never show the secrets file's lines: problems are rendered without source.
    let file = path.display().to_string();
    let mut secrets = Secrets::load(&text, base).map_err(|report| {
        emit(&report, &file, "", common, io);
        Failure::Invalid
    })?;
    for p in std::iter::once(path).chain(secrets.ca_key_path.as_deref()) {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(p) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                note(
                    io,
                    common,
                    &format!(
                        "warning: {} is readable by group or others (mode {mode:04o}) and holds credentials; run `chmod 600 {}`",
                        p.display(),
                        p.display()
                    ),
                );
            }
        }
    }
    if crate::auth::of(&facts.auth).needs_ca_key() {
        if let Err(e) = secrets.attach_ca_key(&facts.ca) {
            let mut report = Report::default();
            report.error(
                "$.ca-key-file",
                e,
                "use the key of the CA in the facts (certs/ca.key on a MicroK8s control-plane node)",
            );
            emit(&report, &file, "", common, io);
            return Err(Failure::Invalid);
        }
    }
    Ok(secrets)
}

/// Read a binary to ship to nodes, refusing anything that is not an ELF executable.
pub(super) fn read_elf(p: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    let bytes = std::fs::read(p).map_err(|e| Failure::Usage(format!("cannot read {what} {}: {e}", p.display())))?;
    if !bytes.starts_with(b"\x7fELF") {
        return Err(Failure::Usage(format!("{} is not an ELF executable", p.display())));
    }
    Ok(bytes)
}

pub(super) fn delivery(a: &DeliveryArgs) -> Result<Delivery, Failure> {
    if let Some(p) = &a.bootstrap_bin {
        return Ok(Delivery::embedded(&read_elf(p, "bootstrap binary")?));
    }
    if let (Some(url), Some(sha)) = (&a.bootstrap_url, &a.bootstrap_sha256) {
        if values::has_userinfo(url) {
            return Err(Failure::Usage(format!(
                "--bootstrap-url {}: the URL has credentials in it; {}",
                mk8s_bootstrap::system::redact_url(url),
                values::USERINFO_HELP
            )));
        }
        if !values::is_safe_url(url) {
            return Err(Failure::Usage(format!("--bootstrap-url {url:?} is not an https URL of plain characters")));
        }
        if !values::is_sha256_hex(sha) {
            return Err(Failure::Usage("--bootstrap-sha256 must be 64 hex digits".into()));
        }
        return Ok(Delivery::Fetched { url: url.clone(), sha256: sha.to_ascii_lowercase() });
    }
    Ok(Delivery::Preinstalled)
}
