"""Numba CPU kernels: the contract of ``kernels/__init__.py``, fast.

Same function names, signatures and semantics as ``kernels.reference`` (the specification,
held to it by tests/kernels/test_cpu.py). What makes them fast:

* convolution: Winograd F(4x4, 3x3) (Lavin & Gray 2016) for wide float32 3x3 stride-1
  layers, its data gradient too (``_winograd.py``); a register-blocked FMA micro-kernel in
  LLVM IR for the other float32 stride-1 layers, all three directions (``_direct.py``);
  im2col + BLAS ``numpy.matmul`` for every other shape (``_im2col.py``); transformed and
  packed weights are cached per weight array, scratch buffers are reused (``_workspace.py``);
* pooling, ReLU, bias + ReLU and LRN: ``@njit(parallel=True, cache=True)`` loops over
  independent planes or elements, so scatter-adds never race (``pool.py``,
  ``elementwise.py``).

Memory: importing this package asks glibc's malloc to keep freed large blocks for reuse
(``_memory.py``): fresh activation arrays otherwise page-fault on every call, 10,900 faults
and about 30% of a VGG16 forward + backward at 2 threads here.

Inputs should be C-contiguous float32 or float64 as the contract says; other layouts are
accepted and copied with ``numpy.ascontiguousarray`` (so only C-contiguous specializations
are ever compiled). Outputs are freshly allocated; inputs are never written.

The rule for gradients that do not depend on the batch and equal PyTorch's (issue 10):

1. *Per-image algorithm.* The convolution algorithm is chosen from one image's geometry
   (channels, 4x4 tiles per image), never from the batch size, and every GEMM is one BLAS
   call per image with a shape fixed by that geometry (stacked in one ``numpy.matmul`` per
   thread; the thread split cuts output rows, the same cut for any batch). BLAS rounds a
   column or row differently depending on where it sits in the matrix, so stacking a batch
   into one product would make an image's bits depend on its neighbours. The direct
   micro-kernel computes every output pixel by the same chain of FMAs over its taps, in the
   same order, wherever it sits.
2. *Equal receptive fields, equal outputs.* The direct micro-kernel gives them by
   construction. After Winograd or im2col, every output pixel whose
   receptive field is bitwise equal to an earlier one's takes that pixel's value
   (``_patches.py``; ``kernels/patches.py`` says why). Flat regions -- a constant border, a
   black background -- then stay exactly flat, as in exact arithmetic and as in PyTorch's
   direct convolution, so their max-pool ties break as in PyTorch (first pixel) instead of
   by Winograd's or BLAS's position-dependent rounding. This is what lets Winograd stay
   where it is fast. Measured on VGG16 at 224x224, one thread (CPU time, loaded machine):
   its convolutions and pools take 152 ms with the step and 145 ms without; the same by
   im2col takes 314 ms and is no cure (BLAS rounds by position too); a float64 forward,
   which would hide the rounding, costs more still.
3. *Non-finite values stay where PyTorch has them.* Winograd's transforms mix a tile's 36
   inputs, so an image whose input (or gradient) holds a NaN or an infinity is recomputed by
   im2col; max-pool lets a NaN win (the last of a window); ReLU's backward keeps the
   gradient where the input is "not <= 0", so NaN passes.

What remains different from PyTorch is float32 rounding itself: windows whose two largest
values differ by a few ulps go to whichever pixel each library's rounding favours. On VGG16
(random weights) with a photo on a white border, PyTorch's own float32 gradient images
differ from the exact (float64) ones by up to 9% of their peak for that reason, and ours by
as much; on fashion-vgg (black backgrounds) all three gradient images match PyTorch's to
rounding (correlation 1.000000, max difference < 0.01% of the peak, 32 sample images).

Threads: Numba's loops use ``numba.get_num_threads()`` threads; the convolutions' GEMMs run
as one slice per thread on single-threaded BLAS (``_gemm.py``), never on BLAS's own pool,
whose idle workers spin for ~0.1 s after each use (set ``OPENBLAS_THREAD_TIMEOUT=4`` before
NumPy is imported to shorten that for the caller's own multi-threaded matmuls).
``set_num_threads(n)`` sets both (through threadpoolctl when it is installed).
With Numba's OpenMP threading layer, its worker threads are started here with
``OMP_WAIT_POLICY=PASSIVE`` (unless the variable is already set): by default GNU OpenMP
workers spin for a while after every parallel loop, and on a 2-core machine that spinning
steals the core BLAS's or another process's thread needs next. Measured here, VGG16 forward
+ backward to the input on a loaded machine took 1.5 s with spinning workers and 0.7 s with
passive ones. The variable is restored right after, so other OpenMP runtimes loaded later
(torch's, for one) keep their own defaults.
"""

import os

from kernels import CONTRACT

try:  # Numba internals: if they move, we only lose the passive start
    from numba.np.ufunc import parallel as _numba_parallel
except ImportError:  # pragma: no cover
    _numba_parallel = None

from .conv import conv2d_backward_data, conv2d_backward_weight, conv2d_forward
from .elementwise import RELU_RULES, bias_relu_forward, lrn_backward, lrn_forward, relu_backward, relu_forward
from .pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward
from ._gemm import matmul
from ._memory import keep_freed_blocks
from ._workspace import clear_weight_cache, release_scratch

__all__ = list(CONTRACT)


def _start_numba_threads_passive():
    """Start Numba's thread pool now, with OpenMP's passive wait policy (see module docstring)."""
    if _numba_parallel is None or getattr(_numba_parallel, "_is_initialized", True):
        return
    had = "OMP_WAIT_POLICY" in os.environ
    if not had:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        _numba_parallel._launch_threads()
    except Exception:  # a threading layer that cannot start now will report itself on first use
        pass
    finally:
        if not had:
            os.environ.pop("OMP_WAIT_POLICY", None)


_start_numba_threads_passive()
keep_freed_blocks()


def set_num_threads(n):
    """Use ``n`` threads for Numba's parallel loops and for BLAS (threadpoolctl if installed)."""
    import numba

    numba.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=n, user_api="blas")
