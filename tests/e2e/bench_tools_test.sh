#!/bin/bash
# `ramshift bench`, `tune`, `doctor` and `--profile`, as real processes over tcp on loopback.
source "$(dirname "$0")/lib.sh"

# start_bench_server: `bench --server` on an ephemeral port; sets BS_PID, BS_URI.
start_bench_server() {
  rm -f "$WORK/bs.out"  # not a previous server's line (see start_receiver)
  "$RAMSHIFT" bench --server --listen tcp://127.0.0.1:0 >"$WORK/bs.out" 2>"$WORK/bs.err" &
  BS_PID=$!; PIDS+=("$BS_PID")
  for _ in $(seq 200); do
    BS_URI=$(sed -n 's/^listening on //p' "$WORK/bs.out" 2>/dev/null)
    [ -n "$BS_URI" ] && return 0
    sleep 0.05
  done
  echo "bench server did not start"; cat "$WORK/bs.err"; return 1
}
start_bench_server || exit 1

# 1. A sweep: every configuration measured, the outputs agree, XBZRLE engages on `delta`.
expect_exit 0 "bench sweep (2 queue counts x 2 sizes x 3 codecs)" -- \
  "$RAMSHIFT" bench --to "$BS_URI" --queues 1,2 --batch-size 64K,1M --codec none,xbzrle,zstd \
    --pattern delta --seconds 1 --working-set 8M --json "$WORK/b.json" --csv "$WORK/b.csv" --plot "$WORK/b.svg"
python3 - "$WORK/b.json" "$WORK/b.csv" <<'PY' && pass "bench JSON and CSV hold 12 sane results" || fail "bench results"
import csv, json, sys
j = json.load(open(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2])))
res = j["results"]
assert len(res) == 12 and len(rows) == 12, (len(res), len(rows))
combos = {(r["queues"], r["message_bytes"], r["codec"]) for r in res}
assert len(combos) == 12, combos
for r in res:
    for k in ("gbit_per_s", "gbytes_per_s", "messages_per_s", "sender_cpu_s_per_gb",
              "receiver_cpu_s_per_gb", "latency_p50_ms", "latency_p99_ms"):
        assert r[k] > 0, (k, r)
    assert r["latency_p99_ms"] >= r["latency_p50_ms"]
    assert r["transport"] == "tcp" and r["guest_bytes"] >= 8 << 20, r
    pages = r["pages"]
    assert sum(pages.values()) * 4096 == r["guest_bytes"], r
    if r["codec"] == "xbzrle":  # the second generation differs by one byte per page
        # The first pass over the working set goes raw (nothing cached yet); each page XBZRLE
        # took must then cost under a quarter of a page, however few passes a slow host made.
        taken = pages["xbzrle"] * 4096
        assert taken > 0 and r["wire_bytes"] < (r["guest_bytes"] - taken) * 1.05 + taken / 4, r
    if r["codec"] == "none":
        assert pages["raw"] * 4096 == r["guest_bytes"] and r["wire_bytes"] >= r["guest_bytes"], r
for row, r in zip(rows, res):
    assert int(row["queues"]) == r["queues"] and row["codec"] == r["codec"]
PY
grep -q "<svg" "$WORK/b.svg" && grep -q "Gbit/s" "$WORK/b.svg" && pass "--plot drew an SVG chart" || fail "--plot"

# 1b. --cpus pins the client's queue threads (rs-queue-N) as send's does: the kernel's
# Cpus_allowed_list of each, read while the run is under way; the JSON records the list.
FIRST=$(python3 -c 'import os; print(min(os.sched_getaffinity(0)))')
LAST=$(python3 -c 'import os; print(max(os.sched_getaffinity(0)))')
NCPUS=$(python3 -c 'import os; print(len(os.sched_getaffinity(0)))')
"$RAMSHIFT" bench --to "$BS_URI" --queues 2 --cpus "$LAST,$FIRST" --seconds 1.5 --working-set 4M \
  --json "$WORK/pin.json" >"$WORK/pin.out" 2>"$WORK/pin.err" &
