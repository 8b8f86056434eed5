#!/bin/bash
# The NVMe/TCP initiator's acceptance benchmarks (docs/performance.md,
# "NVMe/TCP initiator fast path"), exactly as recorded there. Each io-bench
# run starts its own release io-engine(s) on 127.0.170.1, pinned to CPU 0,
# and pins itself to CPU 1; --rounds 3 gives the medians.
#
#   scripts/bench-initiator.sh            # all five
#   scripts/bench-initiator.sh 1 4        # only acceptance points 1 and 4
#   RUNTIME=5 scripts/bench-initiator.sh  # 5 s per run instead of 10
#
# Output: one report per point in $OUT (default /tmp/bench-initiator), as
# the text table (N.txt) and the full JSON (N.json).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p io-engine -p io-engine-client -p io-bench
B=target/release/io-bench
OUT=${OUT:-/tmp/bench-initiator}
RT=${RUNTIME:-10}
mkdir -p "$OUT"
points=("$@")
[ ${#points[@]} -eq 0 ] && points=(1 2 3 4 5)
for p in "${points[@]}"; do
  case $p in
    # 1 and 2: RAM-backed replica, 4k random read/write at QD32, and the
    # QD1 read latency; the nvmf rows (IOPS, CPU/IO = initiator,
    # TGT-CPU/IO = engine) and their medians.
    1|2) args=(--nvmf-vs-raw malloc: --size 256 --runtime $RT --rounds 3
               -w randread-4k-qd32 -w randwrite-4k-qd32 -w randread-4k-qd1) ;;
    # 3: nexus with two remote children against one remote child.
    3) args=(--remote-nexus-2-vs-1 malloc: --size 256 --runtime $RT --rounds 3
             -w randwrite-4k-qd32) ;;
    # 4: replica on a file over NVMe/TCP against the raw file (same bytes).
    4) args=(--nvmf-vs-raw /tmp/bench-initiator.img --size 1024 --runtime $RT --rounds 3
             -w randread-4k-qd32 -w randwrite-4k-qd32) ;;
    # 5: idle engine, 10 shared replicas, one connected host each, 60 s.
    5) args=(--nvmf-idle 10 --runtime 60) ;;
    *) echo "unknown point $p (1-5)" >&2; exit 2 ;;
  esac
  echo "== acceptance $p: io-bench ${args[*]}"
  "$B" "${args[@]}" -q --json "$OUT/$p.json" | tee "$OUT/$p.txt"
done
