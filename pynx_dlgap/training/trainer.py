"""Training of the inpainting models: ``pynx-dlgap train``.

Resumable (a checkpoint of model, optimiser, step and data-stream state is
written every ``--ckpt-every`` steps and picked up by re-running the same
command), with a tqdm progress bar, a CSV log (``log.csv``) and a validation on
fixed held-out patches that compares the model with the log-linear prefill it
corrects (mean absolute error of log(I+1) inside the gap).

Data-parallel training with ``torchrun`` (DDP; the ``gloo`` backend on CPUs,
``nccl`` on GPUs): each process draws its own patch stream, rank 0 logs and
checkpoints::

    torchrun --nproc_per_node 2 -m pynx_dlgap.cli train --out runs/x --steps 1000

``--init WEIGHTS`` starts a new run from trained weights (fine-tuning, or a longer run
on other hardware); ``--workers N`` simulates the patches in N loader processes (GPU
training); ``--time-limit``/``--session-seconds`` as in ``pynx-dlgap train-phase``.
``--keep-every N`` keeps the model's weights every N steps (``ckpt_<step>.pt``), and
``--export W --average-last K`` exports the mean of the last K of them (checkpoint
averaging) instead of the last weights. ``--gap-target expected`` trains on the
simulator's noise-free counts in the gap instead of the Poisson ones (same input;
see :class:`pynx_dlgap.training.data.PatchStream`).

Checkpoints hold only tensors and plain numbers and are read back with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..inpaint.patches import INPAINT_CHANNELS, prepare_batch, to_counts
from ..normalize import normalize_patch
from .data import PatchStream
from .losses import CombinedInpaintLoss
from .schedule import atomic_save, cosine_lr, hardware, progress

__all__ = ["train", "export", "keep_weights", "kept_checkpoints", "average_state_dicts", "init_from_weights", "load_checkpoint", "validation_set", "evaluate_batches", "add_cli"]

DEFAULTS = dict(model="inpaint3d_small", dims=3, patch=32, batch=16, steps=20000, lr=1e-3, weight_decay=1e-4,
                warmup=100, bf16=None, channels_last=False, seed=1, val_seed=999_999, val_batches=8,
                val_every=250, ckpt_every=250, w_mse=1.0, w_l1=0.0, w_ssim=0.5, w_grad=1.0, w_amp=1.0, regime="mixed",
                widths=list(range(1, 13)), source=64, threads=0, workers=0, time_limit=0.0, session_seconds=0.0,
                init="", keep_every=0, gap_target="measured")


def _dist():
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def validation_set(cfg, regimes=("mixed", "measured"), gap_target="measured"):
    """Fixed held-out patches: ``{regime: [(I, mask), ...]}`` (seeds disjoint from training).

    ``gap_target='expected'``: the same patches with the noise-free counts in the gap
    (the model input is unchanged; the truth it is scored against is).
    """
    out = {}
    for j, r in enumerate(regimes):
        st = PatchStream(seed=cfg["val_seed"] + j, batch=cfg["batch"], patch=cfg["patch"], dims=cfg["dims"],
                         regime=r, widths=cfg["widths"], source=cfg["source"], gap_target=gap_target)
        out[r] = [next(st) for _ in range(cfg["val_batches"])]
    return out


@torch.no_grad()
def evaluate_batches(model, batches, device="cpu", bf16=False, bound=True):
    """Gap errors of the model vs its log-linear prefill, averaged over patches.

    ``mae_log_*``: MAE of log(I+1); ``win_rate``: share of patches where the model's is
    lower; ``amp_*``: relative amplitude error ``sum (sqrt f - sqrt t)^2 / sum t``
    (what phase retrieval sees; patches with an empty gap are left out).
    ``bound``: fills bounded by the patch's measured maximum, as at inference (see ``to_counts``).
    """
    from ..evaluate.metrics import _amp
    from ..normalize import denormalize_patch
    model.eval()
    m_err, p_err, wins, n = 0.0, 0.0, 0, 0
    a_m, a_p, n_a = 0.0, 0.0, 0
    for I, m in batches:
        x, stats = prepare_batch(I, m, device=device)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            y = model(x)
        pred = to_counts(y, stats, bound=bound).cpu().numpy()
        pre = denormalize_patch(x[:, 0], stats).cpu().numpy()
        for b in range(I.shape[0]):
            g = m[b]
            t = np.log1p(I[b][g].astype(np.float64))
            e1 = np.abs(np.log1p(pred[b][g].astype(np.float64)) - t).mean()
            e0 = np.abs(np.log1p(pre[b][g].astype(np.float64)) - t).mean()
            m_err += e1
            p_err += e0
            wins += e1 < e0
            n += 1
            ti = I[b][g].astype(np.float64)
            if ti.sum() > 0:
                a_m += _amp(ti, pred[b][g].astype(np.float64))
                a_p += _amp(ti, pre[b][g].astype(np.float64))
                n_a += 1
    model.train()
    n_a = max(n_a, 1)
    return {"mae_log_model": m_err / n, "mae_log_loglinear": p_err / n, "win_rate": wins / n,
            "amp_model": a_m / n_a, "amp_loglinear": a_p / n_a}


def _model_spec(m):
    """A registry name, or a JSON model config ``{"class": ..., "kwargs": {...}}`` (string or dict)."""
    if isinstance(m, str) and m.lstrip().startswith("{"):
        return json.loads(m)
    return m


def init_from_weights(model, path, verbose=True):
    """Load trained weights (a .safetensors + card) into ``model``, which must have the same architecture."""
    from ..models.weights import load_weights
    init_model, init_card = load_weights(path)
    if init_model.config.get("kwargs") != model.config.get("kwargs"):
        raise ValueError(f"--init {path} holds a {init_card['architecture']} model, not {model.config}")
    model.load_state_dict(init_model.state_dict())
    if verbose:
        print(f"starting from {path} (sha256 {init_card['sha256'][:12]}...)")
    return init_card


def load_checkpoint(ckpt, model, opt, cfg, keys, device, legacy=None):
    """Resume from run checkpoint ``ckpt`` into ``model``/``opt``: ``None`` when there is none,
    else the checkpoint dict (step, seconds, ... for the caller).

    The run's ``cfg`` must agree with the checkpoint's on ``keys`` (same architecture and
    data); ``legacy`` gives the value of a key that checkpoints older than it lack. A slimmed
    checkpoint (no optimiser state) restarts AdamW's moments.
    """
    if not ckpt.exists():
        return None
    st = torch.load(ckpt, map_location=device, weights_only=True)
    saved = json.loads(st["config"])
    for k in keys:
        was = saved.get(k, (legacy or {}).get(k))
        if was != cfg[k]:
            raise ValueError(f"{ckpt} was trained with {k}={was!r}, not {cfg[k]!r}; use another --out")
    model.load_state_dict(st["model"])
    if "opt" in st:
        opt.load_state_dict(st["opt"])
    return st


def _lr(step, cfg, seconds=0.0):
    return cosine_lr(progress(step, seconds, cfg), step, cfg)


class _WorkerPatches(torch.utils.data.IterableDataset):
    """Batches of :class:`PatchStream` simulated in DataLoader worker processes (``--workers N``).

    Worker ``w`` of session ``s`` streams seed ``base + 100 + 16 s + w`` (single process; the
    in-process stream uses ``base + rank``)."""

    def __init__(self, cfg, session):
        super().__init__()
        self.cfg, self.session = cfg, int(session)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w = 0 if info is None else info.id
        torch.set_num_threads(1)
        c = self.cfg
        st = PatchStream(seed=c["seed"] * 1000 + 100 + 16 * self.session + w, batch=c["batch"], patch=c["patch"],
                         dims=c["dims"], regime=c["regime"], widths=c["widths"], source=c["source"],
                         gap_target=c["gap_target"])
        for I, m in st:
            yield torch.from_numpy(I), torch.from_numpy(m)


def train(out, **overrides):
    """Train (or resume) an inpainting model into folder ``out``; returns the final validation."""
    from tqdm import tqdm
    from ..models import build_model
    cfg = dict(DEFAULTS, **{k: v for k, v in overrides.items() if v is not None})
    out = Path(out)
    rank, world = _dist()
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and world > 1:
        torch.cuda.set_device(rank % torch.cuda.device_count())
    from ..precision import resolve_bf16
    cfg["bf16"] = resolve_bf16("auto" if cfg["bf16"] is None else cfg["bf16"], device, "training")
    torch.manual_seed(cfg["seed"])
    model = build_model(_model_spec(cfg["model"])).to(device)
    if cfg["channels_last"] and cfg["dims"] == 3:
        model = model.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    stream = PatchStream(seed=cfg["seed"] * 1000 + rank, batch=cfg["batch"], patch=cfg["patch"], dims=cfg["dims"],
                         regime=cfg["regime"], widths=cfg["widths"], source=cfg["source"],
                         gap_target=cfg["gap_target"])
    loss_fn = CombinedInpaintLoss(cfg["w_mse"], cfg["w_l1"], cfg["w_ssim"], cfg["w_grad"], cfg.get("w_amp", 0.0))
    ckpt = out / "checkpoint.pt"
    step, seconds, session = 0, 0.0, 0
    st = load_checkpoint(ckpt, model, opt, cfg, ("model", "dims", "patch"), device)
    if st is not None:
        step, seconds = int(st["step"]), float(st["seconds"])
        session = int(st["session"]) + 1 if "session" in st else 1
        stream.load_state_dict({"seed": int(st["stream_seed"][rank]), "k": int(st["stream_k"][rank])})
        if rank == 0:
            print(f"resuming {out} at step {step}")
    elif cfg["init"]:  # start from trained weights (fine-tuning / a longer run on new hardware)
        init_from_weights(model, cfg["init"], verbose=rank == 0)
    ddp = model
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg, indent=1))
    val = validation_set(cfg) if rank == 0 else None
    logf = out / "log.csv"
    fields = ["step", "seconds", "lr", "loss", "skipped", "mse", "l1", "ssim", "grad", "amp", "patches_per_s",
              "val_mixed_mae_model", "val_mixed_mae_loglinear", "val_mixed_win",
              "val_measured_mae_model", "val_measured_mae_loglinear", "val_measured_win",
              "val_mixed_amp_model", "val_mixed_amp_loglinear", "val_measured_amp_model",
              "val_measured_amp_loglinear"]
    if rank == 0 and not logf.exists():
        with open(logf, "w", newline="") as f:
            csv.writer(f).writerow(fields)
    bar = tqdm(total=cfg["steps"], initial=step, desc="train", disable=rank != 0, dynamic_ncols=True)
    last = {}
    t_last = time.perf_counter()
    s_start = seconds
    n_since = skipped = 0
    batches = stream
    if cfg["workers"]:
        if world > 1:
            raise ValueError("--workers is for single-process training (under torchrun each rank streams its own)")
        batches = iter(torch.utils.data.DataLoader(_WorkerPatches(cfg, session), batch_size=None,
                                                   num_workers=int(cfg["workers"]), prefetch_factor=4,
                                                   persistent_workers=True))
    model.train()
    while step < cfg["steps"]:
        I, m = next(batches)
        if torch.is_tensor(I):
            I, m = I.numpy(), m.numpy()
        x, _ = prepare_batch(I, m, device=device)
        # the target in the input's normalised space: its statistics come from the measured
        # voxels, identical in the truth and in the prefilled input
        gm = torch.from_numpy(m).to(device)
        It = torch.from_numpy(I).to(device)
        tn, tstats = normalize_patch(It, gm)
        gm = gm[:, None].float()
        if cfg["channels_last"] and cfg["dims"] == 3:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        elapsed = seconds + time.perf_counter() - t_last
        for g in opt.param_groups:
            g["lr"] = lr_now = _lr(step, cfg, elapsed)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=cfg["bf16"]):
            y = ddp(x)
        loss = loss_fn(y.float(), tn[:, None].float(), gm, It, tstats["span"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        # a non-finite loss or gradient (rare bf16 overflow) skips the update instead of poisoning the weights;
        # under DDP every rank takes the same decision (the gradients are already all-reduced)
        if torch.isfinite(gnorm) and torch.isfinite(loss.detach()):
            opt.step()
        else:
            skipped += 1
        step += 1
        n_since += I.shape[0] * world
        bar.update()
        over = ((cfg["time_limit"] and elapsed >= cfg["time_limit"])
                or (cfg["session_seconds"] and elapsed - s_start >= cfg["session_seconds"]))
        if world > 1:  # every rank stops at the same step
            flag = torch.tensor([float(bool(over))], device=device)
            torch.distributed.all_reduce(flag)
            over = bool(flag.item())
        if rank == 0 and (step % cfg["val_every"] == 0 or step == cfg["steps"] or over):
            now = time.perf_counter()
            seconds += now - t_last
            pps = n_since / (now - t_last)
            t_last, n_since = now, 0
            vm = evaluate_batches(model, val["mixed"], device, cfg["bf16"])
            vs = evaluate_batches(model, val["measured"], device, cfg["bf16"])
            last = dict(step=step, seconds=round(seconds, 1), lr=lr_now, loss=loss_fn.last["total"],
                        skipped=skipped,
                        mse=loss_fn.last.get("mse", 0), l1=loss_fn.last.get("l1", 0),
                        ssim=loss_fn.last.get("ssim", 0), grad=loss_fn.last.get("grad", 0),
                        amp=loss_fn.last.get("amp", 0), patches_per_s=pps,
                        val_mixed_mae_model=vm["mae_log_model"], val_mixed_mae_loglinear=vm["mae_log_loglinear"],
                        val_mixed_win=vm["win_rate"], val_measured_mae_model=vs["mae_log_model"],
                        val_measured_mae_loglinear=vs["mae_log_loglinear"], val_measured_win=vs["win_rate"],
                        val_mixed_amp_model=vm["amp_model"], val_mixed_amp_loglinear=vm["amp_loglinear"],
                        val_measured_amp_model=vs["amp_model"], val_measured_amp_loglinear=vs["amp_loglinear"])
            with open(logf, "a", newline="") as f:
                csv.writer(f).writerow([last[k] for k in fields])
            bar.set_postfix(loss=f"{last['loss']:.4f}", val=f"{vm['mae_log_model']:.3f}/{vm['mae_log_loglinear']:.3f}",
                            win=f"{vm['win_rate']:.2f}")
            t_last = time.perf_counter()
        if step % cfg["ckpt_every"] == 0 or step == cfg["steps"] or over:
            _save_ckpt(ckpt, model, opt, step, seconds, stream, cfg, rank, world, session)
        if rank == 0 and cfg["keep_every"] and step % int(cfg["keep_every"]) == 0:
            keep_weights(out, model, step, seconds, cfg)
        if over:
            if rank == 0:
                print(f"time reached at step {step}; re-run the same command to resume")
            break
    bar.close()
    return last


def _save_ckpt(path, model, opt, step, seconds, stream, cfg, rank, world, session=0):
    ks = torch.tensor([stream.k], dtype=torch.int64)
    ss = torch.tensor([stream.seed], dtype=torch.int64)
    if world > 1:
        allk = [torch.zeros_like(ks) for _ in range(world)]
        alls = [torch.zeros_like(ss) for _ in range(world)]
        torch.distributed.all_gather(allk, ks)
        torch.distributed.all_gather(alls, ss)
        ks, ss = torch.cat(allk), torch.cat(alls)
    if rank != 0:
        return
    st = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "seconds": seconds,
          "stream_k": ks, "stream_seed": ss, "session": session, "config": json.dumps(cfg),
          "hardware": hardware(next(model.parameters()).device.type)}
    atomic_save(st, path)


def keep_weights(out, model, step, seconds, cfg):
    """Keep the model's weights at ``step`` as ``out/ckpt_{step}.pt`` (no optimiser state):
    the checkpoints :func:`export` can average (``keep_every``)."""
    path = Path(out) / f"ckpt_{int(step)}.pt"
    atomic_save({"model": model.state_dict(), "step": int(step), "seconds": float(seconds),
                 "config": json.dumps(cfg)}, path)
    return path


def kept_checkpoints(out) -> list:
    """``[(step, path), ...]`` of the weights kept in run folder ``out`` (``ckpt_{step}.pt``), by step."""
    found = []
    for f in Path(out).glob("ckpt_*.pt"):
        tail = f.stem[5:]
        if tail.isdigit():
            found.append((int(tail), f))
    return sorted(found)


def average_state_dicts(states):
    """The mean of several state dicts of one architecture: floating tensors averaged in float64
    and cast back to their dtype; other tensors (integer buffers) must agree and are kept."""
    if not states:
        raise ValueError("no state dicts to average")
    keys = list(states[0])
    for s in states[1:]:
        if list(s) != keys:
            raise ValueError("the checkpoints to average hold different architectures")
    out = {}
    for k in keys:
        ts = [s[k] for s in states]
        if ts[0].is_floating_point():
            out[k] = (sum(t.double() for t in ts) / len(ts)).to(ts[0].dtype)
        else:
            if any(not torch.equal(t, ts[0]) for t in ts[1:]):
                raise ValueError(f"non-floating tensor {k} differs between the checkpoints")
            out[k] = ts[0].clone()
    return out


def export(out, weights, extra_card=None, average: int = 0):
    """Write the trained model of run folder ``out`` as shipped weights + JSON card.

    ``average`` = K > 1: the weights are the mean of the last K kept checkpoints
    (``ckpt_{step}.pt``, written every ``keep_every`` steps; checkpoint averaging, which
    smooths the noise of the last steps of a run); the card lists their steps.
    """
    from ..models import build_model
    from ..models.weights import save_weights
    out = Path(out)
    st = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    cfg = json.loads(st["config"])
    model = build_model(_model_spec(cfg["model"]))
    averaged = []
    if average and int(average) > 1:
        kept = kept_checkpoints(out)
        if len(kept) < int(average):
            raise ValueError(f"{out} keeps {len(kept)} checkpoints (ckpt_<step>.pt); --average-last {average} "
                             f"needs at least that many (train with --keep-every)")
        kept = kept[-int(average):]
        states = [torch.load(f, map_location="cpu", weights_only=True)["model"] for _, f in kept]
        model.load_state_dict(average_state_dicts(states))
        averaged = [s for s, _ in kept]
    else:
        model.load_state_dict(st["model"])
    rows = list(csv.DictReader(open(out / "log.csv")))
    card = {
        "task": "inpaint",
        "input": {"patch": [cfg["patch"]] * cfg["dims"], "channels": list(INPAINT_CHANNELS),
                  "normalisation": "log(I+1) min-max over measured voxels of each patch "
                                   "(pynx_dlgap.normalize); gap prefilled by log-linear interpolation; "
                                   "output = prefill + correction (residual), normalised log space"},
        "gap_widths_supported": [min(cfg["widths"]), max(cfg["widths"])],
        "training": {"steps": int(st["step"]), "seconds": float(st["seconds"]), "batch": cfg["batch"],
                     "patches_seen": int(st["step"]) * cfg["batch"], "lr": cfg["lr"], "bf16": cfg["bf16"],
                     "loss": {k: cfg.get(k, 0.0) for k in ("w_mse", "w_l1", "w_ssim", "w_grad", "w_amp")},
                     "hardware": st.get("hardware", "unknown"),
                     "seed": cfg["seed"]},
        "data_recipe": {"generator": "pynx_dlgap.training.data.PatchStream", "regime": cfg["regime"],
                        "source_shape": [cfg["source"]] * cfg["dims"], "widths": cfg["widths"],
                        "augment": "flux x10**U(-1,1) + fresh Poisson noise, flips, y<->x transposition",
                        "gap_target": cfg.get("gap_target", "measured"),
                        "layouts": "plane (y or x) / cross (25%) / several (10%), random positions incl. edges"},
        "validation_last": {k: float(v) for k, v in rows[-1].items() if k.startswith("val_")} if rows else {},
    }
    if averaged:
        card["training"]["averaged_checkpoint_steps"] = averaged
    card.update(extra_card or {})
    return save_weights(model, weights, card)


def add_cli(sub):
    p = sub.add_parser("train", help="train (or resume) a gap-inpainting model",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, log.csv, config.json)")
    for k, v in DEFAULTS.items():
        if k == "bf16":
            p.add_argument("--bf16", dest=k, action=__import__("argparse").BooleanOptionalAction, default=None,
                           help="bf16 autocast (default: where the device runs it natively, a GPU or a CPU "
                                "with AVX512-BF16/AMX; elsewhere float32)")
        elif k == "gap_target":
            p.add_argument("--gap-target", dest=k, choices=["measured", "expected"], default=None,
                           help="the training target in the gap: the Poisson counts (default) or the simulator's "
                                "noise-free expected counts (the input is the same either way)")
        elif isinstance(v, bool):
            p.add_argument(f"--{k.replace('_', '-')}", dest=k, action=__import__("argparse").BooleanOptionalAction,
                           default=None, help=f"(default {v})")
        elif isinstance(v, list):
            p.add_argument(f"--{k.replace('_', '-')}", dest=k, type=int, nargs="+", default=None,
                           help=f"(default {v[0]}..{v[-1]})")
        else:
            p.add_argument(f"--{k.replace('_', '-')}", dest=k, type=type(v), default=None, help=f"(default {v})")
    p.add_argument("--export", default=None, help="after training, write weights (.safetensors) + card here")
    p.add_argument("--average-last", type=int, default=0,
                   help="with --export: export the mean of the last K kept checkpoints (see --keep-every)")

    def run(a):
        kw = {k: getattr(a, k) for k in DEFAULTS}
        if a.average_last < 0 or (a.average_last and not a.export):
            raise SystemExit("--average-last K needs K >= 0 and --export")
        if a.average_last > 1 and not (a.keep_every or kept_checkpoints(a.out)):  # before any training
            raise SystemExit(f"--average-last {a.average_last} averages kept checkpoints: train with --keep-every N")
        last = train(a.out, **kw)
        rank, _ = _dist()
        if rank == 0:
            print(json.dumps(last, indent=1))
            if a.export:
                card = export(a.out, a.export, average=a.average_last)
                print(f"weights -> {a.export} (sha256 {card['sha256'][:12]}...)")
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # every rank reaches this point before any tears gloo down (a rank leaving early aborted
            # with "terminate called without an active exception")
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
    p.set_defaults(func=run)
