"""Inpainting weights on the trainer's fixed validation patches, with and without the fill bound.

The patches are the ones ``pynx-dlgap train`` validates on (``trainer.validation_set``:
seeds from ``val_seed`` 999999, disjoint from training and from the other benchmarks),
128 patches of 32³ per regime ('mixed' and 'measured'), gaps of 1-12 px. For each
weights file it prints, per regime, the mean over patches of MAE(log I) and the
relative amplitude error ``sum (sqrt f - sqrt t)^2 / sum t`` in the gap, for the
model with fills bounded by the patch's brightest measured voxel (as at inference,
``pynx_dlgap.inpaint.patches.to_counts``), for the raw model output, and for the
log-linear prefill the model corrects.

    python benchmarks/validation.py                      # the shipped weights
    python benchmarks/validation.py old.safetensors new.safetensors
    python benchmarks/validation.py --truth expected ...   # scored against the noise-free counts in the gap
"""
from __future__ import annotations

import argparse
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="*", help="weights files (default: the shipped inpainting weights)")
    ap.add_argument("--truth", choices=["measured", "expected"], default="measured",
                    help="score the gap against the Poisson counts (default) or the simulator's noise-free counts "
                         "(same patches, same model input)")
    a = ap.parse_args(argv)
    from pynx_dlgap.inpaint.infer import load_inpaint_model
    from pynx_dlgap.training.trainer import DEFAULTS, evaluate_batches, validation_set
    t0 = time.perf_counter()
    val = validation_set(DEFAULTS, gap_target=a.truth)
    print(f"# validation patches of pynx-dlgap train (val_seed {DEFAULTS['val_seed']}, "
          f"{DEFAULTS['val_batches'] * DEFAULTS['batch']} per regime, gaps {DEFAULTS['widths'][0]}-"
          f"{DEFAULTS['widths'][-1]} px; gap scored against the {a.truth} counts); "
          f"python benchmarks/validation.py --truth {a.truth} {' '.join(a.weights)}")
    print(f"\n{'weights':<14} {'regime':<9} {'fill':<10} {'mae_log':>8} {'amp':>8}")
    print("-" * 53)
    for w in a.weights or [None]:
        model, card = load_inpaint_model(w)
        tag = card.get("sha256", "?")[:12]
        for regime, batches in val.items():
            b = evaluate_batches(model, batches, bound=True)
            r = evaluate_batches(model, batches, bound=False)
            for fill, mae, amp in (("bounded", b["mae_log_model"], b["amp_model"]),
                                   ("raw", r["mae_log_model"], r["amp_model"]),
                                   ("loglinear", b["mae_log_loglinear"], b["amp_loglinear"])):
                print(f"{tag:<14} {regime:<9} {fill:<10} {mae:8.4f} {amp:8.4f}")
    print(f"\n# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
