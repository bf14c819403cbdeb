#!/bin/bash
# The test guests' own page check can fail: the kernel-less guest (guest/bare.c) with one byte of
# a page changed behind its back (RS_CORRUPT_PAGE) must report that page within its first
# sweep, and the same guest left alone must sweep all its memory and report nothing. Every
# QEMU test's "the guest's page check stayed clean" rests on this check (init.c shares it).
#   guest_check_test.sh
set -uo pipefail
. "$(dirname "$0")/guest/build.sh"
command -v qemu-system-x86_64 > /dev/null || { echo "needs qemu-system-x86_64" >&2; exit 77; }
W=$(mktemp -d /tmp/ramshift-guest-check.XXXXXX)
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
build_bare_guest "$W/bare.elf" || { echo "FAIL: cannot build the guest"; exit 1; }
run() {  # LOG APPEND: boots the guest until its second sweep ends (or 60 s)
  qemu-system-x86_64 -accel tcg -m 64 -nodefaults -no-user-config -display none \
    -serial "file:$W/$1" -kernel "$W/bare.elf" -append "$2" > /dev/null 2>&1 &
  local q=$!
  for _ in $(seq 600); do grep -q 'sweeps 2' "$W/$1" 2> /dev/null && break; sleep 0.1; done
  kill $q; wait $q 2> /dev/null
}
run clean.log "RS_MEM_MB=8 RS_DIRTY_MBPS=2"
grep -q 'bad 0 sweeps 2' "$W/clean.log" || { echo "FAIL: the untouched guest:"; cat "$W/clean.log"; exit 1; }
echo "ok: untouched, two sweeps clean: $(grep -m1 'sweeps 2' "$W/clean.log")"
# Not dirtying: a rewrite of that page before the sweep reaches it would erase the change.
run corrupt.log "RS_MEM_MB=8 RS_DIRTY_MBPS=0 RS_CORRUPT_PAGE=1234"
grep -q 'guest: page 1234 does not match' "$W/corrupt.log" && grep -q 'bad [1-9]' "$W/corrupt.log" ||
  { echo "FAIL: a changed page went unnoticed:"; cat "$W/corrupt.log"; exit 1; }
echo "ok: the changed page is reported: $(grep -m1 'does not match' "$W/corrupt.log")"
