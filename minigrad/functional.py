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


def _pair(value, name):
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


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


class Conv2d(Function):
    """2-D cross-correlation. Each input is saved only when the other one's gradient needs it."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups):
        x, w = _contiguous(x), _contiguous(w)
        ctx.geometry = stride, padding, dilation, groups
        ctx.shapes = x.shape, w.shape
        needs_x, needs_w = ctx.needs_input_grad[:2]
        ctx.save_for_backward(x if needs_w else None, w if needs_x else None)
        return backend.kernels_for(x).conv2d_forward(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        (x_shape, w_shape), kern = ctx.shapes, backend.kernels_for(grad)
        grad = _contiguous(grad)
        gx = kern.conv2d_backward_data(grad, w, x_shape, *ctx.geometry) if ctx.needs_input_grad[0] else None
        gw = kern.conv2d_backward_weight(grad, x, w_shape, *ctx.geometry) if ctx.needs_input_grad[1] else None
        gb = grad.sum(axis=(0, 2, 3)) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Convolve x (N, C, H, W) with w (O, C // groups, KH, KW), add b (O,)."""
    x, w, b = as_tensor(x), as_tensor(w), None if b is None else as_tensor(b)
    _require_float("conv2d", input=x, weight=w, bias=b)
    _require_same_dtype("conv2d", x, w, b)
    _require_4d("conv2d", x)
    _require("conv2d", w.ndim == 4, f"weight must have shape (O, C/groups, KH, KW), got {w.shape}")
    _require("conv2d", groups >= 1 and x.shape[1] % groups == 0 and w.shape[0] % groups == 0,
             f"groups={groups} must divide the input channels ({x.shape[1]}) and output channels ({w.shape[0]})")
    _require("conv2d", w.shape[1] * groups == x.shape[1],
             f"weight {w.shape} expects {w.shape[1] * groups} input channels, the input has {x.shape[1]}")
    _require("conv2d", b is None or b.shape == (w.shape[0],), f"bias must have shape ({w.shape[0]},), got {b and b.shape}")
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    _require("conv2d", min(stride) >= 1 and min(dilation) >= 1 and min(padding) >= 0,
             f"stride {stride} and dilation {dilation} must be positive and padding {padding} non-negative")
    for size, k, s, p, d in zip(x.shape[2:], w.shape[2:], stride, padding, dilation):
        _require("conv2d", size + 2 * p - d * (k - 1) - 1 >= 0,
                 f"kernel {w.shape[2:]} (dilation {dilation}) is larger than the padded input {x.shape[2:]}")
    return Conv2d.apply(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=int(groups))


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
    """max(x, 0). The backward rule is read when backward runs (see ``minigrad.relu_backward``)."""

    @staticmethod
    def forward(ctx, x):
        y = backend.kernels_for(x).relu_forward(_contiguous(x))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return backend.kernels_for(y).relu_backward(_contiguous(grad), y, config.current_relu_rule())


def relu(x):
    x = as_tensor(x)
    _require_float("relu", input=x)
    return ReLU.apply(x)


