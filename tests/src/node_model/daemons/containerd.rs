//! The real containerd ([`RealPrograms`](crate::node_model::RealPrograms)).

use std::fs;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::spawn_real;
use crate::node_model::state::Ctx;
use crate::node_model::SNAP_COMMON;

/// The snap's containerd, as [`RealPrograms`] describes: its configuration, the
/// CNI configuration, then the sandbox image imported (`ctr images import`).
pub(super) fn real_containerd(ctx: &Arc<Ctx>) -> Option<std::process::Child> {
    let real = &ctx.state["real"];
    let sc = ctx.root.join(SNAP_COMMON);
    let sock = sc.join("run/containerd.sock");
    let _ = fs::create_dir_all(sc.join("run"));
    let cni = ctx.snap_data("args/cni-network");
    let _ = fs::create_dir_all(&cni);
    let _ = fs::create_dir_all(ctx.snap_data("opt/cni/bin"));
    let conflist = json!({"cniVersion": "1.0.0", "name": "mk8s-test", "plugins": [
        {"type": "bridge", "bridge": real["cniBridge"], "isGateway": false, "ipMasq": false,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": real["podSubnet"]}]],
                  "dataDir": sc.join("var/lib/cni/networks").display().to_string()}},
        {"type": "loopback"}]});
    let _ = fs::write(cni.join("10-mk8s-test.conflist"), conflist.to_string());
    let config = format!(
        "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n[grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{pause}\"\n  stream_server_address = \"{ip}\"\n  stream_server_port = \"0\"\n  restrict_oom_score_adj = true\n  netns_mounts_under_state_dir = true\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n    snapshotter = \"overlayfs\"\n    default_runtime_name = \"runc\"\n    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n      runtime_type = \"io.containerd.runc.v2\"\n      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n        SystemdCgroup = false\n        Root = \"{state}/runc\"\n  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n    bin_dir = \"/usr/lib/cni\"\n    conf_dir = \"{cni}\"\n    max_conf_num = 1\n",
        root = sc.join("var/lib/containerd").display(),
        state = sc.join("run/containerd").display(),
        sock = sock.display(),
        pause = real["pauseRef"].as_str().unwrap_or(""),
        ip = ctx.s("nodeIP"),
        cni = cni.display(),
    );
    let path = ctx.snap_data("args/containerd.toml");
    let _ = fs::write(&path, config);
    let child = spawn_real(ctx, "containerd", Command::new("containerd").arg("--config").arg(&path))?;
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let o = Command::new("ctr")
            .arg("-a")
            .arg(&sock)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(real["pauseTar"].as_str().unwrap_or(""))
            .stdin(Stdio::null())
            .output();
        match o {
            Ok(o) if o.status.success() => {
                ctx.event("containerd: the sandbox image is imported");
                break;
            }
            Ok(o) if Instant::now() > end => {
                ctx.event(&format!(
                    "containerd: cannot import the sandbox image: {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
                break;
            }
            Err(e) => {
                ctx.event(&format!("containerd: no ctr: {e}"));
                break;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    Some(child)
}
