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
