#!/usr/bin/env bash
# Idempotent machine setup for dyncast (Debian 12, run as root; fine under CI=true).
#   1. apt packages: Open vSwitch, Mininet, iperf3, ethtool, python3-venv, PostgreSQL (only if
#      missing; the server is not started here: scripts/postgres.sh starts a private cluster)
#   2. Open vSwitch with the userspace datapath (only if not running; no kernel module needed)
#   3. .venv from Debian's /usr/bin/python3 with --system-site-packages (for Debian's mininet)
#   4. requirements/pinned.txt (Ryu 4.34 built with setuptools<68) and this project, editable
#   5. promtool, unpacked from Debian's prometheus package into .venv/bin (the alert-rule tests)
# Quiet unless something fails: one line per action taken, then "ready".
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PY=/usr/bin/python3
APT_PACKAGES=(openvswitch-switch mininet iperf3 ethtool iproute2 python3-venv postgresql
    chromium openssl hping3)  # chromium: the web view's browser tests (tests/test_web_browser.py);
# openssl and hping3: the channel tests (mininet_tests/test_channel.py, test_flood.py)
OVS_CTL=/usr/share/openvswitch/scripts/ovs-ctl
OVS_SEND_BUFFER=16777216  # bytes; mininet_tests/harness.py has the same (see section 2)
STAMP="$VENV/.dyncast-installed"
START=$SECONDS

say() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

# Run a command with its output kept in a log; show the log only if the command fails.
quietly() {
    local what=$1; shift
    local log
    log=$(mktemp /tmp/dyncast-setup.XXXXXX)
    if ! "$@" >"$log" 2>&1; then
        echo "setup: ERROR: $what failed: $*" >&2
        tail -n 60 "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "$1 needs root (run: sudo $0)"
}

# --- 1. apt packages ---------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    need_root "installing ${missing[*]}"
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    quietly "apt-get update" apt-get update -q
    quietly "apt-get install" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- 2. Open vSwitch, userspace datapath ----------------------------------------------
ovs_running() {
    timeout 5 ovs-vsctl show >/dev/null 2>&1 &&
        timeout 5 ovs-appctl -t ovs-vswitchd version >/dev/null 2>&1
}
if ! ovs_running; then
    need_root "starting Open vSwitch"
    say "starting Open vSwitch (ovsdb-server + ovs-vswitchd, no kernel module needed)"
    # ovs-ctl starts only the daemons that are not running. Without the kernel module it
    # logs "Kernel has no loadable module support"; bridges then need datapath_type=netdev,
    # which Mininet's OVSSwitch(datapath='user') sets.
    # The userspace datapath sends on every port through ONE raw packet socket, whose send
    # buffer (net.core.wmem_default when it is created) also pays for the packets waiting in
    # shaped links' queues: with the default 208 KB, one full 100-packet queue blocked sends
    # on every other port too (lost SYNs and packet-outs; `error sending Ethernet packet ...
    # Resource temporarily unavailable`). Give it room for every shaped queue at once.
    if [ "$(sysctl -n net.core.wmem_default)" -lt "$OVS_SEND_BUFFER" ]; then
        sysctl -qw net.core.wmem_default="$OVS_SEND_BUFFER" ||
            say "warning: could not raise net.core.wmem_default; shaped-link benchmarks" \
                "will lose packets on every port"
    fi
    quietly "ovs-ctl start" "$OVS_CTL" start --system-id=random --no-monitor
    ovs_running || die "Open vSwitch did not come up; see /var/log/openvswitch/"
fi
# OVS opens its packet sockets with its first userspace port: none yet is not an error.
ovs_sndbuf=$( (ss -0 -m -p 2>/dev/null || true) | grep '"ovs-vswitchd"' | grep -o 'tb[0-9]*' |
    sort -k1.3 -n | head -1 || true)
if [ -n "$ovs_sndbuf" ] && [ "${ovs_sndbuf#tb}" -lt "$OVS_SEND_BUFFER" ]; then
    say "warning: Open vSwitch was started with a ${ovs_sndbuf#tb}-byte packet-socket send" \
        "buffer; shaped links will block sends on every port. Stop it" \
        "($OVS_CTL stop) and run this script again."
