//! The `snap` phase: MicroK8s at the plan's channel, from the store or, air-gapped,
//! from the local snap (and its base) the image carries.

use super::cx::{PhaseCx, StepError, StepResult};
use crate::phases::retry::retry;
use crate::plan::{JoinPlan, LocalSnap};
use crate::retry::Failure;

pub const NAME: &str = "snap";

pub fn run(cx: &mut dyn PhaseCx, plan: &JoinPlan) -> StepResult {
    let node = cx.node().clone();
    if let Some(r) = node.snap(&["list", "microk8s"]).ok().filter(|r| r.ok) {
        check_installed(cx, plan, &r.output)?;
        hold_refresh(cx, plan);
        return refresh_hook(cx, plan);
    }
    // snapd must have finished seeding on a fresh image before installs work.
    if let Ok(r) = node.snap(&["wait", "system", "seed.loaded"]) {
        if !r.ok {
            cx.log(NAME, &format!("snap wait system seed.loaded: {}", r.output));
        }
    }
    match &plan.microk8s.local_snap {
        Some(local) => install_local(cx, plan, local)?,
        None => install_from_store(cx, plan)?,
    }
    cx.log(NAME, "microk8s installed");
    hold_refresh(cx, plan);
    refresh_hook(cx, plan)
}

/// MicroK8s 1.25+: our post-refresh hook, once the snap (and its install hook's
/// default hooks) are there (see [`crate::plan::REFRESH_HOOK_PATH`]).
fn refresh_hook(cx: &mut dyn PhaseCx, plan: &JoinPlan) -> StepResult {
    if super::planned::install_refresh_hook(cx.node(), plan)? {
        cx.log(NAME, &format!("wrote {}", crate::plan::REFRESH_HOOK_PATH));
    }
    Ok(())
}

/// `refresh: hold` in the facts: snapd refreshes MicroK8s only when told to
/// (`snap refresh --hold`, snapd 2.58+; without a time, until it is unheld), so a
/// new release never lands on a worker unannounced. On every run that gets here
/// (a hold lifted by hand comes back with the next join). A snapd too old to hold
/// is said, not fatal.
fn hold_refresh(cx: &mut dyn PhaseCx, plan: &JoinPlan) {
    if !plan.microk8s.hold_refresh {
        return;
    }
    let said = match cx.node().snap(&["refresh", "--hold", "microk8s"]) {
        Ok(r) if r.ok => {
            "automatic refreshes of microk8s are held (snap refresh --unhold microk8s lifts it)".to_string()
        }
        Ok(r) => format!(
            "warning: cannot hold microk8s's refreshes (snapd 2.58+ holds one snap), so snapd may refresh it: {}",
            r.output.trim()
        ),
        Err(e) => format!("warning: cannot hold microk8s's refreshes: {e}"),
    };
    cx.log(NAME, &said);
}

/// An installed MicroK8s is kept only when it tracks the plan's version.
fn check_installed(cx: &mut dyn PhaseCx, plan: &JoinPlan, list: &str) -> StepResult {
    let tracking = tracking_of(list);
    let want = track(&plan.microk8s.channel);
    match tracking.as_deref() {
        // Installed from a local file: no channel to compare.
        None | Some("-") => {}
        Some(t) if plan.microk8s.local_snap.is_some() || track(t) == want => {}
        Some(t) => {
            return Err(StepError::Fatal(format!(
                "microk8s is already installed here, tracking {t}, but the plan is for {}: refusing to \
                 change a MicroK8s of another version (it may hold a control plane's data). Remove it \
                 (snap remove --purge microk8s) or generate the user-data for channel {t}",
                plan.microk8s.channel
            )))
        }
    }
    cx.log(NAME, &format!("microk8s is installed (tracking {})", tracking.as_deref().unwrap_or("?")));
    Ok(())
}

fn install_local(cx: &mut dyn PhaseCx, plan: &JoinPlan, local: &LocalSnap) -> StepResult {
    let node = cx.node().clone();
    let mut snaps = Vec::new();
    if let Some(base) = &local.base {
        // snapd cannot fetch a missing base without the store (canonical/snapd
        // tests/main/base-snaps: a snap whose base is unavailable does not
        // install), so the base goes first, unless the image has it.
        let name = base.file.rsplit('/').next().unwrap_or("").split('_').next().unwrap_or("").to_string();
        let has = node.snap(&["list", &name]).map(|r| r.ok).unwrap_or(false);
        if has {
            cx.log(NAME, &format!("the base snap {name} is installed"));
        } else {
            snaps.push((base.file.as_str(), base.assert.as_str(), false));
        }
    }
    snaps.push((local.file.as_str(), local.assert.as_str(), true));
    for (file, assert, _) in &snaps {
        if !node.path(file).exists() || !node.path(assert).exists() {
            return Err(StepError::Fatal(format!(
                "air-gapped install: {file} or {assert} is not on this node; bake them into the image or copy them before boot"
            )));
        }
    }
    for (file, assert, classic) in snaps {
        let (path, apath) = (node.path(file).display().to_string(), node.path(assert).display().to_string());
        cx.log(NAME, &format!("installing {file}"));
        retry(cx, NAME, plan, |_| {
            let ack = node.snap(&["ack", &apath]).map_err(|e| Failure::Retry(e.to_string()))?;
            if !ack.ok {
                return Err(Failure::Retry(format!("snap ack {apath} failed: {}", ack.output)));
            }
            let mut args = vec!["install", path.as_str()];
            if classic {
                args.push("--classic");
            }
            let r = node.snap(&args).map_err(|e| Failure::Retry(e.to_string()))?;
            if r.ok {
                Ok(())
            } else {
                Err(Failure::Retry(format!("snap install {path} failed: {}", r.output)))
            }
        })?;
    }
    Ok(())
}

fn install_from_store(cx: &mut dyn PhaseCx, plan: &JoinPlan) -> StepResult {
    let node = cx.node().clone();
    let channel = plan.microk8s.channel.clone();
    cx.log(NAME, &format!("installing microk8s from channel {channel}"));
    retry(cx, NAME, plan, |_| {
        let r = node
            .snap(&["install", "microk8s", "--classic", "--channel", &channel])
            .map_err(|e| Failure::Retry(e.to_string()))?;
        if r.ok || r.output.contains("already installed") {
            Ok(())
        } else {
            Err(Failure::Retry(format!("snap install microk8s failed: {}", r.output)))
        }
    })
}

/// The track of a channel or a tracking column: `1.30/stable` -> `1.30`.
fn track(channel: &str) -> &str {
    channel.split('/').next().unwrap_or(channel)
}

/// The Tracking column of `snap list microk8s`
/// (`Name  Version  Rev  Tracking  Publisher  Notes`).
pub(crate) fn tracking_of(list: &str) -> Option<String> {
    let line = list.lines().find(|l| l.starts_with("microk8s "))?;
    line.split_whitespace().nth(3).map(str::to_string)
}
