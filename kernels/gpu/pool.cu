// pool.cu -- max pooling (with argmax) and average pooling, forward and backward.
//
// Layout: x (N, C, H, W), y / gy / argmax (N, C, OH, OW), all C-contiguous NCHW; argmax holds
// the flat in-plane index h*W + w of each window's winner, in the narrowest integer type that
// fits the plane (kernels.geometry.argmax_dtype): the max-pool entry points exist for each
// index type I (u8, u16, i32, i64: unsigned char, unsigned short, int, long long).
// Geometry: window (KH, KW), stride (sh, sw), zero padding (ph, pw); output (i, j) covers
// input rows i*sh - ph .. i*sh - ph + KH - 1 and the matching columns.
//
// Forward kernels: one thread per output element (flat index over n, c, i, j with j fastest:
// consecutive threads store consecutive outputs, and for stride 1 they load neighbouring
// input columns). Backward kernels are gathers, not scatters: one thread per *input*
// element visits the few windows that contain it and sums their contributions, so
// overlapping windows (AlexNet's 3x3 stride 2) need no atomics, there are no races, and
// the sums come out in one fixed order whatever the launch geometry.
//
// The flat element index is 64-bit; it is split once into (plane, position) and the rest
// is 32-bit arithmetic. Self-contained (no headers) for NVRTC and the host-compiler
// emulation harness alike.

// Rows (or columns) of windows that contain input row h: i*sh - ph <= h <= i*sh - ph + K - 1,
// i.e. ceil((h + ph - K + 1) / sh) <= i <= floor((h + ph) / sh), clipped to [0, OUT).
// Written with non-negative numerators only, so C's truncating division is floor division.
__device__ __forceinline__ void window_range(int h, int pad, int K, int stride, int OUT,
                                             int* first, int* last)
{
    const int top = h + pad - K + 1;   // windows must start at or after this offset
    *first = top <= 0 ? 0 : (top + stride - 1) / stride;
    const int end = (h + pad) / stride;   // h + pad >= 0 always
    *last = end < OUT - 1 ? end : OUT - 1;
}

// Max pooling forward. Each thread scans its window in row-major order. The best value
// starts from the first *real* pixel (padding never wins, and no -inf sentinel is needed)
// and is replaced only by a strictly greater value or a NaN, so ties go to the first
// maximum and a NaN wins over numbers and over earlier NaNs: PyTorch's "val > max ||
// isnan(val)", so NaN propagates and its gradient goes to the last NaN of the window.
// The caller guarantees padding <= kernel // 2, so every window holds a real pixel.
template <typename T, typename I>
__device__ void max_pool_forward_impl(const T* __restrict__ x, T* __restrict__ y,
                                      I* __restrict__ argmax, long long total,
                                      int H, int W, int OH, int OW, int KH, int KW,
                                      int sh, int sw, int ph, int pw)
{
    const int L = OH * OW;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const long long nc = e / L;
        const int pos = (int)(e - nc * L);
        const int j = pos % OW;
        const int i = pos / OW;
        const T* plane = x + nc * H * (long long)W;
        const int h0 = i * sh - ph;
        const int w0 = j * sw - pw;
        const int h_lo = h0 > 0 ? h0 : 0;
        const int h_hi = h0 + KH < H ? h0 + KH : H;
        const int w_lo = w0 > 0 ? w0 : 0;
        const int w_hi = w0 + KW < W ? w0 + KW : W;
        int best_index = h_lo * W + w_lo;
        T best = plane[best_index];
        for (int h = h_lo; h < h_hi; ++h) {
            for (int w = w_lo; w < w_hi; ++w) {
                const T v = plane[h * W + w];
                if ((v > best) || (v != v)) {
                    best = v;
                    best_index = h * W + w;
                }
            }
        }
        y[e] = best;
        argmax[e] = (I)best_index;
    }
}

