"""2-D convolution on the CPU: Winograd F(4x4, 3x3) where it applies, im2col + BLAS elsewhere.

Algorithm choice (``choose_algorithm``):

* ``"winograd"`` for float32, 3x3, stride 1, dilation 1, groups 1, padding <= 2, at least
  ``WINOGRAD_MIN_CHANNELS`` input and output channels and ``WINOGRAD_MIN_TILES`` 4x4 output
  tiles: VGG16's 3x3 layers from conv1_2 to conv4_3 (not its 14x14 conv5 block, nor
  AlexNet's 13x13 layers). See ``_winograd.py`` (Lavin & Gray 2016). Its data gradient is
  the same algorithm on gy with the flipped, channel-transposed kernel.
* ``"im2col"`` otherwise: per sample and group one BLAS product (``numpy.matmul``) against
  the column matrix (``_im2col.py``); a 1x1, stride-1, unpadded conv uses the input itself as
  the column matrix. float64 always goes this way: it is the exact path gradient checks use.

The BLAS calls and the Numba loops never run at the same time (each returns before the next
starts). Every GEMM of the forward and data-gradient paths runs as one slice per thread on
single-threaded BLAS (``_gemm.py``: Winograd's 36 products split by product, im2col's by
output rows), so these kernels never wake BLAS's own thread pool, whose idle workers would
then spin for ~0.1 s on a core the next Numba loop needs.
"""

import contextlib

import numpy as np

from . import _common
from . import _im2col
from . import _winograd
from ._gemm import row_split_matmul, single_threaded_blas
from ._workspace import scratch, weight_cache

WINOGRAD_MIN_CHANNELS = 16
# Below this many 4x4 output tiles per call the 36 GEMMs are too narrow for BLAS to run near
# its peak, and their 4x larger transformed kernel costs more memory traffic than im2col's:
# measured here, a 512->512 layer at 14x14 (16 tiles) takes 15 ms by Winograd and 8 ms by
# im2col on one core, while at 28x28 (49 tiles) Winograd wins, 23 ms against 28 ms.
WINOGRAD_MIN_TILES = 40

ALGORITHMS = ("auto", "winograd", "im2col")


def winograd_applies(x_shape, w_shape, stride, padding, dilation, groups, dtype):
    """Whether the Winograd path can compute this convolution (and its data gradient)."""
    return (
        np.dtype(dtype) == np.float32
        and tuple(w_shape[2:]) == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
        and groups == 1
        and padding[0] <= 2
        and padding[1] <= 2
    )


