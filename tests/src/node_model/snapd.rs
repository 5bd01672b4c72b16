//! snapd: `snap`, `snapctl`, the units it writes, a refresh and a reboot.

use std::fs;
use std::path::Path;

use super::state::Ctx;
use super::systemd::{snap_unit, systemctl_quiet};
use super::versions::{minor_of, Row};
use super::SNAP_DATA;

impl Ctx {
    pub(super) fn snap(&mut self, args: &[String]) -> i32 {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Some(code) = self.lifecycle(&a) {
            return code;
        }
        match a.as_slice() {
            ["list", ..] => {
                if self.installed() {
                    // Notes: "disabled" before "classic" (snapd cmd/snapd/cli/notes.go `String`).
                    let notes = if self.snap_disabled() { "disabled,classic" } else { "classic" };
                    println!("Name      Version  Rev   Tracking       Publisher   Notes");
                    println!(
                        "microk8s  v1.{}.0  {}  {}  canonical✓  {notes}",
                        self.minor,
                        self.revision(),
                        self.s("channel")
                    );
                    0
                } else {
                    eprintln!("error: no matching snaps installed");
                    1
                }
            }
            ["wait", ..] => 0,
            ["ack", file] => {
                if Path::new(file).exists() {
                    0
                } else {
                    eprintln!("error: cannot read assertion file: {file}");
                    1
                }
            }
            ["install", what, rest @ ..] => {
                if *what != "microk8s" && !what.ends_with(".snap") {
                    eprintln!("error: snap {what:?} not found");
                    return 1;
                }
                if let Some(i) = rest.iter().position(|r| *r == "--channel") {
                    let want = rest.get(i + 1).copied().unwrap_or("");
                    if want != self.s("channel") {
                        eprintln!("mk8s-node-model: this node models {}, not {want}", self.s("channel"));
                        return 1;
                    }
                }
                if self.installed() {
                    println!("snap \"microk8s\" is already installed, see 'snap help refresh'");
                    return 0;
                }
                self.install();
                println!("microk8s ({}) v1.{}.0 from Canonical✓ installed", self.s("channel"), self.minor);
                0
            }
            // snapd 2.58+: `--hold` without a time holds the snap's automatic
            // refreshes until `--unhold` (a `snap refresh NAME` still refreshes).
            ["refresh", "--hold", "microk8s"] if self.installed() => {
                self.set_state("refreshHeld", serde_json::json!(true));
                self.event("snap refresh --hold microk8s");
                println!("General refreshes of \"microk8s\" held indefinitely");
                0
            }
            ["refresh", "--unhold", "microk8s"] => {
                self.set_state("refreshHeld", serde_json::json!(false));
                0
            }
            ["refresh", "microk8s", f] if f.starts_with("--channel=") && self.installed() => self.refresh_to(&f[10..]),
            ["refresh", flag, ..] if flag.starts_with("--") => {
                eprintln!("mk8s-node-model: snap refresh {flag} is not modelled");
                1
            }
            ["refresh", ..] => {
                self.refresh();
                0
            }
            _ => {
                eprintln!("mk8s-node-model: snap {args:?} is not modelled");
                1
            }
        }
    }

    /// `snapctl restart microk8s.daemon-X` (from a hook): a restart by name starts
    /// even a disabled unit (snapd `restartServicesByStatus`, F5).
    pub(super) fn snapctl(&self, args: &[String]) -> i32 {
        match (args.first().map(String::as_str), args.get(1)) {
            (Some(verb @ ("restart" | "start" | "stop")), Some(name)) => {
                let unit = format!("snap.{name}.service");
                if !self.known(&unit) {
                    eprintln!("error: unknown service: \"{name}\"");
                    return 1;
                }
                if verb != "start" {
                    self.stop(&unit);
                }
                if verb != "stop" {
                    self.start(&unit);
                }
                0
            }
            _ => {
                eprintln!("mk8s-node-model: snapctl {args:?} is not modelled");
                1
            }
        }
    }

