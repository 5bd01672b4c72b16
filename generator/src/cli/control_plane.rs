//! `mk8s-gen control-plane`: the bundle for the control-plane nodes.

use super::*;

pub(super) fn control_plane(a: &ControlPlaneArgs, io: &mut Io) -> Result<(), Failure> {
    let facts = load_facts(&a.common, io, |facts, report| {
        if crate::auth::of(&facts.auth).bundle_needs_workers() && facts.workers.is_empty() && facts.retired.is_empty() {
            report.error(
                "$.workers",
                "the facts list no workers: there are no token lines for the control plane",
                "add the workers first; an empty bundle would merge nothing",
            );
        }
    })?;
    let secrets = load_secrets(&a.secrets, &facts, &a.common, io)?;
    let workers: Vec<_> = facts.workers.iter().collect();
    let files = crate::controlplane::write_bundle(&facts, &secrets, &workers, &a.out)
        .map_err(|e| Failure::Usage(format!("{e:#}")))?;
    status(
        io,
        &a.common,
        &format!(
            "wrote {} in {}: run {} on every control-plane node",
            files.join(", "),
            a.out.display(),
            crate::auth::of(&facts.auth).operator_steps()
        ),
    );
    Ok(())
}
