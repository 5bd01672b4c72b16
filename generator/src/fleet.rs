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
use crate::output::{Emitter, OutputFormat};
use crate::render::{self, ClusterArtifacts, Delivery};
use crate::secrets::Secrets;
use crate::util::{write_atomic, write_output};

const STAGING: &str = ".staging";
/// The output directory's lock file.
const LOCK: &str = ".lock";
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

/// What would make a rename or removal of the commit fail, found before the journal
/// is written: a target that is a directory, a parent that is not one. A journal
/// that cannot be applied would fail every later run, which applies it first.
fn check_commit(out: &Path, j: &Journal) -> anyhow::Result<()> {
    let manifest = "manifest.json".to_string();
    let targets = j.renames.iter().map(|(_, to)| to).chain(&j.removals).chain(std::iter::once(&manifest));
    let mut problems = Vec::new();
    for t in targets {
        let p = out.join(t);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => problems.push(format!("{} is a directory", p.display())),
            _ => {}
        }
        if let Some(parent) = p.parent() {
            if !parent.is_dir() {
                problems.push(format!("{} is not a directory", parent.display()));
            }
        }
    }
    problems.dedup();
    anyhow::ensure!(
        problems.is_empty(),
        "cannot commit into {} (nothing was changed): {}",
        out.display(),
        problems.join("; ")
    );
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
    /// Files of the control-plane bundle that are new or changed.
    pub bundle_changed: usize,
    /// A commit left unfinished by a killed run was completed first.
    pub recovered: bool,
    /// Nothing was written: the counts say what a run would do.
    pub dry_run: bool,
    pub elapsed: Duration,
}

pub struct Options {
    pub out: PathBuf,
    /// Render and compare, write nothing.
    pub dry_run: bool,
    /// The user-data format.
    pub format: &'static dyn OutputFormat,
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
    /// The content differs from the file in `nodes/` (or there is none).
    changed: bool,
    /// Where the new content waits (None: unchanged, or a dry run).
    staged: Option<PathBuf>,
}

