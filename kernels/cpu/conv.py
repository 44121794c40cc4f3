"""2-D convolution on the CPU: Winograd F(4x4, 3x3), a direct micro-kernel, or im2col + BLAS.

Algorithm choice (``choose_algorithm``), from the geometry of *one image* only, so that an
image's result never depends on the batch it comes in:

* ``"winograd"`` for float32, 3x3, stride 1, dilation 1, groups 1, padding <= 2, at least
  ``WINOGRAD_MIN_CHANNELS`` input and output channels and ``WINOGRAD_MIN_TILES`` 4x4 output
  tiles per image: VGG16's conv2_2 to conv4_3. See ``_winograd.py`` (Lavin & Gray 2016).
  Its data gradient is the same algorithm on gy with the flipped, channel-transposed kernel.
  An image holding a NaN or an infinity is recomputed by im2col, which keeps them where
  PyTorch has them. It computes no weight gradient.
* ``"direct"`` for the other float32, stride-1, undilated, ungrouped, non-pointwise layers
  whose output (forward and weight gradient: w's output channels; data gradient: its input
  channels) has at least ``DIRECT_MIN_CHANNELS`` channels: fashion-vgg's layers, VGG16's
  conv1_1 (not its data gradient), conv1_2, conv2_1 and conv5 block, AlexNet's conv2 to
  conv5. A register-blocked FMA micro-kernel reads the padded input in place, with no column
  matrix (``_direct.py``); the data gradient is the same kernel on gy.
* ``"im2col"`` otherwise: per image and group one BLAS product (``numpy.matmul``) against
  the column matrix (``_im2col.py``); a 1x1, stride-1, unpadded conv uses the input itself as
  the column matrix. float64 always goes this way: it is the exact path gradient checks use.

Batch invariance: every GEMM is per image, with a shape fixed by the image's geometry, and
every loop computes an image's outputs from that image alone, so an image's result is
bitwise the same whatever else is in the batch. Ties: the direct path computes every output
pixel by the same chain of FMAs, so bitwise-equal receptive fields give bitwise-equal outputs
by construction. After Winograd or im2col, whose rounding depends on a pixel's position in a
4x4 tile or BLAS micro-tile, output pixels with bitwise-equal receptive fields are given
bitwise-equal outputs by a further step (``_patches.py``; why in ``kernels/patches.py``). Either
way max-pool ties in flat regions break as in exact arithmetic (the first pixel wins, as in
PyTorch).

The BLAS calls and the Numba loops never run at the same time (each returns before the next
starts). Every GEMM of the forward and data-gradient paths runs as one slice per thread on
single-threaded BLAS (``_gemm.py``: Winograd's 36 products per image split by product,
im2col's by output rows), so these kernels never wake BLAS's own thread pool, whose idle
workers would then spin for ~0.1 s on a core the next Numba loop needs.
"""

import numpy as np

from . import _common
from . import _direct
from . import _im2col
from . import _patches
from . import _winograd
from .elementwise import bias_relu_inplace, relu_backward
from ._gemm import reduction_split_matmul, row_split_matmul
from ._workspace import scratch, weight_cache

# Winograd does 2.25x fewer multiplications than the direct path but runs 36 narrow GEMMs and
# needs the equal-fields step after it; it wins only on wide layers with many 4x4 output
# tiles. Measured here per VGG16 layer, batch 1, 2 threads (ms, forward + data gradient,
# direct / Winograd): 64->64 at 224 23.9 / 27.5, 64->128 at 112 11.3 / 14.6, 128->128 at 112
# 20.1 / 18.9, 256->256 at 56 21.1 / 14.1, 512->512 at 28 25.1 / 15.5, 512->512 at 14
# 7.8 / 7.8; AlexNet's 13x13 layers 1.6-2.5 / 2.3-3.5.
WINOGRAD_MIN_CHANNELS = 128
WINOGRAD_MIN_TILES = 49

# The direct path computes its panels of output channels whole (8 on AVX-512): below this many
# output channels most of each panel is padding, and im2col + BLAS is faster. Measured at 2
# threads (ms, direct / im2col): the data gradient of a 1-channel 28x28 input (batch 128)
# 4.4 / 1.3, of VGG16's 3-channel conv1_1 6.3 / 2.9; forward into 32 channels 1.4 / 1.6.
DIRECT_MIN_CHANNELS = 16

