"""Training of the reciprocal-phase models: ``pynx-dlgap train-phase``.

Loss: the weighted coherent average (WCA, Masto et al. 2025),
``1 - |sum w exp(i(phi_pred - phi_true))| / sum w`` with ``w`` the normalised
log-intensity, minimised over the twin ``(phi, -phi)``
(:func:`pynx_dlgap.training.losses.wca_loss`); ``--loss-weight amplitude`` weights by the
normalised amplitude ``sqrt(I / max I)`` instead (:func:`pynx_dlgap.phase.inputs.phase_weight`). The
validation WCA in ``log.csv`` always uses the log weight, so runs compare. Data: :class:`PhaseStream`
(simulated on the fly in ``--workers`` loader processes), with a curriculum over
strain: the largest Bragg phase range drawn rises linearly from
``--phase-start`` to ``--phase-final`` over the first ``--ramp`` of the steps.
``--data-centre peak`` (default since 0.7.15) centres every training and validation pattern on
its masked intensity maximum, where inference centres the model's box; ``q0`` centres it on the
unstrained Bragg position ``q = 0``, as the weights up to 0.7.14 were trained
(:func:`pynx_dlgap.training.phase_data.simulate_phase_crystal`). At 4 pi the two differ by a median
4-7 px.

``--time-limit S`` makes the run a time budget (S seconds of training in total,
over resumed sessions: learning rate and curriculum follow the elapsed share);
``--session-seconds S`` stops this session after S seconds (checkpointed);
``--init WEIGHTS`` starts a new run from trained weights.
Resumable like ``pynx-dlgap train`` (``checkpoint.pt``, read with
``weights_only=True``; re-run the same command), tqdm progress, ``log.csv`` with
the validation WCA at phase ranges pi, 2 pi and 4 pi on fixed held-out crystals.
Uses the GPU when torch sees one (bf16 autocast there by default)::

    pynx-dlgap train-phase --out runs/phase3d --dims 3 --steps 6000 --batch 24 --workers 14 \\
        --export pynx_dlgap/weights/phase3d.safetensors
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..phase.inputs import PHASE_CHANNELS, WEIGHT_KINDS, check_weight_kind
from .losses import wca_loss
from .schedule import atomic_save, cosine_lr, hardware, progress as _progress
from .phase_data import DATA_CENTRES, SIMULATOR_REFUSALS, VAL_SEED_BASE, PhaseStream, check_data_centre, phase_sample
from .trainer import _model_spec, init_from_weights, load_checkpoint

__all__ = ["train_phase", "export_phase", "phase_validation_set", "evaluate_phase", "add_cli", "PHASE_DEFAULTS",
           "VAL_LEVELS"]

PHASE_DEFAULTS = dict(model=None, dims=3, shape=64, batch=16, steps=4000, lr=1e-3, weight_decay=1e-4, warmup=200,
                      bf16=None, seed=1, workers=2, views=2, val_n=8, val_every=250, ckpt_every=250,
                      phase_start=math.pi, phase_final=5 * math.pi, ramp=0.4, regime="mixed", time_limit=0.0,
                      session_seconds=0.0, init="", loss_weight="log", data_centre="peak")

#: Validation levels (Bragg phase range, rad): the benchmark's pi, 2 pi, 4 pi.
VAL_LEVELS = (math.pi, 2 * math.pi, 4 * math.pi)


def phase_validation_set(dims, shape, n, regime="mixed", centre="q0"):
    """``{level: (x, phase, w)}`` stacked tensors of ``n`` fixed held-out crystals per level, centred
    by ``centre`` (:func:`~pynx_dlgap.training.phase_data.simulate_phase_crystal`)."""
    out = {}
    for j, lev in enumerate(VAL_LEVELS):
        xs, ps, ws = [], [], []
        seed = VAL_SEED_BASE + 10_000 * j
        while len(xs) < n:
            try:
                x, p, w, _ = phase_sample(seed, dims, (shape,) * dims, regime, lev, centre=centre)
                xs.append(x), ps.append(p), ws.append(w)
            except SIMULATOR_REFUSALS:
                pass
            seed += 1
        out[lev] = tuple(torch.from_numpy(np.stack(a)) for a in (xs, ps, ws))
    return out


@torch.no_grad()
def evaluate_phase(model, val, device, bf16=False, batch=8):
    """Mean twin-min WCA per validation level ``{level: wca}``."""
    model.eval()
    res = {}
    for lev, (x, p, w) in val.items():
        tot = 0.0
        for i in range(0, x.shape[0], batch):
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                y = model(x[i:i + batch].to(device))
            tot += float(wca_loss(y.float(), p[i:i + batch].to(device), w[i:i + batch].to(device),
                                  reduction="none").sum())
        res[lev] = tot / x.shape[0]
    model.train()
    return res


def default_model(dims):
    return "phase3d_small" if int(dims) == 3 else "phase2d_small"


def _phase_max(progress, cfg):
    r = min(1.0, progress / max(1e-9, cfg["ramp"]))
    return cfg["phase_start"] + r * (cfg["phase_final"] - cfg["phase_start"])


def train_phase(out, **overrides):
    """Train (or resume) a phase model into folder ``out``; returns the last log row."""
    from tqdm import tqdm
    from ..models import build_model
    cfg = dict(PHASE_DEFAULTS, **{k: v for k, v in overrides.items() if v is not None})
    cfg["model"] = cfg["model"] or default_model(cfg["dims"])
    check_weight_kind(cfg["loss_weight"])  # before the run folder is made
    check_data_centre(cfg["data_centre"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg["bf16"] is None:
        cfg["bf16"] = device == "cuda"
    from ..precision import resolve_bf16
    cfg["bf16"] = resolve_bf16(cfg["bf16"], device, "training")
    out = Path(out)
    torch.manual_seed(cfg["seed"])
    model = build_model(_model_spec(cfg["model"])).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    ckpt = out / "checkpoint.pt"
    step, seconds, session = 0, 0.0, 0
    # a run keeps its data: runs before 0.7.15 (no data_centre in their config) were q0-centred
    st = load_checkpoint(ckpt, model, opt, cfg, ("model", "dims", "shape", "data_centre"), device,
                         legacy={"data_centre": "q0"})
    if st is not None:
        step, seconds, session = int(st["step"]), float(st["seconds"]), int(st["session"]) + 1
        print(f"resuming {out} at step {step}")
    elif cfg["init"]:
        init_from_weights(model, cfg["init"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    ds = PhaseStream(cfg["dims"], cfg["shape"], cfg["regime"], _phase_max(_progress(step, seconds, cfg), cfg),
                     cfg["views"],
                     seed_base=cfg["seed"] * 100_000_000, session=session, weight=cfg["loss_weight"],
                     centre=cfg["data_centre"])
    nw = int(cfg["workers"])
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg["batch"], num_workers=nw,
                                         pin_memory=device == "cuda", prefetch_factor=4 if nw else None,
                                         persistent_workers=nw > 0)
    val = phase_validation_set(cfg["dims"], cfg["shape"], cfg["val_n"], cfg["regime"], cfg["data_centre"])
    logf = out / "log.csv"
    fields = ["step", "seconds", "lr", "phase_max", "loss", "samples_per_s"] + [f"val_wca_{i + 1}pi"
                                                                               for i in (0, 1, 3)]
    if not logf.exists():
        with open(logf, "w", newline="") as f:
            csv.writer(f).writerow(fields)
    bar = tqdm(total=cfg["steps"], initial=step, desc=f"train-phase {cfg['dims']}d", dynamic_ncols=True)
    it = iter(loader)
    t_last = time.perf_counter()
    s_start = seconds
    n_since, run_loss, n_loss = 0, 0.0, 0
    last = {}
    model.train()
    while step < cfg["steps"]:
        x, p, w = next(it)
        x, p, w = (a.to(device, non_blocking=True) for a in (x, p, w))
        elapsed = seconds + time.perf_counter() - t_last
        prog = _progress(step, elapsed, cfg)
        for g in opt.param_groups:
            g["lr"] = lr_now = cosine_lr(prog, step, cfg)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=cfg["bf16"]):
            y = model(x)
        loss = wca_loss(y.float(), p, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if torch.isfinite(gnorm) and torch.isfinite(loss.detach()):
            opt.step()
        step += 1
        ds.phase_max.value = _phase_max(prog, cfg)
        n_since += x.shape[0]
        run_loss += float(loss.detach())
        n_loss += 1
        bar.update()
        over = ((cfg["time_limit"] and elapsed >= cfg["time_limit"])
                or (cfg["session_seconds"] and elapsed - s_start >= cfg["session_seconds"]))
        if step % cfg["val_every"] == 0 or step == cfg["steps"] or over:
            now = time.perf_counter()
            seconds += now - t_last
            v = evaluate_phase(model, val, device, cfg["bf16"])
            last = dict(step=step, seconds=round(seconds, 1), lr=lr_now, phase_max=ds.phase_max.value,
                        loss=run_loss / max(1, n_loss), samples_per_s=n_since / (now - t_last),
                        **{f"val_wca_{i + 1}pi": v[lev] for i, lev in zip((0, 1, 3), VAL_LEVELS)})
            with open(logf, "a", newline="") as f:
                csv.writer(f).writerow([last[k] for k in fields])
            bar.set_postfix(loss=f"{last['loss']:.3f}", pi=f"{v[VAL_LEVELS[0]]:.3f}",
                            pi4=f"{v[VAL_LEVELS[2]]:.3f}")
            n_since, run_loss, n_loss = 0, 0.0, 0
            t_last = time.perf_counter()
        if step % cfg["ckpt_every"] == 0 or step == cfg["steps"] or over:
            st = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "seconds": seconds,
                  "session": session, "config": json.dumps(cfg),
                  "hardware": hardware(device)}
            atomic_save(st, ckpt)
        if over:
            done = cfg["time_limit"] and elapsed >= cfg["time_limit"]
            print(f"{'time budget' if done else 'session time'} reached at step {step}"
                  + ("" if done else "; re-run the same command to resume"))
            break
    bar.close()
    return last


def export_phase(out, weights, extra_card=None):
    """Write the trained phase model of run folder ``out`` as weights + JSON card."""
    from ..models import build_model
    from ..models.weights import save_weights
    out = Path(out)
    st = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    cfg = json.loads(st["config"])
    model = build_model(_model_spec(cfg["model"]))
    model.load_state_dict(st["model"])
    rows = list(csv.DictReader(open(out / "log.csv")))
    d = cfg["dims"]
    card = {
        "task": "phase",
        "input": {"shape": [cfg["shape"]] * d, "channels": list(PHASE_CHANNELS[d]),
                  "normalisation": "log(I+1)/log(max measured I+1), masked voxels 0 (pynx_dlgap.phase.inputs); "
                                   + DATA_CENTRES[cfg.get("data_centre", "q0")],
                  "output": "unit phasor (cos, sin) of the reciprocal-space phase of the object centred on "
                            "its centre of mass, 0 at the Bragg peak, up to the twin (phi(q) -> -phi(q))"},
        "training": {"steps": int(st["step"]), "seconds": float(st["seconds"]), "batch": cfg["batch"],
                     "samples_seen": int(st["step"]) * cfg["batch"], "lr": cfg["lr"], "bf16": cfg["bf16"],
                     "loss": f"weighted coherent average, w = {WEIGHT_KINDS[cfg.get('loss_weight', 'log')]}, "
                             "min over the twin",
                     "hardware": st.get("hardware", "unknown"),
                     "seed": cfg["seed"]},
        "data_recipe": {"generator": "pynx_dlgap.training.phase_data.PhaseStream", "regime": cfg["regime"],
                        "shape": [cfg["shape"]] * d, "views_per_crystal": cfg["views"],
                        "phase_range": f"U(0, phase_max), phase_max {cfg['phase_start']:.2f} -> "
                                       f"{cfg['phase_final']:.2f} rad over the first {cfg['ramp']:.0%} of steps",
                        "augment": "axis permutations, q -> -q flips, flux x10**U(-1,0.5) + fresh Poisson noise",
                        "gaps": "simulator's layouts on half of the crystals (masked in the input)",
                        "centre": cfg.get("data_centre", "q0")},
        "validation_last": {k: float(v) for k, v in rows[-1].items() if k.startswith("val_")} if rows else {},
    }
    card.update(extra_card or {})
    # float16 storage halves the file (5.6 M params: 11 MB); the model computes in float32 after loading
    return save_weights(model, weights, card, dtype=torch.float16)


def add_cli(sub):
    p = sub.add_parser("train-phase", help="train (or resume) a reciprocal-phase model",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, log.csv, config.json)")
    for k, v in PHASE_DEFAULTS.items():
        flag = f"--{k.replace('_', '-')}"
        if k == "bf16":
            p.add_argument(flag, dest=k, action=argparse.BooleanOptionalAction, default=None,
                           help="bf16 autocast (default: on with a GPU, off on the CPU)")
        elif k == "loss_weight":
            p.add_argument(flag, dest=k, choices=tuple(WEIGHT_KINDS), default=None,
                           help="loss weight w of the WCA: normalised log-intensity (default, as Masto et al. "
                                "2025) or amplitude sqrt(I/max I)")
        elif k == "data_centre":
            p.add_argument(flag, dest=k, choices=tuple(DATA_CENTRES), default=None,
                           help="centre of the training patterns: their masked intensity maximum (default, "
                                "where inference centres the box) or q = 0 (the rule up to 0.7.14)")
        elif k == "model":
            p.add_argument(flag, dest=k, default=None, help="registered model name (default phase3d_small / "
                                                            "phase2d_small)")
        else:
            p.add_argument(flag, dest=k, type=type(v), default=None, help=f"(default {v})")
    p.add_argument("--export", default=None, help="after training, write weights (.safetensors) + card here")

    def run(a):
        last = train_phase(a.out, **{k: getattr(a, k) for k in PHASE_DEFAULTS})
        print(json.dumps(last, indent=1))
        if a.export:
            card = export_phase(a.out, a.export)
            print(f"weights -> {a.export} (sha256 {card['sha256'][:12]}...)")
    p.set_defaults(func=run)
