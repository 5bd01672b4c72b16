//! `mk8s-gen check`.

use super::*;

pub(super) fn check(a: &CheckArgs, io: &mut Io) -> Result<(), Failure> {
    let facts = load_facts(&a.common, io, node_exists(a.node.as_deref()))?;
    if a.list {
        for w in &facts.workers {
            let address = w.address.map_or_else(|| "-".to_string(), |ip| ip.to_string());
            writeln!(io.stdout, "{} {address}", w.name)?;
        }
    }
    let file = a.common.cluster.as_deref().unwrap_or(Path::new("-"));
    status(
        io,
        &a.common,
        &format!(
            "{}: ok: cluster {}, {} control-plane node(s), {} worker(s){}",
            file.display(),
            facts.name,
            facts.control_plane.len(),
            facts.workers.len(),
            match facts.retired.len() {
                0 => String::new(),
                n => format!(" and {n} retired"),
            }
        ),
    );
    Ok(())
}
