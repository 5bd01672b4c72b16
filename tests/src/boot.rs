//! The real boot tier: a debootstrapped Debian bookworm root, cached between runs,
//! booted with `systemd-nspawn --boot` in a network namespace of its own that
//! also holds the simulated control plane (started from the test process on a
//! thread that entered the namespace, see [`Netns::run`]).
//!
//! The image is generic (what a cloud image has: systemd, cloud-init, HAProxy);
//! everything that makes the node a worker comes from the user-data in its NoCloud
//! seed. Each machine boots an overlay of the cached root, so tests never change
//! the cache and a reboot is a second boot of the same overlay.
//!
//! Needs root, `debootstrap`, `systemd-nspawn` (systemd-container), `ip`
//! (iproute2), `journalctl` (systemd) and, to run a command inside a machine,
//! `nsenter` (util-linux): a missing tool fails the test.

use std::fs;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::require;

/// What the image holds beyond debootstrap's minbase. `python3-cffi-backend`:
/// bookworm's python3-cryptography (cloud-init) needs it and minbase skips it.
/// `openssh-server` and `sudo`, as a cloud image has them: Packer builds over SSH.
pub const PACKAGES: &[&str] = &[
    "openssh-server",
    "sudo",
    "systemd",
    "systemd-sysv",
    "dbus",
    "cloud-init",
    "python3-cffi-backend",
    "haproxy",
    "iproute2",
    // The real kube-proxy's (iptables-nft, as Debian's default).
    "iptables",
    "ca-certificates",
    "procps",
];
pub const SUITE: &str = "bookworm";
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// Bump when [`prepare_image`] changes (part of the cache key).
const IMAGE_REVISION: &str = "3";

/// Where cached roots live (`MK8S_BOOT_CACHE` overrides).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("MK8S_BOOT_CACHE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/cache/mk8s-worker"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The boot tier runs as root (CI does); anything else is a failure, not a skip.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the real boot tier needs root (debootstrap, netns, systemd-nspawn); CI runs as root"
    );
}

/// The cache key: suite, mirror, packages and the image revision.
pub fn image_key() -> String {
    let text = format!("{SUITE}\n{MIRROR}\n{}\n{IMAGE_REVISION}\n", PACKAGES.join(","));
    let mut child = Command::new(require("sha256sum"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..16].to_string()
}

/// An exclusive lock on a file, released on drop.
struct Lock(fs::File);

impl Lock {
    fn take(path: &Path) -> Lock {
        let f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).unwrap();
        rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive)
            .unwrap_or_else(|e| panic!("flock {}: {e}", path.display()));
        Lock(f)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0.as_fd(), rustix::fs::FlockOperation::Unlock);
    }
}

