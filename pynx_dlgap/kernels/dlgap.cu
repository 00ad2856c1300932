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

// ---- whole-pattern inpainting on the device: gather patches, scatter blended predictions ----
// (the same operations as in dlgap.cl; see there)
__device__ inline long long dl_src_index(int cz, int cy, int cx, const int nz, const int ny, const int nx,
                                         const int stored)
{
    if (stored) {
        cz = (cz + nz - nz / 2) % nz;
        cy = (cy + ny - ny / 2) % ny;
        cx = (cx + nx - nx / 2) % nx;
    }
    return ((long long)cz * ny + cy) * nx + cx;
}

extern "C" __global__ void dl_gather_patches(float *out, const float *src, const int *corners,
                                             const int pz, const int py, const int px,
                                             const int nz, const int ny, const int nx, const int stored,
                                             const int npatch)
{
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long per = (long long)pz * py * px;
    if (t >= per * npatch) return;
    const int b = (int)(t / per);
    const int r = (int)(t % per);
    const int k = r % px, j = (r / px) % py, i = r / (px * py);
    out[t] = src[dl_src_index(corners[3 * b] + i, corners[3 * b + 1] + j, corners[3 * b + 2] + k,
                              nz, ny, nx, stored)];
}

extern "C" __global__ void dl_scatter_patch(float *acc, float *wsum, const float *pred, const float *weight,
                                            const int b, const int cz0, const int cy0, const int cx0,
                                            const int pz, const int py, const int px,
                                            const int nz, const int ny, const int nx)
{
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    const int per = pz * py * px;
    if (r >= per) return;
    const long long q = (long long)b * per + r;
    const float w = weight[q];
    if (w == 0.0f) return;
    const int k = r % px, j = (r / px) % py, i = r / (px * py);
    const long long c = ((long long)(cz0 + i) * ny + (cy0 + j)) * nx + (cx0 + k);
    acc[c] += w * log1pf(fmaxf(pred[q], 0.0f));
    wsum[c] += w;
}

extern "C" __global__ void dl_blend_write_iobs(float *iobs, const float *acc, const float *wsum, const int mode,
                                               const int nz, const int ny, const int nx)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= nz * ny * nx) return;
    const int jx = j % nx, jy = (j / nx) % ny, jz = j / (nx * ny);
    const int c = (((jz + nz / 2) % nz) * ny + (jy + ny / 2) % ny) * nx + (jx + nx / 2) % nx;
    const float s = wsum[c];
    if (s <= 0.0f) return;
    const float v = fmaxf(expm1f(fminf(acc[c] / s, 88.0f)), 0.0f);
    iobs[j] = (mode == 0) ? v : -(v + 1.0f) * 1e19f;
}
