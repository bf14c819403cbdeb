#!/bin/bash
# Stock QEMU 7.2 migrating a running TCG guest, directly and through the ramshift bridge, in
# one run (docs/benchmarks/README.md, "QEMU bridge"). The guest is tests/qemu/guest/init.c:
# GUEST_MB (1024) of memory, 7/16 random, 7/16 structured, 1/8 zero pages.
#   loopback   QEMU -> QEMU over a unix socket vs through bridges over tcp://127.0.0.1
#   link       two network namespaces joined by a 1 Gbit/s tc-tbf veth: QEMU tcp (the QEMUs in
#              the namespaces) vs bridges in the namespaces; idle guest, then one dirtying
#              DIRTY (20) MB/s; plus ramshift's own live engine on the same link (synthetic
#              guest of the same size and rate) for the live-engine issue
#   dirty      only the dirtying comparison: QEMU direct tcp and multifd 2 zstd, the bridge
#              (multifd 4 xbzrle+zstd, multifd 2 auto; DIRTY_BRIDGE=0 skips them), each run on
#              a freshly booted guest (a QEMU migration that leaves a dead guest cannot turn
#              the next runs into migrations of a dead guest), then ramshift's live engine
#   downtime   QEMU direct multifd 2 zstd on a fresh guest and ramshift's live engine at its
#              defaults, alternating run by run on the LINK (1gbit) veth: median and worst
#              downtime of each, and where ramshift's went (its downtime_detail, medians)
#   tune       QEMU direct tcp at its defaults (qemu-migrate --tune-switchover false: downtime-limit 300,
#              QEMU's own switch-over bandwidth) and the same with qemu-migrate's tuning
#              (--tune-switchover true, its default), alternating run by run on one guest that moves back and forth across
#              the LINK veth: median and worst downtime and total time, and the tuner's choices;
#              with TUNE_BRIDGE=1 (default) a third: the same tuning through the bridges (single
#              channel, one bridge in each namespace).
#              QEMU=backports runs Debian backports' QEMU 10.0 (avail-switchover-bandwidth is
#              QEMU >= 8.2; Debian's 7.2 gets only the downtime-limit tuning)
#   e.g. PHASES=dirty bench/qemu_bridge_bench.sh; BEAT_WAIT (120) s for the moved guest's
#   heartbeat; a guest that never beats again is reported under the table.
# Each configuration RUNS (3) times; medians. Usage: bench/qemu_bridge_bench.sh [RAMSHIFT]
set -uo pipefail
RAMSHIFT=$(readlink -f "${1:-build/release/cli/ramshift}")
GUEST_MB=${GUEST_MB:-1024}; DIRTY=${DIRTY:-20}; RUNS=${RUNS:-3}; PHASES=${PHASES:-"loopback link"}
# The bridge codecs compared on the link (auto decides by measuring; xbzrle+zstd always compresses).
LINK_CODECS=${LINK_CODECS:-"auto xbzrle+zstd"}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../scripts/lib/netns.sh"
if [ "${QEMU:-debian}" = backports ]; then
  . "$HERE/../tests/lib/debian_backports_qemu.sh"
  backports_qemu || exit $?
  QEMU_BIN=$QEMU_NEWER_BIN
fi
W=$(mktemp -d /tmp/ramshift-qemu-bench.XXXXXX)
NSA=rsqbA$$ NSB=rsqbB$$
cleanup() { netns_link_down "$NSA" "$NSB"; qemu_stop_all; rm -rf "$W"; }
trap cleanup EXIT
. "$HERE/../tests/qemu/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/stats.sh"  # median
jget() { grep -a -m1 -o "\"$2\": *[0-9.]*" "$1" | grep -o '[0-9.]*$'; }
qemu_need_tools; qemu_build_guest
LINK=${LINK:-1gbit}
netns_link_up "$NSA" "$NSB" 10.81.0 "$LINK" || { echo "cannot create namespaces" >&2; exit 77; }
declare -A NS_OF=([a]=$NSA [b]=$NSB) ADDR_OF=([a]=10.81.0.1 [b]=10.81.0.2)
CUR= SIDE=a N=0

