"""minigrad against PyTorch: forward values and gradients of every op on random inputs.

Both libraries get the same float64 arrays; the outputs, and the gradients for one random
upstream gradient, must agree to near machine precision (float64) or to float32 rounding
(the float32 cases). Skipped when torch is not installed.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad
import minigrad.functional as F
from tests.strategies import (
    axes_for,
    broadcast_pairs,
    conv_cases,
    interpolate_cases,
    pad_cases,
    pool_cases,
    reshape_targets,
    seeds,
    shapes,
    signed_away_from_zero,
    tie_free,
    uniform,
)

torch = pytest.importorskip("torch")

from tests.torch_relu import RuleReLU  # noqa: E402 (needs torch)

TF = torch.nn.functional

F64 = {"rtol": 1e-10, "atol": 1e-12}
F32 = {"rtol": 2e-5, "atol": 2e-6}


def compare(mg_fn, torch_fn, arrays, tol=F64, dtype=np.float64, seed=0, grad_inputs=None):
    """Run both functions on ``arrays`` (as ``dtype``), compare outputs and input gradients."""
    arrays = [np.asarray(a, dtype=dtype) for a in arrays]
    grad_inputs = range(len(arrays)) if grad_inputs is None else grad_inputs
    mg = [minigrad.tensor(a.copy(), requires_grad=i in grad_inputs) for i, a in enumerate(arrays)]
    th = [torch.tensor(a.copy(), requires_grad=i in grad_inputs) for i, a in enumerate(arrays)]
    y, yt = mg_fn(*mg), torch_fn(*th)
    assert tuple(y.shape) == tuple(yt.shape), f"shape {y.shape} != torch {tuple(yt.shape)}"
    assert y.dtype == dtype, f"output dtype {y.dtype}, inputs were {np.dtype(dtype)}"
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), err_msg="forward", **tol)
    u = np.random.default_rng(seed).uniform(-1.0, 1.0, size=y.shape).astype(dtype)
    y.backward(u)
    yt.backward(torch.from_numpy(u))
    for i in grad_inputs:
        expected = np.zeros_like(arrays[i]) if th[i].grad is None else th[i].grad.numpy()
        got = np.zeros_like(arrays[i]) if mg[i].grad is None else mg[i].grad
        assert got.dtype == dtype, f"gradient {i} has dtype {got.dtype}"
        np.testing.assert_allclose(got, expected, err_msg=f"gradient of input {i}", **tol)
    return y


@pytest.fixture(autouse=True)
def _keep_minigrad_random_state():
    """Dropout tests reseed minigrad's generator; put its state back for the tests after these."""
    state = minigrad.random_generator().bit_generator.state
    yield
    minigrad.manual_seed(0).bit_generator.state = state


# ----------------------------------------------------------------------------------------
# arithmetic


@given(op=st.sampled_from(["add", "sub", "mul", "div", "pow"]), shape_pair=broadcast_pairs(), seed=seeds)
def test_binary_ops_with_broadcasting(op, shape_pair, seed):
    a = uniform(seed, shape_pair[0], 0.5, 2.0)
    b = signed_away_from_zero(seed + 1, shape_pair[1], 0.5, 2.0)
    fn = {
        "add": lambda x, y: x + y,
        "sub": lambda x, y: x - y,
        "mul": lambda x, y: x * y,
        "div": lambda x, y: x / y,
        "pow": lambda x, y: x**y,
    }[op]
    compare(fn, fn, [a, b])


@given(
    scalar=st.sampled_from([-1.5, 0.5, 2.0, 3.0, 0.375]),  # exact in float32 and float64
    shape=shapes(min_dims=0),
    seed=seeds,
)
def test_ops_with_python_scalars(scalar, shape, seed):
    x = signed_away_from_zero(seed, shape, 0.5, 2.0)
    fn = lambda t: (t + scalar) * (scalar - t) / scalar + scalar / t - t * scalar  # noqa: E731
    compare(fn, fn, [x])
    compare(lambda t: t.abs() ** scalar, lambda t: t.abs() ** scalar, [x])
    compare(lambda t: 2.0**t, lambda t: 2.0**t, [x])  # d/dt = 2**t log(2): log of a float64 2


