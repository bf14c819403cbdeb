# Shell functions the soft-RoCE bench scripts share, sourced inside the VM from
# /opt/share/lib.sh (rxe_vm.sh -f bench/softroce/lib.sh). Needs bash. Every run below prints
# its seconds, or 0 with the reason on stderr, and leaves its report in /tmp.
A=10.9.0.1  # rxe0's address; rxe1 (10.9.0.2) reaches it over the veth pair
MIB=$((1 << 20))
IMG_MIB=128  # the bench image (bench_image), the QEMU guests' RAM, and what ratios divide
IMG=/tmp/src.img  # bench_image makes it
export QEMU_MODULE_DIR=/usr/lib/x86_64-linux-gnu/qemu
# QEMU finds its firmware relative to its own path: run it from /usr/bin, not /opt/bin.
QEMU=/usr/bin/qemu-system-x86_64

now() { echo "${EPOCHREALTIME/./}"; }  # microseconds
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# Per-round ratios and their median: "bw" (a = MB/s, b = seconds for the image) gives the
# image's rate over a; "qemu" (a, b = seconds) gives a / b. Rounds where either failed (0)
# are left out. Prints e.g. "1.12 0.98 1.30 (median 1.12)".
round_ratios() {  # bw|qemu "A1 A2 ..." "B1 B2 ..."
  # (awk splits the lists itself: the VM's busybox has no /dev/fd for <(...))
  awk -v mode="$1" -v a="$2" -v b="$3" -v by=$((IMG_MIB * MIB)) 'BEGIN {
    n = split(a, x, " "); split(b, y, " "); k = 0
    for (i = 1; i <= n; i++) if (x[i] > 0 && y[i] > 0)
      r[++k] = mode == "bw" ? by / y[i] / 1e6 / x[i] : x[i] / y[i]
    for (i = 1; i <= k; i++) printf "%.2f ", r[i]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
    printf "(median %.2f)", k == 0 ? 0 : (k % 2 ? r[(k + 1) / 2] : (r[k / 2] + r[k / 2 + 1]) / 2) }'
}

# perftest ib_write_bw (or TOOL: ib_read_bw) between rxe1 and rxe0 at SIZE bytes per operation
# -> MB/s (10^6; perftest's MB/sec is 2^20 bytes/s), or 0. The client may knock before the
# server listens (TCG is slow): three attempts.
perf_run() {  # SIZE [TOOL]
  local iters=$(($1 == 65536 ? 400 : 60)) line="" srv attempt tool=${2:-ib_write_bw}
  for attempt in 1 2 3; do
    timeout 120 $tool -d rxe0 -R -s $1 -n $iters -F >/tmp/perf-srv.log 2>&1 &
    srv=$!
    sleep 4
    line=$(timeout 120 $tool -d rxe1 -R -s $1 -n $iters -F $A 2>/tmp/perf-cli.log |
      awk -v s=$1 '$1==s {print $4}')
    kill $srv 2>/dev/null; wait $srv 2>/dev/null
    [ -n "$line" ] && break
    echo "$tool attempt $attempt failed: $(tail -2 /tmp/perf-cli.log)" >&2
  done
  awk -v v="${line:-0}" 'BEGIN {printf "%.1f", v * 1.048576}'
}

# The 128 MiB mixed image every bench migrates: a quarter zero, a quarter random, half text.
bench_image() { ramshift make-image --overwrite --size ${IMG_MIB}M --pattern mixed "$IMG" >/dev/null; }

