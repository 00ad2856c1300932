"""``pynx-cdi-id01-dl``: PyNX's ``pynx-cdi-id01`` plus the deep-learning steps.

Made by subclassing PyNX's runner classes (``CDIRunnerID01`` / ``CDIRunnerScanID01``),
without copying or patching PyNX: every ``pynx-cdi-id01`` parameter and output is
PyNX's own. New flags (group "pynx-dlgap deep-learning steps" in ``--help``):

``--dl-inpaint [WEIGHTS]``
    fill the masked voxels (detector gaps) with the DL inpainting model once the
    CDI is built (after PyNX's own mask handling); default weights: the shipped ones.
``--dl-inpaint-mode estimate|observed|release``
    write the fill as PyNX *estimated* values (default: a loose 0.5x-1.2x amplitude
    constraint on PyNX's OpenCL/CUDA operators; its CPU operators treat them as masked
    pixels; the DL start uses the fill either way), as observed intensities (a hard
    constraint), or ``release``: as observed intensities while PyNX's ``zero_mask='auto'``
    phase would hold the gap at zero, masked again (free) from then on. Without
    ``--algorithm``, ``release`` runs PyNX's own parameter-built chain written as an
    algorithm string (:func:`default_chain_algorithm`, the same operators in the same
    order) with a ``releasefill`` step at the zero-mask switch; with ``--algorithm``, the
    string must contain ``releasefill``. Every further run of ``--nb_run`` gets the fill
    back before its start. Measured with ``benchmarks/runner_dl.py`` (README): on PyNX's
    CPU backend its gain shows only without PyNX's free-LLK pixels (``--roi full
    --free_pixel_mask`` with an all-False mask), because PyNX's CPU operators hold free
    pixels at zero during the zero-mask phase too.
``--dl-bf16 on|off``
    bfloat16 for the inpainting model (autocast) and the phase model (a bfloat16
    copy); default off; several times faster on GPUs and on CPUs with bf16 instructions
    (elsewhere float32 with a warning: :mod:`pynx_dlgap.precision`).
``--dl-inpaint-tta K``
    average the inpainting model over K flip/transposition views of each patch
    (:mod:`pynx_dlgap.inpaint.tta`; default 1, the model alone; K times the model calls).
``--dl-inpaint-tta-bright K``, ``--dl-inpaint-bright F``
    a test-time ensemble of K views for the bright patches only (log-linear prefill
    >= F x the brightest measured pixel, beside the Bragg peak; ``inpaint(tta_bright=,
    bright=)``; default 1 = off, F = 0.01).
``--dl-inpaint-trust T|card|off``
    trust region of the DL fill around log-linear interpolation, in ``log(I+1)``
    (``inpaint(trust=)``; default ``card``: the model card's ``inference.trust``).
``--dl-inpaint-check on|off|RULE``
    self-check (default on): the DL fill is compared with log-linear interpolation on
    the gap's mirror images through the Bragg peak, cut into measured data (by the
    autocorrelation energy outside the crystal's support where there is no image;
    :mod:`pynx_dlgap.inpaint.selfcheck`); the better one is written (the scores, and
    those on shifted copies of the gap, go to the ``.cxi`` too). ``on`` is the default
    rule ``mirror``; a rule name (``acf``, ``geomean``, ``every``, ``pooled``) runs that
    rule (``geomean``, the shifted copies, does better on patterns like the training data).
``--dl-finetune EPOCHS``
    with ``--dl-inpaint``: fine-tune the inpainting model on the scan's own measured
    data first (:mod:`pynx_dlgap.training.finetune`); before/after scores go to the
    ``.cxi`` (``dl_finetune_report``).
``--dl-phase-noise RAD``
    with ``--dl-phase-init`` and ``nb_run`` > 1: every run after the first starts from the
    prediction plus a smooth random phase field of this RMS (seeded by the run number), so
    that the runs differ and ``nb_run_keep`` keeps the best by LLK (the chain is
    deterministic: without it, every run would give the same result).
``--dl-phase-tta K``
    with ``--dl-phase-init``: the test-time ensemble of the phase model over K of its
    symmetric views (:func:`pynx_dlgap.phase.predict.view_phases`); default 1.
``--dl-phase-init [WEIGHTS]``
    start every run from the DL reciprocal-phase prediction
    (``IFT(sqrt(I) exp(i phi))``, support from its modulus) instead of PyNX's start;
    PyNX's ``detwin`` is then off unless given on the command line (the DL start
    carries no twin mixture, and detwinning was measured to degrade even a
    true-phase start: ``benchmarks/phase_basin.py``).

Weights are checked (file, card, checksum) before any data are read. What the DL
steps did (weights checksum, voxels filled, prediction region, seconds) is stored
in the run's parameters, which PyNX writes into the output ``.cxi`` process
information (keys ``dl_*``). Several runs (``--nb_run``) each start from the same
DL prediction (the chain is then the only source of variation); scans distributed
over MPI ranks (``mpi=scan``) each apply the steps to their own scan.

The operators can also be steps of ``--algorithm`` (PyNX's syntax, right to left), e.g.
``--algorithm "ER**50,RAAR**400,dlphaseinit,dlinpaint"``; they then use the weights
(and inpainting mode) of the flags above, or the shipped weights. ``releasefill`` masks
again the voxels a ``dlinpaint`` step filled (:func:`pynx_dlgap.operators.ReleaseFill`):
``--dl-inpaint-mode release --algorithm "ER**200,RAAR**240,releasefill,RAAR**360,dlinpaint"``
uses the fill as data for the first 360 cycles only (``--dl-inpaint-mode release`` alone
does this within PyNX's default chain).

On a GPU machine where PyNX chose its CUDA family (pycuda, ``PYNX_PU=cuda``), the
runner first makes PyNX use the GPU's primary CUDA context
(:func:`pynx_dlgap.pynx_backend.init_pynx_cuda`), so the CUDA-family operators work
on PyNX's GPU arrays through torch without a host copy; ``dl_inpaint_zero_copy``
records it.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

__all__ = ["main", "runner_classes"]

_CACHE = {}

#: Step names of the DL operators in ``--algorithm`` strings.
DL_STEPS = ("dlinpaint", "dlphaseinit", "releasefill")


def _weights(value, default):
    from pathlib import Path
    return default if value in (None, "shipped") else Path(value)


def _int(value, default):
    """A numeric runner parameter (command line: already an int; parameter file: maybe a string)."""
    return default if value is None else int(value)


def _float(value, default):
    return default if value is None else float(value)


def _check(value):
    """``--dl-inpaint-check`` (``on``/``off``/a rule name; a parameter file may give a bool) -> ``DLInpaint(check=)``."""
    if value is None or value is True or str(value).lower() in ("on", "true"):
        return True
    if value is False or str(value).lower() in ("off", "false"):
        return False
    return str(value)  # a rule name, checked by DLInpaint before any work


def _phase_bin(value, ndim=None):
    """``--dl-phase-bin`` (command line or parameter file: ``auto``, an int, ``2,2,1`` or a list) ->
    ``DLPhaseInit(bin=)``, checked by :func:`~pynx_dlgap.phase.binning.resolve_bin` for ``ndim``
    dimensions; without ``ndim`` (before the data are read) for as many as the value gives."""
    from .phase.binning import resolve_bin
    if value is None or str(value).strip().lower() == "auto":  # as PyNX's own keywords, any case
        return "auto"
    if ndim is None:
        ndim = len(value) if np.ndim(value) == 1 else str(value).count(",") + 1
    return resolve_bin(value, ndim)


def _trust(value):
    """``--dl-inpaint-trust`` (command line or parameter file: a string, or a number) -> ``inpaint(trust=)``."""
    if value is None:
        return "card"
    if isinstance(value, (int, float)):
        from .inpaint.infer import resolve_trust
        return resolve_trust(None, value)
    from .inpaint.infer import trust_arg
    return trust_arg(value)


def _zero_mask(value):
    """PyNX's ``zero_mask`` parameter -> ``(value at the start (0/1), switches off after a number of cycles)``."""
    if isinstance(value, str):
        v = value.lower()
        if v == "auto":
            return 1, True
        return int(v in ("true", "1")), False
    return int(bool(value)), False


