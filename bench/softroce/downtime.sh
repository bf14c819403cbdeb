#!/bin/bash
# Runs inside the soft-RoCE VM for bench/softroce_downtime_bench.sh:
#   downtime.sh RUNS MEM_MB DIRTY_MBPS ALSO GUEST_ELF QEMU_TESTS_DIR [NEWER_QEMU NEWER_QEMU_ROOT]
# RUNS rounds, each: ramshift's live pre-copy engine over rdma:// at its defaults (a synthetic
# guest of MEM_MB MiB dirtying DIRTY_MBPS MB/s); the same with the send options ALSO (none if
# empty); the same at its defaults over tcp:// to the same address (the engine in this VM
# without RDMA); then stock QEMU 7.2's own `rdma:` migrating the kernel-less test guest
# (tests/qemu/guest/bare.c) of the same size and rate, then the same with NEWER_QEMU when
# given. Prints a progress line per run and a markdown table at the end.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -uo pipefail
RUNS=${1:?usage: downtime.sh RUNS MEM_MB DIRTY_MBPS ALSO GUEST_ELF QEMU_TESTS_DIR [NEWER_QEMU NEWER_ROOT]}
MEM_MB=${2:?}; DIRTY_MBPS=${3:?}; ALSO=${4?}; GUEST=${5:?}; QTESTS=${6:?}; NEWER_QEMU=${7:-}
NEWER_ROOT=${8:-}
. /opt/share/lib.sh
# qemu_beat, qemu_wait_beat, qemu_check_clean and qemu_stop_all: the QEMU tests' own, on
# QEMUs whose console is $W/NAME.log and pid $W/NAME.pid.
. "$QTESTS/lib.sh"
W=/tmp/downtime; mkdir -p "$W"

# j FILE KEY: the first value of KEY in a pretty-printed JSON report (no jq in this VM).
j() { grep -m1 -o "\"$2\": *[^,}]*" "$1" 2>/dev/null | sed 's/^[^:]*: *//; s/"//g'; }
ms() { awk -v v="${1:-0}" 'BEGIN {printf "%.1f", v}'; }

