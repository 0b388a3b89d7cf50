#!/usr/bin/env bash
# Boots the built appliance image under QEMU (software emulation, TCG) and checks it
# the way an operator would meet it.
#
#   image/smoke-test.sh [IMAGE.qcow2]      (default: the newest image/out/*.qcow2)
#
# Each mode boots a throw-away overlay (a qcow2 with the image as its backing file, so
# every boot is a first boot and the image is never written):
#   bios  i440fx + SeaBIOS, virtio disk and NIC   (syslinux via gptmbr.bin)
#   uefi  q35 + OVMF, virtio disk and NIC         (systemd-boot as BOOTX64.EFI)
#   sata  q35 + SeaBIOS, SATA (AHCI) disk, e1000e NIC (VMware/Hyper-V-like hardware)
#   rescue  the maintenance boot entry (kernel, initrd and options from the ESP, started
#         directly): sulogin gives a root shell although root is locked, and
#         /usr/lib/patchward/update-boot runs there against the automounted ESP
# and checks: /healthz through a forwarded port (user-mode networking, 127.0.0.1 only,
# restrict=on: the guest reaches nothing outside); the HTTPS admin page when the
# binary has `patchward init`; the console banner on the serial line; the clock
# warning (nothing to synchronise with: patchward_clock_synchronized 0); then power-off
# through QMP (ACPI), which must finish in time; then, on the overlay, that the root
# partition and its ext4 grew to the whole disk.
# The disk is first in the boot order (bootindex=0), as README "Install as a VM" has
# the operator set it: otherwise OVMF first tries the q35 machine's empty DVD drive,
# which costs about a second.
# Prints per mode: time to healthy and to power off; for the first mode also qemu's
# RSS and the guest's memory use (virtio balloon statistics over QMP).
#
# Environment: PATCHWARD_SMOKE_MODES (default "bios uefi sata rescue"),
# PATCHWARD_SMOKE_TIMEOUT (seconds to healthy, default 300), PATCHWARD_SMOKE_MEM
# (MiB, default 1024), PATCHWARD_SMOKE_LOGS (where serial logs are kept, default
# image/out/smoke).
# KVM is never used: accel=tcg is forced (this kind of machine has /dev/kvm without
# hardware virtualisation, where KVM hangs). CPU model "max": "qemu64" took about 20%
# less CPU time to healthy (42 vs 52 s), but one of its boots hung in soft lockups on
# both vCPUs under heavy host load, and a flaky CI costs more than 10 s.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
img=${1:-$(ls -t "$here"/out/patchward-*.qcow2 2>/dev/null | head -n1)}
[[ -f $img ]] || { echo "smoke-test: no image (build one with image/build.sh)" >&2; exit 2; }
img=$(realpath "$img")
manifest=${img%.qcow2}.manifest
has_init=$(sed -n 's/^patchward_init //p' "$manifest" 2>/dev/null || true)
modes=${PATCHWARD_SMOKE_MODES:-bios uefi sata rescue}
timeout_healthy=${PATCHWARD_SMOKE_TIMEOUT:-300}
mem=${PATCHWARD_SMOKE_MEM:-1024}
logs=${PATCHWARD_SMOKE_LOGS:-$here/out/smoke}
poweroff_timeout=60
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd

for tool in qemu-system-x86_64 qemu-img curl python3; do
    command -v "$tool" >/dev/null || { echo "smoke-test: $tool not found" >&2; exit 2; }
done

t=$(mktemp -d /var/tmp/patchward-smoke.XXXXXX)
mkdir -p "$logs"
qpid=
cleanup() {
    # Only the qemu this script started, by its pid file.
    if [[ -n $qpid ]] && kill -0 "$qpid" 2>/dev/null; then kill -9 "$qpid" 2>/dev/null || true; fi
    rm -rf "$t"
}
trap cleanup EXIT

