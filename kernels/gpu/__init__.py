"""The CuPy (CUDA) implementation of the kernel contract in ``kernels/__init__.py``.

Functions take and return ``cupy.ndarray`` and mean exactly what the contract says. The
CUDA C++ lives in the .cu files beside this module (activation, conv, pool, lrn), each
compiled once per process by ``cupy.RawModule`` (NVRTC; CuPy also caches the binary on
disk); the GEMMs of the convolutions go to cuBLAS through ``cupy.matmul``. Shapes, checks
and launches are in ``host.py``, shared with the CPU emulation harness that tests these
kernels on machines without a GPU (see README.md in this folder).

Importing this module needs CuPy, not a GPU: kernels are compiled and launched on first use.
"""

try:
    import cupy
except ImportError as error:  # kernels.load("cupy") re-raises this with its own context
    raise ImportError(
        "kernels.gpu needs CuPy, which is not installed: install minigrad's gpu extra "
        '(pip install -e ".[gpu]", which brings cupy-cuda12x; add nvidia-cuda-nvrtc-cu12 '
        "where no CUDA toolkit provides NVRTC)"
    ) from error

from kernels.gpu import host as _host

__all__ = list(_host.CONTRACT)


class CupyRuntime:
    """The runtime ``host.py`` drives on a real device: RawModule kernels, cupy arrays.

    One RawModule per .cu file, built lazily; its RawKernel objects are looked up once
    by name (``im2col_f32`` ...) and CuPy keeps their compiled form per device."""

    xp = cupy
    block = 256  # threads per block: 8 warps, a safe default for these memory-bound kernels
    max_blocks = 65535  # beyond this many blocks the grid-stride loops take over
    col_budget_bytes = 256 * 2**20  # im2col buffers larger than this are split by images

    def __init__(self):
        self._source_of = {}
        for source in _host.SOURCES:
            for name, _ in _host.entry_points(_host.read_source(source)):
                self._source_of[name] = source
        self._modules = {}
        self._kernels = {}

    def _kernel(self, name):
        kernel = self._kernels.get(name)
        if kernel is None:
            source = self._source_of[name]
            module = self._modules.get(source)
            if module is None:
                module = cupy.RawModule(code=_host.read_source(source), options=_host.NVRTC_OPTIONS)
                self._modules[source] = module
            kernel = self._kernels[name] = module.get_function(name)
        return kernel

    def launch(self, name, grid, block, args):
        self._kernel(name)((grid,), (block,), args)


_RUNTIME = CupyRuntime()


def conv2d_forward(x, w, b, stride, padding, dilation, groups, relu=False):
    """y (N, O, OH, OW) = conv2d(x, w) + b (then ReLU if ``relu``): im2col kernel, then one
    cuBLAS GEMM per image; equal receptive fields share one output value."""
    return _host.conv2d_forward(_RUNTIME, x, w, b, stride, padding, dilation, groups, relu)


def conv2d_backward_data(gy, w, x_shape, stride, padding, dilation, groups, relu_mask=None, relu_rule=None):
    """gx (x_shape): one cuBLAS GEMM w^T @ gy per image, then the col2im gather kernel (gy
    first through the ReLU backward rule with ``relu_rule``)."""
    return _host.conv2d_backward_data(_RUNTIME, gy, w, x_shape, stride, padding, dilation, groups, relu_mask,
                                      relu_rule)


def conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation, groups):
    """gw (w_shape): im2col kernel, then cuBLAS batched GEMM gy @ col^T summed over images."""
    return _host.conv2d_backward_weight(_RUNTIME, gy, x, w_shape, stride, padding, dilation, groups)


def bias_relu_forward(x, b):
    """y = max(x + b[None, :, None, None], 0), one fused kernel."""
    return _host.bias_relu_forward(_RUNTIME, x, b)


def max_pool2d_forward(x, kernel_size, stride, padding):
    """(y, argmax): window maxima and the flat in-plane index of each winner (narrowest type)."""
    return _host.max_pool2d_forward(_RUNTIME, x, kernel_size, stride, padding)


def max_pool2d_backward(gy, argmax, x_shape, kernel_size, stride, padding):
    """gx: each input pixel gathers gy from the windows whose argmax points at it."""
    return _host.max_pool2d_backward(_RUNTIME, gy, argmax, x_shape, kernel_size, stride, padding)


def avg_pool2d_forward(x, kernel_size, stride, padding, count_include_pad):
    """Window means; padded zeros count in the divisor iff count_include_pad."""
    return _host.avg_pool2d_forward(_RUNTIME, x, kernel_size, stride, padding, count_include_pad)


def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, count_include_pad):
    """gx: each input pixel gathers gy / divisor from every window containing it."""
    return _host.avg_pool2d_backward(_RUNTIME, gy, x_shape, kernel_size, stride, padding, count_include_pad)


def relu_forward(x):
    """y = max(x, 0)."""
    return _host.relu_forward(_RUNTIME, x)


def relu_backward(gy, x, rule):
    """gx under rule "standard", "deconvnet" or "guided" (see the contract)."""
    return _host.relu_backward(_RUNTIME, gy, x, rule)


def lrn_forward(x, size, alpha, beta, k):
    """Local response normalization across channels (PyTorch's form)."""
    return _host.lrn_forward(_RUNTIME, x, size, alpha, beta, k)


def lrn_backward(gy, x, y, size, alpha, beta, k):
    """Gradient of sum(gy * lrn_forward(x)) with respect to x (two launches)."""
    return _host.lrn_backward(_RUNTIME, gy, x, y, size, alpha, beta, k)


def matmul(a, b):
    """a @ b through cuBLAS."""
    return _host.matmul(_RUNTIME, a, b)
