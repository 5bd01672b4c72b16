#!/usr/bin/env bash
# Fleet status figures: `mk8s-ctl status` on 100 simulated workers (Nodes created
# through the API of a real kube-apiserver, MicroK8s 1.34's default args), beside
# `kubectl get nodes -o json` against the same apiserver in the same run.
#   bench/ctl-status.sh
# Needs root (the apiserver's mount namespace), kubectl, and the upstream binaries
# (scripts/build-upstream; MK8S_UPSTREAM_BIN, or the newest build in the cache).
# mk8s-ctl is built with the release profile, as shipped.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v kubectl >/dev/null || { echo "needs kubectl (scripts/setup)" >&2; exit 1; }
cargo bench -q --locked -p mk8s-ctl --bench status
