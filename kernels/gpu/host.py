"""Host-side half of the GPU backend: shapes, checks, launches and GEMMs around the .cu kernels.

Every function of the kernel contract (see ``kernels/__init__.py``) is written here once,
against a small *runtime* object instead of against CuPy directly:

``rt.xp``
    the array module (``cupy`` on a GPU; ``numpy`` under the CPU emulation harness);
``rt.launch(name, grid, block, args)``
    run the CUDA entry point ``name`` (e.g. ``"im2col_f32"``) over a 1-D grid;
``rt.block``, ``rt.max_blocks``
    the launch geometry policy (threads per block, and the grid-size cap above which the
    kernels' grid-stride loops take over);
``rt.col_budget_bytes``
    how large one im2col buffer may grow before a convolution is split into chunks of images.

``kernels.gpu`` binds these functions to a CuPy runtime (``cupy.RawModule`` over the .cu
files beside this one). ``tests/kernels/cuda_emulation.py`` binds the very same functions
to a runtime that compiles the same .cu files with the host C++ compiler and runs them on
NumPy buffers, so the parity tests exercise this orchestration as well as the kernels.
That is also why this module imports nothing but NumPy and the standard library and uses
no package-relative imports: the harness loads it by path on machines without CuPy (where
importing the ``kernels.gpu`` package itself raises ImportError).

Conventions shared with the .cu sources: every entry point exists as ``<name>_f32`` and
``<name>_f64``; element counts are passed as ``long long`` (``numpy.int64``), geometry as
``int`` (``numpy.int32``) and float parameters in the arrays' own dtype, because a raw
kernel call passes each argument with exactly the width of its NumPy type. Every kernel
writes each element of its output exactly once and never reads it, so outputs are
allocated with ``empty``.
"""

import functools
import os
import re
import types

import numpy as np

from kernels import CONTRACT
from kernels.geometry import argmax_dtype, check_argmax, conv_geometry, lrn_size, pool_geometry, relu_rule_code, shape4
from kernels.patches import share_equal_outputs

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCES = ("activation.cu", "conv.cu", "lrn.cu", "pool.cu")
NVRTC_OPTIONS = ("-std=c++17",)  # what kernels.gpu passes to cupy.RawModule (CuPy's own default)


RELU_RULES = {"standard": 0, "deconvnet": 1, "guided": 2}  # the RELU_RULE_* codes of activation.cu
_INDEX_SUFFIX = {np.dtype(np.uint8): "u8", np.dtype(np.uint16): "u16", np.dtype(np.int32): "i32",
                 np.dtype(np.int64): "i64"}  # pool.cu's max-pool entry points per argmax type

_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_ENTRY_POINT = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')


# ----------------------------------------------------------------------------------------
# sources and launches


def read_source(name):
    """The text of one of the .cu files in ``SOURCES``."""
    with open(os.path.join(SOURCE_DIR, name), encoding="utf-8") as handle:
        return handle.read()


def entry_points(source):
    """The ``extern "C" __global__`` functions of a CUDA source: [(name, parameter text)]."""
    return [(match.group(1), " ".join(match.group(2).split())) for match in _ENTRY_POINT.finditer(source)]


