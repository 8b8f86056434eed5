#!/bin/sh
# Guest script (busybox ash, run by nvme-vm): the Linux kernel NVMe/TCP host
# against our target, reached at $NVMEVM_HOST_ADDR:4420 (forwarded to the
# io-engine's NVMe/TCP listener on the host's loopback).
#
# Env: TARGET_NQN (required), HOSTNQN (allowed host), DENIED_HOSTNQN (a host
#      that is not allowed), CONNECT_OPTS (e.g. "--hdr-digest --data-digest"),
#      FIO_RUNTIME (seconds, default 30), FILES (default 8).
set -u
. /nvmevm/common.sh
ADDR=$NVMEVM_HOST_ADDR
PORT=4420
NQN=${TARGET_NQN:?}
RT=${FIO_RUNTIME:-30}
FILES=${FILES:-8}
OPTS="--hostnqn $HOSTNQN ${CONNECT_OPTS:-}"

step "discover as the allowed host"
nvme discover -t tcp -a "$ADDR" -s "$PORT" --hostnqn "$HOSTNQN" > /tmp/disc || { cat /tmp/disc; fail "nvme discover"; }
cat /tmp/disc
grep -q "subnqn: *$NQN" /tmp/disc || fail "discovery log does not list $NQN"
result discover=ok

if [ -n "${DENIED_HOSTNQN:-}" ]; then
	step "connect as a host that is not allowed must fail"
	if nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$NQN" --hostnqn "$DENIED_HOSTNQN" --ctrl-loss-tmo 1 2>/tmp/denied; then
		nvme disconnect -n "$NQN"
		fail "a host outside allowed_hosts could connect"
	fi
	cat /tmp/denied
	result denied_host_refused=ok
fi

connect() {
	# shellcheck disable=SC2086
	nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$NQN" $OPTS || fail "nvme connect $OPTS"
	DEV=$(nvme-dev-for-nqn "$NQN" 30) || fail "no namespace block device for $NQN"
}

step "connect $OPTS"
connect
nvme list
nvme id-ctrl "$DEV" | grep -E '^(sn|mn|fr|subnqn|ioccsz|maxcmd|nn|sgls|cntlid) '
nvme id-ns "$DEV" | grep -E '^(nsze|ncap|flbas)'
result connect=ok

step "ext4: write $FILES files, sync, unmount, disconnect"
modprobe ext4
mkfs.ext4 -q -F -E nodiscard "$DEV" || fail "mkfs.ext4"
mkdir -p /mnt/fs
mount -t ext4 "$DEV" /mnt/fs || fail "mount"
i=0
while [ $i -lt "$FILES" ]; do
	dd if=/dev/urandom of=/mnt/fs/file$i bs=64k count=$((i * 7 % 40 + 1)) 2>/dev/null || fail "write file$i"
	i=$((i + 1))
done
(cd /mnt/fs && md5sum file* > /tmp/sums) || fail "checksum files"
sync
umount /mnt/fs || fail "umount"
nvme disconnect -n "$NQN" || fail "nvme disconnect"
result fs_write=ok

step "reconnect, mount, verify every file"
connect
mount -t ext4 "$DEV" /mnt/fs || fail "mount after reconnect"
(cd /mnt/fs && md5sum -c /tmp/sums) || fail "file checksums differ after reconnect"
umount /mnt/fs
e2fsck -f -n "$DEV" > /tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; fail "e2fsck"; }
result fs_verify=ok

step "fio randrw 4k QD16 crc32c verify, ${RT}s"
fio --name=randrw-verify --filename="$DEV" --ioengine=libaio --direct=1 \
	--rw=randrw --bs=4k --iodepth=16 --size=64m --time_based --runtime="$RT" \
	--verify=crc32c --verify_fatal=1 --verify_backlog=512 --eta=never \
	> /tmp/fio.out 2>&1
rc=$?
cat /tmp/fio.out
[ "$rc" = 0 ] || fail "fio exited $rc"
grep -q ' err= 0' /tmp/fio.out || fail "fio reported an error"
grep -qi 'verify.*fail\|bad magic\|crc32c: verify failed' /tmp/fio.out && fail "fio verify failure"
result fio_verify=ok

step "disconnect"
nvme disconnect -n "$NQN" || fail "nvme disconnect"
result kernel_host=ok
