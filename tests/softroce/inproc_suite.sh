#!/bin/bash
# Inside the soft-RoCE VM (inproc_run.sh boots it): stock QEMU under `ramshift qemu-exec` on both
# sides migrates over plain tcp: with multifd, and the library moves the pages by RDMA READ.
#   inproc_suite.sh LIBRARY GUEST_ELF [NEWER_QEMU NEWER_QEMU_ROOT]
#  1 a paused 64 MiB guest whose RAM is an image (2 and 4 channels): the destination's RAM
#    file equals the image, both stats files say rdma, the reads moved what the source exposed,
#    and after the switch the multifd sockets carried less than one page per packet on average
#    (QEMU's packet headers and SYNC packets — 1,344 bytes each — and the frames; no pages)
#  2 the destination's memlock limit too low: the migration fails, the source stays as it was,
#    and the destination's stats say memlock
#  3 a running guest (tests/qemu/guest/bare.c: the test guest's memory, dirtying and page check
#    without a kernel, so it boots at once under nested emulation) migrates with Debian's QEMU
#    and, when given, the newer one (bookworm-backports): its heartbeat continues on the
#    destination, its own page check stays clean, and the pages did not cross the sockets
#  4 the READ connection authenticated (inproc_security.sh; alone with INPROC_ONLY=security on
#    inproc_run.sh)
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # the VM's init starts us with busybox sh
set -uo pipefail
LIB=${1:?usage: inproc_suite.sh LIBRARY GUEST_ELF [NEWER_QEMU NEWER_QEMU_ROOT]}
GUEST=${2:?usage: inproc_suite.sh LIBRARY GUEST_ELF [NEWER_QEMU NEWER_QEMU_ROOT]}
NEWER_QEMU=${3:-}; NEWER_ROOT=${4:-}
QEMU=/usr/bin/qemu-system-x86_64
export QEMU_MODULE_DIR=/usr/lib/x86_64-linux-gnu/qemu
ADDR=10.9.0.2
W=/tmp/inproc; mkdir -p "$W"
FAILS=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
step() { echo "=== inproc: $*"; }
PIDS=()
SRC_EXEC=(); DST_EXEC=()  # more qemu-exec flags for migrate_paused (inproc_security.sh)
# SIGTERM, then SIGKILL: QEMU 7.2's destination can hang in its main thread after a multifd
# channel failed (it waits for that channel's sync), where no SIGTERM reaches it.
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 2
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null; PIDS=()
}
trap stop_all EXIT
exec_qemu() { ramshift qemu-exec --library "$LIB" --stats "$1" -- "$QEMU" "${@:2}"; }
# migrate_paused TAG CHANNELS TRANSPORT [QEMU-MIGRATE ARGS]: the paused image guest, both QEMUs
# under qemu-exec.
migrate_paused() {
  local tag=$1 ch=$2 tr=$3; shift 3
  rm -f "$W/dst.ram" "$W"/*.qmp
  ramshift qemu-exec --transport "$tr" --library "$LIB" --stats "$W/s$tag.json" "${SRC_EXEC[@]}" -- "$QEMU" "${qcommon[@]}" \
    -qmp "unix:$W/qs.qmp,server=on,wait=off" \
    -object memory-backend-file,id=ram0,size=64M,mem-path="$W/src.img",share=off >"$W/qs$tag.log" 2>&1 &
  PIDS+=($!)
  ramshift qemu-exec --transport "$tr" --library "$LIB" --stats "$W/d$tag.json" "${DST_EXEC[@]}" -- "$QEMU" "${qcommon[@]}" \
    -qmp "unix:$W/qd.qmp,server=on,wait=off" -incoming defer \
    -object memory-backend-file,id=ram0,size=64M,mem-path="$W/dst.ram",share=on >"$W/qd$tag.log" 2>&1 &
  PIDS+=($!)
  ramshift qemu-migrate --src-qmp "$W/qs.qmp" --dst-qmp "$W/qd.qmp" --dst-uri "tcp:$ADDR:$((7300 + RANDOM % 600))" \
    --multifd-channels "$ch" --max-bandwidth 0 --timeout 900 --json "$W/m$tag.json" "$@" 2>"$W/m$tag.err"
}
# jget FILE SECTION KEY: a number of the stats file's source/destination section.
jget() {
  awk -v s="  \"$2\": {" -v k="    \"$3\": " 'index($0, s) == 1 {on = 1} on && index($0, k) == 1 {
    v = substr($0, length(k) + 1); gsub(/[",]/, "", v); print v; exit}' "$1"
}
show() { echo "--- $1"; cat "$1" 2>/dev/null | head -60; }

ramshift make-image --size 64M --pattern mixed "$W/src.img" >/dev/null
qcommon=(-accel tcg -m 64 -machine pc,memory-backend=ram0 -S -display none -nodefaults -no-user-config)
ONLY=$(cat /opt/share/inproc_only 2>/dev/null)
if [ "$ONLY" = security ] || [ "$ONLY" = regcost ]; then
  source /opt/share/inproc_security.sh
  echo "inproc: $FAILS failure(s)"
  [ $FAILS = 0 ]; exit
fi

step "a paused 64 MiB guest, pages by RDMA READ"
for ch in 2 4; do
  t0=$(date +%s)
  if migrate_paused $ch $ch rdma; then
    pass "qemu-migrate, $ch multifd channels, both QEMUs under qemu-exec ($(($(date +%s) - t0)) s)"
  else
    fail "qemu-migrate, $ch channels: $(tail -3 "$W/m$ch.err")"; cat "$W/qs$ch.log" "$W/qd$ch.log"
  fi
  sleep 1
  stop_all
  cmp -s "$W/src.img" "$W/dst.ram" && pass "destination RAM identical to the image ($ch channels)" ||
    fail "destination RAM differs from the image ($ch channels)"
  for side in s:source d:destination; do
    f=$W/${side%%:*}$ch.json role=${side#*:}
    mode=$(grep -A3 "\"$role\": {" "$f" | grep -o '"mode": "[a-z]*"' | head -1)
    [ "$(awk -v s="  \"$role\": {" 'index($0, s) == 1 {on = 1} on && /"mode"/ {print; exit}' "$f" | grep -o rdma)" = rdma ] &&
      pass "$role stats: mode rdma ($ch channels)" || { fail "$role stats: not rdma $mode"; show "$f"; }
  done
  rd=$(jget "$W/d$ch.json" destination rdma_bytes); sk=$(jget "$W/d$ch.json" destination socket_bytes)
  rs=$(jget "$W/s$ch.json" source rdma_bytes); fr=$(jget "$W/d$ch.json" destination frames)
  pl=$(jget "$W/d$ch.json" destination plain_bytes)
  echo "destination: ${rd:-?} bytes by RDMA READ; on the multifd sockets ${pl:-?} bytes before the switch" \
    "and $((${sk:-0} - ${pl:-0})) after it in ${fr:-?} packets; source: ${rs:-?} by RDMA"
  [ "${rd:-0}" -gt $((32 << 20)) ] && [ $((${sk:-1} - ${pl:-0})) -lt $((${fr:-0} * 4096)) ] && [ "${rs:-0}" = "${rd:-1}" ] &&
    pass "page payloads did not cross the sockets ($ch channels)" ||
    { fail "page payloads crossed the sockets ($ch channels)"; show "$W/d$ch.json"; }
  # Neighbouring guest pages (neighbours on both sides) are read by one READ, not one each.
  pg=$(jget "$W/d$ch.json" destination rdma_pages); rr=$(jget "$W/d$ch.json" destination rdma_reads)
  [ "${rr:-0}" -gt 0 ] && [ "${rr:-0}" -lt "${pg:-0}" ] &&
    pass "${pg} pages by ${rr} READs ($ch channels: neighbouring pages read together)" ||
    { fail "${pg:-?} pages took ${rr:-?} READs ($ch channels): neighbouring pages not merged"; show "$W/d$ch.json"; }
done

step "multifd with zstd compression: the library leaves compressed packets on the sockets"
if migrate_paused zstd 2 rdma --multifd-compression zstd; then
  stop_all
  cmp -s "$W/src.img" "$W/dst.ram" && pass "zstd: destination RAM identical to the image" ||
    fail "zstd: destination RAM differs from the image"
  rd=$(jget "$W/dzstd.json" destination rdma_bytes); sk=$(jget "$W/dzstd.json" destination socket_bytes)
  [ "${rd:-1}" = 0 ] && [ "${sk:-0}" -gt $((8 << 20)) ] &&
    pass "zstd: no page by RDMA, ${sk} bytes of compressed packets on the sockets, untouched" ||
    { fail "zstd: rdma_bytes ${rd:-?}, socket_bytes ${sk:-?}"; show "$W/dzstd.json"; }
else
  fail "qemu-migrate with multifd-compression zstd: $(tail -3 "$W/mzstd.err")"; stop_all
fi

step "figures: the same migration with the library passing everything through (--transport tcp)"
migrate_paused tcp4 4 tcp || fail "qemu-migrate with --transport tcp: $(tail -2 "$W/mtcp4.err")"
stop_all
for tag in 4 tcp4; do
  echo "figure: 64 MiB paused image guest, multifd 4, $([ $tag = 4 ] && echo "library (RDMA READ)" || echo "plain TCP (--transport tcp)"):" \
    "$(grep -o 'total [0-9]* ms' "$W/m$tag.err")"
done

step "the destination's memlock limit too low"
rm -f "$W/dst.ram" "$W"/*.qmp
exec_qemu "$W/sm.json" "${qcommon[@]}" -qmp "unix:$W/qs.qmp,server=on,wait=off" \
  -object memory-backend-file,id=ram0,size=64M,mem-path="$W/src.img",share=off >"$W/qsm.log" 2>&1 &
PIDS+=($!); qs=$!
# Root's CAP_IPC_LOCK ignores the limit: drop it first.
setpriv --bounding-set=-ipc_lock --inh-caps=-ipc_lock bash -c "ulimit -l 1024 && exec ramshift qemu-exec \
  --library $LIB --stats $W/dm.json -- $QEMU ${qcommon[*]} -qmp unix:$W/qd.qmp,server=on,wait=off \
  -incoming defer -object memory-backend-file,id=ram0,size=64M,mem-path=$W/dst.ram,share=on" >"$W/qdm.log" 2>&1 &
PIDS+=($!)
ramshift qemu-migrate --src-qmp "$W/qs.qmp" --dst-qmp "$W/qd.qmp" --dst-uri "tcp:$ADDR:7310" \
  --multifd-channels 2 --max-bandwidth 0 --timeout 600 --json "$W/mm.json" 2>"$W/mm.err"
rc=$?
[ $rc = 1 ] && pass "the migration failed (exit 1)" || fail "qemu-migrate exit $rc with the destination's memlock at 1 MiB"
kill -0 $qs 2>/dev/null && pass "the source QEMU still runs" || fail "the source QEMU went away"
# The reason goes to the stats file, then to QEMU's stderr (the library writes the file
# first, so a QEMU that exits on the failed load cannot leave the file without it).
if grep -q memlock "$W/dm.json"; then
  pass "destination stats: $(grep -o '"[^"]*memlock[^"]*"' "$W/dm.json" | head -1)"
else
  fail "the destination's stats say nothing of memlock"; show "$W/dm.json"
fi
if grep -q "ramshift-qemu: destination: .*RLIMIT_MEMLOCK" "$W/qdm.log"; then
  pass "the destination said: $(grep -o "ramshift-qemu: destination: .*RLIMIT_MEMLOCK[^;]*" "$W/qdm.log" | head -1)"
else
  fail "the destination said nothing of memlock on QEMU's stderr"; cat "$W/qdm.log"
fi
echo "qemu-migrate said: $(tail -2 "$W/mm.err" | tr '\n' ' ')"
stop_all

# migrate_running LABEL QEMU [QEMU ARGS...]: the bare test guest (32 MiB, dirtying 1 MB/s), both
# sides under qemu-exec, multifd 2; the checks a user of a running VM would make.
migrate_running() {
  local label=$1 q=$2; shift 2
  step "a running guest migrates with pages by RDMA READ ($label)"
  local gcommon=(-accel tcg -m 96 -display none -nodefaults -no-user-config -kernel "$GUEST"
                 -append "RS_MEM_MB=32 RS_DIRTY_MBPS=1" "$@")
  rm -f "$W"/*.qmp "$W"/g[01].log
  ramshift qemu-exec --library "$LIB" --stats "$W/sg.json" -- "$q" "${gcommon[@]}" -serial "file:$W/g0.log" \
    -qmp "unix:$W/qs.qmp,server=on,wait=off" >"$W/qsg.log" 2>&1 &
  PIDS+=($!); local gs=$!
  ramshift qemu-exec --library "$LIB" --stats "$W/dg.json" -- "$q" "${gcommon[@]}" -serial "file:$W/g1.log" \
    -qmp "unix:$W/qd.qmp,server=on,wait=off" -incoming defer >"$W/qdg.log" 2>&1 &
  PIDS+=($!)
  if ! wait_beat "$W/g0.log" 2 120; then
    fail "$label: the test guest did not start"; tail -5 "$W/g0.log" "$W/qsg.log"; stop_all; return
  fi
  pass "$label: the guest runs on the source (heartbeat $(beat "$W/g0.log"))"
  local t0; t0=$(date +%s)
  if ! ramshift qemu-migrate --src-qmp "$W/qs.qmp" --dst-qmp "$W/qd.qmp" --dst-uri "tcp:$ADDR:$((7300 + RANDOM % 600))" \
      --multifd-channels 2 --max-bandwidth 0 --timeout 600 --json "$W/mg.json" 2>"$W/mg.err"; then
    fail "$label: qemu-migrate of the running guest: $(tail -3 "$W/mg.err")"; stop_all; return
  fi
  pass "$label: qemu-migrate completed ($(($(date +%s) - t0)) s)"
  local last; last=$(beat "$W/g0.log"); kill $gs
  wait_beat "$W/g1.log" $((last + 2)) 120 && pass "$label: the heartbeat continues on the destination ($last -> $(beat "$W/g1.log"))" ||
    fail "$label: no heartbeat on the destination after $last"
  local bad; bad=$(tr -d '\r' < "$W/g1.log" | grep -a -o 'bad [0-9]*' | awk '$2 > 0' | head -1)
  [ -z "$bad" ] && grep -q 'heartbeat' "$W/g1.log" && pass "$label: the guest's own page check stayed clean" ||
    { fail "$label: the guest saw corrupted memory: $bad"; grep -a 'does not match' "$W/g1.log" | head -3; }
  local rd sk fr pl
  rd=$(jget "$W/dg.json" destination rdma_bytes); sk=$(jget "$W/dg.json" destination socket_bytes)
  fr=$(jget "$W/dg.json" destination frames); pl=$(jget "$W/dg.json" destination plain_bytes)
  echo "running guest ($label): ${rd:-?} bytes by RDMA READ, ${pl:-?} on the sockets before the switch," \
    "$((${sk:-0} - ${pl:-0})) after it in ${fr:-?} packets"
  [ "${rd:-0}" -gt $((16 << 20)) ] && [ $((${sk:-1} - ${pl:-0})) -lt $((${fr:-0} * 4096)) ] &&
    pass "$label: page payloads did not cross the sockets" || { fail "$label: pages crossed the sockets"; show "$W/dg.json"; }
  stop_all
}
beat() { tr -d '\r' < "$1" 2>/dev/null | grep -a -o 'heartbeat [0-9]*' | tail -1 | cut -d' ' -f2; }
wait_beat() {  # FILE N SECONDS
  local b
  for _ in $(seq $(($3 * 2))); do b=$(beat "$1"); [ -n "$b" ] && [ "$b" -ge "$2" ] && return 0; sleep 0.5; done
  return 1
}
qemu_name() { "$1" --version | awk 'NR == 1 {print "QEMU " $4}'; }
migrate_running "$(qemu_name "$QEMU")" "$QEMU"
if [ -n "$NEWER_QEMU" ]; then
  # The newer QEMU's own firmware; no modules (Debian 12's are 7.2's and would not load).
  QEMU_MODULE_DIR=$NEWER_ROOT/usr/lib/x86_64-linux-gnu/qemu \
    migrate_running "$(qemu_name "$NEWER_QEMU")" "$NEWER_QEMU" \
    -L "$NEWER_ROOT/usr/share/qemu" -L "$NEWER_ROOT/usr/share/seabios"
fi
source /opt/share/inproc_security.sh
echo "inproc: $FAILS failure(s)"
[ $FAILS = 0 ]
