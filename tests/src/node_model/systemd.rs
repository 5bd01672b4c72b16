//! systemd as the model runs it: units, their processes (pid files), their
//! enabled state, `systemctl`, and our own units' `ExecStart=`.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::state::Ctx;

pub(super) const SNAP_PREFIX: &str = "snap.microk8s.daemon-";

pub(super) fn snap_unit(daemon: &str) -> String {
    format!("{SNAP_PREFIX}{daemon}.service")
}

/// `systemctl ARGS` on the node; whether it succeeded.
pub(super) fn systemctl_quiet(args: &[&str]) -> bool {
    Command::new("systemctl").args(args).stdin(Stdio::null()).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // state is the field after the ")" closing the command name; Z = zombie, X = dead
        Ok(s) => {
            s.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()).is_some_and(|c| c != 'Z' && c != 'X')
        }
        Err(_) => false,
    }
}

impl Ctx {
    pub(super) fn snap_units(&self) -> Vec<String> {
        let r = self.row;
        r.daemons.iter().chain(r.null_daemons).map(|d| snap_unit(d)).collect()
    }

    fn own_unit_file(&self, unit: &str) -> PathBuf {
        self.root.join("etc/systemd/system").join(unit)
    }

    pub(super) fn known(&self, unit: &str) -> bool {
        if unit.starts_with(SNAP_PREFIX) {
            // A disabled snap's units are gone (unlink-snap removes them).
            self.installed() && !self.snap_disabled() && self.snap_units().iter().any(|u| u == unit)
        } else {
            self.own_unit_file(unit).exists()
        }
    }

    pub(super) fn pid_file(&self, unit: &str) -> PathBuf {
        self.dir.join("pids").join(unit)
    }

