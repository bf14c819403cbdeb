# Sourced by suite.sh (as one step, or alone with SOFTROCE_ONLY=postcopy): post-copy and
# hybrid over rdma:// with a live synthetic guest, faults served by one RDMA READ of the
# source's memory, and the figure beside its peer from the same boot: the guest's fault
# latency against ib_read_lat's 4 KiB READ (perftest), when the VM has it.
step "post-copy and hybrid over rdma://: faults by RDMA READ"
# The JSON is pretty-printed one key per line (the VM has busybox, not python).
json_num() { grep -o "\"$2\": *[0-9.]*" "$1" | head -1 | grep -o '[0-9.]*$'; }
# p50 or p99 of the latency object named $2 in $1.
json_lat() { grep -A3 "\"$2\"" "$1" | grep -o "\"$3\": *[0-9.]*" | grep -o '[0-9.]*$'; }
for mode in postcopy hybrid; do
  # The VM moves about 20 MB/s: 128 MiB post-copy, and a 64 MiB hybrid (two rounds first).
  extra=() size=128M
  [ "$mode" = hybrid ] && extra=(--postcopy-after 2 --downtime-limit 1) size=64M
  start_receiver --once --accept-timeout 120 --resume-seconds 2 --json "$WORK/pc-rx.json" ||
    fail "receiver start ($mode)"
  # Two threads dirtying 16 MB/s keep touching pages that have not arrived yet.
  expect_exit 0 "$mode of a live $size guest over rdma" -- \
    "$RAMSHIFT" -v send --to "$RX_URI" --mode "$mode" "${extra[@]}" --queues 2 \
    --guest "synthetic:size=$size,dirty-rate=16M,threads=2,pattern=mixed" --json "$WORK/pc-tx.json"
  wait "$RX_PID"; rc=$?
  rx=$WORK/pc-rx.json tx=$WORK/pc-tx.json
  [ "$rc" = 0 ] && grep -q '"verified": true' "$rx" &&
    pass "$mode: the guest ran on the destination and verified (transfer digest and its own check)" ||
    { fail "$mode: receiver exit $rc"; cat "$WORK/rx.err"; }
  reads=$(json_num "$rx" reads) requests=$(json_num "$rx" requests)
  path=$(grep -o '"fault_path": *"[^"]*"' "$rx" | sed 's/.*: *"//; s/"$//')
  # Faults before the source's keys arrive (its registration runs beside the guest) are
  # requested; every later one is a READ.
  [ "${reads:-0}" -gt 0 ] && [ "${reads:-0}" -ge "${requests:-0}" ] &&
    case "$path" in rdma_read | rdma_read+request) true ;; *) false ;; esac &&
    pass "$mode: $reads fault(s) by RDMA READ, $requests by request (fault_path $path)" ||
    { fail "$mode: fault_path '$path', reads ${reads:-?}, requests ${requests:-?}"
      grep -iE "post-copy|read|warn|error" "$WORK/err" "$WORK/rx.err" | head -20; }
  grep -q '"read_released": true' "$tx" && [ "$(json_num "$tx" read_exposed_bytes)" -gt 0 ] &&
    pass "$mode: the source deregistered the memory it exposed for reads" ||
    fail "$mode: the source's read keys were not released ($(grep -o '"read_[a-z_]*": *[^,]*' "$tx" | tr '\n' ' '))"
  # rxe has type-2 memory windows: the READ keys were windows bound to the source's queues.
  grep -q "the peer's keys are memory windows, one per queue" "$WORK/err" &&
    pass "$mode: the source exposed its memory for reads through memory windows" ||
    { fail "$mode: the source's log does not say memory windows"; grep -i "rdma:" "$WORK/err" | head -5; }
  if [ "$mode" = postcopy ]; then
    PC_P50=$(json_lat "$rx" read_fault_latency_us p50) PC_P99=$(json_lat "$rx" read_fault_latency_us p99)
    PC_READS=$reads
    PC_R50=$(json_lat "$rx" read_latency_us p50) PC_R99=$(json_lat "$rx" read_latency_us p99)
  fi
done
if command -v ib_read_lat >/dev/null; then
  # perftest's READ latency between two processes on the same rxe device, this boot.
  ib_read_lat -d rxe0 -R -s 4096 -n 2000 >"$WORK/irl-s.out" 2>&1 &
  irl=$!; PIDS+=("$irl")
  sleep 1
  ib_read_lat -d rxe0 -R -s 4096 -n 2000 "$ADDR" >"$WORK/irl-c.out" 2>&1
  wait "$irl"
  # Columns: bytes, iterations, t_min, t_max, t_typical (the median), t_avg, t_stdev, 99%, 99.9%.
  IRL_P50=$(awk '$1 == 4096 && NF >= 8 {print $5}' "$WORK/irl-c.out")
  IRL_P99=$(awk '$1 == 4096 && NF >= 8 {print $8}' "$WORK/irl-c.out")
  [ -n "$IRL_P50" ] && pass "ib_read_lat -s 4096: p50 $IRL_P50 us, p99 $IRL_P99 us" ||
    { fail "ib_read_lat gave no figure"; cat "$WORK/irl-s.out" "$WORK/irl-c.out"; }
  echo "figure: post-copy fault by RDMA READ p50 ${PC_P50:-?} us p99 ${PC_P99:-?} us ($PC_READS reads; the READ call alone p50 ${PC_R50:-?} us p99 ${PC_R99:-?} us); ib_read_lat 4 KiB p50 ${IRL_P50:-?} us p99 ${IRL_P99:-?} us"
fi