@given(shape=shapes(min_dims=0), seed=seeds)
def test_unary_ops(shape, seed):
    x = signed_away_from_zero(seed, shape, 0.05, 2.0)
    compare(lambda t: -t, lambda t: -t, [x])
    compare(lambda t: t.exp(), torch.exp, [x])
    compare(lambda t: t.abs(), torch.abs, [x])
    compare(lambda t: t.abs().log(), lambda t: t.abs().log(), [x])
    compare(lambda t: t.abs().sqrt(), lambda t: t.abs().sqrt(), [x])


@given(shape=shapes(), bounds=st.sampled_from([(-0.5, 0.5), (None, 0.25), (-0.25, None)]), seed=seeds)
def test_clip(shape, bounds, seed):
    x = uniform(seed, shape, -1.5, 1.5)
    for bound in bounds:
        if bound is not None:
            x = np.where(np.abs(x - bound) < 0.01, x + 0.05, x)
    compare(lambda t: t.clip(*bounds), lambda t: torch.clamp(t, *bounds), [x])


# ----------------------------------------------------------------------------------------
# reductions


def _dims(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    return (axis,) if isinstance(axis, int) else axis


@st.composite
def reduction_cases(draw):
    shape = draw(shapes(min_dims=1, max_dims=3))
    return shape, draw(axes_for(len(shape))), draw(st.booleans())


@given(case=reduction_cases(), seed=seeds)
def test_sum_max_min(case, seed):
    shape, axis, keepdims = case
    x = tie_free(seed, shape)
    dims = _dims(axis, len(shape))
    compare(lambda t: t.sum(axis=axis, keepdims=keepdims), lambda t: t.sum(dim=dims, keepdim=keepdims), [x])
    compare(lambda t: t.max(axis=axis, keepdims=keepdims), lambda t: torch.amax(t, dim=dims, keepdim=keepdims), [x])
    compare(lambda t: t.min(axis=axis, keepdims=keepdims), lambda t: torch.amin(t, dim=dims, keepdim=keepdims), [x])


@given(case=reduction_cases(), ddof=st.integers(0, 1), seed=seeds)
def test_mean_var(case, ddof, seed):
    shape, axis, keepdims = case
    dims = _dims(axis, len(shape))
    if ddof and np.prod([shape[d] for d in dims]) == 1:
        ddof = 0  # torch gives nan for one value with correction=1
    x = uniform(seed, shape, -2.0, 2.0)
    compare(lambda t: t.mean(axis=axis, keepdims=keepdims), lambda t: t.mean(dim=dims, keepdim=keepdims),
            [x])
    compare(lambda t: t.var(axis=axis, keepdims=keepdims, ddof=ddof),
            lambda t: torch.var(t, dim=dims, keepdim=keepdims, correction=ddof), [x])


def test_max_ties_share_the_gradient_like_amax():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    compare(lambda t: t.max(axis=1), lambda t: torch.amax(t, dim=1), [x])
    compare(lambda t: t.min(), lambda t: torch.amin(t), [np.full((2, 2), 5.0)])


# ----------------------------------------------------------------------------------------
# shapes and indexing


@given(data=st.data(), shape=shapes(max_dims=4, max_side=3), seed=seeds)
def test_reshape_transpose_flatten(data, shape, seed):
    x = uniform(seed, shape)
    target = data.draw(reshape_targets(shape))
    compare(lambda t: t.reshape(target), lambda t: t.reshape(target), [x])
    axes = tuple(data.draw(st.permutations(range(len(shape)))))
    compare(lambda t: t.transpose(axes), lambda t: t.permute(axes), [x])
    start = data.draw(st.integers(0, len(shape) - 1))
    end = data.draw(st.integers(start, len(shape) - 1))
    compare(lambda t: t.flatten(start, end), lambda t: torch.flatten(t, start, end), [x])


@given(data=st.data(), shape=shapes(max_dims=3, max_side=5), seed=seeds)
def test_basic_indexing(data, shape, seed):
    """Positive-step slices (torch has no negative steps; the gradient checks cover them)."""
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    parts = index if isinstance(index, tuple) else (index,)
    index = tuple(slice(p.start, p.stop, -p.step) if isinstance(p, slice) and p.step is not None and p.step < 0 else p
                  for p in parts)
    compare(lambda t: t[index], lambda t: t[index], [uniform(seed, shape)])


@given(data=st.data(), shape=shapes(max_dims=3, max_side=4), seed=seeds)
def test_integer_array_indexing_accumulates(data, shape, seed):
    index = data.draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=6)))
    th_index = tuple(torch.from_numpy(np.asarray(i, dtype=np.int64)) for i in index)
    compare(lambda t: t[index], lambda t: t[th_index], [uniform(seed, shape)])


