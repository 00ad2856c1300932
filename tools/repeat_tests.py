"""Call a test module's functions again and again in one process, each call drawing fresh seeds, to find
tests that fail rarely on a correct program (a failure one CI run in fifty would otherwise hide).

Usage: python tools/repeat_tests.py MODULE SECONDS [TEST_NAME ...]
e.g.   python tools/repeat_tests.py test_analytic 300

Every parametrised case of every test (or of the names given) is called in turn until SECONDS have
passed; tests marked ``slow`` or ``skipif`` and tests needing a fixture other than ``tmp_path`` are left
out, and a test that skips itself when called (``pytest.skip``, ``importorskip``) is dropped. Each
failure is printed with what the test printed (the tests print their seeds) and the assertion; the
last line is ``calls N failures K``. Exit status 1 if any call failed. For modules whose tests need
fixtures, run pytest on the module in a shell loop instead.
"""
import contextlib
import inspect
import io
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))


def cases(module, names):
    out = []
    for name, f in vars(module).items():
        if not name.startswith("test_") or not callable(f) or (names and name not in names):
            continue
        marks = getattr(f, "pytestmark", [])
        if any(m.name in ("slow", "skipif") for m in marks):
            continue
        combos = [{}]
        for m in (m for m in marks if m.name == "parametrize"):
            args = [a.strip() for a in m.args[0].split(",")] if isinstance(m.args[0], str) else list(m.args[0])
            combos = [dict(c, **dict(zip(args, v if len(args) > 1 else (v,)))) for c in combos for v in m.args[1]]
        if any(p not in combos[0] and p != "tmp_path" for p in inspect.signature(f).parameters):
            continue
        out += [(name, f, c) for c in combos]
    return out


def call(f, kw):
    if "tmp_path" in inspect.signature(f).parameters:
        with tempfile.TemporaryDirectory() as d:
            return f(**kw, tmp_path=pathlib.Path(d))
    return f(**kw)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    import importlib
    module, secs, names = importlib.import_module(argv[0]), float(argv[1]), argv[2:]
    todo = cases(module, names)
    if not todo:
        sys.exit(f"no test of {argv[0]} can be called here (names: {names or 'all'})")
    print(f"{len(todo)} cases of {argv[0]}", flush=True)
    import pytest
    t0, calls, failures = time.time(), 0, 0
    while todo and time.time() - t0 < secs:
        for case in list(todo):
            name, f, kw = case
            printed = io.StringIO()
            try:
                with contextlib.redirect_stdout(printed):
                    call(f, kw)
            except pytest.skip.Exception as e:  # skipped at run time (e.g. importorskip): drop the case
                print("SKIP", name, kw, str(e)[:200], flush=True)
                todo.remove(case)
                continue
            except Exception as e:  # noqa: BLE001 - every failure is what we are looking for
                failures += 1
                print("FAIL", name, kw, printed.getvalue().strip(), repr(e)[:600], flush=True)
            calls += 1
    print(f"calls {calls} failures {failures}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
