"""How often does the self-check pick the better fill? Decision rules compared on two sets.

The self-check (:mod:`pynx_dlgap.inpaint.selfcheck`) decides between the DL fill
and log-linear interpolation from artificial gaps cut next to the real gap
(shifted copies of the real mask, or its mirror images through the Bragg peak) or from
the autocorrelation of the filled pattern. Whether it chose right is known here, because
the simulated truth inside the real gap is known: the *better* fill is the one
with the lower relative amplitude error ``sum (sqrt f - sqrt t)^2 / sum t`` on
the real gap.

Sets (seeds disjoint from training):

* ``held-out``: the gap-fill benchmark's patterns (``gapbench.make_test_set``,
  regime 'mixed', seeds from 2e9) with its gap cases (planes and crosses of
  3/6/9/12 px in the central half);
* ``unlike``: the patterns of ``benchmarks/unlike_data.py`` (high counts, floor,
  fringes to the edges; seeds from 1.95e9), 6- and 12-px crosses near the peak.
* ``analytic`` (``--n-analytic``): crystals of the independent recipe
  (:mod:`pynx_dlgap.evaluate.analytic`, as ``unlike_data.py --crystals analytic``;
  seeds from 17000), 6- and 12-px crosses near the peak.

Rules (all from the same fills, so they are compared on equal terms):

* ``pooled`` (copies at one shift, +/-; the shipped rule before 0.5): DL if its
  pooled amplitude error is lower;
* ``pooled x2``: the same, pooled over copies at one and two shifts (4 copies);
* ``margin M``: DL only if its pooled error (one shift) is below (1 - M) x
  log-linear's;
* ``every copy``: DL only if it wins on every copy at one and two shifts;
* ``all but one``: DL if it wins on all copies but one (at most);
* ``geo. mean``: DL if the geometric mean over the copies of amp(DL) / amp(log-linear) is
  below 1 (each copy weighs by its ratio, not by its share of the pooled intensity).
* ``acf T``: DL if the real gap's DL-filled pattern has less autocorrelation energy
  outside the crystal's autocorrelation support than the log-linear-filled one
  (:func:`pynx_dlgap.inpaint.selfcheck.acf_outside`, support threshold ``T``; no copies,
  no truth); ``acf 0.003`` was the shipped rule in 0.7.10;
* ``mirror geo``: ``geo. mean`` over the gap's mirror images through the Bragg peak
  (:func:`pynx_dlgap.inpaint.selfcheck.mirror_copies`: copies at the real gap's
  distance from the peak, on its other side) instead of the shifted copies (those
  where the images come too close to the real gap); ``mirror every``: DL only if it
  wins on every image; ``all geo``: the geometric mean over the shifted copies and
  the images together;
* ``mirror|acf``: ``mirror geo`` where there are images, ``acf 0.003`` elsewhere (the
  self-check's ``'mirror'`` rule, the default since 0.7.11);
  ``acf x mirror``: DL if the product of the ``acf 0.003`` ratio and the images'
  geometric mean is below 1 (the ACF ratio alone without images);
* ``acf & geo``: DL only if both ``acf 0.003`` and ``geo. mean`` say DL;
* ``acf|geo B``: ``acf 0.003`` where its ratio is outside [1 - B, 1 + B], ``geo. mean``
  inside.

Columns: ``right`` = share of cases where the rule picked the better fill;
``dl`` = share where it picked DL; ``worse`` = share where it picked DL and DL
was worse than log-linear on the real gap (the harm the self-check must avoid);
``missed`` = share where it kept log-linear but DL was better; ``regret`` =
mean of amp(chosen) / amp(better) - 1.

    python benchmarks/self_check.py --n 3 --n-unlike 6 --n-analytic 6 --offset 100 --cases  # the ACF rule was chosen here
    python benchmarks/self_check.py --n 3 --n-unlike 6 --n-analytic 6 --cases   # gap_fill's and unlike_data's patterns
    python benchmarks/self_check.py --n 0 --n-unlike 0 --n-analytic 6 --offset 200 --cases  # more analytic crystals
    python benchmarks/self_check.py --n 3 --n-unlike 6 --n-analytic 6 --offset 300 --cases  # a further check set
    # (the mirror rule was written after the first three had been run, and checked here)
    cd benchmarks/results && python ../self_check.py --pool self_check.txt self_check_analytic200.txt \
        self_check_offset100.txt self_check_offset300.txt > self_check_pooled.txt   # the four sets pooled
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def case_fills(I, m, model, reps=2):
    """Real-gap amplitude errors and per-copy (truth, dl, loglinear) arrays."""
    from pynx_dlgap import PatternError
    from pynx_dlgap.inpaint.baselines import fill_loglinear
    from pynx_dlgap.inpaint.infer import inpaint
    from pynx_dlgap.inpaint.selfcheck import heldout_copies, score_fill
    from pynx_dlgap.inpaint.selfcheck import acf_outside, mirror_copies
    seen = np.where(m, 0, I)
    f_dl, f_ll = inpaint(seen, m, model, progress=False), fill_loglinear(seen, m)
    real = {"dl": score_fill(I[m], f_dl[m])["amp"], "loglinear": score_fill(I[m], f_ll[m])["amp"]}
    # ACF energy outside the autocorrelation support of the two real-gap fills (no truth used), per threshold
    acf = {thr: acf_outside([f_dl, f_ll], threshold=thr) for thr in ACF_THRESHOLDS}
    copies = []
    # the shifted copies (k = 1, 2: shifts), filled with their whole planes, and the gap's mirror images through
    # the peak (k = 0)
    for name, art, mm in heldout_copies(m, reps=reps) + mirror_copies(seen, m):
        try:
            fd = inpaint(seen, mm, model, progress=False)
        except PatternError as e:  # a copy that leaves a patch with nothing measured (as in self_check)
            print(f"  skipped copy {name}: {e}", file=sys.stderr)
            continue
        k = 0 if name.startswith("mirror") else int(name.split()[1][1:] or 1)
        copies.append(dict(name=name, k=k, t=seen[art], dl=fd[art], ll=fill_loglinear(seen, mm)[art]))
    return real, copies, acf


#: thresholds of the ACF support compared
ACF_THRESHOLDS = (1e-3, 3e-3, 1e-2)


def pooled(copies, ks):
    from pynx_dlgap.inpaint.selfcheck import score_fill
    cs = [c for c in copies if c["k"] in ks]
    if not cs:
        return None
    t = np.concatenate([c["t"] for c in cs])
    return (score_fill(t, np.concatenate([c["dl"] for c in cs]))["amp"],
            score_fill(t, np.concatenate([c["ll"] for c in cs]))["amp"])


def copy_amps(copies):
    """Per copy: (amp(DL), amp(log-linear))."""
    from pynx_dlgap.inpaint.selfcheck import score_fill
    return [(score_fill(c["t"], c["dl"])["amp"], score_fill(c["t"], c["ll"])["amp"]) for c in copies]


def rules(copies, acf):  # copies: shifted (k >= 1) and mirror images (k = 0)
    from pynx_dlgap.inpaint.selfcheck import amp_ratios, geometric_mean
    out = {}
    p1, p2 = pooled(copies, (1,)), pooled(copies, (1, 2))
    out["pooled"] = "dl" if p1 and p1[0] < p1[1] else "loglinear"
    out["pooled x2"] = "dl" if p2 and p2[0] < p2[1] else "loglinear"
    for mg in (0.05, 0.1, 0.2):
        out[f"margin {mg:g}"] = "dl" if p1 and p1[0] < (1 - mg) * p1[1] else "loglinear"
    mirrors = [c for c in copies if c["k"] == 0]
    copies = [c for c in copies if c["k"] > 0]  # the shifted copies (the rules above and below)
    amps = copy_amps(copies)
    wins = [d < ll for d, ll in amps]
    out["every copy"] = "dl" if wins and all(wins) else "loglinear"
    out["all but one"] = "dl" if wins and sum(wins) >= max(1, len(wins) - 1) else "loglinear"
    # geometric mean over the copies of amp(DL) / amp(log-linear), as self_check's 'geomean' rule
    geo = geometric_mean(amp_ratios(amps))
    out["geo. mean"] = "dl" if geo < 1.0 else "loglinear"
    # the same statistic on the mirror images through the peak (shifted copies where there is none), and on all
    m_amps = copy_amps(mirrors)
    m_geo = geometric_mean(amp_ratios(m_amps)) if m_amps else geo
    out["mirror geo"] = "dl" if m_geo < 1.0 else "loglinear"
    out["mirror every"] = "dl" if (all(d < ll for d, ll in m_amps) if m_amps else out["every copy"] == "dl") \
        else "loglinear"
    out["all geo"] = "dl" if geometric_mean(amp_ratios(amps + m_amps)) < 1.0 else "loglinear"
    r_acf = acf[3e-3][0] / acf[3e-3][1] if acf[3e-3][1] > 0 else np.inf
    # the images where there are some, the ACF elsewhere; the product of the two ratios (ACF alone without images)
    out["mirror|acf"] = ("dl" if m_geo < 1.0 else "loglinear") if m_amps else ("dl" if r_acf < 1.0 else "loglinear")
    out["acf x mirror"] = "dl" if r_acf * (m_geo if m_amps else 1.0) < 1.0 else "loglinear"
    # ACF energy outside the autocorrelation support of the real-gap fills: DL if its energy is lower
    for thr, (e_dl, e_ll) in acf.items():
        r = e_dl / e_ll if e_ll > 0 else np.inf
        out[f"acf {thr:g}"] = "dl" if r < 1.0 else "loglinear"
        if thr == 3e-3:
            out["acf & geo"] = "dl" if r < 1.0 and geo < 1.0 else "loglinear"
            for band in (0.02, 0.1):  # the ACF decides where its ratio is clear of 1, the copies elsewhere
                out[f"acf|geo {band:g}"] = ("dl" if r < 1 - band else "loglinear") if abs(r - 1) > band \
                    else out["geo. mean"]
    return out


def pool(files):
    """Pool the rule tables of earlier outputs of this script (``--pool``): per set kind and rule, the cases
    right and the worse DL fills kept (shares x cases, rounded) and the case-weighted mean regret."""
    import re
    tot = {}
    for fn in files:
        kind = None
        for line in Path(fn).read_text().splitlines():
            head = re.match(r"## (\S+): (\d+) cases", line)
            if head:
                kind, n = head.group(1), int(head.group(2))
            elif line.startswith("## "):  # the per-case table
                kind = None
            elif kind and line.strip() and not line.startswith(("rule", "-")):
                cols = line.split()
                if line.startswith("always"):  # right, dl, regret; always DL keeps a worse fill where it is wrong
                    name, right, regret = " ".join(cols[:2]), float(cols[2]), float(cols[4])
                    worse = 1 - right if name == "always dl" else 0.0
                else:  # right, dl, worse, missed, regret
                    name, right, worse, regret = " ".join(cols[:-5]), float(cols[-5]), float(cols[-3]), float(cols[-1])
                t = tot.setdefault((kind, name), [0, 0, 0, 0.0])
                t[0] += n
                t[1] += round(right * n)
                t[2] += round(worse * n)
                t[3] += regret * n
    print(f"# pooled over {len(files)} files: " + " ".join(str(f) for f in files))
    for kind in dict.fromkeys(k for k, _ in tot):
        rows = [(name, t) for (k, name), t in tot.items() if k == kind]
        print(f"\n## {kind}: {rows[0][1][0]} cases")
        print(f"{'rule':<16} {'right':>6} {'worse':>6} {'regret':>7}")
        for name, (n, right, worse, regret) in rows:
            print(f"{name:<16} {right:6d} {worse:6d} {regret / n:7.3f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4, help="held-out patterns (x 8 gap cases)")
    ap.add_argument("--n-unlike", type=int, default=8, help="unlike patterns (x 2 gap widths)")
    ap.add_argument("--n-analytic", type=int, default=0,
                    help="patterns of the independent crystal recipe (pynx_dlgap.evaluate.analytic, as "
                         "unlike_data.py --crystals analytic) x 2 gap widths")
    ap.add_argument("--cases", action="store_true", help="also print each case's ratios")
    ap.add_argument("--weights", default=None, help="inpainting weights (default: shipped)")
    ap.add_argument("--offset", type=int, default=0,
                    help="seed offset of both sets (0: the patterns of gap_fill.py and unlike_data.py; the rule "
                         "was chosen on --offset 100, so that those two stay an independent check)")
    ap.add_argument("--pool", nargs="+", metavar="FILE",
                    help="print the rule tables of earlier outputs of this script pooled over them (no fills)")
    a = ap.parse_args(argv)
    if a.pool:
        return pool(a.pool)
    from unlike_data import ANALYTIC_SEED_BASE, SEED_BASE as UNLIKE_BASE, pattern
    from pynx_dlgap.evaluate.gapbench import TEST_SEED_BASE, _case_rng, draw_layout, gap_cases, make_test_set
    from pynx_dlgap.inpaint.infer import load_inpaint_model
    from tqdm import tqdm
    model, card = load_inpaint_model(a.weights)
    t0 = time.perf_counter()
    jobs = []
    for i, s in enumerate(make_test_set(a.n, seed_base=TEST_SEED_BASE + a.offset)):
        I = s["intensity"]
        for case in gap_cases(widths=(3, 6, 9, 12)):
            m = draw_layout(case, I.shape, _case_rng(i + a.offset, case)).mask(I.shape)
            jobs.append(("held-out", f"{i}:{case}", I, m))
    for i in range(a.n_unlike):
        for gap in (6, 12):
            I, m = pattern(UNLIKE_BASE + a.offset + i, gap)
            jobs.append(("unlike", f"{i}:cross-{gap}", I, m))
    for i in range(a.n_analytic):
        for gap in (6, 12):
            I, m = pattern(ANALYTIC_SEED_BASE + a.offset + i, gap, "analytic")
            jobs.append(("analytic", f"{i}:cross-{gap}", I, m))
    res = []
    for set_, name, I, m in tqdm(jobs, desc="cases"):
        real, copies, acf = case_fills(I, m, model)
        better = "dl" if real["dl"] < real["loglinear"] else "loglinear"
        res.append(dict(set=set_, name=name, real=real, better=better, choice=rules(copies, acf), acf=acf,
                        copies=copies))
    print(f"# self-check decision rules: {a.n} held-out patterns x 8 gap cases, {a.n_unlike} unlike patterns x 2 "
          f"crosses (6, 12 px), {a.n_analytic} analytic-recipe patterns x 2 crosses (6, 12 px)")
    print(f"# model sha256 {card.get('sha256', '?')[:12]}; python benchmarks/self_check.py --n {a.n} "
          f"--n-unlike {a.n_unlike} --n-analytic {a.n_analytic} --offset {a.offset}"
          + (f" --weights {a.weights}" if a.weights else ""))
    for set_ in ("held-out", "unlike", "analytic"):
        rs = [r for r in res if r["set"] == set_]
        if not rs:
            continue
        dl_better = np.mean([r["better"] == "dl" for r in rs])
        print(f"\n## {set_}: {len(rs)} cases; DL better than log-linear on the real gap in {dl_better:.0%}")
        print(f"{'rule':<12} {'right':>6} {'dl':>6} {'worse':>6} {'missed':>6} {'regret':>7}")
        print("-" * 48)
        for rule in rs[0]["choice"]:
            ch = [r["choice"][rule] for r in rs]
            right = np.mean([c == r["better"] for c, r in zip(ch, rs)])
            dl = np.mean([c == "dl" for c in ch])
            worse = np.mean([c == "dl" and r["better"] == "loglinear" for c, r in zip(ch, rs)])
            missed = np.mean([c == "loglinear" and r["better"] == "dl" for c, r in zip(ch, rs)])
            regret = np.mean([r["real"][c] / min(r["real"].values()) - 1 for c, r in zip(ch, rs)])
            print(f"{rule:<12} {right:6.2f} {dl:6.2f} {worse:6.2f} {missed:6.2f} {regret:7.3f}")
        for ref in ("dl", "loglinear"):
            regret = np.mean([r["real"][ref] / min(r["real"].values()) - 1 for r in rs])
            print(f"{'always ' + ref:<12} {np.mean([r['better'] == ref for r in rs]):6.2f} "
                  f"{float(ref == 'dl'):6.2f} {'':>6} {'':>6} {regret:7.3f}")
    if a.cases:
        from pynx_dlgap.inpaint.selfcheck import amp_ratios, geometric_mean
        print("\n## per case: amp(DL) / amp(log-linear) on the real gap, the copies' geometric mean, and the ACF "
              "energy ratio DL / log-linear outside the support per threshold")
        print(f"{'set':<9} {'case':<12} {'real':>7} {'copies':>7} {'mirror':>7} " + " ".join(f"{'acf ' + format(t, 'g'):>9}"
                                                                         for t in ACF_THRESHOLDS))
        for r in res:
            amps = copy_amps([c for c in r["copies"] if c["k"] > 0])
            m_amps = copy_amps([c for c in r["copies"] if c["k"] == 0])
            print(f"{r['set']:<9} {r['name']:<12} {r['real']['dl'] / r['real']['loglinear']:7.4f} "
                  f"{geometric_mean(amp_ratios(amps)):7.4f} {geometric_mean(amp_ratios(m_amps)):7.4f} "
                  + " ".join(f"{e[0] / e[1]:9.5f}" for e in r["acf"].values()))
    print(f"\n# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
