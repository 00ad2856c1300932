// pynx-dlgap device-side steps, OpenCL C. Arrays are C-ordered (z, y, x); 2-D arrays use nz = 1.
// "stored" = PyNX's fft-shifted layout (origin in the corner), "centred" = origin at n//2:
// stored[j] = centred[(j + n//2) % n] along every axis (numpy: ifftshift(centred)).

// Write DL values into PyNX's iobs encoding, in place, where fill != 0.
// mode 0: observed (iobs = v); mode 1: estimated (iobs = -(v + 1) * 1e19, PyNX's loose constraint).
__kernel void dl_write_iobs(__global float *iobs, __global const float *values,
                            __global const char *fill, const int mode, const int n)
{
    const int i = get_global_id(0);
    if (i >= n || fill[i] == 0) return;
    const float v = fmax(values[i], 0.0f);
    iobs[i] = (mode == 0) ? v : -(v + 1.0f) * 1e19f;
}

// Start object in reciprocal space: out (stored layout, complex64 as float2) =
// sqrt(max(I, 0)) * exp(i phase), from I and phase in the centred layout; 0 where phase is NaN
// or masked != 0.
__kernel void dl_phasor_amplitude(__global float2 *out, __global const float *intensity,
                                  __global const float *phase, __global const char *masked,
                                  const int nz, const int ny, const int nx)
{
    const int j = get_global_id(0);
    if (j >= nz * ny * nx) return;
    const int jx = j % nx, jy = (j / nx) % ny, jz = j / (nx * ny);
    const int cz = (jz + nz / 2) % nz, cy = (jy + ny / 2) % ny, cx = (jx + nx / 2) % nx;
    const int c = (cz * ny + cy) * nx + cx;
    const float ph = phase[c];
    float2 r = (float2)(0.0f, 0.0f);
    if (masked[c] == 0 && !isnan(ph)) {
        const float a = sqrt(fmax(intensity[c], 0.0f));
        r = (float2)(a * cos(ph), a * sin(ph));
    }
    out[j] = r;
}

// ---- whole-pattern inpainting on the device: gather patches, scatter blended predictions ----
// Index of the centred voxel (cz, cy, cx) in the array `src`, stored layout if stored != 0:
// centred[c] = stored[(c + n - n/2) % n] along every axis.
inline long dl_src_index(int cz, int cy, int cx, const int nz, const int ny, const int nx, const int stored)
{
    if (stored) {
        cz = (cz + nz - nz / 2) % nz;
        cy = (cy + ny - ny / 2) % ny;
        cx = (cx + nx - nx / 2) % nx;
    }
    return ((long)cz * ny + cy) * nx + cx;
}

// out[b, i, j, k] = centred pattern at corners[b] + (i, j, k), for npatch patches of pz*py*px voxels.
// Negative values (PyNX's masked/free encodings) are read as they are: the caller decodes.
__kernel void dl_gather_patches(__global float *out, __global const float *src, __global const int *corners,
                                const int pz, const int py, const int px,
                                const int nz, const int ny, const int nx, const int stored, const int npatch)
{
    const long t = get_global_id(0);
    const long per = (long)pz * py * px;
    if (t >= per * npatch) return;
    const int b = (int)(t / per);
    const int r = (int)(t % per);
    const int k = r % px, j = (r / px) % py, i = r / (px * py);
    out[t] = src[dl_src_index(corners[3 * b] + i, corners[3 * b + 1] + j, corners[3 * b + 2] + k,
                              nz, ny, nx, stored)];
}

// One patch b of a batch: acc += w * log(1 + max(pred, 0)), wsum += w at the patch's voxels (centred
// accumulators), w = weight[b] (the blend window times the patch's trusted gap voxels, 0 elsewhere).
// Patches overlap, so they are scattered one launch at a time (no two threads write one voxel).
__kernel void dl_scatter_patch(__global float *acc, __global float *wsum, __global const float *pred,
                               __global const float *weight, const int b,
                               const int cz0, const int cy0, const int cx0,
                               const int pz, const int py, const int px,
                               const int nz, const int ny, const int nx)
{
    const int r = get_global_id(0);
    const int per = pz * py * px;
    if (r >= per) return;
    const long q = (long)b * per + r;
    const float w = weight[q];
    if (w == 0.0f) return;
    const int k = r % px, j = (r / px) % py, i = r / (px * py);
    const long c = ((long)(cz0 + i) * ny + (cy0 + j)) * nx + (cx0 + k);
    acc[c] += w * log1p(fmax(pred[q], 0.0f));
    wsum[c] += w;
}

// Blended values into PyNX's iobs (stored layout), where wsum > 0:
// v = expm1(min(acc / wsum, 88)); mode 0: observed (v), mode 1: estimated (-(v + 1) * 1e19).
__kernel void dl_blend_write_iobs(__global float *iobs, __global const float *acc, __global const float *wsum,
                                  const int mode, const int nz, const int ny, const int nx)
{
    const int j = get_global_id(0);
    if (j >= nz * ny * nx) return;
    const int jx = j % nx, jy = (j / nx) % ny, jz = j / (nx * ny);
    const int c = (((jz + nz / 2) % nz) * ny + (jy + ny / 2) % ny) * nx + (jx + nx / 2) % nx;
    const float s = wsum[c];
    if (s <= 0.0f) return;
    const float v = fmax(expm1(fmin(acc[c] / s, 88.0f)), 0.0f);
    iobs[j] = (mode == 0) ? v : -(v + 1.0f) * 1e19f;
}
