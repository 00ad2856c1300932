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
(``DLPhaseInit(cuda_graph=True)``); on the CPU the float32 model as given (``fp32 NCDHW``,
channels-first, the baseline: how 0.7.7 ran it) and its channels-last copy (``fp32``,
:func:`~pynx_dlgap.phase.predict.inference_copy`). Every time is the median of ``--repeat`` runs after
one warm-up run (which pays for cuDNN plans, graph capture and PyNX's kernel compilation),
the runs of the variants interleaved (so a drift of a shared machine's speed hits all alike).
It prints each variant's share of both chains, and the weighted RMS difference (rad) of
its predicted phase from the float32 eager one, so a faster variant is seen to predict the
same phase.

    python benchmarks/phase_step.py --n 3                       # PyNX CPU family, 2 cores
    python benchmarks/phase_step.py --n 5 --pynx cuda --profile 25   # a GPU machine
    python benchmarks/phase_step.py --count-ops                  # ops per device step (any device)
"""
from __future__ import annotations

import argparse
import contextlib
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


def _timed(fn, family):
    """Seconds of one synchronised call of ``fn``."""
    _sync(family)
    t0 = time.perf_counter()
    fn()
    _sync(family)
    return time.perf_counter() - t0


def _median_time(fn, repeat, family):
    fn()  # warm-up
    return statistics.median(_timed(fn, family) for _ in range(repeat))


@contextlib.contextmanager
def _as_given():
    """The float32 CPU prediction with the model itself (channels-first: the baseline, as up to
    0.7.7) instead of its channels-last :func:`~pynx_dlgap.phase.predict.inference_copy`."""
    import pynx_dlgap.phase.predict as P
    P.CPU_CHANNELS_LAST = False
    try:
        yield
    finally:
        P.CPU_CHANNELS_LAST = True


def _layout(v):
    """The variant's model layout: channels-first for the CPU baseline row, else as shipped."""
    return _as_given() if v[2:] == ("cf",) else contextlib.nullcontext()


def count_step_ops(op, stored_t):
    """Non-view ATen ops that one device step (``op._start_tensor``, the CUDA family's step, run
    on ``stored_t``'s device) dispatches outside the model's call, and inside it, after a
    warm-up call (caches filled). On a GPU each such op is at least one kernel launch, and
    launches are what a 64^3 step costs there (``--profile``); counted the same way on any
    device, so a CPU run shows what a change does to a GPU's launch count."""
    import collections

    from torch.utils._python_dispatch import TorchDispatchMode

    import pynx_dlgap.phase.predict as P
    free = {"empty", "empty_like", "empty_strided", "detach", "alias", "lift_fresh"}  # no kernel

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.n, self.names, self.inside = {"step": 0, "model": 0}, collections.Counter(), False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if not func.is_view and name not in free:
                self.n["model" if self.inside else "step"] += 1
                if not self.inside:
                    self.names[name] += 1
            return func(*args, **(kwargs or {}))

    c = Count()
    orig = P._run_phase_model

    def model_call(*args, **kw):
        c.inside = True
        try:
            return orig(*args, **kw)
        finally:
            c.inside = False

    op._start_tensor(stored_t)  # warm-up: caches, cuDNN plans, graph capture
    P._run_phase_model = model_call
    try:
        with c:
            op._start_tensor(stored_t)
    finally:
        P._run_phase_model = orig
    return c.n["step"], c.n["model"], c.names


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
    ap.add_argument("--count-ops", action="store_true",
                    help="only count the ATen ops of one device step per variant (first crystal; count_step_ops) and exit")
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
    if fam == "cpu":  # the model run as given (channels-first, 0.7.7), side by side with the channels-last copy
        variants.insert(0, (False, False, "cf"))
    if bf16_native(dev):
        variants.append((True, False))
    if fam == "cuda":
        variants += [(False, True), (True, True)]
    shape = (64,) * 3
    name = {(False, False, "cf"): "fp32 NCDHW", (False, False): "fp32", (True, False): "bf16", (False, True): "fp32+graph", (True, True): "bf16+graph"}
    dev_name = torch.cuda.get_device_name() if fam == "cuda" else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"# DL phase step vs chain on the same device: {dev_name}; PyNX {fam} family"
          + (f" (context shared with torch: {shared})" if fam == "cuda" else "") + f"; {a.n} crystals 64^3, "
          f"phase range {a.phase_range} rad, 6-px cross; median of {a.repeat} runs after a warm-up; "
          f"weights {card.get('sha256', '?')[:12]}")
    if a.count_ops:
        I, m = _pattern(a.seed, a.phase_range)
        stored_t = torch.from_numpy(np.fft.fftshift(np.where(m, np.float32(-1.05e38), I)).astype(np.float32)).to(dev)
        print(f"{'variant':11} {'step ops':>9} {'model ops':>10}  most frequent outside the model")
        for v in variants:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                op = DLPhaseInit(model=model, family=fam, bf16=v[0], cuda_graph=v[1],
                                 device=dev)
            with _layout(v):
                n_step, n_model, names = count_step_ops(op, stored_t)
            top = ", ".join(f"{k} {n}" for k, n in names.most_common(6))
            print(f"{name[v]:11} {n_step:9d} {n_model:10d}  {top}")
        print("Non-view ATen ops dispatched by one DLPhaseInit device step (_start_tensor: decode, checks, box, input, "
              "phase placement, start object, support), outside and inside the model call; PyNX's ScaleObj not included.")
        return
    rows = {v: dict(model=[], build=[], step=[], dphi=[]) for v in variants}
    chains = {"short": [], "pynx": []}
    n_short, n_pynx = f"{a.raar}+{a.er}", "600+200"
    for k in range(a.n):
        I, m = _pattern(a.seed + k, a.phase_range)
        stored = np.fft.fftshift(np.where(m, 0, I)).astype(np.float32)
        ms = np.fft.fftshift(m).astype(np.int8)
        start = prediction_region(shape, bragg_peak(I, m), shape)  # the operator's box: centred on the peak
        x = torch.from_numpy(phase_input(_take(I, start, shape, 0.0), _take(m, start, shape, True)))[None].to(dev)
        w = x[0, 0].double().cpu().numpy()
        ref_phi = None
        calls = {}
        for v in variants:
            b16, graph = v[:2]
            with _layout(v):

                def build(b16=b16, graph=graph):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DeprecationWarning)
                        return (DLPhaseInit(model=model, family=fam, bf16=b16, cuda_graph=graph, device=dev),
                                pcdi.CDI(stored.copy(), mask=ms))
                rows[v]["build"].append(_median_time(build, a.repeat, fam))
                op, cdi = build()

                def step(op=op, cdi=cdi):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DeprecationWarning)
                        return op * cdi  # the DL start overwrites the object and support: repeatable

                def call(b16=b16, graph=graph):
                    return _run_phase_model(model, x, dev, b16, graph=graph)
                step()
                y = call()[0].cpu().numpy().astype(np.float64)  # warm-up of both (plans, graph capture)
                calls[v] = (call, step)
                if a.profile and k == 0 and fam == "cuda":
                    from torch.profiler import ProfilerActivity, profile
                    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                        step()
                        _sync(fam)
                    print(f"## profile of one DL step, {name[v]} (torch ops only; PyNX's own kernels are not seen)")
                    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=a.profile))
            phi = np.arctan2(y[1], y[0])
            if ref_phi is None:
                ref_phi = phi
            d = np.angle(np.exp(1j * (align_phase(ref_phi, phi, w) - ref_phi)))  # offset (and twin) removed
            rows[v]["dphi"].append(float(np.sqrt(np.sum(w * d ** 2) / np.sum(w))))
        # timed runs interleaved over the variants (a drift of the machine's speed hits all alike)
        ts = {v: dict(model=[], step=[]) for v in variants}
        for _ in range(a.repeat):
            for v in variants:
                with _layout(v):
                    for what, fn in zip(("model", "step"), calls[v]):
                        ts[v][what].append(_timed(fn, fam))
        for v in variants:
            for what in ("model", "step"):
                rows[v][what].append(statistics.median(ts[v][what]))
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
          f"largest share of the {n_short} chain; dphi: largest weighted RMS difference from the first row's phase;\n"
          f"DL step: `op * cdi` on a CDI already built (and on the GPU: uploaded), the operator built once, as in "
          f"`ER**50 * DLPhaseInit() * cdi`; op+CDI: building the operator (model given) and the CDI, not in the share.")


if __name__ == "__main__":
    main()
