"""The simulation pipeline shared by 2-D and 3-D samples.

``simulate(seed, dims, shape, regime, knobs)`` builds, in order:

1. **knobs**: every knob not given is drawn for ``regime`` (:mod:`.knobs`);
2. **crystal**: a convex polytope (2-D random polygon, 3-D faceted shape),
   randomly rotated and scaled per axis so that its bounding box is
   ``shape / oversampling`` pixels;
3. **modulus**: sampled on a box of spacing ``1/crop`` pattern pixels from the
   signed distance ``sd`` to the surface (plus ``roughness``, a smooth random
   field of rms ``roughness`` px; where it would leave no point of a small crystal
   inside, its amplitude is halved, x ``params['roughness_factor']``, until half are):
   ``0.5 erfc(-sd / (sqrt(2) sigma))`` with ``sigma = sqrt(edge_sigma^2 + h^2/12)``
   (a Gaussian-smoothed edge; ``edge_sigma = 0`` leaves only the partial-volume
   antialiasing of the sampling step ``h``),
   times ``1 + modulus_noise * noise``;
4. **Bragg phase** ``phi = G.u``: weighted sum of a random smooth field
   (``phase_length``), a surface-relaxation field ``sum_i a_i exp(-d_i/lambda)``
   decaying from every free facet ``i`` (amplitude ``a_i`` = a random per-facet-
   family relaxation times ``G.n_i``), and (Winterbottom) an interface field
   decaying from the substrate plane (normal + lateral misfit displacement);
   each term normalised, the modulus-weighted linear ramp removed (the Bragg
   peak stays centred), then scaled so that ``max - min`` of ``phi`` over the
   support is exactly ``phase_range``. If the 99th percentile of
   ``|grad phi|`` exceeds ``max_phase_gradient`` (rad per simulated voxel) all
   field lengths are stretched (x ``params['phase_length_factor']``) and the
   field redrawn, up to 5 times (``params['phase_gradient']`` is the final value;
   a huge phase range on a tiny object can stay above the limit);
5. **object** ``modulus * exp(i phi)`` with the global phase set so that
   ``sum(object)`` is real positive (phase 0 at the Bragg peak);
6. **diffraction**: ``F = dft_box(object, x - com)``, the centred DFT with the
   origin at the modulus centre of mass (no phase ramp from translation),
   ``expected = scale |F|^2 + background`` with ``scale`` so that the crystal
   signal peaks at ``peak`` counts in this window (or the ``scale`` given, which
   :func:`pynx_dlgap.training.phase_data.peak_window` passes so that a moved window
   of one crystal keeps its counts); ``intensity = Poisson(expected)``;
7. **detector**: dead pixels (zeros) and a gap layout (mask).

Returned dict (all arrays of the pattern ``shape``)
--------------------------------------------------
``intensity`` float32 counts, complete (ground truth inside the gaps too);
dead pixels hold 0.
``mask`` bool, True in the gaps (not measured). Dead pixels are *not* in it.
``dead`` bool, the dead pixels outside the gaps (measured zeros in
``intensity``; use ``mask | dead`` to treat them as masked instead).
``expected`` float32, noise-free expected counts (crystal + background).
``object`` complex64 real-space object on the pattern's real-space grid:
``scale * |cfft(object)|**2 == expected - background``. Whole patterns
(``crop == 1`` and no ``crop_shift``): the sampled object, translated by whole
voxels so that its modulus centre of mass is at ``n//2 + com_offset``
(``|com_offset| <= 0.5`` up to the far edge tails dropped at the array border).
Crops: the band-limited object ``icfft(F)`` seen at the resolution of the crop
(``com_offset = 0``).
``phase`` float32 reciprocal-space phase label, radians in (-pi, pi]:
``phase == angle(cfft(object) * exp(2 pi i q.com_offset))`` with ``q = (k - n//2)/n``,
i.e. the phase of the FT of the object centred *exactly* on its modulus centre
of mass, and 0 at the Bragg peak (``q = 0``: index ``n//2 - crop_shift``, up to
float32 rounding). With ``crop_shift`` the object is ``icfft`` of the shifted
crop (it carries the matching phase ramp). :func:`~pynx_dlgap.simulate.diffraction.phase_label` recomputes it.
``support`` bool, inside the crystal surface (signed distance >= 0).
``params`` JSON-ready dict: ``seed``, ``dims``, ``shape``, ``regime``, ``knobs``
(all of them: ``simulate(seed, dims, shape, regime, params['knobs'])`` gives
identical arrays), ``gaps`` (layout dict), ``scale``, ``com_offset``,
``phase_ptp`` (measured), ``stats`` (:func:`pattern_stats`), ...
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special

from .diffraction import (_one_blas_thread, background, centre, dead_pixels, dft_box, icfft, pattern_stats,
                          poisson)
from .gaps import AXIS_X, AXIS_Y, DETECTORS, Gap, GapLayout, module_layout, random_layout
from .geometry import place, plane_wave_field, random_rotation, smooth_noise
from .knobs import KnobError, check_knobs, check_shape, default_gap_widths, random_knobs

__all__ = ["simulate", "stream", "draw_gaps", "FORMAT_VERSION"]

FORMAT_VERSION = 1

_STREAMS = {"knobs": 0, "geometry": 1, "roughness": 2, "modulus": 3, "phase_random": 4,
            "phase_surface": 5, "phase_interface": 6, "counts": 7, "dead": 8, "gaps": 9}


def _check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise KnobError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def stream(seed: int, name: str) -> np.random.Generator:
    """The independent random stream ``name`` of sample ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _STREAMS[name]]))


