"""Plain-NumPy reference kernels: the specification the Numba and CuPy kernels are held to.

Every function of the contract in ``kernels/__init__.py`` lives here, written to be read:
convolution is im2col (kh*kw strided slices of the padded input) followed by one matrix
product per group; its data gradient is col2im (the same slices, scatter-added back);
pooling looks at strided window views. This is also minigrad's CPU fallback when Numba is
missing, so nothing here loops in Python over pixels, only over kernel taps, groups or LRN
channel offsets.

Shapes are NCHW; geometry arguments are ``(height, width)`` pairs of ints. Output sizes use
floor division (PyTorch's ``ceil_mode=False``). Inputs are never written to and every
returned array is freshly allocated and C-contiguous. Float32 stays float32 (mixed inputs
promote as NumPy does); max-pool indices take the narrowest integer type that holds them.

Every result for image n is computed from image n alone, by operations whose shapes do not
depend on the batch (one GEMM per image), so it is bitwise the same in any batch. NaN and
infinities propagate as in PyTorch.
"""


import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kernels.geometry import (RELU_RULES, argmax_dtype, check_argmax, check_grad_shape, conv_geometry, lrn_size,
                              pool_geometry, relu_rule_code, shape4)
from kernels.patches import share_equal_outputs

# ----------------------------------------------------------------------------------------
# geometry helpers


def _tap(p, q, stride, dilation, out_hw):
    """Slices of the padded input that kernel tap (p, q) reads for every output pixel:
    rows p*dh + i*sh for i < OH and columns q*dw + j*sw for j < OW."""
    (sh, sw), (dh, dw), (oh, ow) = stride, dilation, out_hw
    return (
        slice(None),
        slice(None),
        slice(p * dh, p * dh + sh * (oh - 1) + 1, sh),
        slice(q * dw, q * dw + sw * (ow - 1) + 1, sw),
    )


def _pad_hw(x, padding, value=0.0):
    (ph, pw) = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _windows(xpad, kernel_size, stride, out_hw):
    """Read-only view windows[n, c, i, j, p, q] = xpad[n, c, i*sh + p, j*sw + q]."""
    view = sliding_window_view(xpad, kernel_size, axis=(-2, -1))
    return view[..., :: stride[0], :: stride[1], :, :][..., : out_hw[0], : out_hw[1], :, :]


# ----------------------------------------------------------------------------------------
# convolution: im2col + one matmul per group


def _im2col(x, kernel_hw, stride, padding, dilation, out_hw):
    """cols[c, p, q, n, i, j] = xpad[n, c, i*sh + p*dh, j*sw + q*dw], shape (C, KH, KW, N, OH, OW).

    Laid out so that a group's rows reshape for free to a (Cg*KH*KW, N*OH*OW) matrix."""
    n, c = x.shape[:2]
    kh, kw = kernel_hw
    xpad = _pad_hw(x, padding)
    cols = np.empty((c, kh, kw, n) + tuple(out_hw), dtype=x.dtype)
    for p in range(kh):
        for q in range(kw):
            cols[:, p, q] = xpad[_tap(p, q, stride, dilation, out_hw)].transpose(1, 0, 2, 3)
    return cols


def _col2im(cols, x_shape, stride, padding, dilation):
    """The adjoint of _im2col: gx[n, c, i*sh + p*dh - ph, j*sw + q*dw - pw] += cols[c, p, q, n, i, j].

    Each tap's slice touches distinct pixels, so the in-place slice additions are exact."""
    n, c, h, w = x_shape
    (ph, pw) = padding
    kh, kw = cols.shape[1:3]
    gxpad = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for p in range(kh):
        for q in range(kw):
            gxpad[_tap(p, q, stride, dilation, cols.shape[4:])] += cols[:, p, q].transpose(1, 0, 2, 3)
    return np.ascontiguousarray(gxpad[:, :, ph : ph + h, pw : pw + w])


