"""Reading and writing patterns and masks: ``.npy``, ``.npz``, HDF5 (``.h5``,
``.hdf5``, ``.nxs``) and PyNX/CXI (``.cxi``) files.

Input files are only ever opened read-only; writers refuse to overwrite an
input file and, unless ``overwrite=True``, any existing file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._checks import PatternError

__all__ = ["load_array", "load_pattern", "load_mask", "save_arrays", "check_output_path",
           "PATTERN_KEYS", "MASK_KEYS"]

#: dataset names tried, in order, when no key is given
PATTERN_KEYS = ("data", "iobs", "intensity", "I", "arr_0",
                "entry_1/data_1/data", "entry_1/instrument_1/detector_1/data", "entry/data/data")
MASK_KEYS = ("mask", "gap_mask", "arr_0", "entry_1/instrument_1/detector_1/mask", "entry_1/mask",
             "entry/data/mask")
_H5 = (".h5", ".hdf5", ".cxi", ".nxs", ".hdf")


def _h5py():
    import h5py
    try:  # compressed datasets written with bitshuffle/lz4 etc.
        import hdf5plugin  # noqa: F401
    except ImportError:  # pragma: no cover
        pass
    return h5py


def load_array(path, key=None, candidates=PATTERN_KEYS, what="pattern") -> np.ndarray:
    """Load one array from ``path``; ``key`` selects it, else the first of
    ``candidates`` present, else the only array in the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    ext = path.suffix.lower()
    if ext == ".npy":
        return np.load(path, allow_pickle=False)
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if key is not None:
                if key not in names:
                    raise KeyError(f"{path} has no array {key!r}; it has {names}")
                return z[key]
            for k in candidates:
                if k in names:
                    return z[k]
            if len(names) == 1:
                return z[names[0]]
            raise KeyError(f"{path} holds several arrays {names}; say which {what} to use (key=...)")
    if ext in _H5:
        h5py = _h5py()
        with h5py.File(path, "r") as f:
            if key is not None:
                if key not in f:
                    raise KeyError(f"{path} has no dataset {key!r}")
                return f[key][()]
            for k in candidates:
                if k in f and isinstance(f[k], h5py.Dataset):
                    return f[k][()]
            found = []
            f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim in (2, 3) else None)
            if len(found) == 1:
                return f[found[0]][()]
            raise KeyError(f"{path}: cannot tell which dataset is the {what}; candidates {found}; "
                           f"say which (key=...)")
    raise PatternError(f"unsupported file type {ext!r} for {path}: use .npy, .npz, .h5/.hdf5, .cxi")


def load_pattern(path, key=None) -> np.ndarray:
    """Load a diffraction pattern (2-D or 3-D intensities)."""
    return load_array(path, key, PATTERN_KEYS, "pattern")


def load_mask(path, key=None, shape=None) -> np.ndarray:
    """Load a mask (True/nonzero = not measured) as a boolean array.

    With ``shape`` (the pattern's), a 2-D detector mask of a 3-D pattern (frames, y, x) whose
    shape is the pattern's last two axes is repeated over the frames and a line says so, as
    PyNX's ``pynx-cdi-id01`` runner does with a 2-D mask; any other mismatch is left to the
    pattern checks, which refuse it.
    """
    m = np.asarray(load_array(path, key, MASK_KEYS, "mask")) != 0
    if shape is not None and len(shape) == 3 and m.ndim == 2 and m.shape == tuple(shape[1:]):
        print(f"2-D mask {m.shape} of {path} repeated over the pattern's {shape[0]} frames "
              f"(as pynx-cdi-id01 does)")
        m = np.repeat(m[None], shape[0], axis=0)
    return m


def check_output_path(out, inputs=(), overwrite=False) -> Path:
    """Refuse to write over an input file, or over an existing file unless ``overwrite``."""
    out = Path(out)
    for p in inputs:
        if p is not None and Path(p).exists() and out.exists() and os.path.samefile(out, p):
            raise PatternError(f"refusing to overwrite the input file {p}; choose another output name")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; remove it or pass overwrite=True (--overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def save_arrays(path, arrays: dict, attrs: dict | None = None, inputs=(), overwrite=False) -> Path:
    """Write named arrays to ``.npz``, ``.npy`` (a single array) or HDF5 (``.h5``/``.cxi``)."""
    path = check_output_path(path, inputs, overwrite)
    ext = path.suffix.lower()
    if ext == ".npz":
        np.savez_compressed(path, **arrays)
    elif ext == ".npy":
        if len(arrays) != 1:
            raise ValueError(".npy holds one array; use .npz or .h5 for several")
        np.save(path, next(iter(arrays.values())))
    elif ext in _H5:
        h5py = _h5py()
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                v = np.asarray(v)
                f.create_dataset(k, data=v, compression="gzip" if v.size > 1024 else None)
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
    else:
        raise PatternError(f"unsupported output type {ext!r}: use .npz, .npy, .h5 or .cxi")
    return path