def _module_gaps(rng, shape, detector):
    """A module layout of ``detector`` seen through a random region with >= 1 gap."""
    geo = DETECTORS[detector]
    offs = []
    want = [True, True]
    if rng.random() < 0.6:
        want[int(rng.integers(2))] = False
    for k, axis in enumerate((AXIS_Y, AXIS_X)):
        n = shape[axis]
        per, w = geo["period"][k], geo["gap"][k]
        if not want[k] and n < per:
            a = int(rng.integers(n, per + 1))
        else:
            a = int(rng.integers(-w + 1, n))
        offs.append(per - a)
    return module_layout(shape, detector, tuple(offs))


def draw_gaps(rng: np.random.Generator, shape, knobs: dict) -> GapLayout:
    """The gap layout of a sample from its ``gaps`` knob (see :data:`KNOB_DOC`)."""
    kind = knobs.get("gaps", "random")
    if isinstance(kind, dict):
        return GapLayout.from_dict(kind)
    if kind == "none":
        return GapLayout(())
    if kind == "random" and rng.random() < 0.15:
        kind = "maxipix" if rng.random() < 0.5 else "eiger"
    if kind in ("maxipix", "eiger"):
        return _module_gaps(rng, shape, kind)
    widths = knobs.get("gap_widths") or default_gap_widths(shape)
    widths = [w for w in widths if w < min(shape[-2:])]
    if not widths:
        raise KnobError(f"no gap width in {knobs.get('gap_widths')} fits the pattern {tuple(shape)}")
    p_cross, p_multi = {"random": (0.25, 0.1), "plane": (0.0, 0.0), "cross": (1.0, 0.0),
                        "multi": (0.0, 1.0)}[kind]
    lay = random_layout(rng, shape, widths, p_cross=p_cross, p_multi=p_multi, margin=0)
    if rng.random() < knobs.get("p_gap_peak", 0.3):
        gaps = list(lay.gaps)
        j = int(rng.integers(len(gaps)))
        g = gaps[j]
        c = shape[g.axis] // 2
        start = c - int(rng.integers(0, g.width))
        start = min(max(start, 0), shape[g.axis] - g.width)
        gaps[j] = Gap(g.axis, start, g.width)
        lay = GapLayout(tuple(gaps))
    return lay


def _axis_view(a, j, d):
    sh = [1] * d
    sh[j] = -1
    return np.asarray(a).reshape(sh)


def _ptp(a, sel):
    v = a[sel]
    return float(v.max() - v.min()) if v.size else 0.0


def _grad_p99(phi, sel):
    """99th percentile of |phi| differences between neighbouring voxels of ``sel``."""
    vals = []
    for j in range(phi.ndim):
        a = [slice(None)] * phi.ndim
        b = [slice(None)] * phi.ndim
        a[j], b[j] = slice(1, None), slice(None, -1)
        a, b = tuple(a), tuple(b)
        both = sel[a] & sel[b]
        vals.append(np.abs(phi[a][both] - phi[b][both]))
    v = np.concatenate(vals)
    return float(np.percentile(v, 99)) if v.size else 0.0


