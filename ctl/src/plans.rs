//! What each worker's plan file should hash to: rendered from the facts and the
//! secrets with `mk8s-gen`'s own library, exactly as `mk8s-gen` writes it
//! (`/etc/mk8s-worker/plan.json`). The plan does not depend on how the bootstrap
//! binary is delivered, nor on a baked image: those change other files only.
//!
//! Rendering is most of `status`'s time with `auth: x509` (each worker's
//! certificates are signed again), so workers are rendered on every core, as
//! `mk8s-gen fleet` does.

use std::collections::BTreeMap;

use anyhow::Context as _;
use mk8s_bootstrap::plan::{sha256_hex, PLAN_PATH};
use mk8s_gen::model::{Facts, Worker};
use mk8s_gen::render::{self, ClusterArtifacts, Delivery, FileContent};
use mk8s_gen::secrets::Secrets;

/// Worker name -> lowercase hex SHA-256 of its plan file's bytes.
pub fn plan_hashes(facts: &Facts, secrets: &Secrets) -> anyhow::Result<BTreeMap<String, String>> {
    let cluster = ClusterArtifacts::new(facts, &Delivery::Preinstalled)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = facts.workers.len().div_ceil(threads).max(1);
    let results: Vec<anyhow::Result<Vec<(String, String)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = facts
            .workers
            .chunks(chunk)
            .map(|workers| s.spawn(|| workers.iter().map(|w| plan_hash(facts, secrets, w, &cluster)).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("internal error: a rendering thread panicked"))))
            .collect()
    });
    let mut hashes = BTreeMap::new();
    for r in results {
        hashes.extend(r?);
    }
    Ok(hashes)
}

fn plan_hash(
    facts: &Facts,
    secrets: &Secrets,
    worker: &Worker,
    cluster: &ClusterArtifacts,
) -> anyhow::Result<(String, String)> {
    let out = render::render_node_with(facts, secrets, worker, cluster)
        .with_context(|| format!("rendering the plan of worker {}", worker.name))?;
    let plan = out.files.iter().find(|f| f.path == PLAN_PATH);
    let Some(FileContent::Text(text)) = plan.map(|f| &f.content) else {
        anyhow::bail!("internal error: no {PLAN_PATH} rendered for worker {}", worker.name);
    };
    Ok((worker.name.clone(), sha256_hex(text.as_bytes())))
}
