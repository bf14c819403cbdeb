# Helpers for the QEMU bridge tests: a tiny TCG guest (Debian's kernel + guest/init.c as the
# whole initramfs) started as a migration source or destination, with QMP and a serial log.
# Source it after setting RAMSHIFT (the binary), then call qemu_test_begin (or set W, a
# scratch directory the caller removes, yourself).
QEMU_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$QEMU_LIB_DIR/../lib/debian_kernel.sh"
. "$QEMU_LIB_DIR/guest/build.sh"

qlog() { echo "qemu-test: $*" >&2; }

# qemu_test_begin NAME [debian|backports]: the common start of a QEMU test. A scratch directory
# $W, removed on exit together with every VM, the processes in PIDS and whatever the test's own
# qemu_test_on_exit (if defined) undoes; fail MESSAGE, which prints the tail of each log; the
# guest's size and dirty rate (GUEST_MB, DIRTY: 96, 6 unless set); the tools installed; with
# `backports`, QEMU_BIN pointing at Debian backports' newer QEMU.
qemu_test_begin() {
  QEMU_FLAVOUR=${2:-debian}
  W=$(mktemp -d "/tmp/ramshift-$1.XXXXXX")
  PIDS=()
  trap qemu_test_end EXIT
  GUEST_MB=${GUEST_MB:-96}
  DIRTY=${DIRTY:-6}
  qemu_need_tools
  if [ "${2:-debian}" = backports ]; then
    . "$QEMU_LIB_DIR/../lib/debian_backports_qemu.sh"
    backports_qemu || exit $?
    QEMU_BIN=$QEMU_NEWER_BIN
  fi
  qlog "QEMU: $("${QEMU_BIN:-qemu-system-x86_64}" --version | head -1)"
}
# qemu_netns_test_begin NAME FLAVOUR TAG PREFIX RATE: qemu_test_begin for a test across two
# network namespaces, $NSA and $NSB (named from TAG and this shell's pid), joined by a veth
# shaped to RATE with PREFIX.1 and PREFIX.2 (scripts/lib/netns.sh), removed on exit. Without
# root, or if the namespaces cannot be made, the test is skipped (77).
qemu_netns_test_begin() {
  [ "$(id -u)" = 0 ] || { echo "netns test needs root" >&2; exit 77; }
  . "$QEMU_LIB_DIR/../../scripts/lib/netns.sh"
  NSA=rs${3}a$$ NSB=rs${3}b$$
  qemu_test_on_exit() { netns_link_down "$NSA" "$NSB"; }
  qemu_test_begin "$1" "$2"
  netns_link_up "$NSA" "$NSB" "$4" "$5" || { qlog "cannot create namespaces"; exit 77; }
}
qemu_test_end() {
  local p
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  qemu_stop_all
  declare -F qemu_test_on_exit > /dev/null && qemu_test_on_exit
  rm -rf "$W"
}
# qemu_broke_or_fail MESSAGE: a destination guest that QEMU reported running came out broken
# (no heartbeat, or its own page check failed). With Debian's QEMU 7.2 that is QEMU's own TCG
# issue now and then (README: it happens with ramshift out of the data path too), so the whole
# test runs once more from fresh guests, saying so; a second break, or any break with the
# backports' QEMU, fails. The test must have set QEMU_TEST_ARGS=("$@") at its start.
qemu_broke_or_fail() {
  if [ "${QEMU_FLAVOUR:-}" = debian ] && [ -z "${RAMSHIFT_QEMU_REDONE:-}" ]; then
    qlog "QEMU 7.2 broke the migrated guest ($1); the whole test once more from fresh guests"
    local f
    for f in "$W"/*.log; do [ -s "$f" ] && { echo "--- $f" >&2; tail -3 "$f" >&2; }; done
    trap - EXIT
    qemu_test_end
    RAMSHIFT_QEMU_REDONE=1 exec bash "$0" "${QEMU_TEST_ARGS[@]}"
  fi
  fail "$1"
}
fail() {
  local f
  qlog "FAIL: $*"
  for f in "$W"/*.log "$W"/*.err "$W"/*.qemu.out; do
    [ -s "$f" ] && { echo "--- $f" >&2; tail -5 "$f" >&2; }
  done
  exit 1
}

# Installs what the tests need (qemu-system-x86, a static libc for the guest), or exits 77.
qemu_need_tools() {
  local pkgs=()
  command -v qemu-system-x86_64 >/dev/null || pkgs+=(qemu-system-x86)
  command -v cpio >/dev/null || pkgs+=(cpio)
  [ -e /usr/lib/x86_64-linux-gnu/libc.a ] || pkgs+=(libc6-dev)
  command -v gcc >/dev/null || pkgs+=(gcc)
  if [ ${#pkgs[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { qlog "needs ${pkgs[*]} (run as root to install)"; exit 77; }
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
  debian_kernel || exit $?
}

# Builds $W/guest.cpio.gz: the static init and the device nodes it needs.
qemu_build_guest() { build_linux_guest "$W/guest.cpio.gz"; }

# qemu_start NAME GUEST_MB DIRTY_MBPS [QEMU ARGS...]: boots the guest (RAM = GUEST_MB x 9/8 + 128)
# with QMP at $W/NAME.qmp and the console in $W/NAME.log. Prefix the call with
# QEMU_WRAP="ip netns exec ns" to run it elsewhere; QEMU_BIN picks another QEMU binary.
qemu_start() {
  local name=$1 mb=$2 dirty=$3; shift 3
  ${QEMU_WRAP:-} "${QEMU_BIN:-qemu-system-x86_64}" -accel tcg -m $((mb + mb / 8 + 128)) -nodefaults -no-user-config \
    -display none -serial "file:$W/$name.log" -qmp "unix:$W/$name.qmp,server=on,wait=off" \
    -kernel "$KERNEL" -initrd "$W/guest.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1 RS_MEM_MB=$mb RS_DIRTY_MBPS=$dirty" "$@" \
    > "$W/$name.qemu.out" 2>&1 &
  echo $! > "$W/$name.pid"
}

# The last heartbeat number in NAME's console (0 if none yet).
qemu_beat() { { tr -d '\r' < "$W/$1.log"; } 2>/dev/null | grep -a -o 'heartbeat [0-9]*' | tail -1 | cut -d' ' -f2 || true; }

# Waits until NAME's heartbeat reaches N (or fails after T seconds).
qemu_wait_beat() {
  local name=$1 n=$2 t=${3:-180} i=0 b
  while [ $i -lt $((t * 5)) ]; do
    b=$(qemu_beat "$name"); [ -n "$b" ] && [ "$b" -ge "$n" ] && return 0
    kill -0 "$(cat "$W/$name.pid")" 2>/dev/null || { qlog "$name QEMU exited"; cat "$W/$name.qemu.out" >&2; return 1; }
    sleep 0.2; i=$((i + 1))
  done
  qlog "$name: heartbeat $n not reached in ${t}s (last: ${b:-none})"; tail -5 "$W/$name.log" >&2
  return 1
}

# Fails when NAME's console reports a bad page.
qemu_check_clean() {
  local bad
  bad=$(tr -d '\r' < "$W/$1.log" | grep -a -o 'bad [0-9]*' | awk '$2 > 0' | head -1)
  [ -z "$bad" ] || { qlog "$1 guest saw corrupted memory:"; grep -a 'does not match' "$W/$1.log" | head -3 >&2; return 1; }
}

# qemu_start_bridges NEXT DEST_URI: a destination bridge listening on DEST_URI for QEMU NEXT
# (at $W/NEXT.in), then a source bridge at $W/NEXT.sb connected to it. Sets DPID, SPID.
# DEST_WRAP / SRC_WRAP prefix the commands (e.g. "ip netns exec nsB"), DEST_ARGS / SRC_ARGS
# add options (e.g. --tls-dir DIR; shell words, so quotes group); GARBAGE=1 sends junk
# to the destination bridge's port before the source bridge connects.
qemu_start_bridges() {
  local next=$1 uri=$2 i duri dargs sargs
  eval "dargs=(${DEST_ARGS:-}) sargs=(${SRC_ARGS:-})"  # shell words: quotes group (EAL arguments)
  ${DEST_WRAP:-} "$RAMSHIFT" qemu-bridge dest --listen "$uri" --qemu "unix:$W/$next.in" "${dargs[@]}" \
    > "$W/$next.dbr.out" 2> "$W/$next.dbr.err" &
  DPID=$!
  for i in $(seq 100); do grep -q listening "$W/$next.dbr.out" && break; sleep 0.1; done
  duri=$(awk '/listening on/ {print $3}' "$W/$next.dbr.out")
  [ -n "$duri" ] || return 1
  if [ -n "${GARBAGE:-}" ]; then  # in a subshell: the bridge hangs up, SIGPIPE ends only it
    ( exec 3<>"/dev/tcp/127.0.0.1/${duri##*:}" && printf 'GET / HTTP/1.0\r\n\r\n%.0s' {1..50} >&3 ) 2>/dev/null
    sleep 0.3
  fi
  ${SRC_WRAP:-} "$RAMSHIFT" qemu-bridge source --listen "unix:$W/$next.sb" --to "$duri" "${sargs[@]}" \
    > "$W/$next.sbr.out" 2> "$W/$next.sbr.err" &
  SPID=$!
  for i in $(seq 100); do grep -q listening "$W/$next.sbr.out" && return 0; sleep 0.1; done
  return 1
}

qemu_stop_all() {
  local p
  for p in "$W"/*.pid; do [ -e "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
  p=$(jobs -p); [ -n "$p" ] && kill -9 $p 2>/dev/null
  wait 2>/dev/null || true
}
