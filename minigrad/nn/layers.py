"""The layers of the classic CNNs, PyTorch-compatible: each holds its settings and parameters
and calls :mod:`minigrad.functional`.

Parameters get PyTorch's default initializations (:mod:`minigrad.nn.init`). There is no
in-place arithmetic on tensors here: ``inplace=`` arguments are accepted for compatibility with
model definitions written for PyTorch and ignored.
"""

import math

import numpy as np

from minigrad import functional as F
from minigrad.nn import init
from minigrad.nn.module import Module, Parameter

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "Conv2d", "Dropout", "Flatten", "Identity", "LeakyReLU",
           "Linear", "LocalResponseNorm", "MaxPool2d", "ReLU", "Upsample"]


def _empty_parameter(shape, dtype):
    return Parameter(np.zeros(shape, dtype=np.dtype(dtype)))


def _reset_weight_and_bias(weight, bias):
    """PyTorch's default for Conv2d/Linear: weight kaiming_uniform(a=sqrt(5)), bias U(±1/sqrt(fan_in)),
    unless built inside ``nn.init.skip_init()``."""
    if init.default_init_skipped():
        return
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = init.fan_in_and_fan_out(weight.shape)[0]
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(bias, -bound, bound)


_positive_int = F._positive_int


def _number(value, name, low=-math.inf, high=math.inf, low_open=False):
    """``value`` as a float in [low, high] (or (low, high] with ``low_open``), else a clear error."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not (low < value if low_open else low <= value) or not value <= high:
        raise ValueError(f"{name} must lie in {'(' if low_open else '['}{low}, {high}], got {value!r}")
    return value


class Conv2d(Module):
    """2-D convolution over (N, C, H, W) inputs, weight (out, in / groups, kh, kw).

    Initialized as PyTorch does: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    fan_in = in_channels / groups * kh * kw.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, dtype=np.float32):
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.kernel_size, self.stride, self.padding, self.dilation, self.groups = F.conv_arguments(
            kernel_size, stride, padding, dilation, groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        self.weight = _empty_parameter((out_channels, in_channels // groups) + self.kernel_size, dtype)
        if bias:
            self.bias = _empty_parameter((out_channels,), dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        _reset_weight_and_bias(self.weight, self.bias)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Linear(Module):
    """y = x W^T + b with W of shape (out_features, in_features), PyTorch's layout and init."""

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        self.weight = _empty_parameter((out_features, in_features), dtype)
        if bias:
            self.bias = _empty_parameter((out_features,), dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        _reset_weight_and_bias(self.weight, self.bias)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Returns its input (a placeholder where a layer is removed)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class ReLU(Module):
    """max(x, 0). Its backward rule (standard / deconvnet / guided) is chosen at backward time with
    ``minigrad.relu_backward(...)``. ``inplace`` is accepted for PyTorch compatibility and ignored."""

    def __init__(self, inplace=False):
        super().__init__()

    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    """x for x > 0, negative_slope * x otherwise."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = _number(negative_slope, "negative_slope")

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class MaxPool2d(Module):
    """Max pooling; ``stride`` defaults to ``kernel_size``. Only dilation=1 and ceil_mode=False."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        if F._pair(dilation, "dilation", 1) != (1, 1) or ceil_mode:
            raise NotImplementedError("MaxPool2d supports only dilation=1 and ceil_mode=False")
        F.pool_arguments(kernel_size, stride, padding)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                "dilation=1, ceil_mode=False")


class AvgPool2d(Module):
    """Average pooling; ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        if ceil_mode:
            raise NotImplementedError("AvgPool2d supports only ceil_mode=False")
        F.pool_arguments(kernel_size, stride, padding)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average-pool any input to ``output_size`` (int or pair), PyTorch's cell boundaries."""

    def __init__(self, output_size):
        super().__init__()
        F._pair(output_size, "output_size", 1)
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training mode; the identity in eval mode."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"dropout probability must lie in [0, 1], got {p!r}")
        self.p = float(p)

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace=False"


class BatchNorm2d(Module):
    """Batch normalization over (N, C, H, W) (Ioffe & Szegedy, 2015), PyTorch's state and semantics.

    Parameters ``weight`` (ones) and ``bias`` (zeros) when ``affine``; buffers ``running_mean``
    (zeros), ``running_var`` (ones) and ``num_batches_tracked`` (int64 0) when
    ``track_running_stats``, so torch BatchNorm2d state_dicts load unchanged. Training mode
    normalizes with the batch statistics and updates the running ones (the variance unbiased) with
    ``momentum``, or with a cumulative average when ``momentum=None``; eval mode uses the running
    statistics.
    """

    _optional_state = ("num_batches_tracked",)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features")
        self.eps = _number(eps, "eps", 0.0, low_open=True)
        self.momentum = None if momentum is None else _number(momentum, "momentum", 0.0, 1.0)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        dtype = np.dtype(dtype)
        if self.affine:
            self.weight = Parameter(np.ones(num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"BatchNorm2d expects an input of shape (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm2d({self.num_features}) got an input with {x.shape[1]} channels (shape {tuple(x.shape)})"
            )
        use_batch_stats = self.training or not self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1  # in place on the 0-d buffer
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        update = self.training and self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean if update or not use_batch_stats else None,
            self.running_var if update or not use_batch_stats else None,
            self.weight, self.bias, training=use_batch_stats, momentum=momentum, eps=self.eps,
        )

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class LocalResponseNorm(Module):
    """Cross-channel local response normalization (Krizhevsky et al., 2012), PyTorch's formula:
    b_c = a_c / (k + alpha / size * sum_{c' near c} a_{c'}^2) ** beta."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size = _positive_int(size, "size")
        self.alpha, self.beta, self.k = _number(alpha, "alpha"), _number(beta, "beta"), _number(k, "k")

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class Flatten(Module):
    """Flatten dimensions ``start_dim`` .. ``end_dim`` into one (default: all but the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        if not (F._is_int(start_dim) and F._is_int(end_dim)):
            raise TypeError(f"start_dim and end_dim must be ints, got {start_dim!r} and {end_dim!r}")
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x):
        ndim = x.ndim
        start = self.start_dim % ndim if ndim else 0
        end = self.end_dim % ndim if ndim else 0
        if start > end:
            raise ValueError(f"Flatten: start_dim {self.start_dim} comes after end_dim {self.end_dim} for shape {x.shape}")
        shape = tuple(x.shape)
        return x.reshape(shape[:start] + (-1,) + shape[end + 1:])

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Upsample(Module):
    """Resize by ``size`` or ``scale_factor`` with "nearest" or "bilinear" sampling."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample needs exactly one of size and scale_factor")
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"Upsample mode must be 'nearest' or 'bilinear', got {mode!r}")
        if mode == "nearest" and align_corners:
            raise ValueError("align_corners applies only to mode='bilinear'")
        if size is not None:
            F._pair(size, "size", 1)
        if scale_factor is not None:
            scale_factor = (_number(scale_factor, "scale_factor", 0.0, low_open=True) if np.isscalar(scale_factor)
                            else tuple(_number(s, "scale_factor", 0.0, low_open=True) for s in scale_factor))
        self.size, self.scale_factor, self.mode, self.align_corners = size, scale_factor, mode, align_corners

    def forward(self, x):
        return F.interpolate(x, size=self.size, scale_factor=self.scale_factor, mode=self.mode,
                             align_corners=bool(self.align_corners))

    def extra_repr(self):
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"
