"""Real-space comparison of a reconstructed object with the ground truth (pure numpy/scipy).

A phase-retrieval solution is only defined up to the *trivial ambiguities*:
a translation, a global phase offset, a linear phase ramp (a shift of the Bragg
peak centre), the modulus scale, and the twin (conjugate inversion,
``conj(obj(-r))``, which has the same diffraction pattern). :func:`align_objects`
removes all of them before measuring errors:

1. **Twin**: both ``obj`` and :func:`twin_image` ``(obj)`` are aligned; the one
   with the smaller complex residual ``||a·obj' - ref|| / ||ref||`` inside the
   support is kept (``AlignResult.twin`` says which). The twin is the exact
   Fourier twin ``t[i] = conj(obj[-i mod n])`` (flip every axis, then roll by
   1), so ``FT(t) = conj(FT(obj))`` for any size, even or odd.
2. **Translation**: moduli are registered with
   :func:`skimage.registration.phase_cross_correlation` (upsampled), then the
   sub-pixel shift is refined by Gauss-Newton on ``a·|T_s obj|² - |ref|²``
   (``T_s`` = Fourier shift, analytic derivatives), which reaches ~1e-5 px on
   noise-free data. The shift is applied with a Fourier shift (periodic).
3. **Phase offset and ramp**: a weighted least-squares plane fit of
   ``angle(obj'·conj(ref))`` inside the support, weights ``|obj'|·|ref|``.
   To avoid phase wrapping, a coarse ramp is first taken from the peak of the
   FFT of ``obj'·conj(ref)``, and the fit is iterated on re-wrapped residuals.
   Coordinates are relative to the array centre (``n//2``), so the offset is the
   phase difference there.
4. **Scale**: least squares ``a = sum|obj'||ref| / sum|obj'|²`` in the support.

Errors are reported inside the true support (``|ref| > threshold·max|ref|``,
0.5 by default, or given): relative RMS modulus error, RMS and max absolute
phase error (radians, wrapped to ``(-pi, pi]``), and a modulus-weighted phase
RMS.

:func:`prtf` computes the phase retrieval transfer function of a solution
against the observed intensity, as PyNX does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._checks import PatternError, check_mask, check_pattern

__all__ = ["AlignResult", "PRTFResult", "twin_image", "fourier_shift", "register_shift",
           "remove_phase_ramp", "align_objects", "object_errors", "prtf"]


# ---------------------------------------------------------------------------
# basic operations
# ---------------------------------------------------------------------------
def _check_obj(a, name):
    a = np.asarray(a)
    if a.ndim not in (2, 3):
        raise PatternError(f"{name} has ndim={a.ndim}; expected a 2-D or 3-D complex object")
    if not (np.issubdtype(a.dtype, np.complexfloating) or np.issubdtype(a.dtype, np.floating)
            or np.issubdtype(a.dtype, np.integer)):
        raise PatternError(f"{name} has dtype {a.dtype}; expected a complex (or real) object")
    if not np.all(np.isfinite(a)):
        raise PatternError(f"{name} contains NaN/inf values")
    return a.astype(np.complex128)


def twin_image(obj) -> np.ndarray:
    """The Fourier twin ``conj(obj[-i mod n])``: same ``|FT|``, conjugate FT.

    All axes are flipped then rolled by 1, which maps index ``i`` to ``-i mod n``
    for even and odd sizes alike.
    """
    obj = np.asarray(obj)
    axes = tuple(range(obj.ndim))
    return np.conj(np.roll(np.flip(obj, axis=axes), 1, axis=axes))


def _freqs(shape):
    return [np.fft.fftfreq(n).reshape([-1 if a == k else 1 for a in range(len(shape))])
            for k, n in enumerate(shape)]


def _fftn(a):
    import scipy.fft
    return scipy.fft.fftn(a, workers=-1)


def _ifftn(a):
    import scipy.fft
    return scipy.fft.ifftn(a, workers=-1)


def fourier_shift(obj, shift) -> np.ndarray:
    """Translate ``obj`` by ``shift`` pixels (``out(r) = obj(r - shift)``), periodic, sub-pixel."""
    obj = np.asarray(obj)
    shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), (obj.ndim,))
    F = _fftn(obj.astype(np.complex128))
    for k, v in zip(_freqs(obj.shape), shift):
        F = F * np.exp(-2j * np.pi * k * v)
    out = _ifftn(F)
    return out if np.iscomplexobj(obj) else out.real


def register_shift(moving, reference, upsample: int | None = None, refine: bool = True,
                   n_iter: int = 20) -> np.ndarray:
    """Shift (pixels) that, applied to ``moving`` with :func:`fourier_shift`, best matches ``reference``.

    Registration uses the **moduli** only (insensitive to phase offsets and
    ramps): an upsampled cross-correlation (``upsample`` = 100 in 2-D, 20 in 3-D
    by default), then optional Gauss-Newton refinement of ``(shift, a)`` on the
    residual ``a·|T_s moving|² - |reference|²`` over the full array.
    """
    from skimage.registration import phase_cross_correlation

    mov = np.asarray(moving)
    ref = np.asarray(reference)
    if upsample is None:
        upsample = 100 if mov.ndim == 2 else 20
    s0, _, _ = phase_cross_correlation(np.abs(ref), np.abs(mov), upsample_factor=upsample,
                                       normalization=None)
    s = np.asarray(s0, dtype=np.float64)
    if not refine:
        return s
    F = _fftn(mov.astype(np.complex128))
    ks = [k.ravel() for k in _freqs(mov.shape)]
    nd = mov.ndim
    tgt = np.abs(ref).astype(np.float64) ** 2

    def bshape(k, a):
        return k.reshape([-1 if b == a else 1 for b in range(nd)])

    def state(sh):
        E = F
        for a, (k, v) in enumerate(zip(ks, sh)):  # separable phase factor: cheap
            E = E * bshape(np.exp(-2j * np.pi * k * v), a)
        return E, _ifftn(E)

    E, u = state(s)
    u2 = np.abs(u) ** 2
    a = float(np.vdot(u2, tgt).real / max(np.vdot(u2, u2).real, 1e-300))
    cost = float(np.sum((a * u2 - tgt) ** 2))
    for _ in range(n_iter):
        cols = [2 * a * np.real(np.conj(u) * _ifftn(E * bshape(-2j * np.pi * k, ax))).ravel()
                for ax, k in enumerate(ks)]
        cols.append(u2.ravel())
        r = (a * u2 - tgt).ravel()
        npar = len(cols)
        JTJ = np.empty((npar, npar))
        for i in range(npar):
            for j in range(i, npar):
                JTJ[i, j] = JTJ[j, i] = np.dot(cols[i], cols[j])
        JTr = np.array([np.dot(c, r) for c in cols])
        try:
            step = -np.linalg.solve(JTJ + 1e-12 * np.trace(JTJ) * np.eye(npar) / npar, JTr)
        except np.linalg.LinAlgError:
            break
        ds, da = step[:-1], step[-1]
        if np.max(np.abs(ds)) > 1.0:
            ds = ds / np.max(np.abs(ds))
        s_new, a_new = s + ds, a + da
        E_new, u_new = state(s_new)
        u2_new = np.abs(u_new) ** 2
        cost_new = float(np.sum((a_new * u2_new - tgt) ** 2))
        if cost_new >= cost:
            break
        s, a, E, u, u2 = s_new, a_new, E_new, u_new, u2_new
        # converged, or only creeping (a non-zero residual floor: wrong twin, noisy data)
        done = np.max(np.abs(ds)) < 1e-6 or cost - cost_new < 1e-4 * cost
        cost = cost_new
        if done:
            break
    return s


def _centred_coords(shape):
    return [(np.arange(n) - n // 2).reshape([-1 if a == k else 1 for a in range(len(shape))]).astype(np.float64)
            for k, n in enumerate(shape)]


def remove_phase_ramp(obj, ref, support, n_iter: int = 4):
    """Remove from ``obj`` the phase offset and linear ramp relative to ``ref`` inside ``support``.

    Returns ``(corrected_obj, offset, ramp)`` with ``ramp`` in rad/pixel per
    axis and ``corrected = obj·exp(-i(offset + ramp·(r - n//2)))``. Weighted
    least squares (weights ``|obj|·|ref|``) on wrapped residuals, started from
    the FFT peak of ``obj·conj(ref)`` so that large ramps do not wrap.
    """
    obj = np.asarray(obj, dtype=np.complex128)
    ref = np.asarray(ref, dtype=np.complex128)
    sup = np.asarray(support, dtype=bool)
    shape = obj.shape
    coords = _centred_coords(shape)
    P = np.where(sup, obj * np.conj(ref), 0)
    # coarse ramp: integer-frequency peak of FT(P)
    A = np.abs(_fftn(P))
    pk = np.unravel_index(int(np.argmax(A)), shape)
    g = np.array([2 * np.pi * np.fft.fftfreq(n)[p] for n, p in zip(shape, pk)], dtype=np.float64)
    c = 0.0
    Ps = P[sup]
    w = np.abs(Ps)
    X = np.stack([np.ones(Ps.size)] + [np.broadcast_to(cc, shape)[sup] for cc in coords], axis=1)
    sw = np.sqrt(w)
    for _ in range(n_iter):
        model = c + X[:, 1:] @ g
        res = np.angle(Ps * np.exp(-1j * model))
        if w.sum() == 0:
            break
        c0 = np.angle(np.sum(w * np.exp(1j * res)))  # re-centre before the fit
        res = np.angle(np.exp(1j * (res - c0)))
        sol, *_ = np.linalg.lstsq(X * sw[:, None], res * sw, rcond=None)
        c += c0 + sol[0]
        g = g + sol[1:]
        if np.max(np.abs(sol)) < 1e-12:
            break
    c = float(np.angle(np.exp(1j * c)))
    phase = c + sum(gg * cc for gg, cc in zip(g, coords))
    return obj * np.exp(-1j * phase), c, tuple(float(x) for x in g)


# ---------------------------------------------------------------------------
# alignment
# ---------------------------------------------------------------------------
@dataclass
class AlignResult:
    """Outcome of :func:`align_objects` (errors inside the true support)."""

    obj: np.ndarray = field(repr=False)   #: aligned object (complex64), comparable to ref
    support: np.ndarray = field(repr=False)  #: the support used for the errors (bool)
    twin: bool            #: True when the conjugate-inverted object was the better match
    shift: tuple          #: shift applied (pixels) to obj (or its twin)
    phase_offset: float   #: removed phase offset at the array centre (rad)
    phase_ramp: tuple     #: removed ramp (rad/pixel per axis)
    scale: float          #: modulus scale applied
    modulus_error: float  #: sqrt(sum(|o|-|r|)^2 / sum |r|^2)
    phase_rms: float      #: RMS of the wrapped phase difference (rad)
    phase_max: float      #: max |phase difference| (rad)
    phase_rms_weighted: float  #: RMS phase difference weighted by |ref| (rad)
    residual: float       #: ||o - r|| / ||r|| (complex), the twin criterion
    residual_other: float  #: the same for the rejected twin (cross-correlation shift only when it was clearly worse)

    def as_dict(self) -> dict:
        """Scalar results only (for tables/JSON)."""
        return {k: getattr(self, k) for k in (
            "twin", "shift", "phase_offset", "phase_ramp", "scale", "modulus_error", "phase_rms",
            "phase_max", "phase_rms_weighted", "residual", "residual_other")}


def _align_one(obj, ref, sup, upsample, refine):
    s = register_shift(obj, ref, upsample=upsample, refine=refine)
    u = fourier_shift(obj, s)
    u, c, g = remove_phase_ramp(u, ref, sup)
    mu, mr = np.abs(u[sup]), np.abs(ref[sup])
    den = float((mu * mu).sum())
    a = float((mu * mr).sum() / den) if den > 0 else 1.0
    u = u * a
    res = float(np.linalg.norm(u[sup] - ref[sup]) / max(np.linalg.norm(ref[sup]), 1e-300))
    return u, tuple(float(x) for x in s), c, g, a, res


def align_objects(obj, ref, support=None, threshold: float = 0.5, twin="auto",
                  upsample: int | None = None) -> AlignResult:
    """Align ``obj`` (a reconstruction) onto ``ref`` (the truth) and measure the errors.

    :param obj, ref: complex objects of the same 2-D or 3-D shape.
    :param support: bool array (True inside the crystal) where errors are
        measured; default ``|ref| > threshold·max|ref|``.
    :param twin: ``'auto'`` (try both, keep the better), ``False`` (obj as is),
        ``True`` (force the conjugate inversion). With ``'auto'`` both
        candidates are first aligned with the cross-correlation shift only; when
        one is clearly better (residual ratio > 2) only it is refined, otherwise
        both are refined and compared again.
    :param upsample: cross-correlation upsampling (default 100 in 2-D, 20 in 3-D)
        before the Gauss-Newton refinement.
    """
    o = _check_obj(obj, "obj")
    r = _check_obj(ref, "ref")
    if o.shape != r.shape:
        raise PatternError(f"obj has shape {o.shape} but ref has shape {r.shape}; they must match")
    if support is None:
        amp = np.abs(r)
        if amp.max() == 0:
            raise PatternError("ref is zero everywhere: no support to compare in")
        sup = amp > threshold * amp.max()
    else:
        sup = check_mask(support, r.shape, name="support", allow_full=True)
        if not sup.any():
            raise PatternError("support is empty")
    if twin == "auto":
        cands = [False, True]
    elif twin in (True, False):
        cands = [bool(twin)]
    else:
        raise ValueError(f"twin must be 'auto', True or False, got {twin!r}")
    objs = {tw: (twin_image(o) if tw else o) for tw in cands}
    if len(cands) == 2:
        coarse = sorted(((tw,) + _align_one(objs[tw], r, sup, upsample, False) for tw in cands),
                        key=lambda t: t[-1])
        if coarse[1][-1] > 2 * coarse[0][-1]:
            best = (coarse[0][0],) + _align_one(objs[coarse[0][0]], r, sup, upsample, True)
            results = [best, coarse[1]]
        else:
            results = sorted(((tw,) + _align_one(objs[tw], r, sup, upsample, True) for tw in cands),
                             key=lambda t: t[-1])
    else:
        results = [(cands[0],) + _align_one(objs[cands[0]], r, sup, upsample, True)]
    tw, u, s, c, g, a, res = results[0]
    res_other = results[1][-1] if len(results) > 1 else float("nan")
    us, rs = u[sup], r[sup]
    mod_err = float(np.sqrt(((np.abs(us) - np.abs(rs)) ** 2).sum() / (np.abs(rs) ** 2).sum()))
    dphi = np.angle(us * np.conj(rs))
    wr = np.abs(rs)
    return AlignResult(
        obj=u.astype(np.complex64), support=sup, twin=bool(tw), shift=s, phase_offset=c, phase_ramp=g,
        scale=a, modulus_error=mod_err, phase_rms=float(np.sqrt(np.mean(dphi ** 2))),
        phase_max=float(np.max(np.abs(dphi))),
        phase_rms_weighted=float(np.sqrt((wr * dphi ** 2).sum() / wr.sum())),
        residual=res, residual_other=float(res_other))


def object_errors(obj, ref, support=None, **kw) -> dict:
    """:func:`align_objects` and return only the scalar results (dict)."""
    return align_objects(obj, ref, support=support, **kw).as_dict()


# ---------------------------------------------------------------------------
# PRTF
# ---------------------------------------------------------------------------
@dataclass
class PRTFResult:
    """Phase retrieval transfer function per frequency shell."""

    freq: np.ndarray      #: shell centres, in pixels from the pattern centre
    fnyquist: int         #: Nyquist frequency (pixels): max(shape) // 2
    prtf: np.ndarray      #: sum|FT(obj)| / sum sqrt(I_obs) per shell (NaN for empty shells)
    nb: np.ndarray        #: number of unmasked voxels per shell
    iobs_shell: np.ndarray  #: sum sqrt(I_obs) per shell


def prtf(obj, iobs, mask=None, nbins: int | None = None, normalize: bool = True,
         scale: bool = True) -> PRTFResult:
    """Phase retrieval transfer function ``<|FT(obj)|>_shell / <sqrt(I_obs)>_shell``.

    Same definition as PyNX's ``PRTF`` operator (``pynx/cdi/*_operator.py``)
    and ``pynx.utils.phase_retrieval_transfer_function.prtf`` with
    ``shell_averaging_method='before'``: amplitudes are summed over each shell
    of the unmasked voxels before the ratio is taken.

    :param obj: real-space object, same shape as ``iobs`` (its position in the
        array does not matter: only ``|FT(obj)|`` is used).
    :param iobs: observed intensity, centred (origin at the array centre, the
        usual detector view, not fft-shifted).
    :param mask: True where ``iobs`` is not measured (excluded).
    :param nbins: number of shells between 0 and the Nyquist frequency
        ``max(shape)//2`` (pixel distance from the centre, no per-axis scaling);
        default ``fnyquist // 2`` (2-pixel shells, PyNX's default).
    :param normalize: divide by the maximum over non-empty shells (PyNX's
        convention, ``norm_percentile=100``).
    :param scale: scale ``|FT(obj)|²`` so that its sum over unmasked voxels
        equals that of ``iobs`` (only matters when ``normalize`` is False).
    """
    o = _check_obj(obj, "obj")
    a, m = check_pattern(iobs, mask, name="iobs")
    if o.shape != a.shape:
        raise PatternError(f"obj has shape {o.shape} but iobs has shape {a.shape}; they must match")
    calc = np.abs(np.fft.fftshift(_fftn(o))) / np.sqrt(o.size)  # unitary FT, as PyNX
    obs = np.sqrt(a.astype(np.float64))
    valid = ~m
    if scale:
        sc = (calc[valid] ** 2).sum()
        if sc > 0:
            calc = calc * np.sqrt((obs[valid] ** 2).sum() / sc)
    fny = int(max(a.shape) // 2)
    if nbins is None:
        nbins = max(fny // 2, 1)
    nbins = int(nbins)
    if nbins < 1:
        raise ValueError(f"nbins must be >= 1, got {nbins}")
    r2 = sum(c ** 2 for c in _centred_coords(a.shape))
    r = np.sqrt(r2)
    shell = np.floor(r / fny * nbins).astype(np.int64)
    sel = valid & (shell < nbins)
    idx = shell[sel]
    s_calc = np.bincount(idx, weights=calc[sel], minlength=nbins)
    s_obs = np.bincount(idx, weights=obs[sel], minlength=nbins)
    nb = np.bincount(idx, minlength=nbins)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(s_obs > 0, s_calc / np.where(s_obs > 0, s_obs, 1), np.nan)
    p[nb == 0] = np.nan
    if normalize and np.any(np.isfinite(p)):
        p = p / np.nanmax(p)
    freq = (np.arange(nbins) + 0.5) * fny / nbins
    return PRTFResult(freq=freq, fnyquist=fny, prtf=p, nb=nb, iobs_shell=s_obs)
