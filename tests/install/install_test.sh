#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then use what was installed as a user would:
# the binary, pkg-config, the C example compiled and linked against the installed header and
# library only (by pkg-config and by find_package), run; the man page, bash completion, and
# a library that exports nothing but the C API.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
work=$(mktemp -d /tmp/ramshift-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >"$work/install.log" || {
  cat "$work/install.log"; fail "cmake --install"; }

libdir=$(dirname "$(find "$prefix" -name 'libramshift.so' | head -1)")
[[ -d $libdir ]] || fail "no libramshift.so under $prefix"
for f in bin/ramshift include/ramshift/ramshift.h share/man/man1/ramshift.1 \
         share/bash-completion/completions/ramshift; do
  [[ -e $prefix/$f ]] || fail "$f is not installed"
done
for f in libramshift.so.0 cmake/ramshift/ramshiftConfig.cmake \
         cmake/ramshift/ramshiftConfigVersion.cmake pkgconfig/ramshift.pc; do
  [[ -e $libdir/$f ]] || fail "${libdir#$prefix/}/$f is not installed"
done
# The daemons' units, their ExecStart naming the binary just installed.
for u in ramshift-receive@.service ramshift-bridge@.service; do
  grep -q "^ExecStart=$prefix/bin/ramshift " "$prefix/lib/systemd/system/$u" ||
    fail "lib/systemd/system/$u is missing or its ExecStart does not name $prefix/bin/ramshift"
done
version=$("$prefix/bin/ramshift" --version)
[[ $version == "ramshift "* ]] || fail "installed ramshift --version says '$version'"

# Only the C API leaves the library (no C++ or fmt symbols an application could clash with).
leaked=$(nm -D --defined-only "$libdir/libramshift.so" | awk '{print $3}' |
         grep -v -e '^ramshift_' -e '^RAMSHIFT_' || true)
[[ -z $leaked ]] || fail "libramshift exports more than the C API: $(head -3 <<<"$leaked")"

# pkg-config, as a C project would use it.
export PKG_CONFIG_PATH=$libdir/pkgconfig
flags=$(pkg-config --cflags --libs ramshift) || fail "pkg-config --cflags --libs ramshift"
[[ $flags == *"-I$prefix/include"* && $flags == *-lramshift* ]] ||
  fail "pkg-config gives '$flags'"
[[ $(pkg-config --modversion ramshift) == "${version#ramshift }" ]] || fail "pkg-config version"
cc -std=c11 -Wall -Wextra -Werror "$src/examples/c/migrate_self.c" $flags -lpthread \
   -Wl,-rpath,"$libdir" -o "$work/migrate_self" || fail "the C example does not build"
grep -q "$libdir/libramshift.so.0" <<<"$(ldd "$work/migrate_self")" ||
  fail "the example is not linked to the installed library"
"$work/migrate_self" 32 || fail "the C example built by pkg-config did not migrate"

# find_package(ramshift), as a CMake project would use it.
mkdir -p "$work/consumer"
cat >"$work/consumer/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(consumer C)
find_package(ramshift 0.1 REQUIRED)
find_package(Threads REQUIRED)
add_executable(migrate_self "$src/examples/c/migrate_self.c")
target_link_libraries(migrate_self PRIVATE ramshift::ramshift Threads::Threads)
CMAKE
cmake -S "$work/consumer" -B "$work/consumer/build" -DCMAKE_PREFIX_PATH="$prefix" \
  >"$work/consumer.log" 2>&1 || { cat "$work/consumer.log"; fail "find_package(ramshift)"; }
cmake --build "$work/consumer/build" >>"$work/consumer.log" 2>&1 ||
  { cat "$work/consumer.log"; fail "the CMake consumer does not build"; }
"$work/consumer/build/migrate_self" 16 || fail "the C example built by CMake did not migrate"

# The man page: valid roff with a section for every command the binary lists.
man=$prefix/share/man/man1/ramshift.1
grep -q '^\.TH RAMSHIFT 1' "$man" || fail "man page has no .TH"
for cmd in $("$prefix/bin/ramshift" --help | sed -n '/^Subcommands:/,$s/^  \([a-z][a-z0-9-]*\).*/\1/p'); do
  grep -q "^\.SS \"ramshift $cmd\"" "$man" || fail "man page lacks the $cmd command"
done
if command -v groff >/dev/null; then
  warnings=$(groff -man -Tutf8 -ww -z "$man" 2>&1)
  [[ -z $warnings ]] || fail "groff warns about the man page: $warnings"
fi

# Bash completion: commands, then a command's flags.
complete_words() {
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _ramshift
           printf "%s\n" "${COMPREPLY[@]}"' _ "$prefix/share/bash-completion/completions/ramshift" \
    "$prefix/bin/ramshift" "$@"
}
grep -qx send <<<"$(complete_words se)" || fail "completion does not offer send"
grep -qx -- --queues <<<"$(complete_words send --que)" || fail "completion does not offer send --queues"
grep -qx source <<<"$(complete_words qemu-bridge sou)" ||
  ! "$prefix/bin/ramshift" qemu-bridge --help >/dev/null 2>&1 ||
  fail "completion does not offer qemu-bridge source"
echo "install test passed ($prefix)"
