"""Gradient checking by central finite differences in float64, for users' own ops as for ours.

``minigrad.gradcheck(f, inputs)`` backpropagates a random upstream gradient u through
``f(*inputs)`` and compares, for every input, the backprop gradient with the numerical
derivative of <f(x), u> along random directions (the directional test of Chainer's
``check_backward``: two forward evaluations per direction, whatever the input's size), and
for small inputs element by element. Every op of minigrad is held to it by Hypothesis tests
over random shapes; a new ``Function`` should be too::

    minigrad.gradcheck(lambda x, w: my_op(x, w), [x64, w64])
"""

import numpy as np

from minigrad.config import no_grad
from minigrad.tensor import tensor

__all__ = ["GradcheckError", "gradcheck"]


def _scalar(f, arrays, u):
    with no_grad():
        out = f(*[tensor(a) for a in arrays])
    return float(np.sum(out.numpy() * u))


class GradcheckError(AssertionError):
    """A backward pass disagrees with finite differences; the message names the input and both values."""


def gradcheck(f, inputs, eps=1e-6, rtol=1e-5, atol=1e-8, directions=3, seed=0, full_below=40):
    """Check minigrad's gradients of ``f`` (Tensors -> Tensor) at ``inputs`` (arrays, taken as float64).

    Compares backprop with central differences along ``directions`` random unit directions per
    input, and element by element for inputs of at most ``full_below`` elements. Returns True,
    or raises :class:`GradcheckError` at the first disagreement beyond ``atol + rtol * |value|``.
    """
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a, dtype=np.float64) for a in inputs]
    tensors = [tensor(a, requires_grad=True) for a in arrays]
    out = f(*tensors)
    u = rng.uniform(-1.0, 1.0, size=out.shape)
    out.backward(u)
    for i, (a, t) in enumerate(zip(arrays, tensors)):
        analytic = np.zeros_like(a) if t.grad is None else t.grad
        for _ in range(directions):
            r = rng.standard_normal(a.shape)
            r /= np.linalg.norm(r) or 1.0
            shifted = [b.copy() for b in arrays]
            shifted[i] = a + eps * r
            plus = _scalar(f, shifted, u)
            shifted[i] = a - eps * r
            minus = _scalar(f, shifted, u)
            numeric = (plus - minus) / (2 * eps)
            backprop = float(np.sum(analytic * r))
            if not abs(numeric - backprop) <= atol + rtol * max(abs(numeric), abs(backprop)):
                raise GradcheckError(
                    f"input {i}: directional derivative by backprop {backprop!r} != finite differences {numeric!r}")
        if a.size <= full_below:
            for index in np.ndindex(a.shape):
                shifted = [b.copy() for b in arrays]
                shifted[i][index] += eps
                plus = _scalar(f, shifted, u)
                shifted[i][index] -= 2 * eps
                minus = _scalar(f, shifted, u)
                numeric = (plus - minus) / (2 * eps)
                if not abs(numeric - analytic[index]) <= atol + rtol * max(abs(numeric), abs(analytic[index])):
                    raise GradcheckError(
                        f"input {i}, element {index}: backprop {analytic[index]!r} != finite differences {numeric!r}")
    return True
