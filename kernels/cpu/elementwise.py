"""ReLU (forward and its three backward rules), fused bias + ReLU, and cross-channel LRN.

Elementwise loops run ``prange`` over the flat array (or over (n, c) planes where a
per-channel value is needed); each output element is written by exactly one iteration.
``max(x, 0)`` propagates NaN as NumPy's ``maximum`` and PyTorch's ``relu`` do.

ReLU backward rules, chosen at backward time (x may be the forward input, its output, or the
boolean mask ``~(x <= 0)``: all are "positive" at the same places):

    "standard":  gx = gy where not x <= 0, else 0            the true gradient
    "deconvnet": gx = gy where not gy <= 0, else 0           Zeiler & Fergus 2014 (x is not read)
    "guided":    gx = gy where neither x <= 0 nor gy <= 0    Springenberg et al. 2015

"not <= 0" rather than "> 0" lets a NaN through, as PyTorch does (its ReLU backward keeps the
gradient where the output is not <= 0, and relu(NaN) = NaN; relu(gy) passes a NaN gy).

LRN (Krizhevsky et al. 2012, PyTorch's form) normalises across channels:

    d[c] = k + alpha/size * sum_{c' = c - size//2}^{c + (size-1)//2} x[c']**2,   y[c] = x[c] * d[c]**-beta
    gx[c] = gy[c] * d[c]**-beta
            - 2*alpha*beta/size * x[c] * sum_{c' = c - (size-1)//2}^{c + size//2} gy[c'] * y[c'] / d[c']

with out-of-range channels counting as zero. Both run ``prange`` over (n, h) image rows,
holding a row's C x W denominators in a small local array.
"""

import operator

import numpy as np
from numba import njit, prange

from . import _common

RELU_RULES = _common.RELU_RULES


@njit(parallel=True, cache=True)
def _relu_forward(x, y):
    for ii in prange(x.size):
        v = x[ii]
        y[ii] = v if not v <= 0 else 0  # NaN passes through, like numpy.maximum


@njit(parallel=True, cache=True)
def _relu_backward(gy, x, y, rule):
    # rule 0 standard, 1 deconvnet, 2 guided
    for ii in prange(gy.size):
        g = gy[ii]
        keep = True
        if rule != 1:
            keep = not x[ii] <= 0
        if rule != 0:
            keep = keep and not g <= 0
        y[ii] = g if keep else 0


@njit(parallel=True, cache=True)
def _bias_relu(x, b, y):
    n_planes, hw = x.shape
    n_ch = b.shape[0]
    for plane in prange(n_planes):
        pl = np.int64(plane)
        bc = b[pl % n_ch]
        for t in range(hw):
            v = x[pl, t] + bc
            y[pl, t] = v if not v <= 0 else 0


@njit(cache=True)
def _lrn_denominators(x, n, h, size, alpha, k, d):
    """d[c, w] for image row (n, h)."""
    n_ch, width = x.shape[1], x.shape[3]
    before = size // 2
    after = (size - 1) // 2
    scale = alpha / size
    for c in range(n_ch):
        for w in range(width):
            d[c, w] = 0
        for cc in range(max(c - before, 0), min(c + after + 1, n_ch)):
            for w in range(width):
                v = x[n, cc, h, w]
                d[c, w] += v * v
        for w in range(width):
            d[c, w] = k + scale * d[c, w]


@njit(parallel=True, cache=True)
def _lrn_forward(x, size, alpha, beta, k, y):
    n_batch, n_ch, height, width = x.shape
    for row in prange(n_batch * height):
        r = np.int64(row)
        n = r // height
        h = r % height
        d = np.empty((n_ch, width), x.dtype)
        _lrn_denominators(x, n, h, size, alpha, k, d)
        for c in range(n_ch):
            for w in range(width):
                y[n, c, h, w] = x[n, c, h, w] * d[c, w] ** -beta


@njit(parallel=True, cache=True)
def _lrn_backward(gy, x, y, size, alpha, beta, k, gx):
    n_batch, n_ch, height, width = x.shape
    before = (size - 1) // 2  # the reverse window: c' in [c - (size-1)//2, c + size//2]
    after = size // 2
    coef = 2.0 * alpha * beta / size
    for row in prange(n_batch * height):
        r = np.int64(row)
        n = r // height
        h = r % height
        d = np.empty((n_ch, width), x.dtype)
        _lrn_denominators(x, n, h, size, alpha, k, d)
        ratio = np.empty((n_ch, width), x.dtype)
        for c in range(n_ch):
            for w in range(width):
                ratio[c, w] = gy[n, c, h, w] * y[n, c, h, w] / d[c, w]
        acc = np.empty(width, x.dtype)
        for c in range(n_ch):
            for w in range(width):
                acc[w] = 0
            for cc in range(max(c - before, 0), min(c + after + 1, n_ch)):
                for w in range(width):
                    acc[w] += ratio[cc, w]
            for w in range(width):
                gx[n, c, h, w] = gy[n, c, h, w] * d[c, w] ** -beta - coef * x[n, c, h, w] * acc[w]


