#!/usr/bin/env bash
# Train the phase models on one 16-core GPU machine: the 3-D model (13 data workers) and the
# 2-D one (2 workers) side by side, each a time-budgeted run folder (resumable), optionally
# started from trained weights. Usage: scripts/train_phase_gpu.sh SECONDS TAG [INIT_DIR]
# (INIT_DIR holds phase3d.safetensors / phase2d.safetensors + cards; logs go to runs/TAG-*.log)
set -u
SECS=${1:?seconds}; TAG=${2:?run tag}; INIT=${3:-}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p runs
i3=(); i2=()
[ -n "$INIT" ] && i3=(--init "$INIT/phase3d.safetensors") && i2=(--init "$INIT/phase2d.safetensors")
$PY -m pynx_dlgap.cli train-phase --out "runs/phase3d_$TAG" --dims 3 --shape 64 --batch 32 --workers 13 --views 6 \
    --steps 100000 --time-limit "$SECS" --val-n 16 --val-every 200 --ckpt-every 200 "${i3[@]}" > "runs/$TAG-3d.log" 2>&1 &
$PY -m pynx_dlgap.cli train-phase --out "runs/phase2d_$TAG" --dims 2 --shape 128 --batch 64 --workers 2 --views 4 \
    --steps 100000 --time-limit "$SECS" --val-n 32 --val-every 200 --ckpt-every 200 "${i2[@]}" > "runs/$TAG-2d.log" 2>&1 &
wait
