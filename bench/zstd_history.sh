#!/bin/bash
# Would zstd history kept per queue across batches pay (issue 26)? The image's non-zero 4 KiB
# pages, in 256 KiB batches as `--codec zstd` sends them, compressed at LEVEL (1) two ways:
# each batch on its own (what ramshift does), and all of them as one zstd stream, which keeps
# the whole window of history across batches: an upper bound on what a per-queue context
# (QEMU's multifd keeps one per channel) could gain.
#   bench/zstd_history.sh IMAGE [LEVEL]
set -euo pipefail
img=${1:?IMAGE}; level=${2:-1}
command -v zstd > /dev/null || { echo "needs zstd" >&2; exit 77; }
python3 - "$img" "$level" <<'EOF'
import subprocess, sys
img, level = sys.argv[1], sys.argv[2]
ps, batch = 4096, 256 * 1024 // 4096
zero = bytes(ps)
pages = []
with open(img, "rb") as f:
    while (p := f.read(ps)):
        if p != zero:
            pages.append(p)
def zstd(data):
    return len(subprocess.run(["zstd", f"-{level}", "-c", "-q", "--no-check"], input=data,
                              stdout=subprocess.PIPE, check=True).stdout)
alone = sum(zstd(b"".join(pages[i:i + batch])) for i in range(0, len(pages), batch))
stream = zstd(b"".join(pages))
print(f"non-zero {len(pages) * ps / 1e6:.1f} MB; zstd -{level}: batches alone {alone / 1e6:.1f} MB, "
      f"one stream {stream / 1e6:.1f} MB ({stream / alone:.3f}x)")
EOF
