#!/usr/bin/env bash
# Compares two builds of the appliance image file by file: are rebuilds comparable?
#
#   image/diff-images.sh A.qcow2 B.qcow2
#
# Copies the root file system (debugfs rdump) and the ESP (mtools) out of each image
# and lists every path whose type, mode, owner, size, content (sha256) or link target
# differs, then prints "N files differ of M". Times are not compared: mtools and
# debugfs set them when copying out. Needs python3, qemu-img, debugfs, mtools; run as
# root (to keep owners).
set -euo pipefail
a=${1:?usage: $0 A.qcow2 B.qcow2}
b=${2:?usage: $0 A.qcow2 B.qcow2}
t=$(mktemp -d /var/tmp/patchward-diff.XXXXXX)
trap 'rm -rf "$t"' EXIT

extract() { # IMAGE OFFSET_MIB SIZE_MIB OUT
    qemu-img convert -O raw --image-opts \
        "driver=raw,offset=$(($2 * 1048576)),size=$(($3 * 1048576)),file.driver=qcow2,file.file.driver=file,file.file.filename=$1" "$4"
}

unpack() { # IMAGE DIR
    local img=$1 d=$2 es esz rs rsize
    mkdir -p "$d/root" "$d/esp"
    extract "$img" 0 1 "$d/head.raw"
    read -r es esz rs rsize < <(python3 - "$d/head.raw" <<'EOF'
import struct, sys, uuid
d = open(sys.argv[1], "rb").read()
lba, n, size = struct.unpack_from("<QII", d, 512 + 72)
parts = {}
for i in range(n):
    e = d[lba * 512 + i * size: lba * 512 + (i + 1) * size]
    first, last = struct.unpack_from("<QQ", e, 32)
    parts[str(uuid.UUID(bytes_le=e[:16]))] = (first // 2048, (last - first + 1) // 2048)
print(*parts["c12a7328-f81f-11d2-ba4b-00a0c93ec93b"], *parts["4f68bce3-e8cd-4db1-96e7-fbcaf984b709"])
EOF
    )
    extract "$img" "$es" "$esz" "$d/esp.raw"
    extract "$img" "$rs" "$rsize" "$d/root.raw"
    debugfs -R "rdump / $d/root" "$d/root.raw" 2>/dev/null
    MTOOLS_SKIP_CHECK=1 mcopy -s -n -i "$d/esp.raw" ::/ "$d/esp/"
    rm "$d/root.raw" "$d/esp.raw"
    # One line per path: type mode owner size sha256-or-link-target.
    (cd "$d" && find root esp -mindepth 1 -printf '%y %m %u:%g %s [%l] %p\n' | sort -k6 |
        while read -r type mode owner size link path; do
            if [[ $type == f ]]; then
                echo "$path $type $mode $owner $size $(sha256sum <"$path" | cut -c1-16)"
            else
                echo "$path $type $mode $owner $link"
            fi
        done) >"$d.list"
}

unpack "$a" "$t/a"
unpack "$b" "$t/b"
diff "$t/a.list" "$t/b.list" | sed -n 's/^[<>] //p' | awk '{ print $1 }' | sort -u >"$t/differ" || true
sed 's/^/differs: /' "$t/differ"
echo "image diff: $(wc -l <"$t/differ") paths differ of $(wc -l <"$t/a.list")"
