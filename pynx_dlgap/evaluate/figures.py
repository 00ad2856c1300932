"""PNG figures of central slices: what a person would rather see than read."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["central_slices", "slices_figure"]

_AXES = ("z", "y", "x")


def central_slices(a: np.ndarray, center=None):
    """The three central orthogonal slices of a 3-D array (or the array itself if 2-D).

    Returns a list of ``(label, 2-D array)``.
    """
    a = np.asarray(a)
    if a.ndim == 2:
        return [("", a)]
    c = [s // 2 for s in a.shape] if center is None else [int(v) for v in center]
    return [(f"{_AXES[k]}={c[k]}", np.take(a, c[k], axis=k)) for k in range(3)]


def _render(kind, s, vmin=None, vmax=None):
    if kind == "log":
        return np.log10(np.clip(s, 0, None) + 1), dict(cmap="viridis", vmin=vmin, vmax=vmax)
    if kind == "mask":
        return s.astype(float), dict(cmap="gray_r", vmin=0, vmax=1)
    if kind == "phase":
        return s, dict(cmap="hsv" if vmin is None else "coolwarm",
                       vmin=-np.pi if vmin is None else vmin, vmax=np.pi if vmax is None else vmax)
    if kind == "diff":
        m = np.nanmax(np.abs(s)) if vmax is None else vmax
        return s, dict(cmap="RdBu_r", vmin=-m, vmax=m)
    return s, dict(cmap="gray", vmin=vmin, vmax=vmax)


def slices_figure(panels, path, title=None, center=None, text=None, dpi=90):
    """Write a PNG with one row per panel and one column per central slice.

    ``panels`` is a list of ``(name, array, kind)`` or ``(name, array, kind, dict(vmin=, vmax=))``
    with kind in 'log' (intensity, log10(I+1)), 'modulus', 'phase', 'mask', 'diff'.
    Panels sharing a ``group`` key in their options share the colour scale.
    ``text`` (a string) is printed under the images (e.g. a table of numbers).
    """
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = []
    for p in panels:
        name, arr, kind = p[:3]
        opts = dict(p[3]) if len(p) > 3 else {}
        rows.append((name, np.asarray(arr), kind, opts))
    # shared colour ranges inside a group (default: all 'log' panels share one)
    groups = {}
    for name, arr, kind, opts in rows:
        g = opts.get("group", "log" if kind == "log" else None)
        if g is None or "vmin" in opts:
            continue
        v = np.log10(np.clip(arr, 0, None) + 1) if kind == "log" else arr
        lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
        glo, ghi = groups.get(g, (lo, hi))
        groups[g] = (min(lo, glo), max(hi, ghi))
    ncol = len(central_slices(rows[0][1], center))
    extra = 0.25 * (text.count("\n") + 1) if text else 0
    fig, axs = plt.subplots(len(rows), ncol, figsize=(3.0 * ncol + 0.8, 2.8 * len(rows) + extra + 0.6),
                            squeeze=False)
    for i, (name, arr, kind, opts) in enumerate(rows):
        g = opts.get("group", "log" if kind == "log" else None)
        vmin, vmax = opts.get("vmin"), opts.get("vmax")
        if g in groups and vmin is None:
            vmin, vmax = groups[g]
        for j, (lab, s) in enumerate(central_slices(arr, center)):
            img, kw = _render(kind, s, vmin, vmax)
            im = axs[i, j].imshow(img, origin="lower", interpolation="nearest", **kw)
            axs[i, j].set_title(f"{name} {lab}".strip(), fontsize=8)
            axs[i, j].set_xticks([])
            axs[i, j].set_yticks([])
        fig.colorbar(im, ax=axs[i, -1], fraction=0.046, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=10)
    if text:
        fig.text(0.01, 0.005, text, family="monospace", fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, extra / fig.get_figheight(), 1, 0.97 if title else 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
