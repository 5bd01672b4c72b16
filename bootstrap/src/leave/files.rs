//! Files: those of the snap's data directory the join changed, put back; ours
//! outside the snap, removed (our state directory, with the journal, last).

use std::fs;
use std::io;
use std::path::Path;

use super::Leave;
use crate::fs::write_atomic;
use crate::node::SNAP_DATA;
use crate::phases::finish::CAPI_STAMP;
use crate::plan::{JoinPlan, LoadBalancerSpec, BOOTSTRAP_PATH, PLAN_PATH, REFRESH_HOOK_PATH};
use crate::status::{STAMP_FILE, STATE_DIR};
use crate::undo::{self, UNDO_DIR};

/// Where the user-data stages our files (the plan, credentials, balancer files).
pub const STAGE_DIR: &str = "/etc/mk8s-worker";
/// The launch configuration the user-data writes for MicroK8s 1.27+'s install hook.
pub const LAUNCH_CONFIG: &str = "/etc/microk8s.yaml";
/// Where a `fetch` delivery writes its script (`fetch-bootstrap`), which downloads
/// the agent to [`BOOTSTRAP_PATH`].
pub const FETCH_DIR: &str = "/usr/local/lib/mk8s-worker";

pub use crate::node::SNAP_COMMON;
/// Where an `auth: x509` kubelet keeps the certificates it rotates: the
/// plan's `--cert-dir=${SNAP_COMMON}/...` (MicroK8s's own is `${SNAP_DATA}/certs`),
/// this one when the plan is gone.
pub const ROTATED_STORE: &str = "var/lib/kubelet/pki";

/// The kubelet's rotated client and serving certificates and keys (and the
/// serving pair the join seeded), which exist only because our `--cert-dir` line
/// sent the kubelet there.
pub fn remove_rotated_store(cx: &mut Leave) {
    let rel = match &cx.plan {
        Some(p) => p.kubelet_args.iter().find_map(|l| l.strip_prefix("--cert-dir=${SNAP_COMMON}/")).map(str::to_string),
        None => Some(ROTATED_STORE.to_string()),
    };
    let Some(rel) = rel.filter(|r| !r.split('/').any(|c| c.is_empty() || c == "." || c == "..")) else { return };
    let dir = format!("{SNAP_COMMON}/{rel}");
    match remove_tree(&cx.node.path(&dir)) {
        Ok(true) => cx.did(format!("removed {dir}/ (the kubelet's rotated client and serving certificates)")),
        Ok(false) => {}
        Err(e) => return cx.fail(format!("cannot remove {dir}/: {e}")),
    }
    // Its parents, only where that leaves them empty: the join's seed of the
    // serving pair may have made them before the kubelet ever ran; once it ran,
    // its `--root-dir` (`${SNAP_COMMON}/var/lib/kubelet`) holds its own files and stays.
    let mut parent = Path::new(&dir).parent();
    while let Some(p) = parent.filter(|p| p.starts_with(SNAP_COMMON) && *p != Path::new(SNAP_COMMON)) {
        if fs::remove_dir(cx.node.path(&p.to_string_lossy())).is_err() {
            break;
        }
        parent = p.parent();
    }
}

/// The snap's data directory as the snap left it: every journal record put back.
/// A node joined before the journal existed gets the best the plan allows.
pub fn restore_snap_data(cx: &mut Leave) {
    if !cx.node.path(SNAP_DATA).is_dir() {
        return;
    }
    if !cx.node.path(UNDO_DIR).exists() {
        // The join records before its first change of the snap's data: without a
        // journal and without a completed join, nothing there is ours.
        if let (Some(plan), true) = (cx.plan.clone(), cx.node.path(STAMP_FILE).exists()) {
            without_journal(cx, &plan);
        }
        return;
    }
    let entries = match undo::entries(cx.node) {
        Ok(e) => e,
        Err(e) => return cx.fail(format!("cannot read the undo journal {UNDO_DIR}: {e}")),
    };
    for (rel, original) in entries {
        let verb = match original {
            undo::Original::Present(..) => "put back",
            undo::Original::Absent => "removed",
        };
        match undo::restore(cx.node, &rel, &original) {
            Ok(true) => cx.did(format!("{verb} $SNAP_DATA/{rel} (as the snap had it before the join)")),
            Ok(false) => {}
            Err(e) => cx.fail(format!("cannot restore $SNAP_DATA/{rel}: {e}")),
        }
    }
}

