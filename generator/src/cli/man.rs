//! `mk8s-gen man`: the manual pages, from the same definitions as `--help`.

use super::*;

pub(super) fn man(out: Option<&Path>, io: &mut Io) -> Result<(), Failure> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let Some(dir) = out else {
        return clap_mangen::Man::new(cmd).render(io.stdout).map_err(Failure::from);
    };
    crate::util::ensure_dir(dir, 0o755, false).map_err(|e| Failure::Usage(format!("{}: {e:#}", dir.display())))?;
    // A page's SEE ALSO names a page per command (`mk8s-gen-fleet(1)`, and
    // `mk8s-gen-secrets-init(1)` under secrets): write every one of them.
    let mut pages = Vec::new();
    // Built: the generated `help` subcommands are in the tree too.
    let mut cmd = cmd;
    cmd.build();
    let mut todo = vec![("mk8s-gen".to_string(), cmd)];
    while let Some((name, page)) = todo.pop() {
        for sub in page.get_subcommands() {
            let sub_name = format!("{name}-{}", sub.get_name());
            todo.push((sub_name.clone(), sub.clone().display_name(sub_name)));
        }
        pages.push((format!("{name}.1"), page));
    }
    pages.sort_by(|a, b| a.0.cmp(&b.0));
    for (file, page) in pages {
        let mut text = Vec::new();
        clap_mangen::Man::new(page).render(&mut text)?;
        write_output(&dir.join(&file), &text, 0o644)?;
        writeln!(io.stderr, "wrote {}", dir.join(&file).display())?;
    }
    Ok(())
}