pub fn run(facts: &Facts, secrets: &Secrets, delivery: &Delivery, opts: &Options) -> anyhow::Result<Summary> {
    let start = Instant::now();
    let workers: Vec<&Worker> = facts.workers.iter().filter(|w| opts.selection.matches(w)).collect();
    anyhow::ensure!(!workers.is_empty(), "no worker matches the selection");
    anyhow::ensure!((1..=MAX_THREADS).contains(&opts.threads), "threads must be 1 to {MAX_THREADS}");
    let cluster = ClusterArtifacts::new(facts, delivery)?;
    let cluster = if opts.baked { cluster.baked() } else { cluster };
    let emitter = opts.format.prepare(&cluster);
    let job = Job {
        facts,
        secrets,
        cluster: &cluster,
        emitter: emitter.as_ref(),
        nodes: opts.out.join("nodes"),
        opts,
        embedded: matches!(delivery, Delivery::Embedded { .. }),
    };
    if opts.dry_run {
        return dry_run(&job, &workers, start);
    }
    let (_lock, recovered) = prepare_dirs(&opts.out)?;
    let staging = opts.out.join(STAGING);
    let mut results = render_all(&job, &workers, Some(&staging))?;
    results.sort_by(|a, b| a.entry.node.cmp(&b.entry.node));

    // Commit: durable first, then a journal of every change, then visible. A run
    // killed after the journal is written is completed by the next run.
    let mut journal = Journal::default();
    let ext = opts.format.extension();
    for r in &results {
        if let Some(from) = &r.staged {
            journal.renames.push((rel(&opts.out, from)?, format!("nodes/{}.{ext}", r.entry.node)));
        }
    }
    if opts.selection.is_all() {
        stale_nodes(&mut journal, &results, &job.nodes, ext)?;
    }
    let removed = journal.removals.len();
    let renames = journal.renames.len();
    let bundle_workers = stage_bundle(&mut journal, facts, secrets, &staging.join("control-plane"), &opts.out)?;
    let bundle_changed = journal.renames.len() - renames;
    let manifest: Vec<&ManifestEntry> = results.iter().map(|r| &r.entry).collect();
    journal.manifest = serde_json::to_string_pretty(&manifest)? + "\n";
    if opts.sync && !journal.renames.is_empty() {
        sync_filesystem(&staging)?;
    }
    if let Err(e) = check_commit(&opts.out, &journal) {
        // Nothing was journalled or renamed: the output stays as it was, and no
        // later run inherits a commit that cannot be finished.
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    write_atomic(&staging.join(JOURNAL), &serde_json::to_vec(&journal)?, 0o600)?;
    apply(&opts.out, &journal)?;
    let written = results.iter().filter(|r| r.staged.is_some()).count();
    Ok(Summary {
        nodes: results.len(),
        written,
        unchanged: results.len() - written,
        removed,
        bundle_workers,
        bundle_changed,
        recovered,
        dry_run: false,
        elapsed: start.elapsed(),
    })
}

/// `--dry-run`: every node rendered and compared with `nodes/`, the bundle written
/// outside the output directory and compared with `control-plane/`; nothing in the
/// output directory is created, changed or locked.
fn dry_run(job: &Job, workers: &[&Worker], start: Instant) -> anyhow::Result<Summary> {
    let results = render_all(job, workers, None)?;
    let mut journal = Journal::default();
    if job.opts.selection.is_all() && job.nodes.is_dir() {
        stale_nodes(&mut journal, &results, &job.nodes, job.opts.format.extension())?;
    }
    let removed = journal.removals.len();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let scratch = std::env::temp_dir().join(format!("mk8s-gen-dry-run-{}-{nanos}", std::process::id()));
    let bundle = stage_bundle(&mut journal, job.facts, job.secrets, &scratch, &job.opts.out);
    let _ = fs::remove_dir_all(&scratch);
    let bundle_workers = bundle?;
    let written = results.iter().filter(|r| r.changed).count();
    Ok(Summary {
        nodes: results.len(),
        written,
        unchanged: results.len() - written,
        removed,
        bundle_workers,
        bundle_changed: journal.renames.len(),
        recovered: false,
        dry_run: true,
        elapsed: start.elapsed(),
    })
}

/// The output directory's layout, and an empty staging directory. Directories of
/// ours, never symlinks (the run deletes files in them), with modes set whatever
/// the umask: nodes/ and control-plane/ hold credentials and a script run as root.
/// A run killed while committing left a journal: its commit is finished first
/// (true when there was one). Any other staging directory left by a killed run
/// holds nothing we need.
/// Returns the output directory's lock, held until the run ends: two runs on one
/// output would interleave their commits.
fn prepare_dirs(out: &Path) -> anyhow::Result<(fs::File, bool)> {
    let staging = out.join(STAGING);
    crate::util::ensure_dir(out, 0o755, false)?;
    let lock = lock_output(out)?;
    for d in [&out.join("nodes"), &out.join("control-plane"), &staging] {
        crate::util::ensure_dir(d, 0o700, true)?;
    }
    let recovered = finish_commit(out)?;
    let _ = fs::remove_dir_all(&staging);
    crate::util::ensure_dir(&staging, 0o700, true)?;
    Ok((lock, recovered))
}

/// An exclusive lock on `OUT/.lock` (flock: released by the kernel when the
/// process ends, however it ends); a second run fails at once instead of waiting.
fn lock_output(out: &Path) -> anyhow::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = out.join(LOCK);
    if fs::symlink_metadata(&path).is_ok_and(|m| !m.file_type().is_file()) {
        anyhow::bail!("{} is not a regular file; remove it", path.display());
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => {
            anyhow::bail!("another mk8s-gen fleet is writing {} (it holds {LOCK}); nothing was changed", out.display())
        }
        Err(fs::TryLockError::Error(e)) => {
            Err(anyhow::Error::new(e).context(format!("cannot lock {}", path.display())))
        }
    }
}

/// What every node's rendering reads.
struct Job<'a> {
    facts: &'a Facts,
    secrets: &'a Secrets,
    cluster: &'a ClusterArtifacts,
    emitter: &'a dyn Emitter,
    /// The `nodes/` directory, whose files are compared with the new content.
    nodes: PathBuf,
    opts: &'a Options,
    embedded: bool,
}

