//! The per-node command (no subcommand): one worker's user-data or launch
//! configuration.

use super::*;
use crate::output::OutputFormat;

/// The per-node command's flags, settled once.
struct GenerateSettings<'a> {
    node: &'a str,
    secrets: &'a Path,
    /// The user-data format; `None` for the launch configuration.
    format: Option<&'static dyn OutputFormat>,
}

impl<'a> GenerateSettings<'a> {
    /// The required flags, and the conflicts that need no facts.
    fn resolve(a: &'a GenerateArgs) -> Result<GenerateSettings<'a>, Failure> {
        let node = a
            .node
            .as_deref()
            .ok_or_else(|| Failure::Usage("--node NAME is required (or use a subcommand; see --help)".into()))?;
        let secrets = a
            .secrets
            .as_deref()
            .ok_or_else(|| Failure::Usage("--secrets FILE is required: worker tokens are derived from it".into()))?;
        let format = a.format.output();
        match format {
            None if a.gzip || a.merge.is_some() || a.target.is_some() || a.baked => {
                return Err(Failure::Usage(
                    "--format launch-config writes a MicroK8s launch configuration, not user-data: \
                     --gzip, --merge, --target and --baked do not apply"
                        .into(),
                ))
            }
            Some(f) if a.gzip => {
                if let Some(why) = f.refuses_gzip() {
                    return Err(Failure::Usage(why.into()));
                }
            }
            _ => {}
        }
        Ok(GenerateSettings { node, secrets, format })
    }
}

pub(super) fn generate(a: &GenerateArgs, io: &mut Io) -> Result<(), Failure> {
    let s = GenerateSettings::resolve(a)?;
    let Some(format) = s.format else {
        return launch_config(a, &s, io);
    };
    let delivery = delivery(&a.delivery)?;
    let facts = load_facts(&a.common, io, node_exists(Some(s.node)))?;
    if matches!(delivery, Delivery::Preinstalled) && !a.delivery.bootstrap_preinstalled && !a.baked {
        preinstalled_note(&facts, a, io);
    }
    let secrets = load_secrets(s.secrets, &facts, &a.common, io)?;
    let worker = facts.worker(s.node).ok_or(Failure::Invalid)?;
    let usage = |e: anyhow::Error| Failure::Usage(format!("{e:#}"));
    let cluster = render::ClusterArtifacts::new(&facts, &delivery).map_err(usage)?;
    let cluster = if a.baked { cluster.baked() } else { cluster };
    let out = render::render_node_with(&facts, &secrets, worker, &cluster).map_err(usage)?;
    let extra = match &a.merge {
        Some(p) => Some(merge_extra(p, format, &out, io)?),
        None => None,
    };
    let text = match format.prepare(&cluster).emit(&out) {
        Ok(t) => t,
        Err(e) => {
            writeln!(io.stderr, "error: {e:#}")?;
            return Err(Failure::Invalid);
        }
    };
    let text = match &extra {
        Some(extra) => crate::output::multipart::multipart(extra, &text),
        None => text,
    };
    let bytes = if a.gzip { render::gzip(text.as_bytes()) } else { text.into_bytes() };
    if let Some(target) = a.target {
        // Only cloud-init reads gzip-compressed user-data: no --gzip hint for a
        // format that refuses it.
        let gzipped = (!a.gzip && format.refuses_gzip().is_none()).then(|| render::gzip(&bytes).len());
        let embedded = matches!(delivery, Delivery::Embedded { .. });
        if let Err(e) = crate::output::budget::check(target, s.node, bytes.len(), a.gzip, gzipped, embedded) {
            writeln!(io.stderr, "error: {e}")?;
            return Err(Failure::Invalid);
        }
    }
    emit_output(a.output.as_deref(), &bytes, io)
}

/// The default delivery: nothing in the user-data brings the bootstrap (nor traefik
/// without `traefik.url`); the bootstrap refuses early without them. With a mode
/// that joins through MicroK8s's own proxy there is no traefik to bring.
fn preinstalled_note(facts: &Facts, a: &GenerateArgs, io: &mut Io) {
    let joined = crate::auth::of(&facts.auth).joined(facts).is_some();
    let traefik = match &facts.load_balancer {
        model::LoadBalancer::Traefik(t) if t.fetch.is_none() && !joined => format!(" and traefik at {}", t.path),
        _ => String::new(),
    };
    note(
        io,
        &a.common,
        &format!(
            "note: the image must already have {}{traefik}: bake {} with `mk8s-gen packer`, or give \
             --bootstrap-bin or --bootstrap-url; --bootstrap-preinstalled says so and silences this note",
            mk8s_bootstrap::plan::BOOTSTRAP_PATH,
            if traefik.is_empty() { "it" } else { "them" }
        ),
    );
}

/// `--merge FILE`: the operator's cloud-config, when the format takes one and it
/// claims none of our files.
fn merge_extra(p: &Path, format: &dyn OutputFormat, out: &render::NodeOutput, io: &mut Io) -> Result<String, Failure> {
    if let Some(why) = format.refuses_merge() {
        return Err(Failure::Usage(why.into()));
    }
    let text = read(p, "cloud-config to merge")?;
    if let Err(problems) = crate::output::multipart::check_extra(&text, out) {
        for problem in problems {
            writeln!(io.stderr, "error: {}: {problem}", p.display())?;
        }
        return Err(Failure::Invalid);
    }
    Ok(text)
}

/// `--format launch-config`: MicroK8s's own zero-touch path (1.27+), see
/// [`crate::output::launch_config::launch_config`].
fn launch_config(a: &GenerateArgs, s: &GenerateSettings, io: &mut Io) -> Result<(), Failure> {
    let facts = load_facts(&a.common, io, node_exists(Some(s.node)))?;
    let check = a.join_check.as_deref().ok_or_else(|| {
        Failure::Usage(
            "--format launch-config needs --join-check HEX: the sha256 of the control plane's DER server.crt \
             (openssl x509 -in /var/snap/microk8s/current/certs/server.crt -outform der | sha256sum); \
             without it MicroK8s's join skips verifying the control plane and sends the token to whoever answers"
                .into(),
        )
    })?;
    let secrets = load_secrets(s.secrets, &facts, &a.common, io)?;
    let worker = facts.worker(s.node).ok_or(Failure::Invalid)?;
    let text = crate::output::launch_config::launch_config(&facts, &secrets, worker, check)
        .map_err(|e| Failure::Usage(format!("{e:#}")))?;
    emit_output(a.output.as_deref(), text.as_bytes(), io)
}
