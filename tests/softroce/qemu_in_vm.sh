# Sourced by the scripts that carry stock QEMU into the soft-RoCE VM (inproc_run.sh,
# bench/softroce_downtime_bench.sh): the rxe_vm.sh arguments for it.
. "$(dirname "${BASH_SOURCE[0]}")/../lib/debian_backports_qemu.sh"

# softroce_qemu_args QEMU: QARGS = the binary and its firmware and module folders, found at
# their host paths inside.
softroce_qemu_args() {
  QARGS=(-b "$1")
  local d
  for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe /usr/lib/x86_64-linux-gnu/qemu "$1"; do
    [ -e "$d" ] && QARGS+=(-d "$d")
  done
}

# softroce_newer_qemu DIR: adds the backports' newer QEMU to QARGS under another name (rxe_vm.sh
# puts -b binaries on PATH by basename; a link in DIR), with its libraries and its firmware at
# the same paths inside (the download has no modules: none needed); NEWER = its path inside and
# its root, for the script run in the VM. Returns 1 (NEWER empty) when it cannot be had.
softroce_newer_qemu() {
  NEWER=()
  backports_qemu || return 1
  local root
  root=$(dirname "$(dirname "$QEMU_NEWER_BIN")")/root
  ln -s "$root/usr/bin/qemu-system-x86_64" "$1/qemu-system-x86_64-newer"
  QARGS+=(-b "$1/qemu-system-x86_64-newer" -d "$root/usr/share/qemu" -d "$root/usr/share/seabios")
  NEWER=(/opt/bin/qemu-system-x86_64-newer "$root")
}
