#!/usr/bin/env bash
# Sourced by demo.sh and test.sh: a venv with a torch/torchvision pair that imports together, then this package.
# Environment: VENV (default .venv in the repo), PYTHON (interpreter that creates a missing venv, default
# python3.11), EXTRAS (pip extras, e.g. "[test]"). Sets PY to the venv's python.
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

echo "== pip install -e '.${EXTRAS:-}'"
"$PY" -m pip install "${PIP_OPTS[@]}" -q -e ".${EXTRAS:-}"
