// activation.cu -- ReLU forward, ReLU backward under the three rules, fused bias + ReLU.
//
// All three are elementwise over C-contiguous arrays: one thread per element, flat index
// e over the whole array, grid-stride loop. Consecutive threads touch consecutive
// addresses in every array they read or write, so every access is coalesced. Each output
// element is written by exactly one thread: no races, no atomics.
//
// Self-contained (no headers) for NVRTC and the host-compiler emulation harness alike.

// y = max(x, 0). Written as "x < 0 ? 0 : x" so that a NaN passes through (as np.maximum does).
template <typename T>
__device__ void relu_forward_impl(const T* __restrict__ x, T* __restrict__ y, long long total)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const T v = x[e];
        y[e] = v < (T)0 ? (T)0 : v;
    }
}

// The rule codes host.py passes (one kernel for all rules: the branch is uniform across
// every warp, so it costs nothing and keeps one launch per call).
#define RELU_RULE_STANDARD 0   // gx = gy where x > 0 (or NaN)              the true gradient
#define RELU_RULE_DECONVNET 1  // gx = gy where gy > 0 (or NaN)             Zeiler & Fergus 2014
#define RELU_RULE_GUIDED 2     // gx = gy where both                        Springenberg et al. 2015

// ReLU backward: the mask selects gy or an exact zero (a select, not a multiply, so a
// masked-out inf or NaN in gy gives 0, as the reference's np.where does). The tests are
// "not <= 0" rather than "> 0", so a NaN passes as in PyTorch (its ReLU backward keeps the
// gradient where the output is not <= 0; relu(NaN) is NaN). For the deconvnet rule x is
// not read at all (host.py may pass gy in its place).
template <typename T>
__device__ void relu_backward_impl(const T* __restrict__ gy, const T* __restrict__ x,
                                   T* __restrict__ gx, long long total, int rule)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const T g = gy[e];
        bool keep;
        if (rule == RELU_RULE_DECONVNET) {
            keep = !(g <= (T)0);
        } else if (rule == RELU_RULE_GUIDED) {
            keep = !(x[e] <= (T)0) && !(g <= (T)0);
        } else {
            keep = !(x[e] <= (T)0);
        }
        gx[e] = keep ? g : (T)0;
    }
}

// Fused conv epilogue: y = max(x + b[c], 0) for x (N, C, H, W). One thread per element;
// the channel is c = (e / HW) % C. Neighbouring threads share c almost always, so the
// bias load is a broadcast from cache; the x loads and y stores are coalesced.
template <typename T>
__device__ void bias_relu_forward_impl(const T* __restrict__ x, const T* __restrict__ b,
                                       T* __restrict__ y, long long total, int C, int HW)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)blockDim.x * gridDim.x) {
        const int c = (int)((e / HW) % C);
        const T v = x[e] + b[c];
        y[e] = v < (T)0 ? (T)0 : v;
    }
}

// Entry points: one per dtype, unmangled names for RawModule.get_function and ctypes.
extern "C" __global__ void relu_forward_f32(const float* __restrict__ x, float* __restrict__ y, long long total)
{
    relu_forward_impl<float>(x, y, total);
}

extern "C" __global__ void relu_forward_f64(const double* __restrict__ x, double* __restrict__ y, long long total)
{
    relu_forward_impl<double>(x, y, total);
}

extern "C" __global__ void relu_backward_f32(const float* __restrict__ gy, const float* __restrict__ x, float* __restrict__ gx, long long total, int rule)
{
    relu_backward_impl<float>(gy, x, gx, total, rule);
}

extern "C" __global__ void relu_backward_f64(const double* __restrict__ gy, const double* __restrict__ x, double* __restrict__ gx, long long total, int rule)
{
    relu_backward_impl<double>(gy, x, gx, total, rule);
}

extern "C" __global__ void bias_relu_forward_f32(const float* __restrict__ x, const float* __restrict__ b, float* __restrict__ y, long long total, int C, int HW)
{
    bias_relu_forward_impl<float>(x, b, y, total, C, HW);
}

extern "C" __global__ void bias_relu_forward_f64(const double* __restrict__ x, const double* __restrict__ b, double* __restrict__ y, long long total, int C, int HW)
{
    bias_relu_forward_impl<double>(x, b, y, total, C, HW);
}
