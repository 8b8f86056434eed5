#!/usr/bin/env bash
# Main job: builds the binaries, starts a 3-node local cluster (store, core
# agent, REST API and three io-engines with a file-backed pool each, on
# 127.0.1.x), runs the demo (a 3-replica volume written and verified over
# NVMe/TCP, an engine killed, the rebuild back to Online, the data verified
# again) and shows the cluster's status. The cluster keeps running; stop it
# with `mayastor-local down`.
#
# Environment:
#   STATE_DIR=DIR   state directory of the cluster (default: mayastor-local's
#                   own, ${XDG_DATA_HOME:-$HOME/.local/share}/mayastor-local)
#   IP_PREFIX=A.B.C loopback addresses of a new cluster (default 127.0.1)
#   NO_TUI=1        do not open the dashboard at the end
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building io-engine, agent-core, api-rest, mayastor-store, metrics-exporter, mayastor-local, kubectl-mayastor"
cargo build --quiet \
    -p io-engine --bin io-engine \
    -p agent-core --bin agent-core \
    -p api-rest --bin api-rest \
    -p store --bin mayastor-store \
    -p metrics-exporter --bin metrics-exporter \
    -p mayastor-local --bin mayastor-local \
    -p kubectl-mayastor --bin kubectl-mayastor
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
BIN="$TARGET_DIR/debug"

local_args=()
if [ -n "${STATE_DIR:-}" ]; then local_args+=(--state-dir "$STATE_DIR"); fi
mayastor_local() {
    echo
    echo "\$ mayastor-local $*"
    "$BIN/mayastor-local" "${local_args[@]}" "$@"
}

up_args=(--nodes 3)
if [ -n "${IP_PREFIX:-}" ]; then up_args+=(--ip-prefix "$IP_PREFIX"); fi
mayastor_local up "${up_args[@]}"
mayastor_local demo
mayastor_local status

REST="$(cat "${STATE_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/mayastor-local}/rest-endpoint")"
rest_flag=""
if [ -n "${STATE_DIR:-}" ]; then rest_flag=" --rest $REST"; fi
cat <<MSG

== the cluster keeps running (REST endpoint: $REST)
Use the kubectl plugin against it (it finds the local cluster by itself${STATE_DIR:+ in the default state directory only, hence --rest}):
  $BIN/kubectl-mayastor${rest_flag} get volumes
  $BIN/kubectl-mayastor${rest_flag} get volume-replica-topologies
  $BIN/kubectl-mayastor${rest_flag} get pools
  $BIN/kubectl-mayastor${rest_flag} get nodes
Run the demo again:   $BIN/mayastor-local${STATE_DIR:+ --state-dir $STATE_DIR} demo
Stop the cluster:     $BIN/mayastor-local${STATE_DIR:+ --state-dir $STATE_DIR} down   (add --wipe to delete its data)
MSG

# ---- dashboard --------------------------------------------------------------
# On a terminal, open the live dashboard on the cluster (skip with NO_TUI=1).
if [ -t 0 ] && [ -t 1 ] && [ -z "${NO_TUI:-}" ]; then
    echo "== opening the dashboard (q quits; the cluster keeps running)"
    "$BIN/kubectl-mayastor" --rest "$REST" tui
fi
