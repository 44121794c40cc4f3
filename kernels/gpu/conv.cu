// conv.cu -- the two data-movement kernels of a GEMM convolution: im2col and col2im.
//
// The arithmetic of conv2d lives in cuBLAS (cupy.matmul, called from host.py); these
// kernels only rearrange data so that a convolution becomes a batched matrix product.
//
// Layout contract (shared with host.py):
//   x    (N, C, H, W)                 C-contiguous, NCHW
//   col  (N, C, KH, KW, OH, OW)       C-contiguous; viewed by host.py as (N, G, K, L) with
//                                     K = (C / G) * KH * KW and L = OH * OW, so that
//                                     y[n, g] = w[g] (Og, K) @ col[n, g] (K, L).
//   col[n, c, p, q, i, j] = xpad[n, c, i*sh + p*dh, j*sw + q*dw]    (zero outside x)
//
// Both kernels are gathers: every thread computes one output element from reads only,
// so there are no atomics, no races, and the result does not depend on launch geometry
// or thread order (each output sums its terms in one fixed order).
//
// Indexing: the flat element index is 64-bit (a batched col buffer can pass 2^31
// elements); it is split once into (plane, position-in-plane) with one 64-bit division,
// and the rest of the arithmetic is 32-bit, which is what the integer units do fast.
//
// Self-contained on purpose: NVRTC gets no standard headers, and the emulation harness
// (tests/kernels/cuda_emulation.py) compiles this same file with the host C++ compiler.

// im2col: one thread per col element, flat index over (n, c, p, q, i, j) with j fastest.
// Thread-to-data mapping: consecutive threads write consecutive col addresses (coalesced
// stores) and, for stride 1, read consecutive x addresses along a row (coalesced loads);
// for stride s the loads are s apart, still within few cache lines per warp.
template <typename T>
__device__ void im2col_impl(const T* __restrict__ x, T* __restrict__ col,
                            long long total, int H, int W, int KH, int KW,
                            int OH, int OW, int sh, int sw, int ph, int pw,
                            int dh, int dw)
{
    const int L = OH * OW;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const long long plane = e / L;               // index over (n, c, p, q)
        const int pos = (int)(e - plane * L);       // index over (i, j)
        const int j = pos % OW;
        const int i = pos / OW;
        const int q = (int)(plane % KW);
        const int p = (int)((plane / KW) % KH);
        const long long nc = plane / ((long long)KH * KW);   // n * C + c
        const int h = i * sh - ph + p * dh;
        const int w = j * sw - pw + q * dw;
        T value = (T)0;
        if (h >= 0 && h < H && w >= 0 && w < W) {
            value = x[(nc * H + h) * W + w];
        }
        col[e] = value;
    }
}

// col2im: the adjoint of im2col, x_grad[n, c, h, w] = sum of every col entry that
// im2col copied from (h, w). Written as a gather: one thread per *image* element,
// flat index over (n, c, h, w) with w fastest (coalesced stores). The thread visits
// each kernel tap (p, q) and asks which output position (i, j) read (h, w) through it:
//   i*sh - ph + p*dh == h   <=>   i = (h + ph - p*dh) / sh, if that divides exactly
// and 0 <= i < OH (same for j). Taps are summed in row-major (p, q) order, so the
// result is deterministic. For stride 1 neighbouring threads read neighbouring col
// entries (coalesced loads).
template <typename T>
__device__ void col2im_impl(const T* __restrict__ col, T* __restrict__ x,
                            long long total, int H, int W, int KH, int KW,
                            int OH, int OW, int sh, int sw, int ph, int pw,
                            int dh, int dw)
{
    const int L = OH * OW;
    const int HW = H * W;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const long long nc = e / HW;                 // n * C + c
        const int pos = (int)(e - nc * HW);
        const int w = pos % W;
        const int h = pos / W;
        // The taps of plane (n, c) start here in col: (nc * KH * KW) planes of L each.
        const T* plane = col + nc * KH * KW * (long long)L;
        T sum = (T)0;
        for (int p = 0; p < KH; ++p) {
            const int hi = h + ph - p * dh;          // = i * sh when tap p reads row h
            if (hi < 0 || hi % sh != 0) continue;
            const int i = hi / sh;
            if (i >= OH) continue;
            for (int q = 0; q < KW; ++q) {
                const int wj = w + pw - q * dw;
                if (wj < 0 || wj % sw != 0) continue;
                const int j = wj / sw;
                if (j >= OW) continue;
                sum += plane[(long long)(p * KW + q) * L + i * OW + j];
            }
        }
        x[e] = sum;
    }
}

// Entry points: one per dtype, unmangled names for RawModule.get_function and ctypes.
extern "C" __global__ void im2col_f32(const float* __restrict__ x, float* __restrict__ col, long long total, int H, int W, int KH, int KW, int OH, int OW, int sh, int sw, int ph, int pw, int dh, int dw)
{
    im2col_impl<float>(x, col, total, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw);
}

extern "C" __global__ void im2col_f64(const double* __restrict__ x, double* __restrict__ col, long long total, int H, int W, int KH, int KW, int OH, int OW, int sh, int sw, int ph, int pw, int dh, int dw)
{
    im2col_impl<double>(x, col, total, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw);
}

extern "C" __global__ void col2im_f32(const float* __restrict__ col, float* __restrict__ x, long long total, int H, int W, int KH, int KW, int OH, int OW, int sh, int sw, int ph, int pw, int dh, int dw)
{
    col2im_impl<float>(col, x, total, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw);
}

extern "C" __global__ void col2im_f64(const double* __restrict__ col, double* __restrict__ x, long long total, int H, int W, int KH, int KW, int OH, int OW, int sh, int sw, int ph, int pw, int dh, int dw)
{
    col2im_impl<double>(col, x, total, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw);
}
