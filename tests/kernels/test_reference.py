"""Tests for kernels/reference.py, the specification every other kernel backend is held to.

Four kinds of evidence: (1) each function against a brute-force nested-loop version written
here straight from the contract's formulas; (2) backward functions against central finite
differences of the forward in float64; (3) torch as an oracle when installed; (4) clear
errors for bad geometry.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernels import reference as R

# ----------------------------------------------------------------------------------------
# brute-force versions, one loop per index of the contract's formulas


def out_size(size, k, s, p, d=1):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def brute_conv(x, w, b, gy, stride, padding, dilation, groups):
    """Returns y, and when gy is given also gx and gw, from explicit loops."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(wd, kw, sw, pw, dw)
    og = o // groups
    y = np.zeros((n, o, oh, ow))
    gx, gw = np.zeros(x.shape), np.zeros(w.shape)
    for b_ in range(n):
        for o_ in range(o):
            g = o_ // og
            for i in range(oh):
                for j in range(ow):
                    acc = 0.0 if b is None else b[o_]
                    for ci in range(cg):
                        for p in range(kh):
                            for q in range(kw):
                                r, s = i * sh + p * dh - ph, j * sw + q * dw - pw
                                if 0 <= r < h and 0 <= s < wd:
                                    acc += w[o_, ci, p, q] * x[b_, g * cg + ci, r, s]
                                    if gy is not None:
                                        gx[b_, g * cg + ci, r, s] += w[o_, ci, p, q] * gy[b_, o_, i, j]
                                        gw[o_, ci, p, q] += x[b_, g * cg + ci, r, s] * gy[b_, o_, i, j]
                    y[b_, o_, i, j] = acc
    return y, gx, gw


