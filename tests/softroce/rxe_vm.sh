#!/bin/bash
# Runs a script as root inside a throwaway Linux VM (QEMU software emulation) that has two
# soft-RoCE devices: rxe0 on veth va (10.9.0.1) and rxe1 on veth vb (10.9.0.2).
#
#   tests/softroce/rxe_vm.sh [-m MEM_MB] [-b BINARY]... [-d DIR]... [-f FILE]... SCRIPT [ARGS...]
#
# -b copies a host binary and every library it needs into the VM (on PATH as its basename);
# -d copies a host directory tree to the same path inside; -f copies one file to
# /opt/share/BASENAME inside (a shell library the script sources, say). RXE_VM_MTU sets the
# veth MTU (default 1500; 9000 for RoCE's 4096-byte MTU). The script's exit status comes
# back as ours; 77 means "cannot run here" (ctest skips). The VM is a cpio initramfs in a
# temporary folder, removed on exit whatever happens; nothing touches the host's network.
#
# The guest kernel is Debian's linux-image-amd64 (it ships rdma_rxe), fetched once with
# `apt-get download` and unpacked into $RAMSHIFT_CACHE (default ~/.cache/ramshift); missing
# host tools (qemu-system-x86, busybox-static, rdma-core, ...) are installed from Debian.
# Why TCG: /dev/kvm on these machines cannot run a normal guest kernel.
set -euo pipefail
MEM=2048; BINS=(); DIRS=(); FILES=()
while getopts "m:b:d:f:" o; do
  case $o in
    m) MEM=$OPTARG ;; b) BINS+=("$OPTARG") ;; d) DIRS+=("$OPTARG") ;; f) FILES+=("$OPTARG") ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-m MB] [-b BIN]... [-d DIR]... [-f FILE]... SCRIPT [ARGS...]" >&2; exit 2; }
SCRIPT=$1; shift
VM_TIMEOUT=${RXE_VM_TIMEOUT:-1500}
# The veth pair's MTU, which sets the soft-RoCE path MTU: 1500 gives RoCE's 1024-byte MTU
# (the default, what the benchmarks quote), 9000 RoCE's 4096 (jumbo frames, as RoCE
# fabrics are usually run).
VETH_MTU=${RXE_VM_MTU:-1500}

log() { echo "rxe-vm: $*" >&2; }

# --- host tools ------------------------------------------------------------------------
need_pkgs=()
for pair in qemu-system-x86_64:qemu-system-x86 cpio:cpio rdma:iproute2 \
            ibv_devices:ibverbs-utils ib_write_bw:perftest setpriv:util-linux xz:xz-utils; do
  command -v "${pair%%:*}" >/dev/null || need_pkgs+=("${pair#*:}")
done
[ -e /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so ] || need_pkgs+=(ibverbs-providers)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || need_pkgs+=(busybox-static)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then log "needs ${need_pkgs[*]} (run as root to install)"; exit 77; fi
  log "installing ${need_pkgs[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
BUSYBOX=/bin/busybox  # busybox-static's: no libraries to copy

# --- guest kernel (cached) ---------------------------------------------------------------
. "$(dirname "$0")/../lib/debian_kernel.sh"
debian_kernel || exit $?
MODDIR=$KDIR/lib/modules/$KV/kernel

