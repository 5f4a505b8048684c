#!/usr/bin/env bash
# One command for a machine with a GPU: every scheme's stage-1 step against nnU-Net's compiled step under bf16 and
# fp16 autocast (PlainConvUNet 3d_fullres at 128^3, ResEnc-L, Primus-M), peak memory, end-to-end against step-only
# with nnU-Net's data loading, and a tiny end-to-end run of each scheme, in <= 8 min, into one results file
# (docs/performance.md). Installs .venv first when it cannot import the plugin (scripts/install.sh).
#
#   bash scripts/gpu_check.sh                                  # GPU: --size gpu, results in gpu_check_gpu_<date>.md
#   bash scripts/gpu_check.sh --size tiny --device cpu         # the CPU path (the default test suite runs it)
# Options: python -m nnunet_anatomask.gpu_report --help
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${VENV:-.venv}/bin/python"
if ! "$PY" -c "import nnunet_anatomask, nnunetv2" >/dev/null 2>&1; then
    source scripts/install.sh
fi
exec "$PY" -m nnunet_anatomask.gpu_report "$@"
