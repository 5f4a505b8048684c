#!/usr/bin/env bash
# Install (if needed) and run the test suite: the ONE place that says how tests are run.
# Used by .ci/run; README points here.
#
#   bash scripts/test.sh                 # default suite (pytest.ini: -m "not slow")
#   bash scripts/test.sh -m slow         # arguments replace the default 'tests' and go to pytest
#   bash scripts/test.sh tests/test_registration.py
#
# Environment: VENV (default .venv in the repo), PYTHON (interpreter that creates a missing venv, default
# python3.11); see scripts/install.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
EXTRAS="[test]" source scripts/install.sh

echo "== pytest (default suite; the slow end-to-end matrix: bash scripts/test.sh -m slow)"
# -v: one line per test as it runs (long tests also print each real-CLI call they make); -rs: why tests were
# skipped; --durations: the slowest tests at the end. No arguments: the whole tests/ folder; with arguments
# (paths, -k, -m ...) those go to pytest.
# --basetemp: a folder of this run's own for every tmp_path, not pytest's /tmp/pytest-of-$USER/pytest-N, which every
# pytest on the machine numbers and cleans; removed when the suite passes, kept (and named) when it fails.
BASETEMP="$(mktemp -d "${TMPDIR:-/tmp}/nnunet-anatomask-tests.XXXXXX")"
rc=0
"$PY" -m pytest -v -rs --durations=15 -p no:cacheprovider --basetemp "$BASETEMP" "${@:-tests}" || rc=$?
if [ "$rc" -eq 0 ]; then rm -rf "$BASETEMP"; else echo "== the tests' files are kept in $BASETEMP"; fi
exit "$rc"