    /// The units snapd writes for the snap's daemons (systemd mode), then
    /// `systemctl daemon-reload` and `enable` (snapd enables every service at install).
    pub(super) fn write_snap_units(&self) {
        let units = self.snap_units();
        for unit in &units {
            let app = unit.trim_start_matches("snap.").trim_end_matches(".service");
            let text = format!(
                "[Unit]\n# Written by mk8s-node-model's `snap install` in the shape snapd writes.\nDescription=Service for snap application {app}\nWants=network.target\nAfter=network.target\nX-Snappy=yes\n\n[Service]\nExecStart={} --state {} daemon {unit}\nSyslogIdentifier={app}\nRestart=on-failure\nWorkingDirectory=/{SNAP_DATA}\nTimeoutStopSec=30\nType=simple\n\n[Install]\nWantedBy=multi-user.target\n",
                self.bin.display(),
                self.dir.display()
            );
            fs::write(self.root.join("etc/systemd/system").join(unit), text).unwrap();
        }
        systemctl_quiet(&["daemon-reload"]);
        let mut args = vec!["enable", "--quiet"];
        args.extend(units.iter().map(String::as_str));
        systemctl_quiet(&args);
    }

    /// `service("restart", name)`: `snapctl restart microk8s.daemon-NAME`, which
    /// starts even a disabled unit (1.30:CU30:L371-383; 1.24:scripts/cluster/common/utils.py:L308-326).
    pub(super) fn restart_service(&self, daemon: &str) {
        let unit = snap_unit(daemon);
        if self.known(&unit) {
            self.append("calls.log", &format!("snapctl restart microk8s.daemon-{daemon}"));
            self.stop(&unit);
            self.start(&unit);
        }
    }

    /// `snap refresh microk8s --channel=1.N/RISK`: to another channel, even when
    /// held (an explicit refresh is not an automatic one). Modelled within one row
    /// of the behaviour table (what a refresh across rows changes in the hooks is
    /// not); the services restart as in any refresh.
    fn refresh_to(&mut self, want: &str) -> i32 {
        let (row, minor) = (Row::of(want), minor_of(want));
        if !std::ptr::eq(row, self.row) {
            eprintln!(
                "mk8s-node-model: a refresh from {} to {want} crosses a behaviour row: not modelled",
                self.s("channel")
            );
            return 1;
        }
        self.set_state("channel", serde_json::json!(want));
        self.minor = minor;
        self.event(&format!("snap refresh microk8s --channel={want}"));
        self.refresh();
        println!("microk8s ({want}) v1.{minor}.0 from Canonical✓ refreshed");
        0
    }

    /// `snap refresh` to a new revision of the same channel: snapd stops every
    /// service, copies the data to the new revision and links it (see
    /// `revisions.rs`), and starts the services that were enabled
    /// (disabled ones are re-disabled: snapd `LastActiveDisabledServices`, F5); the
    /// configure hook then re-copies `args/traefik` and `args/apiserver-proxy` if
    /// they were deleted (1.26:snap/hooks/configure:L163-174; 1.30:L168-179) and runs
    /// `snapctl restart microk8s.daemon-apiserver-proxy` unconditionally
    /// (1.25:configure:L642; 1.26:L648; 1.27:L675; 1.28:L538; 1.30:L552; 1.34:L568),
    /// which starts it even when disabled. Our own units are not the snap's: untouched.
    pub(super) fn refresh(&mut self) {
        if self.snap_disabled() {
            // snapd skips disabled snaps in (auto-)refreshes (storehelpers.go, above).
            self.event("snap refresh microk8s: skipped, the snap is disabled");
            return;
        }
        self.event("snap refresh microk8s");
        let units = self.snap_units();
        for u in &units {
            self.stop(u);
        }
        self.next_revision();
        if self.row.proxy_is_apiserver_proxy {
            if !self.snap_data("args/traefik").exists() {
                self.lay_out_traefik_args();
            }
            if !self.snap_data("args/apiserver-proxy").exists() {
                self.lay_out_apiserver_proxy_args();
            }
        }
        for u in units.iter().filter(|u| self.enabled(u)) {
            self.start(u);
        }
        if self.row.proxy_is_apiserver_proxy {
            self.append("calls.log", "snapctl restart microk8s.daemon-apiserver-proxy");
            self.snapctl(&["restart".into(), "microk8s.daemon-apiserver-proxy".into()]);
        }
    }

    /// A reboot: every process ends; systemd starts the enabled units.
    pub(super) fn reboot(&self) {
        self.event("reboot");
        for u in self.pid_units() {
            self.kill(&u);
        }
        let mut units = if self.installed() && !self.snap_disabled() { self.snap_units() } else { Vec::new() };
        if let Ok(d) = fs::read_dir(self.dir.join("enabled")) {
            units.extend(d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()));
        }
        for u in units.iter().filter(|u| self.enabled(u) && self.known(u)) {
            self.start(u);
        }
    }
}
