#!/usr/bin/env bash
# Builds the .deb with `cpack -G DEB` from a build directory, checks its Depends (made by
# dpkg-shlibdeps) name the libraries the programs really link, installs it with dpkg, runs
# `ramshift doctor` from /usr/bin and purges it again (dpkg -P), even on failure.
# Installing touches the host (/usr/bin/ramshift, /usr/lib/libramshift.so.*): done only as
# root and only when no ramshift package is installed already; otherwise the package is
# unpacked with `dpkg -x` into a temporary folder and run from there (the message says so).
# Usage: deb_test.sh BUILD_DIR      (exit 77: skipped, no dpkg-deb on this host)
set -euo pipefail
build=$(cd "$1" && pwd)
command -v dpkg-deb >/dev/null && command -v dpkg-shlibdeps >/dev/null ||
  { echo "SKIP: dpkg-deb/dpkg-shlibdeps missing (package dpkg-dev)"; exit 77; }
work=$(mktemp -d /tmp/ramshift-deb.XXXXXX)
installed=0
cleanup() {
  if [[ $installed == 1 ]]; then dpkg -P ramshift >/dev/null 2>&1 || echo "WARN: dpkg -P ramshift failed" >&2; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out" >"$work/cpack.log" 2>&1) ||
  { cat "$work/cpack.log"; fail "cpack -G DEB"; }
deb=$(ls "$work"/out/ramshift_*.deb 2>/dev/null | head -1)
[[ -f $deb ]] || { cat "$work/cpack.log"; fail "no .deb made"; }
echo "built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"

# Contents: what cmake --install lays out, under /usr.
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/ramshift ./usr/include/ramshift/ramshift.h ./usr/share/man/man1/ramshift.1 \
         ./usr/share/bash-completion/completions/ramshift; do
  grep -qx "$f" <<<"$contents" || fail "the package lacks $f"
done
grep -q '/libramshift\.so\.0' <<<"$contents" || fail "the package lacks libramshift.so.0"
grep -q '/pkgconfig/ramshift\.pc$' <<<"$contents" || fail "the package lacks ramshift.pc"
for u in ramshift-receive@.service ramshift-bridge@.service; do
  grep -qx "./usr/lib/systemd/system/$u" <<<"$contents" || fail "the package lacks the unit $u"
done

# Depends: one entry for every library package the binary links (by dpkg-shlibdeps), each
# installed here, so the package installs on a host like this one.
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for lib in libc6 libstdc++6 libzstd1; do
  grep -q "\b$lib\b" <<<"$depends" || fail "Depends lacks $lib"
done

unpacked=$work/root
status=$(dpkg-query -W -f='${Status}' ramshift 2>/dev/null || true)
if [[ $(id -u) == 0 && $status != *" installed" ]]; then
  # dpkg refuses (rather than waits) while another dpkg/apt holds its lock: retry a while.
  for try in $(seq 1 30); do
    if dpkg -i "$deb" >"$work/dpkg.log" 2>&1; then installed=1; break; fi
    grep -q "lock" "$work/dpkg.log" || { cat "$work/dpkg.log"; dpkg -P ramshift >/dev/null 2>&1 || true; fail "dpkg -i"; }
    sleep 2
  done
  [[ $installed == 1 ]] || fail "dpkg stayed locked for a minute"
  bin=/usr/bin/ramshift
  [[ $(dpkg-query -W -f='${Status}' ramshift) == "install ok installed" ]] || fail "not installed"
  # The library is found by the loader like any system library.
  grep -q 'libramshift\.so\.0 ' <<<"$(ldconfig -p)" || fail "ldconfig does not know libramshift.so.0"
else
  echo "NOTE: not installing into this host (not root, or a ramshift package is installed); running from dpkg -x"
  dpkg -x "$deb" "$unpacked"
  bin=$unpacked/usr/bin/ramshift
  export LD_LIBRARY_PATH=$(dirname "$(find "$unpacked" -name 'libramshift.so.0' | head -1)")
fi

[[ $("$bin" --version) == "ramshift "* ]] || fail "$bin --version"
# doctor checks the host; exit 0 or 1 are both a finished check (1: something to fix, e.g.
# no RDMA device); anything else means it did not run.
set +e
"$bin" doctor >"$work/doctor.out" 2>&1
rc=$?
set -e
cat "$work/doctor.out"
[[ $rc == 0 || $rc == 1 ]] || fail "ramshift doctor exited $rc"
checks=$(grep -cE '^(ok|warn|fail|skip) ' "$work/doctor.out" || true)
[[ $checks -ge 3 ]] || fail "doctor printed $checks checks"
if [[ $installed == 1 ]]; then
  dpkg -P ramshift >/dev/null || fail "dpkg -P ramshift"
  installed=0
  [[ ! -e /usr/bin/ramshift ]] || fail "/usr/bin/ramshift left behind after dpkg -P"
  echo "installed with dpkg -i, ran doctor, purged with dpkg -P"
fi
echo "deb test passed"
