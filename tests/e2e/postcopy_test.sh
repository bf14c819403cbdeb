#!/bin/bash
# Post-copy and hybrid between two real processes over tcp on loopback: a running synthetic
# guest moves, runs on the destination while its pages arrive, and both its own page check
# and the transfer digest pass; the reports say how (mode, faults, pages pushed and asked
# for). `demo --mode postcopy` does the same end to end.
source "$(dirname "$0")/lib.sh"

start_receiver --once --json "$WORK/rx.json" --resume-seconds 1 || exit 1
expect_exit 0 "post-copy of a 128 MiB guest dirtying 40 MB/s with 2 threads" -- \
  "$RAMSHIFT" send --to "$RX_URI" --mode postcopy \
  --guest "synthetic:size=128M,dirty-rate=40M,threads=2,pattern=mixed" --json "$WORK/tx.json"
wait "$RX_PID" && pass "receiver exit 0 (postcopy)" || { fail "receiver (postcopy)"; cat "$WORK/rx.err"; }
python3 - "$WORK/tx.json" "$WORK/rx.json" <<'PY' && pass "reports: every page moved after the guest, faults served, guest verified there" || fail "reports (postcopy)"
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
assert tx["status"] == rx["status"] == "completed", (tx["error"], rx["error"])
assert tx["mode"] == "postcopy" and rx["mode"] == "postcopy", (tx["mode"], rx["mode"])
assert tx["rounds"] == 0, tx["rounds"]
pc = rx["postcopy"]
assert pc["pages"]["pushed"] + pc["pages"]["faulted"] == (128 << 20) // 4096, pc["pages"]
assert pc["faults"] > 0 and pc["requests"] > 0, pc
assert tx["postcopy"]["requests"] == pc["requests"], (tx["postcopy"], pc)
lat = pc["fault_latency_us"]
assert 0 < lat["p50"] <= lat["p99"] <= lat["max"], lat
# The source's share of a fault: a request read to its page handed over, a part of the whole.
svc = tx["postcopy"]["service_latency_us"]
assert 0 < svc["p50"] <= svc["p99"] <= svc["max"], svc
assert svc["p50"] <= lat["p99"], (svc, lat)
assert pc["blocked_ms"] and all(b["max_ms"] <= b["total_ms"] for b in pc["blocked_ms"]), pc["blocked_ms"]
assert tx["downtime_ms"] is not None and tx["downtime_ms"] > 0, tx["downtime_ms"]
assert rx["resumed"]["verified"] is True and rx["resumed"]["writes"] > 0, rx.get("resumed")
PY

start_receiver --once --json "$WORK/rx.json" --resume-seconds 1 || exit 1
expect_exit 0 "hybrid: two pre-copy rounds, then post-copy" -- \
  "$RAMSHIFT" send --to "$RX_URI" --mode hybrid --postcopy-after 2 --downtime-limit 1 \
  --guest "synthetic:size=128M,dirty-rate=40M,threads=2,pattern=mixed" --json "$WORK/tx.json"
wait "$RX_PID" && pass "receiver exit 0 (hybrid)" || { fail "receiver (hybrid)"; cat "$WORK/rx.err"; }
python3 - "$WORK/tx.json" "$WORK/rx.json" <<'PY' && pass "reports: hybrid moved only the dirty rest after 2 rounds, dropped early, guest verified there" || fail "reports (hybrid)"
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
assert tx["status"] == rx["status"] == "completed", (tx["error"], rx["error"])
assert tx["mode"] == "hybrid" and tx["rounds"] == 2, (tx["mode"], tx["rounds"])
moved = rx["postcopy"]["pages"]["pushed"] + rx["postcopy"]["pages"]["faulted"]
assert 0 < moved < (128 << 20) // 4096 // 2, moved
assert rx["resumed"]["verified"] is True, rx.get("resumed")
# The pages dirtied since their round were dropped there before the pause, each once, and
# every one of them came again (pushed or faulted) before the guest's own check passed.
d = rx["postcopy"]["discard"]
assert d["rounds"] >= 1 and d["rounds"] == tx["postcopy"]["discard"]["rounds"], (d, tx["postcopy"])
assert 0 < d["pages"] <= moved, (d, moved)
PY

expect_exit 2 "--mode with an unknown name is a usage error" -- \
  "$RAMSHIFT" send --to tcp://127.0.0.1:1 --mode sideways --guest synthetic:size=1M
expect_exit 2 "--postcopy-after without --mode hybrid is a usage error" -- \
  "$RAMSHIFT" send --to tcp://127.0.0.1:1 --postcopy-after 3 --guest synthetic:size=1M
expect_stderr "needs --mode hybrid" "it says which mode it needs"

expect_exit 0 "ramshift demo --mode postcopy (128 MiB live guest, two processes)" -- \
  "$RAMSHIFT" demo --mode postcopy --guest synthetic:size=128M,dirty-rate=20M,pattern=mixed
expect_stderr "every page verified" "demo reports the guest verified on the destination"
finish