// Max pooling backward: gx[n, c, h, w] = sum of gy[n, c, i, j] over the windows (i, j)
// that contain (h, w) and whose argmax points at (h, w). One thread per input element,
// flat index over (n, c, h, w) with w fastest (coalesced stores); windows are visited in
// row-major order.
template <typename T, typename I>
__device__ void max_pool_backward_impl(const T* __restrict__ gy,
                                       const I* __restrict__ argmax,
                                       T* __restrict__ gx, long long total,
                                       int H, int W, int OH, int OW, int KH, int KW,
                                       int sh, int sw, int ph, int pw)
{
    const int HW = H * W;
    const int L = OH * OW;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const long long nc = e / HW;
        const int pos = (int)(e - nc * HW);
        const int w = pos % W;
        const int h = pos / W;
        int i0, i1, j0, j1;
        window_range(h, ph, KH, sh, OH, &i0, &i1);
        window_range(w, pw, KW, sw, OW, &j0, &j1);
        const T* gy_plane = gy + nc * L;
        const I* arg_plane = argmax + nc * L;
        T sum = (T)0;
        for (int i = i0; i <= i1; ++i) {
            for (int j = j0; j <= j1; ++j) {
                if ((long long)arg_plane[i * OW + j] == pos) sum += gy_plane[i * OW + j];
            }
        }
        gx[e] = sum;
    }
}

// Number of real (non-padding) pixels in the window of output (i, j): the divisor when
// padded zeros do not count.
__device__ __forceinline__ int real_count(int i, int j, int H, int W, int KH, int KW,
                                          int sh, int sw, int ph, int pw)
{
    const int h0 = i * sh - ph, w0 = j * sw - pw;
    const int rows = (h0 + KH < H ? h0 + KH : H) - (h0 > 0 ? h0 : 0);
    const int cols = (w0 + KW < W ? w0 + KW : W) - (w0 > 0 ? w0 : 0);
    return rows * cols;
}

// Average pooling forward: one thread per output element (same mapping as max pooling);
// the window sum runs over real pixels only (padded zeros add nothing) and is divided by
// KH*KW when count_include_pad, else by the number of real pixels.
template <typename T>
__device__ void avg_pool_forward_impl(const T* __restrict__ x, T* __restrict__ y,
                                      long long total, int H, int W, int OH, int OW,
                                      int KH, int KW, int sh, int sw, int ph, int pw,
                                      int count_include_pad)
{
    const int L = OH * OW;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const long long nc = e / L;
        const int pos = (int)(e - nc * L);
        const int j = pos % OW;
        const int i = pos / OW;
        const T* plane = x + nc * H * (long long)W;
        const int h0 = i * sh - ph;
        const int w0 = j * sw - pw;
        const int h_lo = h0 > 0 ? h0 : 0;
        const int h_hi = h0 + KH < H ? h0 + KH : H;
        const int w_lo = w0 > 0 ? w0 : 0;
        const int w_hi = w0 + KW < W ? w0 + KW : W;
        T sum = (T)0;
        for (int h = h_lo; h < h_hi; ++h) {
            for (int w = w_lo; w < w_hi; ++w) sum += plane[h * W + w];
        }
        const int divisor = count_include_pad ? KH * KW
                                              : (h_hi - h_lo) * (w_hi - w_lo);
        y[e] = sum / (T)divisor;
    }
}

// Average pooling backward: gx[n, c, h, w] = sum over windows (i, j) containing (h, w) of
// gy[n, c, i, j] / divisor(i, j). One thread per input element (gather, as above).
template <typename T>
__device__ void avg_pool_backward_impl(const T* __restrict__ gy, T* __restrict__ gx,
                                       long long total, int H, int W, int OH, int OW,
                                       int KH, int KW, int sh, int sw, int ph, int pw,
                                       int count_include_pad)
{
    const int HW = H * W;
    const int L = OH * OW;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const long long nc = e / HW;
        const int pos = (int)(e - nc * HW);
        const int w = pos % W;
        const int h = pos / W;
        int i0, i1, j0, j1;
        window_range(h, ph, KH, sh, OH, &i0, &i1);
        window_range(w, pw, KW, sw, OW, &j0, &j1);
        const T* gy_plane = gy + nc * L;
        T sum = (T)0;
        for (int i = i0; i <= i1; ++i) {
            for (int j = j0; j <= j1; ++j) {
                const int divisor = count_include_pad
                    ? KH * KW : real_count(i, j, H, W, KH, KW, sh, sw, ph, pw);
                sum += gy_plane[i * OW + j] / (T)divisor;
            }
        }
        gx[e] = sum;
    }
}

