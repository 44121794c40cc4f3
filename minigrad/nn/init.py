"""In-place initializers, PyTorch's ``torch.nn.init`` with the same names and formulas.

``nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")``. All draw from
``minigrad.random_generator()`` on the CPU (so ``minigrad.manual_seed`` makes models
reproducible) and copy into the tensor's device and dtype.
"""

import contextlib
import math
import threading

import numpy as np

from minigrad import backend
from minigrad.seeding import random_generator

__all__ = ["calculate_gain", "constant_", "default_init_skipped", "fan_in_and_fan_out", "skip_init", "kaiming_normal_", "kaiming_uniform_", "normal_", "ones_",
           "uniform_", "xavier_uniform_", "zeros_"]



def fan_in_and_fan_out(shape):
    """(fan_in, fan_out) of a weight: (in, out) for Linear, times the kernel area for Conv2d."""
    if len(shape) < 2:
        raise ValueError(f"fan-in and fan-out need a weight with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity, a=0.0):
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    raise ValueError(f"unknown nonlinearity {nonlinearity!r}")


def _fill(tensor, values):
    """Write host values into ``tensor.data`` in place (any device, the tensor's dtype)."""
    backend.copy_into(tensor.data, np.asarray(values))
    return tensor


def uniform_(tensor, low=0.0, high=1.0):
    """Fill with U(low, high) from minigrad's generator."""
    return _fill(tensor, random_generator().uniform(low, high, size=tensor.shape))


def normal_(tensor, mean=0.0, std=1.0):
    """Fill with N(mean, std^2) from minigrad's generator."""
    return _fill(tensor, random_generator().normal(mean, std, size=tensor.shape))


def constant_(tensor, value):
    return _fill(tensor, np.full(tensor.shape, value))


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He et al. (2015) uniform init: U(-b, b) with b = gain * sqrt(3 / fan).

    PyTorch's default for Conv2d and Linear weights is ``a=sqrt(5)``, which gives
    b = 1/sqrt(fan_in).
    """
    fan = fan_in_and_fan_out(tensor.shape)[0 if mode == "fan_in" else 1]
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """He et al. (2015) normal init: N(0, (gain / sqrt(fan))^2) (torchvision VGG uses fan_out, relu)."""
    fan = fan_in_and_fan_out(tensor.shape)[0 if mode == "fan_in" else 1]
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan))


def xavier_uniform_(tensor, gain=1.0):
    """Glorot & Bengio (2010): U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fan_in_and_fan_out(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


_skipping = threading.local()


@contextlib.contextmanager
def skip_init():
    """Layers built inside keep zero parameters instead of drawing PyTorch's defaults: for models
    that then load every weight from a file or apply their own scheme (drawing VGG16's 138M
    default numbers first would only waste seconds)."""
    previous = getattr(_skipping, "on", False)
    _skipping.on = True
    try:
        yield
    finally:
        _skipping.on = previous


def default_init_skipped():
    """True inside :func:`skip_init`."""
    return getattr(_skipping, "on", False)