passes=0
fails=0
ok() { echo "  ok   $*"; passes=$((passes + 1)); }
bad() { echo "  FAIL $*" >&2; fails=$((fails + 1)); }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
qmp() { python3 "$here/qmp.py" "$t/qmp.sock" "$@"; }
# extract IMAGE.qcow2 OFFSET_MIB SIZE_MIB OUT: a byte range of the disk as a raw file.
# (Not "qemu-img dd": in QEMU 7.2 its count= includes the skipped blocks.)
extract() {
    qemu-img convert -O raw --image-opts \
        "driver=raw,offset=$(($2 * 1048576)),size=$(($3 * 1048576)),file.driver=qcow2,file.file.driver=file,file.file.filename=$1" "$4"
}

# gpt IMAGE: prints "esp_start esp_size root_start root_size" in MiB.
gpt() {
    extract "$1" 0 1 "$t/head.raw"
    python3 - "$t/head.raw" <<'EOF'
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
}

# disk_layout OVERLAY: "disk_mib root_part_mib root_fs_mib" (GPT and ext4 superblock).
disk_layout() {
    local overlay=$1 es esz rs rsize disk_mib
    read -r es esz rs rsize < <(gpt "$overlay")
    extract "$overlay" "$rs" 1 "$t/sb.raw"
    disk_mib=$(($(qemu-img info --output=json "$overlay" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])') / 1048576))
    python3 - "$t/sb.raw" "$disk_mib" "$rsize" <<'EOF'
import struct, sys
sb = open(sys.argv[1], "rb").read()[1024:2048]
assert struct.unpack_from("<H", sb, 0x38)[0] == 0xEF53, "no ext4 superblock"
lo, = struct.unpack_from("<I", sb, 4)
log_bs, = struct.unpack_from("<I", sb, 24)
incompat, = struct.unpack_from("<I", sb, 0x60)
hi = struct.unpack_from("<I", sb, 0x150)[0] if incompat & 0x80 else 0
blocks = (hi << 32) | lo
print(sys.argv[2], sys.argv[3], blocks * (1024 << log_bs) // 1048576)
EOF
}

# The maintenance boot entry, as systemd-boot would start it (its kernel, initrd and
# options, read from the image's ESP): a root shell on the console although root is
# locked, where the kernel hook runs against the real, automounted ESP. One vCPU: it is
# enough here, and it cannot deadlock between vCPUs under TCG.
rescue() {
    local overlay=$t/rescue.qcow2 log=$logs/rescue.serial entry es esz rs rsize rc=0 start
    local kernel initrd options console
    echo "== rescue (the maintenance entry; the kernel hook inside the guest)"
    read -r es esz rs rsize < <(gpt "$img")
    extract "$img" "$es" "$esz" "$t/esp.raw"
    entry=$(MTOOLS_SKIP_CHECK=1 mtype -i "$t/esp.raw" ::/loader/entries/patchward-maintenance.conf)
    kernel=$(awk '$1 == "linux" { print $2 }' <<<"$entry")
    initrd=$(awk '$1 == "initrd" { print $2 }' <<<"$entry")
    options=$(sed -n 's/^options *//p' <<<"$entry")
    MTOOLS_SKIP_CHECK=1 mcopy -n -i "$t/esp.raw" "::$kernel" "$t/vmlinuz"
    MTOOLS_SKIP_CHECK=1 mcopy -n -i "$t/esp.raw" "::$initrd" "$t/initrd.img"
    qemu-img create -q -f qcow2 -F qcow2 -b "$img" "$overlay"
    start=$(now)
    python3 "$here/serial-shell.py" "$log" "$timeout_healthy" \
        'echo "RESCUE-SHELL uid=$(id -u)"; /usr/lib/patchward/update-boot && echo HOOK-OK; echo "ESP-FS $(findmnt -n -o FSTYPE /boot/efi | tail -n1)"; nft list table inet patchward_guard | grep -q "policy drop" && echo GUARD-OK; echo "NETD-SOCKET $(systemctl is-enabled patchward-netd.socket)"; systemctl poweroff' \
        -- qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m "$mem" -M pc \
        -drive "file=$overlay,format=qcow2,if=virtio,cache=unsafe" -nic none \
        -display none -monitor none -serial stdio \
        -kernel "$t/vmlinuz" -initrd "$t/initrd.img" -append "$options" || rc=$?
    console=$(tr -d '\r' <"$log")
    if ((rc == 0)); then ok "rescue: booted, shell used, powered off after $(secs "$start" "$(now)") s"; else bad "rescue: qemu exit $rc (124: timeout)"; fi
    if grep -q 'RESCUE-SHELL uid=0' <<<"$console"; then ok "rescue: root shell without a password (root is locked)"; else bad "rescue: no root shell"; fi
    if grep -q 'HOOK-OK' <<<"$console"; then ok "rescue: update-boot ran in the guest"; else bad "rescue: update-boot failed in the guest"; fi
    if grep -q 'ESP-FS vfat' <<<"$console"; then ok "rescue: /boot/efi automounted the ESP"; else bad "rescue: /boot/efi is not the ESP"; fi
    if grep -q 'GUARD-OK' <<<"$console"; then ok "rescue: the forwarding guard (table inet patchward_guard) is loaded"; else bad "rescue: no forwarding guard in the kernel"; fi
    if grep -q 'NETD-SOCKET enabled' <<<"$console"; then ok "rescue: patchward-netd.socket is enabled"; else bad "rescue: patchward-netd.socket is not enabled"; fi
    rm -f "$overlay"
}

boot() { # MODE
    local mode=$1 overlay=$t/$1.qcow2 serial=$logs/$1.serial http https start healthy_at
    local -a machine disk nic
    echo "== $mode"
    qemu-img create -q -f qcow2 -F qcow2 -b "$img" "$overlay"
    http=$(free_port)
    https=$(free_port)
    case $mode in
    bios)
        machine=(-M pc)
        disk=(-drive "file=$overlay,format=qcow2,if=none,id=d0,cache=unsafe" -device virtio-blk-pci,drive=d0,bootindex=0)
        nic=(-device virtio-net-pci,netdev=n0)
        ;;
    uefi)
        cp "$ovmf_vars" "$t/vars.fd"
        machine=(-M q35 -drive "if=pflash,format=raw,unit=0,readonly=on,file=$ovmf_code"
            -drive "if=pflash,format=raw,unit=1,file=$t/vars.fd")
        disk=(-drive "file=$overlay,format=qcow2,if=none,id=d0,cache=unsafe" -device virtio-blk-pci,drive=d0,bootindex=0)
        nic=(-device virtio-net-pci,netdev=n0)
        ;;
    sata)
        machine=(-M q35)
        disk=(-drive "file=$overlay,format=qcow2,if=none,id=d0,cache=unsafe" -device ide-hd,drive=d0,bus=ide.0,bootindex=0)
        nic=(-device e1000e,netdev=n0)
        ;;
    *) echo "unknown mode $mode" >&2; return 1 ;;
    esac
    rm -f "$serial" "$t/qmp.sock" "$t/qemu.pid"
    start=$(now)
    qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m "$mem" \
        "${machine[@]}" "${disk[@]}" "${nic[@]}" \
        -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$http-:8080,hostfwd=tcp:127.0.0.1:$https-:8443" \
        -device virtio-balloon-pci,id=balloon0 \
        -display none -vga std -monitor none -parallel none \
        -serial "file:$serial" -qmp "unix:$t/qmp.sock,server=on,wait=off" \
        -pidfile "$t/qemu.pid" >"$t/qemu.log" 2>&1 &
    qpid=$!

    # 1. healthy. Until the guest's NIC is up, QEMU's user-mode network accepts the
    # connection on the host and the request hangs. So a new poll starts every 0.25 s,
    # each in the background and given up after 2 s, and the first answer's time is the
    # time to healthy. (One poll after the other, each waiting 3 s, reported a boot up
    # to 3.5 s late.) At most 8 polls run at once.
    local healthy=no n=0
    local -a pollers=()
    rm -f "$t"/healthy.*
    while :; do
        n=$((n + 1))
        (curl -fsS --max-time 2 "http://127.0.0.1:$http/healthz" >/dev/null 2>&1 && now >"$t/healthy.$n") &
        pollers+=("$!")
        sleep 0.25
        if compgen -G "$t/healthy.*" >/dev/null; then healthy=yes; break; fi
        kill -0 "$qpid" 2>/dev/null || break
        (($(secs "$start" "$(now)" | cut -d. -f1) < timeout_healthy)) || break
    done
    wait "${pollers[@]}" 2>/dev/null || true
    if [[ $healthy == yes ]]; then
        healthy_at=$(secs "$start" "$(cat "$t"/healthy.* | sort -n | head -n1)")
    else
        healthy_at=$(secs "$start" "$(now)")
    fi
    if [[ $healthy != yes ]]; then
        bad "$mode: not healthy after $healthy_at s"
        cat "$t/qemu.log" >&2 || true
        echo "--- last lines of the serial console ($serial)" >&2
        tail -n 40 "$serial" | tr -d '\r' >&2 || true
        kill -9 "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
        qpid=
        return 0
    fi
    # qemu's CPU time so far: the work the boot took, whatever else the host was doing.
    local cpu_s load
    cpu_s=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$qpid/stat")
    load=$(cut -d' ' -f1 /proc/loadavg)
    ok "$mode: /healthz answered 200 after $healthy_at s"
    echo "smoke $mode healthy_s $healthy_at (qemu cpu ${cpu_s} s, host load ${load} on $(nproc) cores)"

    # 2. HTTPS admin page, when this binary has it
    if [[ $has_init == yes ]]; then
        local code
        code=$(curl -ks -o /dev/null -w '%{http_code}' --max-time 10 "https://127.0.0.1:$https/" || true)
        if [[ $code =~ ^(200|30[0-9])$ ]]; then ok "$mode: HTTPS admin page answered $code"; else bad "$mode: HTTPS admin page answered '$code'"; fi
    else
        echo "  skip $mode: HTTPS (this binary has no 'patchward init'; TLS not built yet)"
    fi

    # 3. the clock warning: the guest has no time server to reach
    local metric
    metric=$(curl -fsS --max-time 5 "http://127.0.0.1:$http/metrics" | sed -n 's/^patchward_clock_synchronized //p')
    if [[ $metric == 0 ]]; then ok "$mode: clock reported unsynchronised (gauge 0)"; else bad "$mode: patchward_clock_synchronized is '$metric', expected 0"; fi

    # 4. the console banner (serial getty)
    local waited=0
    until grep -q 'login:' "$serial" 2>/dev/null || ((waited >= 60)); do sleep 1; waited=$((waited + 1)); done
    local console
    console=$(tr -d '\r' <"$serial")
    if grep -q 'admin page' <<<"$console"; then ok "$mode: console banner with the admin page line"; else bad "$mode: no banner on the console"; fi
    if [[ $has_init == yes ]]; then
        if grep -qi 'password' <<<"$console" && grep -qiE '([0-9a-f]{2}:){31}[0-9a-f]{2}|[0-9a-f]{64}' <<<"$console"; then
            ok "$mode: banner shows the one-time password and the certificate fingerprint"
        else
            bad "$mode: banner lacks the password or the fingerprint"
        fi
    else
        if grep -q 'patchward 0\|keys are generated on this machine' <<<"$console"; then ok "$mode: version banner"; else bad "$mode: no version banner"; fi
    fi
    if [[ $has_init == yes ]] && command -v openssl >/dev/null; then
        local served
        served=$(openssl s_client -connect "127.0.0.1:$https" </dev/null 2>/dev/null |
            openssl x509 -noout -fingerprint -sha256 2>/dev/null | sed 's/.*=//')
        if [[ -n $served ]] && grep -qF "$served" <<<"$console"; then
            ok "$mode: the banner's fingerprint is the served certificate's ($served)"
        else
            bad "$mode: served certificate '$served' is not the one on the banner"
        fi
    fi
    if grep -q 'IPv4 10\.0\.2\.15' <<<"$console"; then ok "$mode: banner shows the DHCP address"; else echo "  note $mode: address not yet on the banner"; fi

    # 5. idle memory: qemu's RSS, and the guest's own view through the balloon driver
    # (in the first mode only: the figure is the same and each wait costs CI 10 s)
    if [[ $mode == "${modes%% *}" ]]; then
        sleep 5
        local rss guest
        rss=$(awk '/^VmRSS:/ { printf "%d", $2 / 1024 }' "/proc/$qpid/status")
        qmp qom-set '{"path": "/machine/peripheral/balloon0", "property": "guest-stats-polling-interval", "value": 2}' >/dev/null || true
        sleep 5
        guest=$(qmp qom-get '{"path": "/machine/peripheral/balloon0", "property": "guest-stats"}' 2>/dev/null |
            python3 -c 'import json,sys; s=json.load(sys.stdin)["stats"]; t=s["stat-total-memory"]; a=s["stat-available-memory"]; print("%d %d" % ((t-a)//1048576, t//1048576)) if t > 0 and a > 0 else print("")' 2>/dev/null || true)
        echo "smoke $mode qemu_rss_mib $rss"
        if [[ -n $guest ]]; then
            read -r used total <<<"$guest"
            echo "smoke $mode guest_used_mib $used of $total (MemTotal - MemAvailable, virtio balloon stats)"
        fi
    fi

    # 6. power off through QMP (ACPI power button), in time
    local off_start down=no
    off_start=$(now)
    qmp system_powerdown >/dev/null || bad "$mode: QMP system_powerdown failed"
    while kill -0 "$qpid" 2>/dev/null; do
        if (($(secs "$off_start" "$(now)" | cut -d. -f1) >= poweroff_timeout)); then break; fi
        sleep 0.2
    done
    kill -0 "$qpid" 2>/dev/null || down=yes
    local off_s
    off_s=$(secs "$off_start" "$(now)")
    if [[ $down == yes ]]; then
        ok "$mode: powered off ${off_s} s after system_powerdown"
        echo "smoke $mode poweroff_s $off_s"
    else
        bad "$mode: still running ${poweroff_timeout} s after system_powerdown"
        kill -9 "$(cat "$t/qemu.pid")" 2>/dev/null || kill -9 "$qpid" 2>/dev/null || true
    fi
    wait "$qpid" 2>/dev/null || true
    qpid=

    # 7. the root partition and file system grew to the disk (first boot)
    local disk_mib part_mib fs_mib
    read -r disk_mib part_mib fs_mib < <(disk_layout "$overlay")
    if ((part_mib >= disk_mib - 260 && fs_mib >= part_mib - 4)); then
        ok "$mode: root grew to the disk (disk $disk_mib MiB, partition $part_mib MiB, ext4 $fs_mib MiB)"
    else
        bad "$mode: root did not grow (disk $disk_mib MiB, partition $part_mib MiB, ext4 $fs_mib MiB)"
    fi
    rm -f "$overlay"
}

echo "smoke-test: $(basename "$img") (patchward init: ${has_init:-unknown}), modes: $modes, TCG, ${mem} MiB"
smoke_start=$(now)
for m in $modes; do
    if [[ $m == rescue ]]; then rescue; else boot "$m"; fi
done
echo "serial console logs in $logs"
echo "smoke-test took $(secs "$smoke_start" "$(now)") s"
echo "smoke-test: $passes passed, $fails failed"
((fails == 0))
