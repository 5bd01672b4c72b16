//! The cluster-agent's launch configurations (1.27+).

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::daemons::write_status;
use super::join_py::redact_connection;
use super::state::Ctx;
use super::systemd::snap_unit;
use super::SNAP_COMMON;

/// The cluster-agent's launch-configuration handler (canonical/microk8s-cluster-agent
/// 1.30:cmd/cluster-agent.go:L47-95): on every tick (5 s, the minimum; the first
/// after one interval) it applies each `$SNAP_COMMON/etc/launcher/*.yaml`
/// ([`apply_launch_config`]) and renames it `.applied` on success; a failed file
/// (a failed join included) is retried whole on the next tick, forever. The model
/// ticks every `launcherTickMs` and keeps `launcher.json`: {applied: [...],
/// failures: N, lastError}.
pub(super) fn launcher(ctx: &Ctx) {
    let dir = ctx.root.join(SNAP_COMMON).join("etc/launcher");
    let tick = Duration::from_millis(ctx.n("launcherTickMs"));
    let mut failures = 0u64;
    let mut applied: Vec<String> = Vec::new();
    let mut last_error = Value::Null;
    loop {
        std::thread::sleep(tick);
        let mut files: Vec<PathBuf> =
            fs::read_dir(&dir).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
        files.sort();
        for file in files {
            let result = fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|text| apply_launch_config(ctx, &text, false));
            if let Err(e) = result {
                failures += 1;
                last_error = json!(format!("Failed to apply configuration file {}: {e}", file.display()));
                continue;
            }
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            if fs::rename(&file, file.with_file_name(format!("{name}.applied"))).is_ok() {
                ctx.event(&format!("cluster-agent: Successfully applied {}", file.display()));
                applied.push(name);
            }
        }
        write_status(ctx, "launcher.json", json!({"applied": applied, "failures": failures, "lastError": last_error}));
    }
}

/// `k8sinit.ParseMultiPartConfiguration` then `Launcher.Apply`
/// (CA 1.30:pkg/k8sinit/schema.go:L166-223, apply.go:L18-121), for the fields the
/// model knows: the documents in order, the first failing one ends it ("failed to
/// apply config part N"); within one, addons (not pre-init), the service
/// arguments, then the join, last (not pre-init); the services whose arguments
/// changed restarted once, after all documents (not pre-init).
///
/// - Addons: enabling one fails on a clustered node (`microk8s enable` exits 1
///   there, 1.30:scripts/wrappers/enable.py:L32, `is_cluster_locked`,
///   1.30:scripts/wrappers/common/utils.py:L181-185), and with no local control
///   plane there is nothing to enable it in.
/// - `extraKubeAPIServerArgs`, `extraKubeletArgs`, `extraKubeProxyArgs`:
///   `UpdateServiceArguments` on `args/<file>` (CA 1.30:pkg/snap/services.go:L39-107);
///   a change marks `kubelite` for restart (apply.go:L74-76, L95-101).
/// - `join: {url, worker}`: `$SNAP/microk8s-join.wrapper URL [--worker]`
///   (CA 1.30:pkg/snap/snap.go:L431-440), here the model's `microk8s join`; a
///   non-zero exit fails the document.
pub(super) fn apply_launch_config(ctx: &Ctx, text: &str, pre_init: bool) -> Result<(), String> {
    use serde::Deserialize as _;
    let mut parts = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = serde_yaml::Value::deserialize(doc).map_err(|e| format!("failed to parse configuration: {e}"))?;
        if !v.is_null() {
            parts.push(v);
        }
    }
    let mut restart: Vec<&str> = Vec::new();
    for (idx, part) in parts.iter().enumerate() {
        apply_part(ctx, part, pre_init, &mut restart).map_err(|e| format!("failed to apply config part {idx}: {e}"))?;
    }
    if !pre_init {
        for svc in restart {
            ctx.restart_service(svc);
        }
    }
    Ok(())
}

fn apply_part(
    ctx: &Ctx,
    part: &serde_yaml::Value,
    pre_init: bool,
    restart: &mut Vec<&'static str>,
) -> Result<(), String> {
    let enables = part.get("addons").and_then(|a| a.as_sequence()).is_some_and(|a| !a.is_empty());
    if !pre_init && enables && (ctx.lock("clustered.lock") || ctx.running(&snap_unit("kubelite")).is_none()) {
        return Err("failed to reconcile addons: This MicroK8s deployment is acting as a node in a cluster.".into());
    }
    for (key, file) in [
        ("extraKubeAPIServerArgs", "kube-apiserver"),
        ("extraKubeletArgs", "kubelet"),
        ("extraKubeProxyArgs", "kube-proxy"),
    ] {
        let Some(map) = part.get(key).and_then(|m| m.as_mapping()) else { continue };
        let mut updates: Vec<(String, Option<String>)> = Vec::new();
        for (k, v) in map {
            let k = k.as_str().ok_or_else(|| format!("{key}: a key is not a string"))?.to_string();
            let v = match v {
                serde_yaml::Value::Null => None,
                serde_yaml::Value::String(s) => Some(s.clone()),
                serde_yaml::Value::Number(n) => Some(n.to_string()),
                serde_yaml::Value::Bool(b) => Some(b.to_string()),
                _ => return Err(format!("{key}: {k} is not a string")),
            };
            updates.push((k, v));
        }
        if ctx.update_service_arguments(file, &updates) && !restart.contains(&"kubelite") {
            restart.push("kubelite");
        }
    }
    if pre_init {
        return Ok(());
    }
    let join = part.get("join");
    let url = join.and_then(|j| j.get("url")).and_then(|u| u.as_str()).unwrap_or("");
    if url.is_empty() {
        return Ok(());
    }
    let worker = join.and_then(|j| j.get("worker")).and_then(|w| w.as_bool()).unwrap_or(false);
    let mut args = vec!["microk8s".to_string(), "join".into(), url.to_string()];
    if worker {
        args.push("--worker".into());
    }
    let shown = format!("{}{}", redact_connection(url), if worker { " --worker" } else { "" });
    ctx.append("calls.log", &format!("cluster-agent: $SNAP/microk8s-join.wrapper {shown}"));
    let out = Command::new(&ctx.bin)
        .arg("--state")
        .arg(&ctx.dir)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("failed to join cluster: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "failed to join cluster: failed to execute microk8s join command: {} ({})",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}
