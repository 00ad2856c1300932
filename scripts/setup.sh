#!/usr/bin/env bash
# Set up everything pynx-dlgap needs, idempotently: venv, torch (CPU build), the
# package, PoCL (OpenCL on the CPU), and real PyNX 2025.1.
#
#   scripts/setup.sh            # what `make setup` runs
#   PYTHON=python3.11 VENV=.venv scripts/setup.sh
#
# PyNX is NOT on PyPI (PyPI's "pynx" is an unrelated nginx tool). If the Python
# used to create the venv can already import a real PyNX (ESRF install, conda,
# Debian python3-pynx), it is reused through a .pth file. Otherwise Debian's
# python3-pynx 2025.1-2 .deb is downloaded from the trixie suite with a private
# apt configuration (the system's apt state is untouched), its SHA-256 is
# checked, and pynx + its .dist-info are unpacked into the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
VENV=${VENV:-$ROOT/.venv}
PY="$VENV/bin/python"
PIP="$VENV/bin/pip"
PYNX_DEB=python3-pynx_2025.1-2_amd64.deb
PYNX_DEB_VERSION=2025.1-2
PYNX_DEB_SHA256=b36f5e99a00e2103bb36421ca1baada62c1abc023b76d1d904964fdbd986b393
TORCH_SPEC=torch==2.13.0   # the CPU build on disk; any other spec may pull a multi-GB CUDA build

say() { printf '[setup] %s\n' "$*"; }
pipq() { "$PIP" install -q --disable-pip-version-check "$@" 2>&1 | grep -v -E '^WARNING: Location|is ignored' || true; }
has() { "$PY" -c "import $1" >/dev/null 2>&1; }

