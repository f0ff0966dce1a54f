#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Prepare a Debian 12 machine for developing and testing passt-sep:
# system packages (apt) and the project's virtual environment (.venv).
#
# Idempotent: packages already installed are not asked for again (no
# 'apt-get update' at all when nothing is missing), and the editable install
# into .venv is repeated only when pyproject.toml changed since the last run.
# Runs as root; as another user it uses sudo for apt-get only.
#
# Environment: PYTHON (default python3), the interpreter for .venv (>= 3.11).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

PYTHON=${PYTHON:-python3}
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	SUDO=(sudo)
fi

say() { printf 'setup: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

packages=(
	iproute2 iputils-ping util-linux procps kmod
	libcap-dev gcc
	iperf3 busybox-static passt slirp4netns strace dnsmasq-base tcpdump cpio nftables iptables
	# dhclient -6 is the real DHCPv6 client of the tests (busybox 1.35 has no udhcpc6)
	isc-dhcp-client
	# man -l and groff render the manual pages in tests/unit/test_manpages.py
	man-db groff-base
	# The VM tests (tests/vm/) boot Debian's kernel under qemu (passt mode):
	qemu-system-x86 linux-image-amd64
)

# The interpreter: Debian's python3 unless another one is already on PATH
# (for example a pyenv CPython, which brings its own headers and venv).
if ! command -v "$PYTHON" >/dev/null 2>&1; then
	packages+=(python3 python3-venv python3-dev)
else
	# Headers for building python-prctl.
	if ! "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
		2>/dev/null; then
		packages+=(python3-dev)
	fi
	# Debian ships venv's ensurepip separately.
	if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
		packages+=(python3-venv)
	fi
fi

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for p in "${packages[@]}"; do
	installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
	say "installing ${missing[*]}"
	"${SUDO[@]}" apt-get update -qq >/dev/null
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
	die "Python >= 3.11 required, $PYTHON is $("$PYTHON" -V 2>&1)"
fi

# The virtual environment: (re)created when missing or broken.
venv=$root/.venv
if ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	>/dev/null 2>&1; then
	say "creating $venv"
	rm -rf "$venv"
	"$PYTHON" -m venv "$venv"
fi

stamp=$venv/.passt-sep-setup
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -x "$venv/bin/pytest" ] || [ ! -x "$venv/bin/ruff" ] ||
	! "$venv/bin/python" -c 'import passt_sep' >/dev/null 2>&1; then
	say "installing passt-sep into $venv (editable, with test and bench extras)"
	"$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	printf '%s\n' "$want" >"$stamp"
fi

# pasta, passt and passt-sep as launchers that listen before site loads
# (passt_sep/launcher.py: python -IS, passt's socket ready within a few ms
# of exec); pip's console scripts are replaced, qrap stays pip's. Done on
# every run: a pip install above writes pip's scripts again.
"$venv/bin/python" -m passt_sep.launcher "$venv/bin" >/dev/null
