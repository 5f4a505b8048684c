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

echo "== pytest"
# no arguments: the whole tests/ folder; with arguments (paths, -k, -m ...) pytest.ini's testpaths applies
exec "$PY" -m pytest -q -x -p no:cacheprovider "${@:-tests}"
