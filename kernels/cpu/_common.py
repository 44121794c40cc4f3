"""Argument checking shared by the Numba kernels' Python entry points.

The jitted loops never check anything (an ``assert`` or a raise inside a ``prange`` body
stops Numba from parallelising it), so every public function validates shapes and geometry
here first and raises ``ValueError`` naming the op, the shapes and the offending argument.
The rules match ``kernels.reference`` exactly: floor-mode output sizes, pool padding at most
half the kernel, weight shape (O, C // groups, KH, KW).
"""

import operator

import numpy as np


def pair(name, value, minimum):
    """Return ``value`` as a pair of Python ints, each at least ``minimum``."""
    try:
        first, second = (operator.index(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of ints (height, width), got {value!r}") from None
    if first < minimum or second < minimum:
        raise ValueError(f"{name} must be >= {minimum} in both dimensions, got {value!r}")
    return first, second


def out_size(size, kernel, stride, padding, dilation=1):
    """Floor-mode output length, as PyTorch computes it with ceil_mode=False."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def shape4(name, shape):
    shape = tuple(operator.index(s) for s in shape)
    if len(shape) != 4:
        raise ValueError(f"{name} must be 4-D (N, C, H, W), got shape {shape}")
    return shape


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


def common_dtype(*arrays):
    dtype = np.result_type(*[a for a in arrays if a is not None])
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"kernels support float32 and float64 arrays, got {dtype}")
    return dtype


def conv_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    """Validate a convolution; return (stride, padding, dilation, groups, (OH, OW))."""
    n, c, h, w = shape4("x", x_shape)
    o, cg, kh, kw = shape4("w", w_shape)
    stride = pair("stride", stride, 1)
    padding = pair("padding", padding, 0)
    dilation = pair("dilation", dilation, 1)
    groups = operator.index(groups)
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if c % groups or o % groups:
        raise ValueError(
            f"input channels ({c}) and output channels ({o}) must both be divisible by "
            f"groups ({groups}); x shape {x_shape}, w shape {w_shape}"
        )
    if cg != c // groups or kh < 1 or kw < 1:
        raise ValueError(
            f"weight shape {w_shape} does not fit input shape {x_shape} with groups={groups}: "
            f"expected w of shape (O, {c // groups}, KH, KW) with KH, KW >= 1"
        )
    oh = out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = out_size(w, kw, stride[1], padding[1], dilation[1])
    if oh < 1 or ow < 1:
        raise ValueError(
            f"convolution output size ({oh}, {ow}) is not positive: input {x_shape}, weight "
            f"{w_shape}, stride {stride}, padding {padding}, dilation {dilation}"
        )
    return stride, padding, dilation, groups, (oh, ow)


def pool_geometry(x_shape, kernel_size, stride, padding):
    """Validate a pooling; return (kernel_size, stride, padding, (OH, OW))."""
    shape4("x", x_shape)
    h, w = x_shape[2], x_shape[3]
    kernel_size = pair("kernel_size", kernel_size, 1)
    stride = pair("stride", stride, 1)
    padding = pair("padding", padding, 0)
    if padding[0] > kernel_size[0] // 2 or padding[1] > kernel_size[1] // 2:
        raise ValueError(
            f"pool padding {padding} must be at most half the kernel size {kernel_size} "
            f"(padding <= kernel_size // 2) so that every window holds a real pixel"
        )
    oh = out_size(h, kernel_size[0], stride[0], padding[0])
    ow = out_size(w, kernel_size[1], stride[1], padding[1])
    if oh < 1 or ow < 1:
        raise ValueError(
            f"pooling output size ({oh}, {ow}) is not positive: input {tuple(x_shape)}, "
            f"kernel_size {kernel_size}, stride {stride}, padding {padding}"
        )
    return kernel_size, stride, padding, (oh, ow)


def check_grad_shape(gy, expected):
    if tuple(gy.shape) != tuple(expected):
        raise ValueError(f"gy has shape {tuple(gy.shape)} but the forward output has shape {tuple(expected)}")


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