def default_chain_algorithm(params, release=False):
    """PyNX's parameter-built chain as an ``--algorithm`` string (right to left, as PyNX runs it).

    Without ``--algorithm``, PyNX's runner (``CDIRunnerScan.run``) builds its chain from
    ``nb_hio``, ``nb_raar``, ``nb_er``, ``support_update_period``, ``detwin`` and
    ``zero_mask``: a support update at every multiple of the period but the last, a
    ``DetwinHIO``/``DetwinRAAR`` of 10 cycles after a quarter of the HIO+RAAR cycles and,
    with ``zero_mask='auto'``, masked pixels held at zero until 60 % of them (the segment
    ending there already runs with the mask free). This writes the same schedule in
    PyNX's algorithm syntax, so that ``release=True`` can put a ``releasefill`` step at
    the zero-mask switch. Run with ``support_smooth_width_relax_n`` = ``nb_hio + nb_raar``
    (what the parameter-built chain uses) it gives the same operators in the same order
    (``tests/test_runner.py`` compares the two on PyNX's CPU operators). The PSF and ML
    options are not covered: a clear error says so.
    """
    nb_hio, nb_raar, nb_er = (int(params.get(k) or 0) for k in ("nb_hio", "nb_raar", "nb_er"))
    if int(params.get("nb_ml") or 0) > 0 or params.get("psf") not in (None, False, "false", "False", 0):
        raise ValueError("the release schedule is built for PyNX's HIO/RAAR/ER chain; with nb_ml or psf, pass "
                         "--algorithm with a releasefill step instead")
    period = int(params.get("support_update_period") or 0)
    total = nb_hio + nb_raar + nb_er
    if total <= 0:
        raise ValueError("the chain has no cycles (nb_hio + nb_raar + nb_er = 0)")
    cycles = [total] + [c for c, on in ((nb_hio, nb_hio), (nb_hio + nb_raar, nb_raar),
                                        (total, nb_er)) if on > 0]
    if period > 0:
        cycles += list(range(0, total, period))
    detwin = bool(params.get("detwin"))
    detwin_at = (nb_hio + nb_raar) // 4
    if detwin:
        cycles.append(detwin_at)
    zm, auto = _zero_mask(params.get("zero_mask"))
    zm_at = int((nb_hio + nb_raar) * 0.6) if auto else None
    if zm_at is not None:
        cycles.append(zm_at)
    if release and zm_at is None:
        raise ValueError("the release schedule frees the fill where PyNX's zero-mask phase ends: it needs "
                         "zero_mask=auto (the pynx-cdi-id01 default)")
    cycles.sort()
    steps = [f"zero_mask={zm}"]
    for k in range(len(cycles) - 1):
        i0, i1 = cycles[k], cycles[k + 1]
        if i0 == i1:
            continue
        if i1 == zm_at and zm:
            zm = 0
            steps += (["releasefill"] if release else []) + ["zero_mask=0"]
        op = "hio" if i1 <= nb_hio else "raar" if nb_raar > 0 and i1 <= nb_hio + nb_raar else "er"
        op = f"{op}**{i1 - i0}"
        if period > 0 and i1 % period == 0 and k + 2 < len(cycles):
            op = "sup*" + op
        if detwin and i1 == detwin_at:
            op = ("detwinhio" if i1 <= nb_hio else "detwinraar") + "*" + op
        steps.append(op)
    merged = []  # runs of one step -> (step)**n
    for s in steps:
        if merged and merged[-1][0] == s and "=" not in s and s != "releasefill":
            merged[-1][1] += 1
        else:
            merged.append([s, 1])
    out = [s if n == 1 else f"({s})**{n}" for s, n in merged]
    return ",".join(reversed(out))


