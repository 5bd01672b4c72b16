//! `mk8s-gen check`.

use super::*;

pub(super) fn check(a: &CheckArgs, io: &mut Io) -> Result<(), Failure> {
    let facts = load_facts(&a.common, io, node_exists(a.node.as_deref()))?;
    status(
        io,
        &a.common,
        &format!(
            "{}: ok: cluster {}, {} control-plane node(s), {} worker(s)",
            a.common.cluster.as_ref().unwrap().display(),
            facts.name,
            facts.control_plane.len(),
            facts.workers.len()
        ),
    );
    Ok(())
}
