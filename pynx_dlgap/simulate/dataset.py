"""HDF5 datasets of simulated samples: parallel, resumable writer; reader; regeneration.

Layout (``n`` samples of pattern shape ``S``; every per-sample dataset is
chunked one sample per chunk and compressed)::

    /intensity  (n, *S) float32    counts, complete (ground truth in the gaps)
    /mask       (n, *S) bool       True in the detector gaps (not measured)
    /dead       (n, *S) bool       dead pixels (zeros in /intensity), outside gaps
    /object     (n, *S) complex64  real-space object (see pipeline doc)
    /phase      (n, *S) float32    reciprocal-space phase label
    /support    (n, *S) bool       crystal support
    /params     (n,)    str        JSON: seed, knobs, gap layout, scale, com_offset, stats...
    /seed       (n,)    int64      the sample's integer seed
    /done       (n,)    uint8      1 once sample i is completely written
    attrs: format, version, dims, shape, base_seed, regime, knobs (JSON of the
           fixed knobs), compression, conventions

Sample ``i`` has seed :func:`sample_seed(base_seed, i) <sample_seed>`; its
arrays are ``simulate(seed, dims, shape, regime, **params['knobs'])``
(:func:`regenerate_sample` does it; identical arrays on the same machine and
library versions). An interrupted :func:`write_dataset` is resumed by calling it
again with the same arguments (or a larger ``n`` to append samples): only the
samples whose ``done`` flag is 0 are generated.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .knobs import KnobError, check_knobs, check_shape, regime_value
from .pipeline import FORMAT_VERSION, simulate

__all__ = ["write_dataset", "read_sample", "regenerate_sample", "iter_samples", "sample_seed",
           "dataset_info", "ARRAY_KEYS"]

ARRAY_KEYS = ("intensity", "mask", "dead", "object", "phase", "support")
_DTYPES = {"intensity": np.float32, "mask": bool, "dead": bool, "object": np.complex64,
           "phase": np.float32, "support": bool}
FORMAT = "pynx-dlgap-simulated"
CONVENTIONS = (
    "arrays (z, y, x) or (y, x); intensity = Poisson(scale*|cfft(object)|^2 + background), "
    "cfft = fftshift(fftn(ifftshift(.))), Bragg peak at index n//2; mask True = not measured (gaps); "
    "dead pixels are measured zeros (use mask|dead to mask them); phase = angle(cfft(object) * "
    "exp(2 pi i q.com_offset)), q = (k - n//2)/n, 0 at the Bragg peak; see pynx_dlgap.simulate.pipeline")


def _h5py():
    import h5py
    try:
        import hdf5plugin  # noqa: F401
    except ImportError:  # pragma: no cover
        pass
    return h5py


def sample_seed(base_seed: int, i: int) -> int:
    """The integer seed (< 2**63) of sample ``i`` of a dataset with ``base_seed``."""
    st = np.random.SeedSequence([int(base_seed), int(i), 0x5EED]).generate_state(2, np.uint32)
    return int((int(st[0]) << 31) ^ int(st[1]))


def _compression(name):
    if name in (None, "none"):
        return {}
    if name == "gzip":
        return dict(compression="gzip", compression_opts=4, shuffle=True)
    if name == "lzf":
        return dict(compression="lzf", shuffle=True)
    if name in ("zstd", "blosc"):
        import hdf5plugin
        if name == "zstd":
            return dict(hdf5plugin.Zstd(clevel=3))
        return dict(hdf5plugin.Blosc(cname="zstd", clevel=3, shuffle=hdf5plugin.Blosc.SHUFFLE))
    raise ValueError(f"compression must be 'gzip', 'lzf', 'zstd', 'blosc' or None, got {name!r}")


# ---- worker side -----------------------------------------------------------------------
_WORKER = {}


def _init_worker(cfg, limit_threads=True):
    _WORKER.update(cfg)
    if not limit_threads:
        return
    try:  # the simulator's matrix products are small: one BLAS thread per process
        from threadpoolctl import threadpool_limits
        _WORKER["_tp"] = threadpool_limits(1)
    except Exception:  # noqa: BLE001 - optional
        pass


def _make(i):
    cfg = _WORKER
    seed = sample_seed(cfg["base_seed"], i)
    s = simulate(seed, cfg["dims"], cfg["shape"], cfg["regime"], cfg["knobs"])
    return i, seed, {k: s[k] for k in cfg["keys"]}, json.dumps(s["params"])


def _open_or_create(path, n, dims, shape, base_seed, regime, knobs, compression, keys, overwrite):
    h5py = _h5py()
    path = Path(path)
    meta = dict(format=FORMAT, version=FORMAT_VERSION, dims=dims, shape=list(shape),
                base_seed=int(base_seed), regime=json.dumps(regime), knobs=json.dumps(knobs, sort_keys=True),
                keys=json.dumps(list(keys)))
    if path.exists() and not overwrite:
        f = h5py.File(path, "a")
        try:
            if f.attrs.get("format") != FORMAT:
                raise ValueError(f"{path} exists and is not a pynx-dlgap simulated dataset; "
                                 f"choose another path or pass overwrite=True")
            for k, v in meta.items():
                old = f.attrs.get(k)
                old = old.tolist() if isinstance(old, np.ndarray) else old
                if old != v:
                    raise ValueError(f"{path} exists with {k}={old!r} but this call has {k}={v!r}; "
                                     f"resuming needs the same arguments (or use another path / overwrite=True)")
            if f["done"].shape[0] < n:
                for name in list(keys) + ["params", "seed", "done"]:
                    f[name].resize(n, axis=0)
        except BaseException:
            f.close()
            raise
        return f
    path.parent.mkdir(parents=True, exist_ok=True)
    f = h5py.File(path, "w")
    comp = _compression(compression)
    for k in keys:
        f.create_dataset(k, shape=(n,) + tuple(shape), maxshape=(None,) + tuple(shape),
                         dtype=_DTYPES[k], chunks=(1,) + tuple(shape), **comp)
    f.create_dataset("params", shape=(n,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(256,))
    f.create_dataset("seed", shape=(n,), maxshape=(None,), dtype=np.int64, chunks=(1024,))
    f.create_dataset("done", shape=(n,), maxshape=(None,), dtype=np.uint8, chunks=(1024,), fillvalue=0)
    for k, v in meta.items():
        f.attrs[k] = v
    f.attrs["compression"] = str(compression)
    f.attrs["conventions"] = CONVENTIONS
    return f


def write_dataset(path, n: int, dims: int = 3, shape=None, seed: int = 0, workers: int = 2,
                  regime="mixed", compression="gzip", progress: bool = True, overwrite: bool = False,
                  keys=ARRAY_KEYS, flush_every: float = 5.0, **knobs) -> Path:
    """Write (or resume / extend) an HDF5 file of ``n`` simulated samples.

    Parameters
    ----------
    path : str or Path
        Output file. If it exists (and ``overwrite`` is False) it must have been
        written with the same ``dims, shape, seed, regime, knobs, keys``: the
        missing samples are generated (resume), and ``n`` larger than the file
        appends samples.
    n : int
        Number of samples.
    dims : {2, 3}
    shape : tuple of int, optional
        Pattern shape (default (128, 128) in 2-D, (64, 64, 64) in 3-D).
    seed : int
        Base seed; sample ``i`` uses ``sample_seed(seed, i)``.
    workers : int
        Processes (``multiprocessing``, fork where available); 1 = in-process.
    regime : str or float
        'textbook', 'measured', 'mixed' (default) or r in [0, 1].
    compression : {'gzip', 'lzf', 'zstd', 'blosc', None}
        'zstd'/'blosc' need ``hdf5plugin`` to read back.
    keys : sequence of str
        Arrays stored (subset of :data:`ARRAY_KEYS`; 'intensity' and 'mask' always).
    **knobs
        Fixed knobs for every sample (the others are drawn per sample).

    Returns
    -------
    Path of the file.
    """
    if dims not in (2, 3):
        raise KnobError(f"dims must be 2 or 3, got {dims!r}")
    shape = check_shape(shape if shape is not None else ((128, 128) if dims == 2 else (64, 64, 64)), dims)
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    keys = tuple(dict.fromkeys(("intensity", "mask") + tuple(keys)))
    bad = [k for k in keys if k not in ARRAY_KEYS]
    if bad:
        raise ValueError(f"unknown keys {bad}; choose from {ARRAY_KEYS}")
    regime_value(regime, np.random.default_rng(0))  # validates
    knobs = check_knobs(knobs, dims, shape)
    _compression(compression)
    f = _open_or_create(path, int(n), dims, shape, seed, regime, knobs, compression, keys, overwrite)
    try:
        done = f["done"][:]
    finally:
        f.close()
    todo = [i for i in range(int(n)) if not done[i]]
    if not todo:
        return Path(path)
    cfg = dict(base_seed=int(seed), dims=dims, shape=shape, regime=regime, knobs=knobs, keys=keys)
    pool = None
    if workers > 1 and len(todo) > 1:
        # start the processes before the HDF5 file is reopened and the progress bar's thread runs
        import multiprocessing as mp
        try:
            ctx = mp.get_context("fork")
        except ValueError:  # pragma: no cover - not on Linux
            ctx = mp.get_context("spawn")
        pool = ctx.Pool(min(int(workers), len(todo)), initializer=_init_worker, initargs=(cfg,))
        results = pool.imap_unordered(_make, todo, chunksize=1)
    else:
        _init_worker(cfg, limit_threads=False)
        results = (_make(i) for i in todo)
    bar = None
    f = _h5py().File(path, "a")
    try:
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(todo), desc=f"simulate {dims}-D {Path(path).name}", unit="sample")
        last = time.monotonic()
        for i, s_seed, arrays, pjson in results:
            for k, a in arrays.items():
                f[k][i] = a
            f["params"][i] = pjson
            f["seed"][i] = s_seed
            f["done"][i] = 1          # last: a sample is 'done' only once all of it is written
            if bar is not None:
                bar.update(1)
            if time.monotonic() - last > flush_every:
                f.flush()
                last = time.monotonic()
    finally:
        if pool is not None:
            pool.terminate()  # after the loop: all results are in; on an error/interrupt: stop now
            pool.join()
        if bar is not None:
            bar.close()
        f.flush()
        f.close()
    return Path(path)


# ---- reading -----------------------------------------------------------------------------
def dataset_info(path) -> dict:
    """File attributes, size and number of completed samples."""
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        a = dict(f.attrs)
        out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in a.items()}
        for k in ("regime", "knobs", "keys"):
            if k in out:
                out[k] = json.loads(out[k])
        out["n"] = int(f["done"].shape[0])
        out["n_done"] = int(f["done"][:].sum())
    return out


def _read(f, i, keys):
    if not f["done"][i]:
        raise KeyError(f"sample {i} of {f.filename} is not written yet (resume write_dataset first)")
    out = {k: f[k][i] for k in keys if k in f}
    p = f["params"][i]
    out["params"] = json.loads(p.decode() if isinstance(p, bytes) else p)
    out["seed"] = int(f["seed"][i])
    return out


def read_sample(path, i: int, keys=None) -> dict:
    """Sample ``i`` of a dataset as a dict of arrays + ``params`` (dict) + ``seed``."""
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        n = f["done"].shape[0]
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range: {path} holds {n}")
        return _read(f, int(i) % n, ARRAY_KEYS if keys is None else keys)


def regenerate_sample(source, i: int | None = None) -> dict:
    """Recompute a stored sample from its seed and knobs.

    ``source`` is a dataset path (with index ``i``) or a ``params`` dict (as in
    ``read_sample(...)['params']`` or ``simulate_*(...)['params']``).
    """
    if isinstance(source, dict):
        p = source
    else:
        h5py = _h5py()
        with h5py.File(source, "r") as f:
            p = _read(f, int(i), ())["params"]
    return simulate(p["seed"], p["dims"], p["shape"], p["regime"], p["knobs"])


def iter_samples(path, keys=None, indices=None, shuffle: bool = False, seed=None):
    """Iterate over the completed samples of a dataset (numpy only, no torch).

    Yields dicts as :func:`read_sample`; ``indices`` restricts and orders them,
    ``shuffle`` draws a random order (``seed``). The file stays open while iterating.
    """
    h5py = _h5py()
    keys = ARRAY_KEYS if keys is None else keys
    with h5py.File(path, "r") as f:
        done = f["done"][:].astype(bool)
        idx = np.flatnonzero(done) if indices is None else np.asarray(indices, dtype=int)
        if shuffle:
            idx = np.random.default_rng(seed).permutation(idx)
        for i in idx:
            s = _read(f, int(i), keys)
            s["index"] = int(i)
            yield s

