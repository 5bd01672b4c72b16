//! `mk8s-gen fleet`: every selected worker's user-data, the control-plane bundle
//! and a manifest, in one run, on every core.
//!
//! Layout of the output directory:
//! ```text
//! nodes/<name>.user-data   0600, one per selected worker (`.ign` with --format ignition)
//! control-plane/           as `mk8s-gen control-plane` writes it, for every worker
//!                          of the facts (also when --select/--label pick some)
//! manifest.json            [{node, file, sha256, size}], written last
//! ```
//! Guarantees: a file whose content is unchanged is not rewritten (mtimes and
//! Terraform stay quiet); changed files are first written to a staging directory
//! beside them, made durable with one filesystem sync, then renamed into place, so a
//! run that fails leaves the previous output intact, and a run that is killed is
//! completed by the next one. Memory stays bounded: each worker thread holds one
//! node's output at a time; the manifest holds only hashes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::model::{Facts, Worker};
use crate::render::{self, ClusterArtifacts, Delivery};
use crate::secrets::Secrets;
use crate::util::{write_atomic, write_output};

const STAGING: &str = ".staging";
/// In the staging directory: the commit about to be applied (renames, removals,
/// manifest), written durably before the first rename.
const JOURNAL: &str = "COMMIT.json";

#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct Journal {
    /// (staged file, destination), relative to the output directory.
    renames: Vec<(String, String)>,
    /// Files to remove, relative to the output directory.
    removals: Vec<String>,
    /// manifest.json's new content.
    manifest: String,
}

/// Apply a journal. Every step is idempotent (a rename whose source is gone was
/// done; a removal of a missing file was done), so a journal can be applied again
/// after a kill at any point, then the staging directory goes.
fn apply(out: &Path, j: &Journal) -> anyhow::Result<()> {
    let safe = |p: &str| !p.is_empty() && !p.starts_with('/') && p.split('/').all(|c| !c.is_empty() && c != "..");
    anyhow::ensure!(
        j.renames.iter().all(|(a, b)| safe(a) && safe(b)) && j.removals.iter().all(|p| safe(p)),
        "{}/{JOURNAL} names a path outside the output directory; remove {STAGING} and run again",
        out.display()
    );
    for (from, to) in &j.renames {
        match fs::rename(out.join(from), out.join(to)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !out.join(from).exists() => {}
            r => r.with_context(|| format!("cannot rename {from} to {to} in {}", out.display()))?,
        }
    }
    for p in &j.removals {
        match fs::remove_file(out.join(p)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            r => r.with_context(|| format!("cannot remove {}", out.join(p).display()))?,
        }
    }
    for d in ["nodes", "control-plane"] {
        if let Ok(d) = fs::File::open(out.join(d)) {
            let _ = d.sync_all();
        }
    }
    write_output(&out.join("manifest.json"), j.manifest.as_bytes(), 0o644)?;
    let _ = fs::remove_dir_all(out.join(STAGING));
    Ok(())
}

/// Finish the commit of a run killed after writing its journal; true if there was one.
fn finish_commit(out: &Path) -> anyhow::Result<bool> {
    let path = out.join(STAGING).join(JOURNAL);
    let Ok(text) = fs::read(&path) else { return Ok(false) };
    // A journal is written atomically: one that does not parse is not ours.
    let j: Journal = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a fleet commit journal; remove it and run again", path.display()))?;
    apply(out, &j)?;
    Ok(true)
}

fn rel(out: &Path, p: &Path) -> anyhow::Result<String> {
    Ok(p.strip_prefix(out).context("staged outside the output directory")?.to_string_lossy().to_string())
}

/// Same bytes and same mode (a missing `b` differs).
fn same_file_content(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::symlink_metadata(p).ok().map(|m| (m.file_type().is_file(), m.permissions().mode()));
    mode(a) == mode(b) && fs::read(a).ok().is_some_and(|x| fs::read(b).ok().is_some_and(|y| x == y))
}

