#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Install muserd as a packager and an admin would, and check the result:
#
#   tests/install/test-install.sh
#
# 1. `make install PREFIX=P DESTDIR=D` (a prefix other than the default, in a
#    build directory of its own) and every file the Makefile promises
#    (`make install-manifest`) is in D with its mode;
# 2. the unit's ExecStart, the daemon's default plugin directory (--help),
#    muserctl's and the .pc's paths agree with P;
# 3. the README's example plugin builds against the staged headers with
#    `pkg-config --cflags muserd-plugin` alone;
# 4. the staged tree, put in place at P as a package manager would, passes
#    `systemd-analyze verify`, and its muserd loads the dropped-in plugin from
#    its default plugin directory and serves it (muserctl probe sees it);
# 5. `make uninstall` takes every file away again.
#
# Run from the top of the source tree (make check does). Prints one line a
# check and `install: N passed, N failed`; exits 1 when any failed.
set -uo pipefail

top=$(pwd)
build=${INSTALL_TEST_BUILD:-build/install-test}
tmp=$(mktemp -d /tmp/muserd-install.XXXXXX)
prefix="$tmp/prefix"
stage="$tmp/stage"
daemon_pid=
passed=0
failed=0

cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

pass() {
    echo "PASS $1"
    passed=$((passed + 1))
}
fail() {
    echo "FAIL $1"
    shift
    for line in "$@"; do echo "    $line"; done
    failed=$((failed + 1))
}
finish() {
    echo "install: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

# Our own make, not one that inherits a calling make's command-line variables.
mk() {
    env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS \
        make --no-print-directory -s BUILD="$build" PREFIX="$prefix" DESTDIR="$stage" "$@"
}

# ---- 1. the staged tree ---------------------------------------------------------
if ! out=$(mk install 2>&1); then
    fail "make install PREFIX=$prefix DESTDIR=$stage" "$out"
    finish
fi
pass "make install PREFIX=$prefix DESTDIR=$stage"

manifest=$(mk install-manifest)
nfiles=0
bad=()
while read -r mode dest; do
    nfiles=$((nfiles + 1))
    f="$stage$dest"
    if [ ! -f "$f" ]; then
        bad+=("missing: $dest")
    elif [ "$(stat -c %a "$f")" != "$mode" ]; then
        bad+=("$dest has mode $(stat -c %a "$f"), want $mode")
    fi
done <<<"$manifest"
if [ ${#bad[@]} -eq 0 ] && [ "$nfiles" -gt 20 ]; then
    pass "all $nfiles promised files installed with their modes"
else
    fail "installed files ($nfiles promised)" "${bad[@]}"
fi
extra=$(cd "$stage" && find . -type f | sed 's|^\.||' | sort |
    comm -23 - <(awk '{print $2}' <<<"$manifest" | sort))
if [ -z "$extra" ]; then
    pass "nothing installed that the manifest does not list"
else
    fail "files installed outside the manifest" $extra
fi

# ---- 2. paths agree with the prefix ----------------------------------------------
unit="$stage$prefix/lib/systemd/system/muserd.service"
if grep -qx "ExecStart=$prefix/sbin/muserd --user-name muserd" "$unit"; then
    pass "muserd.service runs $prefix/sbin/muserd"
else
    fail "muserd.service ExecStart" "$(grep ExecStart "$unit")"
fi
socket_unit="$stage$prefix/lib/systemd/system/muserd-device@.socket"
if grep -qx "ListenStream=/run/muserd/%i.sock" "$socket_unit"; then
    pass "muserd-device@.socket listens in the runtime directory"
else
    fail "muserd-device@.socket ListenStream" "$(grep ListenStream "$socket_unit")"
fi
help=$("$stage$prefix/sbin/muserd" --help)
if grep -q "(default $prefix/lib/muserd/plugins)" <<<"$help"; then
    pass "muserd's default plugin directory is $prefix/lib/muserd/plugins"
else
    fail "muserd --help plugin directory" "$(grep plugin-dir <<<"$help")"
fi
export PKG_CONFIG_PATH="$stage$prefix/lib/pkgconfig"
pc_prefix=$(pkg-config --variable=prefix muserd-plugin)
pc_plugindir=$(pkg-config --variable=plugindir muserd-plugin)
if [ "$pc_prefix" = "$prefix" ] && [ "$pc_plugindir" = "$prefix/lib/muserd/plugins" ]; then
    pass "muserd-plugin.pc: prefix and plugindir under $prefix"
else
    fail "muserd-plugin.pc" "prefix=$pc_prefix plugindir=$pc_plugindir"
fi

# ---- 3. an out-of-tree plugin against the staged headers ---------------------------
# The README's example, as a plugin author copies it.
sed -n '/^## Writing a plugin/,/^## /p' "$top/README.md" | sed -n '/^```c$/,/^```$/p' |
    sed '1d;$d' >"$tmp/mydev.c"
cflags=$(PKG_CONFIG_SYSROOT_DIR="$stage" pkg-config --cflags muserd-plugin)
if [ ! -s "$tmp/mydev.c" ]; then
    fail "the README has no C example under 'Writing a plugin'"
elif out=$(cd "$tmp" && cc -shared -fPIC -fvisibility=hidden -Wall -Werror $cflags mydev.c \
    -o mydev.so 2>&1); then
    pass "the README's plugin builds with 'pkg-config --cflags muserd-plugin' ($cflags)"
else
    fail "building the README's plugin with $cflags" "$out"
fi

# ---- 4. unpacked in place: the unit verifies, the plugin is loaded ----------------
mkdir -p "$prefix" && cp -a "$stage$prefix/." "$prefix/"
if out=$(systemd-analyze verify --man=no "$prefix/lib/systemd/system/muserd.service" 2>&1) &&
    [ -z "$out" ]; then
    pass "systemd-analyze verify muserd.service"
else
    fail "systemd-analyze verify muserd.service" "$out"
fi
# An instance of the socket template, with the service it starts beside it.
mkdir -p "$tmp/units"
cp "$prefix/lib/systemd/system/muserd.service" "$tmp/units/"
cp "$prefix/lib/systemd/system/muserd-device@.socket" "$tmp/units/muserd-device@vm1.socket"
if out=$(systemd-analyze verify --man=no "$tmp/units/muserd-device@vm1.socket" \
    "$tmp/units/muserd.service" 2>&1) && [ -z "$out" ]; then
    pass "systemd-analyze verify muserd-device@vm1.socket"
else
    fail "systemd-analyze verify muserd-device@vm1.socket" "$out"
fi

cp "$tmp/mydev.so" "$pc_plugindir/" 2>/dev/null
user_args=()
[ "$(id -u)" = 0 ] && user_args=(--user-name root)
"$prefix/sbin/muserd" --no-bus --runtime-dir "$tmp/run" --log-level debug "${user_args[@]}" \
    --device mydev:d0 >"$tmp/muserd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do
    [ -S "$tmp/run/d0.sock" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
done
probe=$("$prefix/bin/muserctl" probe "$tmp/run/d0.sock" 2>&1)
if grep -q "Loaded plugin $pc_plugindir/mydev.so" "$tmp/muserd.log" &&
    grep -q '\[4d55:1234\]' <<<"$probe"; then
    pass "the installed muserd loads a dropped-in plugin from $pc_plugindir and serves it"
else
    fail "dropped-in plugin" "muserd said:" "$(cat "$tmp/muserd.log")" "muserctl probe said:" "$probe"
fi
kill -TERM "$daemon_pid" 2>/dev/null
if wait "$daemon_pid"; then
    pass "the installed muserd exits cleanly on SIGTERM"
else
    fail "the installed muserd's exit status on SIGTERM" "$(tail -5 "$tmp/muserd.log")"
fi
daemon_pid=

# ---- 5. uninstall ---------------------------------------------------------------
mk uninstall >/dev/null
left=$(cd "$stage" && find . -type f)
if [ -z "$left" ]; then
    pass "make uninstall removes every installed file"
else
    fail "make uninstall left files" $left
fi
if [ ! -e "$stage$prefix/lib/muserd" ] && [ ! -e "$stage$prefix/include/muserd" ]; then
    pass "make uninstall removes muserd's own directories"
else
    fail "make uninstall left muserd's directories" "$(cd "$stage" && find . -path '*muserd*' -type d)"
fi
finish
