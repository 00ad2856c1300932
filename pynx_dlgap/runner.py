"""``pynx-cdi-id01-dl``: PyNX's ``pynx-cdi-id01`` plus the deep-learning steps.

Made by subclassing PyNX's runner classes (``CDIRunnerID01`` / ``CDIRunnerScanID01``),
without copying or patching PyNX: every ``pynx-cdi-id01`` parameter and output is
PyNX's own. New flags (group "pynx-dlgap deep-learning steps" in ``--help``):

``--dl-inpaint [WEIGHTS]``
    fill the masked voxels (detector gaps) with the DL inpainting model once the
    CDI is built (after PyNX's own mask handling); default weights: the shipped ones.
``--dl-inpaint-mode estimate|observed``
    write the fill as PyNX *estimated* values (default: a loose 0.5x-1.2x amplitude
    constraint on PyNX's OpenCL/CUDA operators; on its CPU operators the gap stays
    free; the DL start uses the fill either way) or as observed intensities (a hard
    constraint). Measured with ``benchmarks/runner_dl.py``: on PyNX's CUDA backend,
    estimate beat observed at both strain levels, and ``--dl-inpaint --dl-phase-init``
    (estimate) beat the command without DL flags.
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
``--dl-inpaint-check on|off``
    self-check (default on): the DL fill is compared with log-linear interpolation on
    shifted copies of the gap cut into the scan's measured data
    (:mod:`pynx_dlgap.inpaint.selfcheck`); the better one is written.
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
``--dl-inpaint-mode observed --algorithm "ER**200,RAAR**240,releasefill,RAAR**360,dlinpaint"``
uses the fill as data for the first 360 cycles only (measured with the harness's chain,
``benchmarks/gap_fill.py ... dl:release``; not yet measured in PyNX's runner).

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


def _trust(value):
    """``--dl-inpaint-trust`` (command line or parameter file: a string, or a number) -> ``inpaint(trust=)``."""
    if value is None:
        return "card"
    if isinstance(value, (int, float)):
        from .inpaint.infer import resolve_trust
        return resolve_trust(None, value)
    from .inpaint.infer import trust_arg
    return trust_arg(value)


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
            elif token == "dlinpaint":
                from .inpaint.infer import DEFAULT_WEIGHTS, load_inpaint_model
                model, _ = load_inpaint_model(_weights(p.get("dl_inpaint"), DEFAULT_WEIGHTS))
                if int(p.get("dl_finetune") or 0) > 0:
                    self._finetune(model, int(p["dl_finetune"]))
                self.cdi = DLInpaint(model=model,
                                     mode=p.get("dl_inpaint_mode") or "estimate",
                                     bf16=p.get("dl_bf16", "off") == "on",
                                     tta=_int(p.get("dl_inpaint_tta"), 1),
                                     trust=_trust(p.get("dl_inpaint_trust")),
                                     tta_bright=_int(p.get("dl_inpaint_tta_bright"), 1),
                                     bright=_float(p.get("dl_inpaint_bright"), 0.01),
                                     check=p.get("dl_inpaint_check", "on") == "on") * self.cdi
                inf = getattr(self.cdi, "dl_inpaint_info", {})
                p["dl_inpaint_fill"] = str(inf.get("fill", "dl"))
                if inf.get("check"):
                    sc = inf["check"]
                    p["dl_inpaint_check"] = json.dumps(sc, default=float)
                    print(f"pynx-dlgap: self-check chose {sc['choice']} "
                          + " ".join(f"(amplitude error {k} {v['amp']:.4f})" for k, v in sc["scores"].items()))
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
                                       bf16=p.get("dl_bf16", "off") == "on") * self.cdi
                inf = getattr(self.cdi, "dl_phase_init_info", {})
                p["dl_phase_init_seconds"] = time.perf_counter() - t0
                p["dl_phase_init_sha256"] = str(inf.get("weights_sha256") or "")
                p["dl_phase_init_region"] = str(inf.get("region_shape", ""))
                p["dl_phase_init_noise"] = noise
                p["dl_phase_init_tta"] = int(inf.get("tta", 1))
                print(f"pynx-dlgap: DLPhaseInit start in {p['dl_phase_init_seconds']:.1f} s, support "
                      f"{inf.get('support_points')} voxels" + (f", phase noise {noise:g} rad" if noise else ""))

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
                else:
                    super().run_algorithm(v, file_name=file_name if i == len(groups) - 1 else None, run_n=run_n)

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
                             choices=["observed", "estimate"], default="estimate",
                             help="write the fill as PyNX estimated values (default: a loose 0.5x-1.2x amplitude "
                                  "constraint on PyNX's CUDA/OpenCL operators, the gap stays free on its CPU "
                                  "operators; the DL start uses the fill either way) or as observed intensities "
                                  "(a hard constraint; worse in benchmarks/runner_dl.py)")
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
            grp.add_argument("--dl-inpaint-check", "--dl_inpaint_check", dest="dl_inpaint_check",
                             choices=["on", "off"], default="on",
                             help="self-check (default on): compare the DL fill with log-linear interpolation on "
                                  "shifted copies of the gap cut into the measured data, keep the better one")
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
