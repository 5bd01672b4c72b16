//! The daemons: what a unit's wrapper decides when it starts, then the behaviour.

use std::fs;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::node_model::launcher::launcher;
use crate::node_model::state::Ctx;
use crate::node_model::systemd::{own_unit, snap_unit, SNAP_PREFIX};

mod containerd;
mod control_plane;
mod kube_proxy;
mod kubeconfig;
pub(super) mod kubelet;
pub(super) mod proxy;

use containerd::real_containerd;
use control_plane::control_plane;
use kube_proxy::start_kube_proxy;
use kubelet::{kubelet, real_kubelet};
use proxy::tcp_proxy;

/// What a wrapper decides when its daemon starts.
enum Decision {
    /// exit 0 with this message: the unit ends, "inactive".
    Exit(String),
    /// exit 1: the unit failed.
    Fail(String),
    Idle,
    /// kubelite: control plane on or off, kubelet and kube-proxy always.
    Kubelite {
        control_plane: bool,
    },
    /// 1.20 daemon-apiserver.
    Apiserver,
    Kubelet,
    KubeProxy,
    /// The cluster-agent; from 1.27 it also applies launch configurations.
    ClusterAgent,
    /// MicroK8s's own apiserver proxy (apiserver-proxy 1.25+, the snap's traefik
    /// 1.23-1.24): TCP from the apiserver port on 127.0.0.1 to provider.yaml's servers.
    Proxy,
    /// The real containerd ([`RealPrograms`]).
    Containerd,
}

fn decide(ctx: &Ctx, daemon: &str) -> Decision {
    let lock = |l: &str| ctx.lock(l);
    let r = ctx.row;
    if r.null_daemons.contains(&daemon) {
        // 1.22:WR/run-null-daemon:L8-15
        return if lock("lite.lock") {
            Decision::Exit("Will not run along with kubelite".into())
        } else {
            Decision::Fail("no lite.lock".into())
        };
    }
    match daemon {
        "containerd" if ctx.state["real"].is_object() => Decision::Containerd,
        "kubelite" => {
            // 1.22:WR/run-kubelite-with-args:L16-27; 1.30:WR/run-kubelite-with-args:L11-26:
            // clustered.lock is read here, at start, and written into args/kubelite.
            if !lock("lite.lock") {
                return Decision::Exit("kubelite will not run".into());
            }
            let control_plane = !lock("clustered.lock");
            let p = ctx.snap_data("args/kubelite");
            let text = fs::read_to_string(&p).unwrap_or_default();
            let line = format!("--start-control-plane={control_plane}");
            let mut lines: Vec<String> =
                text.lines().filter(|l| !l.starts_with("--start-control-plane=")).map(str::to_string).collect();
            // refresh_opt_in_local_config: replace the line, or insert it first (1.30:US:L116-128).
            lines.insert(0, line);
            let _ = fs::write(&p, lines.join("\n") + "\n");
            Decision::Kubelite { control_plane }
        }
        // 1.20:WR/run-apiserver-with-args:L12-16
        "apiserver" if lock("clustered.lock") => Decision::Exit("kube-apiserver will not run on a cluster node".into()),
        "apiserver" => Decision::Apiserver,
        // 1.20:WR/run-with-config-args:L12-19
        "controller-manager" | "scheduler" if lock("clustered.lock") => {
            Decision::Exit(format!("kube-{daemon} will not run on a cluster node"))
        }
        "kubelet" => Decision::Kubelet,
        "proxy" => Decision::KubeProxy,
        // 1.20:WR/apiservice-kicker:L12-16; 1.30:WR/apiservice-kicker:L9-13
        "apiserver-kicker" if lock("clustered.lock") => {
            Decision::Exit("api service kicker will not run on a cluster node".into())
        }
        // 1.30:WR/run-k8s-dqlite-with-args:L9-22 (exit_if_service_not_expected_to_start, 1.30:US:L47-54)
        "k8s-dqlite" if lock("no-k8s-dqlite") => Decision::Exit("k8s-dqlite is not expected to start".into()),
        "k8s-dqlite" if !ctx.snap_data("args/k8s-dqlite").exists() => Decision::Exit("no args/k8s-dqlite".into()),
        // 1.20:WR/run-etcd-with-args:L10-16
        "etcd" if lock("no-etcd") || lock("clustered.lock") => Decision::Exit("etcd will not run".into()),
        "flanneld" if lock("no-flanneld") => Decision::Exit("flanneld will not run".into()),
        // 1.24:WR/run-traefik-with-args:L9-20
        "traefik" if lock("no-traefik") || !ctx.snap_data("args/traefik").exists() => {
            Decision::Exit("traefik is not expected to start".into())
        }
        // 1.30:WR/run-cluster-agent-with-args:L16-18: no lock checks, on every node.
        "cluster-agent" => Decision::ClusterAgent,
        // A worker joined by `microk8s join --worker` (1.23-1.24): the snap's traefik
        // proxies 127.0.0.1:16443 to the servers of args/traefik/provider.yaml
        // (1.24:scripts/cluster/join.py:L767-794).
        "traefik" if ctx.snap_data("args/traefik/provider.yaml").exists() => Decision::Proxy,
        "apiserver-proxy" => {
            // 1.30:WR/run-apiserver-proxy-with-args:L7-26: no check of no-apiserver-proxy.
            if !lock("clustered.lock") {
                Decision::Exit("Not a worker node, exiting".into())
            } else if !ctx.snap_data("args/traefik").exists() || !ctx.snap_data("args/apiserver-proxy").exists() {
                Decision::Exit("no args/traefik or args/apiserver-proxy".into())
            } else if !ctx.snap_data("args/traefik/provider.yaml").exists() {
                // cluster-agent pkg/proxy/internal/config.go L34 (F5): it cannot load its config.
                Decision::Fail("apiserver-proxy: open args/traefik/provider.yaml: no such file or directory".into())
            } else {
                // It proxies `:16443` to the provider file's servers (cluster-agent
                // 1.30:pkg/proxy/proxy.go:L13-55; the refresh from the kubernetes
                // Endpoints every 30 s is not modelled).
                Decision::Proxy
            }
        }
        _ => Decision::Idle,
    }
}

