"""Neural-network operations on tensors (imported as ``F``), PyTorch's names and conventions.

Convolution, pooling, ReLU and LRN run on the kernels (``kernels.reference``, ``kernels.cpu``
or ``kernels.gpu``, chosen by ``minigrad.backend``); the rest is written once with ``xp``
(NumPy or CuPy) or composed from Tensor operations, whose gradients then come for free.
"""

import numpy as np

from minigrad import backend, config
from minigrad.ops import GetItem, matmul
from minigrad.seeding import random_generator
from minigrad.function import Function
from minigrad.tensor import Tensor, as_tensor


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _pair(value, name, minimum=None):
    """``value`` (an int or a pair of ints) as a pair of Python ints, each at least ``minimum``."""
    pair = (value, value) if _is_int(value) else value
    try:
        pair = tuple(pair)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(_is_int(v) for v in pair):
        at_least = "" if minimum is None else f" (each >= {minimum})"
        raise TypeError(f"{name} must be an int or a pair of ints{at_least}, got {value!r}")
    pair = int(pair[0]), int(pair[1])
    if minimum is not None and min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return pair


def _positive_int(value, name):
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def conv_arguments(kernel_size, stride, padding, dilation, groups):
    """Check a convolution's settings; return them as pairs of ints (and groups as an int).

    Valid: kernel_size, stride, dilation >= 1, padding >= 0, groups a positive int. (How
    much padding an input takes is checked when the input is known: see ``conv2d``.)"""
    kernel_size = _pair(kernel_size, "kernel_size", 1)
    stride, dilation = _pair(stride, "stride", 1), _pair(dilation, "dilation", 1)
    return kernel_size, stride, _pair(padding, "padding", 0), dilation, _positive_int(groups, "groups")


