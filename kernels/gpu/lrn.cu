// lrn.cu -- local response normalization across channels (Krizhevsky et al. 2012), in
// PyTorch's form, forward and backward.
//
//   d[n, c, h, w] = k + alpha / size * sum_{c' = c - size/2}^{c + (size-1)/2} x[n, c', h, w]^2
//   y = x * d^(-beta)                      (out-of-range channels count as zero)
//   gx[c] = gy[c] * d[c]^(-beta)
//           - 2 * alpha * beta / size * x[c] * sum_{c' = c - (size-1)/2}^{c + size/2} gy[c'] * y[c'] / d[c']
//
// (The backward window is the forward window mirrored: channel c enters d[c'] exactly when
// c' - size/2 <= c <= c' + (size-1)/2. The two differ when size is even.)
//
// Thread-to-data mapping, all three kernels: one thread per element, flat index over
// (n, c, h, w) with w fastest. A thread walks its channel window at stride H*W; at every
// step of that walk the threads of a warp read neighbouring (h, w) addresses of the same
// channel, so the loads are coalesced, and each output is written by exactly one thread.
//
// The backward pass is two launches: lrn_scale writes d once, then lrn_backward reads it.
// Recomputing d inside the backward kernel would make it one launch but cost O(size^2)
// loads per element; with d stored it is O(size), and d is summed exactly as the forward
// pass sums it.
//
// Self-contained (no headers) for NVRTC and the host-compiler emulation harness alike.

__device__ __forceinline__ float lrn_pow(float base, float exponent) { return powf(base, exponent); }
__device__ __forceinline__ double lrn_pow(double base, double exponent) { return pow(base, exponent); }

// d for element e = ((n * C + c) * HW + pos): the scaled sum of squares over the window.
template <typename T>
__device__ __forceinline__ T lrn_denominator(const T* __restrict__ x, long long e, int c,
                                             int C, int HW, int size, T alpha, T k)
{
    const int lo = c - size / 2 > 0 ? c - size / 2 : 0;
    const int hi = c + (size - 1) / 2 < C - 1 ? c + (size - 1) / 2 : C - 1;
    const T* column = x + (e - (long long)c * HW);   // element (n, 0, h, w)
    T sum = (T)0;
    for (int cc = lo; cc <= hi; ++cc) {
        const T v = column[(long long)cc * HW];
        sum += v * v;
    }
    return k + alpha / (T)size * sum;
}

template <typename T>
__device__ void lrn_forward_impl(const T* __restrict__ x, T* __restrict__ y, long long total,
                                 int C, int HW, int size, T alpha, T beta, T k)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const int c = (int)((e / HW) % C);
        const T d = lrn_denominator(x, e, c, C, HW, size, alpha, k);
        y[e] = x[e] * lrn_pow(d, -beta);
    }
}

template <typename T>
__device__ void lrn_scale_impl(const T* __restrict__ x, T* __restrict__ d, long long total,
                               int C, int HW, int size, T alpha, T k)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const int c = (int)((e / HW) % C);
        d[e] = lrn_denominator(x, e, c, C, HW, size, alpha, k);
    }
}

template <typename T>
__device__ void lrn_backward_impl(const T* __restrict__ gy, const T* __restrict__ x,
                                  const T* __restrict__ y, const T* __restrict__ d,
                                  T* __restrict__ gx, long long total, int C, int HW,
                                  int size, T alpha, T beta)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const int c = (int)((e / HW) % C);
        const long long base = e - (long long)c * HW;   // element (n, 0, h, w)
        const int lo = c - (size - 1) / 2 > 0 ? c - (size - 1) / 2 : 0;
        const int hi = c + size / 2 < C - 1 ? c + size / 2 : C - 1;
        T sum = (T)0;
        for (int cc = lo; cc <= hi; ++cc) {
            const long long f = base + (long long)cc * HW;
            sum += gy[f] * y[f] / d[f];
        }
        gx[e] = gy[e] * lrn_pow(d[e], -beta) - (T)2 * alpha * beta / (T)size * x[e] * sum;
    }
}

// Entry points: one per dtype, unmangled names for RawModule.get_function and ctypes.
extern "C" __global__ void lrn_forward_f32(const float* __restrict__ x, float* __restrict__ y, long long total, int C, int HW, int size, float alpha, float beta, float k)
{
    lrn_forward_impl<float>(x, y, total, C, HW, size, alpha, beta, k);
}

extern "C" __global__ void lrn_forward_f64(const double* __restrict__ x, double* __restrict__ y, long long total, int C, int HW, int size, double alpha, double beta, double k)
{
    lrn_forward_impl<double>(x, y, total, C, HW, size, alpha, beta, k);
}

extern "C" __global__ void lrn_scale_f32(const float* __restrict__ x, float* __restrict__ d, long long total, int C, int HW, int size, float alpha, float k)
{
    lrn_scale_impl<float>(x, d, total, C, HW, size, alpha, k);
}

extern "C" __global__ void lrn_scale_f64(const double* __restrict__ x, double* __restrict__ d, long long total, int C, int HW, int size, double alpha, double k)
{
    lrn_scale_impl<double>(x, d, total, C, HW, size, alpha, k);
}

extern "C" __global__ void lrn_backward_f32(const float* __restrict__ gy, const float* __restrict__ x, const float* __restrict__ y, const float* __restrict__ d, float* __restrict__ gx, long long total, int C, int HW, int size, float alpha, float beta)
{
    lrn_backward_impl<float>(gy, x, y, d, gx, total, C, HW, size, alpha, beta);
}

extern "C" __global__ void lrn_backward_f64(const double* __restrict__ gy, const double* __restrict__ x, const double* __restrict__ y, const double* __restrict__ d, double* __restrict__ gx, long long total, int C, int HW, int size, double alpha, double beta)
{
    lrn_backward_impl<double>(gy, x, y, d, gx, total, C, HW, size, alpha, beta);
}
