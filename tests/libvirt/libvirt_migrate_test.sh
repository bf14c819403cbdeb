#!/bin/bash
# `virsh migrate --live` between two real libvirt daemons (Debian 12's libvirtd 9.0), with
# ramshift's QEMU bridge carrying the migration. Two "hosts": each is a network namespace (joined
# by a 1 Gbit/s veth) plus a private mount namespace in which /etc/libvirt, /run/libvirt,
# /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt are folders of this test, so the two
# daemons (and any system libvirtd) never share a socket, a pid file or a domain's state — and a
# `unix://` migration URI names a different socket on each host, as it would on two machines.
# A small QEMU TCG domain (tests/qemu/guest: it dirties its memory and checks every page) with a
# 16 MiB raw disk migrates
#   1 A -> B  single channel, virsh-driven; --copy-storage-all with the disk's NBD stream through
#             a second bridge pair (--disks-uri unix://, --passthrough)
#   2 B -> A  multifd, 2 channels (--parallel), peer-to-peer (--p2p); the disk over libvirt's
#             own NBD connection (--disks-uri tcp://), not through ramshift
#   3 A -> B  fails: the destination bridge is told a wrong QEMU socket; libvirt reports the
#             failure, the domain keeps running on A, unchanged, and B has nothing left
#   4 A -> B  the in-process library: the domain's <emulator> is a wrapper that execs
#             `ramshift qemu-exec`; multifd 2 over libvirt's own tcp:// URI (no RDMA here:
#             the libraries' stats say plain TCP and why)
# After each success: the domain runs on the destination daemon and is gone from the source, the
# guest's heartbeat continues past the source's last one with no page ever checked bad, the disk
# is byte-identical, and both bridges' reports say completed and verified with the guest's
# memory in them (multifd: every channel re-encoded). Usage: libvirt_migrate_test.sh RAMSHIFT
set -uo pipefail
RAMSHIFT=$(readlink -f "$1")
[ "$(id -u)" = 0 ] || { echo "libvirt test needs root (namespaces, libvirtd)" >&2; exit 77; }
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../../scripts/lib/netns.sh"
W=$(mktemp -d /tmp/ramshift-libvirt.XXXXXX)
NSA=rslva$$ NSB=rslvb$$ NET=10.81.0
DOM=rsguest
MIGDIR=/var/lib/libvirt/ramshift  # inside each host's private /var/lib/libvirt
cleanup() {
  local h
  for h in A B; do [ -S "$W/$h/sock/libvirt-sock" ] && virsh -q -c "$(lv_uri $h)" destroy $DOM >/dev/null 2>&1; done
  netns_link_down "$NSA" "$NSB"  # kills the daemons, their QEMUs and the bridges
  wait 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 143' TERM INT  # ctest's timeout: still clean up
. "$HERE/../qemu/lib.sh"
lvlog() { echo "libvirt-test: [${SECONDS}s] $*" >&2; }
fail() {
  lvlog "FAIL: $*"
  for f in "$W"/*/*.err "$W"/*/libvirtd.log "$W"/*/log/qemu/$DOM.log; do
    [ -s "$f" ] && { echo "--- $f" >&2; grep -v -E 'dnsmasq|DBus|dmidecode|DMI|/dev/kvm' "$f" | tail -4 >&2; }
  done
  exit 1
}
GUEST_MB=${GUEST_MB:-96}
DIRTY=${DIRTY:-6}

# libvirt's daemon and client, from Debian's packages (scripts/setup.sh --test installs them).
if ! command -v libvirtd >/dev/null || ! command -v virsh >/dev/null || ! id libvirt-qemu >/dev/null 2>&1; then
  lvlog "installing libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu; } >/dev/null 2>&1 ||
    { lvlog "SKIP: libvirt's packages cannot be installed here"; exit 77; }
fi
command -v unshare >/dev/null && command -v nsenter >/dev/null || { lvlog "SKIP: no unshare/nsenter"; exit 77; }
qemu_need_tools
netns_link_up "$NSA" "$NSB" $NET 1gbit || { lvlog "SKIP: cannot create network namespaces"; exit 77; }
declare -A IP=([A]=$NET.1 [B]=$NET.2) NS=([A]=$NSA [B]=$NSB) PID=()

lv_uri() { echo "qemu+unix:///system?socket=$W/$1/sock/libvirt-sock"; }
lv() { local h=$1; shift; virsh -q -c "$(lv_uri "$h")" "$@"; }
on() { local h=$1; shift; nsenter -t "${PID[$h]}" -m -n -- "$@"; }  # run on host A or B

# lv_host_up H: host H's libvirtd, root of its own mount namespace inside H's network namespace.
lv_host_up() {
  local h=$1 d=$W/$1 m
  mkdir -p "$d"/{etc,run,lib/images,cache,log/qemu,sock} "$d/lib/ramshift"
  # Why these settings: the daemon's socket where virsh finds it; QEMU as root with no
  # security driver, cgroups or /dev namespace, which a container or CI runner may not allow;
  # QEMU's output to plain files (no virtlogd); a host UUID of its own, as two machines have.
  cat > "$d/etc/libvirtd.conf" <<EOF
unix_sock_dir = "$d/sock"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
host_uuid = "$([ "$h" = A ] && echo 8e5d2f10-0000-4000-8000-00000000000a || echo 8e5d2f10-0000-4000-8000-00000000000b)"
log_outputs = "3:file:$d/libvirtd.log"
EOF
  cat > "$d/etc/qemu.conf" <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = []
cgroup_controllers = []
stdio_handler = "file"
EOF
  local binds=""
  for m in etc:/etc/libvirt run:/run/libvirt lib:/var/lib/libvirt cache:/var/cache/libvirt log:/var/log/libvirt; do
    mkdir -p "${m#*:}"
    binds+="mount --bind $d/${m%%:*} ${m#*:} && "
  done
  ip netns exec "${NS[$h]}" unshare -m --propagation private \
    sh -c "${binds}exec libvirtd --config $d/etc/libvirtd.conf --pid-file $d/run/libvirtd.pid" \
    > "$d/libvirtd.out" 2>&1 &
  PID[$h]=$!
  for m in $(seq 150); do
    lv "$h" version >/dev/null 2>&1 && return 0
    kill -0 "${PID[$h]}" 2>/dev/null || break
    sleep 0.2
  done
  lvlog "SKIP: libvirtd did not start on host $h: $(tail -2 "$d/libvirtd.out")"
  exit 77
}
lv_host_up A
lv_host_up B
lvlog "two libvirtd $(libvirtd --version | awk '{print $NF}') daemons up in $NSA and $NSB"

qemu_build_guest
head -c 16M /dev/urandom > "$W/A/lib/images/disk.img"
cat > "$W/dom.xml" <<EOF
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>$((GUEST_MB + GUEST_MB / 8 + 128))</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$KERNEL</kernel>
    <initrd>$W/guest.cpio.gz</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 RS_MEM_MB=$GUEST_MB RS_DIRTY_MBPS=$DIRTY</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/var/lib/libvirt/images/disk.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='/var/log/libvirt/qemu/$DOM-console.log'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
lv A create "$W/dom.xml" > /dev/null || fail "virsh create on host A"

# The guest's console on host H, for tests/qemu/lib.sh's heartbeat and page checks.
console() { echo "$1/log/qemu/$DOM-console"; }
wait_beat() {  # wait_beat H N: host H's guest reaches heartbeat N within 240 s
  local i b
  for i in $(seq 1200); do
    b=$(qemu_beat "$(console "$1")"); [ -n "$b" ] && [ "$b" -ge "$2" ] && return 0
    [ "$(lv "$1" domstate $DOM 2>/dev/null)" = running ] || { lvlog "domain not running on $1"; return 1; }
    sleep 0.2
  done
  lvlog "host $1: heartbeat $2 not reached (last ${b:-none})"; return 1
}
wait_beat A 2 || fail "the guest did not boot on host A"
lvlog "guest running on host A (heartbeat $(qemu_beat "$(console A)"))"

# bridges NAME SRC DST [SOURCE BRIDGE ARGS]: a destination bridge on DST (for QEMU's socket
# $MIGDIR/NAME.sock there, or DEST_SOCK.sock), then a source bridge on SRC serving the same path for the source
# QEMU. Reports in $W/SRC/NAME.json and $W/DST/NAME.json.
bridges() {
  local name=$1 src=$2 dst=$3 i uri; shift 3
  rm -f "$W/$src/lib/ramshift/$name.sock" "$W/$dst/lib/ramshift/$name.sock"
  on "$dst" "$RAMSHIFT" qemu-bridge dest --listen "tcp://${IP[$dst]}:0" --qemu "unix:$MIGDIR/${DEST_SOCK:-$name}.sock" \
    --accept-timeout 120 --json "$W/$dst/$name.json" > "$W/$dst/$name.out" 2> "$W/$dst/$name.err" &
  for i in $(seq 100); do grep -q listening "$W/$dst/$name.out" && break; sleep 0.1; done
  uri=$(awk '/listening on/ {print $3}' "$W/$dst/$name.out")
  [ -n "$uri" ] || fail "$name: the destination bridge did not start"
  on "$src" "$RAMSHIFT" qemu-bridge source --listen "unix:$MIGDIR/$name.sock" --to "$uri" \
    --accept-timeout 120 --json "$W/$src/$name.json" "$@" > "$W/$src/$name.out" 2> "$W/$src/$name.err" &
  for i in $(seq 100); do grep -q listening "$W/$src/$name.out" && return 0; sleep 0.1; done
  fail "$name: the source bridge did not start"
}
# report FILE PYTHON-EXPR: evaluates EXPR on the JSON report r; prints it, fails on false/None.
report() {
  python3 - "$@" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(v)
sys.exit(0 if v else 1)
EOF
}
bridged_ok() {  # bridged_ok LABEL NAME SRC DST MIN_MIB: both ends completed and verified
  local label=$1 name=$2 src=$3 dst=$4 min=$5 f
  wait_bridges_exit "$src" "$dst" "$name" || fail "$label: a $name bridge did not finish"
  for f in "$W/$src/$name.json" "$W/$dst/$name.json"; do
    report "$f" "r['status'] == 'completed' and r['verified']" >/dev/null || fail "$label: $f: $(report "$f" "r['status'], r['error']")"
    report "$f" "r['guest_bytes'] >= $min << 20" >/dev/null || fail "$label: only $(report "$f" "r['guest_bytes']") bytes of QEMU stream through ramshift"
  done
}
wait_bridges_exit() {
  local i
  for i in $(seq 300); do
    [ -s "$W/$1/$3.json" ] && [ -s "$W/$2/$3.json" ] && return 0
    sleep 0.1
  done
  return 1
}
# moved_ok LABEL SRC DST LAST: the domain runs on DST only, its heartbeat goes past LAST, clean.
moved_ok() {
  local label=$1 src=$2 dst=$3 last=$4
  [ "$(lv "$dst" domstate $DOM)" = running ] || fail "$label: the domain is not running on host $dst"
  ! lv "$src" list --all --name | grep -qx $DOM || fail "$label: the domain is still on host $src: $(lv "$src" domstate $DOM)"
  wait_beat "$dst" $((last + 3)) || fail "$label: no heartbeat on host $dst after $last"
  qemu_check_clean "$(console "$dst")" || fail "$label: the guest's memory differed"
  cmp -s "$W/$src/lib/images/disk.img" "$W/$dst/lib/images/disk.img" || fail "$label: the disk differs"
}
MIN_MIB=$((GUEST_MB * 7 / 8))  # the guest's non-zero pages alone

# 1: A -> B, single channel, disk via NBD through a passthrough bridge pair.
truncate -s 16M "$W/B/lib/images/disk.img"
bridges mig A B
bridges nbd A B --passthrough
virsh -c "$(lv_uri A)" migrate --live --copy-storage-all $DOM "$(lv_uri B)" \
  --migrateuri "unix://$MIGDIR/mig.sock" --disks-uri "unix://$MIGDIR/nbd.sock" \
  > "$W/A/virsh1.err" 2>&1 || fail "1: virsh migrate: $(cat "$W/A/virsh1.err")"
last=$(qemu_beat "$(console A)")
moved_ok "1 (single channel)" A B "$last"
bridged_ok "1 (memory)" mig A B $MIN_MIB
bridged_ok "1 (disk)" nbd A B 16
lvlog "ok: 1 A -> B single channel through the bridge: $(report "$W/B/mig.json" "r['guest_bytes'] >> 20") MiB of QEMU stream,\
 disk $(report "$W/B/nbd.json" "r['guest_bytes'] >> 20") MiB by NBD through a passthrough pair; heartbeat $last -> $(qemu_beat "$(console B)")"

# 2: B -> A, multifd 2 channels, peer-to-peer; the disk over libvirt's direct NBD.
rm -f "$W/A/lib/images/disk.img"; truncate -s 16M "$W/A/lib/images/disk.img"
bridges mig B A --queues 3
virsh -c "$(lv_uri B)" migrate --live --p2p --parallel --parallel-connections 2 --copy-storage-all $DOM "$(lv_uri A)" \
  --migrateuri "unix://$MIGDIR/mig.sock" --disks-uri "tcp://${IP[A]}:49153" \
  > "$W/B/virsh2.err" 2>&1 || fail "2: virsh migrate: $(cat "$W/B/virsh2.err")"
last=$(qemu_beat "$(console B)")
moved_ok "2 (multifd, p2p)" B A "$last"
bridged_ok "2 (multifd)" mig B A $MIN_MIB
report "$W/A/mig.json" "sum(c['mode'] == 'multifd' for c in r['channels']) == 2" >/dev/null ||
  fail "2: not both multifd channels were re-encoded: $(report "$W/A/mig.json" "[c['mode'] for c in r['channels']]")"
report "$W/A/mig.json" "sum(r['pages'].values()) * 4096 >= $MIN_MIB << 20" >/dev/null ||
  fail "2: too few pages re-encoded: $(report "$W/A/mig.json" "r['pages']")"
lvlog "ok: 2 B -> A multifd 2 channels, p2p: pages $(report "$W/A/mig.json" "r['pages']"),\
 $(report "$W/B/mig.json" "r['wire_bytes'] >> 20") MiB on the wire; heartbeat $last -> $(qemu_beat "$(console A)")"

# 3: the destination bridge cannot reach the destination QEMU: libvirt fails the migration and
# the domain runs on on A.
rm -f "$W/B/lib/images/disk.img"; truncate -s 16M "$W/B/lib/images/disk.img"
disk_before=$(sha256sum < "$W/A/lib/images/disk.img")
DEST_SOCK=nowhere bridges mig A B
if virsh -c "$(lv_uri A)" migrate --live --copy-storage-all $DOM "$(lv_uri B)" \
  --migrateuri "unix://$MIGDIR/mig.sock" --disks-uri "tcp://${IP[B]}:49153" > "$W/A/virsh3.err" 2>&1; then
  fail "3: the migration succeeded with the destination bridge aimed at no QEMU"
fi
[ "$(lv A domstate $DOM)" = running ] || fail "3: the domain is not running on host A after the failure"
! lv B list --all --name | grep -qx $DOM || fail "3: host B kept a domain after the failure"
b=$(qemu_beat "$(console A)")
wait_beat A $((b + 3)) || fail "3: the guest stopped on host A"
qemu_check_clean "$(console A)" || fail "3: the guest's memory changed on host A"
[ "$(sha256sum < "$W/A/lib/images/disk.img")" = "$disk_before" ] || fail "3: the disk on host A changed"
for i in $(seq 100); do [ -s "$W/A/mig.json" ] && break; sleep 0.1; done
report "$W/A/mig.json" "r['status'] == 'failed' and r['error']" >/dev/null || fail "3: the source bridge's report does not say it failed"
lvlog "ok: 3 refused, the domain runs on host A; libvirt: $(grep -m1 -o 'error: .*' "$W/A/virsh3.err");\
 bridge: $(report "$W/A/mig.json" "r['error']")"
# 4: the in-process library through <emulator>: the domain's emulator is a wrapper script that
# execs `ramshift qemu-exec`, as docs/libvirt.md tells a libvirt user to write it. libvirt probes
# the wrapper, starts the domain through it and migrates it multifd over its own tcp:// URI. No
# RDMA device holds these addresses, so both libraries fall back to plain TCP and their stats say
# why: this proves the wrapper under libvirt; pages by RDMA READ are the soft-RoCE VM's
# (softroce.inproc).
lv A destroy $DOM > /dev/null || fail "4: virsh destroy on host A"
cat > "$W/qemu-ramshift" <<EOF
#!/bin/sh
exec $RAMSHIFT qemu-exec --stats $MIGDIR/inproc-\$\$.json -- /usr/bin/qemu-system-x86_64 "\$@"
EOF
chmod +x "$W/qemu-ramshift"
sed "s|<emulator>.*</emulator>|<emulator>$W/qemu-ramshift</emulator>|" "$W/dom.xml" > "$W/dom-inproc.xml"
rm -f "$(console A).log" "$(console B).log"
lv A create "$W/dom-inproc.xml" > "$W/A/create4.err" 2>&1 || fail "4: virsh create with the wrapper: $(cat "$W/A/create4.err")"
wait_beat A 2 || fail "4: the guest did not boot through the wrapper on host A"
virsh -c "$(lv_uri A)" migrate --live --parallel --parallel-connections 2 --copy-storage-all $DOM "$(lv_uri B)" \
  --migrateuri "tcp://${IP[B]}" --disks-uri "tcp://${IP[B]}:49153" \
  > "$W/A/virsh4.err" 2>&1 || fail "4: virsh migrate: $(cat "$W/A/virsh4.err")"
last=$(qemu_beat "$(console A)")
moved_ok "4 (<emulator> wrapper)" A B "$last"
# inproc_stats H ROLE PATTERN: host H's QEMU that served ROLE loaded the library, saw both multifd
# channels and fell back to plain TCP for the reason PATTERN.
inproc_stats() {
  python3 - "$W/$1/lib/ramshift" "$2" "$3" <<'PY' || fail "4: host $1's library stats ($2)"
import glob, json, re, sys, time
folder, role, pattern = sys.argv[1:4]
for _ in range(50):  # QEMU writes its stats as its channels end
    found = [s for f in glob.glob(folder + "/inproc-*.json")
             for s in [json.load(open(f)).get(role)] if s and s["multifd_channels"] >= 2]
    if found and re.search(pattern, found[0]["fallback_reason"] or ""):
        break
    time.sleep(0.2)
assert found, "no stats file with a %s section and 2 multifd channels in %s" % (role, folder)
s = found[0]
assert s["mode"] == "tcp" and s["rdma_bytes"] == 0 and s["socket_bytes"] > 0, s
assert re.search(pattern, s["fallback_reason"] or ""), s["fallback_reason"]
print(s["fallback_reason"])
PY
}
inproc_stats A source "made no RDMA offer" > /dev/null
reason=$(inproc_stats B destination "no RDMA device serves ${IP[B]}") || fail "4: host B's library stats"
lvlog "ok: 4 A -> B through the <emulator> wrapper (ramshift qemu-exec), multifd 2: both libraries saw the two channels; plain TCP: \"$reason\"; heartbeat $last -> $(qemu_beat "$(console B)")"
lvlog "PASS"