/// Which workers a run covers.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// Glob on the name (`*` and `?`).
    pub name: Option<String>,
    /// `key=value` labels that must all match.
    pub labels: Vec<(String, String)>,
}

impl Selection {
    pub fn is_all(&self) -> bool {
        self.name.is_none() && self.labels.is_empty()
    }

    pub fn matches(&self, w: &Worker) -> bool {
        self.name.as_deref().is_none_or(|g| glob(g, &w.name))
            && self.labels.iter().all(|(k, v)| w.labels.get(k) == Some(v))
    }
}

/// `*` any run, `?` one character; everything else literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestEntry {
    pub node: String,
    pub file: String,
    pub sha256: String,
    pub size: usize,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub nodes: usize,
    pub written: usize,
    pub unchanged: usize,
    pub removed: usize,
    /// Workers in the control-plane bundle: every worker of the facts.
    pub bundle_workers: usize,
    /// A commit left unfinished by a killed run was completed first.
    pub recovered: bool,
    pub elapsed: Duration,
}

pub struct Options {
    pub out: PathBuf,
    /// Ignition configs instead of cloud-config.
    pub ignition: bool,
    /// The image was baked with `mk8s-gen packer`.
    pub baked: bool,
    /// Check every node's output against this platform's limit before writing.
    pub target: Option<crate::output::budget::Target>,
    pub selection: Selection,
    /// Make the batch durable with one filesystem sync before renaming.
    pub sync: bool,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// Worker threads, 1 to [`MAX_THREADS`].
    pub threads: usize,
}

/// More threads than this only add contention (the work is CPU and directory bound).
pub const MAX_THREADS: usize = 256;

/// What one node produced, before the commit phase.
struct Rendered {
    entry: ManifestEntry,
    /// Where the new content waits (None: unchanged).
    staged: Option<PathBuf>,
}