ALGORITHMS = ("auto", "winograd", "direct", "im2col")


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


def choose_algorithm(x_shape, w_shape, stride, padding, dilation, groups, dtype, direction="forward"):
    """The algorithm for ``direction`` ("forward", "data" or "weight" gradient): "winograd"
    (not for the weight gradient) where it applies, both channel counts are large enough to
    amortise the tile transforms and one image has enough 4x4 output tiles for wide GEMMs;
    else "direct" where it applies to a non-pointwise kernel and the direction's output
    channels (forward and weight: w's output channels; data: its input channels) number at
    least ``DIRECT_MIN_CHANNELS``; "im2col" otherwise. The batch size is not looked at."""
    if direction != "weight" and winograd_applies(x_shape, w_shape, stride, padding, dilation, groups, dtype):
        oh = x_shape[2] + 2 * padding[0] - 2
        ow = x_shape[3] + 2 * padding[1] - 2
        tiles = ((oh + 3) // 4) * ((ow + 3) // 4)
        if min(w_shape[0], w_shape[1]) >= WINOGRAD_MIN_CHANNELS and tiles >= WINOGRAD_MIN_TILES:
            return "winograd"
    out_channels = w_shape[1] if direction == "data" else w_shape[0]
    if (_direct.applies(w_shape, stride, padding, dilation, groups, dtype) and out_channels >= DIRECT_MIN_CHANNELS
            and not _is_pointwise(w_shape, stride, padding, dilation)):
        return "direct"
    return "im2col"


def _resolve(algorithm, x_shape, w_shape, stride, padding, dilation, groups, dtype, direction="forward"):
    if algorithm == "auto":
        return choose_algorithm(x_shape, w_shape, stride, padding, dilation, groups, dtype, direction)
    if algorithm == "winograd":
        if direction == "weight":
            raise ValueError("the Winograd path computes no weight gradient; choose 'direct' or 'im2col'")
        if not winograd_applies(x_shape, w_shape, stride, padding, dilation, groups, dtype):
            raise ValueError(
                "the Winograd path needs float32, a 3x3 kernel, stride 1, dilation 1, groups 1 "
                f"and padding <= 2; got dtype {np.dtype(dtype)}, w shape {tuple(w_shape)}, "
                f"stride {stride}, padding {padding}, dilation {dilation}, groups {groups}"
            )
        return algorithm
    if algorithm == "direct":
        if not _direct.applies(w_shape, stride, padding, dilation, groups, dtype):
            raise ValueError(
                "the direct path needs float32, stride 1, dilation 1, groups 1 and padding smaller "
                f"than the kernel; got dtype {np.dtype(dtype)}, w shape {tuple(w_shape)}, "
                f"stride {stride}, padding {padding}, dilation {dilation}, groups {groups}"
            )
        return algorithm
    if algorithm == "im2col":
        return algorithm
    raise ValueError(f"unknown convolution algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")


def _is_pointwise(w_shape, stride, padding, dilation):
    return tuple(w_shape[2:]) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0)


# The column matrix of a whole 224x224 image is large (VGG16's conv1_2: 576 x 50176 floats,
# 115 MB); it is built in blocks no larger than this: several small images at once, or one
# large image a few output rows at a time.
COLUMN_BLOCK_BYTES = 16 * 2**20