@given(shape=shapes(max_dims=3, max_side=4), seed=seeds)
def test_boolean_mask_and_mixed_indexing(shape, seed):
    mask = np.random.default_rng(seed).random(shape) < 0.5
    compare(lambda t: t[mask], lambda t: t[torch.from_numpy(mask)], [uniform(seed, shape)])
    rows = np.array([0, shape[0] - 1, 0])
    compare(lambda t: t[rows, ...], lambda t: t[torch.from_numpy(rows), ...], [uniform(seed, shape)])


@given(data=st.data(), seed=seeds)
def test_concatenate_stack(data, seed):
    ndim = data.draw(st.integers(1, 3))
    base = list(data.draw(shapes(min_dims=ndim, max_dims=ndim, max_side=3)))
    axis = data.draw(st.integers(-ndim, ndim - 1))
    arrays = []
    for i in range(data.draw(st.integers(1, 3))):
        shape = list(base)
        shape[axis] = data.draw(st.integers(1, 3))
        arrays.append(uniform(seed + i, tuple(shape)))
    compare(lambda *ts: minigrad.concatenate(ts, axis=axis), lambda *ts: torch.cat(ts, dim=axis), arrays)
    same = [uniform(seed + i, tuple(base)) for i in range(len(arrays))]
    compare(lambda *ts: minigrad.stack(ts, axis=axis), lambda *ts: torch.stack(ts, dim=axis), same)


@st.composite
def matmul_shapes(draw):
    n, k, m = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch_a, batch_b = draw(broadcast_pairs(max_dims=2, max_side=3))
    return draw(st.sampled_from([
        ((k,), (k,)), ((k,), (k, m)), ((n, k), (k,)), ((n, k), (k, m)),
        (batch_a + (n, k), batch_b + (k, m)), ((k,), batch_b + (k, m)), (batch_a + (n, k), (k,)),
    ]))


@given(case=matmul_shapes(), seed=seeds)
def test_matmul(case, seed):
    compare(lambda a, b: a @ b, torch.matmul, [uniform(seed, case[0]), uniform(seed + 1, case[1])])


# ----------------------------------------------------------------------------------------
# layers


@given(case=conv_cases(), seed=seeds)
@settings(max_examples=30)
def test_conv2d(case, seed):
    params = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    arrays = [uniform(seed, case["x_shape"]), uniform(seed + 1, case["w_shape"])]
    if case["bias"]:
        arrays.append(uniform(seed + 2, case["w_shape"][:1]))
    compare(lambda x, w, b=None: F.conv2d(x, w, b, **params), lambda x, w, b=None: TF.conv2d(x, w, b, **params), arrays)


@pytest.mark.parametrize(
    "x_shape, w_shape, params",
    [
        ((2, 4, 7, 6), (6, 2, 3, 3), {"groups": 2, "dilation": 2, "padding": 2}),
        ((1, 6, 5, 5), (6, 1, 3, 3), {"groups": 6, "padding": 1}),  # depthwise
        ((1, 3, 9, 8), (4, 3, 2, 3), {"stride": (2, 3), "dilation": (3, 1), "padding": (1, 0)}),
    ],
)
def test_conv2d_groups_and_dilation(x_shape, w_shape, params):
    arrays = [uniform(1, x_shape), uniform(2, w_shape), uniform(3, w_shape[:1])]
    compare(lambda x, w, b: F.conv2d(x, w, b, **params), lambda x, w, b: TF.conv2d(x, w, b, **params), arrays)
    # backprop to the image only, weights frozen in both
    compare(lambda x, w, b: F.conv2d(x, w, b, **params), lambda x, w, b: TF.conv2d(x, w, b, **params), arrays,
            grad_inputs=[0])


@given(batch=st.sampled_from([(), (2,), (2, 3)]), fin=st.integers(1, 4), fout=st.integers(1, 4),
       bias=st.booleans(), seed=seeds)