def _write_mode(mode):
    """``--dl-inpaint-mode`` -> ``DLInpaint(mode=)``: ``release`` writes the fill as observed data (freed later)."""
    return "observed" if mode == "release" else (mode or "estimate")


def runner_classes():
    """``(CDIRunnerID01DL, CDIRunnerScanID01DL)``, built on PyNX's classes (PyNX imported here)."""
    if _CACHE:
        return _CACHE["classes"]
    from pynx.cdi.runner.id01 import CDIRunnerID01, CDIRunnerScanID01

    class CDIRunnerScanID01DL(CDIRunnerScanID01):
        """One scan of ``pynx-cdi-id01-dl``: PyNX's ``prepare_cdi`` then the DL steps."""

        def prepare_cdi(self):
            first = self.cdi is None
            super().prepare_cdi()
            p = self.params
            if first and p.get("dl_inpaint") is not None:
                self._apply_dl("dlinpaint")
            elif p.get("dl_inpaint") is not None and getattr(self.cdi, "dl_release_saved", None) is not None:
                self._apply_dl("restorefill")  # a previous run (--nb_run) released the fill: data again
            if p.get("dl_phase_init") is not None:
                self._dl_run = getattr(self, "_dl_run", 0) + 1
                self._apply_dl("dlphaseinit")

        def _apply_dl(self, token):
            """Apply one DL operator to ``self.cdi`` and record what it did in ``self.params``."""
            p = self.params
            from .operators import DLInpaint, DLPhaseInit, ReleaseFill
            t0 = time.perf_counter()
            if token == "releasefill":
                self.cdi = ReleaseFill() * self.cdi
                p["dl_release_voxels"] = int(self.cdi.release_fill_info["voxels_released"])
                print(f"pynx-dlgap: ReleaseFill masked {p['dl_release_voxels']} filled voxels again")
            elif token == "restorefill":
                self.cdi = ReleaseFill(restore=True) * self.cdi
                print(f"pynx-dlgap: the fill released by the previous run is data again "
                      f"({self.cdi.release_fill_info['voxels_restored']} voxels)")
            elif token == "dlinpaint":
                from .inpaint.infer import DEFAULT_WEIGHTS, load_inpaint_model
                model, _ = load_inpaint_model(_weights(p.get("dl_inpaint"), DEFAULT_WEIGHTS))
                if int(p.get("dl_finetune") or 0) > 0:
                    self._finetune(model, int(p["dl_finetune"]))
                self.cdi = DLInpaint(model=model,
                                     mode=_write_mode(p.get("dl_inpaint_mode")),
                                     bf16=p.get("dl_bf16", "off") == "on",
                                     tta=_int(p.get("dl_inpaint_tta"), 1),
                                     trust=_trust(p.get("dl_inpaint_trust")),
                                     tta_bright=_int(p.get("dl_inpaint_tta_bright"), 1),
                                     bright=_float(p.get("dl_inpaint_bright"), 0.01),
                                     check=_check(p.get("dl_inpaint_check"))) * self.cdi
                inf = getattr(self.cdi, "dl_inpaint_info", {})
                p["dl_inpaint_fill"] = str(inf.get("fill", "dl"))
                if inf.get("check"):
                    sc = inf["check"]
                    p["dl_inpaint_check"] = json.dumps(sc, default=float)
                    acf = (f" (ACF energy outside the support DL / log-linear {sc['acf_ratio']:.3f})"
                           if sc.get("acf_ratio") is not None else "")
                    if sc.get("mirror_ratio") is not None:
                        acf += f" (amplitude error DL / log-linear on the gap's mirror images {sc['mirror_ratio']:.3f})"
                    print(f"pynx-dlgap: self-check (rule {sc['rule']}) chose {sc['choice']}{acf} "
                          + " ".join(f"(held-back amplitude error {k} {v['amp']:.4f})"
                                     for k, v in sc["scores"].items()))
                p["dl_inpaint_voxels"] = int(inf.get("voxels_filled", 0))
                p["dl_inpaint_family"] = str(inf.get("family", ""))
                if "zero_copy" in inf:
                    p["dl_inpaint_zero_copy"] = bool(inf["zero_copy"])
                p["dl_inpaint_seconds"] = time.perf_counter() - t0
                p["dl_inpaint_sha256"] = str(inf.get("weights_sha256") or "")
                print(f"pynx-dlgap: DLInpaint ({p['dl_inpaint_fill']}) filled {p['dl_inpaint_voxels']} voxels in "
                      f"{p['dl_inpaint_seconds']:.1f} s")
            else:
                from .phase.predict import default_weights
                ndim = self.cdi.iobs.ndim
                run = getattr(self, "_dl_run", 1)
                noise = float(p.get("dl_phase_noise") or 0) if run > 1 else 0.0  # run 1: the prediction as is
                self.cdi = DLPhaseInit(weights=_weights(p.get("dl_phase_init"), default_weights(ndim)),
                                       noise=noise, noise_seed=run, tta=int(p.get("dl_phase_tta") or 1),
                                       bf16=p.get("dl_bf16", "off") == "on",
                                       bin=_phase_bin(p.get("dl_phase_bin"), ndim)) * self.cdi
                inf = getattr(self.cdi, "dl_phase_init_info", {})
                p["dl_phase_init_seconds"] = time.perf_counter() - t0
                p["dl_phase_init_sha256"] = str(inf.get("weights_sha256") or "")
                p["dl_phase_init_region"] = str(inf.get("region_shape", ""))
                p["dl_phase_init_noise"] = noise
                p["dl_phase_init_tta"] = int(inf.get("tta", 1))
                p["dl_phase_init_bin"] = str(inf.get("bin", ""))
                binned = [int(b) for b in inf.get("bin", [])]
                print(f"pynx-dlgap: DLPhaseInit start in {p['dl_phase_init_seconds']:.1f} s, support "
                      f"{inf.get('support_points')} voxels" + (f", phase noise {noise:g} rad" if noise else "")
                      + (f", data binned {'x'.join(map(str, binned))} for the prediction" if any(b > 1 for b in binned)
                         else ""))

        def run(self, file_name=None, run_n=1):
            """PyNX's ``run``; with ``--dl-inpaint-mode release`` and no ``--algorithm``, PyNX's own
            parameter-built chain written as an algorithm string with ``releasefill`` at the
            zero-mask switch (:func:`default_chain_algorithm`). (A fill released by a previous run
            of ``--nb_run`` is written back in ``prepare_cdi``, before the DL start.)"""
            p = self.params
            if p.get("dl_inpaint_mode") != "release" or p.get("algorithm") is not None:
                return super().run(file_name=file_name, run_n=run_n)
            algo = default_chain_algorithm(p, release=True)
            relax, zm = p.get("support_smooth_width_relax_n"), p.get("zero_mask")  # the string's keywords set zero_mask
            p["dl_release_algorithm"] = algo
            p["algorithm"] = algo  # what PyNX saves in the .cxi: the chain that ran
            p["support_smooth_width_relax_n"] = int(p.get("nb_hio") or 0) + int(p.get("nb_raar") or 0)
            print(f"pynx-dlgap: --dl-inpaint-mode release: PyNX's chain with the fill released at the end of its "
                  f"zero-mask phase: {algo}")
            try:
                return super().run(file_name=file_name, run_n=run_n)
            finally:
                p["algorithm"], p["support_smooth_width_relax_n"], p["zero_mask"] = None, relax, zm

        def _finetune(self, model, epochs):
            """Fine-tune the inpainting model on this scan's measured data (``--dl-finetune``)."""
            import numpy as np
            from .operators.inpaint import decode_iobs
            from .training.finetune import finetune
            p = self.params
            inten, to_fill = decode_iobs(self.cdi.iobs)
            t0 = time.perf_counter()
            rep = finetune(np.fft.fftshift(inten), np.fft.fftshift(to_fill), model, epochs=epochs, progress=False)
            p["dl_finetune_seconds"] = time.perf_counter() - t0
            p["dl_finetune_steps"] = rep["steps"]
            p["dl_finetune_report"] = json.dumps({k: rep[k] for k in ("before", "after", "widths")}, default=float)
            print(f"pynx-dlgap: fine-tuned the inpainting model on this scan ({rep['steps']} steps, "
                  f"{p['dl_finetune_seconds']:.1f} s)\n  {rep['summary_before']}\n  {rep['summary_after']}")

        def run_algorithm(self, algo_string, file_name=None, run_n=1):
            """PyNX's ``run_algorithm``, with ``dlinpaint`` / ``dlphaseinit`` / ``releasefill`` allowed as steps.

            Steps run right to left as in PyNX; consecutive PyNX steps go to PyNX's own
            ``run_algorithm`` (the last of them saves the result), DL steps are applied in
            between. A DL step may not come last (leftmost): it would follow the saving.
            """
            parts = [a.strip() for a in str(algo_string).split(",")]
            if not any(a.lower() in DL_STEPS for a in parts):
                return super().run_algorithm(algo_string, file_name=file_name, run_n=run_n)
            if parts[0].lower() in DL_STEPS:
                raise ValueError(f"--algorithm {algo_string!r}: a DL step ({parts[0]}) cannot be the last (leftmost) "
                                 "step; put it to the right of the PyNX steps it initialises")
            groups = []  # execution order (right to left)
            for a in reversed(parts):
                if a.lower() in DL_STEPS:
                    groups.append(("dl", a.lower()))
                elif groups and groups[-1][0] == "pynx":
                    groups[-1] = ("pynx", a + "," + groups[-1][1])
                else:
                    groups.append(("pynx", a))
            for i, (kind, v) in enumerate(groups):
                if kind == "dl":
                    self._apply_dl(v)
                elif i == len(groups) - 1:
                    super().run_algorithm(v, file_name=file_name, run_n=run_n)
                else:
                    try:
                        super().run_algorithm(v, file_name=None, run_n=run_n)
                    except ValueError as e:
                        # PyNX 2025.1: its CPU RAAR records no 'algorithm' in the history, and the
                        # throughput report that ends run_algorithm (after all its operators ran)
                        # fails on a group without ER/HIO and without the final save
                        if "no field of name algorithm" not in str(e):
                            raise

    class CDIRunnerID01DL(CDIRunnerID01):
        """``pynx-cdi-id01`` plus the pynx-dlgap flags."""

        def __init__(self, argv, params, *args, **kwargs):
            super().__init__(argv, params)
            self.CDIRunnerScan = CDIRunnerScanID01DL

        @classmethod
        def make_parser(cls, description=None, script_name="pynx-cdi-id01-dl", epilog=None, default_par=None):
            parser = super().make_parser(description, script_name, epilog, default_par)
            grp = parser.add_argument_group("pynx-dlgap deep-learning steps")
            grp.add_argument("--dl-inpaint", "--dl_inpaint", dest="dl_inpaint", nargs="?", const="shipped",
                             default=None, metavar="WEIGHTS",
                             help="fill the masked voxels (detector gaps) with the DL model before phasing; "
                                  "WEIGHTS: a .safetensors file with its card (default: the shipped weights)")
            grp.add_argument("--dl-inpaint-mode", "--dl_inpaint_mode", dest="dl_inpaint_mode",
                             choices=["observed", "estimate", "release"], default="estimate",
                             help="write the fill as PyNX estimated values (default: a loose 0.5x-1.2x amplitude "
                                  "constraint on PyNX's CUDA/OpenCL operators; its CPU operators treat them as "
                                  "masked; the DL start uses the fill either way), as observed intensities (a hard "
                                  "constraint), or as observed intensities released (masked again) where PyNX's "
                                  "zero-mask phase ends (release: PyNX's chain from nb_raar/nb_er/... with a "
                                  "releasefill step; with --algorithm, put releasefill in it)")
            grp.add_argument("--dl-bf16", "--dl_bf16", dest="dl_bf16", choices=["on", "off"], default="off",
                             help="bfloat16 for the inpainting (autocast) and phase (bf16 copy) models (faster on GPUs "
                                  "and bf16 CPUs; elsewhere float32 with a warning)")
            grp.add_argument("--dl-inpaint-tta", "--dl_inpaint_tta", dest="dl_inpaint_tta", type=int, default=1,
                             metavar="K",
                             help="with --dl-inpaint: average the model over K flip/transposition views of each "
                                  "patch (1-16; default 1 = the model alone; K times the model calls)")
            grp.add_argument("--dl-inpaint-tta-bright", "--dl_inpaint_tta_bright", dest="dl_inpaint_tta_bright",
                             type=int, default=1, metavar="K",
                             help="with --dl-inpaint: K views for the bright patches only (log-linear prefill >= "
                                  "--dl-inpaint-bright x the brightest measured pixel, beside the Bragg peak, where "
                                  "the amplitude error is made); default 1 = off")
            grp.add_argument("--dl-inpaint-bright", "--dl_inpaint_bright", dest="dl_inpaint_bright", type=float,
                             default=0.01, metavar="F",
                             help="with --dl-inpaint-tta-bright: fraction of the brightest measured pixel that "
                                  "makes a patch bright (default 0.01)")
            from .inpaint.infer import TRUST_HELP
            grp.add_argument("--dl-inpaint-trust", "--dl_inpaint_trust", dest="dl_inpaint_trust", default="card",
                             metavar="T", help="with --dl-inpaint: " + TRUST_HELP)
            from .inpaint.selfcheck import RULES
            grp.add_argument("--dl-inpaint-check", "--dl_inpaint_check", dest="dl_inpaint_check",
                             choices=["on", "off", *RULES], default="on",
                             help="self-check (default on): keep the DL or the log-linear fill, whichever "
                                  "does better on the gap's mirror images through the Bragg peak; a rule name "
                                  "runs that rule instead (geomean: the shifted copies, better on patterns like "
                                  "the training data; see pynx_dlgap.inpaint.selfcheck)")
            grp.add_argument("--dl-finetune", "--dl_finetune", dest="dl_finetune", type=int, default=0,
                             metavar="EPOCHS",
                             help="with --dl-inpaint: first fine-tune the inpainting model on this scan's measured "
                                  "data for EPOCHS epochs (artificial gaps; held-back copies of the gap score it "
                                  "before/after). Default 0: no fine-tuning")
            grp.add_argument("--dl-phase-init", "--dl_phase_init", dest="dl_phase_init", nargs="?",
                             const="shipped", default=None, metavar="WEIGHTS",
                             help="start each run from the DL reciprocal-phase prediction (default weights: "
                                  "the shipped ones for the data's dimension)")
            grp.add_argument("--dl-phase-noise", "--dl_phase_noise", dest="dl_phase_noise", type=float, default=0.0,
                             metavar="RAD",
                             help="with --dl-phase-init and nb_run > 1: runs after the first start from the "
                                  "prediction plus a smooth random phase field of this RMS (rad; seeded by the "
                                  "run number), so that PyNX's nb_run_keep can keep the best by LLK. Default 0")
            grp.add_argument("--dl-phase-tta", "--dl_phase_tta", dest="dl_phase_tta", type=int, default=1,
                             metavar="K",
                             help="with --dl-phase-init: test-time ensemble of the phase model over K of its "
                                  "48 (2-D: 8) symmetric views (K model calls). Default 1")
            grp.add_argument("--dl-phase-bin", "--dl_phase_bin", dest="dl_phase_bin", default="auto", metavar="B",
                             help="with --dl-phase-init: predict the phase on the data binned by B (one int, or "
                                  "one per axis as 2,2,1) and interpolate it back; 'auto' (default): from the "
                                  "data's estimated oversampling, only for data at least 1.8 times the model's box "
                                  "along an axis; 1: never (pynx_dlgap.phase.binning)")
            return parser

        def check_params(self):
            super().check_params()
            # the weights each flag will use are loaded (file, card, checksum, no pickle) before any data
            from .inpaint.infer import DEFAULT_WEIGHTS, load_inpaint_model
            from .models.weights import WeightsError
            from .phase.predict import load_phase_model
            if self.params.get("dl_phase_init") is not None and not any("detwin" in a for a in sys.argv[1:]):
                # the DL start carries no twin mixture; PyNX's DetwinRAAR degrades it (benchmarks/phase_basin.py)
                self.params["detwin"] = False
                print("pynx-dlgap: --dl-phase-init: detwin=False (pass detwin=True to keep PyNX's detwinning)")
            nz = self.params.get("dl_phase_noise") or 0
            if not (float(nz) >= 0 and float(nz) < 1e3):
                raise ValueError(f"pynx-cdi-id01-dl: --dl-phase-noise must be a phase RMS >= 0 (rad), got {nz}")
            if self.params.get("dl_phase_init") is not None:
                from .phase.predict import phase_views
                try:
                    tta = self.params.get("dl_phase_tta")
                    phase_views(3, 1 if tta is None else int(tta))  # 2-D data: <= 8, checked by DLPhaseInit
                except ValueError as e:
                    raise ValueError(f"pynx-cdi-id01-dl: --dl-phase-tta: {e}") from None
                try:
                    _phase_bin(self.params.get("dl_phase_bin"))  # the data's dimension comes later
                except ValueError as e:
                    raise ValueError(f"pynx-cdi-id01-dl: --dl-phase-bin: {e}") from None
            if self.params.get("dl_inpaint_mode") == "release":
                algo = self.params.get("algorithm")
                steps = [] if algo is None else [a.strip().lower() for a in str(algo).split(",")]
                if self.params.get("dl_inpaint") is None and "dlinpaint" not in steps:
                    raise ValueError("pynx-cdi-id01-dl: --dl-inpaint-mode release needs --dl-inpaint (or a dlinpaint "
                                     "step in --algorithm)")
                if algo is not None and "releasefill" not in steps:
                    raise ValueError("pynx-cdi-id01-dl: --dl-inpaint-mode release with --algorithm: put a releasefill "
                                     "step where the fill should be masked again, e.g. "
                                     "\"ER**200,RAAR**240,releasefill,RAAR**360\"")
                if algo is None:
                    try:
                        default_chain_algorithm(self.params, release=True)
                    except ValueError as e:
                        raise ValueError(f"pynx-cdi-id01-dl: --dl-inpaint-mode release: {e}") from None
            ft = self.params.get("dl_finetune") or 0
            if int(ft) < 0:
                raise ValueError(f"pynx-cdi-id01-dl: --dl-finetune must be >= 0 epochs, got {ft}")
            if int(ft) > 0 and self.params.get("dl_inpaint") is None:
                raise ValueError("pynx-cdi-id01-dl: --dl-finetune needs --dl-inpaint (it fine-tunes that model)")
            from .inpaint.tta import symmetry_views
            try:
                tta = self.params.get("dl_inpaint_tta")
                symmetry_views(3, _int(tta, 1))
            except ValueError as e:
                raise ValueError(f"pynx-cdi-id01-dl: --dl-inpaint-tta: {e}") from None
            from .inpaint.infer import check_bright
            try:
                check_bright(3, _int(self.params.get("dl_inpaint_tta_bright"), 1),
                             _float(self.params.get("dl_inpaint_bright"), 0.01))
            except (TypeError, ValueError) as e:
                raise ValueError(f"pynx-cdi-id01-dl: --dl-inpaint-tta-bright/--dl-inpaint-bright: {e}") from None
            from .inpaint.selfcheck import check_rule
            try:
                check_rule(_check(self.params.get("dl_inpaint_check")))
            except ValueError as e:
                raise ValueError(f"pynx-cdi-id01-dl: --dl-inpaint-check: {e}") from None
            try:
                _trust(self.params.get("dl_inpaint_trust"))
            except Exception as e:
                raise ValueError(f"pynx-cdi-id01-dl: --dl-inpaint-trust: {e}") from None
            try:
                if self.params.get("dl_inpaint") is not None:
                    load_inpaint_model(_weights(self.params["dl_inpaint"], DEFAULT_WEIGHTS))
                if self.params.get("dl_phase_init") is not None:  # "shipped": the 3-D default (ID01 data)
                    v = self.params["dl_phase_init"]
                    load_phase_model(None if v == "shipped" else v, 3)
            except WeightsError as e:
                raise WeightsError(f"pynx-cdi-id01-dl: {e}") from None

    _CACHE["classes"] = (CDIRunnerID01DL, CDIRunnerScanID01DL)
    return _CACHE["classes"]


