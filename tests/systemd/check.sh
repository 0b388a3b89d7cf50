#!/usr/bin/env bash
# CI check for the systemd files in systemd/.
#
# Usage: tests/systemd/check.sh [TARGET_DIR]
#   TARGET_DIR  directory with the built binaries patchward, patchward-agent and
#               patchward-netd
#               (default: ${CARGO_TARGET_DIR:-<repo>/target}/debug).
#   Can be run from any directory; needs systemd-analyze and systemd-sysusers
#   (systemd >= 250), no root, no running systemd.
#
# What it does, in a throw-away root laid out like the installed package
# (usr/bin, usr/lib/systemd/system, usr/lib/sysusers.d):
#   1. systemd-sysusers --root: the sysusers.d file parses and creates "patchward".
#   2. systemd-analyze verify --root: both units load without any warning, and
#      their ExecStart= binaries exist (the built ones, placed at /usr/bin).
#   3. a few design rules that verify cannot know (grep on the unit files).
#   4. systemd-analyze security --offline: the appliance unit's overall exposure
#      must be <= MAX_EXPOSURE, the nftables helper's <= MAX_NETD_EXPOSURE; the
#      agent's is printed for information only.
set -euo pipefail

readonly MAX_EXPOSURE=2.5
readonly APPLIANCE=patchward.service
readonly AGENT=patchward-agent.service
# The VM image's first-boot/banner unit; its script lives in image/rootfs.
readonly INIT=patchward-init.service
# The privileged nftables helper (issue [10]) and its socket.
readonly NETD=patchward-netd.service
readonly NETD_SOCKET=patchward-netd.socket
readonly MAX_NETD_EXPOSURE=2.0

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
units_src=$repo/systemd
target_dir=${1:-${CARGO_TARGET_DIR:-$repo/target}/debug}

# Stable, parseable output: no colours, no pager, "." as decimal separator.
export LC_ALL=C SYSTEMD_COLORS=0 SYSTEMD_PAGER= SYSTEMD_LESS=

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
die() { echo "FAIL: $*" >&2; exit 1; }

for tool in systemd-analyze systemd-sysusers; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
echo "== $(systemd-analyze --version | head -n1)"

for bin in patchward patchward-agent patchward-netd; do
    [[ -x $target_dir/$bin && -f $target_dir/$bin ]] ||
        die "$target_dir/$bin missing or not executable (build with 'cargo build --bins', or pass TARGET_DIR)"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
unitdir=$root/usr/lib/systemd/system
mkdir -p "$root/usr/bin" "$unitdir" "$root/usr/lib/sysusers.d" "$root/etc"
cp "$units_src/$APPLIANCE" "$units_src/$AGENT" "$units_src/$INIT" "$unitdir/"
cp "$units_src/$NETD" "$units_src/$NETD_SOCKET" "$unitdir/"
install -D -m 0755 "$repo/image/rootfs/usr/lib/patchward/init-banner" "$root/usr/lib/patchward/init-banner"
cp "$units_src/patchward.sysusers.conf" "$root/usr/lib/sysusers.d/patchward.conf"
for bin in patchward patchward-agent patchward-netd; do
    # Hard link when possible (debug binaries are large), else copy. A symlink
    # would not do: --root resolves absolute links inside the staging root.
    ln "$target_dir/$bin" "$root/usr/bin/$bin" 2>/dev/null ||
        cp "$target_dir/$bin" "$root/usr/bin/$bin"
done

# --- 1. sysusers.d -----------------------------------------------------------
echo "== systemd-sysusers"
# systemd-sysusers exits 0 even on parse errors, so judge its output: anything
# but "Creating ..." lines is an error.
out=$(systemd-sysusers --root="$root" 2>&1) || fail "systemd-sysusers exited $?"
[[ -n $out ]] && echo "$out"
if grep -v '^Creating ' <<<"$out" | grep -q .; then
    fail "systemd-sysusers reported problems (above)"
fi
grep -q '^patchward:' "$root/etc/passwd" || fail "sysusers.d did not create user patchward"

# --- 2. verify -----------------------------------------------------------------
echo "== systemd-analyze verify $APPLIANCE $AGENT $INIT $NETD $NETD_SOCKET"
# --recursive-errors=no: exit non-zero on any warning about these units (without
# it, verify exits 0 on warnings such as unknown keys or unparsable values).
# --root: units are loaded from the staging root only (hermetic: host units do
# not matter) and ExecStart= paths resolve inside it, where the built binaries
# are. --man=no: do not look up man pages.
rc=0
out=$(systemd-analyze verify --man=no --recursive-errors=no --root="$root" \
    "$APPLIANCE" "$AGENT" "$INIT" "$NETD" "$NETD_SOCKET" 2>&1) || rc=$?
[[ -n $out ]] && echo "$out"
((rc == 0)) || fail "systemd-analyze verify exited $rc"
if grep -qE "(^|/)($APPLIANCE|$AGENT|$INIT|$NETD|$NETD_SOCKET)[:]" <<<"$out"; then
    fail "systemd-analyze verify reported problems in the units (above)"
fi

