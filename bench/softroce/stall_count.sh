#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Runs inside the soft-RoCE VM: counts the rare ~60 s stalls of a 64 MiB send/receive over
# rdma:// with rdma_cm's default local ACK timeout against --rdma-ack-timeout 14 (perftest's
# 67 ms), alternating run by run, N runs of each (default 50). Prints one line per run and,
# at the end, per setting: runs, median seconds, runs above 20 s, and the device's
# retransmission counters. From the host:
#   tests/softroce/rxe_vm.sh -m 2048 -b build/release/cli/ramshift -b bash bench/softroce/stall_count.sh 50
A=10.9.0.1
N=${1:-50}
ramshift make-image --overwrite --size 64M --pattern mixed /tmp/src.img >/dev/null
run() {  # ack-timeout (0 = rdma_cm's default) -> seconds, or "failed"
  # No --guest-out and no cmp: both cost tens of seconds in this VM; the receiver checks
  # every page's digest itself and the sender's report says whether it verified.
  ramshift -q receive --listen rdma://$A:7000 --once --accept-timeout 120 \
    --rdma-ack-timeout "$1" >/tmp/rx.out 2>&1 &
  local rx=$!
  for _ in $(seq 200); do grep -q listening /tmp/rx.out 2>/dev/null && break; sleep 0.05; done
  if ! ramshift -q send --to rdma://$A:7000 --guest file:/tmp/src.img --queues 2 --codec none \
       --rdma-ack-timeout "$1" --json /tmp/tx.json >/dev/null 2>/tmp/tx.err; then
    kill $rx 2>/dev/null; wait $rx 2>/dev/null; echo "failed: $(tail -1 /tmp/tx.err)"; return
  fi
  wait $rx || { echo "failed: receiver exit $?"; return; }
  grep -q '"verified": *true' /tmp/tx.json || { echo "failed: not verified"; return; }
  grep -o '"total_ms": *[0-9.]*' /tmp/tx.json | head -1 | awk '{printf "%.2f\n", $2 / 1000}'
}
declare -A T
for i in $(seq "$N"); do
  for ack in 0 14; do
    s=$(run $ack)
    T[$ack]+="$s "
    echo "progress: run $i, ack-timeout $ack: $s"
  done
done
echo
echo "| --rdma-ack-timeout | runs | median s | runs above 20 s | failed | slowest s |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for ack in 0 14; do
  ok=$(echo ${T[$ack]} | tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -g)
  failed=$(echo ${T[$ack]} | tr ' ' '\n' | grep -c failed)
  echo "$ok" | awk -v a="$ack" -v f="$failed" '
    {v[++n] = $1; if ($1 > 20) slow++}
    END {
      m = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      printf "| %s | %d | %.2f | %d | %d | %.2f |\n", (a == 0 ? "0 (rdma_cm default)" : a), n, m, slow, f, v[n]
    }'
done
echo
echo "device counters after all runs:"
rdma statistic show link rxe0/1
rdma statistic show link rxe1/1