# ramshift send/receive of $IMG over rdma://. Into a file (the default): the destination
# writes /tmp/dst.img (tmpfs), byte-compared after. Into memory ("mem"): the destination keeps
# the guest in anonymous memory, as a migrated guest's RAM is, and verifies it against the
# source's digest (XXH3 of every page, compared before it exits 0); no file, so no cmp.
# Report: /tmp/tx.json.
# RS_RX_FLAGS / RS_TX_FLAGS: more flags for the receiver / the sender (split on spaces).
rs_run() {  # QUEUES CODEC [BATCH_PAGES (0 = the transport's default)] [file|mem] -> seconds
  rm -f /tmp/dst.img
  local out=(--guest-out /tmp/dst.img)
  [ "${4:-file}" = mem ] && out=()
  # shellcheck disable=SC2086  # the flags are words on purpose
  ramshift -q receive --listen rdma://$A:7000 --once "${out[@]}" ${RS_RX_FLAGS:-} >/tmp/rx.out 2>&1 &
  local rx=$!
  for _ in $(seq 200); do grep -q listening /tmp/rx.out 2>/dev/null && break; sleep 0.05; done
  ramshift -q send --to rdma://$A:7000 --guest file:$IMG --queues "$1" --codec "$2" \
    --batch-pages "${3:-0}" ${RS_TX_FLAGS:-} --json /tmp/tx.json >/dev/null 2>/tmp/tx.err ||
    { cat /tmp/tx.err >&2; kill $rx 2>/dev/null; wait $rx 2>/dev/null; echo 0; return; }
  wait $rx || { echo "receiver failed: $(tail -1 /tmp/rx.out)" >&2; echo 0; return; }
  if [ "${4:-file}" != mem ]; then cmp -s $IMG /tmp/dst.img || { echo "image differs" >&2; echo 0; return; }; fi
  grep -o '"total_ms": *[0-9.]*' /tmp/tx.json | awk '{printf "%.2f", $2 / 1000}'
}

# Stock QEMU's own `migrate rdma:` of a paused guest whose RAM is $IMG (QEMU's total time).
# The source maps it shared: QEMU registers its RAM as it sends, and on this 6.1 kernel a
# private mapping would get a copy of every page on being pinned, which a running guest's
# populated RAM never pays (and ramshift's image source avoids the same way). The paused guest
# writes nothing, so the image stays as it was. Measured in one boot, 3 runs each: 10.6 s
# private, 10.3 s shared (medians).
qemu_rdma_run() {
  local common=(-accel tcg -m $IMG_MIB -machine pc,memory-backend=ram0 -S -display none -nodefaults)
  "$QEMU" "${common[@]}" \
    -object memory-backend-file,id=ram0,size=${IMG_MIB}M,mem-path=/tmp/qemu-dst.ram,share=on \
    -incoming rdma:$A:4444 -monitor none >/tmp/qdst.log 2>&1 &
  local dst=$!
  sleep 3
  { echo "migrate_set_parameter max-bandwidth 100G"; echo "migrate rdma:$A:4444"
    echo "info migrate"; echo "quit"; } |
    timeout 300 "$QEMU" "${common[@]}" \
      -object memory-backend-file,id=ram0,size=${IMG_MIB}M,mem-path=$IMG,share=on \
      -monitor stdio >/tmp/qsrc.log 2>&1
  kill $dst 2>/dev/null; wait $dst 2>/dev/null
  local status; status=$(tr -d '\r' </tmp/qsrc.log | grep -a -o 'Migration status: [a-z]*' | tail -1)
  local total; total=$(tr -d '\r' </tmp/qsrc.log | grep -a -o 'total time: [0-9]*' | tail -1 | grep -o '[0-9]*$')
  if [ "$status" != "Migration status: completed" ]; then
    echo "qemu: ${status:-no status}" >&2; tr -d '\r' </tmp/qsrc.log | tail -5 >&2; cat /tmp/qdst.log >&2; echo 0; return
  fi
  awk -v ms="$total" 'BEGIN {printf "%.2f", ms / 1000}'
}

