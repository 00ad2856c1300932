"""Cost of the DL phase step against the refinement chain, on the same device.

Issue #4 asks that the DL step (prediction, start object, support) cost under 5 % of the
chain's time on the same device. For ``--n`` held-out crystals (64^3, ``phase_init.py``'s
simulation, with a 6-px cross gap), it times, in one process:

* ``model``: the phase model's call alone on the crystal's input (synchronised);
* ``DL step``: the ``DLPhaseInit`` operator of the chosen PyNX family applied to a PyNX
  ``CDI`` of the pattern (peak search, input, model, start object, support, PyNX's
  ``ScaleObj``; on the CUDA family all on the GPU, on PyNX's own arrays). The operator and
  the CDI are built once (``op+CDI``, timed apart, not in the share) and the CDI uploaded
  by a first application, as in ``ER**50 * DLPhaseInit() * cdi``;
* ``chain``: the harness chain of ``benchmarks/phase_init.py`` (``--raar`` RAAR + ``--er``
  ER, support update every 50 cycles) and PyNX's ``pynx-cdi-id01`` default (600 + 200),
  from that start, on the same family (``phase_pattern(backend=...)``: it builds its CDI,
  uploads, runs and reads back);

for each variant of the step: float32 or a bfloat16 copy of the model (where the device
runs bf16 natively), and, on CUDA, eager or a replayed CUDA graph of the model
(``DLPhaseInit(cuda_graph=True)``). Every time is the median of ``--repeat`` runs after
one warm-up run (which pays for cuDNN plans, graph capture and PyNX's kernel compilation).
It prints each variant's share of both chains, and the weighted RMS difference (rad) of
its predicted phase from the float32 eager one, so a faster variant is seen to predict the
same phase.

    python benchmarks/phase_step.py --n 3                       # PyNX CPU family, 2 cores
    python benchmarks/phase_step.py --n 5 --pynx cuda --profile 25   # a GPU machine
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from phase_init import crystal  # noqa: E402  (phase_init's 64^3 crystals)


def _pattern(seed, phase_range):
    """One of phase_init's crystals with a 6-px cross beside the Bragg peak (as pipeline.py)."""
    from pynx_dlgap.simulate.gaps import cross
    s = crystal(3, seed, phase_range)
    shape = s["intensity"].shape
    m = cross(6, shape[1] // 2 - 4, shape[2] // 2 + 5).mask(shape) | s["dead"]
    return np.asarray(s["intensity"], np.float32), m


def _sync(family):
    if family == "cuda":
        import torch
        torch.cuda.synchronize()


def _median_time(fn, repeat, family):
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        _sync(family)
        t0 = time.perf_counter()
        fn()
        _sync(family)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3, help="crystals")
    ap.add_argument("--phase-range", type=float, default=12.57, help="crystals' phase range (rad)")
    ap.add_argument("--raar", type=int, default=300)
    ap.add_argument("--er", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of each step (median); chains: max(2, repeat//2)")
    ap.add_argument("--pynx", default="cpu", choices=["cpu", "cuda"], help="PyNX family (and torch device)")
    ap.add_argument("--weights", default=None, help="phase weights (default: the shipped ones)")
    ap.add_argument("--seed", type=int, default=1_990_000_000)
    ap.add_argument("--profile", type=int, default=0, metavar="ROWS",
                    help="CUDA: print torch's profile of one DL step per variant (first crystal), top ROWS ops")
    a = ap.parse_args(argv)
    import torch
    from pynx_dlgap.evaluate.phasing import import_pynx_cdi, phase_pattern
    from pynx_dlgap.operators import DLPhaseInit
    from pynx_dlgap.phase.inputs import phase_input
    from pynx_dlgap.phase.predict import (_run_phase_model, _take, align_phase, bragg_peak, load_phase_model,
                                          prediction_region)
    from pynx_dlgap.precision import bf16_native
    fam = a.pynx
    dev = "cuda" if fam == "cuda" else "cpu"
    shared = None
    if fam == "cuda":
        from pynx_dlgap.pynx_backend import init_pynx_cuda
        shared = init_pynx_cuda()
    pcdi = import_pynx_cdi(fam)
    model, card = load_phase_model(a.weights, 3)
    variants = [(False, False)]
    if bf16_native(dev):
        variants.append((True, False))
    if fam == "cuda":
        variants += [(False, True), (True, True)]
    shape = (64,) * 3
    name = {(False, False): "fp32", (True, False): "bf16", (False, True): "fp32+graph", (True, True): "bf16+graph"}
    dev_name = torch.cuda.get_device_name() if fam == "cuda" else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"# DL phase step vs chain on the same device: {dev_name}; PyNX {fam} family"
          + (f" (context shared with torch: {shared})" if fam == "cuda" else "") + f"; {a.n} crystals 64^3, "
          f"phase range {a.phase_range} rad, 6-px cross; median of {a.repeat} runs after a warm-up; "
          f"weights {card.get('sha256', '?')[:12]}")
    rows = {v: dict(model=[], build=[], step=[], dphi=[]) for v in variants}
    chains = {"short": [], "pynx": []}
    n_short, n_pynx = f"{a.raar}+{a.er}", "600+200"
    for k in range(a.n):
        I, m = _pattern(a.seed + k, a.phase_range)
        stored = np.fft.fftshift(np.where(m, 0, I)).astype(np.float32)
        ms = np.fft.fftshift(m).astype(np.int8)
        start = prediction_region(shape, bragg_peak(I, m), shape)
        x = torch.from_numpy(phase_input(_take(I, start, shape, 0.0), _take(m, start, shape, True)))[None].to(dev)
        w = x[0, 0].double().cpu().numpy()
        ref_phi = None
        for v in variants:
            b16, graph = v
            rows[v]["model"].append(_median_time(lambda: _run_phase_model(model, x, dev, b16, graph=graph),
                                                 a.repeat, fam))

            def build():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return (DLPhaseInit(model=model, family=fam, bf16=b16, cuda_graph=graph, device=dev),
                            pcdi.CDI(stored.copy(), mask=ms))
            rows[v]["build"].append(_median_time(build, a.repeat, fam))
            op, cdi = build()

            def step():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return op * cdi  # the DL start overwrites the object and support: repeatable
            rows[v]["step"].append(_median_time(step, a.repeat, fam))
            if a.profile and k == 0 and fam == "cuda":
                from torch.profiler import ProfilerActivity, profile
                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    step()
                    _sync(fam)
                print(f"## profile of one DL step, {name[v]} (torch ops only; PyNX's own kernels are not seen)")
                print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=a.profile))
            y = _run_phase_model(model, x, dev, b16, graph=graph)[0].cpu().numpy().astype(np.float64)
            phi = np.arctan2(y[1], y[0])
            if ref_phi is None:
                ref_phi = phi
            d = np.angle(np.exp(1j * (align_phase(ref_phi, phi, w) - ref_phi)))  # offset (and twin) removed
            rows[v]["dphi"].append(float(np.sqrt(np.sum(w * d ** 2) / np.sum(w))))
        # the chain, from the float32 start, on the same family
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            c = DLPhaseInit(model=model, family=fam, device=dev) * pcdi.CDI(stored.copy(), mask=ms)
        o0, s0 = c.get_obj(shift=True), c.get_support(shift=True).astype(bool)
        for key, (nr, ne) in (("short", (a.raar, a.er)), ("pynx", (600, 200))):
            ts = []
            for _ in range(max(2, a.repeat // 2) + 1):
                t0 = time.perf_counter()
                r = phase_pattern(I, m, obj0=o0, support0=s0, chain=dict(n_raar=nr, n_er=ne), llk_every=0,
                                  backend=fam)
                ts.append(time.perf_counter() - t0)
            chains[key].append(statistics.median(ts[1:]))
        print(f"crystal {k}: chain {n_short} {chains['short'][-1]:.3f} s, {n_pynx} {chains['pynx'][-1]:.3f} s"
              + (f" (FAILED {r.failed})" if r.failed else ""), flush=True)
    print()
    hdr = (f"{'variant':11} {'model (s)':>10} {'DL step (s)':>12} {'% of ' + n_short:>12} {'% of ' + n_pynx:>12} "
           f"{'max %':>7} {'dphi (rad)':>11} {'op+CDI (s)':>11}")
    print(hdr)
    print("-" * len(hdr))
    for v in variants:
        r = rows[v]
        sh = [100 * s / c for s, c in zip(r["step"], chains["short"])]
        sp = [100 * s / c for s, c in zip(r["step"], chains["pynx"])]
        print(f"{name[v]:11} {statistics.median(r['model']):10.4f} {statistics.median(r['step']):12.4f} "
              f"{statistics.mean(sh):11.1f}% {statistics.mean(sp):11.1f}% {max(sh):6.1f}% {max(r['dphi']):11.4f} "
              f"{statistics.median(r['build']):11.4f}")
    print(f"\nchain {n_short}: median {statistics.median(chains['short']):.3f} s; {n_pynx}: "
          f"{statistics.median(chains['pynx']):.3f} s. Shares: mean over crystals of step / chain; 'max %' the "
          f"largest share of the {n_short} chain; dphi: largest weighted RMS difference from fp32 eager;\n"
          f"DL step: `op * cdi` on a CDI already built (and on the GPU: uploaded), the operator built once, as in "
          f"`ER**50 * DLPhaseInit() * cdi`; op+CDI: building the operator (model given) and the CDI, not in the share.")


if __name__ == "__main__":
    main()
