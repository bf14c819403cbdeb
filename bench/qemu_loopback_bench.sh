#!/bin/bash
# The bridge's own cost on loopback, with nothing else moving: stock QEMU 7.2 migrating a
# *paused* guest whose RAM is a file image (`ramshift make-image --pattern mixed`), directly
# over a unix socket and through both bridges (`qemu-migrate --via tcp://127.0.0.1:0`), the
# configurations alternating run by run so that drift on this noisy machine hits all alike.
# A paused source has no dirty pages and no convergence decisions: QEMU's total-time is the
# time to carry GUEST_MB of RAM, which is what a bridge can add to. Every run's destination
# RAM file is compared with the image byte for byte. A configuration whose arguments start with
# PRELOAD runs both QEMUs under `ramshift qemu-exec` (the in-process library; on a host without
# RDMA it falls back to plain TCP, and this measures what that costs); PORT in the arguments
# becomes a free port.
# Usage: bench/qemu_loopback_bench.sh [RAMSHIFT]   (GUEST_MB=1024 RUNS=7 CONFIGS=...)
#   e.g. CONFIGS="direct|--multifd-channels 2 --dst-uri tcp:127.0.0.1:PORT;library|PRELOAD --multifd-channels 2 --dst-uri tcp:127.0.0.1:PORT"
set -uo pipefail
RAMSHIFT=$(readlink -f "${1:-build/release/cli/ramshift}")
GUEST_MB=${GUEST_MB:-1024}; RUNS=${RUNS:-7}
# label|qemu-migrate arguments (no --via: QEMU direct over a unix socket)
DEFAULT_CONFIGS=(
  "QEMU direct, single channel|"
  "bridge, single channel|--via tcp://127.0.0.1:0"
  "QEMU direct, multifd 2|--multifd-channels 2"
  "bridge, multifd 2, --codec none|--via tcp://127.0.0.1:0 --multifd-channels 2 --codec none"
  "bridge, multifd 2, --codec auto|--via tcp://127.0.0.1:0 --multifd-channels 2 --codec auto"
)
if [ -n "${CONFIGS:-}" ]; then IFS=';' read -r -a CFG <<< "$CONFIGS"; else CFG=("${DEFAULT_CONFIGS[@]}"); fi
# tmpfs, and both QEMUs prefault their RAM before the clock starts: otherwise page faults on
# the file (and the destination's writeback to disk) take most of the time for either path.
W=$(mktemp -d /dev/shm/ramshift-qemu-lo.XXXXXX)
cleanup() { kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
. "$(dirname "${BASH_SOURCE[0]}")/stats.sh"  # median
jget() { grep -a -m1 -o "\"$2\": *[0-9.]*" "$1" | grep -o '[0-9.]*$'; }

"$RAMSHIFT" make-image --size "${GUEST_MB}M" --pattern mixed "$W/src.img" > /dev/null || exit 1

run() {  # ARGS... -> prints QEMU's total-time in ms, the QEMUs' CPU s, the bridges' CPU s (0s on failure)
  local common=(-accel tcg -m "$GUEST_MB" -machine pc,memory-backend=ram0 -S -display none
                -nodefaults -no-user-config)
  rm -f "$W/dst.ram" "$W/dst.sock"
  local wrap_s=() wrap_d=() args=("${@//PORT/$((30000 + RANDOM % 20000))}")
  if [ "${args[0]:-}" = PRELOAD ]; then
    args=("${args[@]:1}")
    wrap_s=("$RAMSHIFT" qemu-exec --stats "$W/lib-s.json" --)
    wrap_d=("$RAMSHIFT" qemu-exec --stats "$W/lib-d.json" --)
  fi
  set -- "${args[@]}"
  "${wrap_s[@]}" qemu-system-x86_64 "${common[@]}" -qmp "unix:$W/s.qmp,server=on,wait=off" \
    -object "memory-backend-file,id=ram0,size=${GUEST_MB}M,mem-path=$W/src.img,share=off,prealloc=on" \
    > "$W/s.log" 2>&1 &
  local s=$!
  "${wrap_d[@]}" qemu-system-x86_64 "${common[@]}" -qmp "unix:$W/d.qmp,server=on,wait=off" -incoming defer \
    -object "memory-backend-file,id=ram0,size=${GUEST_MB}M,mem-path=$W/dst.ram,share=on,prealloc=on" \
    > "$W/d.log" 2>&1 &
  local d=$!
  for _ in $(seq 100); do [ -S "$W/s.qmp" ] && [ -S "$W/d.qmp" ] && break; sleep 0.05; done
  # QMP greets only once QEMU has set up (prefaulted) its RAM: CPU counted after the
  # greetings is the migration's.
  qmp_greeting "$W/s.qmp" && qmp_greeting "$W/d.qmp" || { echo "QEMU did not start" >&2; echo "0 0 0"; return; }
  local extra=(); [[ " $* " == *" --via "* || " $* " == *" --dst-uri "* ]] || extra=(--dst-uri "unix:$W/dst.sock")
  local q0; q0=$(( $(cpu_ticks $s) + $(cpu_ticks $d) ))
  local TIMEFORMAT='%U %S'
  { time "$RAMSHIFT" -q qemu-migrate --src-qmp "$W/s.qmp" --dst-qmp "$W/d.qmp" "${extra[@]}" "$@" \
      --json "$W/m.json" 2> "$W/m.err" ; } 2> "$W/time"
  local rc=$?
  local q1; q1=$(( $(cpu_ticks $s) + $(cpu_ticks $d) ))
  # QEMU writes the destination's RAM file through its shared mapping; quit it before comparing.
  kill $s $d 2>/dev/null; wait $s $d 2>/dev/null
  if [ $rc != 0 ]; then echo "FAILED: $(tail -1 "$W/m.err")" >&2; echo "0 0 0"; return; fi
  cmp -s "$W/src.img" "$W/dst.ram" || { echo "destination RAM differs from the image" >&2; echo "0 0 0"; return; }
  # total-time ms, QEMUs' CPU s, qemu-migrate's CPU s (both bridges when --via)
  echo "$(jget "$W/m.json" total_ms) $(awk -v t=$((q1 - q0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {print t / hz}') $(awk '{print $1 + $2}' "$W/time")"
}
qmp_greeting() {
  python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(60); s.connect(sys.argv[1]); s.recv(4096)' "$1"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

declare -A T QCPU BCPU
for r in $(seq "$RUNS"); do
  for c in "${CFG[@]}"; do
    read -r ms qc bc < <(run ${c#*|})
    T[$c]+="$ms " QCPU[$c]+="$qc " BCPU[$c]+="$bc "
    echo "progress: run $r, ${c%%|*}: $ms ms, QEMU CPU $qc s, bridge/driver CPU $bc s" >&2
  done
done

base=
echo
echo "### Loopback, paused ${GUEST_MB} MiB guest (mixed image), QEMU 7.2, alternating, $RUNS runs"
echo
echo "| path | total s (median) | vs QEMU direct, same channels | QEMUs' CPU s | qemu-migrate's CPU s (bridges) | runs (s) |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
for c in "${CFG[@]}"; do
  m=$(echo ${T[$c]} | tr ' ' '\n' | median)
  [[ ${c#*|} != *--via* && ${c#*|} != PRELOAD* ]] && base=$m
  runs=$(echo ${T[$c]} | tr ' ' '\n' | awk '{printf "%.2f ", $1 / 1000}')
  printf '| %s | %.2f | %s | %.2f | %.2f | %s|\n' "${c%%|*}" "$(awk -v m="$m" 'BEGIN {print m / 1000}')" \
    "$(awk -v m="$m" -v b="${base:-0}" 'BEGIN {if (b > 0) printf "%.2fx", m / b; else print "-"}')" \
    "$(echo ${QCPU[$c]} | tr ' ' '\n' | median)" "$(echo ${BCPU[$c]} | tr ' ' '\n' | median)" "$runs"
done
