"""Fine-tuning an inpainting model on the measured pattern itself: ``pynx-dlgap finetune``.

A pattern unlike the simulator's (another detector, background, count level)
carries its own training data: every measured voxel away from the gap. The
fine-tuning draws patches of the pattern, cuts random artificial gaps into them
(widths of the pattern's own gaps, planes and crosses, flips and y/x
transposition), and trains the model to fill them with the training losses
(:class:`~pynx_dlgap.training.losses.CombinedInpaintLoss`, amplitude term
included). Voxels of the real gap are unknown: they are masked in the input and
left out of the loss.

Held-back data
    The self-check's shifted copies of the gap
    (:func:`pynx_dlgap.inpaint.selfcheck.heldout_masks`) are **never shown** to
    the fine-tuning, neither as input nor as target: they are masked like the
    real gap. The same copies then score the model before and after, and
    log-linear interpolation, on data the fine-tuning did not see
    (:func:`pynx_dlgap.inpaint.selfcheck.self_check`).

The result is a new weights file with its card (the parent model's card plus a
``finetune`` section: pattern, steps, before/after scores); the parent weights
are never overwritten.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .._checks import check_pattern

__all__ = ["finetune", "finetune_patches", "add_cli", "FINETUNE_DEFAULTS"]

FINETUNE_DEFAULTS = dict(epochs=4, patches_per_epoch=64, batch=8, lr=2e-4, seed=0, w_mse=1.0, w_l1=0.0,
                         w_ssim=0.5, w_grad=1.0, w_amp=2.0, sep=3)


def finetune_patches(iobs, known, widths, patch, rng, n, p_cross=0.25, max_tries=50):
    """``n`` training patches ``(I, input_mask, loss_mask)`` drawn from one pattern.

    ``known``: True where the truth may be used (measured, not held back). Each patch
    gets a random gap layout (``widths``); its input mask is ``~known | gap``, its loss
    mask ``gap & known``. Patches whose loss mask is empty or whose input is fully
    masked are redrawn (at most ``max_tries`` times each).
    """
    from ..simulate import gaps as G
    dims = iobs.ndim
    out = []
    for _ in range(n):
        for _try in range(max_tries):
            lo = [int(rng.integers(0, s - p + 1)) for s, p in zip(iobs.shape, patch)]
            sl = tuple(slice(a, a + p) for a, p in zip(lo, patch))
            Ip, kp = iobs[sl], known[sl]
            gap = G.random_layout(rng, patch, widths=widths, p_cross=p_cross, p_multi=0.0).mask(patch)
            mi, ml = ~kp | gap, gap & kp
            if ml.sum() >= 8 and not mi.all():
                break
        else:
            raise RuntimeError("could not draw a fine-tuning patch with measured voxels in an artificial gap")
        for ax in range(dims):
            if rng.random() < 0.5:
                Ip, mi, ml = np.flip(Ip, ax), np.flip(mi, ax), np.flip(ml, ax)
        if rng.random() < 0.5 and patch[-1] == patch[-2]:
            Ip, mi, ml = (np.swapaxes(x, -1, -2) for x in (Ip, mi, ml))
        out.append(tuple(np.ascontiguousarray(x) for x in (Ip, mi, ml)))
    return out


def finetune(iobs, mask, model, *, epochs=None, patches_per_epoch=None, batch=None, lr=None, seed=None,
             device=None, progress=True, **loss_weights):
    """Fine-tune ``model`` (in place) on one pattern; returns a report dict.

    :param iobs, mask: the measured pattern and its mask (True = not measured); never modified.
    :param model: an inpainting model (its ``.card`` is read for the patch size).
    :returns: ``{'before': SelfCheck dict, 'after': SelfCheck dict, 'steps', 'patches', 'seconds', ...}``.
    """
    from tqdm import tqdm
    from ..inpaint.infer import _patch_of
    from ..inpaint.patches import prepare_batch
    from ..inpaint.selfcheck import REPS, heldout_copies, self_check
    from ..normalize import normalize_patch
    from ..simulate.gaps import GapLayout
    from .losses import CombinedInpaintLoss
    cfg = dict(FINETUNE_DEFAULTS)
    cfg.update({k: v for k, v in dict(epochs=epochs, patches_per_epoch=patches_per_epoch, batch=batch, lr=lr,
                                      seed=seed).items() if v is not None})
    cfg.update({k: float(v) for k, v in loss_weights.items() if v is not None})
    unknown = set(cfg) - set(FINETUNE_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown fine-tuning options {sorted(unknown)}")
    if int(cfg["epochs"]) < 1 or int(cfg["patches_per_epoch"]) < 1 or int(cfg["batch"]) < 1:
        raise ValueError("epochs, patches_per_epoch and batch must be >= 1")
    a, m = check_pattern(iobs, mask)
    card = getattr(model, "card", None) or {}
    P = _patch_of(model, card, None, a.ndim)
    if any(s < p for s, p in zip(a.shape, P)):
        raise ValueError(f"pattern shape {a.shape} is smaller than the model's patch {P}")
    layout, _ = GapLayout.from_mask(m)
    sup = card.get("gap_widths_supported") or [1, 12]
    wmax = int(max(sup))
    if layout.max_width > wmax:  # the model could never fill this gap: refuse before any work
        from .._checks import PatternError
        raise PatternError(f"gap(s) {', '.join(str(g) for g in layout if g.width > wmax)} wider than the "
                           f"{wmax} px this model supports (card gap_widths_supported {list(sup)}); "
                           "fine-tuning cannot change that: use a classical fill (pynx-dlgap fill)")
    held = heldout_copies(m, sep=int(cfg["sep"]), reps=REPS)  # the self-check's copies, kept out of training
    held_any = np.zeros_like(m)
    for c in held:
        held_any |= c.voxels
    known = ~m & ~held_any
    widths = sorted({min(int(w), wmax) for w in layout.widths}) or list(range(1, wmax + 1))
    # the real gaps' widths, and narrower ones (a few px are cheap to learn and common at module edges)
    widths = sorted(set(widths) | {max(1, w // 2) for w in widths})
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    before = self_check(a, m, model, masks=held, device=dev)
    loss_fn = CombinedInpaintLoss(cfg["w_mse"], cfg["w_l1"], cfg["w_ssim"], cfg["w_grad"], cfg["w_amp"])
    model.to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]), weight_decay=1e-4)
    rng = np.random.default_rng(int(cfg["seed"]))
    n_steps = int(cfg["epochs"]) * max(1, int(cfg["patches_per_epoch"]) // int(cfg["batch"]))
    t0 = time.perf_counter()
    losses = []
    bar = tqdm(total=n_steps, desc="finetune", disable=not progress, dynamic_ncols=True)
    for step in range(n_steps):
        for g in opt.param_groups:  # cosine decay to 10 %
            g["lr"] = float(cfg["lr"]) * (0.1 + 0.45 * (1 + np.cos(np.pi * step / n_steps)))
        batch_p = finetune_patches(a, known, widths, P, rng, int(cfg["batch"]))
        I = np.stack([b[0] for b in batch_p])
        mi = np.stack([b[1] for b in batch_p])
        ml = np.stack([b[2] for b in batch_p])
        x, _ = prepare_batch(I, mi, device=dev)
        It = torch.from_numpy(I).to(dev)
        tn, st = normalize_patch(It, torch.from_numpy(mi).to(dev))
        y = model(x)
        loss = loss_fn(y.float(), tn[:, None].float(), torch.from_numpy(ml).to(dev)[:, None].float(), It, st["span"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if torch.isfinite(gn) and torch.isfinite(loss.detach()):
            opt.step()
        losses.append(float(loss.detach()))
        bar.update()
        bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
    bar.close()
    model.eval()
    after = self_check(a, m, model, masks=held, device=dev)
    return {"before": before.to_dict(), "after": after.to_dict(), "steps": n_steps,
            "patches": n_steps * int(cfg["batch"]), "seconds": time.perf_counter() - t0, "config": cfg,
            "widths": widths, "held_back_voxels": int(held_any.sum()), "loss_first": losses[:5],
            "loss_last": losses[-5:], "summary_before": before.summary(), "summary_after": after.summary()}


def _table(rep) -> str:
    rows = [("log-linear", rep["before"]["scores"].get("loglinear")), ("model before", rep["before"]["scores"].get("dl")),
            ("model after", rep["after"]["scores"].get("dl"))]
    lines = [f"{'held-back gaps':<14s} {'amp err':>9s} {'MAE(log)':>9s} {'PCC(log)':>9s}"]
    for name, s in rows:
        if s:
            lines.append(f"{name:<14s} {s['amp']:9.4f} {s['mae_log']:9.4f} {s['pcc_log']:9.4f}")
    return "\n".join(lines)


def add_cli(sub):
    p = sub.add_parser("finetune", help="fine-tune the inpainting model on a measured pattern",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("data", help="pattern file (.npy, .npz, .h5, .cxi)")
    p.add_argument("--mask", required=True, help="mask file (True/1 = not measured)")
    p.add_argument("--data-key", default=None)
    p.add_argument("--mask-key", default=None)
    p.add_argument("-o", "--output", required=True, help="new weights (.safetensors; its .json card beside it)")
    p.add_argument("--weights", default=None, help="weights to start from (default: the shipped model)")
    for k in ("epochs", "patches_per_epoch", "batch", "seed"):
        p.add_argument(f"--{k.replace('_', '-')}", dest=k, type=int, default=None,
                       help=f"(default {FINETUNE_DEFAULTS[k]})")
    p.add_argument("--lr", type=float, default=None, help=f"(default {FINETUNE_DEFAULTS['lr']})")
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_run)


def _run(a):
    import json
    import sys
    from ..data.io import check_output_path, load_mask, load_pattern
    from ..inpaint.infer import DEFAULT_WEIGHTS, load_inpaint_model
    from ..models.weights import WeightsError, save_weights
    iobs = load_pattern(a.data, a.data_key)
    iobs, mask = check_pattern(iobs, load_mask(a.mask, a.mask_key, iobs.shape))
    out = Path(a.output)
    if out.suffix.lower() != ".safetensors":
        out = out.with_suffix(".safetensors")
    src = Path(a.weights) if a.weights else DEFAULT_WEIGHTS
    for f in (out, out.with_suffix(".json")):
        check_output_path(f, [a.data, a.mask, src, src.with_suffix(".json")], a.overwrite)
    try:
        model, card = load_inpaint_model(a.weights)
    except WeightsError as e:
        print(f"pynx-dlgap finetune: error: {e}", file=sys.stderr)
        return 2
    rep = finetune(iobs, mask, model, epochs=a.epochs, patches_per_epoch=a.patches_per_epoch, batch=a.batch,
                   lr=a.lr, seed=a.seed, device=a.device, progress=not a.quiet)
    # "inference" (the trust region): the before/after scores above were made with it, and it stays the default
    keep = {k: v for k, v in card.items() if k in ("task", "input", "gap_widths_supported", "training",
                                                   "data_recipe", "heldout_metrics", "inference")}
    keep["parent"] = {"weights": str(src), "sha256": card.get("sha256")}
    keep["finetune"] = {"pattern": str(a.data), "mask": str(a.mask), **{k: rep[k] for k in (
        "steps", "patches", "seconds", "config", "widths", "held_back_voxels", "before", "after")}}
    keep["status"] = f"fine-tuned on {a.data} from {src.name}"
    new = save_weights(model, out, json.loads(json.dumps(keep, default=float)))
    print(rep["summary_before"].replace("self-check", "before"))
    print(rep["summary_after"].replace("self-check", "after"))
    print(_table(rep))
    print(f"fine-tuned {rep['steps']} steps ({rep['patches']} patches) in {rep['seconds']:.1f} s -> {out} "
          f"(sha256 {new['sha256'][:12]}...)")
    return 0
