"""The core works without PyNX; PyNX-backed functions say how to install it."""
import subprocess
import sys
import textwrap


def test_core_imports_and_clear_error_without_pynx():
    code = textwrap.dedent("""
        import sys
        sys.modules["pynx"] = None          # as if PyNX were not installed
        import numpy as np
        import pynx_dlgap
        from pynx_dlgap.simulate import simulate_3d
        from pynx_dlgap.inpaint.baselines import fill_loglinear, fill_pynx_interp
        from pynx_dlgap.evaluate.phasing import phase_pattern
        from pynx_dlgap.simulate import gaps
        s = simulate_3d(1, (32, 32, 32))
        m = gaps.cross(3, 10, 12).mask((32, 32, 32))
        f = fill_loglinear(s["intensity"], m)          # the core needs no PyNX
        assert np.array_equal(f[~m], s["intensity"][~m])
        for call in (lambda: phase_pattern(s["intensity"]), lambda: fill_pynx_interp(s["intensity"], m)):
            try:
                call()
            except ImportError as e:
                assert "make setup" in str(e), str(e)
            else:
                raise AssertionError("no error without PyNX")
        assert "pynx" not in [k for k, v in sys.modules.items() if v is not None]
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