# ramshift send/receive of the live synthetic guest over SCHEME:// with the send options given
# (none: every one at its default). Appends "total_s/downtime_ms" (or "failed") to
# RS_RUNS[LABEL] and the parts to RS_PARTS[LABEL].
declare -A RS_RUNS RS_PARTS
rs_live() {  # ROUND LABEL SCHEME [SEND OPTIONS...]
  local round=$1 label=$2 scheme=$3; shift 3
  local rx tx=$W/tx.json port=$((7000 + RANDOM % 500))
  rm -f "$tx" "$W/rx.out"
  timeout 900 ramshift receive --listen "$scheme://$A:$port" --once --resume-seconds 1 \
    --json "$W/rx.json" >"$W/rx.out" 2>"$W/rx.err" &
  rx=$!
  for _ in $(seq 200); do grep -q listening "$W/rx.out" 2>/dev/null && break; sleep 0.05; done
  timeout 900 ramshift send --to "$scheme://$A:$port" \
    --guest "synthetic:size=${MEM_MB}M,dirty-rate=${DIRTY_MBPS}M,pattern=mixed" --json "$tx" \
    "$@" >/dev/null 2>"$W/tx.err"
  local rc=$?
  wait $rx; local rrc=$?
  local status; status=$(j "$tx" status)
  if [ $rc != 0 ] || [ $rrc != 0 ] || [ "$status" != completed ] || [ "$(j "$tx" verified)" != true ]; then
    echo "progress: round $round, $label: failed (send exit $rc, receive exit $rrc," \
      "${status:-no report}): $(grep -m1 -o '"error": *"[^"]*"' "$tx")"
    rounds_detail "$tx"
    RS_RUNS[$label]+="failed "; return
  fi
  local t d p l s v h r
  t=$(awk -v v="$(j "$tx" total_ms)" 'BEGIN {printf "%.2f", v / 1000}')
  d=$(ms "$(j "$tx" downtime_ms)"); p=$(ms "$(j "$tx" predicted_ms)")
  l=$(ms "$(j "$tx" last_pages_ms)"); s=$(ms "$(j "$tx" device_state_ms)")
  v=$(ms "$(j "$tx" verify_ms)"); h=$(ms "$(j "$tx" handoff_ms)"); r=$(j "$tx" rounds)
  RS_RUNS[$label]+="$t/$d "; RS_PARTS[$label]+="$l/$s/$v/$h/$p/$r "
  local a; a=$(j "$tx" aborted_switchovers)
  [ "${a:-0}" = 0 ] && a="" ||
    a="; switch-overs aborted: $a, the longest pause $(ms "$(j "$tx" longest_aborted_pause_ms)") ms"
  echo "progress: round $round, $label: total $t s, downtime $d ms = last pages $l +" \
    "device state $s + verify $v + hand-off $h (predicted $p), $r rounds, verified by the destination$a"
  rounds_detail "$tx"
}
# Each round's pages, ms and the downtime it predicted: where the last round came from.
rounds_detail() {  # REPORT
  awk '/"rounds_detail"/ {on = 1} on && /"(round|pages|ms|expected_downtime_ms)":/ {
         gsub(/[",]/, ""); printf "%s%s=%s", ($1 == "round:" ? "\n  " : " "), $1, $2 }
       on && /^  \]/ {exit} END {print ""}' "$1" | sed 's/:=/=/g' | grep . | sed 's/^/progress:   /'
}

# Stock QEMU's own `rdma:` at its defaults (qemu-migrate --tune-switchover false: QEMU's
# downtime-limit of 300 ms and its switch-over estimate; max-bandwidth lifted, as qemu-migrate
# always does, far above this link's rate) migrating the running bare guest. Appends
# "total_s/downtime_ms/CLEAN" (or "failed") to QRUNS[LABEL]: CLEAN is 1 when the guest beat
# again on the destination with its page check clean, else 0 (the figures still count: QEMU
# completed and measured them).
declare -A QRUNS
qemu_live() {  # ROUND LABEL QEMU [QEMU ARGS...]
  local round=$1 label=$2 q=$3; shift 3
  # The pages start at 16 MiB. With them ending 16 MiB below the top of RAM (-m MEM_MB + 32)
  # the last zero pages read non-zero on the source before any migration (seen at 16 and
  # 64 MiB); 48 MiB above them, never.
  local g=(-accel tcg -m $((MEM_MB + 64)) -display none -nodefaults -no-user-config -kernel "$GUEST"
           -append "RS_MEM_MB=$MEM_MB RS_DIRTY_MBPS=$DIRTY_MBPS" "$@")
  rm -f "$W"/*.qmp "$W"/*.pid "$W"/qsrc.log "$W"/qdst.log
  "$q" "${g[@]}" -serial "file:$W/qsrc.log" -qmp "unix:$W/qsrc.qmp,server=on,wait=off" \
    >"$W/qsrc.qemu.out" 2>&1 &
  echo $! >"$W/qsrc.pid"
  "$q" "${g[@]}" -serial "file:$W/qdst.log" -qmp "unix:$W/qdst.qmp,server=on,wait=off" \
    -incoming defer >"$W/qdst.qemu.out" 2>&1 &
  echo $! >"$W/qdst.pid"
  local why=""
  if ! qemu_wait_beat qsrc 3 300; then
    why="the guest did not start"
  elif ! ramshift qemu-migrate --src-qmp "$W/qsrc.qmp" --dst-qmp "$W/qdst.qmp" \
      --dst-uri "rdma:$A:$((4400 + RANDOM % 500))" --tune-switchover false --timeout 600 \
      --json "$W/qm.json" 2>"$W/qm.err"; then
    why="qemu-migrate: $(tail -2 "$W/qm.err" | tr '\n' ' ')"
  else
    local last; last=$(qemu_beat qsrc)
    kill "$(cat "$W/qsrc.pid")" 2>/dev/null
    if ! qemu_wait_beat qdst $((last + 2)) 120; then
      why="no heartbeat on the destination after $last"
    elif ! qemu_check_clean qdst; then
      why="the guest's page check failed on the destination"
    fi
  fi
  qemu_stop_all
  local st; st=$(j "$W/qm.json" status)
  if [ "$st" != completed ]; then
    echo "progress: round $round, $label: failed (${why:-status ${st:-none}})"
    tail -3 "$W/qsrc.qemu.out" "$W/qdst.qemu.out" 2>/dev/null | sed 's/^/progress:   /'
    QRUNS[$label]+="failed "; rm -f "$W/qm.json"; return
  fi
  local t d
  t=$(awk -v v="$(j "$W/qm.json" total_ms)" 'BEGIN {printf "%.2f", v / 1000}')
  d=$(j "$W/qm.json" downtime_ms)
  QRUNS[$label]+="$t/$d/$([ -z "$why" ] && echo 1 || echo 0) "
  echo "progress: round $round, $label: total $t s, downtime $d ms, setup $(j "$W/qm.json" setup_ms) ms," \
    "$(j "$W/qm.json" dirty_sync_count) dirty syncs, $(j "$W/qm.json" ram_transferred_bytes) bytes;" \
    "${why:-the guest beat again on the destination, page check clean}"
  rm -f "$W/qm.json"
}

qemu_name() { "$1" --version | awk 'NR == 1 {print "QEMU " $4}'; }
Q72=$(qemu_name "$QEMU")
LABELS=("$Q72")
[ -n "$NEWER_QEMU" ] && LABELS+=("$(qemu_name "$NEWER_QEMU")")
echo "progress: $(ibv_devinfo -d rxe0 | grep -E 'active_mtu'), guest ${MEM_MB} MiB dirtying ${DIRTY_MBPS} MB/s," \
  "$RUNS rounds of: ramshift, ${LABELS[*]}"
PERF=$(perf_run 1048576)
echo "progress: ib_write_bw 1 MiB: $PERF MB/s"
RS_LABELS=("ramshift rdma://, defaults")
[ -n "$ALSO" ] && RS_LABELS+=("ramshift rdma://, $ALSO")
RS_LABELS+=("ramshift tcp:// in the same VM, defaults")
for r in $(seq "$RUNS"); do
  rs_live "$r" "${RS_LABELS[0]}" rdma
  [ -n "$ALSO" ] && rs_live "$r" "${RS_LABELS[1]}" rdma $ALSO
  rs_live "$r" "${RS_LABELS[-1]}" tcp
  qemu_live "$r" "$Q72" "$QEMU"
  if [ -n "$NEWER_QEMU" ]; then
    # The newer QEMU's own firmware; no modules (Debian 12's are 7.2's and would not load).
    QEMU_MODULE_DIR=$NEWER_ROOT/usr/lib/x86_64-linux-gnu/qemu qemu_live "$r" "${LABELS[1]}" \
      "$NEWER_QEMU" -L "$NEWER_ROOT/usr/share/qemu" -L "$NEWER_ROOT/usr/share/seabios"
  fi
done
PERF_END=$(perf_run 1048576)
echo "progress: ib_write_bw 1 MiB after the rounds: $PERF_END MB/s"

# stats "t/d t/d failed ..." -> "ok median_t worst_t median_d worst_d" over the completed runs
stats() {
  echo "$1" | tr ' ' '\n' | grep / | awk -F/ '{t[NR] = $1; d[NR] = $2}
    function med(a, n,   i, j, x) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
        if (a[j] < a[i]) { x = a[i]; a[i] = a[j]; a[j] = x }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    END { n = NR; if (n == 0) { print "0 - - - -"; exit }
      wt = 0; wd = 0; for (i = 1; i <= n; i++) { if (t[i] > wt) wt = t[i]; if (d[i] > wd) wd = d[i] }
      printf "%d %.2f %.2f %.1f %.1f\n", n, med(t, n), wt, med(d, n), wd }'
}
# ratio of the medians of two "t/d" lists' field F (1 = total, 2 = downtime), and round by round
ratio() {  # A B F
  awk -v a="$1" -v b="$2" -v f="$3" 'BEGIN {
    n = split(a, x, " "); split(b, y, " "); k = 0
    for (i = 1; i <= n; i++) if (x[i] ~ /\// && y[i] ~ /\//) {
      split(x[i], p, "/"); split(y[i], q, "/"); if (q[f] > 0) r[++k] = p[f] / q[f] }
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
    for (i = 1; i <= k; i++) printf "%.3f ", r[i]
    printf "(median %.3f)", k == 0 ? 0 : (k % 2 ? r[(k + 1) / 2] : (r[k / 2] + r[k / 2 + 1]) / 2) }'
}
echo
echo "| path | completed | guest checked | total s (median) | total s (worst) | downtime ms (median) | downtime ms (worst) | runs: s/ms |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
row() {  # LABEL RUNS CHECKED
  # shellcheck disable=SC2046  # stats' five fields become $4..$8
  set -- "$1" "$2" "$3" $(stats "$2")
  echo "| $1 | $4 of $RUNS | $3 | $5 | $6 | $7 | $8 | $2|"
}
for l in "${RS_LABELS[@]}"; do
  row "$l" "${RS_RUNS[$l]:-}" "$(echo "${RS_RUNS[$l]:-}" | tr ' ' '\n' | grep -c /) verified"
done
for l in "${LABELS[@]}"; do
  row "$l \`migrate rdma:\`, defaults" "${QRUNS[$l]:-}" \
    "$(echo "${QRUNS[$l]:-}" | tr ' ' '\n' | grep -c '/1$') beat again, page check clean"
done
echo
for rl in "${RS_LABELS[@]}"; do
  for l in "${LABELS[@]}"; do
    echo "- $rl: downtime over $l's, round by round: $(ratio "${RS_RUNS[$rl]:-}" "${QRUNS[$l]:-}" 2);" \
      "total time: $(ratio "${RS_RUNS[$rl]:-}" "${QRUNS[$l]:-}" 1)"
  done
done
for rl in "${RS_LABELS[@]}"; do
  echo "- $rl: downtime parts, median of the completed runs (ms): $(echo "${RS_PARTS[$rl]:-}" | tr ' ' '\n' | grep / |
  awk -F/ '{for (f = 1; f <= 6; f++) v[f, NR] = $f} END {
    split("last pages|device state|verify|hand-off|predicted|rounds", name, "|")
    for (f = 1; f <= 6; f++) { n = 0; for (i = 1; i <= NR; i++) a[++n] = v[f, i]
      for (i = 1; i <= n; i++) for (k = i + 1; k <= n; k++) if (a[k] < a[i]) { t = a[i]; a[i] = a[k]; a[k] = t }
      printf "%s %s%s", name[f], n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2, f < 6 ? ", " : "" } }')"
  echo "- $rl: parts per run (last pages/device state/verify/hand-off/predicted ms/rounds): ${RS_PARTS[$rl]:-}"
done
echo "- ib_write_bw 1 MiB: $PERF MB/s before the rounds, $PERF_END after"
