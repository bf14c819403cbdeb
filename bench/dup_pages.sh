#!/bin/bash
# How much sending identical non-zero pages once (then a reference) could save on a memory
# image (issue 26, "dedup"): counts the image's 4 KiB pages that are zero, non-zero, and
# copies of an earlier non-zero page, and what the copies cost on the wire today (zstd -1 of
# them in 256 KiB batches, as `--codec zstd` sends them).
#   bench/dup_pages.sh IMAGE [PAGE_SIZE]
set -euo pipefail
img=${1:?IMAGE}; ps=${2:-4096}
command -v zstd > /dev/null || { echo "needs zstd" >&2; exit 77; }
python3 - "$img" "$ps" <<'EOF'
import hashlib, subprocess, sys
img, ps = sys.argv[1], int(sys.argv[2])
zero = bytes(ps)
seen = {}
n = zeros = dups = 0
copies = []  # the duplicate pages' contents, in image order
with open(img, "rb") as f:
    while (p := f.read(ps)):
        n += 1
        if p == zero:
            zeros += 1
            continue
        h = hashlib.blake2b(p, digest_size=16).digest()
        if h in seen:
            dups += 1
            copies.append(p)
        else:
            seen[h] = 1
batch = 256 * 1024 // ps
wire = 0
for i in range(0, len(copies), batch):
    out = subprocess.run(["zstd", "-1", "-c", "-q"], input=b"".join(copies[i:i + batch]),
                         stdout=subprocess.PIPE, check=True).stdout
    wire += len(out)
nonzero = n - zeros
print(f"pages {n}, zero {zeros} ({zeros / n:.1%}), non-zero {nonzero}, "
      f"copies of an earlier non-zero page {dups} ({dups / max(nonzero, 1):.1%} of non-zero), "
      f"distinct non-zero {len(seen)}; the copies as zstd -1 batches: {wire / 1e6:.1f} MB")
EOF