# boot DIRTY_MBPS: a fresh source guest in namespace side a.
boot() {
  qemu_stop_all
  N=$((N + 1)); CUR=vm$N; SIDE=a
  QEMU_WRAP="ip netns exec ${NS_OF[a]}" qemu_start "$CUR" "$GUEST_MB" "$1"
  qemu_wait_beat "$CUR" 3 600 || exit 1
}

# one PATH ARGS...: one migration CUR -> next (in the other namespace); prints "total_ms downtime_ms".
# PATH: direct-unix | direct-tcp | bridge-lo | bridge-link
one() {
  local path=$1; shift
  local other=$([ $SIDE = a ] && echo b || echo a)
  N=$((N + 1)); local next=vm$N
  QEMU_WRAP="ip netns exec ${NS_OF[$other]}" qemu_start "$next" "$GUEST_MB" 0 -incoming defer
  local args=(--src-qmp "$W/$CUR.qmp" --dst-qmp "$W/$next.qmp" --json "$W/$next.json" --timeout 600)
  case $path in
    direct-unix) args+=(--dst-uri "unix:$W/$next.direct") ;;
    direct-tcp) args+=(--dst-uri "tcp:${ADDR_OF[$other]}:4444") ;;
    bridge-lo) args+=(--via tcp://127.0.0.1:0) ;;
    bridge-link)
      DEST_WRAP="ip netns exec ${NS_OF[$other]}" SRC_WRAP="ip netns exec ${NS_OF[$SIDE]}" \
        SRC_ARGS="--queues 5 ${BRIDGE_ARGS:-}" qemu_start_bridges "$next" "tcp://${ADDR_OF[$other]}:0" || return 1
      args+=(--src-uri "unix:$W/$next.sb" --dst-uri "unix:$W/$next.in") ;;
  esac
  "$RAMSHIFT" -q qemu-migrate "${args[@]}" "$@" 2> "$W/$next.err" || { echo "FAILED $(tail -1 "$W/$next.err")" >&2; echo "0 0"; }
  [ "$path" = bridge-link ] && wait "$DPID" "$SPID" 2>/dev/null
  kill "$(cat "$W/$CUR.pid")" 2>/dev/null
  qemu_wait_beat "$next" $(( $(qemu_beat "$CUR") + 1 )) "${BEAT_WAIT:-120}" >/dev/null ||
    { echo "no heartbeat after migration" >&2; echo "$LABEL" >> "$W/dead"; }
  qemu_check_clean "$next" || echo "GUEST MEMORY DIFFERED" >&2
  CUR=$next SIDE=$other
  echo "$(jget "$W/$next.json" total_ms) $(jget "$W/$next.json" downtime_ms)"
}

row() {  # LABEL PATH ARGS... : RUNS migrations, one table row
  local label=$1; shift
  local t=() d=() runs=""
  LABEL=$label
  for _ in $(seq "$RUNS"); do
    [ -n "${FRESH:-}" ] && boot "$FRESH"
    one "$@" > "$W/result"  # not in a subshell: it moves CUR and SIDE
    read -r a b < "$W/result"
    t+=("$a"); d+=("$b"); runs+="$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f/%d ", a / 1000, b}')"
  done
  local mt; mt=$(printf '%s\n' "${t[@]}" | median)
  printf '| %s | %.2f | %.0f | %s|\n' "$label" "$(awk -v m="$mt" 'BEGIN {print m / 1000}')" \
    "$(printf '%s\n' "${d[@]}" | median)" "$runs"
  echo "$label $mt" >> "$W/medians"
}

header() { echo; echo "### $1"; echo; echo "| path | total s (median) | downtime ms (median) | runs: s/ms |"; echo "| --- | ---: | ---: | --- |"; }

