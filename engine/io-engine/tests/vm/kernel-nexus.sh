#!/bin/sh
# Guest script (busybox ash, run by nvme-vm): the Linux kernel NVMe/TCP host
# writes and verifies a published nexus, reached at $NVMEVM_HOST_ADDR:4420
# (forwarded to the nexus engine's NVMe/TCP listener on the host's loopback),
# while the host faults and rebuilds the nexus's children.
#
# Prints "RESULT fio_started=1" when fio is launched and "RESULT fio_done=RC"
# when it has ended: the host times its faults by these lines.
#
# Env: TARGET_NQN (required), HOSTNQN (an allowed host), FIO_RUNTIME
#      (seconds, default 60), FIO_SIZE (bytes of the namespace fio covers,
#      default the whole namespace), FIO_BS (block size range, default
#      4k-64k), FIO_QD (default 16).
set -u
. /nvmevm/common.sh
ADDR=$NVMEVM_HOST_ADDR
PORT=4420
NQN=${TARGET_NQN:?}
RT=${FIO_RUNTIME:-60}
BS=${FIO_BS:-4k-64k}
QD=${FIO_QD:-16}

step "connect to the nexus $NQN"
nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$NQN" --hostnqn "$HOSTNQN" || fail "nvme connect"
DEV=$(nvme-dev-for-nqn "$NQN" 30) || fail "no namespace block device for $NQN"
nvme list
SIZE=${FIO_SIZE:-$(blockdev --getsize64 "$DEV")}
result connect=ok
result namespace_bytes="$SIZE"

# Random writes of mixed sizes over the whole namespace, each pass writing
# every block once; written blocks are read back and checked (crc32c and
# offset in a header per block) at most 128 writes behind (verify_backlog)
# and after every complete pass.
step "fio randwrite bs=$BS QD$QD crc32c verify over $SIZE bytes, ${RT}s"
result fio_started=1
fio --name=nexus-verify --filename="$DEV" --ioengine=libaio --direct=1 \
	--rw=randwrite --bsrange="$BS" --iodepth="$QD" --size="$SIZE" \
	--time_based --runtime="$RT" \
	--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_backlog=128 \
	--eta=never > /tmp/fio.out 2>&1
rc=$?
result fio_done="$rc"
cat /tmp/fio.out
[ "$rc" = 0 ] || fail "fio exited $rc"
grep -q ' err= 0' /tmp/fio.out || fail "fio reported an error"
grep -qi 'verify.*fail\|bad magic\|bad header\|crc32c.*fail' /tmp/fio.out && fail "fio verify failure"
# "issued rwts: total=READS,WRITES,..." (the verify reads are not in READ:)
ios=$(awk '/issued rwts:/ { sub("total=", "", $3); print $3 }' /tmp/fio.out)
verified=$(echo "$ios" | cut -d, -f1)
written=$(echo "$ios" | cut -d, -f2)
result fio_written_ios="$written"
result fio_verified_ios="$verified"
[ "${verified:-0}" -gt 0 ] || fail "fio verified nothing"
result fio_verify=ok

step "disconnect"
nvme disconnect -n "$NQN" || fail "nvme disconnect"
result kernel_nexus=ok
