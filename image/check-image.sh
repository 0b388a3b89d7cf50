#!/usr/bin/env bash
# Checks that an appliance image carries no secrets and no identity before its first
# boot: every machine makes its own.
#
#   image/check-image.sh IMAGE.qcow2            the built disk: reads the GPT, copies the
#                                               root (debugfs rdump) and the ESP (mtools)
#                                               out of it, then checks both trees
#   image/check-image.sh --tree ROOT [ESP]      a root tree (and ESP tree) directly
#
# Checked:
#   - /var/lib/patchward is absent or empty (no database, keys, TLS certificate);
#   - no private key anywhere (PEM, OpenSSH or OpenPGP private key markers in text
#     files), no *.pem or *.key outside the public CA certificate directories, no SSH
#     host keys;
#   - no password in /etc/shadow or /etc/gshadow: every entry locked ("*" or "!"),
#     root's included;
#   - no machine identity: /etc/machine-id empty or "uninitialized", no
#     /var/lib/dbus/machine-id file, no systemd random seed or credential secret.
# Needs: python3, qemu-img, debugfs (e2fsprogs), mtools.
set -euo pipefail

# extract IMAGE.qcow2 OFFSET_MIB SIZE_MIB OUT: a byte range of the disk as a raw file.
# (Not "qemu-img dd": in QEMU 7.2 its count= includes the skipped blocks.)
extract() {
    qemu-img convert -O raw --image-opts \
        "driver=raw,offset=$(($2 * 1048576)),size=$(($3 * 1048576)),file.driver=qcow2,file.file.driver=file,file.file.filename=$1" "$4"
}

fails=0
passes=0
ok() { passes=$((passes + 1)); }
bad() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

check_tree() { # ROOT [ESP]
    local r=$1 esp=${2:-} f line
    if [[ -d $r/var/lib/patchward ]] && [[ -n $(ls -A "$r/var/lib/patchward") ]]; then
        bad "/var/lib/patchward is not empty: $(ls -A "$r/var/lib/patchward" | tr '\n' ' ')"
    else ok; fi

    local markers='-----BEGIN ([A-Z0-9]+ )?PRIVATE KEY-----|-----BEGIN OPENSSH PRIVATE KEY-----|-----BEGIN PGP PRIVATE KEY BLOCK-----'
    local found
    found=$(grep -rlIE -- "$markers" "$r" ${esp:+"$esp"} 2>/dev/null || true)
    if [[ -n $found ]]; then bad "private key material in: $found"; else ok; fi

    found=$(find "$r" ${esp:+"$esp"} \( -path "$r/etc/ssl/certs" -o -path "$r/usr/share/ca-certificates" \) -prune \
        -o -type f \( -name '*.pem' -o -name '*.key' -o -name 'ssh_host_*' -o -name '*.ed25519' -o -name '*.pgp' \) -print)
    if [[ -n $found ]]; then bad "key or certificate files: $found"; else ok; fi

    for f in etc/shadow etc/gshadow; do
        [[ -f $r/$f ]] || { bad "$f missing"; continue; }
        # Field 2 must be a lock: "*", "!", "!*", "!!" (never empty, never a hash).
        found=$(awk -F: '$2 !~ /^(\*|!|!\*|!!)$/ { print $1 }' "$r/$f")
        if [[ -n $found ]]; then bad "$f: entries with a password or none at all: $found"; else ok; fi
    done
    line=$(grep '^root:' "$r/etc/shadow" || true)
    if [[ $line =~ ^root:(\*|!)[^:]*: ]]; then ok; else bad "root is not locked in /etc/shadow"; fi

    f=$(cat "$r/etc/machine-id" 2>/dev/null || true)
    if [[ -z $f || $f == uninitialized ]]; then ok; else bad "/etc/machine-id is set ($f)"; fi
    for f in var/lib/dbus/machine-id var/lib/systemd/random-seed var/lib/systemd/credential.secret; do
        if [[ -f $r/$f && ! -L $r/$f ]]; then bad "/$f exists"; else ok; fi
    done
}

if [[ ${1:-} == --tree ]]; then
    [[ -d ${2:-} ]] || { echo "usage: $0 --tree ROOT [ESP]" >&2; exit 2; }
    check_tree "$2" "${3:-}"
    what="tree $2"
else
    img=${1:?usage: $0 IMAGE.qcow2 | --tree ROOT [ESP]}
    t=$(mktemp -d /var/tmp/patchward-check.XXXXXX)
    trap 'rm -rf "$t"' EXIT
    extract "$img" 0 1 "$t/head.raw"
    # GPT: partition start and size (in MiB) of the ESP and the Linux root (x86-64).
    read -r esp_start esp_size root_start root_size < <(python3 - "$t/head.raw" <<'EOF'
import struct, sys, uuid
d = open(sys.argv[1], "rb").read()
hdr = d[512:512 + 92]
assert hdr[:8] == b"EFI PART", "no GPT header"
lba, n, size = struct.unpack_from("<QII", hdr, 72)
esp = root = None
for i in range(n):
    e = d[lba * 512 + i * size: lba * 512 + (i + 1) * size]
    t = str(uuid.UUID(bytes_le=e[:16]))
    first, last = struct.unpack_from("<QQ", e, 32)
    if t == "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": esp = (first, last)
    if t == "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": root = (first, last)
assert esp and root, "ESP or root partition missing"
mib = lambda p: (p[0] // 2048, (p[1] - p[0] + 1) // 2048)
print(*mib(esp), *mib(root))
EOF
    )
    extract "$img" "$esp_start" "$esp_size" "$t/esp.raw"
    extract "$img" "$root_start" "$root_size" "$t/root.raw"
    mkdir "$t/root" "$t/esp"
    debugfs -R "rdump / $t/root" "$t/root.raw" 2>"$t/debugfs.log" ||
        { cat "$t/debugfs.log" >&2; exit 1; }
    # debugfs exits 0 after errors on single files: anything but its banner is one.
    if grep -v '^debugfs [0-9]' "$t/debugfs.log" | grep -q .; then
        bad "debugfs could not copy the whole root: $(head -n3 "$t/debugfs.log" | tr '\n' ' ')"
    fi
    rm "$t/root.raw"
    MTOOLS_SKIP_CHECK=1 mcopy -s -n -i "$t/esp.raw" ::/ "$t/esp/"
    [[ -x $t/root/usr/bin/patchward ]] || bad "the image's root has no /usr/bin/patchward (wrong partition?)"
    [[ -f $t/esp/EFI/BOOT/BOOTX64.EFI ]] || bad "the ESP has no EFI/BOOT/BOOTX64.EFI"
    [[ -f $t/esp/syslinux/ldlinux.sys ]] || bad "the ESP has no syslinux/ldlinux.sys"
    check_tree "$t/root" "$t/esp"
    what=$(basename "$img")
fi
echo "image secrets check ($what): $passes passed, $fails failed"
((fails == 0))