def test_linear(batch, fin, fout, bias, seed):
    arrays = [uniform(seed, batch + (fin,)), uniform(seed + 1, (fout, fin))] + ([uniform(seed + 2, (fout,))] if bias else [])
    compare(lambda x, w, b=None: F.linear(x, w, b), lambda x, w, b=None: TF.linear(x, w, b), arrays)


@given(shape=shapes(max_dims=4, max_side=3), slope=st.sampled_from([0.01, 0.2, 1.5, 0.0, -0.5]), seed=seeds)
def test_relu_leaky_relu(shape, slope, seed):
    x = signed_away_from_zero(seed, shape, 0.05, 2.0)
    compare(F.relu, TF.relu, [x])
    compare(lambda t: F.leaky_relu(t, slope), lambda t: TF.leaky_relu(t, slope), [x])
    compare(F.leaky_relu, TF.leaky_relu, [x])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", [0.2, 0.0, 1.5])
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_leaky_relu_nan_inf_and_signed_zero(dtype, slope):
    """NaN is not > 0, so it takes the slope's side (its gradient is slope * grad, not grad);
    +-0 go to the slope's side too, keeping their sign; -inf * 0 is NaN; a NaN or inf in the
    incoming gradient passes through. The outputs and gradients must be torch's bit for bit."""
    x = np.array([np.nan, 0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, 3.0], dtype)
    gy = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, np.nan, np.inf], dtype)
    xm, xt = minigrad.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = F.leaky_relu(xm, slope), TF.leaky_relu(xt, slope)
    y.backward(gy)
    yt.backward(torch.tensor(gy))
    for got, want in ((y.numpy(), yt.detach().numpy()), (xm.grad, xt.grad.numpy())):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@given(data=st.data(), shape=shapes(max_dims=3, max_side=4), seed=seeds)
def test_softmax_log_softmax(data, shape, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = uniform(seed, shape, -5.0, 5.0)
    compare(lambda t: F.softmax(t, axis=axis), lambda t: TF.softmax(t, dim=axis), [x])
    compare(lambda t: F.log_softmax(t, axis=axis), lambda t: TF.log_softmax(t, dim=axis), [x])


def test_softmax_large_logits_stay_finite():
    x = np.array([[1000.0, 0.0, -1000.0], [-800.0, -801.0, -799.0]])
    compare(lambda t: F.log_softmax(t, axis=1), lambda t: TF.log_softmax(t, dim=1), [x])
    compare(lambda t: F.softmax(t, axis=1), lambda t: TF.softmax(t, dim=1), [x])


@given(n=st.integers(1, 4), k=st.integers(1, 5), reduction=st.sampled_from(["mean", "sum", "none"]), seed=seeds)
def test_cross_entropy(n, k, reduction, seed):
    logits = uniform(seed, (n, k), -3.0, 3.0)
    labels = np.random.default_rng(seed).integers(0, k, size=n)
    compare(lambda t: F.cross_entropy(t, labels, reduction=reduction),
            lambda t: TF.cross_entropy(t, torch.from_numpy(labels), reduction=reduction), [logits])


# ----------------------------------------------------------------------------------------
# pooling


@given(case=pool_cases(), seed=seeds)
@settings(max_examples=30)
def test_max_pool2d(case, seed):
    x = tie_free(seed, case["x_shape"])
    geometry = (case["kernel_size"], case["stride"], case["padding"])
    compare(lambda t: F.max_pool2d(t, *geometry), lambda t: TF.max_pool2d(t, *geometry), [x])


@pytest.mark.parametrize(
    "kernel_size, stride, padding", [(3, 2, 1), (3, 2, 0), (3, 1, 1), (2, None, 0), ((3, 2), (1, 2), (1, 0))]
)
def test_max_pool2d_overlapping_and_all_negative(kernel_size, stride, padding):
    x = tie_free(4, (2, 3, 6, 7), -5.0, -1.0)
    compare(lambda t: F.max_pool2d(t, kernel_size, stride, padding),
            lambda t: TF.max_pool2d(t, kernel_size, stride, padding), [x])


def test_max_pool2d_ties_go_to_one_winner_like_torch():
    x = np.zeros((1, 1, 4, 4))
    compare(lambda t: F.max_pool2d(t, 2), lambda t: TF.max_pool2d(t, 2), [x])


@given(case=pool_cases(), count_include_pad=st.booleans(), seed=seeds)
def test_avg_pool2d(case, count_include_pad, seed):
    x = uniform(seed, case["x_shape"])
    geometry = (case["kernel_size"], case["stride"], case["padding"])
    compare(lambda t: F.avg_pool2d(t, *geometry, count_include_pad=count_include_pad),
            lambda t: TF.avg_pool2d(t, *geometry, count_include_pad=count_include_pad), [x])


@given(in_hw=st.tuples(st.integers(1, 8), st.integers(1, 8)), out_hw=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       seed=seeds)
def test_adaptive_avg_pool2d(in_hw, out_hw, seed):
    x = uniform(seed, (2, 2) + in_hw)
    compare(lambda t: F.adaptive_avg_pool2d(t, out_hw), lambda t: TF.adaptive_avg_pool2d(t, out_hw), [x])


@pytest.mark.parametrize("in_hw, out_hw", [((6, 4), (3, 2)), ((7, 5), (3, 2)), ((5, 5), 3), ((13, 13), (6, 6)), ((3, 3), (5, 4))])
def test_adaptive_avg_pool2d_divisible_and_not(in_hw, out_hw):
    compare(lambda t: F.adaptive_avg_pool2d(t, out_hw), lambda t: TF.adaptive_avg_pool2d(t, out_hw),
            [uniform(1, (1, 3) + in_hw)])


# ----------------------------------------------------------------------------------------
# normalization


@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 7), st.integers(1, 3), st.integers(1, 3)),
    size=st.integers(1, 5),
    alpha=st.sampled_from([1e-4, 0.1, 1.0]),
    beta=st.sampled_from([0.75, 0.5]),
    k=st.sampled_from([1.0, 2.0]),
    seed=seeds,
)
def test_local_response_norm(shape, size, alpha, beta, k, seed):
    x = uniform(seed, shape, -2.0, 2.0)
    compare(lambda t: F.local_response_norm(t, size, alpha, beta, k),
            lambda t: TF.local_response_norm(t, size, alpha, beta, k), [x])


