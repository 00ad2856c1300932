"""Gap layouts: masks against hand-counted pixels and hand-computed module positions."""
import numpy as np
import pytest

from pynx_dlgap.simulate.gaps import (AXIS_X, AXIS_Y, DETECTORS, Gap, GapLayout, cross,
                                      module_layout, plane, random_layout)
from pynx_dlgap.simulate.knobs import KnobError
from pynx_dlgap.simulate.pipeline import draw_gaps


def _rows(mask, axis):
    """Indices along ``axis`` whose whole plane is masked (independent of GapLayout)."""
    other = tuple(a for a in range(mask.ndim) if a != mask.ndim + axis)
    return np.flatnonzero(mask.all(axis=other)).tolist()


@pytest.mark.parametrize("shape", [(64, 64), (10, 48, 40), (7, 33, 65)])
def test_cross_pixel_count(shape):
    rng = np.random.default_rng()
    ny, nx = shape[-2:]
    nz = shape[0] if len(shape) == 3 else 1
    for _ in range(20):
        wy, wx = (int(w) for w in rng.integers(1, 13, 2))
        py, px = int(rng.integers(0, ny - wy + 1)), int(rng.integers(0, nx - wx + 1))
        m = cross(wy, py, px, width_x=wx).mask(shape)
        assert m.dtype == bool and m.shape == shape
        assert int(m.sum()) == nz * (wy * nx + wx * ny - wy * wx)
        assert _rows(m, AXIS_Y) == list(range(py, py + wy))
        assert _rows(m, AXIS_X) == list(range(px, px + wx))


def test_plane_masks_exact_indices_and_nothing_else():
    m = plane(AXIS_X, 6, 30).mask((4, 16, 64))
    ref = np.zeros((4, 16, 64), bool)
    ref[..., 30:36] = True
    assert np.array_equal(m, ref)
    m = plane(AXIS_Y, 3, 5).mask((16, 20))
    ref = np.zeros((16, 20), bool)
    ref[5:8, :] = True
    assert np.array_equal(m, ref)


def test_gaps_at_and_beyond_edges_are_clipped():
    shape = (8, 32, 32)
    assert _rows(plane(AXIS_Y, 5, 0).mask(shape), AXIS_Y) == [0, 1, 2, 3, 4]
    assert _rows(plane(AXIS_X, 5, 27).mask(shape), AXIS_X) == [27, 28, 29, 30, 31]
    assert _rows(plane(AXIS_Y, 6, -3).mask(shape), AXIS_Y) == [0, 1, 2]      # partly outside
    assert _rows(plane(AXIS_X, 6, 29).mask(shape), AXIS_X) == [29, 30, 31]
    assert not plane(AXIS_X, 4, 40).mask(shape).any()                          # fully outside
    assert GapLayout((Gap(AXIS_Y, -3, 6),)).clipped(shape).gaps == (Gap(AXIS_Y, 0, 3),)


def test_module_layout_maxipix_hand_computed():
    # MAXIPIX: 256 sensitive px then a 6-px gap; gap j covers detector px [262 j + 256, 262 j + 262)
    lay = module_layout((4, 600, 600), "maxipix", offset=(0, 0))
    assert _rows(lay.mask((4, 600, 600)), AXIS_Y) == list(range(256, 262)) + list(range(518, 524))
    lay = module_layout((2, 600, 600), "maxipix", offset=(250, 10))
    m = lay.mask((2, 600, 600))
    assert _rows(m, AXIS_Y) == list(range(6, 12)) + list(range(268, 274)) + list(range(530, 536))
    assert _rows(m, AXIS_X) == list(range(246, 252)) + list(range(508, 514))
    # a region starting 2 px inside the first gap
    m = module_layout((3, 64, 64), "maxipix", offset=(258, 0)).mask((3, 64, 64))
    assert _rows(m, AXIS_Y) == [0, 1, 2, 3] and _rows(m, AXIS_X) == []
    assert all(g.width == 6 or g.start == 0 for g in module_layout((600, 600), "maxipix", (3, 7)))


def test_module_layout_eiger_hand_computed():
    # EIGER: 514 rows then a 38-px gap; 1030 columns then a 12-px gap
    m = module_layout((5, 64, 64), "eiger", offset=(500, 1020)).mask((5, 64, 64))
    assert _rows(m, AXIS_Y) == list(range(14, 52))
    assert _rows(m, AXIS_X) == list(range(10, 22))
    m = module_layout((64, 64), "eiger", offset=(0, 0)).mask((64, 64))
    assert not m.any()
    lay = module_layout((2000, 2200), "eiger", offset=(0, 0))
    ys = [(g.start, g.width) for g in lay if g.axis == AXIS_Y]
    xs = [(g.start, g.width) for g in lay if g.axis == AXIS_X]
    assert ys == [(514, 38), (1066, 38), (1618, 38)]
    assert xs == [(1030, 12), (2072, 12)]
    with pytest.raises(ValueError, match="unknown detector"):
        module_layout((64, 64), "pilatus")


