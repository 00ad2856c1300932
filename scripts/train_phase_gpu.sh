#!/usr/bin/env bash
# Train the phase models on one 16-core GPU machine: the 3-D model (13 data workers) and the
# 2-D one (2 workers) side by side, each a time-budgeted run folder (resumable), optionally
# started from trained weights.
#
# Usage: scripts/train_phase_gpu.sh SECONDS TAG [INIT_DIR [EXPORT_DIR [extra train-phase args...]]]
#   INIT_DIR    holds phase3d.safetensors / phase2d.safetensors + cards ('' for none)
#   EXPORT_DIR  if given, the last checkpoint of each run is exported there afterwards
#               (phase3d.safetensors/.json, phase2d.safetensors/.json, log3d.csv, log2d.csv),
#               also when a run was stopped early, so that a lease that ends brings back weights
#   extra args  go to both runs (e.g. --seed 4 --phase-start 6.28); since 0.7.15 the training patterns
#               are centred on their intensity maximum (train-phase --data-centre peak, the default);
#               add --data-centre q0 to repeat the runs that trained the shipped weights
# Logs go to runs/TAG-3d.log and runs/TAG-2d.log.
set -u
SECS=${1:?seconds}; TAG=${2:?run tag}; INIT=${3:-}; EXPORT=${4:-}
shift $(( $# < 4 ? $# : 4 ))
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p runs
i3=(); i2=()
[ -n "$INIT" ] && i3=(--init "$INIT/phase3d.safetensors") && i2=(--init "$INIT/phase2d.safetensors")
# the trainer stops itself at the time budget; the timeout is only a guard
G=$((SECS + 180))
timeout $G $PY -m pynx_dlgap.cli train-phase --out "runs/phase3d_$TAG" --dims 3 --shape 64 --batch 32 --workers 13 \
    --views 6 --steps 100000 --time-limit "$SECS" --val-n 16 --val-every 200 --ckpt-every 200 "${i3[@]}" "$@" \
    > "runs/$TAG-3d.log" 2>&1 &
timeout $G $PY -m pynx_dlgap.cli train-phase --out "runs/phase2d_$TAG" --dims 2 --shape 128 --batch 64 --workers 2 \
    --views 4 --steps 100000 --time-limit "$SECS" --val-n 32 --val-every 200 --ckpt-every 200 "${i2[@]}" "$@" \
    > "runs/$TAG-2d.log" 2>&1 &
wait
if [ -n "$EXPORT" ]; then
    mkdir -p "$EXPORT"
    for d in 3 2; do
        R=runs/phase${d}d_$TAG
        [ -f "$R/checkpoint.pt" ] || { echo "no checkpoint in $R"; continue; }
        $PY -c "import sys; from pynx_dlgap.training.phase_trainer import export_phase
c = export_phase(sys.argv[1], sys.argv[2]); print(sys.argv[2], c['training']['steps'], 'steps', c['validation_last'])" \
            "$R" "$EXPORT/phase${d}d.safetensors"
        cp "$R/log.csv" "$EXPORT/log${d}d.csv"
    done
fi