@given(shape=st.sampled_from([(4, 3), (2, 3, 2), (2, 2, 2, 3), (3, 1, 1, 2)]), momentum=st.sampled_from([0.1, 0.5]),
       seed=seeds)
def test_batch_norm_training_and_running_stats(shape, momentum, seed):
    c = shape[1]
    x, weight, bias = uniform(seed, shape, -2.0, 2.0), uniform(seed + 1, (c,), 0.5, 1.5), uniform(seed + 2, (c,))
    mean0, var0 = uniform(seed + 3, (c,)), uniform(seed + 4, (c,), 0.5, 2.0)
    stats = {"mg": (mean0.copy(), var0.copy()), "th": (torch.tensor(mean0), torch.tensor(var0))}
    compare(lambda x_, w_, b_: F.batch_norm(x_, *stats["mg"], w_, b_, training=True, momentum=momentum),
            lambda x_, w_, b_: TF.batch_norm(x_, *stats["th"], w_, b_, training=True, momentum=momentum),
            [x, weight, bias])
    np.testing.assert_allclose(stats["mg"][0], stats["th"][0].numpy(), **F64)
    np.testing.assert_allclose(stats["mg"][1], stats["th"][1].numpy(), **F64)
    # evaluation uses (and leaves alone) the updated running statistics
    before = [s.copy() for s in stats["mg"]]
    compare(lambda x_, w_, b_: F.batch_norm(x_, *stats["mg"], w_, b_, training=False),
            lambda x_, w_, b_: TF.batch_norm(x_, *stats["th"], w_, b_, training=False),
            [x, weight, bias])
    np.testing.assert_array_equal(stats["mg"][0], before[0])
    np.testing.assert_array_equal(stats["mg"][1], before[1])


@pytest.mark.parametrize("grad_inputs", [[0], [1], [2], [1, 2]])
def test_batch_norm_training_gradient_of_some_inputs(grad_inputs):
    """Only the inputs that need a gradient get one (a frozen weight, a frozen input)."""
    x, weight, bias = uniform(1, (2, 3, 4, 2), -2.0, 2.0), uniform(2, (3,), 0.5, 1.5), uniform(3, (3,))
    compare(lambda x_, w_, b_: F.batch_norm(x_, None, None, w_, b_, training=True),
            lambda x_, w_, b_: TF.batch_norm(x_, None, None, w_, b_, training=True), [x, weight, bias],
            grad_inputs=grad_inputs)


