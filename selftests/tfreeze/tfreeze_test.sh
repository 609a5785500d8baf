#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# tools/tfreeze, the real binary ($TFREEZE, else tfreeze on PATH), against
# an ext4 on a loop device, with the module loaded.  KTAP output through the
# kernel's kselftest/ktap_helpers.sh, one test per case.

set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for d in "$here/../kselftest" "${KSFT_DIR:-/nonexistent}/kselftest"; do
	if [ -r "$d/ktap_helpers.sh" ]; then
		# shellcheck source=/dev/null
		. "$d/ktap_helpers.sh"
		break
	fi
done
if ! declare -F ktap_print_header >/dev/null; then
	echo "Bail out! kselftest/ktap_helpers.sh not found (run in tools/testing/selftests, or set KSFT_DIR)"
	exit 1
fi

ktap_print_header
tfreeze=${TFREEZE:-$(command -v tfreeze)}
if [ -z "$tfreeze" ] || [ ! -x "$tfreeze" ]; then
	ktap_skip_all "no tfreeze binary (build tools/tfreeze; TFREEZE= its path)"
	exit "$KSFT_SKIP"
fi
if [ "$(id -u)" -ne 0 ] || [ ! -e /dev/timed-freeze ]; then
	ktap_skip_all "needs root and the module loaded (/dev/timed-freeze)"
	exit "$KSFT_SKIP"
fi

check() { # NAME COMMAND...: passes when COMMAND succeeds
	local name=$1
	shift
	if "$@"; then ktap_test_pass "$name"; else ktap_test_fail "$name"; fi
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

ktap_set_plan 25

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

# COMMAND gets ^C and SIGTERM like any command: sent to its process group
# (job control puts each background job in a group of its own), it dies
# of them, and tfreeze thaws and reports 128+N.
set -m
for sig in INT TERM; do
	"$tfreeze" "$mnt" -- sleep 30 &
	pgid=$!
	cmd=
	for ((i = 0; i < 50; i++)); do
		cmd=$(pgrep -g "$pgid" -x sleep) && break
		sleep 0.1
	done
	ign=$(awk '/^SigIgn:/ { print $2 }' "/proc/$cmd/status" 2>/dev/null)
	check "COMMAND starts with SIGINT/SIGQUIT/SIGTERM not ignored (SigIgn $ign)" \
		test -n "$ign" -a "$((0x${ign:-0} & 0x4006))" -eq 0
	kill -"$sig" -- -"$pgid"
	rc=
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pgid" 2>/dev/null || { wait "$pgid"; rc=$?; break; }
		sleep 0.1
	done
	[ -n "$rc" ] || { pkill -9 -g "$pgid"; wait "$pgid"; }
	check "SIG$sig to the process group ends COMMAND: exit $(kill -l "$sig" >/dev/null && echo $((128 + $(kill -l "$sig")))) (got ${rc:-none})" \
		test "${rc:-x}" = "$((128 + $(kill -l "$sig")))"
done
set +m
check "thawed after the signalled COMMANDs" writable

# COMMAND does not inherit the device file (it would keep the freeze).
fds=$("$tfreeze" "$mnt" -- sh -c 'ls -l /proc/$$/fd')
check "COMMAND does not inherit /dev/timed-freeze" test -z "$(grep timed-freeze <<<"$fds")"

# The administrator's way out: the command writes to the frozen fs, so it
# sleeps there and tfreeze waits for it; --list shows the freeze (made by
# tfreeze, its pid and age) and --force-thaw releases it.
# Its message about the forced thaw goes to a file, told after: written
# while check prints, it could land inside a KTAP line.
"$tfreeze" "$mnt" -- sh -c "echo stuck > $mnt/stuck" 2>"$dir/stuck.err" &
pid=$!
sleep 1
out=$("$tfreeze" --list)
echo "$out" | sed 's/^/# /'
id=$(awk -v m="$mnt" -v p="$pid" '$NF == m && $2 == p && $3 == "tfreeze" { print $1 }' <<<"$out")
check "--list shows the owned freeze of tfreeze (pid $pid)" test -n "$id"
check "--force-thaw $id thaws it" "$tfreeze" --force-thaw "${id:-0}"
rc=
for ((i = 0; i < 50; i++)); do
	kill -0 "$pid" 2>/dev/null || { wait "$pid"; rc=$?; break; }
	sleep 0.1
done
sed 's/^/# /' "$dir/stuck.err"
check "the stuck command then completes (exit ${rc:-none})" test "${rc:-x}" = 0
check "and the fs is writable" writable

# Usage errors exit as fsfreeze's do (1).
"$tfreeze" >/dev/null 2>&1
tf=$?
fsfreeze >/dev/null 2>&1
ff=$?
check "no arguments: exit $tf, as fsfreeze ($ff)" test "$tf" -eq "$ff"
"$tfreeze" --no-such-option "$mnt" >/dev/null 2>&1
check "unknown option: exit 1" test $? -eq 1

# Without the module: a message that says how to load it.
if rmmod timed_freeze; then
	msg=$("$tfreeze" -f "$mnt" 2>&1)
	rc=$?
	insmod "$TF_MODULE"
	echo "# $msg"
	check "without the module: exit 1, and how to load it" \
		test $rc -eq 1 -a -n "$(grep 'load the module' <<<"$msg")"
else
	ktap_test_fail "without the module: rmmod failed"
fi

ktap_finished
