#!/bin/bash
# --cpus LIST between real processes: while a live migration runs, every queue thread of
# `send` and `receive` (named rs-queue-N) is allowed on exactly the CPU the list gives it
# (queue N on the N-th, round robin), as the kernel reports in /proc/PID/task/*/status
# Cpus_allowed_list, while the rest of the process keeps the whole set; the migration
# completes and verifies. A malformed list, or a CPU the process may not use, is a usage
# error (exit 2) that names the flag.
source "$(dirname "$0")/lib.sh"

# queue_cpus PID: "N:LIST" for each thread named rs-queue-N, sorted.
queue_cpus() {
  local t
  for t in /proc/"$1"/task/*; do
    [[ "$(cat "$t/comm" 2>/dev/null)" == rs-queue-* ]] || continue
    echo "$(sed 's/rs-queue-//' "$t/comm"):$(awk '/^Cpus_allowed_list/ {print $2}' "$t/status")"
  done | sort -u
}
ALLOWED=$(awk '/^Cpus_allowed_list/ {print $2}' /proc/self/status)
FIRST=$(python3 -c 'import os; print(min(os.sched_getaffinity(0)))')
LAST=$(python3 -c 'import os; print(max(os.sched_getaffinity(0)))')
echo "this process may use CPUs $ALLOWED; the queues go on $LAST,$FIRST"

# A slow live migration (64 MiB at 8 MiB/s, a round 0 of 8 s), two queues each side.
start_receiver --once --cpus "$FIRST" --json "$WORK/rx.json" || exit 1
"$RAMSHIFT" send --to "$RX_URI" --guest "synthetic:size=64M,dirty-rate=1M" --queues 2 --codec none \
  --max-bandwidth 8M --cpus "$LAST,$FIRST" --json "$WORK/tx.json" >"$WORK/tx.out" 2>"$WORK/tx.err" &
TX=$!; PIDS+=("$TX")
tx_seen="" rx_seen=""
for _ in $(seq 200); do
  tx_seen=$(queue_cpus "$TX" | tr '\n' ' ') rx_seen=$(queue_cpus "$RX_PID" | tr '\n' ' ')
  [[ "$tx_seen" == *"1:"* && "$rx_seen" == *"1:"* ]] && break
  sleep 0.1
done
# --cpus is sorted ("0,1"): queue 0 on the lower CPU, queue 1 on the next.
want_tx="0:$FIRST 1:$LAST " want_rx="0:$FIRST 1:$FIRST "
[ "$tx_seen" = "$want_tx" ] && pass "send's queue threads: $tx_seen" || fail "send's queue threads: '$tx_seen', wanted '$want_tx'"
[ "$rx_seen" = "$want_rx" ] && pass "receive's queue threads: $rx_seen" || fail "receive's queue threads: '$rx_seen', wanted '$want_rx'"
main=$(awk '/^Cpus_allowed_list/ {print $2}' /proc/"$TX"/status)
[ "$main" = "$ALLOWED" ] && pass "send's main thread keeps every CPU ($main)" || fail "send's main thread: $main"
wait "$TX"; rc=$?
[ "$rc" = 0 ] && pass "the pinned migration completes" || { fail "send exit $rc"; cat "$WORK/tx.err"; }
wait "$RX_PID"; rc=$?
[ "$rc" = 0 ] && grep -q '"verified": true' "$WORK/rx.json" && pass "receive verifies" || { fail "receive exit $rc"; cat "$WORK/rx.err"; }

expect_exit 2 "--cpus 1-0 is refused" -- "$RAMSHIFT" send --to tcp://127.0.0.1:9 --guest synthetic:size=1M --cpus 1-0
expect_stderr "cpus 1-0.*backwards" "and says the range runs backwards"
expect_exit 2 "--cpus x is refused" -- "$RAMSHIFT" receive --listen tcp://127.0.0.1:0 --cpus x
expect_stderr "cpus x.*not a CPU number" "and says it is not a CPU number"
expect_exit 2 "--cpus 1023 (not in this process's set) is refused" -- "$RAMSHIFT" send --to tcp://127.0.0.1:9 --guest synthetic:size=1M --cpus 1023
expect_stderr "CPU 1023 is not available to this process \(it may use $ALLOWED\)" "and names the CPUs it may use"
finish
