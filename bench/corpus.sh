#!/bin/bash
# Memory images for the codec benchmarks that nobody here tuned the codecs for:
#   bench/corpus.sh real-files OUT SIZE   files of this machine (shared libraries, programs,
#                                         documentation, compressed archives), each page-aligned
#   bench/corpus.sh guest-ram  OUT SIZE   the RAM of a booted Debian-kernel guest (QEMU TCG,
#                                         file-backed memory) after it read and packed files
#   bench/corpus.sh synthetic  OUT SIZE   `ramshift make-image --pattern mixed` (RAMSHIFT=binary)
# An existing OUT is kept (it is the cache): delete it to rebuild. OUT.meta records what went
# in and the image's zstd -1 ratio. real-files and synthetic are deterministic for a machine;
# guest-ram is not byte-for-byte (timers, addresses), only in what the guest does.
set -euo pipefail
kind=${1:?kind}; out=${2:?OUT}; size=${3:?SIZE}
[ -s "$out" ] && { echo "corpus: $out exists (cached)" >&2; exit 0; }
bytes=$(numfmt --from=iec "$size")
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$(dirname "$out")"

# Writes the files named on stdin (NUL-separated) one after another into $1, each padded to a
# 4 KiB page as a page cache holds it, until $2 bytes; the rest of the image stays zero.
pack_files() {
  python3 -c "$(cat <<'EOF'
import os, sys
out, limit = sys.argv[1], int(sys.argv[2])
names = [n for n in sys.stdin.buffer.read().split(b"\0") if n]
with open(out, "wb") as f:
    pos = 0
    for n in names:
        if pos >= limit: break
        try:
            with open(n, "rb") as src: data = src.read(limit - pos)
        except OSError:
            continue
        if not data: continue
        f.write(data)
        pos += len(data)
        pad = -pos % 4096
        f.write(b"\0" * min(pad, limit - pos)); pos += min(pad, limit - pos)
    f.truncate(limit)
EOF
)" "$1" "$2"
}

# Interleaves, file by file, the sorted lists of four kinds of file, so every part of the
# image holds a mix (as a page cache does), not gigabytes of one kind then another.
real_file_list() {
  python3 - <<'EOF'
import os, sys, itertools
def walk(root, want):
    found = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p) and want(f) and os.path.getsize(p) > 0:
                found.append(p)
    return found
kinds = [
    walk("/usr/lib/x86_64-linux-gnu", lambda f: ".so" in f),
    walk("/usr/bin", lambda f: True),
    walk("/usr/share/doc", lambda f: not f.endswith(".gz")) + walk("/usr/share/man", lambda f: False),
    walk("/usr/share", lambda f: f.endswith((".gz", ".xz", ".bz2", ".zst"))),
]
for group in itertools.zip_longest(*kinds):
    for p in group:
        if p: sys.stdout.buffer.write(p.encode() + b"\0")
EOF
}

