//! The join, step by step. Every step is idempotent (it checks before it changes),
//! every write is atomic, and the completion stamp is written last, so a run killed
//! at any point and started again converges to the same state.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::{Api, Holder, NodeState};
use crate::fs::write_atomic;
use crate::node::Node;
use crate::plan::{sha256_hex, BinarySpec, Credential, JoinPlan, LoadBalancerSpec, PLAN_PATH};
use crate::retry::{Backoff, Failure, Jitter, Outcome};
use crate::text::merge_args;

pub const STATE_DIR: &str = "/var/lib/mk8s-worker";
pub const STATUS_FILE: &str = "/var/lib/mk8s-worker/status.json";
pub const STAMP_FILE: &str = "/var/lib/mk8s-worker/joined";
/// Cluster API's bootstrap-provider contract: tooling watches for this file.
pub const CAPI_STAMP: &str = "/run/cluster-api/bootstrap-success.complete";

/// Exit codes (also in `--help` and the unit file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Joined = 0,
    Retryable = 75,
    BadPlan = 78,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    node: String,
    phase: String,
    result: String,
    attempts: u32,
    last_error: Option<String>,
    started_at: u64,
    updated_at: u64,
    steps: Vec<StepTiming>,
}

#[derive(Debug, Serialize)]
struct StepTiming {
    step: String,
    seconds: f64,
}

pub struct Joiner<'a> {
    node: &'a Node,
    plan_path: PathBuf,
    log: &'a mut dyn Write,
    status: Status,
    started: Instant,
    deadline: Instant,
    jitter: Jitter,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Why a step stopped the run.
enum Stop {
    Fatal(String),
    Retryable(String),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Retryable(e.to_string())
    }
}

type StepResult = Result<(), Stop>;

