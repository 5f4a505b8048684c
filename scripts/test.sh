#!/usr/bin/env bash
# Install (if needed) and run the test suite: the ONE place that says how tests are run.
# Used by .ci/run; README points here.
#
#   bash scripts/test.sh                 # default suite (pytest.ini: -m "not slow")
#   bash scripts/test.sh -m slow         # arguments replace the default 'tests' and go to pytest
#   bash scripts/test.sh tests/test_registration.py
#
# Environment: VENV (default .venv in the repo), PYTHON (interpreter that creates a missing venv, default
# python3.11).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
PIP_OPTS=(--disable-pip-version-check --progress-bar off)

if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating venv $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# torch / torchvision: keep a pair that imports together (e.g. a user's own CUDA build); otherwise install
# the pinned pair from constraints.txt. A mismatched pair fails on import ("operator torchvision::nms does
# not exist") and nnU-Net's trainer search then crashes.
if ! "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
    echo "== installing the pinned torch / torchvision pair (constraints.txt)"
    "$PY" -m pip install "${PIP_OPTS[@]}" -c constraints.txt torch torchvision
fi

echo "== pip install -e '.[test]'"
"$PY" -m pip install "${PIP_OPTS[@]}" -q -e '.[test]'

echo "== pytest"
# no arguments: the whole tests/ folder; with arguments (paths, -k, -m ...) pytest.ini's testpaths applies
exec "$PY" -m pytest -q -x -p no:cacheprovider "${@:-tests}"
