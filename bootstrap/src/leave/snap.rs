//! MicroK8s's snap: its services stopped and disabled, then the snap disabled; or,
//! with `--purge`, the snap removed. Only snapd's own commands: nothing of
//! MicroK8s's (`microk8s leave`, `microk8s stop`) runs.

use super::Leave;

/// What `snap list microk8s` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    No,
    /// Installed and active (its services may run).
    Active,
    /// `snap disable`d: no service, no hook, no refresh until `snap enable`
    /// (snapd `snap list` Notes "disabled", cmd/snapd/cli/notes.go).
    Disabled,
}

/// The Notes column of `snap list microk8s`
/// (`Name  Version  Rev  Tracking  Publisher  Notes`).
pub fn installed_from(list: &str) -> Installed {
    let Some(line) = list.lines().find(|l| l.starts_with("microk8s ")) else { return Installed::No };
    let notes = line.split_whitespace().nth(5).unwrap_or("-");
    if notes.split(',').any(|n| n == "disabled") {
        Installed::Disabled
    } else {
        Installed::Active
    }
}

/// `snap list microk8s`; None (a failed step) when snapd does not answer: a
/// snapd that is down is no evidence that MicroK8s is gone.
fn installed(cx: &mut Leave) -> Option<Installed> {
    match cx.node.snap(&["list", "microk8s"]) {
        Ok(r) if r.ok => Some(installed_from(&r.output)),
        // snapd's answer for a snap that is not installed, exit 1 (cmd/snapd/cli/cmd_list.go
        // `ErrNoMatchingSnaps`; translated outside the C locale systemd gives units).
        Ok(r) if r.output.contains("no matching snaps installed") => Some(Installed::No),
        Ok(r) => {
            cx.fail(format!("snap list microk8s: {}", r.output));
            None
        }
        Err(e) => {
            cx.fail(format!("snap list microk8s: {e}"));
            None
        }
    }
}

/// Stop MicroK8s: `snap remove --purge microk8s` with `--purge`, else
/// `snap stop --disable microk8s` (every service stopped and disabled: a reboot
/// starts none). What is installed afterwards (None: `snap` could not tell).
pub fn stop(cx: &mut Leave) -> Option<Installed> {
    let state = installed(cx)?;
    match (state, cx.purge) {
        (Installed::No, _) => Some(Installed::No),
        (_, true) => {
            if snap(cx, &["remove", "--purge", "microk8s"]) {
                cx.did("removed the microk8s snap and its data (snap remove --purge: no snapshot kept)".into());
                Some(Installed::No)
            } else {
                Some(state)
            }
        }
        (Installed::Disabled, false) => Some(state),
        (Installed::Active, false) => {
            if snap(cx, &["stop", "--disable", "microk8s"]) {
                cx.did("stopped and disabled every microk8s service (snap stop --disable microk8s)".into());
            }
            Some(state)
        }
    }
}

/// `snap disable microk8s`: no hook and no refresh runs while it is disabled
/// (snapd skips disabled snaps in refreshes, overlord/snapstate/storehelpers.go),
/// so not even MicroK8s's configure hook, which restarts apiserver-proxy whether
/// it is enabled or not, brings a piece of the worker back.
pub fn disable(cx: &mut Leave) {
    if snap(cx, &["disable", "microk8s"]) {
        cx.did("disabled the microk8s snap (snap enable microk8s starts nothing: its services stay disabled)".into());
    }
}

fn snap(cx: &mut Leave, args: &[&str]) -> bool {
    match cx.node.snap(args) {
        Ok(r) if r.ok => true,
        Ok(r) => {
            cx.fail(format!("snap {}: {}", args.join(" "), r.output));
            false
        }
        Err(e) => {
            cx.fail(format!("snap {}: {e}", args.join(" ")));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snap_list_notes() {
        let head = "Name      Version  Rev   Tracking     Publisher   Notes\n";
        assert_eq!(installed_from(""), Installed::No);
        let active = format!("{head}microk8s  v1.30.0  6876  1.30/stable  canonical✓  classic\n");
        assert_eq!(installed_from(&active), Installed::Active);
        let disabled = format!("{head}microk8s  v1.30.0  6876  1.30/stable  canonical✓  disabled,classic\n");
        assert_eq!(installed_from(&disabled), Installed::Disabled);
        let other = format!("{head}microk8s-x  v1  1  -  me  disabled\n");
        assert_eq!(installed_from(&other), Installed::No);
    }
}