def test_batch_norm_without_affine_or_running_stats():
    x = uniform(2, (3, 2, 2, 2))
    compare(lambda t: F.batch_norm(t, None, None, training=True), lambda t: TF.batch_norm(t, None, None, training=True),
            [x])


# ----------------------------------------------------------------------------------------
# resampling, padding, dropout


@given(case=interpolate_cases(), seed=seeds)
def test_interpolate(case, seed):
    x = uniform(seed, case["x_shape"])
    kwargs = {"size": case["size"], "scale_factor": case["scale_factor"], "mode": case["mode"]}
    th_kwargs = dict(kwargs, align_corners=case["align_corners"] if case["mode"] == "bilinear" else None)
    compare(lambda t: F.interpolate(t, **kwargs, align_corners=case["align_corners"]),
            lambda t: TF.interpolate(t, **th_kwargs), [x])


@pytest.mark.parametrize("mode, align_corners", [("nearest", None), ("bilinear", False), ("bilinear", True)])
@pytest.mark.parametrize("size, scale", [((7, 5), None), ((2, 3), None), (None, 2.0), (None, 0.5), (None, 1.5)])
def test_interpolate_up_and_down(mode, align_corners, size, scale):
    x = uniform(5, (1, 2, 4, 6))
    compare(lambda t: F.interpolate(t, size=size, scale_factor=scale, mode=mode, align_corners=bool(align_corners)),
            lambda t: TF.interpolate(t, size=size, scale_factor=scale, mode=mode, align_corners=align_corners), [x])


@given(case=pad_cases(), seed=seeds)
def test_pad(case, seed):
    x = uniform(seed, case["shape"])
    th_pad = case["pad"]
    if case["mode"] != "constant" and len(th_pad) == 2:
        th_pad = th_pad + (0, 0)  # torch pads (N, C, H, W) by reflect/replicate only with 4 widths
    compare(lambda t: F.pad(t, case["pad"], mode=case["mode"], value=case["value"]),
            lambda t: TF.pad(t, th_pad, mode=case["mode"], **({"value": case["value"]} if case["mode"] == "constant" else {})),
            [x])


def test_dropout_matches_multiplying_by_its_mask():
    """Masks come from different generators, so compare with torch given minigrad's mask."""
    x = uniform(0, (4, 5), 0.5, 1.0)
    minigrad.manual_seed(11)
    y = F.dropout(minigrad.tensor(x), p=0.3).numpy()
    mask = (y != 0) / 0.7
    compare(lambda t: (minigrad.manual_seed(11), F.dropout(t, p=0.3))[1], lambda t: t * torch.from_numpy(mask), [x])
    compare(lambda t: F.dropout(t, p=0.3, training=False), lambda t: TF.dropout(t, p=0.3, training=False), [x])


# ----------------------------------------------------------------------------------------
# ReLU backward rules, against hooks in torch


@pytest.mark.parametrize("rule", ["standard", "deconvnet", "guided"])
def test_relu_rules_through_a_small_cnn(rule, monkeypatch):
    """conv -> relu -> max-pool -> conv -> relu -> linear, backprop to the image under each rule."""
    monkeypatch.setattr(RuleReLU, "rule", rule)
    w1, b1 = uniform(1, (4, 2, 3, 3)), uniform(2, (4,))
    w2, b2 = uniform(3, (3, 4, 3, 3)), uniform(4, (3,))
    w3 = uniform(5, (5, 12))

    def mg_net(x):
        h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1, padding=1)), 3, 2, 1)
        h = F.relu(F.conv2d(h, w2, b2))
        return F.linear(h.flatten(1), w3)

    def th_net(x):
        t = [torch.from_numpy(a) for a in (w1, b1, w2, b2, w3)]
        h = TF.max_pool2d(RuleReLU.apply(TF.conv2d(x, t[0], t[1], padding=1)), 3, 2, 1)
        h = RuleReLU.apply(TF.conv2d(h, t[2], t[3]))
        return TF.linear(h.flatten(1), t[4])

    with minigrad.relu_backward(rule):
        compare(mg_net, th_net, [tie_free(6, (2, 2, 8, 8))])


