#!/usr/bin/env bash
# Fleet generation figures:
#   bench/fleet.sh                 # output on tmpfs (/dev/shm) and on this disk
#   DIRS=/some/dir bench/fleet.sh  # or where you say
# For each output directory: 1k, 10k and 50k workers (token auth, fetched bootstrap),
# a plain copy of the same 10k files into a fresh directory in the same run (cp -r
# plus one filesystem sync, as mk8s-gen does), 10k workers with x509 auth, and peak
# memory. Every run writes into a fresh directory, so the filesystem's allocator is
# in the same state for mk8s-gen and for the copy.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }
cargo build -q --release --locked -p mk8s-gen
gen=$PWD/target/release/mk8s-gen
facts=$(mktemp -d)
trap 'rm -rf "$facts"' EXIT
for n in 1000 10000 50000; do python3 bench/fleet-facts.py "$n" "$facts/$n.yaml"; done
python3 bench/fleet-facts.py 10000 "$facts/x509.yaml" x509
python3 bench/fleet-facts.py 10000 "$facts/x509-ecdsa.yaml" x509-ecdsa
sha=$(printf '0%.0s' $(seq 64))
dirs=${DIRS:-"/dev/shm $PWD/target"}

measure() { # label, then the command; prints "label: wall s, user s, sys s, max RSS MiB"
  local label=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$facts/t" "$@" > /dev/null 2> "$facts/err" || { cat "$facts/err" >&2; exit 1; }
  read -r wall user sys rss < "$facts/t"
  printf '  %-34s %6.2f s wall  %6.2f s user  %6.2f s sys  %7.1f MiB max RSS\n' "$label" "$wall" "$user" "$sys" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
  echo "$wall" > "$facts/last"
}

printf 'machine: %s, %s cores, %s; %s\n' "$(uname -m)" "$(nproc)" "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" "$("$gen" --version)"
for base in $dirs; do
  work=$(mktemp -d "$base/mk8s-fleet-bench.XXXX")
  echo "output on $(df -T "$work" | awk 'NR==2 {print $2}') ($base)"
  for n in 1000 10000 50000; do
    measure "$n workers, token, fetched" "$gen" fleet --cluster "$facts/$n.yaml" --secrets fixtures/seed/secrets.yaml \
      --out "$work/t$n" --bootstrap-url https://example.com/mk8s-bootstrap --bootstrap-sha256 "$sha"
    [ "$n" = 10000 ] && gen10k=$(cat "$facts/last")
  done
  measure "plain copy of the 10k files + sync" sh -c "cp -r '$work/t10000/nodes' '$work/copy' && sync -f '$work/copy'"
  copy=$(cat "$facts/last")
  printf '  %-34s %6.2fx\n' "ratio mk8s-gen / plain copy (10k)" "$(awk -v a="$gen10k" -v b="$copy" 'BEGIN { print a / b }')"
  measure "10k workers unchanged (re-run)" "$gen" fleet --cluster "$facts/10000.yaml" --secrets fixtures/seed/secrets.yaml \
    --out "$work/t10000" --bootstrap-url https://example.com/mk8s-bootstrap --bootstrap-sha256 "$sha"
  measure "10k workers, x509 (RSA 2048 CA)" "$gen" fleet --cluster "$facts/x509.yaml" --secrets fixtures/x509/secrets.yaml \
    --out "$work/x509" --bootstrap-url https://example.com/mk8s-bootstrap --bootstrap-sha256 "$sha"
  printf '  %-34s %6.0f nodes/s\n' "x509 (RSA) throughput" "$(awk -v t="$(cat "$facts/last")" 'BEGIN { print 10000 / t }')"
  measure "10k workers, x509 (ECDSA P-256 CA)" "$gen" fleet --cluster "$facts/x509-ecdsa.yaml" --secrets fixtures/x509-ecdsa/secrets.yaml \
    --out "$work/x509e" --bootstrap-url https://example.com/mk8s-bootstrap --bootstrap-sha256 "$sha"
  printf '  %-34s %6.0f nodes/s\n' "x509 (ECDSA) throughput" "$(awk -v t="$(cat "$facts/last")" 'BEGIN { print 10000 / t }')"
  rm -rf "$work"
done
