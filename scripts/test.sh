#!/bin/bash
# One command from a fresh checkout to every test: install, build with warnings as errors,
# check formatting, run unit + conformance + e2e suites, then the fuzzers briefly.
# FUZZ_SECONDS (default 20) sets each fuzzer's run; 0 skips them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test

echo "== format check"
files=$(git ls-files '*.cc' '*.h' 2>/dev/null || find transport tests bench -name '*.cc' -o -name '*.h')
clang-format --dry-run --Werror $files

echo "== build (dev preset, -Werror)"
cmake --preset dev -DRAMSHIFT_WERROR=ON >/dev/null
cmake --build --preset dev

echo "== tests"
ctest --preset dev

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
if [ "$FUZZ_SECONDS" != 0 ]; then
  echo "== fuzzers (${FUZZ_SECONDS}s each)"
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz
  for f in frame_fuzz batch_fuzz xbzrle_fuzz bridge_fuzz bench_fuzz tls_handshake_fuzz tls_message_fuzz; do
    corpus=$(mktemp -d)
    build/fuzz/tests/fuzz/$f -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 "$corpus" 2>&1 | grep -a -E "^(stat::number_of_executed_units|INFO: Done|==.*ERROR)" || true
    status=${PIPESTATUS[0]}
    rm -rf "$corpus"
    [ "$status" = 0 ] || { echo "fuzzer $f found a crash (exit $status)"; exit 1; }
  done
fi
echo "== all tests passed"