pub fn run(facts: &Facts, secrets: &Secrets, delivery: &Delivery, opts: &Options) -> anyhow::Result<Summary> {
    let start = Instant::now();
    let workers: Vec<&Worker> = facts.workers.iter().filter(|w| opts.selection.matches(w)).collect();
    anyhow::ensure!(!workers.is_empty(), "no worker matches the selection");
    anyhow::ensure!((1..=MAX_THREADS).contains(&opts.threads), "threads must be 1 to {MAX_THREADS}");
    let shared = ClusterArtifacts::new(facts, delivery)?;
    let shared = if opts.baked { shared.baked() } else { shared };
    let ext = if opts.ignition { "ign" } else { "user-data" };
    let embedded = matches!(delivery, Delivery::Embedded { .. });
    let nodes_dir = opts.out.join("nodes");
    let staging = opts.out.join(STAGING);
    // Directories of ours, never symlinks (the run deletes files in them), with
    // modes set whatever the umask: nodes/ and control-plane/ hold credentials and
    // a script run as root.
    crate::util::ensure_dir(&opts.out, 0o755, false)?;
    for d in [&nodes_dir, &opts.out.join("control-plane"), &staging] {
        crate::util::ensure_dir(d, 0o700, true)?;
    }
    // A run killed while committing left a journal: finish its commit first. Any
    // other staging directory left by a killed run holds nothing we need.
    let recovered = finish_commit(&opts.out)?;
    let _ = fs::remove_dir_all(&staging);
    crate::util::ensure_dir(&staging, 0o700, true)?;

    // Render every node on every core; write only what changed, into staging.
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Rendered>> = Mutex::new(Vec::with_capacity(workers.len()));
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    // indicatif draws only when stderr is a terminal, from whichever thread ticks it;
    // it takes the stderr lock per draw, so nobody may hold that lock for the run.
    let bar = progress_bar(opts.progress, workers.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..opts.threads)
            .map(|t| {
                // One staging directory per thread: creating files in one directory
                // from several threads serializes on its lock (measured: most of the
                // run spent spinning in the kernel).
                let my_staging = staging.join(t.to_string());
                let (next, failed, results, first_error, workers, shared, nodes_dir, bar) =
                    (&next, &failed, &results, &first_error, &workers, &shared, &nodes_dir, &bar);
                scope.spawn(move || {
                    if let Err(e) = fs::create_dir_all(&my_staging) {
                        failed.store(true, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e.into());
                        return;
                    }
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= workers.len() || failed.load(Ordering::Relaxed) {
                            break;
                        }
                        match render_one(
                            facts,
                            secrets,
                            workers[i],
                            shared,
                            nodes_dir,
                            &my_staging,
                            opts,
                            ext,
                            embedded,
                        ) {
                            Ok(r) => mine.push(r),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                first_error.lock().unwrap().get_or_insert(e);
                                break;
                            }
                        }
                        bar.inc(1);
                    }
                    results.lock().unwrap().extend(mine);
                })
            })
            .collect();
        // A panicking worker thread must fail the run, never pass for "no nodes"
        // (whose files a full run would then delete as stale).
        if let Some(e) = join_workers(handles) {
            failed.store(true, Ordering::Relaxed);
            first_error.lock().unwrap().get_or_insert(e);
        }
    });
    bar.finish_and_clear();
    if let Some(e) = first_error.into_inner().unwrap() {
        let _ = fs::remove_dir_all(&staging);
        return Err(e.context("nothing was changed in the output directory"));
    }
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.entry.node.cmp(&b.entry.node));

    // Commit: durable first, then a journal of every change, then visible. A run
    // killed after the journal is written is completed by the next run.
    let written = results.iter().filter(|r| r.staged.is_some()).count();
    let mut journal = Journal::default();
    for r in &results {
        if let Some(from) = &r.staged {
            journal.renames.push((rel(&opts.out, from)?, format!("nodes/{}.{ext}", r.entry.node)));
        }
    }
    // Without a selection the run covers the whole fleet: drop files of workers
    // that are no longer in the facts (of this format only: the other format's
    // files are another fleet's output).
    if opts.selection.is_all() {
        let keep: std::collections::HashSet<String> =
            results.iter().map(|r| format!("{}.{ext}", r.entry.node)).collect();
        let suffix = format!(".{ext}");
        for e in fs::read_dir(&nodes_dir)? {
            let name = e?.file_name().to_string_lossy().to_string();
            if name.ends_with(&suffix) && !keep.contains(&name) {
                journal.removals.push(format!("nodes/{name}"));
            }
        }
    }
    let removed = journal.removals.len();
    // The control-plane bundle is staged too, and only changed files are renamed.
    // It is always the whole fleet's, selection or not: its scripts remove what
    // they are not given (tokens, /etc/hosts lines), so a bundle of the selected
    // workers would remove every other worker's.
    let cp_staged = staging.join("control-plane");
    let fleet: Vec<&Worker> = facts.workers.iter().collect();
    crate::controlplane::write_bundle(facts, secrets, &fleet, &cp_staged)?;
    for e in fs::read_dir(&cp_staged)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        let dest = opts.out.join("control-plane").join(&name);
        if same_file_content(&e.path(), &dest) {
            continue;
        }
        journal.renames.push((format!("{STAGING}/control-plane/{name}"), format!("control-plane/{name}")));
    }
    let manifest: Vec<&ManifestEntry> = results.iter().map(|r| &r.entry).collect();
    let mut text = serde_json::to_string_pretty(&manifest)?;
    text.push('\n');
    journal.manifest = text;
    if opts.sync && !journal.renames.is_empty() {
        sync_filesystem(&staging)?;
    }
    write_atomic(&staging.join(JOURNAL), &serde_json::to_vec(&journal)?, 0o600)?;
    apply(&opts.out, &journal)?;
    Ok(Summary {
        nodes: results.len(),
        written,
        unchanged: results.len() - written,
        removed,
        bundle_workers: fleet.len(),
        recovered,
        elapsed: start.elapsed(),
    })
}

