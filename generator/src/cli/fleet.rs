//! `mk8s-gen fleet`.

use super::*;

pub(super) fn fleet(a: &FleetArgs, io: &mut Io) -> Result<(), Failure> {
    let delivery = delivery(&a.delivery)?;
    let mut labels = Vec::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').ok_or_else(|| Failure::Usage(format!("--label {l:?}: write KEY=VALUE")))?;
        labels.push((k.to_string(), v.to_string()));
    }
    let Some(format) = a.format.output() else {
        return Err(Failure::Usage(
            "--format launch-config is per node (it needs each control plane's --join-check): use mk8s-gen --node"
                .into(),
        ));
    };
    let facts = load_facts(&a.common, io, |_, _| {})?;
    let secrets = load_secrets(&a.secrets, &facts, &a.common, io)?;
    let threads = a.threads.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(crate::fleet::MAX_THREADS)
    });
    let opts = crate::fleet::Options {
        out: a.out.clone(),
        dry_run: a.dry_run,
        format,
        baked: a.baked,
        target: a.target,
        selection: crate::fleet::Selection { name: a.select.clone(), labels },
        sync: !a.no_sync,
        // --quiet: no bar; --message-format json: no bar either (the stream is JSON).
        progress: !a.common.quiet && matches!(a.common.message_format, MessageFormat::Human),
        threads,
    };
    let s = crate::fleet::run(&facts, &secrets, &delivery, &opts).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    if s.dry_run {
        status(
            io,
            &a.common,
            &format!(
                "fleet --dry-run: {} node(s): {} would be written, {} unchanged, {} removed; control-plane bundle: \
                 {} file(s) would change (all {} worker(s) of the facts); nothing was written to {}",
                s.nodes,
                s.written,
                s.unchanged,
                s.removed,
                s.bundle_changed,
                s.bundle_workers,
                a.out.display()
            ),
        );
        return Ok(());
    }
    if s.recovered {
        note(io, &a.common, &format!("note: finished the commit of an interrupted run in {} first", a.out.display()));
    }
    status(
        io,
        &a.common,
        &format!(
            "fleet: {} node(s) in {:.2}s: {} written, {} unchanged, {} removed -> {} \
         (control-plane bundle: all {} worker(s) of the facts)",
            s.nodes,
            s.elapsed.as_secs_f64(),
            s.written,
            s.unchanged,
            s.removed,
            a.out.display(),
            s.bundle_workers
        ),
    );
    Ok(())
}