# The guest: busybox (static) as the whole userland, real files as its /data, and an /init
# that reads them, packs part of them, runs a few programs, then says "corpus-ready".
guest_ram() {
  w=$(mktemp -d /tmp/ramshift-corpus-XXXXXX)
  trap '[ -f "$w/qemu.pid" ] && kill "$(cat "$w/qemu.pid")" 2>/dev/null; rm -rf "$w" "$out.part"' EXIT
  . "$here/../tests/lib/debian_kernel.sh"
  debian_kernel || return $?
  if ! file -L "$(command -v busybox || echo /nonexistent)" | grep -q 'statically linked'; then
    echo "corpus: needs a static busybox (apt-get install busybox-static)" >&2; return 77
  fi
  local r=$w/root
  mkdir -p "$r"/{bin,dev,proc,sys,tmp,data}
  cp "$(command -v busybox)" "$r/bin/busybox"
  for a in sh mount cat find tar gzip sort md5sum dd sleep echo ls wc xargs head; do ln -s busybox "$r/bin/$a"; done
  # A quarter of the guest's RAM in real files (the rootfs is a tmpfs, at most half the RAM:
  # the files stay in memory, with room for what the guest makes of them).
  real_file_list | pack_list_copy "$r/data" $((bytes / 4))
  cat > "$r/init" <<'EOF'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo corpus-boot > /dev/ttyS0
find /data -type f | xargs cat > /dev/null
find /data -type f | head -400 | xargs cat | gzip -1 > /tmp/packed.gz
find /data -type f -name '*README*' | head -300 | xargs cat | sort > /tmp/sorted
find /data -type f | head -2000 | xargs md5sum > /tmp/sums
dd if=/dev/urandom of=/tmp/random bs=1M count=8 2>/dev/null
ls -lR / > /tmp/listing 2>/dev/null
echo corpus-ready > /dev/ttyS0
while true; do sleep 60; done
EOF
  chmod +x "$r/init"
  (cd "$r" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$w/initrd.gz")
  local qmp=$w/qmp
  qemu-system-x86_64 -accel tcg -m "$((bytes >> 20))" -nodefaults -no-user-config -display none \
    -object "memory-backend-file,id=m,size=$bytes,mem-path=$out.part,share=on" \
    -machine memory-backend=m -serial "file:$w/console" -qmp "unix:$qmp,server=on,wait=off" \
    -kernel "$KERNEL" -initrd "$w/initrd.gz" -append "console=ttyS0 quiet panic=-1" \
    > "$w/qemu.out" 2>&1 &
  echo $! > "$w/qemu.pid"
  for _ in $(seq 1200); do
    grep -aq corpus-ready "$w/console" 2>/dev/null && break
    kill -0 "$(cat "$w/qemu.pid")" 2>/dev/null || { cat "$w/qemu.out" >&2; return 1; }
    sleep 0.5
  done
  grep -aq corpus-ready "$w/console" || { echo "corpus: guest not ready in 600 s" >&2; return 1; }
  sleep 2  # let the last writes settle
  python3 - "$qmp" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
f.readline()
for cmd in ("qmp_capabilities", "stop", "quit"):
    f.write(json.dumps({"execute": cmd}) + "\n"); f.flush(); f.readline()
EOF
  wait "$(cat "$w/qemu.pid")" 2>/dev/null || true
  rm -f "$w/qemu.pid"
  mv "$out.part" "$out"
}

# Copies the files named on stdin into DIR/NNNNN (flat), up to LIMIT bytes.
pack_list_copy() {
  python3 -c "$(cat <<'EOF'
import shutil, sys, os
d, limit, pos = sys.argv[1], int(sys.argv[2]), 0
for i, n in enumerate(x for x in sys.stdin.buffer.read().split(b"\0") if x):
    try: sz = os.path.getsize(n)
    except OSError: continue
    if pos + sz > limit: continue
    name = os.path.basename(n).decode(errors="replace")
    shutil.copyfile(n, os.path.join(d, f"{i:05d}-{name}")); pos += sz
EOF
)" "$1" "$2"
}

case $kind in
  real-files) real_file_list | pack_files "$out.part" "$bytes" && mv "$out.part" "$out" ;;
  guest-ram) guest_ram ;;
  synthetic) "${RAMSHIFT:-build/release/cli/ramshift}" make-image "$out.part" --size "$size" --pattern mixed >&2 &&
    mv "$out.part" "$out" ;;
  *) echo "corpus: unknown kind $kind (real-files|guest-ram|synthetic)" >&2; exit 2 ;;
esac
ratio=$(zstd -1 -c -T0 "$out" | wc -c)
zero=$(python3 -c "
import sys
z = n = 0
empty = bytes(4096)
with open(sys.argv[1], 'rb') as f:
    while (p := f.read(4096)):
        n += 1; z += p == empty
print(f'{z / n:.3f}')" "$out")
printf 'kind %s\nsize %s\nzstd-1 ratio %.2f\nzero pages %s\nsha256 %s\n' "$kind" "$size" \
  "$(echo "$bytes / $ratio" | bc -l)" "$zero" "$(sha256sum "$out" | cut -c1-16)" | tee "$out.meta" >&2