class LeakyReLU(Function):
    @staticmethod
    def forward(ctx, x, slope):
        xp = backend.get_array_module(x)
        ctx.save_for_backward(x)
        ctx.slope = slope
        return xp.where(x > 0, x, x * x.dtype.type(slope))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * backend.get_array_module(x).where(x > 0, 1, ctx.slope).astype(grad.dtype)


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
    _require(op, -x.ndim <= axis < x.ndim, f"axis {axis} is out of range for shape {x.shape}")
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
    kernel_size = _pair(kernel_size, "kernel_size")
    stride = kernel_size if stride is None else _pair(stride, "stride")
    padding = _pair(padding, "padding")
    _require(op, min(kernel_size) >= 1 and min(stride) >= 1, f"kernel_size {kernel_size} and stride {stride} must be positive")
    _require(op, all(0 <= p <= k // 2 for p, k in zip(padding, kernel_size)),
             f"padding {padding} must be between 0 and half the kernel size {kernel_size}")
    _require(op, all(n + 2 * p >= k for n, p, k in zip(x.shape[2:], padding, kernel_size)),
             f"kernel {kernel_size} is larger than the padded input {x.shape[2:]}")
    return kernel_size, stride, padding


class MaxPool2d(Function):
    """Max over windows; backward routes each gradient to the window's argmax."""

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


def _adaptive_matrix(n_in, n_out):
    """(n_out, n_in) averaging matrix: row i averages input cells floor(i*n/m) .. ceil((i+1)*n/m) - 1."""
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        start, stop = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix


def _resample(x, rows, cols):
    """Apply the separable linear map y = rows @ x @ cols.T over the last two axes."""
    xp = backend.get_array_module(x.data)
    rows, cols = (xp.asarray(m, dtype=x.dtype) for m in (rows, cols))
    return matmul(matmul(rows, x), cols.T)


def adaptive_avg_pool2d(x, output_size):
    """Average-pool to a fixed output size, PyTorch's cell boundaries; any input size works."""
    x = as_tensor(x)
    _require_float("adaptive_avg_pool2d", input=x)
    _require_4d("adaptive_avg_pool2d", x)
    oh, ow = _pair(output_size, "output_size")
    h, w = x.shape[2:]
    _require("adaptive_avg_pool2d", oh >= 1 and ow >= 1, f"output_size {(oh, ow)} must be positive")
    if (oh, ow) == (h, w):
        return x
    if h % oh == 0 and w % ow == 0:
        return avg_pool2d(x, (h // oh, w // ow))
    return _resample(x, _adaptive_matrix(h, oh), _adaptive_matrix(w, ow))


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
    _require("local_response_norm", int(size) >= 1, f"size must be positive, got {size}")
    return LocalResponseNorm.apply(x, size=int(size), alpha=float(alpha), beta=float(beta), k=float(k))


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


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalize over every axis but the channels (axis 1), Ioffe & Szegedy 2015.

    In training the batch statistics are used and ``running_mean`` / ``running_var`` (plain
    arrays, or None) are updated in place with ``momentum``, the variance unbiased as in
    PyTorch; in evaluation the running statistics are used.
    """
    x = as_tensor(x)
    _require_float("batch_norm", input=x)
    _require("batch_norm", x.ndim >= 2, f"expected an input with a channel axis, got shape {x.shape}")
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if training:
        count = x.size // x.shape[1]
        _require("batch_norm", count > 1, f"training needs more than one value per channel, got shape {x.shape}")
        mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean.data.reshape(-1)
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var.data.reshape(-1) * (count / (count - 1))
    else:
        _require("batch_norm", running_mean is not None and running_var is not None,
                 "evaluation needs running_mean and running_var")
        mean, var = running_mean.reshape(shape), running_var.reshape(shape)
    y = (x - mean) / ((var + eps) ** 0.5)
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


def _source_index(n, before, after, mode):
    """Which input position each padded position reads, for "reflect" and "replicate"."""
    index = np.arange(-before, n + after)
    if mode == "replicate":
        return np.clip(index, 0, n - 1)
    index = np.abs(index)
    return np.where(index > n - 1, 2 * (n - 1) - index, index)


def pad(x, pad, mode="constant", value=0.0):
    """Pad the last dimensions, torch-style: ``pad=(left, right, top, bottom, ...)``.

    Modes: "constant" (with ``value``), "reflect" (mirror without repeating the edge; each
    width must be smaller than its dimension) and "replicate" (repeat the edge).
    """
    x = as_tensor(x)
    _require("pad", len(pad) % 2 == 0 and len(pad) // 2 <= x.ndim,
             f"pad must hold (before, after) pairs for at most {x.ndim} dimensions, got {pad}")
    _require("pad", all(int(p) >= 0 for p in pad), f"pad widths must be non-negative, got {pad}")
    pairs = [(int(pad[i]), int(pad[i + 1])) for i in range(0, len(pad), 2)]
    widths = [(0, 0)] * (x.ndim - len(pairs)) + pairs[::-1]
    if mode == "constant":
        return ConstantPad.apply(x, widths=tuple(widths), value=value)
    _require("pad", mode in ("reflect", "replicate"), f"unknown mode {mode!r}; use constant, reflect or replicate")
    xp = backend.get_array_module(x.data)
    for axis, (before, after) in enumerate(widths):
        if before or after:
            n = x.shape[axis]
            _require("pad", mode != "reflect" or max(before, after) < n,
                     f"reflect padding ({before}, {after}) must be smaller than dimension {axis} of size {n}")
            index = (slice(None),) * axis + (xp.asarray(_source_index(n, before, after, mode)),)
            x = GetItem.apply(x, index=index)
    return x