live_rows() {
  if [ "${LIVE:-1}" = 1 ]; then
    echo; echo "### ramshift's own live engine on the same link (synthetic ${GUEST_MB} MiB guest, ${DIRTY} MB/s, mixed)"; echo
    echo "| codec | total s (median) | downtime ms (median) | runs |"; echo "| --- | ---: | ---: | --- |"
    t=() d=() runs=""
    for _ in $(seq "$RUNS"); do
      ip netns exec "$NSB" "$RAMSHIFT" -q receive --listen tcp://10.81.0.2:7000 --once --resume-seconds 1 > "$W/rx.out" &
      rx=$!
      for _ in $(seq 100); do grep -q listening "$W/rx.out" 2>/dev/null && break; sleep 0.05; done
      ip netns exec "$NSA" "$RAMSHIFT" -q send --to tcp://10.81.0.2:7000 --codec auto \
        --guest "synthetic:size=${GUEST_MB}M,dirty-rate=${DIRTY}M,pattern=mixed" --json "$W/tx.json"
      wait $rx || echo "receiver failed" >&2
      a=$(jget "$W/tx.json" total_ms); b=$(jget "$W/tx.json" downtime_ms)
      t+=("$a"); d+=("$b"); runs+="$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f/%.0f ", a / 1000, b}')"
    done
    printf '| auto | %.2f | %.1f | %s|\n' "$(printf '%s\n' "${t[@]}" | median | awk '{print $1 / 1000}')" \
      "$(printf '%s\n' "${d[@]}" | median)" "$runs"
  fi
}

# live_once: one migration by ramshift's live engine across the link, every option at its
# default; prints "total_ms downtime_ms" then downtime_detail's parts (source) and the
# destination's verdict.
live_once() {
  ip netns exec "$NSB" "$RAMSHIFT" -q receive --listen tcp://10.81.0.2:7000 --once --resume-seconds 1 \
    --json "$W/rx.json" > "$W/rx.out" &
  local rx=$!
  for _ in $(seq 100); do grep -q listening "$W/rx.out" 2>/dev/null && break; sleep 0.05; done
  ip netns exec "$NSA" "$RAMSHIFT" -q send --to tcp://10.81.0.2:7000 \
    --guest "synthetic:size=${GUEST_MB}M,dirty-rate=${DIRTY}M,pattern=mixed" --json "$W/tx.json"
  wait $rx || echo "receiver failed" >&2
  python3 - "$W/tx.json" "$W/rx.json" <<'PY'
import json, sys
t, r = (json.load(open(p)) for p in sys.argv[1:3])
d = t.get("downtime_detail") or {}
parts = [d.get(k, 0) for k in ("last_pages_ms", "device_state_ms", "verify_ms", "handoff_ms", "predicted_ms")]
ok = t["status"] == "completed" and r.get("resumed", {}).get("verified") is True
print(t["total_ms"], t["downtime_ms"] or 0, *parts, t["rounds"], int(ok))
PY
}

worst() { sort -g | tail -1; }

