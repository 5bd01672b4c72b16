//! Substitute `snap` and `systemctl` executables for bootstrap scenarios. They
//! record every call, and `snap install` lays out the snap's data directory the
//! way MicroK8s's install hook does (args from `microk8s-resources/default-args`).
//! Switches are files in the fake directory:
//! - `store-down`: `snap install` fails like a node without network to the store;
//! - `kill-at` (a number N): the Nth fake command SIGKILLs its caller first;
//! - `download`: the path of the file the substitute `curl` "downloads";
//! - `on-start-UNIT` (executable): run when `systemctl enable --now UNIT` is called;
//!   `on-VERB-UNIT`: run when `systemctl VERB UNIT` is called.
//!
//! A `systemctl restart` of kubelite or kubelet touches `kubelet-started`, which a
//! test thread uses to stand in for kubelet registering the Node.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct Fakes {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub snap: PathBuf,
    pub systemctl: PathBuf,
    pub curl: PathBuf,
}

const PRELUDE: &str = r#"#!/bin/sh
FAKE=@FAKE@
ROOT=@ROOT@
echo "$(basename "$0") $*" >> "$FAKE/calls.log"
n=$(( $(cat "$FAKE/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$FAKE/count"
if [ -f "$FAKE/kill-at" ] && [ "$(cat "$FAKE/kill-at")" = "$n" ]; then
  kill -9 "$PPID"
  exit 137
fi
"#;

const SNAP: &str = r#"
sd="$ROOT/var/snap/microk8s/current"
case "$1" in
  list)
    if [ -n "$2" ] && [ "$2" != microk8s ]; then
      grep -qx "$2" "$FAKE/snaps" 2>/dev/null && { echo "$2  1  2015  -  canonical*  base"; exit 0; }
      echo "error: no matching snaps installed" >&2; exit 1
    fi
    # The Tracking column is the channel of the install ("-" for a local file).
    if [ -d "$sd" ]; then echo "Name      Version  Rev   Tracking  Publisher   Notes"; echo "microk8s  v1.x     1234  $(cat "$FAKE/tracking" 2>/dev/null || echo -)  canonical*  classic"; exit 0; fi
    echo "error: no matching snaps installed" >&2; exit 1 ;;
  wait) exit 0 ;;
  refresh)
    # snapd 2.58+: `refresh --hold NAME` holds the snap's automatic refreshes.
    if [ "$2" = --hold ] && [ "$3" = microk8s ] && [ -d "$sd" ]; then
      : > "$FAKE/refresh-held"; echo "General refreshes of \"microk8s\" held indefinitely"; exit 0
    fi ;;
  ack)
    [ -f "$2" ] || { echo "error: cannot read assertion file: $2" >&2; exit 1; }
    echo "$2" >> "$FAKE/acked"; exit 0 ;;
  install)
    local_file=""
    case "$2" in
      *.snap)
        local_file="$2"
        grep -qxF "${2%.snap}.assert" "$FAKE/acked" 2>/dev/null || { echo "error: cannot find signatures with metadata for snap \"$2\"" >&2; exit 1; }
        name=$(basename "$2"); name=${name%%_*}
        if [ "$name" != microk8s ]; then
          echo "$name" >> "$FAKE/snaps"; echo "$name installed"; exit 0
        fi
        # snapd installs a missing base from the store; without the store it cannot
        # (canonical/snapd tests/main/base-snaps/task.yaml).
        if [ -f "$FAKE/store-down" ] && ! grep -q '^core' "$FAKE/snaps" 2>/dev/null; then
          echo "error: cannot perform the following tasks: - Ensure prerequisites for \"microk8s\" are available (cannot install prerequisite: no base snap, the store is unreachable)" >&2
          exit 1
        fi ;;
    esac
    if [ -z "$local_file" ] && [ -f "$FAKE/store-down" ]; then
      echo 'error: cannot install "microk8s": Post "https://api.snapcraft.io/v2/snaps/refresh": dial tcp: lookup api.snapcraft.io: Temporary failure in name resolution' >&2
      exit 1
    fi
    if [ -z "$local_file" ]; then echo "$5" > "$FAKE/tracking"; fi
    mkdir -p "$sd/args" "$sd/certs" "$sd/credentials" "$sd/var/lock"
    # 1.25+ install hooks mark the apiserver proxy not expected to start.
    case "$5" in 1.2[5-9]/*|1.[3-9][0-9]/*|latest/*) touch "$sd/var/lock/no-apiserver-proxy" ;; esac
    cat > "$sd/args/kubelet" <<'EOF'
--kubeconfig=${SNAP_DATA}/credentials/kubelet.config
--cert-dir=${SNAP_DATA}/certs
--client-ca-file=${SNAP_DATA}/certs/ca.crt
--anonymous-auth=false
--root-dir=${SNAP_COMMON}/var/lib/kubelet
--fail-swap-on=false
--node-labels="microk8s.io/cluster=true,node.kubernetes.io/microk8s-controlplane=microk8s-controlplane"
--authentication-token-webhook=true
--read-only-port=0
EOF
    cat > "$sd/args/kube-proxy" <<'EOF'
--kubeconfig=${SNAP_DATA}/credentials/proxy.config
--cluster-cidr=10.1.0.0/16
--healthz-bind-address=127.0.0.1
--profiling=false
EOF
    chmod 0660 "$sd/args/kubelet" "$sd/args/kube-proxy"
    echo "local node CA" > "$sd/certs/ca.crt"
    echo "microk8s (1.30/stable) v1.30.0 from Canonical installed"
    exit 0 ;;
esac
echo "fake snap: unhandled: $*" >&2
exit 1
"#;

const SYSTEMCTL: &str = r#"
# on-VERB-UNIT hooks (on-restart-UNIT, ...); `enable --now UNIT` runs on-start-UNIT.
if [ $# -ge 2 ] && [ -x "$FAKE/on-$1-$2" ]; then "$FAKE/on-$1-$2"; fi
case "$1" in
  restart)
    case "$2" in
      snap.microk8s.daemon-kubelite.service|snap.microk8s.daemon-kubelet.service) touch "$FAKE/kubelet-started" ;;
    esac ;;
  enable)
    if [ "$2" = "--now" ] && [ -x "$FAKE/on-start-$3" ]; then "$FAKE/on-start-$3"; fi ;;
esac
exit 0
"#;

/// `curl ... -o FILE URL`: "downloads" the file named by `download` (a path), or
/// fails like an unreachable host when there is none.
const CURL: &str = r#"
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift 2 ;;
    *) shift ;;
  esac
done
if [ ! -f "$FAKE/download" ]; then echo "curl: (6) Could not resolve host" >&2; exit 6; fi
cp "$(cat "$FAKE/download")" "$out"
"#;

impl Fakes {
    /// What the substitute curl hands out.
    pub fn serve_download(&self, file: &Path) {
        fs::write(self.dir.join("download"), file.display().to_string()).unwrap();
    }

    pub fn new(dir: &Path, root: &Path) -> Fakes {
        fs::create_dir_all(dir).unwrap();
        fs::create_dir_all(root).unwrap();
        let write = |name: &str, body: &str| {
            let p = dir.join(name);
            let text = PRELUDE.replace("@FAKE@", &sh(dir)).replace("@ROOT@", &sh(root)) + body;
            fs::write(&p, text).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let snap = write("snap", SNAP);
        let systemctl = write("systemctl", SYSTEMCTL);
        let curl = write("curl", CURL);
        Fakes { dir: dir.to_path_buf(), root: root.to_path_buf(), snap, systemctl, curl }
    }

    /// Every call so far, as "program args...".
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("calls.log")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    pub fn clear_calls(&self) {
        let _ = fs::remove_file(self.dir.join("calls.log"));
        let _ = fs::remove_file(self.dir.join("count"));
        let _ = fs::remove_file(self.dir.join("kubelet-started"));
    }

    pub fn set_store_down(&self, down: bool) {
        toggle(&self.dir.join("store-down"), down);
    }

    pub fn kill_at(&self, n: Option<u32>) {
        match n {
            Some(n) => fs::write(self.dir.join("kill-at"), n.to_string()).unwrap(),
            None => toggle(&self.dir.join("kill-at"), false),
        }
    }

    pub fn kubelet_started(&self) -> bool {
        self.dir.join("kubelet-started").exists()
    }

    pub fn on_start(&self, unit: &str, script: &str) {
        self.on("start", unit, script);
    }

    /// Run `script` when `systemctl VERB UNIT` is called.
    pub fn on(&self, verb: &str, unit: &str, script: &str) {
        let p = self.dir.join(format!("on-{verb}-{unit}"));
        fs::write(&p, script).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn toggle(p: &Path, on: bool) {
    if on {
        fs::write(p, "").unwrap();
    } else {
        let _ = fs::remove_file(p);
    }
}

/// Single-quote a path for the scripts.
fn sh(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}