/// The cached Debian root (built once per key; about 2 minutes and 100 MB of
/// downloads from the Debian mirror the first time).
pub fn debian_root() -> PathBuf {
    require_root();
    let cache = cache_dir();
    fs::create_dir_all(&cache).unwrap();
    let dir = cache.join(format!("debian-{SUITE}-{}", image_key()));
    let root = dir.join("root");
    let _lock = Lock::take(&cache.join(".lock"));
    if dir.join("ready").exists() {
        return root;
    }
    let debootstrap = require("debootstrap");
    let tmp = cache.join(format!(".building-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).unwrap();
    let started = Instant::now();
    let out = Command::new(&debootstrap)
        .args(["--variant=minbase", &format!("--include={}", PACKAGES.join(",")), SUITE])
        .arg(tmp.join("root"))
        .arg(MIRROR)
        .stdin(Stdio::null())
        .output()
        .expect("debootstrap runs");
    assert!(
        out.status.success(),
        "debootstrap failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    prepare_image(&tmp.join("root"));
    fs::write(tmp.join("ready"), format!("built in {:?}\n", started.elapsed())).unwrap();
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&tmp, &dir).unwrap();
    // Roots of other keys are stale: this one replaces them.
    for e in fs::read_dir(&cache).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with("debian-") && e.path() != dir {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    root
}

/// What turns a debootstrapped root into a generic cloud image for a container:
/// NoCloud first, no network configuration by cloud-init (the namespace has only
/// loopback), no getty on the console, no stock HAProxy instance, a fresh
/// machine id on first boot, the hostname from the seed.
fn prepare_image(root: &Path) {
    let cfg = root.join("etc/cloud/cloud.cfg.d/90-mk8s-boot-tier.cfg");
    fs::write(
        cfg,
        "# mk8s-worker boot tier: the seed is NoCloud; the namespace has loopback only.\ndatasource_list: [NoCloud, None]\nnetwork: {config: disabled}\n# minbase has no locales package: the C.UTF-8 of libc-bin.\nlocale: C.UTF-8\n",
    )
    .unwrap();
    let _ = fs::remove_file(root.join("etc/hostname"));
    fs::write(root.join("etc/machine-id"), "").unwrap();
    fs::create_dir_all(root.join("var/log/journal")).unwrap();
    for unit in ["console-getty.service", "getty@.service", "apt-daily.timer", "apt-daily-upgrade.timer"] {
        let link = root.join("etc/systemd/system").join(unit);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", link).unwrap();
    }
    let _ = fs::remove_file(root.join("etc/systemd/system/multi-user.target.wants/haproxy.service"));
    let _ = fs::remove_dir_all(root.join("var/cache/apt/archives"));
}

/// A network namespace (`ip netns add`) with loopback up; deleted on drop.
pub struct Netns {
    pub name: String,
    pub path: PathBuf,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        require_root();
        let ip = require("ip");
        let _ = Command::new(&ip).args(["netns", "del", name]).stderr(Stdio::null()).status();
        run(Command::new(&ip).args(["netns", "add", name]));
        run(Command::new(&ip).args(["-n", name, "link", "set", "lo", "up"]));
        Netns { name: name.to_string(), path: PathBuf::from("/run/netns").join(name) }
    }

    /// Give the namespace an address that is not loopback (a /32 on a bridge of
    /// its own), for a control plane the way a cluster has it: the `kubernetes`
    /// Service's endpoints refuse loopback addresses, and kube-proxy programs only
    /// a Service that has endpoints.
    pub fn add_address(&self, address: &str) {
        let ip = require("ip");
        let _ = Command::new(&ip).args(["-n", &self.name, "link", "add", "mk8s-cp", "type", "bridge"]).status();
        run(Command::new(&ip).args(["-n", &self.name, "link", "set", "mk8s-cp", "up"]));
        run(Command::new(&ip).args(["-n", &self.name, "addr", "add", &format!("{address}/32"), "dev", "mk8s-cp"]));
    }

    /// Run `f` on a thread inside the namespace: sockets it opens (listeners, and
    /// the threads it spawns) live there.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                let ns = fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
                // setns(2): this thread only.
                rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
                    .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

/// A container: an overlay of a cached root (changes go to `upper`), booted with
/// `systemd-nspawn --boot` in a given network namespace.
pub struct Machine {
    pub name: String,
    /// The container's `/`, as seen from the host.
    pub root: PathBuf,
    dir: PathBuf,
    netns: PathBuf,
    child: Option<Child>,
    boots: u32,
}

impl Machine {
    /// Mount `dir/root` = overlay(lower: `image`, upper: `dir/upper`).
    pub fn new(image: &Path, dir: &Path, name: &str, netns: &Netns) -> Machine {
        require_root();
        require("systemd-nspawn");
        require("journalctl");
        let (upper, work, root) = (dir.join("upper"), dir.join("work"), dir.join("root"));
        for d in [&upper, &work, &root] {
            fs::create_dir_all(d).unwrap();
        }
        run(Command::new(require("mount"))
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("lowerdir={},upperdir={},workdir={}", image.display(), upper.display(), work.display()))
            .arg(&root));
        Machine {
            name: name.to_string(),
            root,
            dir: dir.to_path_buf(),
            netns: netns.path.clone(),
            child: None,
            boots: 0,
        }
    }

    /// A path inside the container.
    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// Boot (`systemd-nspawn --boot`; no systemd on the host: not registered,
    /// kept in the caller's cgroup). The console goes to `console-N.log`.
    pub fn boot(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.boots += 1;
        let log = fs::File::create(self.dir.join(format!("console-{}.log", self.boots))).unwrap();
        let child = Command::new(require("systemd-nspawn"))
            .args(["--boot", "--register=no", "--keep-unit", "--console=pipe", "--quiet"])
            // The machine name is per run (nspawn keeps state under it); the
            // container's hostname is the node's.
            .arg(format!("--machine={}-{}", self.name, std::process::id()))
            .arg(format!("--hostname={}", self.name))
            .arg("-D")
            .arg(&self.root)
            .arg(format!("--network-namespace-path={}", self.netns.display()))
            // The node's root administers its own network (kube-proxy's iptables),
            // as on a worker VM; nspawn keeps CAP_NET_ADMIN only when asked. The
            // namespace is the container's alone.
            .arg("--capability=CAP_NET_ADMIN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn starts");
        self.child = Some(child);
    }

    /// Whether the container is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Power off: nspawn turns SIGTERM into an orderly shutdown of the container;
    /// SIGKILL after `timeout`. Returns how long it took and whether the container
    /// powered off by itself (nspawn exits 0).
    pub fn stop(&mut self, timeout: Duration) -> (Duration, bool) {
        let started = Instant::now();
        let Some(mut child) = self.child.take() else { return (Duration::ZERO, true) };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        while started.elapsed() < timeout {
            if let Some(st) = child.try_wait().ok().flatten() {
                return (started.elapsed(), st.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        (started.elapsed(), false)
    }

    /// Wait for a file in the container; panics with `story` after `timeout`.
    pub fn wait_for(&mut self, p: &str, timeout: Duration, story: impl Fn(&Machine) -> String) -> Duration {
        let started = Instant::now();
        while !self.path(p).exists() {
            if started.elapsed() > timeout || !self.running() {
                let why = if self.running() { "timed out" } else { "the container stopped" };
                panic!("{}: no {p} after {:?} ({why})\n{}", self.name, started.elapsed(), story(self));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        started.elapsed()
    }

    /// Run a command inside the running container, as root with its mount, pid,
    /// network, UTS and IPC namespaces and its root (`nsenter` into its init: the
    /// machine is not registered with machined, so no `machinectl shell`): its
    /// `systemctl` talks to the container's systemd. None while it is not running.
    pub fn exec(&mut self, args: &[&str]) -> Option<std::process::Output> {
        let pid = self.init_pid()?;
        Command::new(require("nsenter"))
            .args(["--target", &pid.to_string(), "--mount", "--uts", "--ipc", "--net", "--pid", "--root", "--wd"])
            .arg("--")
            .args(args)
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .output()
            .ok()
    }

    /// The container's PID 1 as the host sees it: the descendant of nspawn whose
    /// `NSpid` ends in 1.
    fn init_pid(&mut self) -> Option<u32> {
        if !self.running() {
            return None;
        }
        let mut todo = vec![self.child.as_ref()?.id()];
        while let Some(pid) = todo.pop() {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap_or("");
            let ids: Vec<&str> = nspid.split_whitespace().collect();
            if ids.len() > 1 && ids.last() == Some(&"1") {
                return Some(pid);
            }
            let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { continue };
            for t in tasks.flatten() {
                let children = fs::read_to_string(t.path().join("children")).unwrap_or_default();
                todo.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
            }
        }
        None
    }

    /// What nspawn printed during the last boot.
    pub fn console(&self) -> String {
        fs::read_to_string(self.dir.join(format!("console-{}.log", self.boots))).unwrap_or_default()
    }

    /// The container's journal (persistent, under its /var/log/journal), optionally
    /// for some units, last `lines` lines.
    pub fn journal(&self, units: &[&str], lines: usize) -> String {
        let mut cmd = Command::new(require("journalctl"));
        cmd.arg("-D").arg(self.path("/var/log/journal")).args(["--no-pager", "-o", "short-monotonic", "-n"]);
        cmd.arg(lines.to_string());
        for u in units {
            cmd.args(["-u", u]);
        }
        match cmd.output() {
            Ok(o) => String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
            Err(e) => format!("journalctl: {e}"),
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(20));
        let _ = Command::new("umount").arg("-l").arg(&self.root).status();
    }
}
