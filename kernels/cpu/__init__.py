"""Numba CPU kernels: the contract of ``kernels/__init__.py``, fast.

Same function names, signatures and semantics as ``kernels.reference`` (the specification,
held to it by tests/kernels/test_cpu.py). What makes them fast:

* convolution: Winograd F(4x4, 3x3) (Lavin & Gray 2016) for float32 3x3 stride-1 layers, its
  data gradient too (``_winograd.py``), im2col + BLAS ``numpy.matmul`` for every other shape
  (``_im2col.py``); transformed weights are cached per weight array, scratch buffers are
  reused (``_workspace.py``);
* pooling, ReLU, bias + ReLU and LRN: ``@njit(parallel=True, cache=True)`` loops over
  independent planes or elements, so scatter-adds never race (``pool.py``,
  ``elementwise.py``).

Inputs should be C-contiguous float32 or float64 as the contract says; other layouts are
accepted and copied with ``numpy.ascontiguousarray`` (so only C-contiguous specializations
are ever compiled). Outputs are freshly allocated; inputs are never written.

Threads: Numba's loops use ``numba.get_num_threads()`` threads and BLAS its own pool; the two
never run concurrently. ``set_num_threads(n)`` sets both (through threadpoolctl when it is
installed).
"""

from .conv import conv2d_backward_data, conv2d_backward_weight, conv2d_forward
from .elementwise import RELU_RULES, bias_relu_forward, lrn_backward, lrn_forward, relu_backward, relu_forward
from .pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward
from ._workspace import clear_weight_cache, release_scratch

__all__ = [
    "conv2d_forward",
    "conv2d_backward_data",
    "conv2d_backward_weight",
    "bias_relu_forward",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "relu_forward",
    "relu_backward",
    "lrn_forward",
    "lrn_backward",
]


def set_num_threads(n):
    """Use ``n`` threads for Numba's parallel loops and for BLAS (threadpoolctl if installed)."""
    import numba

    numba.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=n, user_api="blas")