# ----------------------------------------------------------------------------------------
# an end-to-end network, and float32


def _small_net(lib, x, params, labels, bn_stats):
    w1, b1, w2, b2, gamma, beta = params
    if lib == "mg":
        h = F.conv2d(x, w1, b1, padding=1, groups=1)
        h = F.batch_norm(h, *bn_stats, gamma, beta, training=True)
        h = F.local_response_norm(F.relu(h), 3, alpha=0.1, beta=0.75, k=2.0)
        h = F.adaptive_avg_pool2d(F.max_pool2d(h, 2), (3, 3))
        return F.cross_entropy(F.linear(h.flatten(1), w2, b2), labels)
    h = TF.conv2d(x, w1, b1, padding=1, groups=1)
    h = TF.batch_norm(h, *bn_stats, gamma, beta, training=True)
    h = TF.local_response_norm(TF.relu(h), 3, alpha=0.1, beta=0.75, k=2.0)
    h = TF.adaptive_avg_pool2d(TF.max_pool2d(h, 2), (3, 3))
    return TF.cross_entropy(TF.linear(h.flatten(1), w2, b2), torch.from_numpy(labels))


@pytest.mark.parametrize("dtype, tol", [(np.float64, F64), (np.float32, {"rtol": 2e-4, "atol": 2e-5})])
def test_small_network_end_to_end(dtype, tol):
    arrays = [uniform(1, (3, 2, 8, 8)), uniform(2, (4, 2, 3, 3)), uniform(3, (4,)), uniform(4, (5, 36)),
              uniform(5, (5,)), uniform(6, (4,), 0.5, 1.5), uniform(7, (4,))]
    labels = np.array([0, 4, 2])
    compare(lambda x, *p: _small_net("mg", x, p, labels, (None, None)),
            lambda x, *p: _small_net("th", x, p, labels, (None, None)), arrays, tol=tol, dtype=dtype)


FLOAT32_CASES = {
    "conv2d": (lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=2),
               lambda x, w: TF.conv2d(x, w, stride=2, padding=1, groups=2), [(2, 4, 7, 7), (6, 2, 3, 3)]),
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1), lambda x: TF.max_pool2d(x, 3, 2, 1), [(2, 3, 7, 6)]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
                   lambda x: TF.avg_pool2d(x, 3, 2, 1, count_include_pad=False), [(2, 3, 7, 6)]),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (3, 2)), lambda x: TF.adaptive_avg_pool2d(x, (3, 2)),
                            [(1, 2, 7, 5)]),
    "lrn": (lambda x: F.local_response_norm(x, 5, 1e-2, 0.75, 2.0),
            lambda x: TF.local_response_norm(x, 5, 1e-2, 0.75, 2.0), [(2, 6, 3, 3)]),
    "linear": (F.linear, TF.linear, [(3, 5), (4, 5)]),
    "matmul": (lambda a, b: a @ b, torch.matmul, [(2, 1, 3, 4), (3, 4, 2)]),
    "softmax": (lambda x: F.softmax(x, axis=1), lambda x: TF.softmax(x, dim=1), [(3, 5)]),
    "log_softmax": (lambda x: F.log_softmax(x, axis=0), lambda x: TF.log_softmax(x, dim=0), [(3, 5)]),
    "cross_entropy": (lambda x: F.cross_entropy(x, np.array([1, 0, 3])),
                      lambda x: TF.cross_entropy(x, torch.tensor([1, 0, 3])), [(3, 5)]),
    "batch_norm": (lambda x: F.batch_norm(x, None, None, training=True),
                   lambda x: TF.batch_norm(x, None, None, training=True), [(3, 2, 2, 2)]),
    "batch_norm_affine": (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                          lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True), [(2, 3, 5, 4), (3,), (3,)]),
    "bilinear": (lambda x: F.interpolate(x, scale_factor=2.0, mode="bilinear"),
                 lambda x: TF.interpolate(x, scale_factor=2.0, mode="bilinear"), [(1, 2, 3, 4)]),
    "reflect": (lambda x: F.pad(x, (2, 1, 1, 2), mode="reflect"), lambda x: TF.pad(x, (2, 1, 1, 2), mode="reflect"),
                [(1, 2, 3, 4)]),
    "arithmetic": (lambda a, b: (a * b - a / (b.abs() + 1.0)).exp() ** 0.5 + a.mean(axis=0) + b.var(),
                   lambda a, b: (a * b - a / (b.abs() + 1.0)).exp() ** 0.5 + a.mean(dim=0) + b.var(correction=0),
                   [(3, 4), (4,)]),
}


