#!/usr/bin/env bash
# The GPU checks of pynx-dlgap, in one run on a machine with an NVIDIA GPU, the CUDA
# toolkit (nvcc, headers), a CUDA build of torch and CuPy (the lent H100/H200 image):
#
#   1. builds what PyNX's CUDA family needs and such an image lacks, into a private
#      prefix (nothing is installed system-wide): pycuda from its sdist and pyvkfft's
#      CUDA backend from its source tree (both compiled there, in parallel), plus
#      pure/binary wheels (pytools, mako, platformdirs, siphash24, fabio, silx) and PyNX
#      2025.1 as `make setup` installs it;
#   2. runs the GPU tests (tests/test_cuda_family.py: zero copy between PyNX's GPUArrays
#      and torch, CUDA-family DLInpaint/DLPhaseInit against the CPU family; and the CuPy
#      run of the CUDA kernels in tests/test_kernels.py);
#   3. runs benchmarks/pipeline.py --pynx cuda (inpaint, DL start, PyNX chain, all on the
#      GPU), benchmarks/inpaint_speed.py and benchmarks/phase_step.py (DL phase step vs chain,
#      eager and CUDA-graph) on the GPU, and benchmarks/runner_dl.py (pynx-cdi-id01-dl with
#      and without the DL flags, the release mode included) on PyNX's CUDA backend.
#
# Usage: scripts/gpu_check.sh SRC WHEELS OUT [STEPS]
#   SRC    folder with pycuda-*.tar.gz, pyvkfft/ (source tree) and pynx_pkg/ (PyNX's package
#          folder, e.g. .venv/lib/python3.11/site-packages/pynx: pure Python)
#   WHEELS folder of wheels for the machine's Python (see `pip download --python-version`)
#   OUT    folder for logs and results
#   STEPS  any of build,tests,phasestep,pipeline,speed,runner (default all); with SRC/prebuilt/ (pycuda/ and
#          pyvkfft/ package folders holding the .so files an earlier build returned), 'build'
#          installs those instead of compiling again. KEEP_SO=1 copies the built .so files to OUT.
#          RUNNER_RANGES: phase ranges of the runner step (default "3.0 6.28").
# The device tool brings back at most 8 files from OUT: build logs stay in /tmp/dlgap-gpu-build.
set -u
SRC=$(readlink -f "${1:?SRC}"); WHL=$(readlink -f "${2:?WHEELS}"); OUT=$(readlink -f "${3:?OUT}")
STEPS=${4:-build,tests,phasestep,pipeline,speed,runner}
PY=${PYTHON:-python3}
SITE=${DLGAP_GPU_SITE:-/tmp/dlgap-gpu-site}
B=/tmp/dlgap-gpu-build
mkdir -p "$SITE" "$B" "$OUT"
export PYTHONUNBUFFERED=1 PYNX_PU=cuda
log() { echo "== $(date +%T) $*"; }
CUDA_ROOT=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
export CUDA_HOME=$CUDA_ROOT LIBRARY_PATH=$CUDA_ROOT/lib64/stubs:${LIBRARY_PATH:-}
log "$(nvidia-smi -L 2>&1 | head -1); CUDA root $CUDA_ROOT; $($PY -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)')"

if [[ $STEPS == *build* ]]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHL"/*.whl || exit 1
    rm -rf "$SITE/pynx" && cp -r "$SRC/pynx_pkg" "$SITE/pynx"
fi
if [[ $STEPS == *build* && -d $SRC/prebuilt ]]; then
    log "install: the pycuda and pyvkfft packages of an earlier build ($SRC/prebuilt)"
    rm -rf "$SITE/pycuda" "$SITE/pyvkfft" && cp -r "$SRC/prebuilt/pycuda" "$SRC/prebuilt/pyvkfft" "$SITE/"