def launch_config(total, block, max_blocks):
    """(grid, block) for ``total`` elements: one thread per element up to ``max_blocks``
    blocks; past that the kernels' grid-stride loops give each thread several elements."""
    blocks = min(-(-total // block), max_blocks)
    return max(blocks, 1), block


def _launch(rt, name, dtype, total, *args):
    """Launch ``<name>_<f32|f64>`` over ``total`` elements (nothing to do when it is 0:
    CUDA rejects an empty grid)."""
    if total == 0:
        return
    grid, block = launch_config(total, rt.block, rt.max_blocks)
    rt.launch(f"{name}_{_SUFFIX[np.dtype(dtype)]}", grid, block, (*args,))


def bind(rt):
    """A namespace holding every contract function with ``rt`` bound as its runtime."""
    return types.SimpleNamespace(**{name: functools.partial(globals()[name], rt) for name in CONTRACT})


# ----------------------------------------------------------------------------------------
# argument checks


def _i32(value):
    return np.int32(value)


def _i64(value):
    return np.int64(value)


def _float_dtype(*arrays):
    """The common dtype of the arrays (NumPy promotion); it must be float32 or float64."""
    dtype = np.result_type(*[a.dtype for a in arrays if a is not None])
    if dtype not in _SUFFIX:
        raise TypeError(f"GPU kernels take float32 or float64 arrays, got {dtype}")
    return dtype


def _prepared(xp, array, dtype):
    """``array`` as a C-contiguous array of ``dtype`` (raw kernels ignore strides)."""
    return xp.ascontiguousarray(array.astype(dtype, copy=False))


def _check_shape(name, array, expected):
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(array.shape)}, expected {tuple(expected)}")


# ----------------------------------------------------------------------------------------
# convolution: im2col / col2im kernels around batched GEMMs


def _image_chunks(rt, n, bytes_per_image):
    """Split n images into runs whose im2col buffer stays within ``rt.col_budget_bytes``."""
    step = max(1, min(n, rt.col_budget_bytes // max(bytes_per_image, 1)))
    return [(start, min(start + step, n)) for start in range(0, n, step)]


def _is_pointwise(kernel_hw, stride, padding):
    """A 1x1 kernel at stride 1 without padding: im2col is the identity and is skipped."""
    return kernel_hw == (1, 1) and stride == (1, 1) and padding == (0, 0)


def _columns(rt, x, kernel_hw, stride, padding, dilation, out_hw, groups):
    """im2col of a run of images x (nb, C, H, W), viewed as (nb, G, K, L) for the GEMM."""
    nb, c, h, w = x.shape
    (kh, kw), (oh, ow) = kernel_hw, out_hw
    shape = (nb, groups, (c // groups) * kh * kw, oh * ow)
    if _is_pointwise(kernel_hw, stride, padding):
        return x.reshape(shape)
    col = rt.xp.empty((nb, c, kh, kw, oh, ow), dtype=x.dtype)
    _launch(rt, "im2col", x.dtype, col.size, x, col, _i64(col.size), _i32(h), _i32(w), _i32(kh), _i32(kw),
            _i32(oh), _i32(ow), _i32(stride[0]), _i32(stride[1]), _i32(padding[0]), _i32(padding[1]),
            _i32(dilation[0]), _i32(dilation[1]))
    return col.reshape(shape)


def conv2d_forward(rt, x, w, b, stride, padding, dilation, groups, relu=False):
    """y = conv2d(x, w) + b (then max(y, 0) if ``relu``): per run of images the im2col kernel,
    then one GEMM ``w (G, Og, K) @ col (G, K, L)`` per image, whose result is already NCHW;
    the bias (and ReLU) is one elementwise kernel. One GEMM per image keeps an image's result
    independent of its batch; output pixels with equal receptive fields then share one value
    (``kernels.patches``)."""
    xp = rt.xp
    stride, padding, dilation, groups, (oh, ow) = conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    dtype = _float_dtype(x, w, b)
    x, w = _prepared(xp, x, dtype), _prepared(xp, w, dtype)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if b is not None:
        _check_shape("bias", b, (o,))
    y = xp.empty((n, o, oh, ow), dtype=dtype)
    wg = w.reshape(groups, o // groups, cg * kh * kw)
    for start, stop in _image_chunks(rt, n, c * kh * kw * oh * ow * dtype.itemsize):
        col = _columns(rt, x[start:stop], (kh, kw), stride, padding, dilation, (oh, ow), groups)
        for i in range(stop - start):
            y[start + i] = xp.matmul(wg, col[i]).reshape(o, oh, ow)
    if relu:
        y = bias_relu_forward(rt, y, xp.zeros(o, dtype=dtype) if b is None else b)
    elif b is not None:
        y += _prepared(xp, b, dtype).reshape(1, o, 1, 1)
    return share_equal_outputs(xp, y, x, (kh, kw), stride, padding, dilation, groups)


def conv2d_backward_data(rt, gy, w, x_shape, stride, padding, dilation, groups, relu_mask=None, relu_rule=None):
    """gx: per image the GEMM ``w^T (G, K, Og) @ gy (G, Og, L)`` gives the columns' gradient,
    and per run of images the col2im gather kernel folds it back onto the image. With
    ``relu_rule`` gy first goes through the ReLU backward kernel (the fused conv + ReLU)."""
    xp = rt.xp
    x_shape = shape4("x_shape", x_shape)
    stride, padding, dilation, groups, (oh, ow) = conv_geometry(x_shape, w.shape, stride, padding, dilation, groups)
    if relu_rule_code(relu_rule, relu_mask, gy.shape) >= 0:
        gy = relu_backward(rt, gy, relu_mask, relu_rule)
    dtype = _float_dtype(gy, w)
    gy, w = _prepared(xp, gy, dtype), _prepared(xp, w, dtype)
    n, c, h, wd = x_shape
    o, cg, kh, kw = w.shape
    og, k, length = o // groups, cg * kh * kw, oh * ow
    _check_shape("gy", gy, (n, o, oh, ow))
    gx = xp.empty(x_shape, dtype=dtype)
    wt = w.reshape(groups, og, k).transpose(0, 2, 1)
    for start, stop in _image_chunks(rt, n, c * kh * kw * length * dtype.itemsize):
        nb = stop - start
        gcol = xp.empty((nb, groups, k, length), dtype=dtype)
        for i in range(nb):
            gcol[i] = xp.matmul(wt, gy[start + i].reshape(groups, og, length))
        if _is_pointwise((kh, kw), stride, padding):
            gx[start:stop] = gcol.reshape(nb, c, h, wd)
            continue
        _launch(rt, "col2im", dtype, nb * c * h * wd, gcol, gx[start:stop], _i64(nb * c * h * wd), _i32(h),
                _i32(wd), _i32(kh), _i32(kw), _i32(oh), _i32(ow), _i32(stride[0]), _i32(stride[1]),
                _i32(padding[0]), _i32(padding[1]), _i32(dilation[0]), _i32(dilation[1]))
    return gx


def conv2d_backward_weight(rt, gy, x, w_shape, stride, padding, dilation, groups):
    """gw: per run of images, im2col again (the columns are recomputed, never stored by
    the forward pass) and the batched GEMM ``gy (nb, G, Og, L) @ col^T (nb, G, L, K)``,
    summed over the images."""
    xp = rt.xp
    w_shape = shape4("w_shape", w_shape)
    stride, padding, dilation, groups, (oh, ow) = conv_geometry(x.shape, w_shape, stride, padding, dilation, groups)
    dtype = _float_dtype(gy, x)
    gy, x = _prepared(xp, gy, dtype), _prepared(xp, x, dtype)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w_shape
    og = o // groups
    _check_shape("gy", gy, (n, o, oh, ow))
    gw = xp.zeros((groups, og, cg * kh * kw), dtype=dtype)
    for start, stop in _image_chunks(rt, n, c * kh * kw * oh * ow * dtype.itemsize):
        col = _columns(rt, x[start:stop], (kh, kw), stride, padding, dilation, (oh, ow), groups)
        gy_run = gy[start:stop].reshape(stop - start, groups, og, oh * ow)
        gw += xp.matmul(gy_run, col.transpose(0, 1, 3, 2)).sum(axis=0)
    return gw.reshape(w_shape)


# ----------------------------------------------------------------------------------------
# elementwise


def bias_relu_forward(rt, x, b):
    """y = max(x + b[None, :, None, None], 0) in one kernel launch."""
    xp = rt.xp
    n, c, h, w = shape4("x", x.shape)
    _check_shape("bias", b, (c,))
    dtype = _float_dtype(x, b)
    x, b = _prepared(xp, x, dtype), _prepared(xp, b, dtype)
    y = xp.empty(x.shape, dtype=dtype)
    _launch(rt, "bias_relu_forward", dtype, y.size, x, b, y, _i64(y.size), _i32(c), _i32(h * w))
    return y


def relu_forward(rt, x):
    """y = max(x, 0)."""
    xp = rt.xp
    dtype = _float_dtype(x)
    x = _prepared(xp, x, dtype)
    y = xp.empty(x.shape, dtype=dtype)
    _launch(rt, "relu_forward", dtype, y.size, x, y, _i64(y.size))
    return y


def relu_backward(rt, gy, x, rule):
    """gx under rule "standard" (x not <= 0), "deconvnet" (gy not <= 0) or "guided" (both).

    x is the forward input, output or boolean mask (sent to the kernel as 0/1 values of gy's
    type). Under "deconvnet" x is never read (it may have any shape), so gy is passed in its
    place."""
    xp = rt.xp
    if rule not in RELU_RULES:
        raise ValueError(f"unknown ReLU backward rule {rule!r}; valid rules are {', '.join(RELU_RULES)}")
    if rule == "deconvnet":
        dtype = _float_dtype(gy)
        gy = _prepared(xp, gy, dtype)
        x = gy
    else:
        _check_shape("x", x, gy.shape)
        dtype = _float_dtype(gy) if x.dtype == np.bool_ else _float_dtype(gy, x)
        gy, x = _prepared(xp, gy, dtype), _prepared(xp, x, dtype)
    gx = xp.empty(gy.shape, dtype=dtype)
    _launch(rt, "relu_backward", dtype, gx.size, gy, x, gx, _i64(gx.size), _i32(RELU_RULES[rule]))
    return gx


# ----------------------------------------------------------------------------------------
# pooling


def _pool_args(x_shape, out_hw, kernel_size, stride, padding):
    """The geometry arguments shared by the four pooling kernels, as C ints."""
    return (_i32(x_shape[2]), _i32(x_shape[3]), _i32(out_hw[0]), _i32(out_hw[1]), _i32(kernel_size[0]),
            _i32(kernel_size[1]), _i32(stride[0]), _i32(stride[1]), _i32(padding[0]), _i32(padding[1]))


def max_pool2d_forward(rt, x, kernel_size, stride, padding):
    """(y, argmax): window maxima and the flat in-plane index h*W + w of each winner, in
    ``argmax_dtype(H, W)`` (first maximum in row-major window order; padding never wins; a
    NaN wins, the last one, as in PyTorch)."""
    xp = rt.xp
    kernel_size, stride, padding, out_hw = pool_geometry(x.shape, kernel_size, stride, padding)
    dtype = _float_dtype(x)
    x = _prepared(xp, x, dtype)
    n, c, h, w = x.shape
    y = xp.empty((n, c) + out_hw, dtype=dtype)
    index = argmax_dtype(h, w)
    argmax = xp.empty(y.shape, dtype=index)
    _launch(rt, f"max_pool2d_forward_{_INDEX_SUFFIX[index]}", dtype, y.size, x, y, argmax, _i64(y.size),
            *_pool_args(x.shape, out_hw, kernel_size, stride, padding))
    return y, argmax


def max_pool2d_backward(rt, gy, argmax, x_shape, kernel_size, stride, padding):
    """gx: each input pixel gathers gy from the windows whose argmax points at it.

    An argmax entry outside its plane simply matches no pixel (the gather never indexes
    with it), so it cannot corrupt memory; it is not checked, which would cost a sync."""
    xp = rt.xp
    x_shape = shape4("x_shape", x_shape)
    kernel_size, stride, padding, out_hw = pool_geometry(x_shape, kernel_size, stride, padding)
    dtype = _float_dtype(gy)
    _check_shape("gy", gy, x_shape[:2] + out_hw)
    check_argmax(argmax, gy.shape, x_shape[2:], check_range=False)
    index = argmax.dtype if argmax.dtype in _INDEX_SUFFIX else np.dtype(np.int64)
    gy, argmax = _prepared(xp, gy, dtype), _prepared(xp, argmax, index)
    gx = xp.empty(x_shape, dtype=dtype)
    _launch(rt, f"max_pool2d_backward_{_INDEX_SUFFIX[index]}", dtype, gx.size, gy, argmax, gx, _i64(gx.size),
            *_pool_args(x_shape, out_hw, kernel_size, stride, padding))
    return gx


def avg_pool2d_forward(rt, x, kernel_size, stride, padding, count_include_pad):
    """Window means; the divisor is KH*KW if count_include_pad, else the real pixel count."""
    xp = rt.xp
    kernel_size, stride, padding, out_hw = pool_geometry(x.shape, kernel_size, stride, padding)
    dtype = _float_dtype(x)
    x = _prepared(xp, x, dtype)
    y = xp.empty(x.shape[:2] + out_hw, dtype=dtype)
    _launch(rt, "avg_pool2d_forward", dtype, y.size, x, y, _i64(y.size),
            *_pool_args(x.shape, out_hw, kernel_size, stride, padding), _i32(bool(count_include_pad)))
    return y


def avg_pool2d_backward(rt, gy, x_shape, kernel_size, stride, padding, count_include_pad):
    """gx: each input pixel gathers gy / divisor from every window that contains it."""
    xp = rt.xp
    x_shape = shape4("x_shape", x_shape)
    kernel_size, stride, padding, out_hw = pool_geometry(x_shape, kernel_size, stride, padding)
    dtype = _float_dtype(gy)
    _check_shape("gy", gy, x_shape[:2] + out_hw)
    gy = _prepared(xp, gy, dtype)
    gx = xp.empty(x_shape, dtype=dtype)
    _launch(rt, "avg_pool2d_backward", dtype, gx.size, gy, gx, _i64(gx.size),
            *_pool_args(x_shape, out_hw, kernel_size, stride, padding), _i32(bool(count_include_pad)))
    return gx


# ----------------------------------------------------------------------------------------
# local response normalization


def lrn_forward(rt, x, size, alpha, beta, k):
    """y = x * d**(-beta), d = k + alpha/size * (sum of x**2 over the channel window)."""
    xp = rt.xp
    size = lrn_size(x.shape, size)
    dtype = _float_dtype(x)
    x = _prepared(xp, x, dtype)
    n, c, h, w = x.shape
    y = xp.empty(x.shape, dtype=dtype)
    t = dtype.type
    _launch(rt, "lrn_forward", dtype, y.size, x, y, _i64(y.size), _i32(c), _i32(h * w), _i32(size),
            t(alpha), t(beta), t(k))
    return y


def lrn_backward(rt, gy, x, y, size, alpha, beta, k):
    """gx in two launches: lrn_scale stores d, then lrn_backward gathers over the mirrored
    channel window (see lrn.cu for the formula)."""
    xp = rt.xp
    size = lrn_size(x.shape, size)
    if not (tuple(gy.shape) == tuple(x.shape) == tuple(y.shape)):
        raise ValueError(f"gy {gy.shape}, x {x.shape} and y {y.shape} must have the same shape")
    dtype = _float_dtype(gy, x, y)
    gy, x, y = (_prepared(xp, a, dtype) for a in (gy, x, y))
    n, c, h, w = x.shape
    t = dtype.type
    d = xp.empty(x.shape, dtype=dtype)
    _launch(rt, "lrn_scale", dtype, d.size, x, d, _i64(d.size), _i32(c), _i32(h * w), _i32(size), t(alpha), t(k))
    gx = xp.empty(x.shape, dtype=dtype)
    _launch(rt, "lrn_backward", dtype, gx.size, gy, x, y, d, gx, _i64(gx.size), _i32(c), _i32(h * w),
            _i32(size), t(alpha), t(beta))
    return gx


# ----------------------------------------------------------------------------------------
# matrix product


def matmul(rt, a, b):
    """a @ b: cuBLAS through ``cupy.matmul`` (NumPy's matmul under emulation)."""
    return rt.xp.matmul(a, b)
