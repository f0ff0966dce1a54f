#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The project's test command (what CI runs): install what is missing
# (scripts/setup.sh), lint with ruff, run pytest. Extra arguments go to
# pytest, e.g. scripts/test.sh tests/unit -x
#
# Exit status: pytest's; "no tests collected" (pytest's 5) counts as a
# failure, and so does hitting the time limit (TEST_TIMEOUT seconds,
# default 1500). Under CI (CI=true) integration tests that cannot run are
# an error, not a skip (PASST_SEP_REQUIRE_INTEGRATION, see tests/conftest.py).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

scripts/setup.sh || { echo "test: scripts/setup.sh failed" >&2; exit 1; }

.venv/bin/ruff check . || { echo "test: ruff found problems" >&2; exit 1; }

if [ "${CI:-}" = true ]; then
	export PASST_SEP_REQUIRE_INTEGRATION=${PASST_SEP_REQUIRE_INTEGRATION:-1}
fi

timeout --foreground --kill-after=30 "${TEST_TIMEOUT:-1500}" .venv/bin/pytest -q "$@"
rc=$?
case $rc in
5) echo "test: pytest collected no tests" >&2; rc=1 ;;
124 | 137) echo "test: pytest did not finish within ${TEST_TIMEOUT:-1500}s" >&2 ;;
esac
exit $rc