impl<'a> Joiner<'a> {
    pub fn new(node: &'a Node, plan_path: &str, log: &'a mut dyn Write) -> Joiner<'a> {
        let now = unix_now();
        Joiner {
            node,
            plan_path: node.path(plan_path),
            log,
            status: Status {
                node: String::new(),
                phase: "plan".into(),
                result: "running".into(),
                attempts: 0,
                last_error: None,
                started_at: now,
                updated_at: now,
                steps: Vec::new(),
            },
            started: Instant::now(),
            deadline: Instant::now(),
            jitter: Jitter::from_entropy(),
        }
    }

    fn say(&mut self, step: &str, msg: &str) {
        let _ = writeln!(self.log, "mk8s-bootstrap[{step}]: {msg}");
    }

    fn save_status(&mut self) {
        save_status(self.node, &mut self.status);
    }

    fn enter(&mut self, phase: &str) {
        self.status.phase = phase.into();
        self.status.attempts = 0;
        self.save_status();
    }

    fn finish_step(&mut self, step: &str, since: Instant) {
        self.status
            .steps
            .push(StepTiming { step: step.into(), seconds: (since.elapsed().as_millis() as f64) / 1000.0 });
    }

    /// Retry `op` under the plan's backoff until the run's deadline.
    fn retry<T>(
        &mut self,
        step: &str,
        plan: &JoinPlan,
        mut op: impl FnMut(u32) -> Result<T, Failure>,
    ) -> Result<T, Stop> {
        let backoff = Backoff {
            initial: Duration::from_millis(plan.timing.retry_initial_ms),
            cap: Duration::from_millis(plan.timing.retry_cap_ms),
            deadline: self.deadline,
        };
        let mut attempts = 0;
        let before = self.status.attempts;
        // Disjoint borrows: the log, the status and the jitter; `op` never touches `self`.
        let (log, status, node) = (&mut *self.log, &mut self.status, self.node);
        let outcome = backoff.run(
            &mut self.jitter,
            |a| {
                attempts = a;
                op(a)
            },
            |a, f, delay| {
                // The status file shows every attempt while a step retries.
                status.attempts = before + a;
                status.last_error = Some(f.to_string());
                save_status(node, status);
                let _ = match f {
                    Failure::Retry(m) => {
                        writeln!(
                            log,
                            "mk8s-bootstrap[{step}]: attempt {a} failed: {m}; retrying in {:.1}s",
                            delay.as_secs_f64()
                        )
                    }
                    Failure::Fatal(m) => writeln!(log, "mk8s-bootstrap[{step}]: attempt {a} failed, not retrying: {m}"),
                };
            },
            std::thread::sleep,
            Instant::now,
        );
        self.status.attempts = before + attempts;
        match outcome {
            Outcome::Done(v) => Ok(v),
            Outcome::Fatal(m) => Err(Stop::Fatal(m)),
            Outcome::TimedOut(m) => Err(Stop::Retryable(format!("gave up after {attempts} attempt(s): {m}"))),
        }
    }

    /// Run the whole join. The exit code follows the contract: 0, 75 or 78.
    pub fn run(&mut self) -> Exit {
        // Already joined: a no-op, except finishing a cleanup a kill interrupted. The
        // stamp counts only when it is this plan's: an image cloned from a joined node,
        // or a reused disk, carries another node's stamp.
        if let Ok(stamp) = fs::read_to_string(self.node.path(STAMP_FILE)) {
            match self.load_plan_quietly() {
                Ok(plan) if stamp == stamp_text(&plan) => {
                    self.say("done", "this node already joined; nothing to do");
                    self.cleanup(&plan);
                    return Exit::Joined;
                }
                _ => {
                    let first = stamp.lines().next().unwrap_or("").to_string();
                    self.say(
                        "plan",
                        &format!("ignoring a completion stamp that is not this plan's ({first:?}): joining anew"),
                    );
                }
            }
        }
        let plan = match self.step_plan() {
            Ok(p) => p,
            Err(m) => return self.fail("plan", Stop::Fatal(m)),
        };
        self.status.node = plan.node.name.clone();
        self.deadline = self.started + Duration::from_secs(plan.timing.ready_deadline_secs);
        #[allow(clippy::type_complexity)]
        let steps: Vec<(&str, fn(&mut Self, &JoinPlan) -> StepResult)> = if plan.join.is_some() {
            // `auth: microk8s-join`: MicroK8s's own join writes the CA, the
            // certificates, the kubeconfigs and its proxy's configuration.
            vec![
                ("snap", Joiner::step_snap),
                ("control-plane-off", Joiner::step_control_plane_off),
                ("join", Joiner::step_join),
                ("start", Joiner::step_start),
            ]
        } else {
            vec![
                ("snap", Joiner::step_snap),
                ("control-plane-off", Joiner::step_control_plane_off),
                ("load-balancer", Joiner::step_load_balancer),
                ("install", Joiner::step_install),
                ("apiserver", Joiner::step_apiserver),
                ("start", Joiner::step_start),
            ]
        };
        for (name, step) in steps {
            self.enter(name);
            let t = Instant::now();
            if let Err(stop) = step(self, &plan) {
                return self.fail(name, stop);
            }
            self.finish_step(name, t);
        }
        self.enter("finish");
        match self.step_finish(&plan) {
            Ok(()) => {
                self.say(
                    "done",
                    &format!(
                        "node {} joined and Ready in {:.1}s",
                        plan.node.name,
                        self.started.elapsed().as_secs_f64()
                    ),
                );
                Exit::Joined
            }
            Err(stop) => self.fail("finish", stop),
        }
    }

    fn fail(&mut self, step: &str, stop: Stop) -> Exit {
        let (exit, msg, result) = match stop {
            Stop::Fatal(m) => (Exit::BadPlan, m, "failed"),
            Stop::Retryable(m) => (Exit::Retryable, m, "retrying"),
        };
        self.say(step, &format!("{msg} (exit {})", exit as i32));
        self.status.result = result.into();
        self.status.last_error = Some(msg);
        self.save_status();
        exit
    }

    fn load_plan_quietly(&self) -> Result<JoinPlan, String> {
        let text = fs::read_to_string(&self.plan_path).map_err(|e| e.to_string())?;
        JoinPlan::from_json(&text).map_err(|e| e.to_string())
    }

    /// 1. Load and check the plan; verify the CA against its pin and every staged
    ///    file against its sha256, before anything on the node changes.
    fn step_plan(&mut self) -> Result<JoinPlan, String> {
        let text = fs::read_to_string(&self.plan_path)
            .map_err(|e| format!("cannot read the plan {}: {e}", self.plan_path.display()))?;
        let plan = JoinPlan::from_json(&text).map_err(|e| e.to_string())?;
        match crate::pin::pin_of_pem(&plan.ca.pem) {
            Some(p) if p == plan.ca.pin => {}
            Some(p) => {
                return Err(format!(
                    "the CA in the plan does not match its pin: expected {}, got {p}; nothing was installed. \
                     Regenerate the user-data from the cluster's real CA",
                    plan.ca.pin
                ))
            }
            None => return Err("the CA in the plan is not a PEM certificate".into()),
        }
        for f in &plan.install {
            let staged = self.node.path(&f.staged);
            match fs::read(&staged) {
                Ok(data) if sha256_hex(&data) == f.sha256 => {}
                Ok(_) => {
                    return Err(format!(
                        "{} does not match the plan's sha256; the user-data was altered or truncated",
                        f.staged
                    ))
                }
                Err(_) => {
                    // Already installed by an earlier run (and then cleaned up)?
                    let installed =
                        fs::read(self.node.snap_data(&f.target)).map(|d| sha256_hex(&d) == f.sha256).unwrap_or(false);
                    if !installed {
                        return Err(format!("{} is missing; the user-data did not write it", f.staged));
                    }
                }
            }
        }
        if matches!(plan.credentials.kubelet, Credential::Removed) {
            return Err("the plan's credentials were removed after an earlier join, and this node has no \
                        completion stamp of that join; regenerate the user-data"
                .into());
        }
        // `microk8s join` names the node after the machine's hostname, lower-cased
        // (`socket.gethostname().lower()`, canonical/microk8s 1.30:scripts/wrappers/join.py
        // L163, L362): the user-data sets it to the node's name (/etc/hostname and
        // `hostnamectl set-hostname`); a machine called otherwise is refused.
        // `gethostname()` is the kernel's name, which the join uses; /etc/hostname
        // is only what the next boot will set, so both must be the node's.
        if plan.join.is_some() {
            for (what, file) in
                [("the kernel's hostname", "/proc/sys/kernel/hostname"), ("/etc/hostname", "/etc/hostname")]
            {
                let hostname = fs::read_to_string(self.node.path(file)).unwrap_or_default();
                let hostname = hostname.trim().to_lowercase();
                if hostname != plan.node.name {
                    return Err(format!(
                        "this machine's hostname ({what}) is {hostname:?}, but the plan is for node {:?}: \
                         `microk8s join` registers the node under the kernel's hostname, so it must be the node's \
                         name (the user-data sets it; an image or cloud-init setting may have overridden it); \
                         nothing was changed",
                        plan.node.name
                    ));
                }
            }
            // Another node's join on this disk stops us before anything changes.
            self.joined_already(&plan)?;
        }
        // Preconditions, before anything on the node changes.
        plan.load_balancer.precondition(self.node)?;
        self.say(
            "plan",
            &format!(
                "plan for node {} (cluster {}, MicroK8s {}, {:?}) is valid; CA pin verified",
                plan.node.name, plan.cluster, plan.microk8s.channel, plan.microk8s.flavour
            ),
        );
        Ok(plan)
    }

    /// 2. MicroK8s at the plan's channel.
    fn step_snap(&mut self, plan: &JoinPlan) -> StepResult {
        let node = self.node.clone();
        let listed = node.snap(&["list", "microk8s"]).ok().filter(|r| r.ok);
        if let Some(r) = listed {
            let tracking = tracking_of(&r.output);
            let want = track(&plan.microk8s.channel);
            match tracking.as_deref() {
                // Installed from a local file: no channel to compare.
                None | Some("-") => {}
                Some(t) if plan.microk8s.local_snap.is_some() || track(t) == want => {}
                Some(t) => {
                    return Err(Stop::Fatal(format!(
                        "microk8s is already installed here, tracking {t}, but the plan is for {}: refusing to \
                         change a MicroK8s of another version (it may hold a control plane's data). Remove it \
                         (snap remove --purge microk8s) or generate the user-data for channel {t}",
                        plan.microk8s.channel
                    )))
                }
            }
            self.say("snap", &format!("microk8s is installed (tracking {})", tracking.as_deref().unwrap_or("?")));
            return Ok(());
        }
        // snapd must have finished seeding on a fresh image before installs work.
        if let Ok(r) = node.snap(&["wait", "system", "seed.loaded"]) {
            if !r.ok {
                self.say("snap", &format!("snap wait system seed.loaded: {}", r.output));
            }
        }
        if let Some(local) = &plan.microk8s.local_snap {
            let mut snaps = Vec::new();
            if let Some(base) = &local.base {
                // snapd cannot fetch a missing base without the store (canonical/snapd
                // tests/main/base-snaps: a snap whose base is unavailable does not
                // install), so the base goes first, unless the image has it.
                let name = base.file.rsplit('/').next().unwrap_or("").split('_').next().unwrap_or("").to_string();
                let has = node.snap(&["list", &name]).map(|r| r.ok).unwrap_or(false);
                if has {
                    self.say("snap", &format!("the base snap {name} is installed"));
                } else {
                    snaps.push((base.file.as_str(), base.assert.as_str(), false));
                }
            }
            snaps.push((local.file.as_str(), local.assert.as_str(), true));
            for (file, assert, _) in &snaps {
                if !node.path(file).exists() || !node.path(assert).exists() {
                    return Err(Stop::Fatal(format!(
                        "air-gapped install: {file} or {assert} is not on this node; bake them into the image or copy them before boot"
                    )));
                }
            }
            for (file, assert, classic) in snaps {
                let (path, apath) = (node.path(file).display().to_string(), node.path(assert).display().to_string());
                self.say("snap", &format!("installing {file}"));
                self.retry("snap", plan, |_| {
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
        } else {
            let channel = plan.microk8s.channel.clone();
            self.say("snap", &format!("installing microk8s from channel {channel}"));
            self.retry("snap", plan, |_| {
                let r = node
                    .snap(&["install", "microk8s", "--classic", "--channel", &channel])
                    .map_err(|e| Failure::Retry(e.to_string()))?;
                if r.ok || r.output.contains("already installed") {
                    Ok(())
                } else {
                    Err(Failure::Retry(format!("snap install microk8s failed: {}", r.output)))
                }
            })?;
        }
        self.say("snap", "microk8s installed");
        Ok(())
    }

    /// 3. Locks first (so no restart or refresh brings the control plane back), then
    ///    stop and disable the control-plane services of this flavour.
    fn step_control_plane_off(&mut self, plan: &JoinPlan) -> StepResult {
        for lock in &plan.microk8s.locks {
            let p = self.node.snap_data(&format!("var/lock/{lock}"));
            if !p.exists() {
                write_atomic(&p, b"", 0o600)?;
                self.say("control-plane-off", &format!("created var/lock/{lock}"));
            }
        }
        for unit in &plan.microk8s.stop_services {
            let node = self.node.clone();
            for verb in ["stop", "disable"] {
                let r = node.systemctl(&[verb, unit])?;
                // 5: unit not loaded (this MicroK8s version has no such service).
                if !r.ok
                    && r.code != Some(5)
                    && !r.output.contains("not loaded")
                    && !r.output.contains("does not exist")
                {
                    return Err(Stop::Retryable(format!("systemctl {verb} {unit}: {}", r.output)));
                }
            }
        }
        self.say(
            "control-plane-off",
            &format!("stopped and disabled {} control-plane service(s)", plan.microk8s.stop_services.len()),
        );
        Ok(())
    }

    /// 4. The node-local load balancer, from the files the user-data wrote. It is
    ///    started only once no other server holds its port (the node's own control
    ///    plane held `*:16443` until kubelite was stopped in the step before), and it
    ///    is up when a TLS connection through it reaches an apiserver whose
    ///    certificate chains to the pinned cluster CA.
    fn step_load_balancer(&mut self, plan: &JoinPlan) -> StepResult {
        let node = self.node.clone();
        let run = |args: &[&str]| -> StepResult {
            let r = node.systemctl(args)?;
            if r.ok {
                Ok(())
            } else {
                Err(Stop::Retryable(format!("systemctl {}: {}", args.join(" "), r.output)))
            }
        };
        let Some((unit, listen)) = plan.load_balancer.local() else {
            let why = match &plan.load_balancer {
                LoadBalancerSpec::Joined { .. } => "MicroK8s's own proxy, configured by the join",
                _ => "external load balancer: nothing to run on this node",
            };
            self.say("load-balancer", why);
            return Ok(());
        };
        let (unit, listen) = (unit.to_string(), listen.to_string());
        let probe = Api::with(plan, &format!("https://{listen}"), &Credential::Removed, "load balancer")
            .map_err(|f| Stop::Fatal(f.to_string()))?;
        // Nothing else may hold the port when the balancer starts.
        self.retry("load-balancer", plan, |_| match probe.holder() {
            Holder::Free | Holder::Cluster(_) => Ok(()),
            Holder::Foreign(e) => Err(Failure::Retry(format!(
                "{listen} is held by a server whose certificate is not from the cluster CA (this node's own \
                 control plane, still running?): waiting for it to stop ({e})"
            ))),
            Holder::Unknown(e) => Err(Failure::Retry(format!("cannot tell who holds {listen}: {e}"))),
        })?;
        match &plan.load_balancer {
            LoadBalancerSpec::Traefik { binary, .. } => {
                self.ensure_binary(plan, binary)?;
                run(&["daemon-reload"])?;
                run(&["enable", "--now", &unit])?;
            }
            LoadBalancerSpec::Haproxy { .. } => {
                run(&["daemon-reload"])?;
                run(&["enable", "--now", &unit])?;
            }
            LoadBalancerSpec::Microk8sProxy { .. } => {
                // Its configuration lives in the snap's args/traefik/: install it
                // first, then restart the proxy so its wrapper renders traefik.yaml
                // from our template. MicroK8s's own worker join removes
                // `no-apiserver-proxy` as it configures the proxy (1.30
                // scripts/wrappers/join.py `update_apiserver_proxy`); `microk8s leave`
                // and `inspect` read the lock to tell a worker (1.30
                // scripts/wrappers/common/cluster/utils.py `is_node_dqlite_worker`).
                self.step_install(plan)?;
                let lock = self.node.snap_data("var/lock/no-apiserver-proxy");
                if lock.exists() {
                    fs::remove_file(&lock)?;
                    self.say("load-balancer", "removed var/lock/no-apiserver-proxy");
                }
                run(&["enable", &unit])?;
                run(&["restart", &unit])?;
            }
            // No `local()`: returned before starting anything.
            LoadBalancerSpec::External | LoadBalancerSpec::Joined { .. } => {}
        }
        let code = self.retry("load-balancer", plan, |_| match probe.holder() {
            Holder::Cluster(code) => Ok(code),
            Holder::Free => Err(Failure::Retry(format!("{unit} is not listening on {listen} yet"))),
            Holder::Foreign(e) => Err(Failure::Retry(format!(
                "{listen} answers with a certificate that is not from the cluster CA ({e}): \
                 not our balancer, or it reaches no apiserver of this cluster yet"
            ))),
            Holder::Unknown(e) => Err(Failure::Retry(format!("{unit} on {listen}: {e}"))),
        })?;
        self.say(
            "load-balancer",
            &format!("{unit} on {listen} reaches an apiserver of this cluster (TLS verified, /readyz {code})"),
        );
        Ok(())
    }

    fn ensure_binary(&mut self, plan: &JoinPlan, b: &BinarySpec) -> StepResult {
        let dest = self.node.path(&b.path);
        let Some(fetch) = &b.fetch else {
            return if dest.exists() {
                Ok(())
            } else {
                Err(Stop::Fatal(format!("{} is not on this node and the plan gives no URL to fetch it from", b.path)))
            };
        };
        if fs::read(&dest).map(|d| sha256_hex(&d) == fetch.sha256).unwrap_or(false) {
            return Ok(());
        }
        let dir = dest.parent().ok_or_else(|| Stop::Fatal("bad binary path".into()))?.to_path_buf();
        fs::create_dir_all(&dir)?;
        // We download into this directory as root: refuse one others may write to,
        // where a planted symlink would redirect the download.
        {
            use std::os::unix::fs::MetadataExt;
            let meta = fs::symlink_metadata(&dir)?;
            if meta.file_type().is_symlink() || meta.mode() & 0o022 != 0 {
                return Err(Stop::Fatal(format!(
                    "{} is a symlink or writable by others: refusing to download {} into it",
                    dir.display(),
                    b.path
                )));
            }
        }
        let download = dir.join(".mk8s-download");
        // A leftover (or planted) entry is removed, never followed.
        let _ = fs::remove_file(&download);
        let node = self.node.clone();
        let (url, want) = (fetch.url.clone(), fetch.sha256.clone());
        let shown = crate::text::redact_url(&url);
        self.say("load-balancer", &format!("fetching {shown}"));
        self.retry("load-balancer", plan, |_| {
            // --globoff: [ ] { } are literal; https only, redirects included.
            let r = node
                .run(
                    &node.curl,
                    &[
                        "-fsSL",
                        "--globoff",
                        "--proto",
                        "=https",
                        "--proto-redir",
                        "=https",
                        "--max-time",
                        "300",
                        "-o",
                        download.to_str().unwrap_or_default(),
                        &url,
                    ],
                )
                .map_err(|e| Failure::Retry(e.to_string()))?;
            if !r.ok {
                return Err(Failure::Retry(format!("download of {shown} failed: {}", r.output.replace(&url, &shown))));
            }
            let got = sha256_file(&download).map_err(|e| Failure::Retry(e.to_string()))?;
            if got != want {
                return Err(Failure::Fatal(format!("{shown} has sha256 {got}, the plan expects {want}; refusing it")));
            }
            Ok(())
        })?;
        // traefik's release archives hold the program as `traefik`; it is installed
        // at the plan's path, whatever that path's file name.
        let unpacked = if fetch.archive {
            let out = dir.join(".mk8s-unpack");
            let _ = fs::remove_dir_all(&out);
            fs::create_dir_all(&out)?;
            let r = node.run(
                &node.tar,
                &["-xzf", download.to_str().unwrap_or_default(), "-C", out.to_str().unwrap_or_default(), "traefik"],
            )?;
            if !r.ok {
                return Err(Stop::Fatal(format!("{shown} does not contain traefik: {}", r.output)));
            }
            out.join("traefik")
        } else {
            download.clone()
        };
        // The plan's sha256 matched, so this is what the facts named: an archive the
        // URL did not say was one (no .tar.gz/.tgz, another kind) would be installed
        // as the program and fail on every start. Refuse it, naming the kind.
        if let Some(kind) = archive_kind(&unpacked) {
            let _ = fs::remove_file(&download);
            let _ = fs::remove_dir_all(dir.join(".mk8s-unpack"));
            return Err(Stop::Fatal(format!(
                "{shown} is {kind}, not the program: give traefik.url a name ending in .tar.gz (or .tgz) for a \
                 gzip tar archive, or the program itself"
            )));
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&unpacked, fs::Permissions::from_mode(0o755))?;
        fs::rename(&unpacked, &dest)?;
        let _ = fs::remove_file(&download);
        let _ = fs::remove_dir_all(dir.join(".mk8s-unpack"));
        Ok(())
    }

    /// 5. CA, kubeconfigs and args into the snap's data directory.
    fn step_install(&mut self, plan: &JoinPlan) -> StepResult {
        let mut changed = 0;
        for f in &plan.install {
            let target = self.node.snap_data(&f.target);
            let data = match fs::read(self.node.path(&f.staged)) {
                Ok(d) => d,
                // Cleaned up after an earlier install; step_plan checked the target.
                Err(_) => continue,
            };
            if write_atomic(&target, &data, f.mode)? {
                changed += 1;
            }
        }
        changed += self.apply_args(plan)?;
        self.say(
            "install",
            &format!("{changed} file(s) installed or updated, {} already in place", plan.install.len() + 2 - changed),
        );
        Ok(())
    }

    /// The plan's lines in `args/kubelet` and `args/kube-proxy` (same flag replaced,
    /// every other line kept). Returns how many files changed.
    fn apply_args(&mut self, plan: &JoinPlan) -> std::io::Result<usize> {
        let mut changed = 0;
        for (file, args) in [("args/kubelet", &plan.kubelet_args), ("args/kube-proxy", &plan.kube_proxy_args)] {
            let p = self.node.snap_data(file);
            let existing = fs::read_to_string(&p).unwrap_or_default();
            if let Some(text) = merge_args(&existing, args) {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(&p).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o660);
                write_atomic(&p, text.as_bytes(), mode)?;
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// The pin of `certs/ca.remote.crt`, the cluster CA as the node has it.
    fn remote_ca_pin(&self) -> Option<String> {
        crate::pin::pin_of_pem(&fs::read_to_string(self.node.snap_data("certs/ca.remote.crt")).ok()?)
    }

    /// Whether MicroK8s's join already happened here: `certs/ca.remote.crt` is the
    /// plan's CA, `clustered.lock` and `no-cert-reissue` exist (the join's last
    /// step, `mark_no_cert_reissue`, after its proxy configuration and locks:
    /// canonical/microk8s 1.30:scripts/wrappers/join.py L783, 1.24:scripts/cluster/join.py
    /// L851), and `credentials/kubelet.config` is the join's (its client certificate
    /// chains to the cluster CA; the install hook's is a token or a certificate of the
    /// node's own CA). A rerun after a kill, or after the control plane pruned the
    /// token, does not join again; a join killed before its end is done again.
    ///
    /// The join counts only when it was this node's: a machine cloned from a joined
    /// worker, or a reused disk, carries another node's certificate, which chains to
    /// the same CA. Its subject must be `system:node:<this node>`; another one is a
    /// fatal error, never a success (under AlwaysAllow that certificate would
    /// register this node with another node's identity).
    fn joined_already(&self, plan: &JoinPlan) -> Result<bool, String> {
        if self.remote_ca_pin().as_deref() != Some(plan.ca.pin.as_str())
            || !self.node.snap_data("var/lock/clustered.lock").exists()
            || !self.node.snap_data("var/lock/no-cert-reissue").exists()
        {
            return Ok(false);
        }
        let cert_pem = match kubeconfig_credential(self.node, "credentials/kubelet.config") {
            Ok(Credential::ClientCertificate { cert_pem, .. }) if crate::pin::chains_to(&cert_pem, &plan.ca.pem) => {
                cert_pem
            }
            _ => return Ok(false),
        };
        let subject = crate::pin::Cert::from_pem(&cert_pem).and_then(|c| c.common_name).unwrap_or_default();
        let mine = format!("system:node:{}", plan.node.name);
        if subject == mine {
            return Ok(true);
        }
        Err(format!(
            "this machine's MicroK8s already joined the cluster, but as {subject:?}, not {mine:?}: it was cloned \
             from a joined worker or reuses its disk. Nothing was changed; reset it (`snap remove --purge \
             microk8s`) or boot a fresh image, then rerun"
        ))
    }

    /// `auth: microk8s-join`: MicroK8s's own worker join, through each control
    /// plane's cluster-agent in turn, under the plan's backoff. The agent's
    /// certificate is verified against the pinned CA **before** the token goes
    /// anywhere, and the join's CHECK is that verified certificate's sha256, so
    /// `microk8s join` (which checks only the fingerprint, canonical/microk8s
    /// 1.30:scripts/wrappers/join.py L84-100) talks to the same server. Then the CA
    /// the join stored is checked against the pin, and our kubelet and kube-proxy
    /// arguments are applied again: the join replaced `args/kubelet` with the
    /// control plane's (join.py `store_base_kubelet_args`, L445-454).
    fn step_join(&mut self, plan: &JoinPlan) -> StepResult {
        let Some(join) = plan.join.clone() else {
            return Err(Stop::Fatal("internal error: step_join without a join section".into()));
        };
        if self.joined_already(plan).map_err(Stop::Fatal)? {
            self.say(
                "join",
                "MicroK8s's join already happened on this node (its certificates chain to the cluster CA)",
            );
        } else {
            let Credential::JoinToken { token } = plan.credentials.kubelet.clone() else {
                return Err(Stop::Fatal("the plan has no join token".into()));
            };
            let node = self.node.clone();
            let ca = plan.ca.pem.clone();
            let redact = |s: &str| s.replace(&token, "<token>");
            let via = self.retry("join", plan, |_| {
                let mut why = Vec::new();
                for agent in &join.agents {
                    let leaf = match crate::api::agent_certificate(&ca, agent) {
                        Ok(l) => l,
                        Err(Failure::Fatal(m)) => return Err(Failure::Fatal(m)),
                        Err(Failure::Retry(m)) => {
                            why.push(m);
                            continue;
                        }
                    };
                    let check = sha256_hex(&leaf);
                    let url = format!("{agent}/{token}/{check}");
                    let r = node
                        .run(&node.microk8s, &["join", &url, "--worker"])
                        .map_err(|e| Failure::Retry(redact(&e.to_string())))?;
                    if r.ok {
                        return Ok((agent.clone(), why));
                    }
                    why.push(format!(
                        "microk8s join through {agent} failed (exit {}): {}",
                        r.code.map(|c| c.to_string()).unwrap_or_else(|| "signal".into()),
                        redact(r.output.lines().last().unwrap_or(""))
                    ));
                }
                Err(Failure::Retry(why.join("; ")))
            })?;
            let (via, skipped) = via;
            for why in skipped {
                self.say("join", &format!("skipped: {why}"));
            }
            self.say("join", &format!("joined as a worker through the cluster-agent at {via}"));
        }
        match self.remote_ca_pin() {
            Some(p) if p == plan.ca.pin => {}
            other => {
                return Err(Stop::Fatal(format!(
                    "after the join, certs/ca.remote.crt is not the pinned cluster CA (pin {}, expected {}): \
                     the control plane that answered is not this cluster's",
                    other.unwrap_or_else(|| "none".into()),
                    plan.ca.pin
                )))
            }
        }
        let changed = self.apply_args(plan)?;
        self.say(
            "join",
            &format!("CA pin verified; our kubelet and kube-proxy arguments applied ({changed} file(s) changed)"),
        );
        self.step_join_registration(plan)
    }

    /// The join restarted kubelite with the control plane's kubelet arguments, so
    /// its kubelet may have registered the Node already, without our labels and
    /// taints; a kubelet sets `--node-labels` and `--register-with-taints` only when
    /// it creates its Node (kubernetes pkg/kubelet/kubelet_node_status.go,
    /// `registerWithAPIServer`: an existing Node is only reconciled). So the kubelet
    /// is stopped (MicroK8s's proxy kept running, the Node is read through it), and
    /// what such a Node lacks is patched in with the kubelet's own credential; a
    /// Node not registered yet is registered with them by the kubelet started next.
    fn step_join_registration(&mut self, plan: &JoinPlan) -> StepResult {
        let node = self.node.clone();
        for unit in &plan.microk8s.start_services {
            // A join killed while it restarted the proxy left it stopped.
            let kubelet = unit.contains("kubelite") || unit.contains("kubelet");
            let verbs: &[&str] = if kubelet { &["stop"] } else { &["enable", "start"] };
            for verb in verbs {
                let r = node.systemctl(&[verb, unit])?;
                if !r.ok {
                    return Err(Stop::Retryable(format!("systemctl {verb} {unit}: {}", r.output)));
                }
            }
        }
        let cred = kubeconfig_credential(self.node, "credentials/kubelet.config").map_err(Stop::Retryable)?;
        let api = Api::with(plan, &plan.apiserver.url, &cred, "kubelet").map_err(|f| Stop::Fatal(f.to_string()))?;
        let existing = self.retry("join", plan, |_| api.node_object())?;
        let Some(obj) = existing else { return Ok(()) };
        let (labels, taints) = registration_args(&plan.kubelet_args);
        let mut add_labels = serde_json::Map::new();
        for (k, v) in &labels {
            if obj.pointer("/metadata/labels").and_then(|l| l.get(k)) != Some(&v.as_str().into()) {
                add_labels.insert(k.clone(), v.as_str().into());
            }
        }
        let mut all_taints = obj.pointer("/spec/taints").and_then(|t| t.as_array()).cloned().unwrap_or_default();
        let before = all_taints.len();
        for (k, v, e) in &taints {
            if !all_taints.iter().any(|t| t["key"] == k.as_str() && t["effect"] == e.as_str()) {
                let mut t = serde_json::json!({"key": k, "effect": e});
                if !v.is_empty() {
                    t["value"] = v.as_str().into();
                }
                all_taints.push(t);
            }
        }
        if add_labels.is_empty() && all_taints.len() == before {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {"labels": add_labels}, "spec": {"taints": all_taints}});
        self.retry("join", plan, |_| api.patch_node(&patch))?;
        self.say(
            "join",
            &format!(
                "the Node had registered without our labels or taints (kubelite restarted by the join): \
                 added {} label(s) and {} taint(s)",
                add_labels.len(),
                all_taints.len() - before
            ),
        );
        Ok(())
    }

    /// 6. The apiserver answers through the load balancer, and accepts our
    ///    credentials (kubelet's, then kube-proxy's). A 401/403 is retried for the
    ///    plan's grace period first: the token may be merged on the control plane
    ///    seconds later, or the balancer may have picked the one control-plane node
    ///    not merged yet.
    fn step_apiserver(&mut self, plan: &JoinPlan) -> StepResult {
        let api = Api::new(plan).map_err(|f| Stop::Fatal(f.to_string()))?;
        let grace = Duration::from_secs(plan.timing.auth_grace_secs);
        let mut rejected: Option<Instant> = None;
        self.retry("apiserver", plan, |_| graced(api.readyz(), &mut rejected, grace))?;
        let state = self.retry("apiserver", plan, |_| graced(api.node(), &mut rejected, grace))?;
        let what = match state {
            NodeState::Absent => "not registered yet",
            _ => "already registered",
        };
        if let Some(cred) = &plan.credentials.kube_proxy {
            let proxy =
                Api::with(plan, &plan.apiserver.url, cred, "kube-proxy").map_err(|f| Stop::Fatal(f.to_string()))?;
            let mut rejected: Option<Instant> = None;
            self.retry("apiserver", plan, |_| graced(proxy.node(), &mut rejected, grace))?;
        }
        let checked = if plan.credentials.kube_proxy.is_some() {
            "kubelet and kube-proxy credentials"
        } else {
            "kubelet credential"
        };
        self.say("apiserver", &format!("{} is ready and accepts the {checked}; node {what}", plan.apiserver.url));
        Ok(())
    }

    /// 7. Start the worker's services and wait until the Node is Ready.
    fn step_start(&mut self, plan: &JoinPlan) -> StepResult {
        let node = self.node.clone();
        // Evidence from this run: a heartbeat no older than the kubelet we start here.
        // A Node left Ready by a replaced machine of the same name is not.
        let since = unix_now();
        for unit in &plan.microk8s.start_services {
            for verb in ["enable", "restart"] {
                let r = node.systemctl(&[verb, unit])?;
                if !r.ok {
                    return Err(Stop::Retryable(format!("systemctl {verb} {unit}: {}", r.output)));
                }
            }
        }
        self.say("start", &format!("started {}", plan.microk8s.start_services.join(", ")));
        let api = if plan.join.is_some() {
            // The credential the join wrote (x509: data embedded on 1.28+, file paths before).
            let cred = kubeconfig_credential(self.node, "credentials/kubelet.config").map_err(Stop::Retryable)?;
            Api::with(plan, &plan.apiserver.url, &cred, "kubelet").map_err(|f| Stop::Fatal(f.to_string()))?
        } else {
            Api::new(plan).map_err(|f| Stop::Fatal(f.to_string()))?
        };
        self.retry("start", plan, |_| match api.node()? {
            NodeState::Ready(Some(beat)) if beat >= since => Ok(()),
            NodeState::Ready(Some(beat)) => Err(Failure::Retry(format!(
                "the Node is Ready, but its last heartbeat ({}) is older than the kubelet this run started ({}): \
                 waiting for this kubelet's own (a machine of the same name that was replaced?)",
                crate::clock::rfc3339(beat),
                crate::clock::rfc3339(since)
            ))),
            NodeState::Ready(None) => {
                Err(Failure::Retry("the Node is Ready but shows no heartbeat time; waiting for this kubelet's".into()))
            }
            NodeState::Absent => Err(Failure::Retry("the node has not registered yet".into())),
            NodeState::NotReady(why) => Err(Failure::Retry(format!("the node is registered but not Ready: {why}"))),
        })?;
        self.say(
            "start",
            &format!("node {} is Ready, with a heartbeat from the kubelet this run started", plan.node.name),
        );
        Ok(())
    }

    /// 8. Status, the stamp (last), then remove what the node no longer needs.
    fn step_finish(&mut self, plan: &JoinPlan) -> StepResult {
        self.status.result = "joined".into();
        self.status.last_error = None;
        self.save_status();
        write_atomic(&self.node.path(STAMP_FILE), stamp_text(plan).as_bytes(), 0o644)?;
        self.cleanup(plan);
        Ok(())
    }

    /// Remove the staged copies of secrets (the installed kubeconfigs keep theirs, 0600)
    /// and write the Cluster API stamp.
    fn cleanup(&mut self, plan: &JoinPlan) {
        // The plan keeps everything but the credentials (the installed kubeconfigs,
        // 0600, are the only copies left); the stamp is bound to what remains.
        let stripped = plan.stripped();
        if &stripped != plan && write_atomic(&self.plan_path, stripped.to_json().as_bytes(), 0o600).is_ok() {
            self.say("done", &format!("removed the credentials from {PLAN_PATH}"));
        }
        for f in plan.install.iter().filter(|f| f.secret) {
            if fs::remove_file(self.node.path(&f.staged)).is_ok() {
                self.say("done", &format!("removed {}", f.staged));
            }
        }
        let _ = write_atomic(&self.node.path(CAPI_STAMP), b"success", 0o644);
    }
}

/// Labels as (key, value).
type Labels = Vec<(String, String)>;
/// Taints as (key, value, effect).
type Taints = Vec<(String, String, String)>;

/// The labels and taints a kubelet registers with, from `--node-labels=` and
/// `--register-with-taints=` (`key[=value]:effect`) lines.
fn registration_args(args: &[String]) -> (Labels, Taints) {
    let (mut labels, mut taints) = (Vec::new(), Vec::new());
    for a in args {
        if let Some(v) = a.strip_prefix("--node-labels=") {
            for kv in v.trim_matches('"').split(',').filter(|s| !s.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                labels.push((k.to_string(), v.to_string()));
            }
        } else if let Some(v) = a.strip_prefix("--register-with-taints=") {
            for t in v.trim_matches('"').split(',').filter(|s| !s.is_empty()) {
                let (kv, effect) = t.rsplit_once(':').unwrap_or((t, ""));
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                taints.push((k.to_string(), v.to_string(), effect.to_string()));
            }
        }
    }
    (labels, taints)
}

/// The client credential of a kubeconfig the join wrote (`$SNAP_DATA/REL`):
/// `client-certificate-data`/`client-key-data` (1.28+ `create_worker_kubeconfigs`) or
/// `client-certificate`/`client-key` paths (1.23-1.27 `create_x509_kubeconfig`),
/// MicroK8s's absolute paths read under the node's root.
fn kubeconfig_credential(node: &Node, rel: &str) -> Result<Credential, String> {
    use base64::Engine as _;
    let text = fs::read_to_string(node.snap_data(rel)).map_err(|e| format!("cannot read {rel}: {e}"))?;
    let b64 = |v: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| format!("{rel}: bad base64"))
    };
    let file = |v: &str| fs::read_to_string(node.path(v.trim())).map_err(|e| format!("{rel}: cannot read {v}: {e}"));
    let (mut cert, mut key) = (None, None);
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once(':') else { continue };
        let v = v.trim().trim_matches('"');
        match k.trim() {
            "client-certificate-data" => cert = Some(b64(v)?),
            "client-key-data" => key = Some(b64(v)?),
            "client-certificate" => cert = Some(file(v)?),
            "client-key" => key = Some(file(v)?),
            _ => {}
        }
    }
    match (cert, key) {
        (Some(cert_pem), Some(key_pem)) => Ok(Credential::ClientCertificate { cert_pem, key_pem }),
        _ => Err(format!("{rel} holds no client certificate (not written by the join yet?)")),
    }
}

