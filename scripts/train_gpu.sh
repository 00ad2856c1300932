#!/usr/bin/env bash
# Train the shipped models on one GPU machine at once, in the background of each other:
# the 3-D phase model, the 2-D phase model and the 3-D inpainting model (started from
# the shipped weights, pynx_dlgap/weights/inpaint3d.safetensors). Each run is time-budgeted and resumable
# (re-run to continue). Usage: scripts/train_gpu.sh SECONDS [OUTDIR]
# Data are simulated on the CPU cores by DataLoader workers (the GPU waits on them on a 16-core
# machine): 9 workers for the 3-D phase model, 2 for the 2-D one, 4 for inpainting.
set -u
SECS=${1:?seconds of training}
OUT=${2:-runs}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$OUT"
$PY -m pynx_dlgap.cli train-phase --out runs/phase3d --dims 3 --shape 64 --batch 32 --workers 9 --views 4 \
    --steps 100000 --time-limit "$SECS" --lr 1e-3 --val-n 16 --val-every 200 --ckpt-every 200 > "$OUT/phase3d.log" 2>&1 &
$PY -m pynx_dlgap.cli train-phase --out runs/phase2d --dims 2 --shape 128 --batch 64 --workers 2 --views 4 \
    --steps 100000 --time-limit "$SECS" --lr 1e-3 --val-n 32 --val-every 200 --ckpt-every 200 > "$OUT/phase2d.log" 2>&1 &
$PY -m pynx_dlgap.cli train --out runs/inpaint3d_gpu --no-bf16 --batch 32 --workers 4 --steps 1000000 --lr 5e-4 \
    --init pynx_dlgap/weights/inpaint3d.safetensors --time-limit "$SECS" --val-every 500 --ckpt-every 500 > "$OUT/inpaint3d.log" 2>&1 &
wait
tail -c 1500 "$OUT"/*.log
