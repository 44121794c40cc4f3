"""GEMMs split across threads by hand, each slice on single-threaded BLAS.

Two reasons. (1) Winograd's stacked products (below). (2) BLAS's own thread pool is never
woken by the convolution kernels: after a multi-threaded call, OpenBLAS's idle workers
busy-wait for about 0.1 s (2**28 cycles, ``OPENBLAS_THREAD_TIMEOUT``) before sleeping. On a
2-core machine that spinning worker takes half the machine from the Numba loops and GEMM
slices of the next layers: measured on VGG16 forward + backward to the input, 2 threads,
422 ms when im2col's GEMMs used BLAS's threads, 366 ms with ``row_split_matmul``.

Winograd's 36 products M[xi] = U[xi] @ V[xi] are independent and each is small (for VGG16's
conv1_2, 64x64 by 64x3136). Handing the stack to a multi-threaded BLAS makes every one of the
36 calls wake, split and join BLAS's thread pool: 36 synchronisations per layer, which cost
little on an idle machine but a scheduler time slice each whenever the cores are shared. Here
the stack is instead cut into one contiguous slice per thread, each slice multiplied by
single-threaded BLAS on its own thread: one synchronisation per layer, no oversubscription
(BLAS is limited to one thread for the duration, through threadpoolctl), and each core keeps
its matrices in its own cache.

Without threadpoolctl (an optional dependency) the stack goes to ``numpy.matmul`` as a whole,
on BLAS's own threads. The degree of parallelism is ``numba.get_num_threads()``, so
``kernels.cpu.set_num_threads`` governs both.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from . import _common

_lock = threading.Lock()
_state = {"pool": None, "workers": 0, "controller": None, "checked": False}


def _controller():
    if not _state["checked"]:
        _state["checked"] = True
        try:
            from threadpoolctl import ThreadpoolController

            _state["controller"] = ThreadpoolController()
        except Exception:  # absent or unable to inspect: fall back to BLAS's own threads
            _state["controller"] = None
    return _state["controller"]


def _pool(workers):
    if _state["workers"] != workers:
        if _state["pool"] is not None:
            _state["pool"].shutdown(wait=False)
        _state["pool"] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minigrad-gemm")
        _state["workers"] = workers
    return _state["pool"]


def run_matmuls(jobs):
    """Run ``numpy.matmul(a, b, out=out)`` for every (a, b, out) in ``jobs``, the list cut into
    one contiguous run per thread, each run on single-threaded BLAS (jobs of similar cost).

    When Numba may use several threads, BLAS is held to one thread even for a single job, so
    that its own pool is never woken (see the module docstring). A job's result never depends
    on which thread runs it or on the other jobs: the same shapes go to the same
    single-threaded BLAS routine."""
    threads = min(numba.get_num_threads(), len(jobs))
    controller = _controller() if numba.get_num_threads() > 1 else None
    if controller is None or threading.current_thread() is not threading.main_thread():
        for a, b, out in jobs:
            np.matmul(a, b, out=out)
        return
    bounds = _common.even_cuts(len(jobs), threads)

    def run(lo, hi):
        for a, b, out in jobs[lo:hi]:
            np.matmul(a, b, out=out)

    with _lock:
        pool = _pool(threads - 1) if threads > 1 else None
        with controller.limit(limits=1, user_api="blas"):
            futures = [pool.submit(run, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
            run(0, bounds[1])
            for f in futures:
                f.result()


def _ranges(extent):
    """``extent`` cut into one contiguous range per thread (fewer when there are fewer items);
    the cut depends on the extent and the thread count only."""
    threads = max(1, min(numba.get_num_threads(), extent))
    bounds = _common.even_cuts(extent, threads)
    return list(zip(bounds[:-1], bounds[1:]))


def per_image_matmul(u, v, out):
    """out[n, i] = u[i] @ v[n, i] for every image n and stack index i (float32, C-contiguous):
    each thread takes a range of i for all images, one stacked ``numpy.matmul`` (which calls
    BLAS once per (n, i) with the same shapes), so each image's result is the same in any batch."""
    run_matmuls([(u[lo:hi], v[:, lo:hi], out[:, lo:hi]) for lo, hi in _ranges(u.shape[0])])
    return out


def row_split_matmul(a, b, out):
    """out = a @ b (a (..., M, K), b (..., K, N), out (..., M, N); leading axes broadcast), the
    M rows cut into one range per thread, each range one stacked ``numpy.matmul`` on
    single-threaded BLAS. The cut depends on M and the thread count, never on how many
    samples b stacks, so each sample's products have the same shapes in any batch.

    Used for im2col's GEMMs so that no kernel ever wakes BLAS's own thread pool: OpenBLAS's
    idle workers busy-wait for about 0.1 s (2**28 cycles, ``OPENBLAS_THREAD_TIMEOUT``) after
    each multi-threaded call, and on a 2-core machine that spinning thread takes half the
    machine from the Numba loops and GEMM slices that follow."""
    run_matmuls([(a[..., lo:hi, :], b, out[..., lo:hi, :]) for lo, hi in _ranges(a.shape[-2])])
    return out


# Sums shorter than this are not worth cutting into per-thread partials.
SPLIT_MIN_TERMS = 4096


def reduction_split_matmul(a, b):
    """a @ b^T for a (..., M, R), b (..., N, R) (leading axes broadcast), a new (..., M, N)
    array: the summed axis R cut into one range per thread, each thread's partial product
    on single-threaded BLAS, the partials then added in thread order. For the long, thin
    products of a weight gradient (R = samples x pixels), where the M output rows are too few
    to share out. The larger of M and N is put in BLAS's row position (it runs these shapes
    up to 15% faster that way round). The result depends on the thread count, never on
    which thread runs first."""
    rows_first = a.shape[-2] >= b.shape[-2]
    if not rows_first:
        a, b = b, a
    terms = a.shape[-1]
    cuts = _ranges(terms) if terms >= SPLIT_MIN_TERMS else [(0, terms)]
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-2])
    parts = np.empty((len(cuts),) + shape, a.dtype)
    run_matmuls([(a[..., lo:hi], np.swapaxes(b[..., lo:hi], -1, -2), part) for (lo, hi), part in zip(cuts, parts)])
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total if rows_first else np.swapaxes(total, -1, -2)


# Products smaller than this many multiply-adds are not worth a thread hand-off.
SPLIT_MIN_MACS = 2**20


def matmul(a, b):
    """a @ b (NumPy's matmul rules), a new array. Large float products are cut along the
    output columns into one range per thread, each on single-threaded BLAS, so that a model's
    fully connected layers do not wake BLAS's own pool either (its spinning workers would
    take a core from the convolutions that follow)."""
    a, b = np.asarray(a), np.asarray(b)
    if (a.ndim < 2 or b.ndim < 2 or a.dtype != b.dtype or a.dtype not in (np.float32, np.float64)
            or a.shape[-1] != b.shape[-2]):
        return np.matmul(a, b)
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    out = np.empty(shape, a.dtype)
    if a.shape[-2] * a.shape[-1] * b.shape[-1] < SPLIT_MIN_MACS:
        run_matmuls([(a, b, out)])
    else:
        run_matmuls([(a, b[..., lo:hi], out[..., lo:hi]) for lo, hi in _ranges(b.shape[-1])])
    return out
