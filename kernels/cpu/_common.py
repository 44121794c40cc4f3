"""Argument checking shared by the Numba kernels' Python entry points.

The jitted loops never check anything (an ``assert`` or a raise inside a ``prange`` body
stops Numba from parallelising it), so every public function validates shapes and geometry
here first and raises ``ValueError`` naming the op, the shapes and the offending argument.
The rules match ``kernels.reference`` exactly: floor-mode output sizes, pool padding at most
half the kernel, weight shape (O, C // groups, KH, KW).
"""

import numpy as np

from kernels.geometry import (RELU_RULES, argmax_dtype, check_argmax, check_grad_shape, conv_geometry,  # noqa: F401
                              out_size, pair, pool_geometry, relu_rule_code, shape4)


def float_array(name, a, dtype=None):
    """``a`` as a C-contiguous float32/float64 array (of ``dtype`` when given).

    The contract promises C-contiguous inputs; converting here anyway costs nothing for
    such inputs and keeps Numba from compiling a second (non-contiguous) specialization."""
    a = np.asarray(a)
    if dtype is None:
        dtype = a.dtype
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    return np.ascontiguousarray(a, dtype=dtype)


def even_cuts(extent, parts):
    """0 = b[0] <= b[1] <= ... <= b[parts] = extent, cutting ``extent`` into near-equal parts
    (integer arithmetic: the cut depends on the two numbers only)."""
    return [extent * i // parts for i in range(parts + 1)]


def data_gradient_kernel(w):
    """The kernel whose stride-1 convolution of gy, padded by KH-1-ph and KW-1-pw, is the data
    gradient of a stride-1 convolution by w (O, C, KH, KW): w flipped in both spatial axes with
    input and output channels swapped, (C, O, KH, KW)."""
    return np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])


def common_dtype(*arrays):
    dtype = np.result_type(*[a for a in arrays if a is not None])
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"kernels support float32 and float64 arrays, got {dtype}")
    return dtype


# Below this many elements of work a parallel loop costs more than it saves: on a 2-core
# machine shared with other processes, a parallel region must wait until every one of its
# threads has been scheduled (a time slice, milliseconds), while the loop itself takes
# microseconds. Such calls run on the calling thread alone.
SERIAL_BELOW = 1 << 17


class threads_for:
    """Context manager: Numba loops entered inside run on one thread when ``work`` is small.

    ``numba.set_num_threads`` is per calling thread, so this affects no other thread."""

    def __init__(self, work):
        self.serial = work < SERIAL_BELOW

    def __enter__(self):
        if self.serial:
            import numba

            self.previous = numba.get_num_threads()
            if self.previous > 1:
                numba.set_num_threads(1)
            else:
                self.serial = False
        return self

    def __exit__(self, *exc):
        if self.serial:
            import numba

            numba.set_num_threads(self.previous)
        return False
