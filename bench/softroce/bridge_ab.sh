#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Runs inside the soft-RoCE VM: QEMU's own rdma: migration of a paused 128 MiB mixed guest,
# and the same through the bridge over rdma:// with two ramshift binaries (ramshift-old and
# ramshift: an A/B in one boot), single channel and multifd 2, three rounds. From the host:
#   tests/softroce/rxe_vm.sh -m 3072 -b build/release/transport/ramshift -b OLD/ramshift-old \
#     -b bash -b /usr/bin/qemu-system-x86_64 -d /usr/share/qemu -d /usr/share/seabios \
#     -d /usr/lib/ipxe -d /usr/lib/x86_64-linux-gnu/qemu bench/softroce/bridge_ab.sh
A=10.9.0.1
IMG=/tmp/src.img
export QEMU_MODULE_DIR=/usr/lib/x86_64-linux-gnu/qemu
QEMU=/usr/bin/qemu-system-x86_64
ramshift make-image --size 128M --pattern mixed "$IMG" >/dev/null
now() { echo "${EPOCHREALTIME/./}"; }
qemu_run() {
  local common=(-accel tcg -m 128 -machine pc,memory-backend=ram0 -S -display none -nodefaults)
  "$QEMU" "${common[@]}" -object memory-backend-file,id=ram0,size=128M,mem-path=/tmp/qemu-dst.ram,share=on \
    -incoming rdma:$A:4444 -monitor none >/tmp/qdst.log 2>&1 &
  local dst=$!
  sleep 3
  { echo "migrate_set_parameter max-bandwidth 100G"; echo "migrate rdma:$A:4444"; echo "info migrate"; echo "quit"; } |
    timeout 300 "$QEMU" "${common[@]}" -object memory-backend-file,id=ram0,size=128M,mem-path=$IMG,share=off \
      -monitor stdio >/tmp/qsrc.log 2>&1
  kill $dst 2>/dev/null; wait $dst 2>/dev/null
  tr -d '\r' </tmp/qsrc.log | grep -a -o 'total time: [0-9]*' | tail -1 | grep -o '[0-9]*$'
}
bridge_run() {  # binary channels
  local common=(-accel tcg -m 128 -machine pc,memory-backend=ram0 -S -display none -nodefaults -no-user-config)
  rm -f /tmp/qemu-dst.ram
  "$QEMU" "${common[@]}" -qmp unix:/tmp/bs.qmp,server=on,wait=off \
    -object memory-backend-file,id=ram0,size=128M,mem-path=$IMG,share=off >/tmp/bs.log 2>&1 &
  local s=$!
  "$QEMU" "${common[@]}" -qmp unix:/tmp/bd.qmp,server=on,wait=off -incoming defer \
    -object memory-backend-file,id=ram0,size=128M,mem-path=/tmp/qemu-dst.ram,share=on >/tmp/bd.log 2>&1 &
  local d=$!
  sleep 2
  "$1" -q qemu-migrate --src-qmp /tmp/bs.qmp --dst-qmp /tmp/bd.qmp --via rdma://$A:0 \
    --multifd-channels "$2" --codec auto --json /tmp/bm.json 2>/tmp/bm.err
  local rc=$?
  kill $s $d 2>/dev/null; wait $s $d 2>/dev/null
  if [ $rc != 0 ] || ! cmp -s $IMG /tmp/qemu-dst.ram; then echo "FAIL($(tail -1 /tmp/bm.err))"; return; fi
  local t; t=$(grep -a -m1 -o '"total_ms": *[0-9]*' /tmp/bm.json | grep -o '[0-9]*$')
  local p; p=$(grep -a -m1 -o '"placed": *[0-9]*' /tmp/bm.json | grep -o '[0-9]*$')
  echo "$t placed=$p"
}
for i in 1 2 3; do
  echo "qemu-rdma: $(qemu_run)"
  echo "old-mf0: $(bridge_run ramshift-old 0)"
  echo "new-mf0: $(bridge_run ramshift 0)"
  echo "old-mf2: $(bridge_run ramshift-old 2)"
  echo "new-mf2: $(bridge_run ramshift 2)"
done
