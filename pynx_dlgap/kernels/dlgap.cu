// pynx-dlgap device-side steps, CUDA C++ (the same operations as dlgap.cl; see there).
// Compiled in CI with nvcc (tests/test_kernels.py), at run time with NVRTC (cupy.RawModule).
#include <cuComplex.h>

extern "C" __global__ void dl_write_iobs(float *iobs, const float *values, const char *fill,
                                         const int mode, const int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n || fill[i] == 0) return;
    const float v = fmaxf(values[i], 0.0f);
    iobs[i] = (mode == 0) ? v : -(v + 1.0f) * 1e19f;
}

extern "C" __global__ void dl_phasor_amplitude(cuFloatComplex *out, const float *intensity,
                                               const float *phase, const char *masked,
                                               const int nz, const int ny, const int nx)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= nz * ny * nx) return;
    const int jx = j % nx, jy = (j / nx) % ny, jz = j / (nx * ny);
    const int cz = (jz + nz / 2) % nz, cy = (jy + ny / 2) % ny, cx = (jx + nx / 2) % nx;
    const int c = (cz * ny + cy) * nx + cx;
    const float ph = phase[c];
    cuFloatComplex r = make_cuFloatComplex(0.0f, 0.0f);
    if (masked[c] == 0 && !isnan(ph)) {
        const float a = sqrtf(fmaxf(intensity[c], 0.0f));
        r = make_cuFloatComplex(a * cosf(ph), a * sinf(ph));
    }
    out[j] = r;
}