if [[ $PHASES == *downtime* ]]; then
  echo; echo "### Downtime at defaults: ${GUEST_MB} MiB guest dirtying ${DIRTY} MB/s, $LINK veth, alternating"; echo
  echo "| path | total s (median) | downtime ms (median) | downtime ms (worst) | verified | runs: s/ms |"
  echo "| --- | ---: | ---: | ---: | ---: | --- |"
  qt=() qd=() qruns="" lt=() ld=() lruns="" lok=0 qok=0
  declare -a p1=() p2=() p3=() p4=() p5=() rounds=()
  for _ in $(seq "$RUNS"); do
    boot "$DIRTY"
    LABEL="QEMU multifd 2, zstd"; dead_before=$(cat "$W/dead" 2>/dev/null | wc -l)
    one direct-tcp --multifd-channels 2 --multifd-compression zstd --tune-switchover false > "$W/result"
    read -r a b < "$W/result"
    qt+=("$a"); qd+=("$b"); qruns+="$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f/%d ", a / 1000, b}')"
    [ "$(cat "$W/dead" 2>/dev/null | wc -l)" = "$dead_before" ] && [ "$b" != 0 ] && qok=$((qok + 1))
    qemu_stop_all
    read -r a b c1 c2 c3 c4 c5 r ok < <(live_once)
    lt+=("$a"); ld+=("$b"); p1+=("$c1"); p2+=("$c2"); p3+=("$c3"); p4+=("$c4"); p5+=("$c5"); rounds+=("$r")
    lok=$((lok + ok)); lruns+="$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f/%.1f ", a / 1000, b}')"
  done
  med() { printf '%s\n' "$@" | median; }
  printf '| QEMU direct multifd 2, zstd (its defaults: downtime-limit 300 ms) | %.2f | %.0f | %.0f | %s/%s | %s|\n' \
    "$(med "${qt[@]}" | awk '{print $1 / 1000}')" "$(med "${qd[@]}")" "$(printf '%s\n' "${qd[@]}" | worst)" "$qok" "$RUNS" "$qruns"
  printf '| ramshift live engine, defaults | %.2f | %.1f | %.1f | %s/%s | %s|\n' \
    "$(med "${lt[@]}" | awk '{print $1 / 1000}')" "$(med "${ld[@]}")" "$(printf '%s\n' "${ld[@]}" | worst)" "$lok" "$RUNS" "$lruns"
  echo
  printf 'ramshift downtime_detail, medians (ms): last pages %.2f, device state %.2f, verify %.2f, hand-off %.2f; predicted %.1f; rounds %s\n' \
    "$(med "${p1[@]}")" "$(med "${p2[@]}")" "$(med "${p3[@]}")" "$(med "${p4[@]}")" "$(med "${p5[@]}")" "$(med "${rounds[@]}")"
  echo "per run (last pages/device state/verify/hand-off ms):"
  for i in "${!p1[@]}"; do printf '%.1f/%.1f/%.1f/%.1f ' "${p1[$i]}" "${p2[$i]}" "${p3[$i]}" "${p4[$i]}"; done; echo
  qemu_stop_all
fi

if [[ $PHASES == *tune* ]]; then
  echo; echo "### qemu-migrate's switch-over tuning: ${GUEST_MB} MiB guest dirtying ${DIRTY} MB/s, $LINK veth, alternating"
  echo; echo "QEMU: $("${QEMU_BIN:-qemu-system-x86_64}" --version | head -1); load before: $(uptime | sed 's/.*load/load/')"; echo
  echo "| path | total s (median) | total s (worst) | downtime ms (median) | downtime ms (worst) | guest ran on | runs: s/ms |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
  boot "$DIRTY"
  declare -A tt=() td=() truns=() tok=()
  : > "$W/tuning"
  for _ in $(seq "$RUNS"); do
    for mode in off on $([ "${TUNE_BRIDGE:-1}" = 1 ] && echo bridge); do
      LABEL="tune $mode"; dead_before=$(cat "$W/dead" 2>/dev/null | wc -l)
      case $mode in
        bridge) one bridge-link --tune-switchover true > "$W/result" ;;
        *) one direct-tcp --tune-switchover "$([ "$mode" = on ] && echo true || echo false)" > "$W/result" ;;
      esac
      read -r a b < "$W/result"
      tt[$mode]+="$a "; td[$mode]+="$b "; truns[$mode]+="$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f/%d ", a / 1000, b}')"
      [ "$(cat "$W/dead" 2>/dev/null | wc -l)" = "$dead_before" ] && [ "$b" != 0 ] && tok[$mode]=$(( ${tok[$mode]:-0} + 1 ))
      [ "$mode" != off ] && python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tuning"]; print(sys.argv[2] + ": limit", "->".join(str(s["downtime_limit_ms"]) for s in t["downtime_limit_steps"]), "ms, switch-over bandwidth", t["switchover_bandwidth"])' "$W/vm$N.json" "$mode" >> "$W/tuning"
    done
  done
  for mode in off on bridge; do
    [ -n "${tt[$mode]:-}" ] || continue
    case $mode in
      off) label="QEMU direct tcp, its defaults (--tune-switchover false)" ;;
      on) label="QEMU direct tcp, qemu-migrate tuning (--tune-switchover true)" ;;
      bridge) label="through the bridges over the link, single channel, --tune-switchover true" ;;
    esac
    printf '| %s | %.2f | %.2f | %.0f | %.0f | %s/%s | %s|\n' "$label" \
      "$(printf '%s\n' ${tt[$mode]} | median | awk '{print $1 / 1000}')" "$(printf '%s\n' ${tt[$mode]} | worst | awk '{print $1 / 1000}')" \
      "$(printf '%s\n' ${td[$mode]} | median)" "$(printf '%s\n' ${td[$mode]} | worst)" "${tok[$mode]:-0}" "$RUNS" "${truns[$mode]}"
  done
  echo; echo "tuner's choices per run:"; cat "$W/tuning"; echo "load after: $(uptime | sed 's/.*load/load/')"
  qemu_stop_all
