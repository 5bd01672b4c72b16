//! `mk8s-gen packer`: the files to bake into an image.

use super::*;

pub(super) fn packer(a: &PackerArgs, io: &mut Io) -> Result<(), Failure> {
    let facts = load_facts(&a.common, io, |_, _| {})?;
    let bootstrap = read_elf(&a.bootstrap_bin, "bootstrap binary")?;
    let shared =
        render::ClusterArtifacts::new(&facts, &Delivery::Preinstalled).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let mut files: Vec<(String, Vec<u8>, u32)> = shared
        .files()
        .iter()
        .map(|f| match &f.content {
            render::FileContent::Text(t) => (f.path.clone(), t.as_bytes().to_vec(), f.mode),
            render::FileContent::GzipBase64(_) => unreachable!("pre-installed delivery embeds nothing"),
        })
        .collect();
    files.push((mk8s_bootstrap::plan::BOOTSTRAP_PATH.to_string(), bootstrap, 0o755));
    if let Some(t) = &a.traefik_bin {
        let model::LoadBalancer::Traefik(lb) = &facts.load_balancer else {
            return Err(Failure::Usage("--traefik-bin needs `load-balancer: { kind: traefik }` in the facts".into()));
        };
        files.push((lb.path.clone(), read_elf(t, "traefik binary")?, 0o755));
    }
    for (path, data, mode) in &files {
        let dest = a.out.join(path.trim_start_matches('/'));
        // Missing directories: 0755 at most, whatever the umask (as on the node).
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o755)
            .create(dest.parent().expect("absolute paths have parents"))?;
        write_output(&dest, data, *mode)?;
    }
    status(
        io,
        &a.common,
        &format!(
            "wrote {} file(s) under {}: bake them into the image at /, then use --baked",
            files.len(),
            a.out.display()
        ),
    );
    Ok(())
}
