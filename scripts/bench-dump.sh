#!/bin/bash
# Benchmark of `kubectl mayastor dump system` (not a test): a 3-node local
# cluster on 127.0.69.* with N thin volumes (default 1000) and about 200 MiB
# of component logs; prints the dump's wall time, peak RSS and bundle size
# (GNU time), for docs/supportability.md.
#   [PROFILE=debug] [BIN_DIR=DIR] scripts/bench-dump.sh [VOLUMES] [LOG_MIB]
# BIN_DIR: use the binaries already built there (mayastor-local, its
# components and kubectl-mayastor) instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
VOLUMES=${1:-1000}
LOG_MIB=${2:-200}
PROFILE=${PROFILE:-release}
CARGO_PROFILE=$PROFILE; [ "$PROFILE" = debug ] && CARGO_PROFILE=dev
if [ -n "${BIN_DIR:-}" ]; then
    B=$BIN_DIR
else
    cargo build --profile "$CARGO_PROFILE" -q -p store --bin mayastor-store -p agent-core -p api-rest \
        -p io-engine --bin io-engine -p mayastor-local -p kubectl-mayastor
    B=$(pwd)/target/$PROFILE
fi
W=$(mktemp -d /tmp/bench-dump.XXXXXX)
export XDG_DATA_HOME=$W/data HOME=$W KUBECONFIG=$W/no-kubeconfig
STATE=$XDG_DATA_HOME/mayastor-local
mkdir -p "$XDG_DATA_HOME" "$W/out"
cleanup() { "$B/mayastor-local" --state-dir "$STATE" down --wipe >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
"$B/mayastor-local" --state-dir "$STATE" up --nodes 3 --pool-size 2GiB --ip-prefix 127.0.69 >/dev/null
REST=http://127.0.69.252:8081/v0
echo "creating $VOLUMES volumes..."
for i in $(seq 1 "$VOLUMES"); do
    id=$(printf 'be0c0000-0000-4000-8000-%012d' "$i")
    curl -sf -X PUT -H 'content-type: application/json' \
        -d '{"size":4194304,"replicas":1,"thin":true}' "$REST/volumes/$id" >/dev/null
done
echo "writing ${LOG_MIB} MiB of logs..."
python3 - "$STATE/logs" "$LOG_MIB" <<'EOF'
import datetime, os, sys
logs, mib = sys.argv[1], int(sys.argv[2])
names = ["io-engine-1", "io-engine-2", "io-engine-3", "agent-core"]
per_file = mib * 1024 * 1024 // len(names)
now = datetime.datetime.now(datetime.timezone.utc)
for name in names:
    with open(os.path.join(logs, name + ".log"), "a") as f:
        written, i = 0, 0
        while written < per_file:
            ts = (now - datetime.timedelta(seconds=3600) + datetime.timedelta(microseconds=i * 100)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            line = f"{ts}  INFO bench: synthetic line {i} of {name} volume=be0c0000-0000-4000-8000-{i % 1000:012d} some more text to fill\n"
            f.write(line)
            written += len(line)
            i += 1
EOF
du -sh "$STATE/logs"
echo "dump system ($PROFILE build):"
/usr/bin/time -f 'wall %e s, peak RSS %M KiB' "$B/kubectl-mayastor" dump system -d "$W/out" --since 2h 2>&1 >/dev/null | grep -E '^wall|FAILED' || true
ls -l "$W/out"