def pool_windows(h, w, kernel, stride, padding):
    """Yields (i, j, [(r, s), ...]) with the real pixels of each window in row-major order."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    for i in range(out_size(h, kh, sh, ph)):
        for j in range(out_size(w, kw, sw, pw)):
            pixels = [
                (i * sh + p - ph, j * sw + q - pw)
                for p in range(kh)
                for q in range(kw)
                if 0 <= i * sh + p - ph < h and 0 <= j * sw + q - pw < w
            ]
            yield i, j, pixels


def brute_max_pool(x, kernel_size, stride, padding):
    kernel = kernel_size
    n, c, h, w = x.shape
    oh, ow = out_size(h, kernel[0], stride[0], padding[0]), out_size(w, kernel[1], stride[1], padding[1])
    y, arg = np.zeros((n, c, oh, ow), x.dtype), np.zeros((n, c, oh, ow), np.int64)
    for b in range(n):
        for ch in range(c):
            for i, j, pixels in pool_windows(h, w, kernel, stride, padding):
                best = None
                for r, s in pixels:
                    if best is None or x[b, ch, r, s] > best:  # strict: first maximum wins
                        best, arg[b, ch, i, j] = x[b, ch, r, s], r * w + s
                y[b, ch, i, j] = best
    return y, arg


def brute_max_pool_backward(gy, arg, x_shape):
    gx = np.zeros(x_shape)
    for b, ch, i, j in np.ndindex(gy.shape):
        gx[b, ch].flat[arg[b, ch, i, j]] += gy[b, ch, i, j]
    return gx


def brute_avg_pool(x, gy, kernel, stride, padding, include_pad):
    """Returns y and (if gy is given) gx."""
    n, c, h, w = x.shape
    oh, ow = out_size(h, kernel[0], stride[0], padding[0]), out_size(w, kernel[1], stride[1], padding[1])
    y, gx = np.zeros((n, c, oh, ow)), np.zeros(x.shape)
    for b in range(n):
        for ch in range(c):
            for i, j, pixels in pool_windows(h, w, kernel, stride, padding):
                divisor = kernel[0] * kernel[1] if include_pad else len(pixels)
                y[b, ch, i, j] = sum(x[b, ch, r, s] for r, s in pixels) / divisor
                for r, s in pixels:
                    if gy is not None:
                        gx[b, ch, r, s] += gy[b, ch, i, j] / divisor
    return y, gx


def brute_lrn(x, gy, size, alpha, beta, k):
    """Returns y and (if gy is given) gx, from the forward's Jacobian written out entry by entry."""
    n, c, h, w = x.shape
    y, gx = np.zeros(x.shape), np.zeros(x.shape)
    for b, r, s in np.ndindex(n, h, w):
        window = lambda cc: [j for j in range(cc - size // 2, cc + (size - 1) // 2 + 1) if 0 <= j < c]
        d = [k + alpha / size * sum(x[b, j, r, s] ** 2 for j in window(cc)) for cc in range(c)]
        for cc in range(c):
            y[b, cc, r, s] = x[b, cc, r, s] * d[cc] ** -beta
            if gy is None:
                continue
            # dy_cc/dx_cc via the numerator, and dy_cc/dx_j via d_cc for every j in cc's window
            gx[b, cc, r, s] += gy[b, cc, r, s] * d[cc] ** -beta
            for j in window(cc):
                dd = alpha / size * 2 * x[b, j, r, s]
                gx[b, j, r, s] += gy[b, cc, r, s] * x[b, cc, r, s] * -beta * d[cc] ** (-beta - 1) * dd
    return y, gx


def numeric_grad(f, x, gy, eps=1e-6):
    """Central differences of sum(gy * f(x)) with respect to every entry of x (float64)."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        plus = np.sum(gy * f(x))
        x[idx] = old - eps
        minus = np.sum(gy * f(x))
        x[idx] = old
        g[idx] = (plus - minus) / (2 * eps)
    return g


def distinct(rng, shape):
    """Random values with no two closer than 0.05: tie-free, and finite differences never flip a max."""
    values = (rng.permutation(int(np.prod(shape))) - np.prod(shape) / 2) * 0.1
    return (values + rng.uniform(-0.02, 0.02, values.shape)).reshape(shape)


# ----------------------------------------------------------------------------------------
# Hypothesis cases


@st.composite
def conv_cases(draw, max_n=2, max_hw=7):
    groups = draw(st.integers(1, 2))
    c = groups * draw(st.integers(1, 4 // groups))
    o = groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), max_hw))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), max_hw))
    n = draw(st.integers(1, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c // groups, kh, kw))
    b = rng.standard_normal(o) if draw(st.booleans()) else None
    geometry = dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=groups)
    gy = rng.standard_normal((n, o, out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)))
    return x, wt, b, gy, geometry


@st.composite
def pool_cases(draw, max_hw=7):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h = draw(st.integers(max(1, kh - 2 * ph), max_hw))
    w = draw(st.integers(max(1, kw - 2 * pw), max_hw))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 4)), h, w)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out = shape[:2] + (out_size(h, kh, sh, ph), out_size(w, kw, sw, pw))
    return shape, dict(kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw)), rng, out


@st.composite
def lrn_cases(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    params = dict(
        size=draw(st.integers(1, 5)),
        alpha=draw(st.sampled_from([1e-4, 1e-2, 0.5])),
        beta=draw(st.sampled_from([0.75, 0.5, 1.3])),
        k=draw(st.sampled_from([1.0, 2.0, 0.5])),
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.standard_normal(shape), rng.standard_normal(shape), params


# ----------------------------------------------------------------------------------------
# (1) against brute force


@given(conv_cases())
def test_conv_matches_brute_force(case):
    x, w, b, gy, geo = case
    y, gx, gw = brute_conv(x, w, b, gy, **geo)
    np.testing.assert_allclose(R.conv2d_forward(x, w, b, **geo), y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(R.conv2d_backward_data(gy, w, x.shape, **geo), gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(R.conv2d_backward_weight(gy, x, w.shape, **geo), gw, rtol=1e-10, atol=1e-10)


@given(pool_cases())
def test_max_pool_matches_brute_force(case):
    shape, geo, rng, out = case
    x = distinct(rng, shape)
    y, arg = R.max_pool2d_forward(x, **geo)
    y_ref, arg_ref = brute_max_pool(x, **geo)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    gy = rng.standard_normal(out)
    np.testing.assert_allclose(
        R.max_pool2d_backward(gy, arg, shape, **geo), brute_max_pool_backward(gy, arg_ref, shape), atol=1e-12
    )


@given(pool_cases(), st.sampled_from([(0, 1), (0, 2), (-2, -1)]))
def test_max_pool_tie_rule_and_padding_never_wins(case, value_range):
    """Few distinct values (lots of ties), including all-negative inputs where zero padding would win."""
    shape, geo, rng, _ = case
    x = rng.integers(value_range[0], value_range[1] + 1, shape).astype(np.float64)
    y, arg = R.max_pool2d_forward(x, **geo)
    y_ref, arg_ref = brute_max_pool(x, **geo)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)


def test_max_pool_ties_pick_first_real_pixel():
    # A constant image: every window's winner is its first real pixel in row-major order.
    for fill in (1.0, -5.0, -np.inf):
        x = np.full((1, 1, 4, 4), fill)
        y, arg = R.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1))
        # windows start at rows/cols -1 and 1: the first real pixel is (max(start, 0), max(start, 0))
        np.testing.assert_array_equal(arg[0, 0], [[0 * 4 + 0, 0 * 4 + 1], [1 * 4 + 0, 1 * 4 + 1]])
        np.testing.assert_array_equal(y, fill)
    # Two equal maxima in one 2x2 window: the earlier (row-major) one wins.
    x = np.array([[[[0.0, 3.0], [3.0, 1.0]]]])
    assert R.max_pool2d_forward(x, (2, 2), (1, 1), (0, 0))[1].item() == 1


@given(pool_cases(), st.booleans())
def test_avg_pool_matches_brute_force(case, include_pad):
    shape, geo, rng, out = case
    x, gy = rng.standard_normal(shape), rng.standard_normal(out)
    y_ref, gx_ref = brute_avg_pool(x, gy, geo["kernel_size"], geo["stride"], geo["padding"], include_pad)
    np.testing.assert_allclose(R.avg_pool2d_forward(x, count_include_pad=include_pad, **geo), y_ref, atol=1e-12)
    np.testing.assert_allclose(
        R.avg_pool2d_backward(gy, shape, count_include_pad=include_pad, **geo), gx_ref, atol=1e-12
    )


@given(st.integers(0, 2**32 - 1))
def test_relu_and_bias_relu_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    x, gy, b = rng.standard_normal((2, 3, 2, 3)), rng.standard_normal((2, 3, 2, 3)), rng.standard_normal(3)
    x.flat[0], gy.flat[1] = 0.0, 0.0  # zeros are not positive under any rule
    want = {rule: np.zeros_like(x) for rule in R.RELU_RULES}
    y, yb = np.zeros_like(x), np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        y[idx] = x[idx] if x[idx] > 0 else 0.0
        yb[idx] = max(x[idx] + b[idx[1]], 0.0)
        want["standard"][idx] = gy[idx] if x[idx] > 0 else 0.0
        want["deconvnet"][idx] = gy[idx] if gy[idx] > 0 else 0.0
        want["guided"][idx] = gy[idx] if x[idx] > 0 and gy[idx] > 0 else 0.0
    np.testing.assert_array_equal(R.relu_forward(x), y)
    np.testing.assert_array_equal(R.bias_relu_forward(x, b), yb)
    for rule in R.RELU_RULES:
        np.testing.assert_array_equal(R.relu_backward(gy, x, rule), want[rule])
        # the forward output works as the mask too
        np.testing.assert_array_equal(R.relu_backward(gy, y, rule), want[rule])


@given(lrn_cases())
def test_lrn_matches_brute_force(case):
    x, gy, p = case
    y_ref, gx_ref = brute_lrn(x, gy, **p)
    y = R.lrn_forward(x, **p)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(R.lrn_backward(gy, x, y, **p), gx_ref, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------
# (2) backward functions against central finite differences (float64, random upstream gradient)


@given(conv_cases(max_n=1, max_hw=5))
def test_conv_backward_finite_differences(case):
    x, w, _, gy, geo = case
    gx = numeric_grad(lambda x_: R.conv2d_forward(x_, w, None, **geo), x.copy(), gy)
    gw = numeric_grad(lambda w_: R.conv2d_forward(x, w_, None, **geo), w.copy(), gy)
    np.testing.assert_allclose(R.conv2d_backward_data(gy, w, x.shape, **geo), gx, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(R.conv2d_backward_weight(gy, x, w.shape, **geo), gw, rtol=1e-6, atol=1e-7)


@given(pool_cases(max_hw=5))
def test_max_pool_backward_finite_differences(case):
    shape, geo, rng, out = case
    x, gy = distinct(rng, shape), rng.standard_normal(out)
    _, arg = R.max_pool2d_forward(x, **geo)
    num = numeric_grad(lambda x_: R.max_pool2d_forward(x_, **geo)[0], x.copy(), gy)
    np.testing.assert_allclose(R.max_pool2d_backward(gy, arg, shape, **geo), num, rtol=1e-6, atol=1e-7)


@given(pool_cases(max_hw=5), st.booleans())
def test_avg_pool_backward_finite_differences(case, include_pad):
    shape, geo, rng, out = case
    x, gy = rng.standard_normal(shape), rng.standard_normal(out)
    num = numeric_grad(lambda x_: R.avg_pool2d_forward(x_, count_include_pad=include_pad, **geo), x, gy)
    got = R.avg_pool2d_backward(gy, shape, count_include_pad=include_pad, **geo)
    np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-7)


@given(st.integers(0, 2**32 - 1))
def test_relu_standard_backward_finite_differences(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.01, 1, (1, 2, 3, 3)) * rng.choice([-1, 1], (1, 2, 3, 3))  # away from the kink
    gy = rng.standard_normal(x.shape)
    num = numeric_grad(R.relu_forward, x.copy(), gy)
    np.testing.assert_allclose(R.relu_backward(gy, x, "standard"), num, rtol=1e-6, atol=1e-7)
    b = rng.standard_normal(2)
    xb = x - b[None, :, None, None]  # so that xb + b = x, away from the kink
    num_b = numeric_grad(lambda x_: R.bias_relu_forward(x_, b), xb.copy(), gy)
    np.testing.assert_allclose(R.relu_backward(gy, x, "standard"), num_b, rtol=1e-6, atol=1e-7)


@given(lrn_cases())
def test_lrn_backward_finite_differences(case):
    x, gy, p = case
    num = numeric_grad(lambda x_: R.lrn_forward(x_, **p), x.copy(), gy)
    np.testing.assert_allclose(R.lrn_backward(gy, x, R.lrn_forward(x, **p), **p), num, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------
# (3) torch as an oracle


def _torch():
    return pytest.importorskip("torch")


@given(conv_cases())
def test_conv_against_torch(case):
    torch = _torch()
    x, w, b, gy, geo = case
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, None if b is None else torch.tensor(b), **geo)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(R.conv2d_forward(x, w, b, **geo), yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(R.conv2d_backward_data(gy, w, x.shape, **geo), xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(R.conv2d_backward_weight(gy, x, w.shape, **geo), wt.grad.numpy(), rtol=1e-10, atol=1e-10)


@given(pool_cases())
def test_max_pool_against_torch(case):
    torch = _torch()
    shape, geo, rng, out = case
    x, gy = distinct(rng, shape), rng.standard_normal(out)
    xt = torch.tensor(x, requires_grad=True)
    yt, it = torch.nn.functional.max_pool2d(xt, **geo, return_indices=True)
    yt.backward(torch.tensor(gy))
    y, arg = R.max_pool2d_forward(x, **geo)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(arg, it.numpy())
    np.testing.assert_allclose(R.max_pool2d_backward(gy, arg, shape, **geo), xt.grad.numpy(), atol=1e-12)


@given(pool_cases(), st.booleans())
def test_avg_pool_against_torch(case, include_pad):
    torch = _torch()
    shape, geo, rng, out = case
    x, gy = rng.standard_normal(shape), rng.standard_normal(out)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.avg_pool2d(xt, **geo, count_include_pad=include_pad)
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(R.avg_pool2d_forward(x, count_include_pad=include_pad, **geo), yt.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(
        R.avg_pool2d_backward(gy, shape, count_include_pad=include_pad, **geo), xt.grad.numpy(), atol=1e-12
    )


@given(lrn_cases())
def test_lrn_against_torch(case):
    torch = _torch()
    x, gy, p = case
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.local_response_norm(xt, **p)
    yt.backward(torch.tensor(gy))
    y = R.lrn_forward(x, **p)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(R.lrn_backward(gy, x, y, **p), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------
# dtypes, fresh outputs, inputs left alone


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_contiguity_and_inputs_untouched(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 6, 5)).astype(dtype)
    w = rng.standard_normal((6, 2, 3, 3)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    geo = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2)
    inputs = [a.copy() for a in (x, w, b)]
    y = R.conv2d_forward(x, w, b, **geo)
    gy = rng.standard_normal(y.shape).astype(dtype)
    pool = dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))
    yp, arg = R.max_pool2d_forward(x, **pool)
    gyp = rng.standard_normal(yp.shape).astype(dtype)
    lrn = dict(size=3, alpha=1e-3, beta=0.75, k=2.0)
    y_lrn = R.lrn_forward(x, **lrn)
    outputs = [
        y,
        R.conv2d_backward_data(gy, w, x.shape, **geo),
        R.conv2d_backward_weight(gy, x, w.shape, **geo),
        R.bias_relu_forward(x, b[:4]),
        R.relu_forward(x),
        *(R.relu_backward(x, x, rule) for rule in R.RELU_RULES),
        yp,
        R.max_pool2d_backward(gyp, arg, x.shape, **pool),
        R.avg_pool2d_forward(x, count_include_pad=False, **pool),
        R.avg_pool2d_backward(gyp, x.shape, count_include_pad=True, **pool),
        y_lrn,
        R.lrn_backward(x, x, y_lrn, **lrn),
    ]
    for out in outputs:
        assert out.dtype == dtype
        assert out.flags.c_contiguous
        assert not any(np.shares_memory(out, a) for a in (x, w, b, gy, gyp))
    assert arg.dtype == np.uint8  # the narrowest type holding 6 * 5 in-plane indices
    for before, after in zip(inputs, (x, w, b)):
        np.testing.assert_array_equal(before, after)


# ----------------------------------------------------------------------------------------
# (4) errors for bad input


def test_conv_geometry_errors():
    x, w = np.zeros((1, 4, 5, 5)), np.zeros((4, 2, 3, 3))
    geo = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1))
    with pytest.raises(ValueError, match=r"output size .* not positive"):
        R.conv2d_forward(np.zeros((1, 4, 2, 2)), w, None, groups=2, **geo)
    with pytest.raises(ValueError, match=r"output size .* not positive"):
        R.conv2d_forward(x, w, None, groups=2, stride=(1, 1), padding=(0, 0), dilation=(3, 1))
    with pytest.raises(ValueError, match=r"divisible by groups \(3\)"):
        R.conv2d_forward(x, np.zeros((3, 1, 3, 3)), None, groups=3, **geo)
    with pytest.raises(ValueError, match=r"weight shape \(4, 2, 3, 3\) does not fit input shape \(1, 4, 5, 5\)"):
        R.conv2d_forward(x, w, None, groups=1, **geo)
    with pytest.raises(ValueError, match="bias must have shape"):
        R.conv2d_forward(x, w, np.zeros(3), groups=2, **geo)
    with pytest.raises(ValueError, match="must be 4-D"):
        R.conv2d_forward(x[0], w, None, groups=2, **geo)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        R.conv2d_forward(x, w, None, groups=2, stride=(0, 1), padding=(0, 0), dilation=(1, 1))
    with pytest.raises(ValueError, match="padding must be a pair of ints"):
        R.conv2d_forward(x, w, None, groups=2, stride=(1, 1), padding=1, dilation=(1, 1))
    with pytest.raises(ValueError, match=r"gy has shape \(1, 4, 2, 2\) but the forward output has shape \(1, 4, 3, 3\)"):
        R.conv2d_backward_data(np.zeros((1, 4, 2, 2)), w, x.shape, groups=2, **geo)
    with pytest.raises(ValueError, match="gy has shape"):
        R.conv2d_backward_weight(np.zeros((1, 4, 2, 2)), x, w.shape, groups=2, **geo)


def test_pool_geometry_errors():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="padding <= kernel_size // 2"):
        R.max_pool2d_forward(x, (3, 3), (1, 1), (2, 1))
    with pytest.raises(ValueError, match="padding <= kernel_size // 2"):
        R.avg_pool2d_forward(x, (2, 2), (1, 1), (0, 2), True)
    with pytest.raises(ValueError, match=r"output size .* not positive"):
        R.max_pool2d_forward(x, (5, 5), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        R.avg_pool2d_forward(x, (0, 2), (1, 1), (0, 0), True)
    with pytest.raises(ValueError, match="gy has shape"):
        R.max_pool2d_backward(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 3, 3), np.int64), x.shape, (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match="outside the 4x4 input plane"):
        R.max_pool2d_backward(np.zeros((1, 1, 2, 2)), np.full((1, 1, 2, 2), 16), x.shape, (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match="gy has shape"):
        R.avg_pool2d_backward(np.zeros((1, 1, 3, 3)), x.shape, (2, 2), (2, 2), (0, 0), False)


def test_relu_and_lrn_errors():
    x = np.zeros((1, 2, 2, 2))
    with pytest.raises(ValueError, match="standard, deconvnet, guided"):
        R.relu_backward(x, x, "zeiler")
    with pytest.raises(ValueError, match="bias must have shape"):
        R.bias_relu_forward(x, np.zeros(3))
    with pytest.raises(ValueError, match="LRN size must be >= 1"):
        R.lrn_forward(x, 0, 1e-4, 0.75, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        R.lrn_backward(x[:, :1], x, x, 3, 1e-4, 0.75, 1.0)