# 1. virtual environment
if [ ! -x "$PY" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# 2. torch: CPU build only
if ! has torch; then
  say "installing $TORCH_SPEC (CPU build)"
  pipq "$TORCH_SPEC"
  has torch || { echo "torch failed to install" >&2; exit 1; }
fi

# 3. the package and its PyPI dependencies; OpenCL (pyopencl + PoCL CPU platform)
if ! has pynx_dlgap || ! has pytest || ! has safetensors; then
  say "installing pynx-dlgap (editable) and its dependencies"
  pipq -e "$ROOT[test]"
fi
if ! has pyopencl || ! "$PY" -c "import importlib.util as u; assert u.find_spec('pocl_binary_distribution')" >/dev/null 2>&1; then
  say "installing pyopencl + pocl-binary-distribution (OpenCL CPU platform)"
  pipq pyopencl pocl-binary-distribution
fi

# 4. real PyNX 2025.1
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
pynx_ok() { "$PY" -c "import pynx.cdi.cdi, pynx.operator" >/dev/null 2>&1; }
if ! pynx_ok; then
  # 4a. reuse a PyNX the user already has
  EXISTING=$("$PYTHON" -c "import pynx.cdi.cdi, pynx, os; print(os.path.dirname(os.path.dirname(pynx.__file__)))" 2>/dev/null || true)
  if [ -n "$EXISTING" ]; then
    say "reusing the PyNX already importable by $PYTHON (from $EXISTING)"
    echo "$EXISTING" > "$SITE/_pynx_dlgap_existing_pynx.pth"
  else
    # 4b. Debian's python3-pynx from trixie, via a private apt configuration
    APTDIR=${PYNX_APT_DIR:-$ROOT/build/apt-pynx}
    mkdir -p "$APTDIR"/lists/partial "$APTDIR"/cache/archives/partial "$APTDIR"/etc
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" > "$APTDIR/etc/sources.list"
    : > "$APTDIR/etc/status"
    APTOPTS=(-o Dir::Etc::SourceList="$APTDIR/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o Dir::State::Lists="$APTDIR/lists" -o Dir::Cache="$APTDIR/cache"
             -o Dir::State::Status="$APTDIR/etc/status" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    if [ ! -f "$APTDIR/$PYNX_DEB" ]; then
      say "downloading python3-pynx $PYNX_DEB_VERSION from Debian trixie (private apt configuration)"
      apt-get "${APTOPTS[@]}" -qq update
      (cd "$APTDIR" && apt-get "${APTOPTS[@]}" -qq download "python3-pynx=$PYNX_DEB_VERSION")
    fi
    echo "$PYNX_DEB_SHA256  $APTDIR/$PYNX_DEB" | sha256sum -c --quiet - || {
      echo "SHA-256 of $APTDIR/$PYNX_DEB does not match the pinned value; refusing to install it" >&2; exit 1; }
    rm -rf "$APTDIR/x" && dpkg -x "$APTDIR/$PYNX_DEB" "$APTDIR/x"
    DP="$APTDIR/x/usr/lib/python3/dist-packages"
    rm -rf "$SITE/pynx" "$SITE"/PyNX-*.dist-info
    cp -r "$DP/pynx" "$DP"/PyNX-*.dist-info "$SITE/"
    say "PyNX 2025.1 unpacked into $SITE"
  fi
fi
if ! has pyvkfft; then
  # PyNX's OpenCL operators use pyvkfft; building it needs the OpenCL headers.
  if [ ! -f /usr/include/CL/cl.h ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing OpenCL headers (ocl-icd-opencl-dev opencl-headers) to build pyvkfft"
    (apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -y -qq install ocl-icd-opencl-dev opencl-headers) >/dev/null
  fi
  if [ -f /usr/include/CL/cl.h ]; then
    say "building pyvkfft for OpenCL"
    VKFFT_BACKEND=opencl pipq pyvkfft==2025.1.1
  else
    say "WARNING: no OpenCL headers: pyvkfft not built, PyNX's OpenCL operators will be unavailable"
  fi
fi
# PyNX's own PyPI requirements (pyvkfft above: it must be built for OpenCL)
if ! has silx || ! has fabio || ! has numexpr || ! has sklearn || ! has mako; then
  say "installing PyNX's Python requirements"
  pipq numpy scipy matplotlib scikit-image fabio silx packaging psutil scikit-learn mako \
       numexpr pyopencl nxtomo pooch tomoscan pytools h5py hdf5plugin
fi
# 5. PoCL must compile kernels for this CPU. The PoCL bundled with pyopencl's wheels (3.0, LLVM 14)
# passes -target-cpu 'generic' on CPUs its LLVM does not know (e.g. AMD Zen 5: "unknown target CPU
# 'generic'", pocl issue #1049) and builds nothing; Debian's PoCL (bookworm 3.1) picks a known target.
# Then the venv points pyopencl's ICD loader at it (OCL_ICD_VENDORS, set by a .pth file at start-up).
POCL_PTH="$SITE/_pynx_dlgap_pocl_icd.pth"
pocl_builds() { "$PY" - >/dev/null 2>&1 <<'PYEOF'
import numpy as np, pyopencl as cl, pyopencl.array as ca
dev = [d for p in cl.get_platforms() for d in p.get_devices()][0]
ctx = cl.Context([dev]); q = cl.CommandQueue(ctx)
k = cl.Program(ctx, "__kernel void f(__global float *a) { a[get_global_id(0)] *= 2.0f; }").build()
a = ca.to_device(q, np.ones(4, np.float32)); k.f(q, (4,), None, a.data)
assert (a.get() == 2).all()
PYEOF
}
if ! pocl_builds; then
  if [ ! -f /etc/OpenCL/vendors/pocl.icd ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "the bundled PoCL cannot compile for this CPU: installing Debian's PoCL (pocl-opencl-icd)"
    (apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -y -qq install --no-install-recommends pocl-opencl-icd) >/dev/null
  fi
  if [ -f /etc/OpenCL/vendors/pocl.icd ]; then
    echo 'import os; os.environ.setdefault("OCL_ICD_VENDORS", "/etc/OpenCL/vendors/pocl.icd")' > "$POCL_PTH"
    say "OpenCL: Debian's PoCL for this venv ($POCL_PTH)"
  fi
  pocl_builds || say "WARNING: PoCL cannot compile OpenCL kernels on this CPU: the OpenCL tests will fail"
fi
# console-script wrappers for the PyNX runners we use
for name in pynx-cdi-id01:pynx.cdi.scripts.pynx_id01cdi; do
  script=${name%%:*}; mod=${name#*:}
  if [ ! -x "$VENV/bin/$script" ]; then
    printf '#!%s\nimport sys\nfrom %s import main\nsys.exit(main())\n' "$PY" "$mod" > "$VENV/bin/$script"
    chmod +x "$VENV/bin/$script"
  fi
done
pynx_ok || { echo "PyNX is still not importable from $PY" >&2; exit 1; }
"$PY" - <<'PYEOF'
import importlib.metadata as md, torch, pyopencl as cl
try:
    v = md.version("PyNX")
except md.PackageNotFoundError:
    v = "unknown"
try:
    plats = [p.name for p in cl.get_platforms()]
except Exception as e:  # PLATFORM_NOT_FOUND_KHR
    plats = [f"none ({e.__class__.__name__})"]
print(f"[setup] ready: torch {torch.__version__}, PyNX {v}, OpenCL platforms: {plats}")
PYEOF