def relu_forward(x):
    """y = max(x, 0)."""
    x = _common.float_array("x", x)
    y = np.empty_like(x)
    with _common.threads_for(x.size):
        _relu_forward(x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(gy, x, rule):
    """gx under ReLU backward ``rule`` ("standard", "deconvnet" or "guided"); see the module
    docstring. x is the forward input, output or boolean mask; for "deconvnet" it is not read
    and may be None."""
    if rule not in RELU_RULES:
        raise ValueError(f"unknown ReLU backward rule {rule!r}; valid rules are {', '.join(RELU_RULES)}")
    code = RELU_RULES.index(rule)
    gy = _common.float_array("gy", gy)
    if code == 1:
        xs = gy  # not read
    else:
        if tuple(np.shape(x)) != gy.shape:
            raise ValueError(f"gy shape {gy.shape} does not match x shape {tuple(np.shape(x))}")
        x = np.asarray(x)
        xs = np.ascontiguousarray(x, dtype=np.bool_ if x.dtype == np.bool_ else gy.dtype)
    gx = np.empty_like(gy)
    with _common.threads_for(gy.size):
        _relu_backward(gy.reshape(-1), xs.reshape(-1), gx.reshape(-1), code)
    return gx


def bias_relu_inplace(y, b):
    """y = max(y + b[None, :, None, None], 0) in place (b None: no bias); y C-contiguous (N, C, H, W)."""
    n, c, h, w = y.shape
    b = np.zeros(c, y.dtype) if b is None else b
    with _common.threads_for(y.size):
        _bias_relu(y.reshape(n * c, h * w), b, y.reshape(n * c, h * w))
    return y


def bias_relu_forward(x, b):
    """y = max(x + b[None, :, None, None], 0): the fused epilogue of a conv followed by ReLU."""
    _common.shape4("x", np.shape(x))
    if tuple(np.shape(b)) != (np.shape(x)[1],):
        raise ValueError(f"bias must have shape ({np.shape(x)[1]},) for x of shape {np.shape(x)}, got {np.shape(b)}")
    dtype = _common.common_dtype(x, b)
    x = _common.float_array("x", x, dtype)
    b = _common.float_array("b", b, dtype)
    n, c, h, w = x.shape
    y = np.empty_like(x)
    with _common.threads_for(x.size):
        _bias_relu(x.reshape(n * c, h * w), b, y.reshape(n * c, h * w))
    return y


def _lrn_args(x, size, alpha, beta, k):
    _common.shape4("x", np.shape(x))
    size = operator.index(size)
    if size < 1:
        raise ValueError(f"LRN size must be >= 1, got {size}")
    return size, float(alpha), float(beta), float(k)


def lrn_forward(x, size, alpha, beta, k):
    """Local response normalization across channels: y = x * d**-beta (module docstring)."""
    size, alpha, beta, k = _lrn_args(x, size, alpha, beta, k)
    x = _common.float_array("x", x)
    y = np.empty_like(x)
    t = x.dtype.type
    with _common.threads_for(x.size * size):
        _lrn_forward(x, size, t(alpha), t(beta), t(k), y)
    return y


def lrn_backward(gy, x, y, size, alpha, beta, k):
    """Gradient of sum(gy * lrn_forward(x)) with respect to x (module docstring)."""
    size, alpha, beta, k = _lrn_args(x, size, alpha, beta, k)
    if not (np.shape(gy) == np.shape(x) == np.shape(y)):
        raise ValueError(f"gy {np.shape(gy)}, x {np.shape(x)} and y {np.shape(y)} must have the same shape")
    dtype = _common.common_dtype(gy, x, y)
    gy = _common.float_array("gy", gy, dtype)
    x = _common.float_array("x", x, dtype)
    y = _common.float_array("y", y, dtype)
    gx = np.empty_like(x)
    t = x.dtype.type
    with _common.threads_for(x.size * size):
        _lrn_backward(gy, x, y, size, t(alpha), t(beta), t(k), gx)
    return gx
