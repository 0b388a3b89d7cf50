#!/usr/bin/env bash
# Builds the Patchward appliance VM image from Debian packages. Run as root.
#
#   image/build.sh            (after `cargo build --release`)
#
# Output in image/out/ (or $PATCHWARD_IMAGE_OUT):
#   patchward-<version>.qcow2   compressed qcow2 (Proxmox, KVM/libvirt)
#   patchward-<version>.vmdk    VMware (monolithic sparse, LSI Logic hint)
#   patchward-<version>.vhdx    Hyper-V (dynamic)
#   patchward-<version>.manifest  every Debian package with its version, the build tools,
#                               the patchward binary's sha256, the build parameters
#   SHA256SUMS
#
# The disk: GPT with an EFI system partition (FAT32, 256 MiB) that boots by BIOS
# (syslinux, gptmbr.bin in the protective MBR, LegacyBIOSBootable attribute) and by
# UEFI (systemd-boot as EFI/BOOT/BOOTX64.EFI), and an ext4 root (made with
# mkfs.ext4 -d) that grows to the disk at boot. Nothing is mounted, no loop device and
# no KVM are used: mmdebstrap builds a directory, mkfs.ext4 -d and mtools fill the
# file systems, sfdisk and dd assemble the disk.
#
# Environment:
#   PATCHWARD_BINARY     the patchward binary (default: $CARGO_TARGET_DIR or target/,
#                        release/patchward)
#   PATCHWARD_NETD_BINARY  the patchward-netd helper (default: next to PATCHWARD_BINARY)
#   PATCHWARD_IMAGE_OUT  output directory (default image/out)
#   PATCHWARD_MIRROR     Debian mirror (default http://deb.debian.org/debian)
#   PATCHWARD_SECURITY_MIRROR  (default http://deb.debian.org/debian-security)
#   PATCHWARD_DISK_SIZE  virtual disk size (default 20G)
#   PATCHWARD_DEB_CACHE  directory that keeps downloaded .debs between builds
#                        (default /var/cache/patchward-image/debs; "" to disable)
#   SOURCE_DATE_EPOCH    timestamps in the image (default: the last commit's time),
#                        so rebuilds of one commit are comparable
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