fi

# --- 3. the virtual environment ---------------------------------------------------------
venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        grep -qx 'include-system-site-packages = true' "$VENV/pyvenv.cfg" &&
        grep -qx 'home = /usr/bin' "$VENV/pyvenv.cfg" &&
        "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null
}
if ! venv_ok; then
    if [ -e "$VENV" ]; then
        say "removing $VENV (not a Python 3.11 venv of $PY with system site packages)"
        rm -rf "$VENV"
    fi
    say "creating $VENV from $PY --system-site-packages"
    quietly "python3 -m venv" "$PY" -m venv --system-site-packages "$VENV"
fi

# --- 4. pinned packages and the project --------------------------------------------------
# The stamp holds a hash of everything that decides what is installed; reinstall only when
# it changed, or when the environment no longer imports.
wanted=$(cat "$ROOT/requirements/build.txt" "$ROOT/requirements/pinned.txt" \
    "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
imports_ok() {
    (cd /tmp && "$VENV/bin/python" -c '
from apps import compat, manager
compat.patch_eventlet_wsgi()
import mininet.net, ovs, ryu.cmd.manager, os_ken.cmd.manager, networkx, sqlalchemy, pytest
import alembic.command, psycopg
' >/dev/null 2>&1)
}
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$wanted" ] || ! imports_ok; then
    rm -f "$STAMP"
    PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input)
    say "installing requirements/build.txt (setuptools<68 for Ryu 4.34)"
    quietly "pip install build tools" \
        "${PIP[@]}" --ignore-installed --no-deps -r "$ROOT/requirements/build.txt"
    say "installing requirements/pinned.txt (ryu, os-ken, eventlet, tools)"
    quietly "pip install pinned requirements" \
        "${PIP[@]}" --ignore-installed --no-deps --no-build-isolation \
        -r "$ROOT/requirements/pinned.txt"
    say "installing this project (editable)"
    quietly "pip install -e ." \
        "${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
    # pip check also judges Debian's own packages (e.g. python3-gi wants pycairo); only
    # complaints about a package we pinned count.
    pinned=$(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' "$ROOT/requirements/build.txt" \
        "$ROOT/requirements/pinned.txt" | tr 'A-Z_.' 'a-z--' | sort -u)
    problems=$("$VENV/bin/pip" check 2>/dev/null | while read -r name _; do
        key=$(echo "$name" | tr 'A-Z_.' 'a-z--')
        if grep -qx "$key" <<<"$pinned"; then echo "$name"; fi
    done || true)
    if [ -n "$problems" ]; then
        "$VENV/bin/pip" check >&2 || true
        die "inconsistent requirements for: $problems"
    fi
    imports_ok || die "the new environment does not import ryu/os_ken/mininet/apps"
    echo "$wanted" >"$STAMP"
fi

# --- 5. promtool (tests/test_alert_rules.py), from Debian's prometheus package -----------
# Only the tool, unpacked into the venv: installing the package would start a Prometheus
# server. Not fatal: without it those two tests skip, saying so.
if [ ! -x "$VENV/bin/promtool" ]; then
    say "unpacking promtool from Debian's prometheus package into $VENV/bin"
    tmp=$(mktemp -d)
    if (cd "$tmp" && quietly "apt-get download prometheus" apt-get download -q prometheus &&
            dpkg-deb -x prometheus_*.deb unpacked) && [ -x "$tmp/unpacked/usr/bin/promtool" ]; then
        cp "$tmp/unpacked/usr/bin/promtool" "$VENV/bin/promtool"
    else
        say "promtool not unpacked (no apt index or no network): the alert-rule tests will skip"
    fi
    rm -rf "$tmp"
fi

say "ready ($((SECONDS - START))s): OVS $(ovs-vsctl --version | head -n1 | awk '{print $NF}'),\
 $("$VENV/bin/python" --version), .venv at $VENV"