/// Render every node on every core; write only what changed, into staging. On an
/// error nothing in the output directory has changed, and staging is removed.
fn render_all(job: &Job, workers: &[&Worker], staging: Option<&Path>) -> anyhow::Result<Vec<Rendered>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Rendered>> = Mutex::new(Vec::with_capacity(workers.len()));
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let fail = |e: anyhow::Error| {
        failed.store(true, Ordering::Relaxed);
        first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
    };
    // indicatif draws only when stderr is a terminal, from whichever thread ticks it;
    // it takes the stderr lock per draw, so nobody may hold that lock for the run.
    let bar = progress_bar(job.opts.progress, workers.len());
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for t in 0..job.opts.threads {
            // One staging directory per thread: creating files in one directory
            // from several threads serializes on its lock (measured: most of the
            // run spent spinning in the kernel).
            let my_staging = staging.map(|s| s.join(t.to_string()));
            let (next, failed, results, bar, fail) = (&next, &failed, &results, &bar, &fail);
            let work = move || {
                if let Some(Err(e)) = my_staging.as_ref().map(fs::create_dir_all) {
                    return fail(e.into());
                }
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= workers.len() || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    match render_one(job, workers[i], my_staging.as_deref()) {
                        Ok(r) => mine.push(r),
                        Err(e) => return fail(e),
                    }
                    bar.inc(1);
                }
                results.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            };
            // A thread the system refuses fails the run (the threads started stop at
            // the next node), instead of a panic.
            match std::thread::Builder::new().spawn_scoped(scope, work) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    fail(anyhow::Error::new(e).context("cannot start a worker thread"));
                    break;
                }
            }
        }
        // A panicking worker thread must fail the run, never pass for "no nodes"
        // (whose files a full run would then delete as stale).
        if let Some(e) = join_workers(handles) {
            fail(e);
        }
    });
    bar.finish_and_clear();
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        if let Some(staging) = staging {
            let _ = fs::remove_dir_all(staging);
        }
        return Err(e.context("nothing was changed in the output directory"));
    }
    Ok(results.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Without a selection the run covers the whole fleet: drop files of workers that
/// are no longer in the facts (of this format only: the other format's files are
/// another fleet's output).
fn stale_nodes(journal: &mut Journal, results: &[Rendered], nodes: &Path, ext: &str) -> anyhow::Result<()> {
    let keep: std::collections::HashSet<String> = results.iter().map(|r| format!("{}.{ext}", r.entry.node)).collect();
    let suffix = format!(".{ext}");
    for e in fs::read_dir(nodes)? {
        let name = e?.file_name().to_string_lossy().to_string();
        if name.ends_with(&suffix) && !keep.contains(&name) {
            journal.removals.push(format!("nodes/{name}"));
        }
    }
    Ok(())
}

/// The control-plane bundle is staged too, and only changed files are renamed. It
/// is always the whole fleet's, selection or not: its scripts remove what they are
/// not given (tokens, /etc/hosts lines), so a bundle of the selected workers would
/// remove every other worker's. Returns how many workers it covers.
fn stage_bundle(
    journal: &mut Journal,
    facts: &Facts,
    secrets: &Secrets,
    cp_staged: &Path,
    out: &Path,
) -> anyhow::Result<usize> {
    let fleet: Vec<&Worker> = facts.workers.iter().collect();
    crate::controlplane::write_bundle(facts, secrets, &fleet, cp_staged)?;
    for e in fs::read_dir(cp_staged)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if same_file_content(&e.path(), &out.join("control-plane").join(&name)) {
            continue;
        }
        journal.renames.push((format!("{STAGING}/control-plane/{name}"), format!("control-plane/{name}")));
    }
    Ok(fleet.len())
}

/// One node: rendered, checked against the platform's limit, and written into
/// `staging` (none: a dry run) when it differs from the file in `nodes/`.
fn render_one(job: &Job, w: &Worker, staging: Option<&Path>) -> anyhow::Result<Rendered> {
    let out = render::render_node_with(job.facts, job.secrets, w, job.cluster)?;
    let text = job.emitter.emit(&out)?;
    if let Some(target) = job.opts.target {
        crate::output::budget::check(target, &w.name, text.len(), false, None, job.embedded)
            .map_err(anyhow::Error::msg)?;
    }
    let name = format!("{}.{}", w.name, job.opts.format.extension());
    let sha256 = mk8s_bootstrap::plan::sha256_hex(text.as_bytes());
    let dest = job.nodes.join(&name);
    let unchanged = fs::symlink_metadata(&dest).is_ok_and(|m| m.file_type().is_file())
        && fs::read(&dest).is_ok_and(|old| old == text.as_bytes());
    let staged = if unchanged || staging.is_none() {
        // Same content, but an older version or a hand's chmod may have left it
        // readable by others: the mode is set on every run.
        use std::os::unix::fs::PermissionsExt;
        if unchanged && staging.is_some() && fs::metadata(&dest)?.permissions().mode() & 0o7777 != 0o600 {
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o600))?;
        }
        None
    } else {
        use std::os::unix::fs::OpenOptionsExt;
        let path = staging.map(|s| s.join(&name)).unwrap_or_default();
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        f.write_all(text.as_bytes())?;
        Some(path)
    };
    let entry = ManifestEntry { node: w.name.clone(), file: format!("nodes/{name}"), sha256, size: text.len() };
    Ok(Rendered { entry, changed: !unchanged, staged })
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