def conv2d_forward(x, w, b, stride, padding, dilation, groups, relu=False):
    """2-D cross-correlation (PyTorch's conv2d): y (N, O, OH, OW) from x (N, C, H, W), w (O, C/groups, KH, KW).

    y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * xpad[n, g*C/groups + c, i*sh + p*dh, j*sw + q*dw],
    g = o // (O / groups); then max(y, 0) if ``relu``. Per image and group, with cols the
    (Cg*KH*KW, OH*OW) im2col matrix: Y = W_g (Og, Cg*KH*KW) @ cols. Output pixels with equal
    receptive fields then share one value (``kernels.patches``)."""
    stride, padding, dilation, groups, out_hw = conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    n, o, (kh, kw) = x.shape[0], w.shape[0], w.shape[2:]
    cg, og = w.shape[1], o // groups
    if b is not None and tuple(b.shape) != (o,):
        raise ValueError(f"bias must have shape ({o},) for weight shape {w.shape}, got {b.shape}")
    y = np.empty((n, o) + tuple(out_hw), dtype=np.result_type(x, w, *([] if b is None else [b])))
    for i in range(n):
        cols = _im2col(x[i:i + 1], (kh, kw), stride, padding, dilation, out_hw).reshape(groups, cg * kh * kw, -1)
        for g in range(groups):
            y[i, g * og:(g + 1) * og] = (w[g * og:(g + 1) * og].reshape(og, -1) @ cols[g]).reshape((og,) + out_hw)
    if b is not None:
        y += b[:, None, None]
    if relu:
        np.maximum(y, 0, out=y)
    return share_equal_outputs(np, y, x, (kh, kw), stride, padding, dilation, groups)


def conv2d_backward_data(gy, w, x_shape, stride, padding, dilation, groups, relu_mask=None, relu_rule=None):
    """Gradient of sum(gy * conv2d_forward(x, w, None, ...)) with respect to x, shape x_shape;
    with ``relu_rule``, of the ReLU'd convolution: gy first goes through
    ``relu_backward(gy, relu_mask, relu_rule)``.

    Per image and group: gcols = W_g^T @ GY_g (the columns' gradient), then col2im
    scatter-adds every column entry back onto the input pixel it was read from (padding
    positions are dropped)."""
    x_shape = shape4("x_shape", x_shape)
    stride, padding, dilation, groups, out_hw = conv_geometry(x_shape, w.shape, stride, padding, dilation, groups)
    n, c = x_shape[:2]
    o, cg, kh, kw = w.shape
    og = o // groups
    check_grad_shape(gy, (n, o) + out_hw)
    if relu_rule_code(relu_rule, relu_mask, gy.shape) >= 0:
        gy = relu_backward(gy, relu_mask, relu_rule)
    gx = np.empty(x_shape, dtype=np.result_type(gy, w))
    for i in range(n):
        gy_mat = gy[i].reshape(o, -1)
        gcols = np.empty((groups, cg * kh * kw, gy_mat.shape[1]), dtype=gx.dtype)
        for g in range(groups):
            gcols[g] = w[g * og:(g + 1) * og].reshape(og, -1).T @ gy_mat[g * og:(g + 1) * og]
        gx[i] = _col2im(gcols.reshape((c, kh, kw, 1) + out_hw), (1,) + tuple(x_shape[1:]), stride, padding,
                        dilation)[0]
    return gx


def conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation, groups):
    """Gradient of sum(gy * conv2d_forward(x, w, None, ...)) with respect to w, shape w_shape.

    gw[o, c, p, q] = sum_{n, i, j} gy[n, o, i, j] * xpad[n, g*Cg + c, i*sh + p*dh, j*sw + q*dw],
    i.e. per group GW_g = GY_g (Og, N*OH*OW) @ cols_g^T."""
    w_shape = shape4("w_shape", w_shape)
    stride, padding, dilation, groups, out_hw = conv_geometry(x.shape, w_shape, stride, padding, dilation, groups)
    n = x.shape[0]
    o, cg, kh, kw = w_shape
    og = o // groups
    check_grad_shape(gy, (n, o) + out_hw)
    cols = _im2col(x, (kh, kw), stride, padding, dilation, out_hw).reshape(groups, cg * kh * kw, -1)
    gy_mat = gy.transpose(1, 0, 2, 3).reshape(o, -1)
    gw = np.empty((o, cg * kh * kw), dtype=np.result_type(gy, x))
    for g in range(groups):
        gw[g * og : (g + 1) * og] = gy_mat[g * og : (g + 1) * og] @ cols[g].T
    return gw.reshape(w_shape)


# ----------------------------------------------------------------------------------------
# elementwise: ReLU and the fused bias + ReLU


def bias_relu_forward(x, b):
    """y = max(x + b[None, :, None, None], 0): the epilogue of a conv followed by ReLU."""
    shape4("x", x.shape)
    if tuple(b.shape) != (x.shape[1],):
        raise ValueError(f"bias must have shape ({x.shape[1]},) for x of shape {x.shape}, got {b.shape}")
    return np.maximum(x + b[None, :, None, None], 0)


