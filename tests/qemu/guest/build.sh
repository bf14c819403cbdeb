# Sourced by the QEMU tests: builds their guests from this folder.
#   build_linux_guest OUT.cpio.gz  init.c as the whole initramfs (boot it with Debian's kernel)
#   build_bare_guest OUT.elf       bare.c as a Multiboot image for QEMU's -kernel, no kernel
#                                  needed: for QEMU running under emulation (the soft-RoCE VM)
# Both take RS_MEM_MB=... RS_DIRTY_MBPS=... on the kernel command line (-append) and print the
# same heartbeat lines (see init.c).
GUEST_SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

build_linux_guest() {
  local out=$1 root
  root=$(mktemp -d) && mkdir -p "$root/dev" || return 1
  gcc -static -O2 -o "$root/init" "$GUEST_SRC_DIR/init.c" &&
    (cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$out")
  local rc=$?
  rm -rf "$root"
  return $rc
}

build_bare_guest() {
  gcc -m32 -ffreestanding -fno-pic -fno-pie -fno-stack-protector -fno-asynchronous-unwind-tables \
    -nostdlib -static -O2 -Wall -Wl,-m,elf_i386 -Wl,-T,"$GUEST_SRC_DIR/bare.ld" -Wl,--build-id=none \
    -Wl,--no-warn-rwx-segments -o "$1" "$GUEST_SRC_DIR/bare.S" "$GUEST_SRC_DIR/bare.c"
}
