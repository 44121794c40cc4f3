"""Batched float32 GEMM for Winograd: many independent products, split across threads.

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


def stacked_matmul(a, b, out):
    """out[i] = a[i] @ b[i] for every i of the leading axis (all C-contiguous float32)."""
    threads = min(numba.get_num_threads(), a.shape[0])
    controller = _controller() if threads > 1 else None
    if controller is None or threading.current_thread() is not threading.main_thread():
        np.matmul(a, b, out=out)
        return out
    bounds = np.linspace(0, a.shape[0], threads + 1).round().astype(int)
    with _lock:
        pool = _pool(threads - 1)
        with controller.limit(limits=1, user_api="blas"):
            futures = [
                pool.submit(np.matmul, a[lo:hi], b[lo:hi], out=out[lo:hi])
                for lo, hi in zip(bounds[1:-1], bounds[2:])
            ]
            np.matmul(a[: bounds[1]], b[: bounds[1]], out=out[: bounds[1]])
            for f in futures:
                f.result()
    return out
