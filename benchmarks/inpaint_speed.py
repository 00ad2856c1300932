"""Whole-pattern DL inpainting speed: ours vs the reference strategy, same model, one run.

Pattern: a simulated 128³ crystal (regime 'measured', no background) with a 6-px
gap cross (one arm beside the Bragg peak, one just past it).

* **ours**: :func:`pynx_dlgap.inpaint.infer.inpaint`: the gap-only patch plan
  (patches centred on each gap plane, sliding with half-patch overlap, plus the
  crossing patches), batched model calls, window blending in log space
  (fp32, and bf16 autocast), with the trust region of the model card (``inpaint``'s
  default); also without it (``ours, no trust region``);
* **reference**: the strategy of the reference code (brief: "slides a 32³ window
  along the gap with stride 1 and calls the model one patch at a time, averaging
  overlaps"), re-implemented here with the *same* model and the same per-patch
  input preparation: for each gap plane, windows centred on the gap along its
  normal, at every position (stride 1) along the two other axes; one model call
  per window; every masked voxel of every window is averaged uniformly in log
  space. 2 x 97² = 18,818 calls for 128³. When the card has a trust region, the
  same calls also give the reference fill within it (``reference + trust region``,
  the correction of each window clipped as ``inpaint`` does; same time).

Both are timed in this process, one after the other, and scored in the gap
against the simulated truth: PCC and MAE of log(I+1), and the relative amplitude
error ``sum (sqrt f - sqrt t)^2 / sum t``. ``--tta K ...`` adds ours in bf16 with the test-time ensemble of K flip/transposition
views per patch (``inpaint(tta=K)``: K model calls per patch, averaged); ``--tta-bright K ...``
ours in bf16 with K views for the bright patches only (``inpaint(tta_bright=K)``: the
patches whose log-linear prefill reaches 1 % of the brightest measured voxel, beside the
Bragg peak, where the amplitude error is made).
``--ref-limit K`` times only K random
windows of the reference and extrapolates its time (the errors are then not
printed for it). Then ours on a 256×256×128 pattern (same recipe), in a child
process whose peak resident memory is reported.

    python benchmarks/inpaint_speed.py            # full reference (minutes on 2 CPU cores)
    python benchmarks/inpaint_speed.py --device cuda --ref-limit 2000   # on a GPU

``--device cuda`` runs both on the GPU (ours with the device-side prefill and blending,
the reference with one host-prepared patch per call, as the reference code does).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import time

import numpy as np


def _pattern(shape, seed):
    from pynx_dlgap.simulate import simulate_3d
    from pynx_dlgap.simulate.gaps import cross
    s = simulate_3d(seed, shape, "measured", floor=0.0, diffuse=0.0, gaps="none", crop_shift=[0, 0, 0],
                    phase_range=3.0, oversampling=[n / 24 for n in shape])
    c1, c2 = shape[1] // 2, shape[2] // 2
    m = cross(6, c1 - 9, c2 + 4).mask(shape)
    return s["intensity"], m


def reference_windows(mask, patch=32):
    """Window corners of the reference strategy: per gap plane, stride-1 windows centred on it."""
    from pynx_dlgap.simulate.gaps import GapLayout
    layout, _ = GapLayout.from_mask(mask)
    shape = mask.shape
    corners = []
    for g in layout:
        ax = g.axis % 3
        c = int(np.clip(g.start + g.width // 2 - patch // 2, 0, shape[ax] - patch))
        others = [a for a in range(3) if a != ax]
        for i in range(shape[others[0]] - patch + 1):
            for j in range(shape[others[1]] - patch + 1):
                lo = [0, 0, 0]
                lo[ax], lo[others[0]], lo[others[1]] = c, i, j
                corners.append(tuple(lo))
    return corners


def reference_fill(I, mask, model, corners, patch=32, device="cpu", trusts=(None,)):
    """One model call per window, uniform average of log(I+1) over every masked voxel of each.

    ``trusts``: the fills returned, one per trust region (None: the model's output as is;
    T: its correction clipped to +-T in log(I+1), as ``inpaint(trust=T)``), from the same
    model calls. Returns ``(fills, missed)`` (fills in the order of ``trusts``)."""
    import torch
    from pynx_dlgap.inpaint.patches import prepare_batch, to_counts
    acc = np.zeros((len(trusts),) + I.shape, np.float64)
    cnt = np.zeros(I.shape, np.float64)
    model.eval()
    with torch.inference_mode():
        for lo in corners:
            sl = tuple(slice(a, a + patch) for a in lo)
            mp_ = mask[sl]
            x, st = prepare_batch(I[sl][None], mp_[None], device=device)
            out = model(x)
            for k, t in enumerate(trusts):
                y = to_counts(out, st, prefill=x[:, :1], trust=t)[0].cpu().numpy()
                acc[k][sl][mp_] += np.log1p(y[mp_].astype(np.float64))
            cnt[sl][mp_] += 1
    ok = mask & (cnt > 0)
    fills = []
    for k in range(len(trusts)):
        f = I.astype(np.float32).copy()
        f[ok] = np.expm1(acc[k][ok] / cnt[ok]).astype(np.float32)
        fills.append(f)
    return fills, int(np.count_nonzero(mask & (cnt == 0)))


def _scores(truth, filled, mask):
    from pynx_dlgap.inpaint.selfcheck import score_fill
    return score_fill(truth[mask], filled[mask])


def _big(shape, seed, batch, q, device="cpu"):
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    from pynx_dlgap.inpaint.infer import inpaint, load_inpaint_model
    I, m = _pattern(shape, seed)
    model, _ = load_inpaint_model()
    t0 = time.perf_counter()
    _, info = inpaint(I, m, model, progress=False, batch_size=batch, return_info=True, device=device)
    q.put((time.perf_counter() - t0, info["n_patches"],
           resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, I.nbytes / 2**20))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1_960_000_000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ref-limit", type=int, default=0, help="time only this many reference windows (0 = all)")
    ap.add_argument("--big", default="256,256,128", help="shape of the second pattern ('' to skip)")
    ap.add_argument("--device", default="cpu", help="torch device of both (default cpu)")
    ap.add_argument("--overlaps", type=int, nargs="*", default=[],
                    help="also time ours with these patch overlaps (default plan: half a patch, 16)")
    ap.add_argument("--tta", type=int, nargs="*", default=[],
                    help="also time ours in bf16 with these numbers of test-time views per patch")
    ap.add_argument("--tta-bright", type=int, nargs="*", default=[],
                    help="also time ours in bf16 with these numbers of views for the bright patches only "
                         "(inpaint(tta_bright=K): log-linear prefill >= 1 %% of the brightest measured voxel)")
    a = ap.parse_args(argv)
    from pynx_dlgap.inpaint.infer import inpaint, load_inpaint_model
    model, card = load_inpaint_model()
    I, m = _pattern((128, 128, 128), a.seed)
    import torch
    dev_name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "CPU"
    model.to(a.device)
    print(f"# DL inpainting speed on {a.device} ({dev_name}), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, "
          f"torch threads {__import__('torch').get_num_threads()}; model {card['architecture'].get('name')} "
          f"sha256 {card['sha256'][:12]}")
    print(f"# 128^3 simulated pattern (seed {a.seed}), 6-px cross: {int(m.sum())} gap voxels")
    trust = (card.get("inference") or {}).get("trust")
    print(f"# trust region of the fill (card inference.trust, inpaint's default): {trust}")
    rows = []

    def ours(label, warm_up=False, **kw):
        """Time one inpaint call of ours (after a warm-up call if asked) and add its row."""
        if warm_up:
            inpaint(I, m, model, progress=False, batch_size=a.batch, device=a.device, **kw)
        t0 = time.perf_counter()
        f, info = inpaint(I, m, model, progress=False, batch_size=a.batch, return_info=True, device=a.device, **kw)
        dt = time.perf_counter() - t0
        rows.append((label.format(**info), info["n_patches"], dt, _scores(I, f, m)))

    from pynx_dlgap.precision import bf16_native
    b16 = bf16_native(a.device)  # elsewhere bf16 rows would be float32 (inpaint falls back): left out
    if not b16:
        print(f"# bf16 rows left out: {a.device} has no native bfloat16 (pynx_dlgap.precision); tta rows in fp32")
    for bf16 in (False, True) if b16 else (False,):
        ours(f"ours{' bf16' if bf16 else ''} (batch {a.batch})", warm_up=True, bf16=bf16)
    if trust is not None:
        ours(f"ours, no trust region (batch {a.batch})", trust=None)
    for ov in a.overlaps:
        ours(f"ours, overlap {ov} (batch {a.batch})", overlap=ov)
    for k in a.tta:
        ours(f"ours{' bf16' if b16 else ''}, tta {k} (batch {a.batch})", bf16=b16, tta=k)
    for k in a.tta_bright:
        ours(f"ours{' bf16' if b16 else ''}, {k} views on {{n_bright}} bright", bf16=b16, tta_bright=k)
    corners = reference_windows(m)
    n_ref = len(corners)
    if a.ref_limit and a.ref_limit < n_ref:
        rng = np.random.default_rng(0)
        sub = [corners[i] for i in rng.choice(n_ref, a.ref_limit, replace=False)]
        t0 = time.perf_counter()
        reference_fill(I, m, model, sub, device=a.device)
        dt = (time.perf_counter() - t0) * n_ref / a.ref_limit
        rows.append((f"reference (timed {a.ref_limit}, extrapolated)", n_ref, dt, None))
    else:
        t0 = time.perf_counter()
        fills, missed = reference_fill(I, m, model, corners, device=a.device,
                                       trusts=(None,) if trust is None else (trust, None))
        dt = time.perf_counter() - t0
        if trust is not None:  # the same calls, the fill within the trust region (its time: the calls')
            rows.append((f"reference + trust region {trust:g}", n_ref, dt, _scores(I, fills[0], m)))
        rows.append(("reference (stride 1, 1 patch/call)", n_ref, dt, _scores(I, fills[-1], m)))
        if missed:
            print(f"# reference left {missed} gap voxels unpredicted")
    t_ref = rows[-1][2]
    print()
    hdr = f"{'method':38} {'patches':>8} {'seconds':>9} {'speed-up':>9} {'PCC(log)':>9} {'MAE(log)':>9} {'amp err':>8}"
    print(hdr)
    print("-" * len(hdr))
    for name, n, dt, sc in rows:
        errs = (f"{sc['pcc_log']:9.4f} {sc['mae_log']:9.4f} {sc['amp']:8.4f}" if sc else
                f"{'n/a':>9} {'n/a':>9} {'n/a':>8}")
        print(f"{name:38} {n:8d} {dt:9.2f} {t_ref / dt:8.1f}x {errs}")
    if a.big:
        shape = tuple(int(v) for v in a.big.split(","))
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_big, args=(shape, a.seed + 1, a.batch, q, a.device))
        p.start()
        dt, n, rss, mb = q.get()
        p.join()
        print()
        print(f"ours on {shape[0]}x{shape[1]}x{shape[2]} (6-px cross, fp32, batch {a.batch}): {n} patches in "
              f"{dt:.2f} s; peak resident memory of that process {rss:.0f} MiB (pattern {mb:.0f} MiB)")


if __name__ == "__main__":
    main()