#[allow(clippy::too_many_arguments)]
fn render_one(
    facts: &Facts,
    secrets: &Secrets,
    w: &Worker,
    shared: &ClusterArtifacts,
    nodes: &Path,
    staging: &Path,
    opts: &Options,
    ext: &str,
    embedded: bool,
) -> anyhow::Result<Rendered> {
    let out = render::render_node_with(facts, secrets, w, shared)?;
    let text = if opts.ignition {
        crate::output::ignition::config(&out)?
    } else {
        crate::output::cloud_config::cloud_config_with(&out, Some(shared))
    };
    if let Some(target) = opts.target {
        crate::output::budget::check(target, &w.name, text.len(), false, None, embedded).map_err(anyhow::Error::msg)?;
    }
    let name = format!("{}.{ext}", w.name);
    let sha256 = mk8s_bootstrap::plan::sha256_hex(text.as_bytes());
    let dest = nodes.join(&name);
    let unchanged = fs::symlink_metadata(&dest).is_ok_and(|m| m.file_type().is_file())
        && fs::read(&dest).is_ok_and(|old| old == text.as_bytes());
    let staged = if unchanged {
        // Same content, but an older version or a hand's chmod may have left it
        // readable by others: the mode is set on every run.
        use std::os::unix::fs::PermissionsExt;
        if fs::metadata(&dest)?.permissions().mode() & 0o7777 != 0o600 {
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o600))?;
        }
        None
    } else {
        use std::os::unix::fs::OpenOptionsExt;
        let path = staging.join(&name);
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        f.write_all(text.as_bytes())?;
        Some(path)
    };
    let entry = ManifestEntry { node: w.name.clone(), file: format!("nodes/{name}"), sha256, size: text.len() };
    Ok(Rendered { entry, staged })
}

/// One `syncfs` for the whole batch (coreutils `sync -f`), instead of an fsync per
/// file (measured ~0.4 ms each here, which alone would exceed the time budget).
fn sync_filesystem(dir: &Path) -> anyhow::Result<()> {
    let st = std::process::Command::new("sync").arg("-f").arg(dir).status().context("cannot run sync")?;
    anyhow::ensure!(st.success(), "sync -f {} failed", dir.display());
    Ok(())
}

/// Join every worker thread; the first panic becomes an error.
fn join_workers(handles: Vec<std::thread::ScopedJoinHandle<'_, ()>>) -> Option<anyhow::Error> {
    let mut first = None;
    for h in handles {
        if let Err(panic) = h.join() {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            first.get_or_insert(anyhow::anyhow!("a worker thread panicked: {what}"));
        }
    }
    first
}

/// The progress bar: drawn on stderr only when it is a terminal (indicatif hides
/// it otherwise), at most 10 times a second.
fn progress_bar(enabled: bool, total: usize) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let target = indicatif::ProgressDrawTarget::stderr_with_hz(10);
    let style = indicatif::ProgressStyle::with_template(
        "[{bar:30}] {pos}/{len} nodes, {elapsed} elapsed, {per_sec}, {eta} left",
    )
    .expect("a valid template")
    .progress_chars("=> ");
    indicatif::ProgressBar::with_draw_target(Some(total as u64), target).with_style(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_worker_fails_the_run() {
        let e = std::thread::scope(|scope| {
            let handles = vec![scope.spawn(|| {}), scope.spawn(|| panic!("node w-7 broke")), scope.spawn(|| {})];
            join_workers(handles)
        });
        assert_eq!(e.expect("an error").to_string(), "a worker thread panicked: node w-7 broke");
        assert!(std::thread::scope(|scope| join_workers(vec![scope.spawn(|| {})])).is_none());
    }

    #[test]
    fn globs() {
        assert!(glob("worker-*", "worker-12"));
        assert!(glob("*", "anything"));
        assert!(glob("w?-*-b", "w1-x-y-b"));
        assert!(!glob("worker-?", "worker-12"));
        assert!(!glob("edge-*", "worker-1"));
        assert!(glob("", ""));
        assert!(!glob("", "x"));
    }
}