def choose_algorithm(x_shape, w_shape, stride, padding, dilation, groups, dtype):
    """"winograd" where it applies, both channel counts are large enough to amortise the
    tile transforms and there are enough output tiles for efficient GEMMs; "im2col" otherwise."""
    if winograd_applies(x_shape, w_shape, stride, padding, dilation, groups, dtype):
        oh = x_shape[2] + 2 * padding[0] - 2
        ow = x_shape[3] + 2 * padding[1] - 2
        tiles = x_shape[0] * ((oh + 3) // 4) * ((ow + 3) // 4)
        if min(w_shape[0], w_shape[1]) >= WINOGRAD_MIN_CHANNELS and tiles >= WINOGRAD_MIN_TILES:
            return "winograd"
    return "im2col"


def _resolve(algorithm, x_shape, w_shape, stride, padding, dilation, groups, dtype):
    if algorithm == "auto":
        return choose_algorithm(x_shape, w_shape, stride, padding, dilation, groups, dtype)
    if algorithm == "winograd":
        if not winograd_applies(x_shape, w_shape, stride, padding, dilation, groups, dtype):
            raise ValueError(
                "the Winograd path needs float32, a 3x3 kernel, stride 1, dilation 1, groups 1 "
                f"and padding <= 2; got dtype {np.dtype(dtype)}, w shape {tuple(w_shape)}, "
                f"stride {stride}, padding {padding}, dilation {dilation}, groups {groups}"
            )
        return algorithm
    if algorithm == "im2col":
        return algorithm
    raise ValueError(f"unknown convolution algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")


def _is_pointwise(w_shape, stride, padding, dilation):
    return tuple(w_shape[2:]) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


# The column matrix of a whole 224x224 image is large (VGG16's conv1_2: 576 x 50176 floats,
# 115 MB); it is built in blocks of output rows no larger than this.
COLUMN_BLOCK_BYTES = 16 * 2**20


def _row_blocks(c, kh, kw, out_hw, itemsize):
    """Ranges (i0, i1) of output rows whose column block stays under COLUMN_BLOCK_BYTES."""
    oh, ow = out_hw
    rows = max(1, COLUMN_BLOCK_BYTES // max(1, c * kh * kw * ow * itemsize))
    return [(i0, min(oh, i0 + rows)) for i0 in range(0, oh, rows)]


def _columns(x, n, w_shape, stride, padding, dilation, out_hw, i0, i1):
    """The (C*KH*KW, (i1 - i0)*OW) column block of sample n for output rows i0 .. i1 - 1 (a
    view of x for pointwise convs)."""
    c = x.shape[1]
    kh, kw = w_shape[2], w_shape[3]
    ow = out_hw[1]
    if _is_pointwise(w_shape, stride, padding, dilation):
        return x[n].reshape(c, -1)[:, i0 * ow:i1 * ow]
    col = scratch("col", (c * kh * kw, (i1 - i0) * ow), x.dtype)
    with _common.threads_for(col.size):
        _im2col.im2col(x, n, col, kh, kw, stride[0], stride[1], padding[0], padding[1],
                       dilation[0], dilation[1], i0, i1, ow)
    return col


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """2-D cross-correlation, PyTorch's conv2d: y (N, O, OH, OW) from x (N, C, H, W) and
    w (O, C // groups, KH, KW), plus b (O,) unless None.

    y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * xpad[n, g*C/groups + c, i*sh + p*dh, j*sw + q*dw]

    Winograd where ``choose_algorithm`` says so, im2col + BLAS otherwise."""
    return forward(x, w, b, stride, padding, dilation, groups)


def conv2d_backward_data(gy, w, x_shape, stride, padding, dilation, groups):
    """The gradient of sum(gy * conv2d_forward(x, w, None, ...)) with respect to x."""
    return backward_data(gy, w, x_shape, stride, padding, dilation, groups)


def forward(x, w, b, stride, padding, dilation, groups, algorithm="auto"):
    """conv2d_forward with a choice of ``algorithm`` ("auto", "winograd", "im2col"), so that
    tests and benchmarks can force a path."""
    stride, padding, dilation, groups, out_hw = _common.conv_geometry(
        np.shape(x), np.shape(w), stride, padding, dilation, groups)
    dtype = _common.common_dtype(x, w, b)
    x = _common.float_array("x", x, dtype)
    w = _common.float_array("w", w, dtype)
    o = w.shape[0]
    if b is not None:
        b = _common.float_array("b", b, dtype)
        if b.shape != (o,):
            raise ValueError(f"bias must have shape ({o},) for weight shape {w.shape}, got {b.shape}")
    algorithm = _resolve(algorithm, x.shape, w.shape, stride, padding, dilation, groups, dtype)
    if algorithm == "winograd":
        u = weight_cache.get(w, "forward", _winograd.transform_weights)
        return _winograd.conv3x3(x, u, padding[0], padding[1], b)

    n = x.shape[0]
    og = o // groups
    y = np.empty((n, o) + out_hw, dtype)
    w_mat = w.reshape(groups, og, -1)
    blocks = _row_blocks(x.shape[1], w.shape[2], w.shape[3], out_hw, x.itemsize)
    ow = out_hw[1]
    for s in range(n):
        y_s = y[s].reshape(groups, og, -1)
        for i0, i1 in blocks:
            col = _columns(x, s, w.shape, stride, padding, dilation, out_hw, i0, i1)
            col = col.reshape(groups, -1, col.shape[1])
            if len(blocks) == 1:
                row_split_matmul(w_mat, col, y_s)
            else:
                part = scratch("gemm_out", (groups, og, col.shape[2]), dtype)
                y_s[:, :, i0 * ow:i1 * ow] = row_split_matmul(w_mat, col, part)
    if b is not None:
        y += b[:, None, None]
    return y


def backward_data(gy, w, x_shape, stride, padding, dilation, groups, algorithm="auto"):
    """conv2d_backward_data with a choice of ``algorithm`` ("auto", "winograd", "im2col").

    Winograd path: a stride-1 3x3 correlation of gy with padding 2 - p by the kernel flipped
    in both axes with in/out channels swapped. im2col path: per sample and group the column
    gradient W_g^T @ gy_g, scatter-added back by col2im."""
    x_shape = _common.shape4("x_shape", x_shape)
    stride, padding, dilation, groups, out_hw = _common.conv_geometry(
        x_shape, np.shape(w), stride, padding, dilation, groups)
    n, c = x_shape[:2]
    o = np.shape(w)[0]
    _common.check_grad_shape(gy, (n, o) + out_hw)
    dtype = _common.common_dtype(gy, w)
    gy = _common.float_array("gy", gy, dtype)
    w = _common.float_array("w", w, dtype)
    algorithm = _resolve(algorithm, x_shape, w.shape, stride, padding, dilation, groups, dtype)
    if algorithm == "winograd":
        u = weight_cache.get(w, "backward", lambda a: _winograd.transform_weights(_winograd.backward_weights(a)))
        return _winograd.conv3x3(gy, u, 2 - padding[0], 2 - padding[1])

    og = o // groups
    kh, kw = w.shape[2:]
    gx = np.empty(x_shape, dtype)
    w_mat = w.reshape(groups, og, -1).transpose(0, 2, 1)  # (groups, Cg*KH*KW, Og)
    pointwise = _is_pointwise(w.shape, stride, padding, dilation)
    blocks = _row_blocks(c, kh, kw, out_hw, gy.itemsize)
    ow = out_hw[1]
    for s in range(n):
        gy_s = gy[s].reshape(groups, og, -1)
        if pointwise:
            row_split_matmul(w_mat, gy_s, gx[s].reshape(groups, c // groups, -1))
            continue
        for i0, i1 in blocks:
            col = scratch("col", (groups, w_mat.shape[1], (i1 - i0) * ow), dtype)
            row_split_matmul(w_mat, gy_s[:, :, i0 * ow:i1 * ow], col)
            with _common.threads_for(col.size):
                _im2col.col2im(col.reshape(-1, col.shape[2]), gx, s, kh, kw, stride[0], stride[1],
                               padding[0], padding[1], dilation[0], dilation[1], i0, i1, ow, i0 > 0)
    return gx


# conv2d_backward_weight's per-sample GEMMs below this many flops run on one BLAS thread: a
# training batch of small images (N=128, 32 -> 64 channels, 14x14: 128 GEMMs of 7 MFLOP)
# would otherwise wake, split and join BLAS's pool 128 times. On the idle 2-core machine that
# gains nothing over one thread (16.5 ms either way); with one other busy process it cost
# 27 ms against 17.5 ms single-threaded, and under heavy load 87 ms against 32 ms. Larger
# GEMMs use BLAS's own threads.
SMALL_GEMM_FLOPS = 32e6


def conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation, groups):
    """The gradient of sum(gy * conv2d_forward(x, w, None, ...)) with respect to w:
    per group GW_g = sum_n gy_g[n] (Og, OH*OW) @ col_g[n]^T (OH*OW, Cg*KH*KW), one GEMM per
    sample (single-threaded BLAS when small, see SMALL_GEMM_FLOPS)."""
    w_shape = _common.shape4("w_shape", w_shape)
    stride, padding, dilation, groups, out_hw = _common.conv_geometry(
        np.shape(x), w_shape, stride, padding, dilation, groups)
    n = np.shape(x)[0]
    o = w_shape[0]
    _common.check_grad_shape(gy, (n, o) + out_hw)
    dtype = _common.common_dtype(gy, x)
    gy = _common.float_array("gy", gy, dtype)
    x = _common.float_array("x", x, dtype)
    og = o // groups
    gw = np.zeros((groups, og, w_shape[1] * w_shape[2] * w_shape[3]), dtype)
    part = np.empty_like(gw)
    blocks = _row_blocks(np.shape(x)[1], w_shape[2], w_shape[3], out_hw, x.itemsize)
    ow = out_hw[1]
    small = 2 * gw.size * out_hw[0] * out_hw[1] < SMALL_GEMM_FLOPS
    with single_threaded_blas() if small else contextlib.nullcontext():
        for s in range(n):
            gy_s = gy[s].reshape(groups, og, -1)
            for i0, i1 in blocks:
                col = _columns(x, s, w_shape, stride, padding, dilation, out_hw, i0, i1)
                col = col.reshape(groups, -1, col.shape[1])
                np.matmul(gy_s[:, :, i0 * ow:i1 * ow], col.transpose(0, 2, 1), out=part)
                gw += part
    return gw.reshape(w_shape)
