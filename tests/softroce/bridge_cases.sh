# Sourced by suite.sh (and alone with `suite.sh E2E_DIR bridge`, SOFTROCE_ONLY=bridge on
# run.sh): stock QEMU through the two bridges over rdma:// (`qemu-migrate --via`), a paused
# 64 MiB guest whose RAM is $WORK/src.img, single channel and multifd 2: the destination's RAM
# file equals the image, the bridges used rdma, multifd pages were placed by RDMA WRITE into
# the reassembly slots, and those slots' keys were memory windows, one per queue.
step "QEMU through the bridge over rdma://: a paused 64 MiB guest"
# QEMU runs its guest RAM from files here: the source's is the image, the destination's a
# fresh file it fills as the migration lands, so the two must end byte-identical.
QEMU=/usr/bin/qemu-system-x86_64
export QEMU_MODULE_DIR=/usr/lib/x86_64-linux-gnu/qemu
if [ -x "$QEMU" ]; then
  for ch in 0 2; do
    rm -f "$WORK/qemu-dst.ram"
    qcommon=(-accel tcg -m 64 -machine pc,memory-backend=ram0 -S -display none -nodefaults -no-user-config)
    "$QEMU" "${qcommon[@]}" -qmp "unix:$WORK/qs.qmp,server=on,wait=off" \
      -object memory-backend-file,id=ram0,size=64M,mem-path="$WORK/src.img",share=off >"$WORK/qs.log" 2>&1 &
    qs=$!
    "$QEMU" "${qcommon[@]}" -qmp "unix:$WORK/qd.qmp,server=on,wait=off" -incoming defer \
      -object memory-backend-file,id=ram0,size=64M,mem-path="$WORK/qemu-dst.ram",share=on >"$WORK/qd.log" 2>&1 &
    qd=$!
    expect_exit 0 "qemu-migrate via rdma:// with $ch multifd channels" -- \
      "$RAMSHIFT" -v qemu-migrate --src-qmp "$WORK/qs.qmp" --dst-qmp "$WORK/qd.qmp" \
      --via "rdma://$ADDR:0" --multifd-channels $ch --json "$WORK/qm-$ch.json"
    kill $qs $qd 2>/dev/null; wait $qs $qd 2>/dev/null
    cmp -s "$WORK/src.img" "$WORK/qemu-dst.ram" && pass "destination RAM identical to the source's ($ch channels)" ||
      fail "destination RAM differs ($ch channels)"
    grep -q '"transport": "rdma"' "$WORK/qm-$ch.json" && pass "the bridges used rdma" || fail "bridges not on rdma"
    if [ $ch -gt 0 ]; then  # multifd packets: raw pages go by RDMA WRITE into reassembly slots
      placed=$(grep -o '"placed": *[0-9]*' "$WORK/qm-$ch.json" | head -1 | grep -o '[0-9]*$')
      [ "${placed:-0}" -gt 1000 ] && pass "$placed multifd pages placed by RDMA WRITE at their final offset" ||
        fail "only ${placed:-0} multifd pages were placed"
      # Each channel's reassembly slots are opened to the source bridge by a memory window
      # bound on that channel's queue (the destination bridge's log, -v, says it once).
      expect_stderr "the peer's keys are memory windows, one per queue" \
        "the placement slots' keys are memory windows, one per queue"
    fi
  done
else
  fail "no $QEMU in the VM (run.sh copies it in)"
fi