# --- 3. design rules -----------------------------------------------------------
echo "== design rules"
require() { grep -qxE "$2" "$unitdir/$1" || fail "$1: expected a line matching '$2'"; }
forbid() { ! grep -qxE "$2" "$unitdir/$1" || fail "$1: must not have a line matching '$2' ($3)"; }
require "$APPLIANCE" 'Type=notify'
require "$APPLIANCE" 'NotifyAccess=main'
require "$APPLIANCE" 'WatchdogSec=.+'
require "$APPLIANCE" 'User=patchward'
require "$APPLIANCE" 'ExecStart=/usr/bin/patchward .*serve'
forbid "$APPLIANCE" 'DynamicUser=(yes|true|on|1)' "the admin CLI shares the database"
# Without the default dependencies (boot time), the unit must still stop at shutdown,
# start after the file systems and patchward-init, and stop before the network.
require "$APPLIANCE" 'DefaultDependencies=no'
require "$APPLIANCE" 'Conflicts=shutdown\.target'
require "$APPLIANCE" 'Before=shutdown\.target'
require "$APPLIANCE" 'After=local-fs\.target( .+)?'
require "$APPLIANCE" 'After=(.+ )?patchward-init\.service( .+)?'
require "$APPLIANCE" 'After=(.+ )?systemd-networkd\.service( .+)?'
require "$AGENT" 'ExecStart=/usr/bin/patchward-agent run'
require "$INIT" 'Before=patchward\.service getty-pre\.target( .+)?'
require "$INIT" 'Type=oneshot'
require "$AGENT" 'KillMode=process'
forbid "$AGENT" 'User=.*' "the agent installs packages as root"
forbid "$AGENT" 'NoNewPrivileges=(yes|true|on|1)' "maintainer scripts may need setuid"
forbid "$AGENT" 'RestrictSUIDSGID=(yes|true|on|1)' "dpkg creates setuid files"
forbid "$AGENT" 'ProtectSystem=(yes|true|on|1|full|strict)' "dpkg writes /usr, /etc, /boot"
forbid "$AGENT" 'PrivateTmp=(yes|true|on|1)' "removed under a surviving dpkg with KillMode=process"
# The helper: only CAP_NET_ADMIN, reachable only through the patchward group's socket.
require "$NETD_SOCKET" 'ListenStream=/run/patchward/netd\.sock'
require "$NETD_SOCKET" 'SocketGroup=patchward'
require "$NETD_SOCKET" 'SocketMode=0660'
require "$NETD" 'ExecStart=/usr/bin/patchward-netd .*--group patchward.*'
require "$NETD" 'CapabilityBoundingSet=CAP_NET_ADMIN'
require "$NETD" 'AmbientCapabilities=CAP_NET_ADMIN'
require "$NETD" 'NoNewPrivileges=yes'
require "$NETD" 'ProtectSystem=strict'
require "$NETD" 'PrivateTmp=yes'
require "$NETD" 'RestrictAddressFamilies=AF_UNIX AF_NETLINK'
require "$NETD" 'SystemCallFilter=@system-service'
require "$NETD" 'DynamicUser=yes'
forbid "$NETD" 'ProtectProc=invisible' "the peer check reads the caller's /proc/PID/status"
forbid "$NETD" 'PrivateUsers=(yes|true|on|1|self|identity)' "a namespaced CAP_NET_ADMIN cannot change the host's tables"

# --- 4. exposure ---------------------------------------------------------------
# Prints the unit's overall exposure (e.g. "1.1"); the full table goes to $2.
exposure() {
    local unit=$1 table=$2 rc=0
    systemd-analyze security --offline=yes --root="$root" "$unitdir/$unit" \
        >"$table" 2>&1 || rc=$?
    # "→ Overall exposure level for patchward.service: 1.1 OK 🙂"
    sed -n "s/.*Overall exposure level for $unit: \([0-9][0-9]*\.[0-9]*\).*/\1/p" "$table"
    return "$rc"
}

echo "== systemd-analyze security --offline=yes $APPLIANCE"
rc=0
appl=$(exposure "$APPLIANCE" "$tmp/appliance.txt") || rc=$?
if [[ -z $appl ]]; then
    cat "$tmp/appliance.txt"
    fail "could not read the overall exposure of $APPLIANCE (exit $rc)"
else
    if awk -v e="$appl" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }'; then
        echo "$APPLIANCE exposure: $appl (limit $MAX_EXPOSURE) OK"
        grep -E '^(-|✗) ' "$tmp/appliance.txt" || true
    else
        cat "$tmp/appliance.txt"
        fail "$APPLIANCE exposure $appl > $MAX_EXPOSURE"
    fi
fi

echo "== systemd-analyze security --offline=yes $NETD"
rc=0
netd=$(exposure "$NETD" "$tmp/netd.txt") || rc=$?
if [[ -z $netd ]]; then
    cat "$tmp/netd.txt"
    fail "could not read the overall exposure of $NETD (exit $rc)"
elif awk -v e="$netd" -v m="$MAX_NETD_EXPOSURE" 'BEGIN { exit !(e <= m) }'; then
    echo "$NETD exposure: $netd (limit $MAX_NETD_EXPOSURE) OK"
    grep -E '^(-|✗) ' "$tmp/netd.txt" || true
else
    cat "$tmp/netd.txt"
    fail "$NETD exposure $netd > $MAX_NETD_EXPOSURE"
fi

echo "== systemd-analyze security --offline=yes $AGENT (informational)"
agent=$(exposure "$AGENT" "$tmp/agent.txt") || true
if [[ -z $agent ]]; then
    cat "$tmp/agent.txt"
    fail "could not read the overall exposure of $AGENT"
else
    echo "$AGENT exposure: $agent (root by design; no limit)"
fi

echo "== systemd-analyze security --offline=yes $INIT (informational)"
init=$(exposure "$INIT" "$tmp/init.txt") || true
if [[ -z $init ]]; then
    cat "$tmp/init.txt"
    fail "could not read the overall exposure of $INIT"
else
    echo "$INIT exposure: $init (root for chown/setpriv, at boot only; no limit)"
fi

if ((failures > 0)); then
    echo "systemd check: $failures failure(s)" >&2
    exit 1
fi
echo "systemd check: OK"