fi

if [[ $PHASES == *loopback* ]]; then
  boot 0
  header "loopback, idle ${GUEST_MB} MiB guest (QEMU max-bandwidth lifted)"
  row "QEMU direct, unix socket" direct-unix
  row "bridge tcp://127.0.0.1, single channel" bridge-lo
  row "QEMU direct, multifd 2" direct-unix --multifd-channels 2
  row "bridge tcp://127.0.0.1, multifd 2, --codec none" bridge-lo --multifd-channels 2 --codec none
  row "bridge tcp://127.0.0.1, multifd 2, --codec auto" bridge-lo --multifd-channels 2 --codec auto
fi
if [[ $PHASES == *link* ]]; then
  for dirty in 0 "$DIRTY"; do
    boot "$dirty"
    header "1 Gbit/s shaped veth, ${GUEST_MB} MiB guest dirtying ${dirty} MB/s"
    row "QEMU direct tcp" direct-tcp
    row "QEMU direct multifd 2, zstd" direct-tcp --multifd-channels 2 --multifd-compression zstd
    row "bridge tcp over the link, single channel" bridge-link
    for codec in $LINK_CODECS; do
      # The source bridge process takes the codec (qemu-migrate's --codec is for --via only).
      BRIDGE_ARGS="--codec $codec" row "bridge tcp over the link, multifd 2, --codec $codec" bridge-link --multifd-channels 2
      BRIDGE_ARGS="--codec $codec" row "bridge tcp over the link, multifd 4, --codec $codec" bridge-link --multifd-channels 4
    done
  done
  qemu_stop_all
  live_rows
fi
if [[ $PHASES == *dirty* ]]; then
  header "1 Gbit/s shaped veth, ${GUEST_MB} MiB guest dirtying ${DIRTY} MB/s, a fresh guest per run"
  FRESH=$DIRTY row "QEMU direct tcp" direct-tcp
  FRESH=$DIRTY row "QEMU direct multifd 2, zstd" direct-tcp --multifd-channels 2 --multifd-compression zstd
  if [ "${DIRTY_BRIDGE:-1}" = 1 ]; then
    FRESH=$DIRTY BRIDGE_ARGS="--codec xbzrle+zstd" row "bridge tcp over the link, multifd 4, --codec xbzrle+zstd" bridge-link --multifd-channels 4
    FRESH=$DIRTY BRIDGE_ARGS="--codec auto" row "bridge tcp over the link, multifd 2, --codec auto" bridge-link --multifd-channels 2
  fi
  qemu_stop_all
  live_rows
fi
[ -s "$W/dead" ] && { echo; echo "migrations whose guest never ran again (no heartbeat in ${BEAT_WAIT:-120} s):"; sort "$W/dead" | uniq -c; }
[ -s "$W/medians" ] && { echo; echo "medians (ms):"; cat "$W/medians"; }
exit 0