BC=$!; PIDS+=("$BC")
seen=""
for _ in $(seq 100); do
  seen=$(for t in /proc/"$BC"/task/*; do
    [[ "$(cat "$t/comm" 2>/dev/null)" == rs-queue-* ]] || continue
    echo "$(sed 's/rs-queue-//' "$t/comm"):$(awk '/^Cpus_allowed_list/ {print $2}' "$t/status")"
  done | sort -u | tr '\n' ' ')
  [[ "$seen" == *"1:"* ]] && break
  sleep 0.05
done
[ "$seen" = "0:$FIRST 1:$LAST " ] && pass "bench --cpus pins its queue threads: $seen" || fail "bench queue threads: '$seen', wanted '0:$FIRST 1:$LAST '"
wait "$BC"; rc=$?
python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; assert len(r)==1 and r[0]['cpus']==sorted({$FIRST,$LAST}), r" "$WORK/pin.json" \
  && [ "$rc" = 0 ] && pass "the pinned bench run completes and reports its CPUs" || { fail "pinned bench exit $rc"; cat "$WORK/pin.err"; }

# 2. Garbage and a half-open connection do not take the server down.
python3 - "${BS_URI#tcp://}" <<'PY'
import os, socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
s.sendall(os.urandom(4096)); s.close()
PY
sleep 0.3
expect_exit 0 "the server still serves after garbage" -- \
  "$RAMSHIFT" bench --to "$BS_URI" --queues 2 --seconds 0.3 --working-set 4M --json "$WORK/after.json"
kill -0 "$BS_PID" 2>/dev/null && pass "bench server alive" || fail "bench server died"

# 3. Usage errors and an absent server.
expect_exit 2 "bench with a message size that is not whole pages" -- \
  "$RAMSHIFT" bench --to "$BS_URI" --batch-size 5000
expect_stderr "batch-size 5000" "says which size is wrong"
expect_exit 2 "bench with neither --to nor --server" -- "$RAMSHIFT" bench
expect_exit 2 "bench against a port nobody listens on (a set-up error, as for send)" -- \
  "$RAMSHIFT" bench --to tcp://127.0.0.1:1 --seconds 0.2 --connect-timeout 2
expect_stderr "refused.*bench --server" "says the server is not there and how to start one"

# 4. tune within a budget writes a profile that send/receive/bench accept.
expect_exit 0 "tune with a 10 s budget" -- \
  "$RAMSHIFT" tune --to "$BS_URI" --budget 10 --seconds 0.3 --working-set 8M \
    --profile-out "$WORK/p.json" --json "$WORK/t.json"
grep -q "trials; the best" "$WORK/out" && grep -q "^transport.*queues cpus" "$WORK/out" \
  && pass "tune lists its best configurations with their CPUs" || { fail "tune output"; cat "$WORK/out"; }
# Queue placement is a dimension wherever the host gives more than one CPU.
if [ "$NCPUS" -gt 1 ]; then
  grep -q "^tried: defaults.*queue placement ([0-9]* runs)" "$WORK/out" \
    && pass "tune explored queue placement" || { fail "no placement dimension"; cat "$WORK/out"; }
else
  grep -q "not tried: queue placement: this host gives us one CPU" "$WORK/out" \
    && pass "tune says why placement was not explored" || { fail "placement skip"; cat "$WORK/out"; }
fi
python3 - "$WORK/p.json" "$WORK/t.json" "$NCPUS" <<'PY' && pass "profile holds the best trial's settings" || fail "profile"
import json, os, sys
p, t = (json.load(open(f)) for f in sys.argv[1:3])
ncpus = int(sys.argv[3])
assert p["ramshift_profile"] == 1 and p["transport"] == "tcp"
o = p["options"]
assert len(t["results"]) >= 3, len(t["results"])
# Each configuration ran `repeats` times; the profile's figure is the median run of the one
# it names, and its noise the spread of those runs.
runs = {}
for r in t["results"]:
    runs.setdefault((r["queues"], r["message_bytes"], r["codec"], r["zstd_level"], tuple(r["cpus"])), []).append(r["gbytes_per_s"])
assert p["measured"]["repeats"] == 3 and max(len(v) for v in runs.values()) == 3, runs
cpus = tuple(int(c) for c in o["cpus"].split(",")) if "cpus" in o else ()
chosen = [sorted(v) for k, v in runs.items() if (k[0], k[2], k[4]) == (o["queues"], o["codec"], cpus)]
assert any(abs(v[len(v) // 2] - p["measured"]["gbytes_per_s"]) < 1e-9 and
           abs((v[-1] - v[0]) / v[len(v) // 2] - p["measured"]["noise"]) < 1e-9 for v in chosen), (o, p, runs)
# More queues than this host's CPUs are not tried.
import os
assert all(k[0] <= len(os.sched_getaffinity(0)) for k in runs), runs
# Placements tried for the chosen queue count: unpinned, one allowed CPU per queue, all on one.
placed = {k[4] for k in runs if k[4]}
allowed = sorted(os.sched_getaffinity(0))
assert all(set(c) <= set(allowed) for c in placed), placed
if ncpus > 1:
    assert (allowed[0],) in placed, placed  # packed
    assert any(len(c) == k[0] for k in runs for c in [k[4]] if c), runs  # spread
PY
# A profile naming 3 queues and zstd drives `send`; the command line still wins over it.
cat > "$WORK/p3.json" <<J
{"ramshift_profile": 1, "options": {"queues": 3, "codec": "zstd", "rdma-sq-depth": 64, "batch-size": "1M", "cpus": "$FIRST"}}
J
"$RAMSHIFT" make-image "$WORK/src.img" --size 16M --pattern mixed >/dev/null || exit 1
start_receiver --once --guest-out "$WORK/dst.img" --profile "$WORK/p3.json" || exit 1
expect_exit 0 "send with --profile (and --codec none on the command line)" -- \
  "$RAMSHIFT" send --to "$RX_URI" --guest "file:$WORK/src.img" --profile "$WORK/p3.json" --codec none --json "$WORK/tx.json"
wait "$RX_PID"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['queues']==3 and r['codec']=='none', r" "$WORK/tx.json" \
  && pass "the profile set 3 queues; --codec none from the command line won" || fail "profile not applied"
# The profile's cpus reach send's --cpus (a CPU this process lacks is refused there); receive,
# another host in real use, skips them.
echo '{"ramshift_profile": 1, "options": {"cpus": "1023"}}' > "$WORK/cpus.json"
expect_exit 2 "send with a profile naming CPU 1023" -- \
  "$RAMSHIFT" send --to "$BS_URI" --guest "file:$WORK/src.img" --profile "$WORK/cpus.json"
expect_stderr "cpus 1023.*not available" "send checked the profile's CPUs"
# (--expect-size is checked just after --cpus: its error shows receive got past the CPUs.)
expect_exit 2 "receive with the same profile and a bad --expect-size" -- \
  "$RAMSHIFT" receive --listen tcp://127.0.0.1:0 --expect-size lots --profile "$WORK/cpus.json"
! grep -q "1023" "$WORK/err" && grep -q "lots" "$WORK/err" \
  && pass "receive skipped the sending host's CPUs" || { fail "receive and the profile's cpus"; cat "$WORK/err"; }
echo '{"ramshift_profile": 1, "options": {"queues": 500}}' > "$WORK/bad.json"
expect_exit 2 "a profile with an out-of-range value" -- \
  "$RAMSHIFT" send --to "$BS_URI" --guest "file:$WORK/src.img" --profile "$WORK/bad.json"
expect_stderr "bad.json.*queues" "names the profile and the option"
echo '{"queues": 2}' > "$WORK/notprofile.json"
expect_exit 2 "a JSON file that is not a profile" -- \
  "$RAMSHIFT" bench --to "$BS_URI" --profile "$WORK/notprofile.json"
expect_stderr "not a ramshift profile" "says it is not a profile"

# 5. doctor: its findings match the host, read independently here.
"$RAMSHIFT" doctor --json "$WORK/d.json" --queues 1 >"$WORK/d.out" 2>&1; drc=$?
python3 - "$WORK/d.json" "$drc" <<'PY' && pass "doctor's findings match the host" || { fail "doctor"; cat "$WORK/d.out"; }
import json, os, sys
d = json.load(open(sys.argv[1])); rc = int(sys.argv[2])
checks = {c["id"]: c for c in d["checks"]}
for k in ("rdma.device", "memlock", "hugepages", "userfaultfd", "pagemap_scan", "cpus", "cpufreq", "dpdk.hugepages", "net.tcp_buffers", "net.route"):
    assert k in checks, k
assert d["passed"] == (not any(c["verdict"] == "fail" for c in d["checks"]))
assert rc == (0 if d["passed"] else 1), rc
has_rdma = os.path.isdir("/sys/class/infiniband") and len(os.listdir("/sys/class/infiniband")) > 0
assert (checks["rdma.device"]["verdict"] == "ok") == has_rdma, checks["rdma.device"]
assert str(len(os.sched_getaffinity(0))) + " CPUs" in checks["cpus"]["detail"]
for c in d["checks"]:
    if c["verdict"] in ("fail", "warn"):
        assert c["fix"], c  # every problem comes with its fix
PY
# Without CAP_IPC_LOCK and with a 1 MiB memlock limit, a 1 GiB guest cannot be registered.
if command -v capsh >/dev/null && command -v prlimit >/dev/null; then
  prlimit --memlock=1048576:1048576 capsh --drop=cap_ipc_lock -- -c \
    "'$RAMSHIFT' doctor --transport rdma --guest-size 1G --json '$WORK/m.json'" >"$WORK/m.out" 2>&1
  python3 -c "
import json,sys; c={x['id']:x for x in json.load(open(sys.argv[1]))['checks']}['memlock']
assert c['verdict']=='fail' and '1.00 MiB' in c['detail'] and 'ulimit -l' in c['fix'], c" "$WORK/m.json" \
    && pass "doctor fails memlock at 1 MiB for a 1 GiB guest, with the fix" || { fail "memlock check"; cat "$WORK/m.out"; }
fi
# A tcp-only host needs no RDMA device and no locked memory: without a device here, rdma's
# checks warn for --transport tcp and fail for --transport rdma.
if [ -z "$(ls /sys/class/infiniband 2>/dev/null)" ]; then
  "$RAMSHIFT" doctor --transport tcp --json "$WORK/t.json" >/dev/null 2>&1
  "$RAMSHIFT" doctor --transport rdma --json "$WORK/r.json" >/dev/null 2>&1
  python3 - "$WORK/t.json" "$WORK/r.json" <<'PY' && pass "doctor judges RDMA by the transport named" || fail "doctor --transport"
import json, sys
t = {c["id"]: c for c in json.load(open(sys.argv[1]))["checks"]}
r = {c["id"]: c for c in json.load(open(sys.argv[2]))["checks"]}
assert t["rdma.device"]["verdict"] == "warn" and "only rdma://" in t["rdma.device"]["detail"], t["rdma.device"]
assert r["rdma.device"]["verdict"] == "fail", r["rdma.device"]
assert not json.load(open(sys.argv[2]))["passed"]
PY
fi
# With a peer, the route to it: loopback here (read back from the kernel independently).
"$RAMSHIFT" doctor --to tcp:127.0.0.1:7000 --json "$WORK/n.json" >/dev/null 2>&1
python3 - "$WORK/n.json" <<'PY' && pass "doctor reads the route and MTU to a peer" || { fail "doctor --to"; cat "$WORK/n.json"; }
import json, sys
c = {c["id"]: c for c in json.load(open(sys.argv[1]))["checks"]}
mtu = min(int(open("/sys/class/net/lo/mtu").read()), 65535)  # an IP packet's ceiling
assert c["net.route"]["verdict"] == "ok", c["net.route"]
assert "via lo" in c["net.route"]["detail"] and f"MTU {mtu}" in c["net.route"]["detail"], c["net.route"]
assert c["net.link"]["verdict"] == "skip", c["net.link"]  # loopback has no link speed
rmem = int(open("/proc/sys/net/ipv4/tcp_rmem").read().split()[2])
assert f"TCP buffers grow to {rmem / 2**20:.2f} MiB" in c["net.tcp_buffers"]["detail"], c["net.tcp_buffers"]
PY
finish
