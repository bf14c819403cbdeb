# Sourced by tests/qemu/lib.sh: a newer stock QEMU than Debian 12's 7.2, from Debian's own
# backports of the host's release (bookworm-backports had 10.0 at the time of writing), for
# testing the bridge against the multifd layout QEMU 9.0 introduced. Nothing is installed: apt, with a private sources list
# and state under $RAMSHIFT_CACHE (default ~/.cache/ramshift), checks the archive's signature
# with the system's Debian keyring and downloads the packages, which are unpacked there.
# backports_qemu sets QEMU_NEWER_BIN: a wrapper that runs the unpacked QEMU with its own
# firmware and modules, and QEMU_NEWER_VERSION. Returns 77 ("cannot run here") when the
# host is not Debian, or the packages cannot be had or do not run here. The cache holds the
# version first fetched for the release; remove its folder to fetch the current one.
backports_qemu() {
  local cache=${RAMSHIFT_CACHE:-$HOME/.cache/ramshift} dir codename
  codename=$(. /etc/os-release 2>/dev/null && [ "${ID:-}" = debian ] && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || { echo "not a Debian host: no Debian backports to fetch QEMU from" >&2; return 77; }
  dir=$cache/qemu-$codename-backports
  QEMU_NEWER_BIN=$dir/bin/qemu-system-x86_64
  if [ ! -x "$QEMU_NEWER_BIN" ]; then
    backports_qemu_fetch "$cache" "$dir" "$codename" || return $?
  fi
  local out
  if ! out=$("$QEMU_NEWER_BIN" --version 2>&1); then
    echo "the QEMU in $dir does not run here: $out" >&2; return 77
  fi
  QEMU_NEWER_VERSION=${out%%$'\n'*}
  echo "newer QEMU: $QEMU_NEWER_VERSION ($dir)" >&2
}

backports_qemu_fetch() {  # CACHE DIR CODENAME
  local cache=$1 dir=$2 codename=$3 tmp apt
  echo "fetching qemu-system-x86 from $codename-backports into $dir (once)" >&2
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/bpo.XXXXXX")
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $codename-backports main" \
    > "$tmp/sources.list"
  apt=(-q -o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/nonexistent
       -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o APT::Sandbox::User=root)
  if ! apt-get "${apt[@]}" update > "$tmp/apt.log" 2>&1 ||
     ! (cd "$tmp/debs" && apt-get "${apt[@]}" download qemu-system-x86 qemu-system-data seabios \
          >> "$tmp/apt.log" 2>&1); then
    echo "cannot fetch QEMU from $codename-backports:" >&2; tail -3 "$tmp/apt.log" >&2
    rm -rf "$tmp"; return 77
  fi
  mkdir -p "$tmp/root" "$tmp/bin"
  local d; for d in "$tmp"/debs/*.deb; do dpkg-deb -x "$d" "$tmp/root" || { rm -rf "$tmp"; return 77; }; done
  # The unpacked QEMU would look for firmware and modules in the system's (7.2's) places.
  cat > "$tmp/bin/qemu-system-x86_64" <<EOF
#!/bin/sh
export QEMU_MODULE_DIR=$dir/root/usr/lib/x86_64-linux-gnu/qemu
exec $dir/root/usr/bin/qemu-system-x86_64 -L $dir/root/usr/share/qemu -L $dir/root/usr/share/seabios "\$@"
EOF
  chmod +x "$tmp/bin/qemu-system-x86_64"
  rm -rf "$tmp/lists" "$tmp/cache" "$tmp/debs"
  rm -rf "$dir" && mv "$tmp" "$dir"
}
