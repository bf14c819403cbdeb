#!/bin/bash
# One command from a fresh checkout to a running demo: install, build (release), `ramshift demo`.
# Extra arguments go to `ramshift demo` (e.g. --size 1G --codec zstd).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target ramshift
exec build/release/cli/ramshift demo "$@"