def _remove_ramp(phi, w, axes):
    """Subtract the ``w``-weighted least-squares plane ``a0 + sum_j a_j x_j`` from ``phi``."""
    d = len(axes)
    idx = np.nonzero(w > 0)
    if idx[0].size < d + 1:
        return phi
    ww = w[idx].astype(np.float64)
    cols = [np.ones_like(ww)] + [np.asarray(axes[j], dtype=np.float64)[idx[j]] for j in range(d)]
    x = np.stack(cols, axis=1)
    xtw = x.T * ww
    try:
        coef = np.linalg.solve(xtw @ x, xtw @ phi[idx].astype(np.float64))
    except np.linalg.LinAlgError:  # pragma: no cover
        return phi
    out = phi - np.float32(coef[0])
    for j in range(d):
        out = out - _axis_view(np.float32(coef[j + 1]) * axes[j].astype(np.float32), j, d)
    return out


def simulate(seed: int, dims: int, shape, regime="mixed", knobs: dict | None = None,
             make_crystal=None, scale: float | None = None) -> dict:
    """One simulated sample; a pure function of its arguments.

    Parameters
    ----------
    seed : int
        Non-negative integer; drives every random detail (independent streams
        for knobs, geometry, roughness, modulus noise, each phase field, counts,
        dead pixels and gaps).
    dims : {2, 3}
    shape : int or tuple of int
        Pattern shape, every axis >= 16.
    regime : str or float
        'textbook', 'measured', 'mixed' or r in [0, 1]: the ranges of the knobs
        not given (:func:`~pynx_dlgap.simulate.knobs.random_knobs`).
    knobs : dict
        Fixed knobs (:data:`~pynx_dlgap.simulate.knobs.KNOB_DOC`).
    make_crystal : callable, optional
        ``(rng, knobs) -> (Polytope, unit G vector)`` to simulate another family
        of convex crystals.
    scale : float, optional
        The factor from the crystal's ``|F|^2`` to counts. Default: ``peak`` over the maximum of
        ``|F|^2`` in this window. Given the ``params['scale']`` of the ``crop_shift`` 0 sample, a
        window moved by ``crop_shift`` has the same ``expected`` where the two overlap, up to float32
        rounding (the BLAS may sum a row in an order that depends on its place in the window; the default
        would rescale it whenever the moved window holds a brighter ``|F|^2`` or loses the maximum).

    Returns
    -------
    dict
        ``intensity, mask, dead, expected, object, phase, support, params``
        (see the module doc).
    """
    with _one_blas_thread():
        return _simulate(seed, dims, shape, regime, knobs, make_crystal, scale)


