#!/usr/bin/env bash
# Main job: builds the engine, starts an io-engine with a file-backed pool
# and walks through a client session (pools, thick and thin replicas,
# check, sharing over NVMe/TCP, destroy). Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_DIR="${STATE_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/mayastor-rs/run}"
ENDPOINT="${ENDPOINT:-127.0.0.1:10124}"
mkdir -p "$STATE_DIR"

echo "== building io-engine and io-engine-client"
cargo build --quiet -p io-engine -p io-engine-client
BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug"

DISK="$STATE_DIR/disk.img"
rm -f "$DISK"
fallocate -l 100M "$DISK" 2>/dev/null || truncate -s 100M "$DISK"

echo "== starting io-engine on $ENDPOINT (log: $STATE_DIR/io-engine.log)"
"$BIN/io-engine" --grpc-endpoint "$ENDPOINT" --node-name "$(hostname)" >"$STATE_DIR/io-engine.log" 2>&1 &
ENGINE_PID=$!
trap 'kill -TERM $ENGINE_PID 2>/dev/null; wait $ENGINE_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if "$BIN/io-engine-client" --endpoint "$ENDPOINT" pool list >/dev/null 2>&1; then break; fi
    if ! kill -0 $ENGINE_PID 2>/dev/null; then cat "$STATE_DIR/io-engine.log"; exit 1; fi
    sleep 0.1
done

run() {
    echo "\$ io-engine-client $*"
    "$BIN/io-engine-client" --endpoint "$ENDPOINT" "$@"
}

run pool create tpool "aio://$DISK"
run pool list
run replica create tpool replica1 --size=10
run replica create tpool replica2 --size=1000 --thin
run replica list
run pool check tpool
run replica share tpool replica1 --allowed-host "nqn.2019-05.io.openebs:node-name:$(hostname)"
run -o wide replica list
run replica destroy tpool replica1
run replica destroy tpool replica2
run replica list
run pool destroy tpool
run pool list
echo "== done; stopping io-engine"