def relu_forward(x):
    """y = max(x, 0)."""
    return np.maximum(x, 0)


def relu_backward(gy, x, rule):
    """The ReLU backward pass under one of three rules. ``x`` is the forward input, its
    output, or the boolean mask ``~(x <= 0)``: all three are "positive" at the same places.

    "standard":  gx = gy where not x <= 0, else 0    the true gradient
    "deconvnet": gx = gy where not gy <= 0, else 0   Zeiler & Fergus 2014: ReLU applied to the signal
    "guided":    both masks                          Springenberg et al. 2015

    Written "not <= 0" rather than "> 0" so that a NaN passes, as in PyTorch (its ReLU
    backward keeps the gradient where the output is not <= 0, and relu(NaN) is NaN)."""
    if rule not in RELU_RULES:
        raise ValueError(f"unknown ReLU backward rule {rule!r}; valid rules are {', '.join(RELU_RULES)}")
    keep = np.ones(gy.shape, dtype=bool)
    if rule != "deconvnet":
        if x.shape != gy.shape:
            raise ValueError(f"gy shape {gy.shape} does not match x shape {x.shape}")
        keep &= ~(x <= 0)
    if rule != "standard":
        keep &= ~(gy <= 0)
    return np.where(keep, gy, gy.dtype.type(0))


# ----------------------------------------------------------------------------------------
# max pooling


