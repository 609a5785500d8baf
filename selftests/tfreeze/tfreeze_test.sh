#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# tools/tfreeze, the real binary, against an ext4 on a loop device, with
# the module loaded (scripts/vm-run).  KTAP output, one test per case.

set -u
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tfreeze=$top/tools/tfreeze/target/release/tfreeze
n=0
fails=0

ok() { n=$((n + 1)); echo "ok $n $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n $1"; }
check() { # NAME COMMAND...: passes when COMMAND succeeds
	local name=$1
	shift
	if "$@"; then ok "$name"; else not_ok "$name"; fi
}

# Start a writer into the fs; 0 when it finished within $1 s.  A writer
# blocked by a freeze sleeps uninterruptibly, so it is never waited for
# (nor killed): it just completes after the thaw.
probe() {
	sh -c "echo x > $mnt/probe" &
	local p=$! i
	for ((i = 0; i < $1 * 10; i++)); do
		kill -0 $p 2>/dev/null || { wait $p; return; }
		sleep 0.1
	done
	return 1
}
writable() { probe 3; }
frozen() { ! probe 1; }

dir=$(mktemp -d /tmp/tfz.XXXXXX)
mount -t tmpfs tfz "$dir"
mkdir "$dir/mnt"
mnt=$dir/mnt
truncate -s 64M "$dir/img"
mkfs.ext4 -q -F "$dir/img"
mount -o loop "$dir/img" "$mnt"
trap 'fsfreeze -u $mnt 2>/dev/null; wait; umount $mnt; umount -l $dir; rmdir $dir' EXIT

echo "TAP version 13"
echo "1..13"

check "freeze -f exits 0" "$tfreeze" -f "$mnt"
check "the fs is really frozen" frozen
check "fsfreeze -u thaws what tfreeze -f froze" fsfreeze -u "$mnt"
check "and it is writable again" writable

"$tfreeze" -u "$mnt" 2>/dev/null
check "thaw of an unfrozen fs exits 1, as fsfreeze" test $? -eq 1

json=$("$tfreeze" --json --timeout 2s -f "$mnt")
check "--json reports one attempt" grep -q '"ok":true.*"attempts":1\|"attempts":1.*"ok":true' <<<"$json"
"$tfreeze" -u "$mnt"

"$tfreeze" --timeout 2s "$mnt" -- sh -c "(echo y > $mnt/inside) & sleep 1; kill -0 \$! && exit 3"
check "COMMAND runs frozen, its status comes back" test $? -eq 3
check "thawed after COMMAND" writable

"$tfreeze" "$mnt" -- sh -c 'kill -9 $$'
check "COMMAND killed by SIGKILL: exit 137" test $? -eq 137
check "thawed after the killed COMMAND" writable

# tfreeze itself killed while COMMAND runs: the owned freeze dies with it.
"$tfreeze" "$mnt" -- sleep 30 &
pid=$!
sleep 1
check "frozen while COMMAND runs" frozen
kill -9 $pid
wait $pid 2>/dev/null
check "tfreeze killed by SIGKILL: thawed" writable
pkill -f "sleep 30" || true

# Without the module: a message that says how to load it.
if rmmod timed_freeze; then
	msg=$("$tfreeze" -f "$mnt" 2>&1)
	rc=$?
	insmod "$TF_MODULE"
	echo "# $msg"
	check "without the module: exit 1, and how to load it" \
		test $rc -eq 1 -a -n "$(grep 'load the module' <<<"$msg")"
else
	not_ok "without the module: rmmod failed"
fi

echo "# Totals: pass:$((n - fails)) fail:$fails"
[ $fails -eq 0 ]
