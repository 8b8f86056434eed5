#!/bin/bash
# Replica shared over NVMe/TCP by a release io-engine, driven by io-bench
# through our initiator, then the raw file through the same device layer.
set -e
cd "$(dirname "$0")/.."
cargo build --release -q -p io-engine -p io-engine-client -p io-bench
B=target/release
rm -f /tmp/nvbench.img /tmp/nvraw.img
truncate -s 1100M /tmp/nvbench.img
$B/io-engine --grpc-endpoint 127.0.0.1:10300 --nvmf-endpoint 127.0.0.1:8420 --node-name bench > /tmp/nvbench-engine.log 2>&1 &
EP=$!
sleep 1
C="$B/io-engine-client --endpoint 127.0.0.1:10300"
$C pool create bp aio:///tmp/nvbench.img
$C replica create bp vol --size 1000
URI=$($C replica share bp vol --allowed-host nqn.2019-05.io.openebs:node-name:bench)
echo "URI=$URI"
H="${URI%%\?*}?hostnqn=nqn.2019-05.io.openebs:node-name:bench"
W="--workload randread-4k-qd32 --workload randwrite-4k-qd32 --workload seqread-128k-qd8 --workload seqwrite-128k-qd8"
$B/io-bench --device "$H" --size 1000 --runtime 10 $W -q
kill -TERM $EP; wait $EP || true
truncate -s 1000M /tmp/nvraw.img
$B/io-bench --device aio:///tmp/nvraw.img --size 1000 --runtime 10 $W -q
rm -f /tmp/nvbench.img /tmp/nvraw.img