# --- initramfs -----------------------------------------------------------------------------
W=$(mktemp -d /tmp/rxe-vm.XXXXXX)
QEMU_PID=
cleanup() { [ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
R=$W/root
mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,tmp,mods,opt/bin,usr/sbin,usr/bin,run,lib64}
cp "$BUSYBOX" "$R/bin/busybox"
for a in sh mount cat echo ls sleep poweroff mkdir grep sync head tail dd md5sum seq kill ps wc \
         cmp cp mv rm env timeout test tr cut sed awk date printf true false sort uniq xargs stat mktemp basename dirname; do
  ln -sf busybox "$R/bin/$a"
done
copy_libs() {
  for l in $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*'); do
    [ -e "$R$l" ] || { mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"; }
  done
}
add_bin() {
  local src; src=$(readlink -f "$(command -v "$1" || echo "$1")")
  [ -f "$src" ] || { log "no such binary: $1"; exit 2; }
  cp -L "$src" "$R/opt/bin/$(basename "$1")"; copy_libs "$src"
}
for b in rdma ibv_devices ibv_devinfo ib_write_bw setpriv ${BINS[@]+"${BINS[@]}"}; do add_bin "$b"; done
cp -L /usr/sbin/ip "$R/usr/sbin/ip"; copy_libs /usr/sbin/ip  # busybox ip cannot make veths
mkdir -p "$R/usr/lib/x86_64-linux-gnu/libibverbs" "$R/etc/libibverbs.d"
cp -L /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so "$R/usr/lib/x86_64-linux-gnu/libibverbs/"
copy_libs /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so
cp /etc/libibverbs.d/rxe.driver "$R/etc/libibverbs.d/"
cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$R/lib/x86_64-linux-gnu/" 2>/dev/null || true
echo "root:x:0:0:root:/root:/bin/sh" > "$R/etc/passwd"
for d in ${DIRS[@]+"${DIRS[@]}"}; do mkdir -p "$R$(dirname "$d")"; cp -a "$d" "$R$d"; done
mkdir -p "$R/opt/share"
for f in ${FILES[@]+"${FILES[@]}"}; do cp "$f" "$R/opt/share/"; done
# Modules in dependency order; without crc32_generic `rdma link add` fails with ENOENT.
MODS="crypto/crc32_generic fs/configfs/configfs drivers/infiniband/core/ib_core
      drivers/infiniband/core/ib_uverbs net/ipv4/udp_tunnel net/ipv6/ip6_udp_tunnel
      drivers/infiniband/sw/rxe/rdma_rxe drivers/infiniband/core/iw_cm drivers/infiniband/core/ib_cm
      drivers/infiniband/core/rdma_cm drivers/infiniband/core/rdma_ucm drivers/net/veth"
for m in $MODS; do
  f=$(ls "$MODDIR/$m".ko* | head -1)
  case $f in *.xz) xz -dc "$f" > "$R/mods/$(basename "$m").ko" ;; *) cp "$f" "$R/mods/$(basename "$m").ko" ;; esac
done
cp "$SCRIPT" "$R/test.sh"
echo "$VETH_MTU" > "$R/etc/veth-mtu"
printf '%q ' "$@" > "$R/test.args"
cat > "$R/init" <<'EOI'
#!/bin/sh
export PATH=/opt/bin:/bin:/usr/bin:/usr/sbin:/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
# A tmpfs on /tmp (fallocate works there), keeping what -d copied under /tmp.
mkdir -p /run/tmp-seed; cp -a /tmp/. /run/tmp-seed/; mount -t tmpfs tmp /tmp; cp -a /run/tmp-seed/. /tmp/; rm -rf /run/tmp-seed
for m in crc32_generic configfs ib_core ib_uverbs udp_tunnel ip6_udp_tunnel rdma_rxe iw_cm ib_cm rdma_cm rdma_ucm veth; do
  insmod /mods/$m.ko || echo "rxe-vm: insmod $m failed"
done
# Absolute path: busybox sh prefers its own applets, and busybox ip cannot make veths.
/usr/sbin/ip link set lo up
/usr/sbin/ip link add va type veth peer name vb
/usr/sbin/ip addr add 10.9.0.1/24 dev va; /usr/sbin/ip addr add 10.9.0.2/24 dev vb
/usr/sbin/ip link set va mtu "$(cat /etc/veth-mtu)"; /usr/sbin/ip link set vb mtu "$(cat /etc/veth-mtu)"
/usr/sbin/ip link set va up; /usr/sbin/ip link set vb up
rdma link add rxe0 type rxe netdev va; rdma link add rxe1 type rxe netdev vb
ulimit -l unlimited
cd /tmp
eval "set -- $(cat /test.args)"
/bin/sh /test.sh "$@"; echo "RXE_VM_EXIT=$?"
sync; poweroff -f
EOI
chmod +x "$R/init" "$R/test.sh"
(cd "$R" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$W/initrd.gz")

# --- boot --------------------------------------------------------------------------------
log "booting $KV with $(du -sh "$W/initrd.gz" | cut -f1) initramfs, ${MEM} MiB, TCG"
timeout "$VM_TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m "$MEM" \
  -kernel "$KERNEL" -initrd "$W/initrd.gz" -append "console=ttyS0 quiet panic=-1" \
  -display none -serial stdio -no-reboot -nodefaults </dev/null > "$W/console" 2>&1 &
QEMU_PID=$!
tail -f --pid=$QEMU_PID "$W/console" 2>/dev/null | sed -u 's/\r$//' &
wait $QEMU_PID || true
QEMU_PID=
sleep 0.2
rc=$(tr -d '\r' < "$W/console" | grep -a -o 'RXE_VM_EXIT=[0-9]*' | tail -1 | cut -d= -f2)
[ -n "$rc" ] || { log "the VM ended without a result (timeout ${VM_TIMEOUT}s or crash)"; exit 1; }
exit "$rc"