def main(argv=None):
    """Console entry point ``pynx-cdi-id01-dl`` (same arguments as ``pynx-cdi-id01``, plus the DL flags)."""
    from .pynx_backend import PyNXUnavailable, import_pynx
    try:
        import_pynx(module="pynx.cdi.runner.id01")
    except PyNXUnavailable as e:
        print(f"pynx-cdi-id01-dl: {e}", file=sys.stderr)
        return 2
    if argv is not None:
        sys.argv = [sys.argv[0]] + list(argv)
    from pynx.cdi.runner.id01 import default_params
    from .models.weights import WeightsError
    from .pynx_backend import CUDAUnavailable, _family_of, init_pynx_cuda
    if _family_of(import_pynx()) == "cuda":
        try:  # before PyNX's runner makes a CUDA context of its own
            print(f"pynx-dlgap: PyNX's CUDA family shares torch's CUDA context: {init_pynx_cuda()}")
        except CUDAUnavailable as e:
            print(f"pynx-dlgap: warning: {e}; the DL steps will copy through the host", file=sys.stderr)
    runner_cls, scan_cls = runner_classes()
    try:
        w = runner_cls(sys.argv, default_params, scan_cls)
        w.process_scans()
    except WeightsError as e:
        print(f"pynx-cdi-id01-dl: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
