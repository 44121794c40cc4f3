"""Shape and geometry checks shared by the three kernel backends.

Every public kernel validates its arguments here before touching data, so the reference,
Numba and CUDA backends accept and refuse exactly the same inputs with the same messages:
floor-mode output sizes, pool padding at most half the kernel, weight shape
(O, C // groups, KH, KW). (Jitted loops cannot raise without losing parallelism, which is
one more reason the checks live outside them.)
"""

import operator

import numpy as np


def pair(name, value, minimum):
    """Return ``value`` as a pair of Python ints, each at least ``minimum``."""
    try:
        first, second = (operator.index(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of ints (height, width), got {value!r}") from None
    if first < minimum or second < minimum:
        raise ValueError(f"{name} must be >= {minimum} in both dimensions, got {value!r}")
    return first, second


def out_size(size, kernel, stride, padding, dilation=1):
    """Floor-mode output length, as PyTorch computes it with ceil_mode=False."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def shape4(name, shape):
    shape = tuple(operator.index(s) for s in shape)
    if len(shape) != 4:
        raise ValueError(f"{name} must be 4-D (N, C, H, W), got shape {shape}")
    return shape


def conv_geometry(x_shape, w_shape, stride, padding, dilation, groups):
    """Validate a convolution; return (stride, padding, dilation, groups, (OH, OW))."""
    n, c, h, w = shape4("x", x_shape)
    o, cg, kh, kw = shape4("w", w_shape)
    stride = pair("stride", stride, 1)
    padding = pair("padding", padding, 0)
    dilation = pair("dilation", dilation, 1)
    groups = operator.index(groups)
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if c % groups or o % groups:
        raise ValueError(
            f"input channels ({c}) and output channels ({o}) must both be divisible by "
            f"groups ({groups}); x shape {x_shape}, w shape {w_shape}"
        )
    if cg != c // groups or kh < 1 or kw < 1:
        raise ValueError(
            f"weight shape {w_shape} does not fit input shape {x_shape} with groups={groups}: "
            f"expected w of shape (O, {c // groups}, KH, KW) with KH, KW >= 1"
        )
    oh = out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = out_size(w, kw, stride[1], padding[1], dilation[1])
    if oh < 1 or ow < 1:
        raise ValueError(
            f"convolution output size ({oh}, {ow}) is not positive: input {x_shape}, weight "
            f"{w_shape}, stride {stride}, padding {padding}, dilation {dilation}"
        )
    return stride, padding, dilation, groups, (oh, ow)


def pool_geometry(x_shape, kernel_size, stride, padding):
    """Validate a pooling; return (kernel_size, stride, padding, (OH, OW))."""
    shape4("x", x_shape)
    h, w = x_shape[2], x_shape[3]
    kernel_size = pair("kernel_size", kernel_size, 1)
    stride = pair("stride", stride, 1)
    padding = pair("padding", padding, 0)
    if padding[0] > kernel_size[0] // 2 or padding[1] > kernel_size[1] // 2:
        raise ValueError(
            f"pool padding {padding} must be at most half the kernel size {kernel_size} "
            f"(padding <= kernel_size // 2) so that every window holds a real pixel"
        )
    oh = out_size(h, kernel_size[0], stride[0], padding[0])
    ow = out_size(w, kernel_size[1], stride[1], padding[1])
    if oh < 1 or ow < 1:
        raise ValueError(
            f"pooling output size ({oh}, {ow}) is not positive: input {tuple(x_shape)}, "
            f"kernel_size {kernel_size}, stride {stride}, padding {padding}"
        )
    return kernel_size, stride, padding, (oh, ow)


def argmax_dtype(height, width):
    """The narrowest integer type that holds every flat in-plane index h*W + w of an
    (H, W) plane: uint8 up to 256 pixels, uint16 up to 65,536 (VGG16's 224x224), int32,
    then int64. Max-pool indices are kept for the backward pass, so their size counts."""
    pixels = height * width
    for dtype, limit in (("uint8", 2**8), ("uint16", 2**16), ("int32", 2**31)):
        if pixels <= limit:
            return np.dtype(dtype)
    return np.dtype("int64")


def check_argmax(argmax, gy_shape, plane_hw, check_range=True):
    """Refuse an argmax array that cannot come from max_pool2d_forward for this geometry:
    wrong shape, not integers, or (``check_range``: host arrays) an index outside the
    (H, W) plane."""
    if tuple(argmax.shape) != tuple(gy_shape):
        raise ValueError(f"argmax shape {tuple(argmax.shape)} does not match gy shape {tuple(gy_shape)}")
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"argmax must hold integers, got dtype {argmax.dtype}")
    h, w = plane_hw
    if check_range and argmax.size and (int(argmax.min()) < 0 or int(argmax.max()) >= h * w):
        raise ValueError(f"argmax holds indices outside the {h}x{w} input plane")


RELU_RULES = ("standard", "deconvnet", "guided")


def relu_rule_code(rule, mask, gy_shape):
    """A data gradient's fused ReLU (``relu_rule``, ``relu_mask``): -1 for none, else the rule's
    index in RELU_RULES; every rule but "deconvnet" needs a mask of gy's shape."""
    if rule is None:
        return -1
    if rule not in RELU_RULES:
        raise ValueError(f"unknown ReLU backward rule {rule!r}; valid rules are {', '.join(RELU_RULES)}")
    if rule != "deconvnet" and (mask is None or tuple(mask.shape) != tuple(gy_shape)):
        raise ValueError(f"relu_rule {rule!r} needs relu_mask of gy's shape {tuple(gy_shape)}, got "
                         f"{None if mask is None else tuple(mask.shape)}")
    return RELU_RULES.index(rule)


def check_grad_shape(gy, expected):
    if tuple(gy.shape) != tuple(expected):
        raise ValueError(f"gy has shape {tuple(gy.shape)} but the forward output has shape {tuple(expected)}")


def lrn_size(x_shape, size):
    """Validate an LRN call: a 4-D input and a positive window ``size``; returns the size."""
    shape4("x", x_shape)
    size = operator.index(size)
    if size < 1:
        raise ValueError(f"LRN size must be >= 1, got {size}")
    return size