elif [[ $STEPS == *build* ]]; then
    log "build: pycuda + pyvkfft (CUDA) in parallel"
    ( cd "$B" && rm -rf pycuda-* && tar xzf "$SRC"/pycuda-*.tar.gz && cd pycuda-* \
      && $PY configure.py --cuda-root="$CUDA_ROOT" && timeout 300 $PY setup.py build_ext --inplace -j 16 \
      && cp -r pycuda "$SITE/" ) > "$B/build_pycuda.log" 2>&1 &
    P1=$!
    ( rm -rf "$B/pyvkfft" && cp -r "$SRC/pyvkfft" "$B/pyvkfft" && cd "$B/pyvkfft" \
      && VKFFT_BACKEND=cuda timeout 300 $PY setup.py build_ext --inplace && cp -r pyvkfft "$SITE/" ) > "$B/build_pyvkfft.log" 2>&1 &
    P2=$!
    wait $P1; r1=$?; wait $P2; r2=$?
    log "build: pycuda rc=$r1, pyvkfft rc=$r2"
    [[ $r1 == 0 ]] || tail -30 "$B/build_pycuda.log"
    [[ $r2 == 0 ]] || tail -30 "$B/build_pyvkfft.log"
    [[ -n ${KEEP_SO:-} ]] && cp "$SITE"/pycuda/*.so "$SITE"/pyvkfft/*.so "$OUT/" 2>/dev/null
fi
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
$PY - <<'EOF' 2>&1
import pycuda.driver as d; d.init(); print("pycuda", __import__("pycuda").VERSION, d.Device(0).name())
from pyvkfft.cuda import VkFFTApp; print("pyvkfft.cuda imports")
import pynx.processing_unit as pu; print("PyNX", getattr(__import__("pynx"), "__version__", "?"), "has_cuda", pu.has_cuda,
                                     "vkfft_cuda", getattr(pu, "has_vkfft_cuda", "?"))
EOF

if [[ $STEPS == *tests* ]]; then
    log "tests"
    timeout 200 $PY -m pytest -q -p no:cacheprovider -o addopts="" tests/test_cuda_family.py tests/test_kernels.py -k "cuda" \
        2>&1 | tail -25 | tee "$OUT/gpu_tests.txt"
fi
if [[ $STEPS == *phasestep* ]]; then
    log "DL phase step vs chain on the GPU (eager and CUDA graph)"
    { timeout 60 $PY benchmarks/phase_step.py --count-ops --pynx cuda
      timeout 240 $PY benchmarks/phase_step.py --n 5 --repeat 5 --pynx cuda --profile 25; } 2>&1 \
        | grep -v -E "Warning|imodel - iobs" | tee "$OUT/phase_step_gpu.txt"
fi
if [[ $STEPS == *pipeline* ]]; then
    log "pipeline (all on the GPU)"
    timeout 200 $PY benchmarks/pipeline.py --pynx cuda --repeat 2 2>&1 | grep -v Warning | tee "$OUT/pipeline_gpu.txt"
fi
if [[ $STEPS == *speed* ]]; then
    log "inpaint speed on the GPU"
    timeout 150 $PY benchmarks/inpaint_speed.py --device cuda --ref-limit 3000 2>&1 | tee "$OUT/inpaint_speed_gpu.txt"
fi
if [[ $STEPS == *runner* ]]; then
    for PR in ${RUNNER_RANGES:-3.0 6.28}; do
        log "pynx-cdi-id01-dl with and without the DL flags on PyNX's CUDA backend, phase range $PR"
        timeout 200 $PY benchmarks/runner_dl.py --n 8 --pynx-pu cuda --jobs 8 --phase-range $PR --variants \
            " --dl-inpaint" " --dl-inpaint --dl-inpaint-mode release" " --dl-phase-init" " --dl-inpaint --dl-phase-init" \
            " --dl-inpaint --dl-phase-init --dl-inpaint-mode release" 2>>"$B/runner.err" | tee "$OUT/runner_dl_gpu_$PR.txt"
        tail -2 "$B/runner.err"
    done
fi
log "done"