fn save_status(node: &Node, status: &mut Status) {
    status.updated_at = unix_now();
    let mut text = serde_json::to_string_pretty(status).unwrap_or_default();
    text.push('\n');
    // Losing a status update is not worth failing the join for.
    let _ = write_atomic(&node.path(STATUS_FILE), text.as_bytes(), 0o644);
}

/// The completion stamp: bound to the node's name and the plan (credentials aside).
/// What kind of archive a file is, from its first bytes (gzip, xz, bzip2, zstd,
/// zip, tar), or `None` for anything else (a program).
fn archive_kind(path: &Path) -> Option<&'static str> {
    let mut head = [0u8; 512];
    let mut f = fs::File::open(path).ok()?;
    let n = std::io::Read::read(&mut f, &mut head).ok()?;
    let head = &head[..n];
    let kinds: [(&[u8], &str); 5] = [
        (b"\x1f\x8b", "a gzip archive"),
        (b"\xfd7zXZ\x00", "an xz archive"),
        (b"BZh", "a bzip2 archive"),
        (b"\x28\xb5\x2f\xfd", "a zstd archive"),
        (b"PK\x03\x04", "a zip archive"),
    ];
    if let Some((_, kind)) = kinds.iter().find(|(magic, _)| head.starts_with(magic)) {
        return Some(kind);
    }
    (head.len() >= 262 && &head[257..262] == b"ustar").then_some("a tar archive")
}

fn stamp_text(plan: &JoinPlan) -> String {
    format!("node {}\nplan {}\n", plan.node.name, plan.identity())
}

/// A 401/403 (the only fatal answers of a Node read) is retried until `grace` has
/// passed since the first one.
fn graced<T>(r: Result<T, Failure>, first: &mut Option<Instant>, grace: Duration) -> Result<T, Failure> {
    match r {
        Err(Failure::Fatal(m)) => {
            let since = *first.get_or_insert_with(Instant::now);
            if since.elapsed() < grace {
                Err(Failure::Retry(format!("{m} [retrying for up to {}s]", grace.as_secs())))
            } else {
                Err(Failure::Fatal(m))
            }
        }
        other => other,
    }
}

/// The track of a channel or a tracking column: `1.30/stable` -> `1.30`.
fn track(channel: &str) -> &str {
    channel.split('/').next().unwrap_or(channel)
}

/// The Tracking column of `snap list microk8s`
/// (`Name  Version  Rev  Tracking  Publisher  Notes`).
fn tracking_of(list: &str) -> Option<String> {
    let line = list.lines().find(|l| l.starts_with("microk8s "))?;
    line.split_whitespace().nth(3).map(str::to_string)
}

fn sha256_file(p: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(p)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}