pub(in crate::node_model) fn daemon(ctx: Ctx, unit: &str, restarted: bool) -> i32 {
    // Wait until the starter recorded our pid (so a quick exit can clear it).
    let me = std::process::id();
    let end = Instant::now() + if ctx.systemd() { Duration::ZERO } else { Duration::from_secs(2) };
    while fs::read_to_string(ctx.pid_file(unit)).ok().and_then(|t| t.trim().parse::<u32>().ok()) != Some(me)
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    watchdog(&ctx);
    let ctx = Arc::new(ctx);
    if restarted && !ctx.systemd() {
        // systemd's RestartSec before the new process starts.
        std::thread::sleep(Duration::from_millis(300));
    }
    let Some(name) = unit.strip_prefix(SNAP_PREFIX).and_then(|u| u.strip_suffix(".service")) else {
        return own_unit(&ctx, unit);
    };
    run(&ctx, unit, name, decide(&ctx, name))
}

/// A unit that ends: the event, and its pid file cleared if it is still ours.
fn ended(ctx: &Ctx, unit: &str, code: i32, msg: &str) -> i32 {
    ctx.event(&format!("{unit}: {msg}"));
    if fs::read_to_string(ctx.pid_file(unit)).ok().and_then(|t| t.trim().parse::<u32>().ok())
        == Some(std::process::id())
    {
        let _ = fs::remove_file(ctx.pid_file(unit));
    }
    code
}

/// What the wrapper decided: the unit ends, or its behaviour runs for as long as
/// the process lives.
fn run(ctx: &Arc<Ctx>, unit: &str, name: &str, decision: Decision) -> i32 {
    match decision {
        Decision::Exit(m) => ended(ctx, unit, 0, &format!("exited: {m}")),
        Decision::Fail(m) => ended(ctx, unit, 1, &format!("failed: {m}")),
        Decision::Idle => {
            ctx.event(&format!("{unit}: running"));
            park()
        }
        Decision::Apiserver => {
            ctx.event(&format!("{unit}: running the local control plane"));
            let _cp = control_plane(ctx);
            park()
        }
        Decision::Kubelet => {
            ctx.event(&format!("{unit}: running kubelet"));
            if ctx.lock("clustered.lock") && ctx.state["real"].is_object() {
                if let Some(child) = real_kubelet(ctx) {
                    return exits_with(ctx, unit, child);
                }
            } else {
                kubelet(ctx.clone());
            }
            park()
        }
        Decision::KubeProxy => {
            ctx.event(&format!("{unit}: running kube-proxy"));
            start_kube_proxy(ctx, unit);
            park()
        }
        Decision::Proxy => {
            if name == "apiserver-proxy" {
                if let Some(child) = proxy::real_apiserver_proxy(ctx) {
                    return exits_with(ctx, unit, child);
                }
            }
            ctx.event(&format!("{unit}: proxying the apiserver port"));
            tcp_proxy(ctx, name == "apiserver-proxy");
            park()
        }
        Decision::ClusterAgent => {
            ctx.event(&format!("{unit}: running"));
            if ctx.row.launch_config {
                launcher(ctx);
            }
            park()
        }
        Decision::Containerd => {
            ctx.event(&format!("{unit}: running the real containerd"));
            match real_containerd(ctx) {
                Some(child) => exits_with(ctx, unit, child),
                None => park(),
            }
        }
        Decision::Kubelite { control_plane: cp } => kubelite(ctx, unit, cp),
    }
}

