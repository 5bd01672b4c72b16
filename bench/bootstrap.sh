#!/usr/bin/env bash
# Size and memory of mk8s-bootstrap, as shipped (static musl, release profile).
#   bench/bootstrap.sh            # 60 s against a dead apiserver
#   DURATION=20 bench/bootstrap.sh
# Prints: stripped size, gzip -9 size, the gz+b64 bytes it adds to user-data, peak
# RSS (VmHWM) while retrying against an apiserver that refuses connections, and the
# request rate of those retries with the plan's default backoff (0.5 s doubling to
# a 30 s cap, full jitter).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-60}
target=x86_64-unknown-linux-musl
cargo build -q --profile bootstrap --locked -p mk8s-bootstrap --target "$target"
cargo build -q --release --locked -p mk8s-gen
bin=target/$target/bootstrap/mk8s-bootstrap
gen=target/release/mk8s-gen

size=$(stat -c %s "$bin")
gz=$(gzip -9 -c "$bin" | wc -c)
work=$(mktemp -d)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

# A cluster whose apiserver is a closed port on loopback.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/cluster.yaml" <<YAML
cluster:
  name: bench
  microk8s: { channel: 1.30/stable }
  ca: { cert-file: $PWD/fixtures/seed/ca.crt }
  control-plane: [ { name: cp-1, address: 127.0.0.2 } ]
  load-balancer: { mode: external, address: 127.0.0.1, port: $port }
workers: [ { name: worker-1 } ]
YAML
"$gen" --quiet --cluster "$work/cluster.yaml" --secrets fixtures/seed/secrets.yaml --node worker-1 --bootstrap-bin "$bin" -o "$work/user-data"
embedded=$(python3 - "$work/user-data" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
print(sum(len(f["content"]) for f in doc["write_files"] if f.get("encoding") == "gz+b64"))
PY
)
ud=$(stat -c %s "$work/user-data")

# Boot a root from the user-data, with a snap that is already installed.
python3 - "$work/user-data" "$work/root" <<'PY'
import base64, gzip, os, sys, yaml
doc, root = yaml.safe_load(open(sys.argv[1])), sys.argv[2]
for f in doc["write_files"]:
    p = os.path.join(root, f["path"].lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    data = gzip.decompress(base64.b64decode(f["content"])) if f.get("encoding") == "gz+b64" else f["content"].encode()
    open(p, "wb").write(data)
    os.chmod(p, int(f["permissions"], 8))
PY
mkdir -p "$work/root/var/snap/microk8s/current/args"
printf '#!/bin/sh\nexit 0\n' > "$work/ok"; chmod +x "$work/ok"

"$work/root/usr/local/bin/mk8s-bootstrap" --root "$work/root" --snap "$work/ok" --systemctl "$work/ok" 2> "$work/log" &
echo $! > "$work/pid"
pid=$(cat "$work/pid")
peak=0
end=$((SECONDS + duration))
while [ $SECONDS -lt $end ] && kill -0 "$pid" 2>/dev/null; do
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  [ "${hwm:-0}" -gt "$peak" ] && peak=$hwm
  sleep 0.5
done
attempts=$(grep -c 'mk8s-bootstrap\[apiserver\]: attempt' "$work/log" || true)

printf 'machine:            %s, %s cores, %s\n' "$(uname -m)" "$(nproc)" "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
printf 'binary (stripped):  %d bytes (%s MiB)\n' "$size" "$(div "$size" 1048576)"
printf 'gzip -9:            %d bytes (%s MiB)\n' "$gz" "$(div "$gz" 1048576)"
printf 'in user-data:       %d bytes of gz+b64 (whole user-data %d bytes)\n' "$embedded" "$ud"
printf 'peak RSS retrying:  %d KiB (%s MiB) over %d s\n' "$peak" "$(div "$peak" 1024)" "$duration"
printf 'apiserver attempts: %d in %d s (%s per second)\n' "$attempts" "$duration" "$(div "$attempts" "$duration")"
