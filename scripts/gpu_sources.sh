#!/usr/bin/env bash
# Prepare, on a machine with PyPI access, what scripts/gpu_check.sh needs on a GPU machine
# that has no network (and whose Python differs from ours): the pycuda and pyvkfft sources,
# PyNX's package folder (as `make setup` installed it) and wheels of the pure/binary
# packages PyNX's CUDA family and runner import, for the GPU machine's Python.
#
# Usage: scripts/gpu_sources.sh SRC WHEELS [PYVER]   (PYVER: the GPU machine's Python, default 3.12)
# Then, on the GPU machine: scripts/gpu_check.sh SRC WHEELS OUT
set -eu
SRC=${1:?SRC}; WHL=${2:?WHEELS}; PYVER=${3:-3.12}
VENV=${VENV:-.venv}
mkdir -p "$SRC" "$WHL"
SRC=$(readlink -f "$SRC"); WHL=$(readlink -f "$WHL")   # the pyvkfft step works in another folder
# pycuda: sdist only (pip cannot even read its metadata without CUDA here, so fetch the file)
url=$(curl -s https://pypi.org/pypi/pycuda/json | python3 -c \
      "import json, sys; print([u['url'] for u in json.load(sys.stdin)['releases']['2026.1'] if u['packagetype'] == 'sdist'][0])")
curl -s -o "$SRC/$(basename "$url")" "$url"
# pyvkfft: its sdist, without the example notebooks (25 MB of the 27)
python3 -m pip download -q --no-deps --no-binary=:all: -d /tmp/pyvkfft-sdist pyvkfft==2025.1.1
rm -rf "$SRC/pyvkfft" && mkdir -p "$SRC/pyvkfft"
tar xzf /tmp/pyvkfft-sdist/pyvkfft-2025.1.1.tar.gz -C /tmp/pyvkfft-sdist
( cd /tmp/pyvkfft-sdist/pyvkfft-2025.1.1 && cp -r src pyvkfft setup.py setup.cfg README.rst LICENSE "$SRC/pyvkfft/" )
# PyNX 2025.1 as installed into the venv by `make setup` (pure Python; its compiled
# scattering module is for another Python and unused)
P=$("$VENV/bin/python" -c "import os, pynx; print(os.path.dirname(pynx.__file__))")
rm -rf "$SRC/pynx_pkg" && cp -r "$P" "$SRC/pynx_pkg" && find "$SRC/pynx_pkg" \( -name "*.so" -o -name __pycache__ \) -prune -exec rm -rf {} +
# wheels for the GPU machine's Python, same versions as our venv
V() { "$VENV/bin/python" -m pip show "$1" | awk '/^Version/{print $2}'; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHL" \
    "pytools==$(V pytools)" "mako==$(V mako)" "siphash24==$(V siphash24)" "platformdirs==$(V platformdirs)" \
    "fabio==$(V fabio)" "silx==$(V silx)"
ls -la "$SRC" "$WHL"