    pub(super) fn pid_units(&self) -> Vec<String> {
        if self.systemd() {
            return Vec::new();
        }
        fs::read_dir(self.dir.join("pids"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect())
            .unwrap_or_default()
    }

    pub(super) fn running(&self, unit: &str) -> Option<u32> {
        if self.systemd() {
            // The real systemd's answer (0: no pid known here, the unit is active).
            return systemctl_quiet(&["is-active", "--quiet", unit]).then_some(0);
        }
        let pid: u32 = fs::read_to_string(self.pid_file(unit)).ok()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }

    /// systemd's enabled state: snap services are enabled by snapd at install;
    /// our own units once `systemctl enable`d.
    pub(super) fn enabled(&self, unit: &str) -> bool {
        if self.systemd() {
            return systemctl_quiet(&["is-enabled", "--quiet", unit]);
        }
        if unit.starts_with(SNAP_PREFIX) {
            !self.dir.join("disabled").join(unit).exists()
        } else {
            self.dir.join("enabled").join(unit).exists()
        }
    }

    pub(super) fn set_enabled(&self, unit: &str, on: bool) {
        if self.systemd() {
            systemctl_quiet(&[if on { "enable" } else { "disable" }, "--quiet", unit]);
            return;
        }
        let (dir, mark) = if unit.starts_with(SNAP_PREFIX) { ("disabled", !on) } else { ("enabled", on) };
        let p = self.dir.join(dir).join(unit);
        if mark {
            let _ = fs::create_dir_all(p.parent().unwrap());
            let _ = fs::write(p, "");
        } else {
            let _ = fs::remove_file(p);
        }
    }

    pub(super) fn start(&self, unit: &str) {
        if self.running(unit).is_some() {
            return;
        }
        if self.systemd() {
            if !systemctl_quiet(&["start", unit]) {
                self.event(&format!("{unit}: systemctl start failed"));
            }
            return;
        }
        self.spawn_daemon(unit, false);
    }

    pub(super) fn spawn_daemon(&self, unit: &str, restarted: bool) -> u32 {
        let _ = fs::create_dir_all(self.dir.join("logs"));
        let log = fs::File::create(self.dir.join("logs").join(format!("{unit}.log"))).ok();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--state").arg(&self.dir).arg("daemon").arg(unit);
        if restarted {
            cmd.arg("--restarted");
        }
        cmd.stdin(Stdio::null()).process_group(0);
        match log {
            Some(f) => {
                cmd.stdout(f.try_clone().map(Stdio::from).unwrap_or(Stdio::null())).stderr(Stdio::from(f));
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        // Detached on purpose: the CLI process that starts a unit exits at once, and
        // the daemon is reaped by whoever inherits it (as systemd's services are).
        #[allow(clippy::zombie_processes)]
        let child = cmd.spawn().expect("spawn a model daemon");
        let pid = child.id();
        let _ = fs::write(self.pid_file(unit), pid.to_string());
        pid
    }

    /// Kill the unit's process group and wait until it is gone (ports released).
    pub(super) fn kill(&self, unit: &str) {
        if self.systemd() {
            systemctl_quiet(&["stop", unit]);
            return;
        }
        if let Ok(text) = fs::read_to_string(self.pid_file(unit)) {
            if let Ok(pid) = text.trim().parse::<u32>() {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .stderr(Stdio::null())
                    .stdout(Stdio::null())
                    .status();
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
                let end = Instant::now() + Duration::from_secs(3);
                while alive(pid) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let _ = fs::remove_file(self.pid_file(unit));
    }

    pub(super) fn stop(&self, unit: &str) {
        if self.running(unit).is_some() {
            self.event(&format!("{unit}: stopped"));
        }
        self.kill(unit);
    }

    pub(super) fn systemctl(&self, args: &[String]) -> i32 {
        let verb = args.first().map(String::as_str).unwrap_or("");
        let units: Vec<&String> = args.iter().skip(1).filter(|a| !a.starts_with("--")).collect();
        let now = args.iter().any(|a| a == "--now");
        if verb == "daemon-reload" {
            return 0;
        }
        for unit in &units {
            if !self.known(unit) {
                // systemd's answer for a unit this snap revision does not ship
                // (F4: 1.21/1.22 have no k8s-dqlite unit).
                eprintln!("Failed to {verb} {unit}: Unit {unit} not loaded.");
                return 5;
            }
        }
        for unit in units {
            match verb {
                "start" => self.start(unit),
                "stop" => self.stop(unit),
                "restart" => {
                    self.stop(unit);
                    self.start(unit);
                }
                "enable" => {
                    self.set_enabled(unit, true);
                    if now {
                        self.start(unit);
                    }
                }
                "disable" => {
                    self.set_enabled(unit, false);
                    if now {
                        self.stop(unit);
                    }
                }
                "is-active" => return if self.running(unit).is_some() { 0 } else { 3 },
                "is-enabled" => return if self.enabled(unit) { 0 } else { 1 },
                other => {
                    eprintln!("mk8s-node-model: systemctl {other} is not modelled");
                    return 1;
                }
            }
        }
        0
    }
}

/// Our own systemd units (mk8s-traefik.service, ...): ExecStart= from the unit
/// file under the root, run with `Restart=`/`RestartSec=` as systemd would. Node
/// paths are mapped under the root where they exist there (a configuration file
/// naming other node paths is copied with those mapped); a program that is not
/// under the root (or is an empty placeholder) comes from PATH.
pub(super) fn own_unit(ctx: &Ctx, unit: &str) -> i32 {
    let text = fs::read_to_string(ctx.own_unit_file(unit)).unwrap_or_default();
    let value = |key: &str| {
        text.lines().rev().find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string())).unwrap_or_default()
    };
    let exec = value("ExecStart=");
    let restart = value("Restart=");
    let restart_sec: f64 = value("RestartSec=").parse().unwrap_or(0.1);
    let mut words = exec.split_whitespace();
    let Some(program) = words.next().map(|p| ctx.map_program(p)) else {
        ctx.event(&format!("{unit}: failed: no ExecStart="));
        return 1;
    };
    let args: Vec<String> = words.map(|w| ctx.map_arg(w)).collect();
    ctx.event(&format!("{unit}: running {program} {}", args.join(" ")));
    loop {
        let log =
            fs::OpenOptions::new().create(true).append(true).open(ctx.dir.join("logs").join(format!("{unit}.out")));
        let mut cmd = Command::new(&program);
        cmd.args(&args).stdin(Stdio::null());
        if let Ok(f) = log {
            cmd.stdout(f.try_clone().map(Stdio::from).unwrap_or(Stdio::null())).stderr(Stdio::from(f));
        }
        let status = cmd.status();
        let ok = matches!(&status, Ok(s) if s.success());
        ctx.event(&format!("{unit}: process exited ({status:?})"));
        let again = restart == "always" || (restart == "on-failure" && !ok);
        if !again {
            return if ok { 0 } else { 1 };
        }
        std::thread::sleep(Duration::from_secs_f64(restart_sec.max(0.1)));
    }
}