# The same paused guest through the ramshift QEMU bridge over rdma:// (qemu-migrate drives both
# QEMUs over QMP; QEMU's own total time, so it compares like for like with qemu_rdma_run).
# Report: /tmp/bm.json.
bridge_run() {  # RAMSHIFT_BINARY MULTIFD_CHANNELS -> seconds
  local common=(-accel tcg -m $IMG_MIB -machine pc,memory-backend=ram0 -S -display none -nodefaults -no-user-config)
  rm -f /tmp/qemu-dst.ram
  "$QEMU" "${common[@]}" -qmp unix:/tmp/bs.qmp,server=on,wait=off \
    -object memory-backend-file,id=ram0,size=${IMG_MIB}M,mem-path=$IMG,share=off >/tmp/bs.log 2>&1 &
  local s=$!
  "$QEMU" "${common[@]}" -qmp unix:/tmp/bd.qmp,server=on,wait=off -incoming defer \
    -object memory-backend-file,id=ram0,size=${IMG_MIB}M,mem-path=/tmp/qemu-dst.ram,share=on >/tmp/bd.log 2>&1 &
  local d=$!
  sleep 2
  "$1" -q qemu-migrate --src-qmp /tmp/bs.qmp --dst-qmp /tmp/bd.qmp --via rdma://$A:0 \
    --multifd-channels "$2" --codec auto --json /tmp/bm.json 2>/tmp/bm.err
  local rc=$?
  kill $s $d 2>/dev/null; wait $s $d 2>/dev/null
  if [ $rc != 0 ] || ! cmp -s $IMG /tmp/qemu-dst.ram; then cat /tmp/bm.err >&2; echo 0; return; fi
  grep -a -m1 -o '"total_ms": *[0-9]*' /tmp/bm.json | awk '{printf "%.2f", $2 / 1000}'
}

# Stock QEMU's multifd migration of the same paused guest over tcp: (QEMU's total time), with
# both QEMUs under `ramshift qemu-exec` (LIBRARY: pages by RDMA READ) or plain QEMU (plain:
# every page through the sockets). Also the CPU seconds the destination QEMU spent from
# `migrate` to its end (utime + stime from /proc, its start-up left out) in /tmp/im.cpu.
# The destination's RAM is compared
# with the image. Reports: /tmp/im.json (qemu-migrate), /tmp/imd.json (the library's stats).
inproc_run() {  # LIBRARY|plain CHANNELS -> seconds
  local common=(-accel tcg -m $IMG_MIB -machine pc,memory-backend=ram0 -S -display none -nodefaults -no-user-config)
  local wrap_s=() wrap_d=()
  if [ "$1" != plain ]; then
    wrap_s=(ramshift qemu-exec --library "$1" --stats /tmp/ims.json --)
    wrap_d=(ramshift qemu-exec --library "$1" --stats /tmp/imd.json --)
  fi
  rm -f /tmp/qemu-dst.ram /tmp/is.qmp /tmp/id.qmp
  "${wrap_s[@]}" "$QEMU" "${common[@]}" -qmp unix:/tmp/is.qmp,server=on,wait=off \
    -object memory-backend-file,id=ram0,size=${IMG_MIB}M,mem-path=$IMG,share=on >/tmp/is.log 2>&1 &
  local s=$!
  "${wrap_d[@]}" "$QEMU" "${common[@]}" -qmp unix:/tmp/id.qmp,server=on,wait=off -incoming defer \
    -object memory-backend-file,id=ram0,size=${IMG_MIB}M,mem-path=/tmp/qemu-dst.ram,share=on >/tmp/id.log 2>&1 &
  local d=$!
  sleep 2
  local cpu0; cpu0=$(awk '{print $14 + $15}' /proc/$d/stat 2>/dev/null)
  ramshift -q qemu-migrate --src-qmp /tmp/is.qmp --dst-qmp /tmp/id.qmp --dst-uri "tcp:$A:$((7400 + RANDOM % 500))" \
    --multifd-channels "$2" --max-bandwidth 0 --timeout 600 --json /tmp/im.json 2>/tmp/im.err
  local rc=$?
  awk -v c0="${cpu0:-0}" '{printf "%.2f", ($14 + $15 - c0) / 100}' /proc/$d/stat > /tmp/im.cpu 2>/dev/null
  kill $s $d 2>/dev/null; wait $s $d 2>/dev/null
  if [ $rc != 0 ] || ! cmp -s $IMG /tmp/qemu-dst.ram; then cat /tmp/im.err >&2; echo 0; return; fi
  grep -a -m1 -o '"total_ms": *[0-9]*' /tmp/im.json | awk '{printf "%.2f", $2 / 1000}'
}
# dest_stat FILE KEY: a number from the destination section of the library's stats (the
# section's own keys sit at four spaces; its channels' keys deeper).
dest_stat() {
  awk -v k="    \"$2\": " '/^  "destination": \{/ {on = 1} on && index($0, k) == 1 {
    v = substr($0, length(k) + 1); gsub(/[",]/, "", v); print v; exit}' "$1"
}
