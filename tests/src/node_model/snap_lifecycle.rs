//! snapd's `snap stop --disable`, `snap disable`, `snap enable` and `snap remove
//! [--purge]` of MicroK8s, as snapd runs them (canonical/snapd, `SD` below =
//! `overlord/snapstate`):
//! - `stop --disable`: every service stopped and disabled
//!   (overlord/servicestate/servicestate.go, action "stop" with the "disable" modifier);
//! - `disable`: stop-snap-services, remove-aliases, unlink-snap (the service units
//!   go), remove-profiles (SD/snapstate.go `Disable`); services disabled at that
//!   moment are remembered (`LastActiveDisabledServices`, SD/handlers.go
//!   `stopSnapServices`) and stay disabled when `enable` starts the others
//!   (SD/handlers.go `startSnapServices`); a disabled snap is never refreshed
//!   (SD/storehelpers.go: "refreshing disabled snap ... not supported");
//! - `remove`: stop-snap-services, the remove hook, an automatic snapshot unless
//!   `--purge`, unlink-snap, then clear-snap (the revision's `SNAP_DATA`, and for
//!   the last revision `SNAP_COMMON` and `/var/snap/NAME` itself) and discard-snap
//!   (SD/snapstate.go `removeTasks`, SD/handlers.go `doClearSnapData`).
//!
//! Deviations: the snapshot is a JSON list of what snapd would archive, not a zip;
//! the remove hook's container and iptables clean-up (1.30:snap/hooks/remove) has
//! nothing to act on here, only its file removals are modelled.

use std::fs;

use serde_json::json;

use super::state::Ctx;
use super::systemd::systemctl_quiet;

impl Ctx {
    /// `snap stop --disable`, `disable`, `enable` and `remove` of microk8s; None
    /// for any other command.
    pub(super) fn lifecycle(&mut self, a: &[&str]) -> Option<i32> {
        let code = match a {
            ["stop", "--disable", "microk8s"] if self.installed() && !self.snap_disabled() => {
                self.stop_disable_services();
                println!("Stopped.");
                0
            }
            ["disable", "microk8s"] if self.installed() => {
                self.disable_snap();
                println!("microk8s disabled");
                0
            }
            ["enable", "microk8s"] if self.installed() => {
                self.enable_snap();
                println!("microk8s enabled");
                0
            }
            ["remove", rest @ ..]
                if rest.contains(&"microk8s") && rest.iter().all(|a| matches!(*a, "microk8s" | "--purge")) =>
            {
                if self.installed() {
                    self.remove_snap(rest.contains(&"--purge"));
                    println!("microk8s removed");
                } else {
                    // errorToCmdMessage: a message, exit 0 (cmd/snapd/cli/cmd_snap_op.go `removeOne`).
                    eprintln!("snap \"microk8s\" is not installed");
                }
                0
            }
            ["refresh", rest @ ..] if self.snap_disabled() && !rest.iter().any(|a| a.ends_with("hold")) => {
                // overlord/snapstate/storehelpers.go: disabled snaps are skipped,
                // and one named is refused.
                eprintln!("error: cannot refresh \"microk8s\": refreshing disabled snap \"microk8s\" not supported");
                1
            }
            _ => return None,
        };
        Some(code)
    }

    /// `snap disable`d (until `snap enable`).
    pub(super) fn snap_disabled(&self) -> bool {
        self.state["snapDisabled"].as_bool().unwrap_or(false)
    }

    pub(super) fn stop_disable_services(&self) {
        self.event("snap stop --disable microk8s");
        for u in self.snap_units() {
            self.stop(&u);
            self.set_enabled(&u, false);
        }
    }

    pub(super) fn disable_snap(&mut self) {
        if self.snap_disabled() {
            return;
        }
        self.event("snap disable microk8s");
        let units = self.snap_units();
        let disabled: Vec<&String> = units.iter().filter(|u| !self.enabled(u)).collect();
        self.set_state("lastActiveDisabled", json!(disabled));
        for u in &units {
            self.stop(u);
        }
        self.unlink_units();
        self.set_state("snapDisabled", json!(true));
    }

    pub(super) fn enable_snap(&mut self) {
        if !self.snap_disabled() {
            return;
        }
        self.event("snap enable microk8s");
        self.set_state("snapDisabled", json!(false));
        if self.systemd() {
            self.write_snap_units();
        }
        let keep: Vec<String> = self.state["lastActiveDisabled"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        for u in self.snap_units() {
            self.set_enabled(&u, !keep.contains(&u));
            if !keep.contains(&u) {
                self.start(&u);
            }
        }
    }

    pub(super) fn remove_snap(&mut self, purge: bool) {
        self.event(&format!("snap remove{} microk8s", if purge { " --purge" } else { "" }));
        for u in self.snap_units() {
            self.stop(&u);
        }
        // 1.30:snap/hooks/remove (non-strict): the kubelite drop-ins it may have made.
        self.event("remove hook");
        let _ = fs::remove_dir_all(self.root.join("etc/systemd/system/snap.microk8s.daemon-kubelite.service.d"));
        if !purge {
            self.save_snapshot();
        }
        self.unlink_units();
        let _ = fs::remove_dir_all(self.root.join("var/snap/microk8s"));
        for u in self.snap_units() {
            let _ = fs::remove_file(self.dir.join("disabled").join(&u));
        }
        for key in ["snapDisabled", "refreshHeld", "lastActiveDisabled", "revision"] {
            self.set_state(key, serde_json::Value::Null);
        }
    }

    /// unlink-snap: the service units go (systemd mode: the files snapd wrote).
    fn unlink_units(&self) {
        if self.systemd() {
            for u in self.snap_units() {
                systemctl_quiet(&["disable", "--quiet", &u]);
                let _ = fs::remove_file(self.root.join("etc/systemd/system").join(&u));
            }
            systemctl_quiet(&["daemon-reload"]);
        }
    }

    /// The automatic snapshot of `snap remove` without `--purge`
    /// (overlord/snapshotstate: `<set id>_<snap>_<version>_<revision>.zip` in
    /// /var/lib/snapd/snapshots, kept 31 days by default).
    fn save_snapshot(&self) {
        let dir = self.root.join("var/lib/snapd/snapshots");
        let _ = fs::create_dir_all(&dir);
        let id = fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0) + 1;
        let file = dir.join(format!("{id}_microk8s_v1.{}.0_1234.zip", self.minor));
        let what = json!({"snap": "microk8s", "archives": ["$SNAP_DATA", "$SNAP_COMMON"]});
        let _ = fs::write(&file, what.to_string());
        self.event(&format!("automatic snapshot {}", file.display()));
    }
}
