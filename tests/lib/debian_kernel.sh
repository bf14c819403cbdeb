# Sourced by the VM harnesses (softroce/rxe_vm.sh, qemu/lib.sh): Debian's linux-image-amd64
# kernel, fetched once with `apt-get download` and unpacked into $RAMSHIFT_CACHE (default
# ~/.cache/ramshift). debian_kernel sets KERNEL (vmlinuz), KV (version) and KDIR (the
# unpacked package); it returns 77 ("cannot run here") when the package cannot be had.
debian_kernel() {
  local cache=${RAMSHIFT_CACHE:-$HOME/.cache/ramshift} pkg tmp
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$pkg" ] || { echo "cannot find Debian's linux-image-amd64 package" >&2; return 77; }
  KDIR=$cache/$pkg
  if [ ! -d "$KDIR/boot" ]; then
    echo "fetching $pkg into $cache (once)" >&2
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/dl.XXXXXX")
    (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1) || { rm -rf "$tmp"; echo "apt-get download $pkg failed" >&2; return 77; }
    dpkg -x "$tmp"/*.deb "$tmp/x" && mv "$tmp/x" "$KDIR.part" && mv "$KDIR.part" "$KDIR"
    rm -rf "$tmp"
  fi
  KERNEL=$(ls "$KDIR"/boot/vmlinuz-* | head -1)
  KV=${KERNEL##*/vmlinuz-}
}