/// No journal, a completed join (by an agent older than the journal): the install
/// hook's kubeconfigs back from `.backup` (removed when there is none), the plan's
/// other files removed, the plan's lines taken out of the args files. The locks stay: whether the snap or the join made them is
/// not known, and they only keep a control plane off.
fn without_journal(cx: &mut Leave, plan: &JoinPlan) {
    for f in &plan.install {
        let target = cx.node.snap_data(&f.target);
        let backup = cx.node.snap_data(&format!("{}.backup", f.target));
        let r = match fs::read(&backup) {
            Ok(original) => put_back_backup(&target, &backup, &original),
            Err(_) => remove(&target),
        };
        match r {
            Ok(true) => cx.did(format!("undid $SNAP_DATA/{} (no journal: from the plan)", f.target)),
            Ok(false) => {}
            Err(e) => cx.fail(format!("cannot undo $SNAP_DATA/{}: {e}", f.target)),
        }
    }
    for (file, ours) in [("args/kubelet", &plan.kubelet_args), ("args/kube-proxy", &plan.kube_proxy_args)] {
        let p = cx.node.snap_data(file);
        let Ok(text) = fs::read_to_string(&p) else { continue };
        let kept: Vec<&str> = text.lines().filter(|l| !ours.iter().any(|o| o == l)).collect();
        if kept.len() == text.lines().count() {
            continue;
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&p).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o660);
        match write_atomic(&p, (kept.join("\n") + "\n").as_bytes(), mode) {
            Ok(_) => cx.did(format!("took our lines out of $SNAP_DATA/{file} (no journal: from the plan)")),
            Err(e) => cx.fail(format!("cannot rewrite $SNAP_DATA/{file}: {e}")),
        }
    }
}

fn put_back_backup(target: &Path, backup: &Path, original: &[u8]) -> io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(backup)?.permissions().mode() & 0o7777;
    write_atomic(target, original, mode)?;
    fs::remove_file(backup)?;
    Ok(true)
}

/// Remove a file; whether it was there.
fn remove(p: &Path) -> io::Result<bool> {
    match fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Remove a directory and everything in it; whether it was there.
fn remove_tree(p: &Path) -> io::Result<bool> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Our files outside the snap. The agent's own binary goes only when our fetch
/// script downloaded it (an image that bakes it keeps it); a balancer program
/// only when the plan fetched it.
pub fn remove_ours(cx: &mut Leave) {
    let mut files: Vec<String> = vec![LAUNCH_CONFIG.into(), CAPI_STAMP.into(), REFRESH_HOOK_PATH.into()];
    if let Some(LoadBalancerSpec::Traefik { binary, .. }) = cx.plan.as_ref().map(|p| &p.load_balancer) {
        if binary.fetch.is_some() {
            files.push(binary.path.clone());
        }
    }
    if cx.node.path(FETCH_DIR).join("fetch-bootstrap").exists() {
        files.push(BOOTSTRAP_PATH.into());
    }
    for f in files {
        match remove(&cx.node.path(&f)) {
            Ok(true) => cx.did(format!("removed {f}")),
            Ok(false) => {}
            Err(e) => cx.fail(format!("cannot remove {f}: {e}")),
        }
    }
    // The Cluster API stamp's directory, when nothing else is in it; the hook's
    // directories likewise (MicroK8s's install hook puts its own default hooks
    // there, 1.25+ `snap/hooks/install` L97: emptied only where ours made them).
    let hook_dir = Path::new(REFRESH_HOOK_PATH).parent();
    for dir in [Path::new(CAPI_STAMP).parent(), hook_dir, hook_dir.and_then(Path::parent)].into_iter().flatten() {
        let _ = fs::remove_dir(cx.node.path(&dir.to_string_lossy()));
    }
    if !cx.failed.is_empty() {
        // A rerun needs the plan and the journal to finish the job.
        cx.say(&format!("kept {STAGE_DIR}/ and {STATE_DIR}/ for the rerun: a step failed"));
        return;
    }
    // The plan's directory, the fetch script, then our state (the journal) last.
    let dirs = [
        (STAGE_DIR, "the plan and the staged files"),
        (FETCH_DIR, "the fetch script"),
        (STATE_DIR, "status, stamp and undo journal"),
    ];
    for (dir, what) in dirs {
        match remove_tree(&cx.node.path(dir)) {
            Ok(true) => cx.did(format!("removed {dir}/ ({what})")),
            Ok(false) => {}
            Err(e) => cx.fail(format!("cannot remove {dir}/: {e}")),
        }
    }
    debug_assert!(PLAN_PATH.starts_with(STAGE_DIR));
}
