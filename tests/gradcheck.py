"""Gradient checking by central finite differences in float64.

``check_gradients(f, inputs)`` backpropagates a random upstream gradient u through
``f(*inputs)`` and compares, for every input, the backprop gradient with the numerical
derivative of <f(x), u> along random directions (the directional test of Chainer's
``check_backward``: two forward evaluations per direction, whatever the input's size), and
for small inputs element by element.
"""

import numpy as np

import minigrad


def _scalar(f, arrays, u):
    with minigrad.no_grad():
        out = f(*[minigrad.tensor(a) for a in arrays])
    return float(np.sum(out.numpy() * u))


def check_gradients(f, inputs, eps=1e-6, rtol=1e-5, atol=1e-8, directions=3, seed=0, full_below=40):
    """Assert that minigrad's gradients of ``f`` at ``inputs`` (float64 arrays) are right.

    Raises AssertionError naming the input and the two values when they differ.
    """
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a, dtype=np.float64) for a in inputs]
    tensors = [minigrad.tensor(a, requires_grad=True) for a in arrays]
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
            assert abs(numeric - backprop) <= atol + rtol * max(abs(numeric), abs(backprop)), (
                f"input {i}: directional derivative by backprop {backprop!r} != finite differences {numeric!r}"
            )
        if a.size <= full_below:
            for index in np.ndindex(a.shape):
                shifted = [b.copy() for b in arrays]
                shifted[i][index] += eps
                plus = _scalar(f, shifted, u)
                shifted[i][index] -= 2 * eps
                minus = _scalar(f, shifted, u)
                numeric = (plus - minus) / (2 * eps)
                assert abs(numeric - analytic[index]) <= atol + rtol * max(abs(numeric), abs(analytic[index])), (
                    f"input {i}, element {index}: backprop {analytic[index]!r} != finite differences {numeric!r}"
                )