// Entry points: one per dtype (and, for max pooling, per index type), unmangled names for
// RawModule.get_function and ctypes.
extern "C" __global__ void max_pool2d_forward_u8_f32(const float* __restrict__ x, float* __restrict__ y, unsigned char* __restrict__ argmax, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_forward_impl<float, unsigned char>(x, y, argmax, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_forward_u8_f64(const double* __restrict__ x, double* __restrict__ y, unsigned char* __restrict__ argmax, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_forward_impl<double, unsigned char>(x, y, argmax, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_backward_u8_f32(const float* __restrict__ gy, const unsigned char* __restrict__ argmax, float* __restrict__ gx, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_backward_impl<float, unsigned char>(gy, argmax, gx, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_backward_u8_f64(const double* __restrict__ gy, const unsigned char* __restrict__ argmax, double* __restrict__ gx, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_backward_impl<double, unsigned char>(gy, argmax, gx, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_forward_u16_f32(const float* __restrict__ x, float* __restrict__ y, unsigned short* __restrict__ argmax, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_forward_impl<float, unsigned short>(x, y, argmax, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_forward_u16_f64(const double* __restrict__ x, double* __restrict__ y, unsigned short* __restrict__ argmax, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_forward_impl<double, unsigned short>(x, y, argmax, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_backward_u16_f32(const float* __restrict__ gy, const unsigned short* __restrict__ argmax, float* __restrict__ gx, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_backward_impl<float, unsigned short>(gy, argmax, gx, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_backward_u16_f64(const double* __restrict__ gy, const unsigned short* __restrict__ argmax, double* __restrict__ gx, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_backward_impl<double, unsigned short>(gy, argmax, gx, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_forward_i32_f32(const float* __restrict__ x, float* __restrict__ y, int* __restrict__ argmax, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_forward_impl<float, int>(x, y, argmax, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_forward_i32_f64(const double* __restrict__ x, double* __restrict__ y, int* __restrict__ argmax, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_forward_impl<double, int>(x, y, argmax, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_backward_i32_f32(const float* __restrict__ gy, const int* __restrict__ argmax, float* __restrict__ gx, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_backward_impl<float, int>(gy, argmax, gx, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_backward_i32_f64(const double* __restrict__ gy, const int* __restrict__ argmax, double* __restrict__ gx, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_backward_impl<double, int>(gy, argmax, gx, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_forward_i64_f32(const float* __restrict__ x, float* __restrict__ y, long long* __restrict__ argmax, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_forward_impl<float, long long>(x, y, argmax, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_forward_i64_f64(const double* __restrict__ x, double* __restrict__ y, long long* __restrict__ argmax, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_forward_impl<double, long long>(x, y, argmax, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_backward_i64_f32(const float* __restrict__ gy, const long long* __restrict__ argmax, float* __restrict__ gx, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_backward_impl<float, long long>(gy, argmax, gx, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void max_pool2d_backward_i64_f64(const double* __restrict__ gy, const long long* __restrict__ argmax, double* __restrict__ gx, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw)
{
    max_pool_backward_impl<double, long long>(gy, argmax, gx, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw);
}

extern "C" __global__ void avg_pool2d_forward_f32(const float* __restrict__ x, float* __restrict__ y, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw, int count_include_pad)
{
    avg_pool_forward_impl<float>(x, y, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw, count_include_pad);
}

extern "C" __global__ void avg_pool2d_forward_f64(const double* __restrict__ x, double* __restrict__ y, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw, int count_include_pad)
{
    avg_pool_forward_impl<double>(x, y, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw, count_include_pad);
}

extern "C" __global__ void avg_pool2d_backward_f32(const float* __restrict__ gy, float* __restrict__ gx, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw, int count_include_pad)
{
    avg_pool_backward_impl<float>(gy, gx, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw, count_include_pad);
}

extern "C" __global__ void avg_pool2d_backward_f64(const double* __restrict__ gy, double* __restrict__ gx, long long total, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int ph, int pw, int count_include_pad)
{
    avg_pool_backward_impl<double>(gy, gx, total, H, W, OH, OW, KH, KW, sh, sw, ph, pw, count_include_pad);
}
