"""Max and average pooling on the CPU (Numba).

Layout NCHW, C-contiguous, float32 or float64. Every loop runs ``prange`` over the N*C
independent planes, and a plane is handled by one thread from start to end. That is what makes
the backward passes race-free: with overlapping windows (AlexNet's 3x3 stride 2) several
outputs add into the same input pixel, but all of them belong to the same plane, so the
scatter-add ``gx[plane, argmax] += gy`` is sequential within its plane.

Max-pool tie rule (the contract's, same as the reference and PyTorch): a window is scanned
in row-major order starting from its first in-bounds pixel, and a later pixel wins only if it
is strictly greater or is NaN, so the first maximum wins, padding never does, and a NaN
propagates (the last NaN of the window wins, as in PyTorch's ``val > max || isnan(val)``).
argmax holds the flat in-plane index h*W + w in the narrowest integer type that fits
(``kernels.geometry.argmax_dtype``: uint16 for VGG16's 224x224 planes).
"""

import numpy as np
from numba import njit, prange

from . import _common


@njit(cache=True, inline="always")
def _valid_range(size, out, stride, offset):
    """The output indices j in [lo, hi) with 0 <= j*stride + offset < size."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    last = size - 1 - offset
    hi = 0 if last < 0 else min(out, last // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True, inline="always")
def _sweep(row, best, where, stride, offset, base):
    """One tap of every window of an output row: take row[j*stride + offset] where it is
    strictly greater than the best so far or NaN. Selects, not branches, and a loop over the
    whole row from 0 (LLVM vectorises that form, not one with computed bounds)."""
    for j in range(best.shape[0]):
        v = row[j * stride + offset]
        take = v > best[j] or v != v
        best[j] = v if take else best[j]
        where[j] = base + j * stride if take else where[j]


@njit(cache=True, inline="always")
def _max_plane(x, y, arg, best, where, padded, kh, kw, sh, sw, ph, pw):
    """Max pooling of one plane x (H, W) into y, arg (OH, OW), one output row at a time.

    Each window starts from its first in-bounds pixel, then every tap in row-major window
    order is swept along the whole row: the contract's tie and NaN rules. With horizontal
    padding the row is first copied between -inf margins (``padded``): -inf never beats the
    first real pixel (not greater, not NaN), so padding still never wins. Strides 1 and 2 get
    their own copy of the sweep so that the strided loads vectorise (10x faster than the
    generic loop for VGG's 2x2/2)."""
    height, width = x.shape
    oh, ow = y.shape
    for i in range(oh):
        h0 = max(i * sh - ph, 0)
        for j in range(ow):
            w0 = max(j * sw - pw, 0)
            best[j] = x[h0, w0]
            where[j] = h0 * width + w0
        for p in range(kh):
            h = i * sh - ph + p
            if h < 0 or h >= height:
                continue
            row = x[h]
            if pw > 0:
                padded[pw:pw + width] = row
                row = padded
            for q in range(kw):
                base = h * width + q - pw
                if sw == 2:
                    _sweep(row, best, where, 2, q, base)
                elif sw == 1:
                    _sweep(row, best, where, 1, q, base)
                else:
                    _sweep(row, best, where, sw, q, base)
        for j in range(ow):
            y[i, j] = best[j]
            arg[i, j] = where[j]


@njit(cache=True, inline="always")
def _take(v, best, where, index):
    """The tie and NaN rule for one tap: (value, index) of the window's winner so far."""
    take = v > best or v != v
    return (v if take else best), (index if take else where)


@njit(cache=True, inline="always")
def _max_plane_2x2(x, y, arg):
    """``_max_plane`` for 2x2 windows, stride 2, no padding (every pool of VGG): one loop per
    output row that takes each window's four taps in row-major order, instead of a loop per
    tap and two to set up and store, whose fixed costs dominate on the small planes of a
    training batch (5x faster on 128 x 32 planes of 28 x 28, 6x on 128 x 64 of 14 x 14)."""
    width = x.shape[1]
    oh, ow = y.shape
    for i in range(oh):
        top = x[2 * i]
        bottom = x[2 * i + 1]
        base = 2 * i * width
        for j in range(ow):
            best, where = top[2 * j], base + 2 * j
            best, where = _take(top[2 * j + 1], best, where, base + 2 * j + 1)
            best, where = _take(bottom[2 * j], best, where, base + width + 2 * j)
            best, where = _take(bottom[2 * j + 1], best, where, base + width + 2 * j + 1)
            y[i, j] = best
            arg[i, j] = where


@njit(parallel=True, cache=True)
def _max_forward(x, y, arg, kh, kw, sh, sw, ph, pw):
    # Planes in up to 256 runs, each with one set of row buffers (small planes, like a
    # training batch's 7x7 ones, would otherwise spend their time allocating them).
    n_planes, width = x.shape[0], x.shape[2]
    ow = y.shape[2]
    if kh == kw == sh == sw == 2 and ph == pw == 0:
        for plane in prange(n_planes):
            _max_plane_2x2(x[plane], y[plane], arg[plane])
        return
    runs = min(n_planes, 256)
    for run in prange(runs):
        best = np.empty(ow, x.dtype)
        where = np.empty(ow, np.int64)
        padded = np.full(width + 2 * pw, -np.inf, x.dtype)
        for pl in range(run * n_planes // runs, (run + 1) * n_planes // runs):
            _max_plane(x[pl], y[pl], arg[pl], best, where, padded, kh, kw, sh, sw, ph, pw)


@njit(parallel=True, cache=True)
def _max_backward(gy, arg, gx):
    n_planes = gx.shape[0]
    n_out = gy.shape[1]
    for plane in prange(n_planes):
        pl = np.int64(plane)
        for t in range(gx.shape[1]):
            gx[pl, t] = 0
        for t in range(n_out):
            gx[pl, arg[pl, t]] += gy[pl, t]


@njit(parallel=True, cache=True)
def _avg_forward(x, y, kh, kw, sh, sw, ph, pw, count_include_pad):
    n_planes, height, width = x.shape
    oh, ow = y.shape[1], y.shape[2]
    for plane in prange(n_planes):
        pl = np.int64(plane)
        for i in range(oh):
            h0 = i * sh - ph
            h_lo = max(h0, 0)
            h_hi = min(h0 + kh, height)
            for j in range(ow):
                w0 = j * sw - pw
                w_lo = max(w0, 0)
                w_hi = min(w0 + kw, width)
                total = x.dtype.type(0)
                for h in range(h_lo, h_hi):
                    for w in range(w_lo, w_hi):
                        total += x[pl, h, w]
                count = kh * kw if count_include_pad else (h_hi - h_lo) * (w_hi - w_lo)
                y[pl, i, j] = total / count


@njit(parallel=True, cache=True)
def _avg_backward(gy, gx, kh, kw, sh, sw, ph, pw, count_include_pad):
    n_planes, height, width = gx.shape
    oh, ow = gy.shape[1], gy.shape[2]
    for plane in prange(n_planes):
        pl = np.int64(plane)
        for h in range(height):
            for w in range(width):
                gx[pl, h, w] = 0
        for i in range(oh):
            h0 = i * sh - ph
            h_lo = max(h0, 0)
            h_hi = min(h0 + kh, height)
            for j in range(ow):
                w0 = j * sw - pw
                w_lo = max(w0, 0)
                w_hi = min(w0 + kw, width)
                count = kh * kw if count_include_pad else (h_hi - h_lo) * (w_hi - w_lo)
                share = gy[pl, i, j] / count
                for h in range(h_lo, h_hi):
                    for w in range(w_lo, w_hi):
                        gx[pl, h, w] += share


def max_pool2d_forward(x, kernel_size, stride, padding):
    """Max over each (KH, KW) window of x (N, C, H, W): returns y (N, C, OH, OW) and argmax
    (same shape, ``argmax_dtype(H, W)``) holding the flat in-plane index h*W + w of each
    window's winner."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = _common.pool_geometry(np.shape(x), kernel_size, stride, padding)
    x = _common.float_array("x", x)
    n, c, h, w = x.shape
    y = np.empty((n, c, oh, ow), x.dtype)
    arg = np.empty((n, c, oh, ow), _common.argmax_dtype(h, w))
    with _common.threads_for(x.size):
        _max_forward(x.reshape(n * c, h, w), y.reshape(n * c, oh, ow), arg.reshape(n * c, oh, ow),
                     kh, kw, sh, sw, ph, pw)
    return y, arg


def max_pool2d_backward(gy, argmax, x_shape, kernel_size, stride, padding):
    """gx[n, c].flat[argmax[n, c, i, j]] += gy[n, c, i, j]; overlapping windows accumulate."""
    x_shape = _common.shape4("x_shape", x_shape)
    n, c, h, w = x_shape
    out_hw = _common.pool_geometry(x_shape, kernel_size, stride, padding)[3]
    _common.check_grad_shape(gy, (n, c) + out_hw)
    argmax = np.asarray(argmax)
    _common.check_argmax(argmax, np.shape(gy), (h, w))
    gy = _common.float_array("gy", gy)
    argmax = np.ascontiguousarray(argmax)
    gx = np.empty(x_shape, gy.dtype)
    with _common.threads_for(gx.size):
        _max_backward(gy.reshape(n * c, -1), argmax.reshape(n * c, -1), gx.reshape(n * c, h * w))
    return gx


def avg_pool2d_forward(x, kernel_size, stride, padding, count_include_pad):
    """Window mean of x (N, C, H, W); padded zeros count in the divisor iff count_include_pad."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = _common.pool_geometry(np.shape(x), kernel_size, stride, padding)
    x = _common.float_array("x", x)
    n, c, h, w = x.shape
    y = np.empty((n, c, oh, ow), x.dtype)
    with _common.threads_for(x.size):
        _avg_forward(x.reshape(n * c, h, w), y.reshape(n * c, oh, ow), kh, kw, sh, sw, ph, pw,
                     bool(count_include_pad))
    return y


def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, count_include_pad):
    """Each output spreads gy / divisor evenly over the real pixels of its window."""
    x_shape = _common.shape4("x_shape", x_shape)
    (kh, kw), (sh, sw), (ph, pw), out_hw = _common.pool_geometry(x_shape, kernel_size, stride, padding)
    n, c, h, w = x_shape
    _common.check_grad_shape(gy, (n, c) + out_hw)
    gy = _common.float_array("gy", gy)
    gx = np.empty(x_shape, gy.dtype)
    with _common.threads_for(gx.size):
        _avg_backward(gy.reshape((n * c,) + out_hw), gx.reshape(n * c, h, w), kh, kw, sh, sw, ph, pw,
                      bool(count_include_pad))
    return gx