@pytest.mark.parametrize("name", sorted(FLOAT32_CASES))
def test_float32(name):
    mg_fn, th_fn, input_shapes = FLOAT32_CASES[name]
    arrays = [tie_free(i, s) for i, s in enumerate(input_shapes)]
    compare(mg_fn, th_fn, arrays, tol=F32, dtype=np.float32)


# ----------------------------------------------------------------------------------------
# Python numbers take the tensor's dtype (they were once rounded to float32)


def test_python_scalars_keep_float64_precision():
    x = uniform(0, (3, 7))
    t = minigrad.tensor(x)
    np.testing.assert_allclose((t * 0.1).numpy(), x * 0.1, rtol=1e-15)
    np.testing.assert_allclose((t.abs() ** (1 / 3)).numpy(), np.abs(x) ** (1 / 3), rtol=1e-15)
    np.testing.assert_allclose((0.1 - t).numpy(), 0.1 - x, rtol=1e-15)
    t32 = minigrad.tensor(x.astype(np.float32))
    assert (t32 * 0.1).dtype == np.float32 and (0.1 / t32).dtype == np.float32 and t32.mean().dtype == np.float32
    compare(lambda a: 2.0**a, lambda a: 2.0**a, [x])
    compare(lambda a: a.mean(axis=1), lambda a: a.mean(dim=1), [x])
    compare(lambda a: a.var(), lambda a: a.var(correction=0), [x])
    compare(lambda a: F.cross_entropy(a, np.array([0, 6, 2])), lambda a: TF.cross_entropy(a, torch.tensor([0, 6, 2])), [x])
    compare(lambda a: F.batch_norm(a, None, None, training=True), lambda a: TF.batch_norm(a, None, None, training=True),
            [x])


@given(case=conv_cases(), seed=seeds)
@settings(max_examples=20)
def test_conv2d_relu(case, seed):
    params = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    arrays = [uniform(seed, case["x_shape"]), uniform(seed + 1, case["w_shape"]), uniform(seed + 2, case["w_shape"][:1])]
    compare(lambda x, w, b: F.conv2d_relu(x, w, b, **params), lambda x, w, b: torch.relu(TF.conv2d(x, w, b, **params)),
            arrays)


@pytest.mark.parametrize("in_hw, out_hw", [((8, 8), (3, 3)), ((13, 13), (7, 7)), ((12, 9), (4, 3)), ((5, 7), (5, 2))])
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_adaptive_avg_pool2d_keeps_nan_and_inf_in_their_cells(in_hw, out_hw):
    """One +inf in an 8x8 -> 3 pooling made 8 NaN outputs (a 0/1 matrix product: 0 * inf);
    like PyTorch, only the cells covering it are inf, also in the backward pass."""
    rng = np.random.default_rng(0)
    for special in ([np.inf], [np.nan], [np.inf, -np.inf]):
        x = rng.standard_normal((1, 2) + in_hw)
        for value in special:
            x[0, 0, rng.integers(in_hw[0]), rng.integers(in_hw[1])] = value
        gy = rng.standard_normal((1, 2) + out_hw)
        gy[0, 1, 0, 0] = special[0]
        xm, xt = minigrad.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, yt = F.adaptive_avg_pool2d(xm, out_hw), TF.adaptive_avg_pool2d(xt, out_hw)
        y.backward(gy)
        yt.backward(torch.tensor(gy))
        for got, want in ((y.numpy(), yt.detach().numpy()), (xm.grad, xt.grad.numpy())):
            for test in (np.isnan, np.isposinf, np.isneginf):
                np.testing.assert_array_equal(test(got), test(want))
            finite = np.isfinite(want)
            np.testing.assert_allclose(got[finite], want[finite], rtol=1e-10, atol=1e-12)