def max_pool2d_forward(x, kernel_size, stride, padding):
    """Max over each (KH, KW) window: returns y (N, C, OH, OW) and argmax (same shape).

    argmax[n, c, i, j] = h*W + w, the flat in-plane index of the winning input pixel, in
    ``argmax_dtype(H, W)``. Ties go to the first maximum in row-major window order; padding
    never wins. A NaN wins over every number and a later NaN over an earlier one (PyTorch's
    rule, ``val > max || isnan(val)``), so NaN propagates and its gradient goes to the last."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = pool_geometry(x.shape, kernel_size, stride, padding)
    n, c, h, w = x.shape
    # Windows of the -inf padded input, flattened in row-major (p, q) order.
    windows = _windows(_pad_hw(x, (ph, pw), -np.inf), (kh, kw), (sh, sw), (oh, ow))
    windows = windows.reshape(n, c, oh, ow, kh * kw)
    tap = np.argmax(windows, axis=-1)  # first maximum (np.argmax returns the first occurrence)
    # Padding can only tie, never beat, a real pixel; it ties when every real value is -inf.
    # Then the first real pixel of the window is the winner.
    real = _windows(_pad_hw(np.ones((1, 1, h, w), bool), (ph, pw), False), (kh, kw), (sh, sw), (oh, ow))
    real = real.reshape(oh, ow, kh * kw)
    chose_real = np.take_along_axis(np.broadcast_to(real, windows.shape), tap[..., None], -1)[..., 0]
    tap = np.where(chose_real, tap, np.argmax(real, axis=-1))
    nan = np.isnan(windows)  # (padding is -inf, never NaN)
    last_nan = kh * kw - 1 - np.argmax(nan[..., ::-1], axis=-1)
    tap = np.where(nan.any(axis=-1), last_nan, tap)
    y = np.take_along_axis(windows, tap[..., None], axis=-1)[..., 0]
    # Window tap (p, q) of output (i, j) reads input row i*sh - ph + p and column j*sw - pw + q.
    p, q = np.divmod(tap, kw)
    rows = np.arange(oh)[:, None] * sh - ph + p
    cols = np.arange(ow)[None, :] * sw - pw + q
    return np.ascontiguousarray(y), (rows * w + cols).astype(argmax_dtype(h, w))


def max_pool2d_backward(gy, argmax, x_shape, kernel_size, stride, padding):
    """gx[n, c].flat[argmax[n, c, i, j]] += gy[n, c, i, j]; overlapping windows accumulate."""
    x_shape = shape4("x_shape", x_shape)
    n, c, h, w = x_shape
    out_hw = pool_geometry(x_shape, kernel_size, stride, padding)[3]
    check_grad_shape(gy, (n, c) + out_hw)
    check_argmax(argmax, gy.shape, (h, w))
    gx = np.zeros((n * c, h * w), dtype=gy.dtype)
    planes = np.arange(n * c)[:, None]
    np.add.at(gx, (planes, argmax.reshape(n * c, -1)), gy.reshape(n * c, -1))  # unbuffered: repeats add up
    return gx.reshape(x_shape)


# ----------------------------------------------------------------------------------------
# average pooling


def _avg_divisor(x_shape, kernel_size, stride, padding, out_hw, count_include_pad, dtype):
    """The (OH, OW) divisor: KH*KW, or with count_include_pad=False the number of real pixels."""
    if count_include_pad:
        return np.full(out_hw, kernel_size[0] * kernel_size[1], dtype=dtype)
    ones = _pad_hw(np.ones((1, 1) + tuple(x_shape[2:]), dtype=dtype), padding)
    return _windows(ones, kernel_size, stride, out_hw).sum(axis=(-2, -1))[0, 0]


def avg_pool2d_forward(x, kernel_size, stride, padding, count_include_pad):
    """y[n, c, i, j] = sum of the zero-padded window / divisor, where the divisor is KH*KW
    if count_include_pad else the number of real (non-padding) pixels in the window."""
    kernel_size, stride, padding, out_hw = pool_geometry(x.shape, kernel_size, stride, padding)
    total = _windows(_pad_hw(x, padding), kernel_size, stride, out_hw).sum(axis=(-2, -1))
    return total / _avg_divisor(x.shape, kernel_size, stride, padding, out_hw, count_include_pad, x.dtype)


def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, count_include_pad):
    """Each output spreads gy / divisor evenly over its window: for every tap (p, q),
    gxpad[n, c, i*sh + p, j*sw + q] += gy[n, c, i, j] / divisor[i, j]; padding is cropped."""
    x_shape = shape4("x_shape", x_shape)
    kernel_size, stride, padding, out_hw = pool_geometry(x_shape, kernel_size, stride, padding)
    check_grad_shape(gy, tuple(x_shape[:2]) + out_hw)
    share = gy / _avg_divisor(x_shape, kernel_size, stride, padding, out_hw, count_include_pad, gy.dtype)
    n, c, h, w = x_shape
    (ph, pw) = padding
    gxpad = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=share.dtype)
    for p in range(kernel_size[0]):
        for q in range(kernel_size[1]):
            gxpad[_tap(p, q, stride, (1, 1), out_hw)] += share
    return np.ascontiguousarray(gxpad[:, :, ph : ph + h, pw : pw + w])


# ----------------------------------------------------------------------------------------
# local response normalization (across channels, PyTorch's form)


def _channel_window_sum(a, before, after):
    """s[:, c] = sum_{c' = c - before}^{c + after} a[:, c'], out-of-range channels counting as zero."""
    padded = np.pad(a, ((0, 0), (before, after), (0, 0), (0, 0)))
    channels = a.shape[1]
    total = np.zeros_like(a)
    for t in range(before + after + 1):
        total += padded[:, t : t + channels]
    return total


def _lrn_denominator(x, size, alpha, k):
    """d[:, c] = k + alpha/size * sum_{c' = c - size//2}^{c + (size-1)//2} x[:, c']**2."""
    return k + alpha / size * _channel_window_sum(x * x, size // 2, (size - 1) // 2)


def lrn_forward(x, size, alpha, beta, k):
    """Local response normalization across channels: y = x * d**(-beta), d as in _lrn_denominator."""
    size = lrn_size(x.shape, size)
    return x * _lrn_denominator(x, size, alpha, k) ** -beta


def lrn_backward(gy, x, y, size, alpha, beta, k):
    """Gradient of sum(gy * lrn_forward(x)) with respect to x.

    With y_c = x_c * d_c^-beta and d_c' depending on x_c (through x_c**2) for every c' whose
    window contains c, i.e. c' in [c - (size-1)//2, c + size//2]:

        gx_c = gy_c * d_c^-beta
               - 2*alpha*beta/size * x_c * sum_{c' in [c - (size-1)//2, c + size//2]} gy_c' * x_c' * d_c'^(-beta-1)

    where x_c' * d_c'^(-beta-1) = y_c' / d_c' reuses the forward output."""
    size = lrn_size(x.shape, size)
    if not (gy.shape == x.shape == y.shape):
        raise ValueError(f"gy {gy.shape}, x {x.shape} and y {y.shape} must have the same shape")
    d = _lrn_denominator(x, size, alpha, k)
    reverse_window = _channel_window_sum(gy * y / d, (size - 1) // 2, size // 2)
    return gy * d ** -beta - (2 * alpha * beta / size) * x * reverse_window


# ----------------------------------------------------------------------------------------
# matrix product


def matmul(a, b):
    """a @ b with NumPy's rules (the fully connected layers' product)."""
    return np.matmul(a, b)
