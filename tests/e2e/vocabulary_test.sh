#!/bin/bash
# One vocabulary across the commands, read from what users read: every command's --help and
# its errors. The same option means the same thing, in the same unit, with the same default
# everywhere; retired spellings are not shown; every error has the same prefix and exit 2.
source "$(dirname "$0")/lib.sh"

commands=(send receive demo make-image bench tune doctor status cancel set-bandwidth start-postcopy)
"$RAMSHIFT" --help | grep -q "qemu-bridge" && commands+=("qemu-bridge source" "qemu-bridge dest" qemu-migrate)
"$RAMSHIFT" --help | grep -q "qemu-exec" && commands+=(qemu-exec)
for c in "${commands[@]}"; do
  # shellcheck disable=SC2086
  "$RAMSHIFT" $c --help >"$WORK/help.${c// /_}" 2>&1 || fail "$c --help exits non-zero"
done

python3 - "$WORK" "$(nproc)" "${commands[@]}" <<'PY' && pass "--help of every command speaks one vocabulary" || fail "vocabulary"
import re, sys
work, cores, commands = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
opts = {}  # command -> {--name: (default or None, description)}
for c in commands:
    text = open(f"{work}/help.{c.replace(' ', '_')}").read()
    found, last = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (?:-\w,)?(--[\w-]+)(.*)$", line)
        if m:
            column, _, desc = m.group(2).strip().partition("  ")
            default = column.rsplit("=", 1)[1] if "=" in column else None
            if default and default.startswith("["):  # a list option: [a,b] ...
                default = default[1:].split("]")[0]
            last = m.group(1)
            found[last] = [default, desc.strip()]
        elif last and line.startswith("    "):
            found[last][1] += " " + line.strip()
    opts[c] = found
errors = []
def check(ok, why):
    if not ok: errors.append(why)

# Retired spellings (renamed for one vocabulary) are not shown anywhere.
for c, o in opts.items():
    for retired in ("--bandwidth-limit", "--message-size", "--batch-pages", "--force"):
        check(retired not in o, f"{c} shows {retired}")
# The same option has the same default wherever it has one (queues from this host's cores).
for name, expect in (("--codec", "auto"), ("--queues", str(min(cores, 8))), ("--page-size", "4096"),
                     ("--zstd-level", "1"), ("--xbzrle-cache", "64M"), ("--peer-timeout", "5"),
                     ("--downtime-limit", "100")):
    for c, o in opts.items():
        want = expect
        if c == "qemu-bridge source" and name == "--queues":
            want = str(min(cores, 8) + 1)  # channels QEMU may open: 1 + multifd channels
        if name in o and o[name][0] is not None:
            check(o[name][0] == want, f"{c} {name} defaults to {o[name][0]}, not {want}")
# One name per setting: a rate cap is --max-bandwidth, a batch is --batch-size (bytes).
check("--max-bandwidth" in opts["send"], "send has no --max-bandwidth")
check("--batch-size" in opts["send"] and "--batch-size" in opts["bench"], "no shared --batch-size")
if "qemu-migrate" in opts:
    check("--max-bandwidth" in opts["qemu-migrate"], "qemu-migrate has no --max-bandwidth")
# --json - is stdout on every command.
for c, o in opts.items():
    if "--json" in o:
        check("'-' = stdout" in o["--json"][1], f"{c} --json: {o['--json'][1]}")
# Replacing a file takes --overwrite wherever a command writes one the user names.
for c in ("receive", "make-image"):
    check("--overwrite" in opts[c], f"{c} has no --overwrite")
for e in errors: print("vocabulary:", e)
sys.exit(1 if errors else 0)
PY

# Every usage error, CLI11's own included, has the program's prefix and exits 2.
for c in "${commands[@]}"; do
  # shellcheck disable=SC2086
  "$RAMSHIFT" $c --no-such-flag >/dev/null 2>"$WORK/err"; rc=$?
  [ "$rc" = 2 ] && grep -q "^ramshift: error: " "$WORK/err" ||
    fail "$c --no-such-flag: exit $rc, stderr: $(head -2 "$WORK/err")"
done
pass "usage errors of every command say 'ramshift: error:' and exit 2"

# QEMU's URI spelling works where a URI is taken: the send below fails to connect (nothing
# listens), not to parse.
"$RAMSHIFT" make-image "$WORK/img" --size 1M || exit 1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect_exit 2 "send to tcp:HOST:PORT (QEMU's form)" -- "$RAMSHIFT" send --to "tcp:127.0.0.1:$port" --guest "file:$WORK/img"
expect_stderr "refused" "tcp:HOST:PORT is parsed and tried"

# make-image does not overwrite silently, and writes nothing on a usage error.
expect_exit 2 "make-image over an existing file" -- "$RAMSHIFT" make-image "$WORK/img" --size 2M
expect_stderr "exists; pass --overwrite" "make-image names --overwrite"
[ "$(stat -c %s "$WORK/img")" = 1048576 ] && pass "the existing image is untouched" || fail "image changed"
expect_exit 0 "make-image --overwrite" -- "$RAMSHIFT" make-image "$WORK/img" --size 2M --overwrite
expect_exit 2 "make-image with a bad size" -- "$RAMSHIFT" make-image "$WORK/new.img" --size 12Q
[ ! -e "$WORK/new.img" ] && [ ! -e "$WORK/new.img.partial" ] && pass "nothing written on a usage error" || fail "make-image left a file"

# Reports say which build, host and time made them; both ends count the same zero pages.
start_receiver --once --guest-out "$WORK/out.img" --json "$WORK/rx.json" || exit 1
"$RAMSHIFT" send --to "$RX_URI" --guest "file:$WORK/img" --json "$WORK/tx.json" 2>/dev/null
wait "$RX_PID"
python3 - "$WORK/tx.json" "$WORK/rx.json" "$(hostname)" <<'PY' && pass "reports carry version, host, start time; page counts agree" || fail "report provenance"
import json, sys, re
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
for r in (tx, rx):
    assert r["version"].startswith("ramshift "), r["version"]
    assert r["host"] == sys.argv[3], r["host"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", r["started_at"]), r["started_at"]
for k in ("zero", "xbzrle", "zstd", "raw", "placed"):
    assert tx["pages"][k] == rx["pages"][k], (k, tx["pages"], rx["pages"])
assert tx["pages"]["zero_unsent"] + sum(tx["pages"][k] for k in ("zero", "xbzrle", "zstd", "raw", "placed")) == 512
PY
finish