def _simulate(seed, dims, shape, regime, knobs, make_crystal, scale=None):
    seed = _check_seed(seed)
    shape = check_shape(shape, dims)
    user = check_knobs(dict(knobs or {}), dims, shape)
    k = random_knobs(stream(seed, "knobs"), dims, regime, shape)
    k.update(user)
    k = check_knobs(k, dims, shape)
    if make_crystal is None:
        if dims == 2:
            from .crystal2d import make_crystal_2d as make_crystal
        else:
            from .crystal3d import make_crystal_3d as make_crystal
    d = dims
    n = np.array(shape)

    # ---- crystal ------------------------------------------------------------------
    rg = stream(seed, "geometry")
    poly, gdir = make_crystal(rg, k)
    rot = random_rotation(rg, d)
    ext = n / np.array(k["oversampling"])
    pl = place(poly, rot, ext)
    s = float(k["crop"])
    h = 1.0 / s
    shift = list(k["crop_shift"])
    whole = s == 1.0 and not any(shift)
    sig = math.sqrt(k["edge_sigma"] ** 2 + h * h / 12.0)
    pad = 4.0 * sig + 3.0 * k["roughness"] + 1.5
    m_box = [int(math.ceil((e + 2 * pad) / h)) for e in ext]
    if whole:
        m_box = [min(mb, int(nn)) for mb, nn in zip(m_box, n)]
    axes = [((np.arange(mb) - (mb - 1) / 2.0) * h).astype(np.float32) for mb in m_box]
    box_shape = tuple(m_box)
    size = pl.size

    # ---- signed distance, modulus ------------------------------------------------------
    sd = pl.signed_distance(axes)
    rough_factor = 1.0
    if k["roughness"] > 0:
        rough = smooth_noise(stream(seed, "roughness"), box_shape, k["roughness_length"] * s)
        # A small or thin crystal can vanish under a roughness field that is negative over all of
        # it (the field is smooth on the crystal's scale; 2-D 24^2 patterns: 1 draw in 600, 32^2:
        # 1 in 6000; none in 11000 2-D 64^2 or 3900 3-D 32^3 draws). Then the amplitude is halved
        # (params['roughness_factor']) until the crystal keeps half its sample points. Draws that
        # keep a point at full amplitude are unchanged (simulate() up to 0.7.16 raised "empty
        # crystal" for the others), even where the roughness removes most of a small crystal:
        # more than half in 3 % of 2-D 24^2 and 2.4 % of 3-D 32^3 measured-regime draws, 1 in 2225
        # at 3-D 64^3, none in 7000 2-D 64^2 or 128^2 draws.
        def inside(f):
            return int(np.count_nonzero(sd + np.float32(k["roughness"] * f) * rough >= 0))

        if inside(1.0) == 0:  # factor 0 always keeps them all
            keep = 0.5 * np.count_nonzero(sd >= 0)
            rough_factor = next(f for f in [0.5 ** i for i in range(1, 11)] + [0.0] if inside(f) >= keep)
        sd += np.float32(k["roughness"] * rough_factor) * rough
    support_box = sd >= 0
    if not support_box.any():  # pragma: no cover - extents >= 4 px make this impossible
        raise RuntimeError("empty crystal: the drawn polytope holds no sample point")
    modulus = (0.5 * special.erfc(-sd / np.float32(math.sqrt(2) * sig))).astype(np.float32)

    # ---- Bragg phase ----------------------------------------------------------------
    # length scales are multiplied by mu >= 1 until the phase is well sampled
    # (99th percentile of |grad phi| <= max_phase_gradient rad per simulated voxel)
    rs = stream(seed, "phase_surface")
    fams = sorted(set(pl.poly.family))
    rho_fam = {f: rs.uniform(-1, 1) for f in fams}
    rho = [rho_fam[f] + 0.3 * rs.uniform(-1, 1) for f in pl.poly.family]
    g_dot_n = pl.poly.normals @ gdir
    ri = stream(seed, "phase_interface")
    eps_n, eps_l = ri.uniform(-1, 1), ri.uniform(-1, 1)
    rel = [a / np.float32(size) for a in axes]
    weights = np.array([k["random_weight"], k["surface_weight"],
                        k.get("interface_weight", 0.0) if pl.poly.substrate is not None else 0.0])
    if k["phase_range"] > 0 and not (weights > 0).any():
        weights[0] = 1.0  # all weights zero: the random smooth field alone

    def phase_field(mu):
        phi = np.zeros(box_shape, np.float32)
        if weights[0] > 0:
            t = plane_wave_field(stream(seed, "phase_random"), rel, k["phase_length"] * mu)
            phi += np.float32(weights[0] / max(_ptp(t, support_box), 1e-12)) * t
        if weights[1] > 0:
            t = np.zeros(box_shape, np.float32)
            lam = np.float32(k["surface_depth"] * size * mu)
            for i in range(len(pl.beta)):
                a = np.float32(rho[i] * g_dot_n[i])
                if i != pl.poly.substrate and a != 0:
                    t += a * np.exp(-np.maximum(pl.plane_distance(i, axes), 0) / lam)
            p = _ptp(t, support_box)
            if p > 0:
                phi += np.float32(weights[1] / p) * t
        if weights[2] > 0:
            sidx = pl.poly.substrate
            ms = pl.m[sidx]
            gx = rot @ gdir
            gx /= np.linalg.norm(gx)
            gpar = gx - (gx @ ms) * ms
            cs = pl.beta[sidx] * ms
            lat = sum(_axis_view(np.float32(gpar[j]) * (axes[j] - np.float32(cs[j])), j, d)
                      for j in range(d)) / np.float32(size)
            ds = np.maximum(pl.plane_distance(sidx, axes), 0)
            e = np.exp(-ds / np.float32(k["interface_depth"] * size * mu))
            t = np.broadcast_to(e * (np.float32(eps_n * (gx @ ms)) + np.float32(eps_l) * lat),
                                box_shape).astype(np.float32)
            p = _ptp(t, support_box)
            if p > 0:
                phi += np.float32(weights[2] / p) * t
        phi = _remove_ramp(phi, np.where(support_box, modulus * modulus, 0), axes)
        p = _ptp(phi, support_box)
        phi = phi * np.float32(k["phase_range"] / p) if p > 0 else phi * 0
        phi -= np.float32(phi[support_box].mean())
        return phi

    mu, grad = 1.0, 0.0
    if k["phase_range"] > 0:
        gmax = k["max_phase_gradient"]
        for it in range(6):
            phi = phase_field(mu)
            grad = _grad_p99(phi, support_box)
            if gmax <= 0 or grad <= gmax or it == 5:
                break
            mu *= min(4.0, max(1.25, 1.1 * grad / gmax))
    else:
        phi = np.zeros(box_shape, np.float32)
    phase_ptp = _ptp(phi, support_box)

    # ---- modulus noise, object -------------------------------------------------------
    if k["modulus_noise"] > 0:
        nz = smooth_noise(stream(seed, "modulus"), box_shape, 0.5 * s)
        modulus *= np.maximum(np.float32(1) + np.float32(k["modulus_noise"]) * nz, 0)
    obj = (modulus * np.exp(1j * phi)).astype(np.complex64)

    def centre_of_mass(o):
        mod = np.abs(o)
        msum = float(mod.sum(dtype=np.float64))
        out = []
        for j in range(d):
            prof = mod.sum(axis=tuple(a for a in range(d) if a != j), dtype=np.float64)
            out.append(float(prof @ axes[j].astype(np.float64) / msum))
        return out

    c = centre(shape)
    if whole:
        # whole voxels shift putting the centre of mass at n//2; what would then fall
        # outside the array (far tails of the edge profile only: os >= 2) is dropped
        com = centre_of_mass(obj)
        off = [c[j] - int(round(com[j] + (m_box[j] - 1) / 2.0)) for j in range(d)]
        for j in range(d):
            pos = off[j] + np.arange(m_box[j])
            out = (pos < 0) | (pos >= shape[j])
            if out.any():
                sl = [slice(None)] * d
                sl[j] = out
                obj[tuple(sl)] = 0
                support_box[tuple(sl)] = False
    tot = obj.sum(dtype=np.complex128)
    if abs(tot) > 0:
        obj *= np.complex64(np.conj(tot) / abs(tot))
    com = centre_of_mass(obj)

    # ---- diffraction -----------------------------------------------------------------
    f = dft_box(obj, [axes[j] - np.float32(com[j]) for j in range(d)], shape, shift, scale=h ** d)
    i0 = (f.real * f.real + f.imag * f.imag).astype(np.float32)
    if scale is None:
        scale = k["peak"] / float(i0.max())
    elif not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    bg = background(shape, k["peak"], k["floor"], k["diffuse"], k["diffuse_width"], shift)
    expected = (np.float32(scale) * i0 + bg).astype(np.float32)
    intensity = poisson(stream(seed, "counts"), expected) if k["noise"] else expected.copy()
    phase = np.angle(f).astype(np.float32)

    # ---- object / support on the pattern grid ------------------------------------
    if whole:
        delta = [off[j] + com[j] + (m_box[j] - 1) / 2.0 - c[j] for j in range(d)]
        pos = [off[j] + np.arange(m_box[j]) for j in range(d)]
        keep = [(p >= 0) & (p < n_) for p, n_ in zip(pos, shape)]
        ix = np.ix_(*[p[kp] for p, kp in zip(pos, keep)])
        inside = np.ix_(*keep)
        obj_out = np.zeros(shape, np.complex64)
        obj_out[ix] = obj[inside]
        support = np.zeros(shape, bool)
        support[ix] = support_box[inside]
    else:
        delta = [0.0] * d
        obj_out = icfft(f).astype(np.complex64)
        pax = [(np.arange(shape[j]) - c[j] + com[j]).astype(np.float32) for j in range(d)]
        support = pl.signed_distance(pax) >= 0

    # ---- detector: gaps, dead pixels -----------------------------------------------
    layout = draw_gaps(stream(seed, "gaps"), shape, k)
    mask = layout.mask(shape)
    dead = dead_pixels(stream(seed, "dead"), shape, k["dead_fraction"]) & ~mask
    intensity[dead] = 0

    params = dict(
        version=FORMAT_VERSION, seed=seed, dims=d, shape=list(shape),
        regime=regime if isinstance(regime, str) else float(regime),
        knobs=k, gaps=layout.to_dict(), scale=float(scale), com_offset=[float(x) for x in delta],
        phase_ptp=float(phase_ptp), phase_gradient=grad, phase_length_factor=float(mu),
        roughness_factor=float(rough_factor),
        object_extent=[float(e) for e in ext], box_shape=list(box_shape),
        surface_facets=len(pl.beta), stats=pattern_stats(intensity),
    )
    return dict(intensity=intensity, mask=mask, dead=dead, expected=expected, object=obj_out,
                phase=phase, support=support, params=params)
