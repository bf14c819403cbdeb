#!/bin/bash
# The in-process library on a host without RDMA (ctest qemu.inproc): stock QEMU started through
# `ramshift qemu-exec` migrates a running TCG guest (tests/qemu/guest) over plain tcp: with
# multifd, each destination the next source —
#   1 both sides under qemu-exec: no RDMA device serves 127.0.0.1, so plain TCP; both stats
#     files say so and why
#   2 source under qemu-exec, destination plain QEMU
#   3 source plain QEMU, destination under qemu-exec
#   4 both under qemu-exec, the source's library of another wire version (a test knob): plain
#     TCP, and the destination's stats name both versions
# After each: QEMU says completed, the destination runs, its heartbeat continues past the
# source's and the guest never saw a page differ. Also: QEMU's -help passes through qemu-exec
# untouched, and a VNC server inside a library-loaded QEMU still greets its client.
# Usage: inproc_host_test.sh path/to/ramshift [backports]
set -uo pipefail
QEMU_TEST_ARGS=("$@")
RAMSHIFT=$(readlink -f "$1")
. "$(dirname "$0")/lib.sh"
qemu_test_begin inproc-test "${2:-debian}"
QEMU=${QEMU_BIN:-qemu-system-x86_64}

"$RAMSHIFT" qemu-exec -- "$QEMU" -help > "$W/help.out" 2>&1 || fail "qemu-exec -- QEMU -help: exit $?"
cmp -s "$W/help.out" <("$QEMU" -help 2>&1) || fail "-help through qemu-exec differs from QEMU's own"
qlog "ok: -help passes through qemu-exec unchanged"

qemu_build_guest
lib() { echo "$RAMSHIFT qemu-exec --stats $W/$1.stats --"; }
VNC=$((5900 + RANDOM % 90))
QEMU_WRAP=$(lib vm0) qemu_start vm0 "$GUEST_MB" "$DIRTY" -vnc "127.0.0.1:$((VNC - 5900))"
qemu_wait_beat vm0 2 240 || fail "the guest did not boot"
banner=$(timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$VNC && head -c 12 <&3") || true
[ "$banner" = "RFB 003.008" ] || fail "the VNC server of a library-loaded QEMU said '$banner'"
qlog "ok: VNC in a library-loaded QEMU greets its client ($banner)"
CUR=vm0 N=0

# migrate_ok LABEL WRAP: CUR -> a new destination started with WRAP ("" = plain QEMU).
migrate_ok() {
  local label=$1 wrap=$2
  N=$((N + 1)); local next=vm$N port=$((30000 + RANDOM % 20000))
  QEMU_WRAP=$wrap qemu_start "$next" "$GUEST_MB" "$DIRTY" -incoming defer
  "$RAMSHIFT" qemu-migrate --src-qmp "$W/$CUR.qmp" --dst-qmp "$W/$next.qmp" --json "$W/$next.json" \
    --dst-uri "tcp:127.0.0.1:$port" --multifd-channels 2 --max-bandwidth 0 --timeout 240 \
    2> "$W/$next.err" || fail "$label: qemu-migrate exit $?: $(tail -2 "$W/$next.err")"
  grep -q '"destination_status": "running"' "$W/$next.json" || fail "$label: destination not running"
  local last; last=$(qemu_beat "$CUR")
  kill "$(cat "$W/$CUR.pid")"; wait "$(cat "$W/$CUR.pid")" 2>/dev/null
  qemu_wait_beat "$next" $((last + 3)) 60 ||
    qemu_broke_or_fail "$label: no heartbeat on the destination after $last"
  qemu_check_clean "$next" || qemu_broke_or_fail "$label: memory differed"
  qlog "ok: $label ($(grep -a -m1 -o '"total_ms": [0-9]*' "$W/$next.json"), heartbeat $last -> $(qemu_beat "$next"))"
  PREV=$CUR CUR=$next
}

# stats_say FILE ROLE PATTERN: the ROLE section of FILE has mode tcp and a reason matching PATTERN.
stats_say() {
  python3 - "$@" <<'PY' || fail "stats $1 ($2): $(cat "$1" 2>/dev/null)"
import json, re, sys, time
path, role, pattern = sys.argv[1:4]
for _ in range(50):  # a QEMU writes its stats as its channels end: give it a moment
    try:
        s = json.load(open(path))[role]
        if re.search(pattern, s["fallback_reason"] or ""):
            break
    except (OSError, KeyError, ValueError):
        pass
    time.sleep(0.2)
assert s["mode"] == "tcp", s
assert s["multifd_channels"] >= 2 and s["rdma_bytes"] == 0 and s["socket_bytes"] > 0, s
assert re.search(pattern, s["fallback_reason"] or ""), s["fallback_reason"]
PY
}

migrate_ok "both under qemu-exec, no RDMA device: plain TCP" "$(lib vm1)"
stats_say "$W/vm1.stats" destination "no RDMA device serves 127.0.0.1"
stats_say "$W/vm0.stats" source "made no RDMA offer"
qlog "ok: both stats files say plain TCP and why ($(python3 -c "import json;print(json.load(open('$W/vm1.stats'))['destination']['fallback_reason'])"))"

migrate_ok "source under qemu-exec, destination plain QEMU" ""
stats_say "$W/vm1.stats" source "made no RDMA offer"

# vm3's library plays another wire version (a test knob), for the next migration.
migrate_ok "source plain QEMU, destination under qemu-exec" "env RAMSHIFT_QEMU_TEST_WIRE_VERSION=99 $(lib vm3)"
stats_say "$W/vm3.stats" destination "does not run with the library"

migrate_ok "both under qemu-exec, the source's library of another version" "$(lib vm4)"
stats_say "$W/vm4.stats" destination "the source's library speaks wire version 99, this one 2"
stats_say "$W/vm3.stats" source "made no RDMA offer"
qlog "PASS"
