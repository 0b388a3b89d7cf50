#!/usr/bin/env bash
# Tests the kernel hook logic (image/rootfs/usr/lib/patchward/update-boot) on fake
# kernels in a temporary tree: install, upgrade, initrd rebuild, removal, a missing
# ESP. No root, no VM; image/build.sh runs it before building.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hook=$here/rootfs/usr/lib/patchward/update-boot
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
export PATCHWARD_ROOT=$t/root
fails=0 passes=0
ok() { echo "ok   $*"; passes=$((passes + 1)); }
bad() { echo "FAIL $*" >&2; fails=$((fails + 1)); }
check() { # DESCRIPTION COMMAND...
    local d=$1
    shift
    if "$@"; then ok "$d"; else bad "$d"; fi
}
kernel() { # VERSION [initrd-content]
    echo "kernel $1" >"$PATCHWARD_ROOT/boot/vmlinuz-$1"
    echo "${2:-initrd $1}" >"$PATCHWARD_ROOT/boot/initrd.img-$1"
}
esp=$PATCHWARD_ROOT/boot/efi
run() { "$hook" 2>"$t/log"; }

mkdir -p "$PATCHWARD_ROOT/boot" "$PATCHWARD_ROOT/etc/kernel"
echo "root=UUID=0000 ro quiet" >"$PATCHWARD_ROOT/etc/kernel/cmdline"
kernel 6.1.0-9-amd64

# 1. Without the ESP's loader/ and syslinux/ (not mounted): refuse, write nothing.
if run; then bad "refuses a directory that is not the ESP"; else ok "refuses a directory that is not the ESP"; fi
check "error names the ESP" grep -q "is not the EFI system partition" "$t/log"
mkdir -p "$esp/loader" "$esp/syslinux"

# 2. First kernel: current entry only, no previous.
run
check "first kernel copied" cmp -s "$esp/patchward/6.1.0-9-amd64/vmlinuz" "$PATCHWARD_ROOT/boot/vmlinuz-6.1.0-9-amd64"
check "syslinux default names it" grep -qx "  LINUX /patchward/6.1.0-9-amd64/vmlinuz" "$esp/syslinux/syslinux.cfg"
check "syslinux has the command line" grep -qx "  APPEND root=UUID=0000 ro quiet" "$esp/syslinux/syslinux.cfg"
check "no previous entry yet" test ! -e "$esp/loader/entries/patchward-previous.conf"
check "systemd-boot default entry" grep -qx "default patchward.conf" "$esp/loader/loader.conf"
check "maintenance entry boots rescue.target" grep -q "systemd.unit=rescue.target" "$esp/loader/entries/patchward-maintenance.conf"

# 3. Upgrade (6.1.0-10 sorts after 6.1.0-9 by version, not by text): 10 is current,
#    9 previous; a kernel without an initrd yet is ignored.
kernel 6.1.0-10-amd64
echo "no initrd" >"$PATCHWARD_ROOT/boot/vmlinuz-6.1.0-11-amd64"
run
check "upgrade: new kernel is the default (BIOS)" \
    grep -q "^  LINUX /patchward/6.1.0-10-amd64/vmlinuz" "$esp/syslinux/syslinux.cfg"
check "upgrade: new kernel is the default (UEFI)" \
    grep -qx "linux   /patchward/6.1.0-10-amd64/vmlinuz" "$esp/loader/entries/patchward.conf"
check "upgrade: previous entry names the old kernel" \
    grep -qx "linux   /patchward/6.1.0-9-amd64/vmlinuz" "$esp/loader/entries/patchward-previous.conf"
check "upgrade: syslinux previous label" grep -qx "LABEL previous" "$esp/syslinux/syslinux.cfg"
check "kernel without initrd ignored" test ! -e "$esp/patchward/6.1.0-11-amd64"
rm "$PATCHWARD_ROOT/boot/vmlinuz-6.1.0-11-amd64"

# 4. initramfs rebuilt for the current kernel: the ESP copy follows.
kernel 6.1.0-10-amd64 "initrd 6.1.0-10 rebuilt"
run
check "rebuilt initrd copied" grep -qx "initrd 6.1.0-10 rebuilt" "$esp/patchward/6.1.0-10-amd64/initrd.img"
check "no temporary files left" test -z "$(find "$esp" -name '*.new')"

# 5. A third kernel: the oldest leaves the ESP.
kernel 6.1.0-12-amd64
run
check "third kernel: oldest removed from the ESP" test ! -e "$esp/patchward/6.1.0-9-amd64"
check "third kernel: previous is 10" \
    grep -qx "linux   /patchward/6.1.0-10-amd64/vmlinuz" "$esp/loader/entries/patchward-previous.conf"

# 6. Removal of the newest (postrm): back to 10, with 9 as previous again.
rm "$PATCHWARD_ROOT/boot/vmlinuz-6.1.0-12-amd64" "$PATCHWARD_ROOT/boot/initrd.img-6.1.0-12-amd64"
run
check "removal: default back to 10" \
    grep -qx "linux   /patchward/6.1.0-10-amd64/vmlinuz" "$esp/loader/entries/patchward.conf"
check "removal: 12 gone from the ESP" test ! -e "$esp/patchward/6.1.0-12-amd64"
check "removal: 9 copied back as previous" test -f "$esp/patchward/6.1.0-9-amd64/initrd.img"

# 7. Only one kernel left: the previous entry disappears.
rm "$PATCHWARD_ROOT/boot/vmlinuz-6.1.0-9-amd64" "$PATCHWARD_ROOT/boot/initrd.img-6.1.0-9-amd64"
run
check "single kernel: no previous entry" test ! -e "$esp/loader/entries/patchward-previous.conf"
check "single kernel: no previous syslinux label" bash -c "! grep -q '^LABEL previous' '$esp/syslinux/syslinux.cfg'"

# 8. No kernel at all: refuse (the entries stay as they were).
rm "$PATCHWARD_ROOT"/boot/vmlinuz-* "$PATCHWARD_ROOT"/boot/initrd.img-*
if run; then bad "no kernel: refused"; else ok "no kernel: refused"; fi
check "no kernel: entries untouched" grep -q 6.1.0-10-amd64 "$esp/loader/entries/patchward.conf"

echo "update-boot: $passes passed, $fails failed"
((fails == 0))