def pool_arguments(kernel_size, stride, padding):
    """Check a pooling's settings (stride None means kernel_size); return pairs of ints.

    Valid: kernel_size, stride >= 1 and 0 <= padding <= kernel_size // 2 (so every window
    holds an input pixel, PyTorch's rule)."""
    kernel_size = _pair(kernel_size, "kernel_size", 1)
    stride = kernel_size if stride is None else _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    if any(p > k // 2 for p, k in zip(padding, kernel_size)):
        raise ValueError(f"padding {padding} must lie between 0 and kernel_size // 2 = "
                         f"{tuple(k // 2 for k in kernel_size)} (kernel_size {kernel_size})")
    return kernel_size, stride, padding


def _require(op, condition, message):
    if not condition:
        raise ValueError(f"{op}: {message}")


def _require_float(op, **tensors):
    for name, t in tensors.items():
        if t is not None and t.dtype.kind != "f":
            raise TypeError(f"{op} needs a floating-point {name}, got dtype {t.dtype}; convert with .astype('float32')")


def _require_same_dtype(op, *tensors):
    dtypes = {str(t.dtype) for t in tensors if t is not None}
    if len(dtypes) > 1:
        raise TypeError(f"{op} needs inputs of one dtype, got {', '.join(sorted(dtypes))}; convert with .astype()")


def _require_4d(op, x):
    _require(op, x.ndim == 4, f"expected an input of shape (N, C, H, W), got shape {x.shape}")


def _contiguous(array):
    return backend.get_array_module(array).ascontiguousarray(array)


# ----- convolution -----


def _relu_mask(ctx, y):
    """What ReLU's backward needs of its output y, when a backward pass will run: where y is
    not <= 0 (positive, or NaN, which PyTorch lets through), one byte per element instead of
    y's four or eight."""
    return ~(y <= 0) if config.is_grad_enabled() and any(ctx.needs_input_grad) else None


class Conv2d(Function):
    """2-D cross-correlation, optionally followed by ReLU in the same kernel pass (``relu``).

    Saves only what backward needs: the input only when the weight needs a gradient, the
    weight only when the input does (frozen weights: no input kept), and for ``relu`` the
    output's mask, not the output."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups, relu):
        x, w = _contiguous(x), _contiguous(w)
        ctx.geometry = stride, padding, dilation, groups
        ctx.shapes, ctx.relu = (x.shape, w.shape), relu
        y = backend.kernels_for(x).conv2d_forward(x, w, b, stride, padding, dilation, groups, relu=relu)
        needs_x, needs_w = ctx.needs_input_grad[:2]
        ctx.save_for_backward(x if needs_w else None, w if needs_x else None, _relu_mask(ctx, y) if relu else None)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, w, mask = ctx.saved_tensors
        (x_shape, w_shape), kern = ctx.shapes, backend.kernels_for(grad)
        grad = _contiguous(grad)
        if ctx.relu and not any(ctx.needs_input_grad[1:]):  # frozen weights: the kernel applies the rule
            return kern.conv2d_backward_data(grad, w, x_shape, *ctx.geometry, relu_mask=mask,
                                             relu_rule=config.current_relu_rule()), None, None
        if ctx.relu:
            grad = kern.relu_backward(grad, mask, config.current_relu_rule())
        gx = kern.conv2d_backward_data(grad, w, x_shape, *ctx.geometry) if ctx.needs_input_grad[0] else None
        gw = kern.conv2d_backward_weight(grad, x, w_shape, *ctx.geometry) if ctx.needs_input_grad[1] else None
        # einsum's one pass: 3-5x faster than sum over axes (0, 2, 3) on a training batch here
        gb = backend.get_array_module(grad).einsum("nchw->c", grad) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


def _conv(op, x, w, b, stride, padding, dilation, groups, relu):
    x, w, b = as_tensor(x), as_tensor(w), None if b is None else as_tensor(b)
    _require_float(op, input=x, weight=w, bias=b)
    _require_same_dtype(op, x, w, b)
    _require_4d(op, x)
    _require(op, w.ndim == 4, f"weight must have shape (O, C/groups, KH, KW), got {w.shape}")
    _, stride, padding, dilation, groups = conv_arguments(w.shape[2:], stride, padding, dilation, groups)
    _require(op, x.shape[1] % groups == 0 and w.shape[0] % groups == 0,
             f"groups={groups} must divide the input channels ({x.shape[1]}) and output channels ({w.shape[0]})")
    _require(op, w.shape[1] * groups == x.shape[1],
             f"weight {w.shape} expects {w.shape[1] * groups} input channels, the input has {x.shape[1]}")
    _require(op, b is None or b.shape == (w.shape[0],), f"bias must have shape ({w.shape[0]},), got {b and b.shape}")
    limit = tuple(max(n, d * (k - 1)) for n, k, d in zip(x.shape[2:], w.shape[2:], dilation))
    _require(op, padding[0] <= limit[0] and padding[1] <= limit[1],
             f"padding {padding} must lie between 0 and {limit} for an input of {x.shape[2]}x{x.shape[3]} and a "
             f"{w.shape[2]}x{w.shape[3]} kernel (dilation {dilation}): the larger of the input size and "
             "dilation * (kernel_size - 1); more only surrounds the result with outputs that see no input")
    for size, k, p, d in zip(x.shape[2:], w.shape[2:], padding, dilation):
        _require(op, size + 2 * p - d * (k - 1) - 1 >= 0,
                 f"kernel {w.shape[2:]} (dilation {dilation}) is larger than the padded input {x.shape[2:]}")
    return Conv2d.apply(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups, relu=relu)


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Convolve x (N, C, H, W) with w (O, C // groups, KH, KW), add b (O,).

    stride and dilation >= 1; 0 <= padding <= max(input size, dilation * (kernel size - 1))
    on each axis."""
    return _conv("conv2d", x, w, b, stride, padding, dilation, groups, relu=False)


def conv2d_relu(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """``relu(conv2d(x, w, b, ...))`` in one op: the kernel applies bias and ReLU while it
    writes the output (one pass less over it), and only the ReLU mask is kept for backward.
    The ReLU backward rule is read at backward time, as for ``relu``."""
    return _conv("conv2d_relu", x, w, b, stride, padding, dilation, groups, relu=True)


def linear(x, w, b=None):
    """x @ w.T + b with PyTorch's (out_features, in_features) weight layout."""
    x, w = as_tensor(x), as_tensor(w)
    _require_float("linear", input=x, weight=w)
    _require("linear", w.ndim == 2, f"weight must have shape (out, in), got {w.shape}")
    _require("linear", x.ndim >= 1 and x.shape[-1] == w.shape[1],
             f"input has {x.shape[-1] if x.ndim else 0} features, the weight {w.shape} expects {w.shape[1]}")
    y = matmul(x, w.transpose(1, 0))
    return y if b is None else y + b


# ----- activations -----


class ReLU(Function):
    """max(x, 0). The backward rule is read when backward runs (see ``minigrad.relu_backward``);
    only the output's mask is kept for it."""

    @staticmethod
    def forward(ctx, x):
        y = backend.kernels_for(x).relu_forward(_contiguous(x))
        ctx.save_for_backward(_relu_mask(ctx, y))
        return y

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return backend.kernels_for(grad).relu_backward(_contiguous(grad), mask, config.current_relu_rule())


def relu(x):
    x = as_tensor(x)
    _require_float("relu", input=x)
    return ReLU.apply(x)


def _leaky_factor(positive, slope, dtype):
    """1 where ``positive``, slope elsewhere, each exact in ``dtype``. (NumPy's ``where`` on a
    data-dependent mask is about ten times slower than these arithmetic passes.)"""
    factor = (~positive).astype(dtype)
    factor *= dtype.type(slope)
    factor += positive
    return factor


class LeakyReLU(Function):
    """x where x > 0, else slope * x, as PyTorch's leaky_relu (so NaN, which is not > 0, gets
    the slope's gradient). Both ways multiply by a factor that is 1 or slope, made from the
    mask x > 0 (one byte per element is all backward keeps) into a new array that the product
    then overwrites: one large allocation each way, as fresh pages cost more than the passes."""

    @staticmethod
    def forward(ctx, x, slope):
        positive = x > 0
        ctx.save_for_backward(positive if config.is_grad_enabled() and any(ctx.needs_input_grad) else None)
        ctx.slope = slope
        y = _leaky_factor(positive, slope, x.dtype)
        y *= x
        return y

    @staticmethod
    def backward(ctx, grad):
        (positive,) = ctx.saved_tensors
        dx = _leaky_factor(positive, ctx.slope, grad.dtype)
        dx *= grad
        return dx


def leaky_relu(x, negative_slope=0.01):
    x = as_tensor(x)
    _require_float("leaky_relu", input=x)
    return LeakyReLU.apply(x, slope=float(negative_slope))


class Softmax(Function):
    @staticmethod
    def forward(ctx, x, axis):
        xp = backend.get_array_module(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        y = e / e.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return y * (grad - (grad * y).sum(axis=ctx.axis, keepdims=True))


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, axis):
        xp = backend.get_array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        xp = backend.get_array_module(y)
        return grad - xp.exp(y) * grad.sum(axis=ctx.axis, keepdims=True)


def _axis(op, x, axis):
    _require(op, _is_int(axis) and -x.ndim <= axis < x.ndim,
             f"axis {axis!r} is out of range for shape {x.shape}: give an int in [{-x.ndim}, {x.ndim})")
    return axis % x.ndim


def softmax(x, axis=-1):
    x = as_tensor(x)
    _require_float("softmax", input=x)
    return Softmax.apply(x, axis=_axis("softmax", x, axis))


def log_softmax(x, axis=-1):
    x = as_tensor(x)
    _require_float("log_softmax", input=x)
    return LogSoftmax.apply(x, axis=_axis("log_softmax", x, axis))


def cross_entropy(logits, labels, reduction="mean"):
    """Mean (or "sum", or per-sample "none") of -log softmax(logits)[label]; logits (N, K)."""
    logits = as_tensor(logits)
    labels = labels.data if isinstance(labels, Tensor) else labels
    xp = backend.get_array_module(logits.data)
    labels = xp.asarray(labels)
    _require_float("cross_entropy", logits=logits)
    _require("cross_entropy", logits.ndim == 2, f"logits must have shape (N, classes), got {logits.shape}")
    _require("cross_entropy", labels.dtype.kind in "iu", f"labels must be integers, got dtype {labels.dtype}")
    _require("cross_entropy", labels.shape == (logits.shape[0],),
             f"labels must have shape ({logits.shape[0]},), got {labels.shape}")
    _require("cross_entropy", labels.size == 0 or (0 <= int(labels.min()) and int(labels.max()) < logits.shape[1]),
             f"labels must lie in [0, {logits.shape[1]}), got values from {labels.min()} to {labels.max()}")
    _require("cross_entropy", reduction in ("mean", "sum", "none"), f"unknown reduction {reduction!r}")
    picked = -log_softmax(logits, axis=1)[xp.arange(logits.shape[0]), labels]
    return {"mean": picked.mean, "sum": picked.sum, "none": lambda: picked}[reduction]()


# ----- pooling -----


def _pool_geometry(op, x, kernel_size, stride, padding):
    _require_4d(op, x)
    kernel_size, stride, padding = pool_arguments(kernel_size, stride, padding)
    _require(op, all(n + 2 * p >= k for n, p, k in zip(x.shape[2:], padding, kernel_size)),
             f"kernel {kernel_size} is larger than the padded input {x.shape[2:]}")
    return kernel_size, stride, padding


class MaxPool2d(Function):
    """Max over windows; backward routes each gradient to the window's argmax (kept in the
    narrowest integer type that holds it)."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding):
        y, argmax = backend.kernels_for(x).max_pool2d_forward(_contiguous(x), kernel_size, stride, padding)
        ctx.save_for_backward(argmax)
        ctx.x_shape, ctx.geometry = x.shape, (kernel_size, stride, padding)
        return y

    @staticmethod
    def backward(ctx, grad):
        (argmax,) = ctx.saved_tensors
        return backend.kernels_for(grad).max_pool2d_backward(_contiguous(grad), argmax, ctx.x_shape, *ctx.geometry)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    x = as_tensor(x)
    _require_float("max_pool2d", input=x)
    kernel_size, stride, padding = _pool_geometry("max_pool2d", x, kernel_size, stride, padding)
    return MaxPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=padding)


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, count_include_pad):
        ctx.x_shape, ctx.geometry = x.shape, (kernel_size, stride, padding, count_include_pad)
        return backend.kernels_for(x).avg_pool2d_forward(_contiguous(x), *ctx.geometry)

    @staticmethod
    def backward(ctx, grad):
        return backend.kernels_for(grad).avg_pool2d_backward(_contiguous(grad), ctx.x_shape, *ctx.geometry)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    x = as_tensor(x)
    _require_float("avg_pool2d", input=x)
    kernel_size, stride, padding = _pool_geometry("avg_pool2d", x, kernel_size, stride, padding)
    return AvgPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=padding,
                           count_include_pad=bool(count_include_pad))


def _adaptive_windows(n_in, n_out):
    """PyTorch's cells: output i averages inputs floor(i*n/m) .. ceil((i+1)*n/m) - 1."""
    return [((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]


class AdaptiveAvgPool2d(Function):
    """Cell means, taken along rows then along columns with array slices (cells may overlap).

    Sums over each cell's own pixels only -- no multiplication by a 0/1 matrix, in which
    0 * inf = NaN would turn one infinity into NaN over the whole row -- so NaN and inf stay
    in the cells that contain them, as in PyTorch."""

    @staticmethod
    def forward(ctx, x, output_size):
        xp = backend.get_array_module(x)
        ctx.x_shape = x.shape
        ctx.rows, ctx.cols = (_adaptive_windows(n, m) for n, m in zip(x.shape[2:], output_size))
        t = xp.stack([x[:, :, a:b].mean(axis=2) for a, b in ctx.rows], axis=2)
        return xp.ascontiguousarray(xp.stack([t[:, :, :, a:b].mean(axis=3) for a, b in ctx.cols], axis=3))

    @staticmethod
    def backward(ctx, grad):
        xp = backend.get_array_module(grad)
        n, c, h, w = ctx.x_shape
        t = xp.zeros((n, c, len(ctx.rows), w), dtype=grad.dtype)
        for j, (a, b) in enumerate(ctx.cols):
            t[:, :, :, a:b] += grad[:, :, :, j:j + 1] / (b - a)
        gx = xp.zeros(ctx.x_shape, dtype=grad.dtype)
        for i, (a, b) in enumerate(ctx.rows):
            gx[:, :, a:b] += t[:, :, i:i + 1] / (b - a)
        return gx


def adaptive_avg_pool2d(x, output_size):
    """Average-pool to a fixed output size, PyTorch's cell boundaries; any input size works."""
    x = as_tensor(x)
    _require_float("adaptive_avg_pool2d", input=x)
    _require_4d("adaptive_avg_pool2d", x)
    oh, ow = _pair(output_size, "output_size", 1)
    h, w = x.shape[2:]
    if (oh, ow) == (h, w):
        return x
    if h % oh == 0 and w % ow == 0:
        return avg_pool2d(x, (h // oh, w // ow))
    return AdaptiveAvgPool2d.apply(x, output_size=(oh, ow))


class LocalResponseNorm(Function):
    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        x = _contiguous(x)
        y = backend.kernels_for(x).lrn_forward(x, size, alpha, beta, k)
        ctx.save_for_backward(x, y)
        ctx.params = size, alpha, beta, k
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        return backend.kernels_for(grad).lrn_backward(_contiguous(grad), x, y, *ctx.params)


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Normalize each activation by its neighbours across channels (Krizhevsky et al. 2012)."""
    x = as_tensor(x)
    _require_float("local_response_norm", input=x)
    _require_4d("local_response_norm", x)
    return LocalResponseNorm.apply(x, size=_positive_int(size, "size"), alpha=float(alpha), beta=float(beta),
                                   k=float(k))


# ----- regularization and normalization -----


def dropout(x, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p) (inverted dropout)."""
    x = as_tensor(x)
    _require("dropout", 0 <= p <= 1, f"p must lie in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    keep = random_generator().random(x.shape) >= p
    mask = backend.to_device((keep / (1 - p)).astype(x.dtype), x.device)
    return x * mask


class BatchNormTraining(Function):
    """Batch norm on the batch's statistics, one Function with the closed-form backward of
    Ioffe & Szegedy 2015 (section 3): with x_hat = (x - mean) / sigma and g the gradient of
    x_hat (the output's times the weight), dx = (g - mean(g) - x_hat * mean(g * x_hat)) / sigma,
    means per channel; dweight = sum(grad * x_hat), dbias = sum(grad). Backward is two
    reductions and four in-place passes, where the composed Tensor ops (mean, variance,
    subtract, divide, power, multiply, add) each made their own. The running statistics (plain
    arrays, or None) are updated in place by forward, as PyTorch does."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        xp = backend.get_array_module(x)
        axes, shape = _channel_axes(x)
        count = x.size // x.shape[1]
        mean = x.sum(axis=axes, keepdims=True) / count
        x_hat = x - mean
        var = (x_hat * x_hat).sum(axis=axes, keepdims=True) / count
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean.reshape(-1)
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var.reshape(-1) * (count / (count - 1))
        sigma = xp.sqrt(var + x.dtype.type(eps))
        x_hat /= sigma
        ctx.save_for_backward(x_hat, sigma, weight)
        ctx.bias_dtype = None if bias is None else bias.dtype
        y = x_hat * weight.reshape(shape) if weight is not None else x_hat.copy()
        if bias is not None:
            y += bias.reshape(shape)
        return y

    @staticmethod
    def backward(ctx, grad):
        x_hat, sigma, weight = ctx.saved_tensors
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad
        axes, shape = _channel_axes(x_hat)
        count = x_hat.size // x_hat.shape[1]
        grad_sum = grad.sum(axis=axes)
        grad_x_hat_sum = (grad * x_hat).sum(axis=axes)
        dx = dweight = dbias = None
        if needs_x:
            dx = x_hat * (-grad_x_hat_sum / count).reshape(shape)
            dx += grad
            dx -= (grad_sum / count).reshape(shape)
            dx *= (1 / sigma) if weight is None else weight.reshape(shape) / sigma
            dx = dx.astype(x_hat.dtype, copy=False)
        if needs_weight:
            dweight = grad_x_hat_sum.astype(weight.dtype, copy=False)
        if needs_bias:
            dbias = grad_sum.astype(ctx.bias_dtype, copy=False)
        return dx, dweight, dbias


def _channel_axes(x):
    """The axes batch norm reduces over (all but the channels, axis 1), and the shape that
    broadcasts a per-channel vector against x."""
    return (0,) + tuple(range(2, x.ndim)), (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalize over every axis but the channels (axis 1), Ioffe & Szegedy 2015.

    In training the batch statistics are used and ``running_mean`` / ``running_var`` (plain
    arrays, or None) are updated in place with ``momentum``, the variance unbiased as in
    PyTorch; in evaluation the running statistics are used.
    """
    x = as_tensor(x)
    _require_float("batch_norm", input=x)
    _require("batch_norm", x.ndim >= 2, f"expected an input with a channel axis, got shape {x.shape}")
    if training:
        count = x.size // x.shape[1]
        _require("batch_norm", count > 1, f"training needs more than one value per channel, got shape {x.shape}")
        return BatchNormTraining.apply(x, weight, bias, running_mean=running_mean, running_var=running_var,
                                       momentum=momentum, eps=eps)
    _require("batch_norm", running_mean is not None and running_var is not None,
             "evaluation needs running_mean and running_var")
    _, shape = _channel_axes(x)
    y = (x - running_mean.reshape(shape)) / ((running_var.reshape(shape) + eps) ** 0.5)
    if weight is not None:
        y = y * as_tensor(weight).reshape(shape)
    if bias is not None:
        y = y + as_tensor(bias).reshape(shape)
    return y


# ----- resampling and padding -----


def _output_size(op, x, size, scale_factor):
    _require(op, (size is None) != (scale_factor is None), "give exactly one of size and scale_factor")
    if size is not None:
        return _pair(size, "size"), None
    scales = (scale_factor, scale_factor) if np.isscalar(scale_factor) else tuple(scale_factor)
    out = tuple(int(np.floor(n * s)) for n, s in zip(x.shape[2:], scales))
    return out, scales


def _nearest_index(n_in, n_out, scale):
    step = n_in / n_out if scale is None else 1.0 / scale
    return np.minimum(np.floor(np.arange(n_out) * step).astype(np.int64), n_in - 1)


def _resample(x, rows, cols):
    """Apply the separable linear map y = rows @ x @ cols.T over the last two axes."""
    xp = backend.get_array_module(x.data)
    rows, cols = (xp.asarray(m, dtype=x.dtype) for m in (rows, cols))
    return matmul(matmul(rows, x), cols.T)


def _bilinear_matrix(n_in, n_out, scale, align_corners):
    """(n_out, n_in) matrix of linear-interpolation weights along one axis, PyTorch's coordinates."""
    out = np.arange(n_out, dtype=np.float64)
    if align_corners:
        source = out * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        step = n_in / n_out if scale is None else 1.0 / scale
        source = np.maximum((out + 0.5) * step - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    frac = source - low
    matrix = np.zeros((n_out, n_in))
    np.add.at(matrix, (np.arange(n_out), low), 1 - frac)
    np.add.at(matrix, (np.arange(n_out), high), frac)
    return matrix


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=False):
    """Resize (N, C, H, W) by "nearest" or "bilinear" sampling, as torch.nn.functional.interpolate."""
    x = as_tensor(x)
    _require_4d("interpolate", x)
    _require_float("interpolate", input=x)
    (oh, ow), scales = _output_size("interpolate", x, size, scale_factor)
    _require("interpolate", oh >= 1 and ow >= 1, f"output size {(oh, ow)} must be positive")
    scales = scales or (None, None)
    h, w = x.shape[2:]
    if mode == "nearest":
        rows, cols = _nearest_index(h, oh, scales[0]), _nearest_index(w, ow, scales[1])
        xp = backend.get_array_module(x.data)
        return GetItem.apply(x, index=(slice(None), slice(None), xp.asarray(rows)[:, None], xp.asarray(cols)[None, :]))
    if mode == "bilinear":
        return _resample(x, _bilinear_matrix(h, oh, scales[0], align_corners),
                         _bilinear_matrix(w, ow, scales[1], align_corners))
    raise ValueError(f"interpolate: unknown mode {mode!r}; use 'nearest' or 'bilinear'")


class ConstantPad(Function):
    @staticmethod
    def forward(ctx, x, widths, value):
        ctx.region = tuple(slice(before, before + n) for (before, _), n in zip(widths, x.shape))
        return backend.get_array_module(x).pad(x, widths, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.region]


class EdgePad(Function):
    """Pad with the input's own values: "reflect" (mirror without repeating the edge) or
    "replicate" (repeat the edge), the forward by ``pad`` of the array module. The backward
    folds each padded border back onto the values it copied, axis by axis (the padding is one
    per axis, composed): a mirrored block is added flipped, a replicated one summed into the
    edge."""

    @staticmethod
    def forward(ctx, x, widths, mode):
        ctx.widths, ctx.mode = widths, mode
        return backend.get_array_module(x).pad(x, widths, mode="reflect" if mode == "reflect" else "edge")

    @staticmethod
    def backward(ctx, grad):
        xp = backend.get_array_module(grad)
        for axis, (before, after) in enumerate(ctx.widths):
            if before or after:
                grad = _fold_border(xp, grad, axis, before, after, ctx.mode)
        return grad


def _fold_border(xp, grad, axis, before, after, mode):
    """The gradient of the unpadded span of ``axis``, with its padded borders added back."""
    n = grad.shape[axis] - before - after

    def along(start, stop):
        return (slice(None),) * axis + (slice(start, stop),)

    inner = grad[along(before, before + n)].copy()
    left, right = grad[along(0, before)], grad[along(before + n, None)]
    if mode == "reflect":  # padded position before - k reads k, before + n - 1 + k reads n - 1 - k
        inner[along(1, before + 1)] += xp.flip(left, axis)
        inner[along(n - 1 - after, n - 1)] += xp.flip(right, axis)
    else:
        inner[along(0, 1)] += left.sum(axis=axis, keepdims=True)
        inner[along(n - 1, n)] += right.sum(axis=axis, keepdims=True)
    return inner


def pad(x, pad, mode="constant", value=0.0):
    """Pad the last dimensions, torch-style: ``pad=(left, right, top, bottom, ...)``.

    Modes: "constant" (with ``value``), "reflect" (mirror without repeating the edge; each
    width must be smaller than its dimension) and "replicate" (repeat the edge; the dimension
    must not be empty).
    """
    x = as_tensor(x)
    _require("pad", len(pad) % 2 == 0 and len(pad) // 2 <= x.ndim,
             f"pad must hold (before, after) pairs for at most {x.ndim} dimensions, got {pad}")
    _require("pad", all(_is_int(p) and p >= 0 for p in pad), f"pad widths must be non-negative ints, got {pad}")
    pairs = [(int(pad[i]), int(pad[i + 1])) for i in range(0, len(pad), 2)]
    widths = tuple([(0, 0)] * (x.ndim - len(pairs)) + pairs[::-1])
    if mode == "constant":
        return ConstantPad.apply(x, widths=widths, value=value)
    _require("pad", mode in ("reflect", "replicate"), f"unknown mode {mode!r}; use constant, reflect or replicate")
    for axis, (before, after) in enumerate(widths):
        n = x.shape[axis]
        if (before or after) and mode == "reflect":
            _require("pad", max(before, after) < n,
                     f"reflect padding ({before}, {after}) must be smaller than dimension {axis} of size {n}")
        elif before or after:
            _require("pad", n > 0, f"replicate padding ({before}, {after}) needs dimension {axis} to be non-empty")
    return EdgePad.apply(x, widths=widths, mode=mode)