/// kubelite: the local control plane if its wrapper said so, the kubelet and kube-proxy.
fn kubelite(ctx: &Arc<Ctx>, unit: &str, cp: bool) -> i32 {
    ctx.event(&format!("{unit}: running, --start-control-plane={cp}"));
    let _cp = cp.then(|| control_plane(ctx));
    // The real kubelet runs on a worker; a fresh install's kubelite (its
    // local control plane up) keeps the model's.
    let real = if !cp && ctx.state["real"].is_object() {
        real_kubelet(ctx)
    } else {
        kubelet(ctx.clone());
        None
    };
    start_kube_proxy(ctx, unit);
    if let Some(child) = real {
        return exits_with(ctx, unit, child);
    }
    if !(cp && ctx.row.separate_dqlite) {
        return park();
    }
    exit_when_the_datastore_goes(ctx, unit)
}

/// F1b: with its datastore (k8s-dqlite) gone, the control plane fails
/// (controller-manager leader election, `--leader-elect-renew-deadline=30s`
/// in 1.34:DA/kube-controller-manager) and kubelite exits; the unit is
/// restarted and its wrapper reads the locks again.
fn exit_when_the_datastore_goes(ctx: &Ctx, unit: &str) -> i32 {
    let delay = Duration::from_millis(ctx.n("crashDelayMs"));
    let dqlite = snap_unit("k8s-dqlite");
    let mut gone_since: Option<Instant> = None;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if ctx.running(&dqlite).is_some() {
            gone_since = None;
            continue;
        }
        let since = *gone_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= delay {
            ctx.event(&format!("{unit}: exited with an error: the datastore (k8s-dqlite) is gone; restarting"));
            if !ctx.systemd() {
                ctx.spawn_daemon(unit, true);
            }
            // Under the node's systemd, Restart=on-failure starts it again.
            return 1;
        }
    }
}

fn park() -> i32 {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A daemon never outlives its node: when the state directory is removed (the
/// test's temp dir), or after 15 minutes, it kills its own process group.
fn watchdog(ctx: &Ctx) {
    if ctx.systemd() {
        // The node's systemd owns the daemon's life (the container ends with it).
        return;
    }
    let dir = ctx.dir.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        while dir.join("model.json").exists() && start.elapsed() < Duration::from_secs(900) {
            std::thread::sleep(Duration::from_millis(500));
        }
        let me = std::process::id();
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{me}")]).status();
        std::process::exit(0);
    });
}

pub(in crate::node_model) fn write_status(ctx: &Ctx, file: &str, v: Value) {
    let tmp = ctx.dir.join(format!(".{file}.tmp"));
    if fs::write(&tmp, v.to_string()).is_ok() {
        let _ = fs::rename(tmp, ctx.dir.join(file));
    }
}

/// A real program's command line from its args file as the snap's wrapper passes
/// it (shell word splitting and quote removal, `${SNAP_DATA}`/`${SNAP_COMMON}`
/// expanded by `expand`): lines the pinned release rejects are dropped, and so are
/// lines setting one of `replaced`, whose values the caller appends.
fn wrapper_args(text: &str, expand: impl Fn(&str) -> String, replaced: &[&str]) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("--"))
        .filter(|l| crate::microk8s_args::dropped_by_kube_1_34(l).is_none())
        .filter(|l| !replaced.contains(&crate::microk8s_args::flag_name(l)))
        .map(|l| match crate::microk8s_args::split_arg(l) {
            (k, Some(v)) => format!("{k}={}", expand(&v)),
            (k, None) => k,
        })
        .collect()
}

/// A real program, in the daemon's process group (stopping the unit kills it),
/// its output in `logs/NAME.out`.
pub(super) fn spawn_real(ctx: &Ctx, name: &str, cmd: &mut Command) -> Option<std::process::Child> {
    let _ = fs::create_dir_all(ctx.dir.join("logs"));
    let out = fs::OpenOptions::new().create(true).append(true).open(ctx.dir.join("logs").join(format!("{name}.out")));
    let out = match out {
        Ok(f) => f,
        Err(e) => {
            ctx.event(&format!("{name}: cannot open its log: {e}"));
            return None;
        }
    };
    let err = out.try_clone().ok()?;
    match cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn() {
        Ok(c) => Some(c),
        Err(e) => {
            ctx.event(&format!("{name}: cannot start: {e}"));
            None
        }
    }
}

/// A unit whose real program exited: the unit fails and, as the snap's daemons
/// (`restart-condition: always`), is started again; a kubelet that found
/// containerd not ready yet exits, and kubelite restarts it so.
fn exits_with(ctx: &Arc<Ctx>, unit: &str, mut child: std::process::Child) -> i32 {
    let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
    ctx.event(&format!("{unit}: its program exited ({status}); restarting"));
    if !ctx.systemd() {
        ctx.spawn_daemon(unit, true);
    }
    1
}