def test_from_mask_round_trip_random_layouts():
    rng = np.random.default_rng()
    for _ in range(200):
        shape = (int(rng.integers(2, 6)), int(rng.integers(20, 80)), int(rng.integers(20, 80)))
        if rng.random() < 0.3:
            shape = shape[1:]
        lay = random_layout(rng, shape, widths=range(1, 10), p_cross=0.3, p_multi=0.3)
        m = lay.mask(shape)
        if max(m.all(axis=tuple(a for a in range(m.ndim) if a != m.ndim + ax)).mean() for ax in (-2, -1)) >= 0.9:
            continue  # gaps covering >= 90 % of an axis: every plane across them is >= 90 % masked, and
            # from_mask (min_fraction 0.9, documented) reads those as gaps too; not a detector layout
        back, rest = GapLayout.from_mask(m)
        assert np.array_equal(back.mask(shape), m)      # mask-level identity
        assert not rest.any()
        # layout-level identity when no two gaps of one axis touch or overlap
        spans = sorted((g.axis, g.start, g.stop) for g in lay)
        separated = all(not (a[0] == b[0] and b[1] <= a[2]) for a, b in zip(spans, spans[1:]))
        if separated:
            assert back == lay
    # dead pixels are returned apart from the gap planes
    m = cross(4, 10, 20).mask((6, 40, 40))
    m2 = m.copy()
    m2[:, 3, 5] = True
    back, rest = GapLayout.from_mask(m2)
    assert back == cross(4, 10, 20) and np.flatnonzero(rest.reshape(6, -1).any(0)).tolist() == [3 * 40 + 5]


def test_dict_round_trip_and_bad_gaps():
    lay = GapLayout((Gap(AXIS_X, 3, 7), Gap(AXIS_Y, 40, 12), Gap(AXIS_X, 50, 1)))
    assert GapLayout.from_dict(lay.to_dict()) == lay
    assert lay.kind == "multi" and lay.max_width == 12 and lay.axes == (AXIS_Y, AXIS_X)
    assert cross(3, 1, 2).kind == "cross" and plane(-1, 3, 2).kind == "plane" and GapLayout().kind == "none"
    with pytest.raises(ValueError, match="axis"):
        Gap(0, 3, 3)
    with pytest.raises(ValueError, match="width"):
        Gap(AXIS_X, 3, 0)
    with pytest.raises(ValueError, match="2-D or 3-D"):
        lay.mask((64,))
    with pytest.raises(ValueError, match="does not fit"):
        random_layout(np.random.default_rng(0), (8, 8), widths=[12])


def test_random_layout_statistics_and_margin():
    rng = np.random.default_rng()
    n, single, cross2 = 2000, 0, 0
    for _ in range(n):
        lay = random_layout(rng, (4, 64, 64), widths=[3, 6], p_cross=0.3, p_multi=0.2, margin=5)
        single += len(lay) == 1
        cross2 += len(lay) == 2 and len(lay.axes) == 2
        assert 1 <= len(lay) <= 3
        for g in lay:
            assert g.width in (3, 6) and 5 <= g.start and g.stop <= 64 - 5
    assert abs(single / n - 0.5) < 0.05          # binomial sd 0.011
    # crosses: p_cross, plus 2-gap 'multi' layouts that happen to use both axes (0.2 * 0.5 * 0.5)
    assert abs(cross2 / n - 0.35) < 0.05


@pytest.mark.parametrize("shape", [(128, 128), (16, 64, 64)])
def test_draw_gaps_kinds(shape):
    rng = np.random.default_rng()
    for _ in range(50):
        assert draw_gaps(rng, shape, {"gaps": "cross", "gap_widths": [3]}).kind == "cross"
        assert draw_gaps(rng, shape, {"gaps": "plane"}).kind == "plane"
        assert draw_gaps(rng, shape, {"gaps": "none"}).kind == "none"
        lay = draw_gaps(rng, shape, {"gaps": "maxipix"})
        assert len(lay) >= 1 and all(g.width <= 6 for g in lay)
        lay = draw_gaps(rng, shape, {"gaps": "eiger"})
        assert len(lay) >= 1 and all(g.width <= DETECTORS["eiger"]["gap"][0] for g in lay)
        lay = draw_gaps(rng, shape, {"gaps": "plane", "p_gap_peak": 1.0, "gap_widths": [5]})
        (g,) = lay.gaps
        assert g.start <= shape[g.axis] // 2 < g.stop            # through the Bragg peak
        lay = draw_gaps(rng, shape, {"gaps": "random"})
        m = lay.mask(shape)
        assert m.any() and lay.max_width <= 38
        assert GapLayout.from_mask(m)[0].mask(shape).sum() == m.sum()
    d = {"gaps": [[-1, 3, 4]]}
    assert draw_gaps(rng, shape, {"gaps": d}).to_dict() == d
    with pytest.raises(KnobError, match="fits"):
        draw_gaps(rng, shape, {"gaps": "plane", "gap_widths": [500]})
