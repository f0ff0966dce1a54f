#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Demo: run pasta --config-net inside a throw-away test host (namespaces
# only, nothing leaves them) and show what the namespace gets. Needs root
# and scripts/setup.sh run once. Options: see scripts/demo.py --help.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$root/.venv/bin/python" ]; then
	echo "demo: $root/.venv missing: run scripts/setup.sh first" >&2
	exit 1
fi
exec timeout --kill-after=10 120 "$root/.venv/bin/python" "$root/scripts/demo.py" "$@"
