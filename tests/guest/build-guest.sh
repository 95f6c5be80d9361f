#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Build the Linux guest the guest tests boot under QEMU:
#
#   tests/guest/build-guest.sh OUTDIR
#
# writes OUTDIR/vmlinuz (a Debian 12 kernel) and OUTDIR/initrd.gz (busybox,
# tests/guest/init as /init, uio + uio_pci_generic, the kernel's nvme and
# ext4 drivers, and the test drivers of tests/guest/drivers/ built against the
# same kernel's headers). Everything comes from Debian packages fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` into OUTDIR: nothing is
# installed on the host. The host needs
# gcc-12 (Debian 12's gcc, the compiler the kernel was built with), make,
# libelf1 and zlib1g (for the kernel's objtool), gzip and apt.
#
# Idempotent: packages already fetched and unpacked are not fetched again; the
# drivers and the initramfs are rebuilt each run (seconds). KERNEL_ABI=6.1.0-N
# picks a kernel other than the newest the mirror offers.
set -euo pipefail

die() {
    echo "build-guest: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
debs="$out/debs"
root="$out/root"
mkdir -p "$debs" "$root"

for tool in apt-get apt-cache dpkg-deb make gcc-12 gzip; do
    command -v "$tool" >/dev/null ||
        die "'$tool' is missing (Debian packages: apt dpkg make gcc-12 gzip)"
done

# ---- pick the kernel ----------------------------------------------------------
# The newest 6.1.0-N ABI for which the mirror has the image and its headers.
# Cached in OUTDIR so reruns (and offline reruns) keep the kernel they built.
if [ -n "${KERNEL_ABI:-}" ]; then
    abi=$KERNEL_ABI
elif [ -s "$out/kernel-abi" ]; then
    abi=$(cat "$out/kernel-abi")
else
    abi=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64(-unsigned)?$' 2>/dev/null |
        sed -n 's/^linux-image-\(6\.1\.0-[0-9]*\)-amd64.*/\1/p' | sort -t- -k2 -n | tail -n1)
    [ -n "$abi" ] ||
        die "no linux-image-6.1.0-*-amd64 package known to apt: run 'apt-get update' (is the Debian mirror configured?)"
fi
echo "$abi" >"$out/kernel-abi"
kver="$abi-amd64"

image_pkg="linux-image-$kver-unsigned"
apt-cache show "$image_pkg" >/dev/null 2>&1 || image_pkg="linux-image-$kver"
pkgs=("$image_pkg" "linux-headers-$kver" "linux-headers-$abi-common" linux-kbuild-6.1 busybox-static)

# ---- fetch and unpack ---------------------------------------------------------
for p in "${pkgs[@]}"; do
    stamp="$debs/$p.unpacked"
    [ -e "$stamp" ] && continue
    rm -f "$debs/${p}"_*.deb
    if ! (cd "$debs" && apt-get download -q "$p" >"$debs/$p.log" 2>&1); then
        cat "$debs/$p.log" >&2
        die "cannot fetch $p with apt-get download: is the Debian mirror reachable (and 'apt-get update' run)?"
    fi
    deb=$(ls "$debs/${p}"_*.deb 2>/dev/null | head -n1)
    [ -n "$deb" ] || die "apt-get download $p left no .deb in $debs"
    echo "build-guest: unpacking $(basename "$deb")"
    dpkg-deb -x "$deb" "$root" || die "dpkg-deb -x $deb failed"
    touch "$stamp"
done

vmlinuz_src="$root/boot/vmlinuz-$kver"
moddir="$root/lib/modules/$kver"
kdir="$root/usr/src/linux-headers-$kver"
[ -f "$vmlinuz_src" ] || die "$image_pkg has no /boot/vmlinuz-$kver"
[ -d "$kdir" ] || die "linux-headers-$kver has no /usr/src/linux-headers-$kver"

# ---- make the unpacked headers usable where they are --------------------------
# The -amd64 headers' Makefile includes the -common tree by its absolute
# /usr/src path; point it at the unpacked copy. (scripts/ and tools/ are
# relative links into usr/lib/linux-kbuild-6.1 and work as unpacked.)
common="$root/usr/src/linux-headers-$abi-common"
[ -d "$common" ] || die "linux-headers-$abi-common has no /usr/src/linux-headers-$abi-common"
printf 'include %s/Makefile\n' "$common" >"$kdir/Makefile"
for l in scripts tools; do
    [ -e "$kdir/$l/" ] || die "$kdir/$l does not resolve: is linux-kbuild-6.1 unpacked in $root?"
done

# ---- the test drivers ---------------------------------------------------------
# kbuild writes its objects next to the sources (M=): build a copy in OUTDIR so
# the source tree stays clean.
drv_build="$out/drivers"
mkdir -p "$drv_build"
for f in "$here"/drivers/*; do
    cmp -s "$f" "$drv_build/$(basename "$f")" || cp "$f" "$drv_build/"
done
echo "build-guest: building guest drivers against $kver"
if ! make -s -C "$kdir" M="$drv_build" modules >"$drv_build/build.log" 2>&1; then
    cat "$drv_build/build.log" >&2
    die "building tests/guest/drivers against $kdir failed"
fi
grep -v -e 'Skipping BTF generation' -e '^$' "$drv_build/build.log" >&2 || true

# ---- the initramfs ------------------------------------------------------------
staging="$out/initramfs"
rm -rf "$staging"
mkdir -p "$staging"/{bin,dev,proc,sys,tmp,modules}
cp "$root/bin/busybox" "$staging/bin/busybox"
# Every applet as a link, so the image works before /init runs anything.
for a in $("$staging/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$staging/bin/$a"
done
ln -s bin "$staging/sbin"
install -m755 "$here/init" "$staging/init"
copy_module() {
    local src="$moddir/kernel/$1"
    if [ -f "$src" ]; then
        cp "$src" "$staging/modules/"
    elif [ -f "$src.xz" ]; then
        # busybox insmod may lack xz support: decompress here.
        xz -dc "$src.xz" >"$staging/modules/$(basename "$1")"
    else
        die "$image_pkg has no $1"
    fi
}
for m in drivers/uio/uio.ko drivers/uio/uio_pci_generic.ko; do
    copy_module "$m"
done
# The stock NVMe driver and ext4 (which mounts ext2), each after what it
# depends on (the package has no modules.dep: depmod runs at install).
# /init insmods them in the order of /modules/nvme.order.
nvme_modules=(crypto/crct10dif_common.ko crypto/crct10dif_generic.ko lib/crc-t10dif.ko
    lib/crc64.ko crypto/crc64_rocksoft_generic.ko lib/crc64-rocksoft.ko block/t10-pi.ko
    drivers/nvme/host/nvme-core.ko drivers/nvme/host/nvme.ko
    crypto/crc32c_generic.ko lib/crc16.ko fs/mbcache.ko fs/jbd2/jbd2.ko fs/ext4/ext4.ko)
: >"$staging/modules/nvme.order"
for m in "${nvme_modules[@]}"; do
    copy_module "$m"
    basename "$m" >>"$staging/modules/nvme.order"
done
cp "$drv_build"/*.ko "$staging/modules/"

# Deterministic order and owners; the host's busybox-built cpio needs no
# cpio package.
(cd "$staging" && find . -mindepth 1 | LC_ALL=C sort |
    "$root/bin/busybox" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -9n >"$out/initrd.gz.new"
mv "$out/initrd.gz.new" "$out/initrd.gz"
cp -u "$vmlinuz_src" "$out/vmlinuz"
echo "$out/vmlinuz"
echo "$out/initrd.gz"
