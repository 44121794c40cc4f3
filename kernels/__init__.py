"""Compute kernels for minigrad: one contract, three implementations.

``kernels.reference`` (plain NumPy) is the specification; ``kernels.cpu`` (Numba) and
``kernels.gpu`` (CuPy) implement the same functions with the same signatures, and parity
tests hold them to the reference. This package imports NumPy only; Numba and CuPy are
imported when their backend is first asked for.

The contract
------------
Layout NCHW. Arrays are float32 or float64, all of one dtype per call, and C-contiguous
(callers pass ``ascontiguousarray``); every function returns freshly allocated arrays of
that dtype and never writes to its inputs. Every result for image n depends on image n
alone: bitwise the same in any batch. NaN and infinities propagate as in PyTorch (each
backend is tested with them at random places). Geometry arguments are pairs of Python ints: ``stride=(sh, sw)``,
``padding=(ph, pw)``, ``dilation=(dh, dw)``, ``kernel_size=(kh, kw)``. Output sizes use
floor division, as PyTorch does with ``ceil_mode=False``::

    oh = (h + 2*ph - dh*(kh - 1) - 1) // sh + 1

conv2d_forward(x, w, b, stride, padding, dilation, groups, relu=False) -> y
    x (N, C, H, W), w (O, C // groups, KH, KW), b (O,) or None; y (N, O, OH, OW).
    y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * xpad[n, g*C/groups + c, i*sh + p*dh, j*sw + q*dw]
    with g = o // (O / groups) and xpad the zero-padded input; then max(y, 0) if ``relu``
    (the fused epilogue: one pass less over y). Output pixels whose receptive fields (the
    group's channels under the kernel's taps, padding included) hold bitwise-equal values get
    bitwise-equal outputs, whatever the algorithm (``kernels/patches.py`` says why).
conv2d_backward_data(gy, w, x_shape, stride, padding, dilation, groups, relu_mask=None, relu_rule=None) -> gx
    The gradient of sum(gy * conv2d_forward(x, w, None, ...)) with respect to x. With
    ``relu_rule`` (the backward of conv2d_forward(..., relu=True)), gy is first put through
    relu_backward(gy, relu_mask, relu_rule), in the same pass that reads it where the
    backend can (the mask is not read under "deconvnet" and may be None).
conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation, groups) -> gw
    The gradient of sum(gy * conv2d_forward(x, w, None, ...)) with respect to w.
    (The bias gradient is gy.sum((0, 2, 3)) and needs no kernel.)
bias_relu_forward(x, b) -> y
    y = max(x + b[None, :, None, None], 0): the fused epilogue of a conv followed by ReLU.
max_pool2d_forward(x, kernel_size, stride, padding) -> (y, argmax)
    argmax (N, C, OH, OW) holds the flat index h*W + w of the winning input pixel in its
    plane, in the narrowest integer type that holds H*W - 1 (``geometry.argmax_dtype``).
    Padding never wins; ties go to the first maximum in row-major window order (strict ">");
    a NaN beats everything, a later NaN an earlier one (PyTorch's rule). Requires
    padding <= kernel_size // 2 so every window holds a real pixel.
max_pool2d_backward(gy, argmax, x_shape, kernel_size, stride, padding) -> gx
    gx[n, c].flat[argmax[n, c, i, j]] += gy[n, c, i, j]; overlapping windows accumulate.
avg_pool2d_forward(x, kernel_size, stride, padding, count_include_pad) -> y
    The window mean; padded zeros count in the divisor iff count_include_pad. Requires
    padding <= kernel_size // 2, as max pooling does.
avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, count_include_pad) -> gx
relu_forward(x) -> y
    y = max(x, 0).
relu_backward(gy, x, rule) -> gx
    rule "standard":  gx = gy where not x <= 0, else 0            (the true gradient)
    rule "deconvnet": gx = gy where not gy <= 0, else 0           (Zeiler & Fergus 2014)
    rule "guided":    gx = gy where neither x nor gy is <= 0      (Springenberg et al. 2015)
    x may be the forward input, its output or the boolean mask ~(y <= 0): all are "positive"
    at the same places. "not <= 0" lets a NaN pass, as PyTorch does.
lrn_forward(x, size, alpha, beta, k) -> y
    Local response normalization across channels (Krizhevsky et al. 2012), PyTorch's form:
    y[:, c] = x[:, c] / (k + alpha / size * sum_{c' = c - size//2}^{c + (size-1)//2} x[:, c']**2) ** beta
    with out-of-range channels counting as zero.
lrn_backward(gy, x, y, size, alpha, beta, k) -> gx
matmul(a, b) -> a @ b
    NumPy's matmul (operands of at least two dimensions, leading ones broadcast), here so
    that a backend can run the fully connected layers' products on its own threads.
"""

import importlib
import os

BACKENDS = ("reference", "numba", "cupy")

CONTRACT = (
    "conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight", "bias_relu_forward",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "relu_forward", "relu_backward", "lrn_forward", "lrn_backward", "matmul",
)

_MODULES = {"reference": "kernels.reference", "numba": "kernels.cpu", "cupy": "kernels.gpu"}
_REQUIRES = {"numba": "numba", "cupy": "cupy"}
_EXTRAS = {"numba": "numba (pip install numba)", "cupy": 'cupy (pip install -e ".[gpu]")'}


def load(name):
    """Return the kernel module for backend ``name`` ("reference", "numba" or "cupy")."""
    if name not in _MODULES:
        raise ValueError(f"unknown kernel backend {name!r}; choose one of {', '.join(BACKENDS)}")
    try:
        if name in _REQUIRES:
            importlib.import_module(_REQUIRES[name])
        return importlib.import_module(_MODULES[name])
    except ImportError as error:
        missing = getattr(error, "name", None) or str(error)
        raise ImportError(
            f"kernel backend {name!r} needs {_EXTRAS.get(name, missing)}; "
            f"it could not be imported ({error})"
        ) from error


def default_cpu_backend():
    """The CPU backend to use: $MINIGRAD_BACKEND if set, else numba when it imports, else reference."""
    chosen = os.environ.get("MINIGRAD_BACKEND")
    if chosen:
        if chosen not in ("reference", "numba"):
            raise ValueError(f"MINIGRAD_BACKEND={chosen!r} is not a CPU backend; use 'reference' or 'numba'")
        return chosen
    try:
        importlib.import_module("numba")
    except ImportError:
        return "reference"
    return "numba"