die() { echo "build.sh: error: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
phase_start=$(now)
phase() { # NAME: prints the time the previous phase took
    local t
    t=$(now)
    [[ -n ${phase_name:-} ]] && printf '   (%s: %s s)\n' "$phase_name" "$(secs "$phase_start" "$t")"
    phase_name=$1
    phase_start=$t
    printf '== %s\n' "$1"
}

(($(id -u) == 0)) || die "run as root (mmdebstrap installs packages into a directory tree as root)"
for tool in mmdebstrap mkfs.ext4 debugfs mkfs.vfat mcopy mmd syslinux sfdisk qemu-img strip nft unshare; do
    command -v "$tool" >/dev/null || die "$tool not found (see .ci/run for the packages)"
done
gptmbr=/usr/lib/syslinux/mbr/gptmbr.bin
[[ -f $gptmbr ]] || die "$gptmbr not found (package syslinux-common)"

version=$(sed -n 's/^version = "\([^"]*\)".*/\1/p' "$repo/Cargo.toml" | head -n1)
[[ -n $version ]] || die "cannot read the version from Cargo.toml"
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
binary=${PATCHWARD_BINARY:-${CARGO_TARGET_DIR:-$repo/target}/release/patchward}
[[ -x $binary ]] || die "$binary not found: run 'cargo build --release' first or set PATCHWARD_BINARY"
netd_binary=${PATCHWARD_NETD_BINARY:-$(dirname "$binary")/patchward-netd}
[[ -x $netd_binary ]] || die "$netd_binary not found: run 'cargo build --release --bin patchward-netd' first or set PATCHWARD_NETD_BINARY"
out=${PATCHWARD_IMAGE_OUT:-$here/out}
mirror=${PATCHWARD_MIRROR:-http://deb.debian.org/debian}
security=${PATCHWARD_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
disk_size=${PATCHWARD_DISK_SIZE:-20G}
deb_cache=${PATCHWARD_DEB_CACHE-/var/cache/patchward-image/debs}
esp_mib=256
name=patchward-$version

# Identifiers derived from the version and SOURCE_DATE_EPOCH: stable across rebuilds
# of one commit, different between releases.
seed="$name $SOURCE_DATE_EPOCH"
uuid() {
    local h
    h=$(printf '%s %s' "$seed" "$1" | sha256sum)
    echo "${h:0:8}-${h:8:4}-4${h:13:3}-a${h:17:3}-${h:20:12}"
}
disk_guid=$(uuid disk)
esp_guid=$(uuid esp)
root_guid=$(uuid root-partition)
fs_uuid=$(uuid root-fs)
esp_volid=$(printf '%s esp' "$seed" | sha256sum | cut -c1-8)
cmdline="root=UUID=$fs_uuid ro quiet console=ttyS0,115200n8 console=tty0"

# Does this binary have `patchward init` (TLS certificate, admin account, banner)?
if "$binary" init --help >/dev/null 2>&1; then has_init=yes; else has_init=no; fi

build_start=$(now)
phase "kernel hook tests"
"$here/test-update-boot.sh" | tail -n1

work=$(mktemp -d /var/tmp/patchward-image.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
root=$work/root
mkdir -p "$out"

# --- 1. the root tree --------------------------------------------------------
phase "mmdebstrap bookworm (minbase) into a directory"
packages=(
    # boot: the generic kernel (the cloud kernel lacks the AHCI and e1000 drivers of
    # VMware, Hyper-V and Proxmox defaults), its initrd, the systemd-boot EFI binary
    systemd-boot-efi linux-image-amd64 initramfs-tools zstd
    systemd systemd-sysv udev dbus libpam-systemd
    systemd-resolved systemd-timesyncd
    nftables e2fsprogs dosfstools ca-certificates netbase tzdata
    # the administrator's tools; SSH is installed but disabled
    openssh-server iproute2 iputils-ping procps less nano
)
cache_hooks=()
if [[ -n $deb_cache ]]; then
    mkdir -p "$deb_cache"
    cache_hooks=(
        --skip=essential/unlink
        --setup-hook="mkdir -p \"\$1/var/cache/apt/archives/\""
        --setup-hook="sync-in '$deb_cache' /var/cache/apt/archives/"
        --customize-hook="sync-out /var/cache/apt/archives '$deb_cache'"
    )
fi
mmdebstrap --variant=minbase --arch=amd64 --quiet \
    --include="$(IFS=,; echo "${packages[*]}")" \
    --aptopt='APT::Install-Recommends "false"' \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt="$here/dpkg-excludes.cfg" \
    --setup-hook="cp -a '$here/rootfs/.' \"\$1/\"" \
    --setup-hook="mkdir -p \"\$1/boot/efi/loader\" \"\$1/boot/efi/syslinux\" \"\$1/etc/kernel\" && echo '$cmdline' >\"\$1/etc/kernel/cmdline\"" \
    "${cache_hooks[@]}" \
    bookworm "$root" \
    "deb $mirror bookworm main" \
    "deb $mirror bookworm-updates main" \
    "deb $security bookworm-security main"

# --- 2. the appliance --------------------------------------------------------
phase "patchward, units, configuration"
install -D -m 0755 "$binary" "$root/usr/bin/patchward"
strip --strip-unneeded "$root/usr/bin/patchward"
install -D -m 0755 "$netd_binary" "$root/usr/bin/patchward-netd"
strip --strip-unneeded "$root/usr/bin/patchward-netd"
unitdir=$root/usr/lib/systemd/system
install -m 0644 "$repo/systemd/patchward.service" "$repo/systemd/patchward-init.service" \
    "$repo/systemd/patchward-netd.service" "$repo/systemd/patchward-netd.socket" "$unitdir/"
# What the kernel forwards at all: only to and from the legacy segment's interface
# (legacy0, absent until an administrator adds the second NIC; README "A second NIC for
# the legacy segment"), with its example network files. Installed after the packages,
# over the nftables package's example configuration.
install -m 0755 "$here/nftables.conf" "$root/etc/nftables.conf"
unshare --net nft -c -f "$root/etc/nftables.conf" || die "image/nftables.conf does not pass nft -c"
install -D -m 0644 "$repo/systemd/patchward.sysusers.conf" "$root/usr/lib/sysusers.d/patchward.conf"
systemd-sysusers --root="$root" >/dev/null
gid=$(awk -F: '$1 == "patchward" { print $3 }' "$root/etc/group")
[[ -n $gid ]] || die "systemd-sysusers did not create the patchward group"
install -d -m 0755 "$root/etc/patchward"
# The packaged configuration is the appliance's; checked by the binary that ships.
install -m 0640 -o root -g "$gid" "$repo/systemd/patchward.toml" "$root/etc/patchward/patchward.toml"
"$binary" config check "$root/etc/patchward/patchward.toml" >/dev/null ||
    die "systemd/patchward.toml does not pass 'patchward config check'"
# The address lines of the console banner (agetty fills in \4 and \6).
if [[ $has_init == yes ]]; then
    admin_url='https://\4:8443/'
else
    admin_url='http://\4:8080/  (HTTP API; health at /healthz)'
fi
cat >"$root/etc/issue.d/60-patchward-address.issue" <<EOF
Patchward appliance \\n (\\l)
  admin page  $admin_url
  IPv4 \\4   IPv6 \\6
  (no address? DHCP is the default; README "Install as a VM" sets a static one)

EOF

systemctl --root="$root" enable systemd-networkd.service systemd-resolved.service \
    systemd-timesyncd.service patchward.service patchward-init.service \
    patchward-netd.socket nftables.service 2>/dev/null
[[ -L $root/etc/systemd/system/sockets.target.wants/patchward-netd.socket ]] ||
    die "patchward-netd.socket was not enabled"
systemctl --root="$root" disable ssh.service 2>/dev/null || true
# systemd-firstboot would ask for a locale, time zone and root password on the console
# at the first boot, stopping an unattended appliance.
systemctl --root="$root" mask systemd-firstboot.service 2>/dev/null
# e2scrub needs LVM snapshots, which the appliance has none of; at boot it only costs.
systemctl --root="$root" mask e2scrub_reap.service e2scrub_all.timer 2>/dev/null
# Kernel modules and file systems loaded early "just in case", none of which the
# appliance uses: loop and device-mapper (systemd-repart waits for them, but growing a
# partition needs neither; /dev/loop-control and /dev/mapper/control still load them
# on first use), configfs (USB gadgets, SCSI targets) and the FUSE control file system
# (FUSE itself still loads when /dev/fuse is opened). Each is a modprobe or mount run
# before sysinit.target.
systemctl --root="$root" mask modprobe@loop.service modprobe@dm_mod.service \
    modprobe@configfs.service sys-kernel-config.mount \
    modprobe@fuse.service sys-fs-fuse-connections.mount 2>/dev/null
systemctl --root="$root" set-default multi-user.target 2>/dev/null
# Generators for what the appliance does not have: encrypted, verity and integrity
# volumes, a hibernation image, offline system updates, and partitions found by GPT
# type (the root and the ESP are in /etc/fstab). Each is a program systemd runs
# before it loads any unit, at every boot.
mkdir -p "$root/etc/systemd/system-generators"
for g in cryptsetup veritysetup integritysetup hibernate-resume system-update gpt-auto; do
    [[ -e $root/usr/lib/systemd/system-generators/systemd-$g-generator ]] ||
        die "systemd-$g-generator not found (systemd changed: review this list)"
    ln -sfn /dev/null "$root/etc/systemd/system-generators/systemd-$g-generator"
done

echo patchward >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	patchward
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
cat >"$root/etc/fstab" <<EOF
# <file system>                             <mount point> <type> <options>                           <dump> <pass>
UUID=$fs_uuid  /          ext4  errors=remount-ro,x-systemd.growfs  0  1
# The ESP is mounted when something opens /boot/efi (the kernel hooks), not at boot.
PARTUUID=$esp_guid  /boot/efi  vfat  noauto,x-systemd.automount,x-systemd.idle-timeout=10min,umask=0077,shortname=mixed  0  0
EOF

# No identity and no secrets in the image: each machine makes its own at first boot.
# An empty /etc/machine-id (machine-id(5)): systemd generates the ID at boot and
# systemd-machine-id-commit writes it once the root is writable, as with
# "uninitialized"; but the boot does not count as a "first boot", so systemd does not
# apply the unit presets (every unit is enabled or masked here, and on the still
# read-only root that step only failed, after seconds of parsing every unit file).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_* \
    "$root/var/lib/systemd/random-seed" "$root/var/lib/systemd/credential.secret"
rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin "$root/var/cache/apt/archives/"*.deb \
    "$root/var/cache/debconf/"*-old "$root/var/lib/dpkg/"*-old "$root/tmp/"* "$root/var/tmp/"*
find "$root/var/log" -type f -delete
install -d -m 0700 "$root/root"

# --- 3. the EFI system partition's content -----------------------------------
phase "boot loaders and boot entries"
esp_tree=$root/boot/efi
install -D -m 0644 "$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$esp_tree/EFI/BOOT/BOOTX64.EFI"
install -D -m 0644 "$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$esp_tree/EFI/systemd/systemd-bootx64.efi"
# The kernel package already ran the hook (/etc/kernel/postinst.d) in the tree; run it
# again now that everything is in place, with the tree as its root.
PATCHWARD_ROOT=$root "$root/usr/lib/patchward/update-boot"
kver=$(ls "$root/boot" | sed -n 's/^vmlinuz-//p' | sort -V | tail -n1)
# The initrd must carry the disk drivers of every supported hypervisor.
initrd_list=$(chroot "$root" lsinitramfs "/boot/initrd.img-$kver")
for ko in virtio_blk virtio_scsi ahci ata_piix nvme mptspi vmw_pvscsi hv_storvsc ext4; do
    grep -q "/$ko\.ko" <<<"$initrd_list" || die "the initrd has no $ko module"
done
echo "initrd $(($(stat -c %s "$root/boot/initrd.img-$kver") / 1048576)) MiB, $(grep -c '\.ko' <<<"$initrd_list") modules"
grep -q "root=UUID=$fs_uuid" "$esp_tree/loader/entries/patchward.conf" || die "boot entries not written"
mv "$esp_tree" "$work/esp"
install -d -m 0755 "$esp_tree"

# Every file's time at most SOURCE_DATE_EPOCH (maintainer scripts wrote files "now").
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch --no-dereference --date="@$SOURCE_DATE_EPOCH"
find "$work/esp" -print0 | xargs -0r touch --no-dereference --date="@$SOURCE_DATE_EPOCH"

phase "secrets check on the tree"
"$here/check-image.sh" --tree "$root" "$work/esp"

# --- 4. file systems and the disk ---------------------------------------------
phase "mkfs.ext4 -d, mkfs.vfat + mtools + syslinux, sfdisk"
tree_mib=$(du -s --block-size=1M "$root" | cut -f1)
root_mib=$(((tree_mib * 13 / 10 + 256 + 63) / 64 * 64))
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -t ext4 -L patchward-root \
    -U "$fs_uuid" -E "root_owner=0:0,hash_seed=$fs_uuid" \
    -d "$root" "$work/root.ext4" "${root_mib}M"

esp_start=2048 # sectors of 512 bytes: 1 MiB alignment
rm -f "$work/esp.img"
mkfs.vfat -F 32 -n PATCHWARD -i "$esp_volid" -h "$esp_start" -C "$work/esp.img" $((esp_mib * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
(cd "$work/esp" && mcopy -i "$work/esp.img" -s -p -m -Q ./* ::/)
syslinux --install --directory /syslinux "$work/esp.img"

root_start=$((esp_start + esp_mib * 2048))
rm -f "$work/disk.raw"
truncate -s "$disk_size" "$work/disk.raw"
sfdisk --quiet --no-reread --no-tell-kernel "$work/disk.raw" <<EOF
label: gpt
label-id: $disk_guid
unit: sectors
first-lba: 2048
start=$esp_start, size=$((esp_mib * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$esp_guid, name="esp", attrs="LegacyBIOSBootable"
start=$root_start, size=$((root_mib * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$root_guid, name="root"
EOF
dd if="$work/esp.img" of="$work/disk.raw" bs=512 seek="$esp_start" conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$work/disk.raw" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
dd if="$gptmbr" of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none

# --- 5. images, manifest -------------------------------------------------------
phase "qemu-img convert: qcow2, vmdk, vhdx"
rm -f "$out/$name".{qcow2,vmdk,vhdx,manifest} "$out/SHA256SUMS"
qemu-img convert -f raw -O qcow2 -c -o compat=1.1 "$work/disk.raw" "$out/$name.qcow2"
qemu-img convert -f raw -O vmdk -o adapter_type=lsilogic,subformat=monolithicSparse "$work/disk.raw" "$out/$name.vmdk"
qemu-img convert -f raw -O vhdx -o subformat=dynamic "$work/disk.raw" "$out/$name.vhdx"

phase "manifest"
npkgs=$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package}\n' | wc -l)
{
    echo "# Patchward appliance image $name"
    echo "source_date_epoch $SOURCE_DATE_EPOCH ($(date -u -d "@$SOURCE_DATE_EPOCH" +%FT%TZ))"
    echo "git_commit $(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "patchward_sha256 $(sha256sum "$root/usr/bin/patchward" | cut -d' ' -f1) (stripped)"
    echo "patchward_netd_sha256 $(sha256sum "$root/usr/bin/patchward-netd" | cut -d' ' -f1) (stripped)"
    echo "patchward_init $has_init"
    echo "kernel $kver"
    echo "kernel_cmdline $cmdline"
    echo "disk_size $disk_size"
    echo "root_partition_mib $root_mib"
    echo "esp_mib $esp_mib"
    echo "disk_guid $disk_guid"
    echo "root_fs_uuid $fs_uuid"
    echo "mirror $mirror bookworm bookworm-updates; $security bookworm-security"
    echo "# build tools (on the build machine)"
    for p in mmdebstrap e2fsprogs dosfstools mtools syslinux syslinux-common fdisk qemu-utils; do
        echo "tool $p $(dpkg-query -W -f '${Version}' "$p" 2>/dev/null || echo '?')"
    done
    echo "# packages in the image: name version architecture"
    dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package} ${Version} ${Architecture}\n' | sort
} >"$out/$name.manifest"
(cd "$out" && sha256sum "$name.qcow2" "$name.vmdk" "$name.vhdx" "$name.manifest" >SHA256SUMS)

phase "check the built image (debugfs on the qcow2's root partition)"
"$here/check-image.sh" "$out/$name.qcow2"
phase done

total=$(secs "$build_start" "$(now)")
echo "image build: $total s"
for f in "$out/$name".{qcow2,vmdk,vhdx}; do
    printf 'image %-28s %6d MiB (virtual %s)\n' "$(basename "$f")" \
        $(($(stat -c %s "$f") / 1048576)) "$disk_size"
done
echo "image root tree ${tree_mib} MiB, root partition ${root_mib} MiB, $npkgs Debian packages"