def _blocks(n, c, kh, kw, out_hw, itemsize, pointwise):
    """Ranges (n0, n1, i0, i1): samples n0 .. n1 - 1, output rows i0 .. i1 - 1, whose column
    matrices together stay under COLUMN_BLOCK_BYTES. A sample's rows are cut the same way in
    any batch, so its GEMMs have the same shapes in any batch."""
    oh, ow = out_hw
    if pointwise:  # the input is its own column matrix: nothing to build
        return [(0, n, 0, oh)]
    row_bytes = max(1, c * kh * kw * ow * itemsize)
    if row_bytes * oh <= COLUMN_BLOCK_BYTES:
        step = max(1, COLUMN_BLOCK_BYTES // (row_bytes * oh))
        return [(n0, min(n, n0 + step), 0, oh) for n0 in range(0, n, step)]
    rows = max(1, COLUMN_BLOCK_BYTES // row_bytes)
    return [(s, s + 1, i0, min(oh, i0 + rows)) for s in range(n) for i0 in range(0, oh, rows)]


def _columns(x, block, w_shape, stride, padding, dilation, out_hw, groups):
    """The column matrices of a block (``_blocks``), (S, groups, Cg*KH*KW, (i1 - i0)*OW): a
    view of x for pointwise convs, else a scratch buffer filled by im2col."""
    n0, n1, i0, i1 = block
    c = x.shape[1]
    kh, kw = w_shape[2], w_shape[3]
    ow = out_hw[1]
    if _is_pointwise(w_shape, stride, padding, dilation):
        return x[n0:n1].reshape(n1 - n0, groups, c // groups, -1)[..., i0 * ow:i1 * ow]
    col = scratch("col", (n1 - n0, c * kh * kw, (i1 - i0) * ow), x.dtype)
    with _common.threads_for(col.size):
        _im2col.im2col(x, n0, col, kh, kw, stride[0], stride[1], padding[0], padding[1],
                       dilation[0], dilation[1], i0, i1, ow)
    return col.reshape(n1 - n0, groups, -1, col.shape[2])


def conv2d_forward(x, w, b, stride, padding, dilation, groups, relu=False):
    """2-D cross-correlation, PyTorch's conv2d: y (N, O, OH, OW) from x (N, C, H, W) and
    w (O, C // groups, KH, KW), plus b (O,) unless None, then max(y, 0) if ``relu``.

    y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * xpad[n, g*C/groups + c, i*sh + p*dh, j*sw + q*dw]

    Winograd where ``choose_algorithm`` says so, im2col + BLAS otherwise; bias and ReLU are
    applied in the same pass that writes y."""
    return forward(x, w, b, stride, padding, dilation, groups, relu)


def conv2d_backward_data(gy, w, x_shape, stride, padding, dilation, groups, relu_mask=None, relu_rule=None):
    """The gradient of sum(gy * conv2d_forward(x, w, None, ...)) with respect to x; with
    ``relu_rule``, of the ReLU'd convolution (gy first through ``relu_backward(gy, relu_mask,
    relu_rule)``, in the same pass that reads it on the Winograd path)."""
    return backward_data(gy, w, x_shape, stride, padding, dilation, groups, relu_mask=relu_mask, relu_rule=relu_rule)


def _winograd_weights(w, kind):
    """The transformed kernel for ``kind`` ("forward" or "backward"), or None when w holds a
    NaN or an infinity (the transform would spread it over every tap; im2col is used)."""
    def make(a):
        if not np.isfinite(a).all():
            return None
        return _winograd.transform_weights(a if kind == "forward" else _common.data_gradient_kernel(a))

    return weight_cache.get(w, kind, make)


def forward(x, w, b, stride, padding, dilation, groups, relu=False, algorithm="auto", share=True):
    """conv2d_forward with a choice of ``algorithm`` ("auto", "winograd", "direct", "im2col"),
    so that tests and benchmarks can force a path; ``share=False`` skips giving equal receptive
    fields equal outputs after Winograd or im2col (only to measure what that step costs; the
    direct path needs no such step)."""
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
    if algorithm == "direct":  # equal receptive fields give equal outputs by construction
        return _direct.convolve(x, _direct.packed_weights(w, "forward"), o, w.shape[2:], padding, b, relu)
    u = _winograd_weights(w, "forward") if algorithm == "winograd" else None
    if u is not None:
        y, redo = _winograd.conv3x3(x, u, padding[0], padding[1], b, relu)
        for n in np.flatnonzero(redo):
            y[n:n + 1] = _im2col_forward(x[n:n + 1], w, b, stride, padding, dilation, groups, out_hw, relu)
    else:
        y = _im2col_forward(x, w, b, stride, padding, dilation, groups, out_hw, relu)
    if share:
        _share_equal_outputs(y, x, w.shape[2:], stride, padding, dilation, groups)
    return y


def _share_equal_outputs(y, x, kernel_hw, stride, padding, dilation, groups):
    """Give output pixels with bitwise-equal receptive fields bitwise-equal values (in place)."""
    n, c, h, w = x.shape
    oh, ow = y.shape[2:]
    words = x.reshape(n, c, h * w).view(np.uint32 if x.itemsize == 4 else np.uint64)
    empty = _patches.has_empty_fields((h, w), tuple(kernel_hw), tuple(stride), tuple(padding), tuple(dilation),
                                      (oh, ow))
    with _common.threads_for(n * max(c * h * w, oh * ow * kernel_hw[0] * kernel_hw[1])):  # pixels or taps hashed
        _patches.share_equal_outputs(words, y.reshape(n, y.shape[1], oh * ow), groups, h, w, *kernel_hw,
                                     *stride, *padding, *dilation, oh, ow, empty)


def _im2col_forward(x, w, b, stride, padding, dilation, groups, out_hw, relu):
    n, o = x.shape[0], w.shape[0]
    og = o // groups
    y = np.empty((n, o) + out_hw, x.dtype)
    y_g = y.reshape(n, groups, og, -1)
    w_mat = w.reshape(groups, og, -1)
    ow = out_hw[1]
    pointwise = _is_pointwise(w.shape, stride, padding, dilation)
    for block in _blocks(n, x.shape[1], w.shape[2], w.shape[3], out_hw, x.itemsize, pointwise):
        n0, n1, i0, i1 = block
        col = _columns(x, block, w.shape, stride, padding, dilation, out_hw, groups)
        if (i0, i1) == (0, out_hw[0]):
            row_split_matmul(w_mat, col, y_g[n0:n1])
        else:
            part = scratch("gemm_out", (1, groups, og, col.shape[3]), x.dtype)
            y_g[n0:n1, :, :, i0 * ow:i1 * ow] = row_split_matmul(w_mat, col, part)
    if relu:
        bias_relu_inplace(y, b)
    elif b is not None:
        y += b[:, None, None]
    return y


def backward_data(gy, w, x_shape, stride, padding, dilation, groups, algorithm="auto", relu_mask=None,
                  relu_rule=None):
    """conv2d_backward_data with a choice of ``algorithm`` ("auto", "winograd", "direct",
    "im2col").

    Direct path: the ReLU rule first, then the same micro-kernel convolution of gy by the
    flipped, channel-swapped kernel, padded by KH-1-ph and KW-1-pw. Winograd path: a stride-1
    3x3 correlation of gy with padding 2 - p by the flipped, channel-swapped kernel, the ReLU
    rule applied as gy is read (images whose gy holds a NaN or an infinity go the im2col way).
    im2col path: the ReLU rule first, then per image and group the column gradient
    W_g^T @ gy_g, scatter-added back by col2im."""
    x_shape = _common.shape4("x_shape", x_shape)
    stride, padding, dilation, groups, out_hw = _common.conv_geometry(
        x_shape, np.shape(w), stride, padding, dilation, groups)
    n, c = x_shape[:2]
    o = np.shape(w)[0]
    _common.check_grad_shape(gy, (n, o) + out_hw)
    dtype = _common.common_dtype(gy, w)
    gy = _common.float_array("gy", gy, dtype)
    w = _common.float_array("w", w, dtype)
    code = _common.relu_rule_code(relu_rule, relu_mask, gy.shape)
    algorithm = _resolve(algorithm, x_shape, w.shape, stride, padding, dilation, groups, dtype, "data")
    if algorithm == "direct":
        if code >= 0:
            gy = relu_backward(gy, relu_mask, relu_rule)
        flipped = (w.shape[2] - 1 - padding[0], w.shape[3] - 1 - padding[1])
        return _direct.convolve(gy, _direct.packed_weights(w, "backward"), c, w.shape[2:], flipped)
    u = _winograd_weights(w, "backward") if algorithm == "winograd" else None
    if u is None:
        if code >= 0:
            gy = relu_backward(gy, relu_mask, relu_rule)
        return _im2col_backward_data(gy, w, x_shape, stride, padding, dilation, groups, out_hw)
    mask = np.ascontiguousarray(relu_mask, dtype=np.bool_) if code in (0, 2) else None
    gx, redo = _winograd.conv3x3(gy, u, 2 - padding[0], 2 - padding[1], relu_mask=mask, relu_rule=code)
    for s in np.flatnonzero(redo):
        g = gy[s:s + 1] if code < 0 else relu_backward(gy[s:s + 1], None if mask is None else mask[s:s + 1], relu_rule)
        gx[s:s + 1] = _im2col_backward_data(g, w, (1,) + tuple(x_shape[1:]), stride, padding, dilation, groups, out_hw)
    return gx


def _im2col_backward_data(gy, w, x_shape, stride, padding, dilation, groups, out_hw):
    n, c = x_shape[:2]
    o = w.shape[0]
    og = o // groups
    kh, kw = w.shape[2:]
    gx = np.empty(x_shape, gy.dtype)
    w_mat = w.reshape(groups, og, -1).transpose(0, 2, 1)  # (groups, Cg*KH*KW, Og)
    gy_g = gy.reshape(n, groups, og, -1)
    pointwise = _is_pointwise(w.shape, stride, padding, dilation)
    ow = out_hw[1]
    for n0, n1, i0, i1 in _blocks(n, c, kh, kw, out_hw, gy.itemsize, pointwise):
        gy_s = gy_g[n0:n1, :, :, i0 * ow:i1 * ow]
        if pointwise:
            row_split_matmul(w_mat, gy_s, gx[n0:n1].reshape(n1 - n0, groups, c // groups, -1))
            continue
        col = scratch("col", (n1 - n0, groups, w_mat.shape[1], (i1 - i0) * ow), gy.dtype)
        row_split_matmul(w_mat, gy_s, col)
        with _common.threads_for(col.size):
            _im2col.col2im(col.reshape(n1 - n0, -1, col.shape[3]), gx, n0, kh, kw, stride[0], stride[1],
                           padding[0], padding[1], dilation[0], dilation[1], i0, i1, ow, i0 > 0)
    return gx


def conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation, groups):
    """The gradient of sum(gy * conv2d_forward(x, w, None, ...)) with respect to w."""
    return backward_weight(gy, x, w_shape, stride, padding, dilation, groups)


def backward_weight(gy, x, w_shape, stride, padding, dilation, groups, algorithm="auto"):
    """conv2d_backward_weight with a choice of ``algorithm`` ("auto", "direct", "im2col").

    direct: ``_direct.weight_grad``. im2col: per block of samples, GW_g += GY_g (Og, S*L) @
    COL_g^T (S*L, Cg*KH*KW), with the column matrices of all the block's samples side by side
    (a sum over the batch needs no per-sample product:
    one wide GEMM is several times faster than S narrow ones and their sum). The summed axis
    S*L is what the threads share out (``reduction_split_matmul``): every thread gets a
    product of the full output shape, which BLAS runs near its peak, where cutting the few
    output rows would not (64 x 288 from 25,088 terms, fashion-vgg's conv2 at batch 128:
    5.2 ms per thread for half the rows, 3.5 ms for half the terms)."""
    w_shape = _common.shape4("w_shape", w_shape)
    stride, padding, dilation, groups, out_hw = _common.conv_geometry(
        np.shape(x), w_shape, stride, padding, dilation, groups)
    n, c = np.shape(x)[:2]
    o = w_shape[0]
    _common.check_grad_shape(gy, (n, o) + out_hw)
    dtype = _common.common_dtype(gy, x)
    gy = _common.float_array("gy", gy, dtype)
    x = _common.float_array("x", x, dtype)
    algorithm = _resolve(algorithm, x.shape, w_shape, stride, padding, dilation, groups, dtype, "weight")
    if algorithm == "direct":
        return _direct.weight_grad(gy, x, w_shape, padding)
    og, kh, kw = o // groups, w_shape[2], w_shape[3]
    k = w_shape[1] * kh * kw
    gw = np.zeros((groups, og, k), dtype)
    ow = out_hw[1]
    pointwise = _is_pointwise(w_shape, stride, padding, dilation)
    for n0, n1, i0, i1 in _blocks(n, c, kh, kw, out_hw, x.itemsize, False):
        length = (i1 - i0) * ow
        # copies into scratch: fresh arrays of this size would page-fault on every call
        gy_t = scratch("gy_t", (o, n1 - n0, length), dtype)
        with _common.threads_for(gy_t.size):
            _im2col.side_by_side(gy[n0:n1].reshape(n1 - n0, o, -1)[:, :, i0 * ow:i1 * ow], gy_t)
        if pointwise:
            col = scratch("col", (c, n1 - n0, length), dtype)
            with _common.threads_for(col.size):
                _im2col.side_by_side(x[n0:n1].reshape(n1 - n0, c, -1)[:, :, i0 * ow:i1 * ow], col)
        else:
            col = scratch("col", (c * kh * kw, n1 - n0, length), dtype)
            with _common.threads_for(col.size):
                _im2col.im2col(x, n0, col, kh, kw, stride[0], stride[1], padding[0], padding[1],
                               dilation[0], dilation[1], i0, i1, ow, True)
        gw += reduction_split_matmul(gy_t.reshape(groups, og, -1), col.reshape(groups, k, -1))
    return gw.reshape(w_shape)
