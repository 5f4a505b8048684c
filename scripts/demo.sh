#!/usr/bin/env bash
# From nothing to a prediction and pictures, on a small built-in example dataset:
# install -> generate data -> nnUNetv2_plan_and_preprocess -> nnUNetv2_train (stage 1 AnatoMask pretraining,
# stage 2 fine-tuning) -> nnUNetv2_predict. Everything lands in ./demo_output.
#
#   bash scripts/demo.sh                     # AnatoMask; DEMO_TRAINER=nnUNetTrainerRandomMask for the baseline
# Environment: DEMO_TRAINER, DEMO_DEVICE (cpu|cuda; default: cuda if available), VENV, PYTHON (see install.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/install.sh

TRAINER="${DEMO_TRAINER:-nnUNetTrainerAnatoMask}"
OUT="$PWD/demo_output"
export nnUNet_raw="$OUT/nnUNet_raw" nnUNet_preprocessed="$OUT/nnUNet_preprocessed" nnUNet_results="$OUT/nnUNet_results"
export nnUNet_def_n_proc=1
DEVICE="${DEMO_DEVICE:-$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}"
BIN="$(dirname "$PY")"

if [ ! -f "$nnUNet_raw/Dataset990_AnatoMaskDemo/dataset.json" ]; then
    echo "== generating the example dataset (6 training + 2 test cases, 32^3 voxels)"
    "$PY" -m nnunet_anatomask.example_data --raw "$nnUNet_raw" --id 990
fi
if [ ! -f "$nnUNet_preprocessed/Dataset990_AnatoMaskDemo/nnUNetPlans.json" ]; then
    echo "== nnUNetv2_plan_and_preprocess"
    "$BIN/nnUNetv2_plan_and_preprocess" -d 990 -c 3d_fullres -np 1
fi

echo "== nnUNetv2_train 990 3d_fullres 0 -tr $TRAINER (demo budget: 5+5 epochs x 10 iterations, on $DEVICE)"
[ "$DEVICE" = cpu ] && export nnUNet_n_proc_DA=0
export nnUNet_anatomask_pretrain_epochs="${nnUNet_anatomask_pretrain_epochs:-5}"
export nnUNet_anatomask_finetune_epochs="${nnUNet_anatomask_finetune_epochs:-5}"
export nnUNet_anatomask_iters_per_epoch="${nnUNet_anatomask_iters_per_epoch:-10}"
export nnUNet_anatomask_save_every="${nnUNet_anatomask_save_every:-1}"
CONTINUE=()
[ -d "$nnUNet_results/Dataset990_AnatoMaskDemo/${TRAINER}__nnUNetPlans__3d_fullres/fold_0" ] && CONTINUE=(--c)
"$BIN/nnUNetv2_train" 990 3d_fullres 0 -tr "$TRAINER" -device "$DEVICE" "${CONTINUE[@]}"
unset nnUNet_n_proc_DA

echo "== nnUNetv2_predict on imagesTs"
"$BIN/nnUNetv2_predict" -i "$nnUNet_raw/Dataset990_AnatoMaskDemo/imagesTs" -o "$OUT/predictions" -d 990 \
    -c 3d_fullres -f 0 -tr "$TRAINER" -device "$DEVICE" -npp 1 -nps 1

FOLD="$nnUNet_results/Dataset990_AnatoMaskDemo/${TRAINER}__nnUNetPlans__3d_fullres/fold_0"
echo
"$PY" -m nnunet_anatomask.run_summary "$FOLD"
cat <<MSG

Files:
  stage 1 (pretraining) curves:   $FOLD/pretraining/progress.png
  stage 1 masks/reconstructions:  $FOLD/pretraining/reconstruction_epoch_*.png
  stage 1 summary:                $FOLD/pretraining/summary.json
  stage 2 (nnU-Net) curves:       $FOLD/progress.png
  validation Dice:                $FOLD/validation/summary.json
  predictions of imagesTs:        $OUT/predictions
MSG
