//! What each worker's plan file should hash to: rendered from the facts and the
//! secrets with `mk8s-gen`'s own library, exactly as `mk8s-gen` writes it
//! (`/etc/mk8s-worker/plan.json`). The plan does not depend on how the bootstrap
//! binary is delivered, nor on a baked image: those change other files only.

use std::collections::BTreeMap;

use anyhow::Context as _;
use mk8s_bootstrap::plan::{sha256_hex, PLAN_PATH};
use mk8s_gen::model::Facts;
use mk8s_gen::render::{self, ClusterArtifacts, Delivery, FileContent};
use mk8s_gen::secrets::Secrets;

/// Worker name -> lowercase hex SHA-256 of its plan file's bytes.
pub fn plan_hashes(facts: &Facts, secrets: &Secrets) -> anyhow::Result<BTreeMap<String, String>> {
    let cluster = ClusterArtifacts::new(facts, &Delivery::Preinstalled)?;
    let mut hashes = BTreeMap::new();
    for worker in &facts.workers {
        let out = render::render_node_with(facts, secrets, worker, &cluster)
            .with_context(|| format!("rendering the plan of worker {}", worker.name))?;
        let plan = out.files.iter().find(|f| f.path == PLAN_PATH);
        let Some(FileContent::Text(text)) = plan.map(|f| &f.content) else {
            anyhow::bail!("internal error: no {PLAN_PATH} rendered for worker {}", worker.name);
        };
        hashes.insert(worker.name.clone(), sha256_hex(text.as_bytes()));
    }
    Ok(hashes)
}
