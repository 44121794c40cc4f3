"""Gradient checks for every differentiable minigrad op, against central finite differences.

Each test draws shapes and op parameters with Hypothesis, builds float64 inputs kept away
from the op's kinks (0 for abs/relu, the bounds for clip, ties for max/min/max-pool) and
hands a function of tensors to ``minigrad.gradcheck``, which compares the
backprop gradient with central differences along random directions and, for small inputs,
element by element. Also here: the checker catches a 0.1% error, the three ReLU backward
rules on a hand-worked example, frozen conv weights skip the weight-gradient kernel, and
bad input gives an error that names the problem.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad
import minigrad.functional as F
from minigrad import gradcheck
from minigrad.backend import using_backend
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

@pytest.fixture(autouse=True)
def _keep_minigrad_random_state():
    """Dropout tests reseed minigrad's generator; put its state back for the tests after these."""
    state = minigrad.random_generator().bit_generator.state
    yield
    minigrad.manual_seed(0).bit_generator.state = state


# ----------------------------------------------------------------------------------------
# arithmetic and broadcasting

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


@given(op=st.sampled_from(sorted(BINARY)), shape_pair=broadcast_pairs(), seed=seeds)
def test_binary_ops_with_broadcasting(op, shape_pair, seed):
    a_shape, b_shape = shape_pair
    a = uniform(seed, a_shape, -2, 2)
    b = signed_away_from_zero(seed + 1, b_shape, 0.5, 2.0)  # a safe divisor for "div"
    gradcheck(BINARY[op], [a, b])


@given(
    op=st.sampled_from(["add", "radd", "sub", "rsub", "mul", "rmul", "div", "rdiv"]),
    scalar=st.sampled_from([-1.5, 0.5, 2.0, 3.0]),
    shape=shapes(min_dims=0),
    seed=seeds,
)
def test_ops_with_python_scalars(op, scalar, shape, seed):
    x = signed_away_from_zero(seed, shape, 0.5, 2.0)
    f = {
        "add": lambda t: t + scalar,
        "radd": lambda t: scalar + t,
        "sub": lambda t: t - scalar,
        "rsub": lambda t: scalar - t,
        "mul": lambda t: t * scalar,
        "rmul": lambda t: scalar * t,
        "div": lambda t: t / scalar,
        "rdiv": lambda t: scalar / t,
    }[op]
    gradcheck(f, [x])


@given(shape_pair=broadcast_pairs(), seed=seeds)
def test_ops_with_numpy_arrays_on_the_left(shape_pair, seed):
    """ndarray (+ - * /) Tensor goes to the Tensor's reflected operator, not NumPy's loop."""
    c = signed_away_from_zero(seed, shape_pair[0], 0.5, 2.0)
    x = signed_away_from_zero(seed + 1, shape_pair[1], 0.5, 2.0)
    gradcheck(lambda t: (c + t) * (c - t) / (c * t), [x])


def test_tensor_used_twice_accumulates():
    x = np.array([[0.3, -1.2], [2.0, 0.7]])
    gradcheck(lambda t: t * t + t.exp() * t - t / (t * t + 1.0), [x])


@given(exponent=st.sampled_from([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 3.0, 1.7]), shape=shapes(min_dims=0), seed=seeds)
def test_pow_scalar_exponent(exponent, shape, seed):
    x = uniform(seed, shape, 0.5, 2.0)
    gradcheck(lambda t: t**exponent, [x])


@given(shape_pair=broadcast_pairs(), seed=seeds)
def test_pow_tensor_exponent(shape_pair, seed):
    base = uniform(seed, shape_pair[0], 0.5, 2.0)
    exponent = uniform(seed + 1, shape_pair[1], -2.0, 2.0)
    gradcheck(lambda a, b: a**b, [base, exponent])


@given(base=st.sampled_from([0.5, 2.0, 3.0]), shape=shapes(min_dims=0), seed=seeds)
def test_pow_scalar_base(base, shape, seed):
    gradcheck(lambda t: base**t, [uniform(seed, shape, -2.0, 2.0)])


# ----------------------------------------------------------------------------------------
# elementwise functions


@given(shape=shapes(min_dims=0), seed=seeds)
def test_neg_exp(shape, seed):
    x = uniform(seed, shape, -2.0, 2.0)
    gradcheck(lambda t: -t, [x])
    gradcheck(lambda t: t.exp(), [x])


@given(shape=shapes(min_dims=0), seed=seeds)
def test_log_sqrt_positive_inputs(shape, seed):
    x = uniform(seed, shape, 0.2, 3.0)
    gradcheck(lambda t: t.log(), [x])
    gradcheck(lambda t: t.sqrt(), [x])


@given(shape=shapes(min_dims=0), seed=seeds)
def test_abs_away_from_zero(shape, seed):
    gradcheck(lambda t: t.abs(), [signed_away_from_zero(seed, shape, 0.05, 2.0)])


@given(
    shape=shapes(),
    bounds=st.sampled_from([(-0.5, 0.5), (None, 0.3), (-0.2, None), (0.0, 1.0)]),
    seed=seeds,
)
def test_clip_away_from_bounds(shape, bounds, seed):
    low, high = bounds
    x = uniform(seed, shape, -1.5, 1.5)
    for bound in (low, high):
        if bound is not None:
            x = np.where(np.abs(x - bound) < 0.05, x + 0.1, x)  # no value within 0.05 of a bound
    gradcheck(lambda t: t.clip(low, high), [x])


# ----------------------------------------------------------------------------------------
# reductions


@st.composite
def reduction_cases(draw):
    shape = draw(shapes(min_dims=1, max_dims=3))
    return shape, draw(axes_for(len(shape))), draw(st.booleans())


@given(case=reduction_cases(), op=st.sampled_from(["sum", "mean", "var"]), seed=seeds)
def test_sum_mean_var(case, op, seed):
    shape, axis, keepdims = case
    x = uniform(seed, shape, -2.0, 2.0)
    gradcheck(lambda t: getattr(t, op)(axis=axis, keepdims=keepdims), [x])


@given(case=reduction_cases(), ddof=st.integers(0, 1), seed=seeds)
def test_var_ddof(case, ddof, seed):
    shape, axis, keepdims = case
    x = uniform(seed, shape, -2.0, 2.0)
    gradcheck(lambda t: t.var(axis=axis, keepdims=keepdims, ddof=ddof), [x])


@given(case=reduction_cases(), op=st.sampled_from(["max", "min"]), seed=seeds)
def test_max_min_tie_free(case, op, seed):
    shape, axis, keepdims = case
    gradcheck(lambda t: getattr(t, op)(axis=axis, keepdims=keepdims), [tie_free(seed, shape)])


def test_max_ties_share_the_gradient():
    x = minigrad.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


# ----------------------------------------------------------------------------------------
# shapes


@given(data=st.data(), shape=shapes(max_dims=4, max_side=3), seed=seeds)
def test_reshape(data, shape, seed):
    target = data.draw(reshape_targets(shape))
    gradcheck(lambda t: t.reshape(target) * 1.5, [uniform(seed, shape)])
    gradcheck(lambda t: t.reshape(*target), [uniform(seed, shape)])


@given(data=st.data(), shape=shapes(max_dims=4, max_side=3), seed=seeds)
def test_transpose(data, shape, seed):
    axes = tuple(data.draw(st.permutations(range(len(shape)))))
    negative = tuple(a - len(shape) if data.draw(st.booleans()) else a for a in axes)
    x = uniform(seed, shape)
    gradcheck(lambda t: t.transpose(negative) * np.arange(1.0, 1 + np.prod(shape)).reshape(shape).transpose(axes), [x])
    gradcheck(lambda t: t.transpose(), [x])
    gradcheck(lambda t: t.T, [x])


@given(data=st.data(), shape=shapes(max_dims=4, max_side=3), seed=seeds)
def test_flatten(data, shape, seed):
    ndim = len(shape)
    start = data.draw(st.integers(0, ndim - 1))
    end = data.draw(st.integers(start, ndim - 1))
    end = end - ndim if data.draw(st.booleans()) else end
    gradcheck(lambda t: t.flatten(start, end), [uniform(seed, shape)])
    gradcheck(lambda t: t.flatten(), [uniform(seed, shape)])


# ----------------------------------------------------------------------------------------
# indexing


@given(data=st.data(), shape=shapes(max_dims=3, max_side=5), seed=seeds)
def test_basic_indexing(data, shape, seed):
    """Integers, slices with any (also negative) step, Ellipsis and None."""
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    gradcheck(lambda t: t[index], [uniform(seed, shape)])


@given(data=st.data(), shape=shapes(max_dims=3, max_side=4), seed=seeds)
def test_integer_array_indexing_accumulates(data, shape, seed):
    index = data.draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=6)))
    gradcheck(lambda t: t[index], [uniform(seed, shape)])


def test_repeated_indices_accumulate_exactly():
    x = minigrad.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    x[np.array([0, 2, 0, 0, 2])].backward(np.array([1.0, 10.0, 100.0, 1000.0, 10000.0]))
    np.testing.assert_array_equal(x.grad, [1101.0, 0.0, 10010.0])
    y = minigrad.tensor(np.ones((2, 3)), requires_grad=True)
    y[[1, 1], [2, 2]].sum().backward()  # lists become integer arrays
    np.testing.assert_array_equal(y.grad, [[0, 0, 0], [0, 0, 2.0]])
    z = minigrad.tensor(np.ones((3, 2)), requires_grad=True)
    z[minigrad.tensor(np.array([2, 2, 0]))].sum().backward()  # an index tensor
    np.testing.assert_array_equal(z.grad, [[1, 1], [0, 0], [2, 2]])


@given(shape=shapes(max_dims=3, max_side=4), seed=seeds, full=st.booleans())
def test_boolean_mask_indexing(shape, seed, full):
    mask = np.random.default_rng(seed).random(shape) < 0.5
    if full:  # a mask over the leading axis only
        mask = mask.reshape(shape[0], -1)[:, 0]
    gradcheck(lambda t: t[mask], [uniform(seed, shape)])


@given(seed=seeds, step=st.sampled_from([1, -1, 2, -2]))
def test_mixed_advanced_and_basic_indexing(seed, step):
    x = uniform(seed, (4, 5, 3))
    rows = np.array([[3, 0], [3, 1]])
    gradcheck(lambda t: t[rows, ::step, 1], [x])
    gradcheck(lambda t: t[1:, [0, 4, 4]], [x])
    gradcheck(lambda t: t[..., np.array([2, 2, 0])], [x])


# ----------------------------------------------------------------------------------------
# joining


@given(data=st.data(), seed=seeds)
def test_concatenate(data, seed):
    ndim = data.draw(st.integers(1, 3))
    base = list(data.draw(shapes(min_dims=ndim, max_dims=ndim, max_side=3)))
    axis = data.draw(st.integers(-ndim, ndim - 1))
    count = data.draw(st.integers(1, 4))
    arrays = []
    for i in range(count):
        shape = list(base)
        shape[axis] = data.draw(st.integers(1, 3))
        arrays.append(uniform(seed + i, tuple(shape)))
    gradcheck(lambda *ts: minigrad.concatenate(list(ts), axis=axis), arrays)


@given(data=st.data(), seed=seeds)
def test_stack(data, seed):
    shape = data.draw(shapes(min_dims=0, max_dims=3, max_side=3))
    axis = data.draw(st.integers(-(len(shape) + 1), len(shape)))
    count = data.draw(st.integers(1, 3))
    arrays = [uniform(seed + i, shape) for i in range(count)]
    gradcheck(lambda *ts: minigrad.stack(ts, axis=axis), arrays)


# ----------------------------------------------------------------------------------------
# matmul


@st.composite
def matmul_shapes(draw):
    n, k, m = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["1d@1d", "1d@2d", "2d@1d", "2d@2d", "batched", "1d@batched", "batched@1d"]))
    batch_a, batch_b = draw(broadcast_pairs(max_dims=2, max_side=3))
    return {
        "1d@1d": ((k,), (k,)),
        "1d@2d": ((k,), (k, m)),
        "2d@1d": ((n, k), (k,)),
        "2d@2d": ((n, k), (k, m)),
        "batched": (batch_a + (n, k), batch_b + (k, m)),
        "1d@batched": ((k,), batch_b + (k, m)),
        "batched@1d": (batch_a + (n, k), (k,)),
    }[kind]


@given(case=matmul_shapes(), seed=seeds, operator=st.booleans())
def test_matmul(case, seed, operator):
    a, b = uniform(seed, case[0]), uniform(seed + 1, case[1])
    f = (lambda x, y: x @ y) if operator else minigrad.matmul
    gradcheck(f, [a, b])


def test_matmul_with_array_on_the_left():
    a = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]])
    gradcheck(lambda t: a @ t, [np.array([[0.2, -0.4, 1.0], [1.5, 0.3, -0.7]])])


# ----------------------------------------------------------------------------------------
# convolution and linear


@given(case=conv_cases(), seed=seeds)
@settings(max_examples=30)
def test_conv2d(case, seed):
    x = uniform(seed, case["x_shape"])
    w = uniform(seed + 1, case["w_shape"])
    params = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    if case["bias"]:
        b = uniform(seed + 2, (case["w_shape"][0],))
        gradcheck(lambda x_, w_, b_: F.conv2d(x_, w_, b_, **params), [x, w, b], directions=4)
    else:
        gradcheck(lambda x_, w_: F.conv2d(x_, w_, **params), [x, w], directions=4)


def test_conv2d_int_geometry_and_pairs_agree():
    x, w = uniform(1, (1, 2, 5, 6)), uniform(2, (2, 2, 3, 2))
    a = F.conv2d(minigrad.tensor(x), minigrad.tensor(w), stride=2, padding=1, dilation=1)
    b = F.conv2d(minigrad.tensor(x), minigrad.tensor(w), stride=(2, 2), padding=(1, 1), dilation=(1, 1))
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@given(
    batch=st.sampled_from([(), (2,), (2, 3)]),
    features=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    bias=st.booleans(),
    seed=seeds,
)
def test_linear(batch, features, bias, seed):
    fin, fout = features
    x, w = uniform(seed, batch + (fin,)), uniform(seed + 1, (fout, fin))
    if bias:
        gradcheck(lambda x_, w_, b_: F.linear(x_, w_, b_), [x, w, uniform(seed + 2, (fout,))])
    else:
        gradcheck(lambda x_, w_: F.linear(x_, w_), [x, w])


# ----------------------------------------------------------------------------------------
# activations and losses


@given(shape=shapes(max_dims=4, max_side=3), seed=seeds)
def test_relu(shape, seed):
    x = signed_away_from_zero(seed, shape, 0.05, 2.0)
    gradcheck(F.relu, [x])
    gradcheck(lambda t: t.relu(), [x])


@given(shape=shapes(max_dims=4, max_side=3), slope=st.sampled_from([0.01, 0.2, 0.5, 1.5, 0.0, -0.5]), seed=seeds)
def test_leaky_relu(shape, slope, seed):
    x = signed_away_from_zero(seed, shape, 0.05, 2.0)
    gradcheck(lambda t: F.leaky_relu(t, slope), [x])
    gradcheck(F.leaky_relu, [x])


@given(data=st.data(), shape=shapes(max_dims=3, max_side=4), seed=seeds, op=st.sampled_from(["softmax", "log_softmax"]))
def test_softmax_log_softmax(data, shape, seed, op):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = uniform(seed, shape, -3.0, 3.0)
    gradcheck(lambda t: getattr(F, op)(t, axis=axis), [x])


def test_softmax_default_axis_is_last():
    x = uniform(0, (2, 3))
    gradcheck(F.softmax, [x])
    gradcheck(F.log_softmax, [x])


@given(
    n=st.integers(1, 4),
    k=st.integers(1, 5),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    seed=seeds,
)
def test_cross_entropy(n, k, reduction, seed):
    logits = uniform(seed, (n, k), -3.0, 3.0)
    labels = np.random.default_rng(seed).integers(0, k, size=n)
    gradcheck(lambda t: F.cross_entropy(t, labels, reduction=reduction), [logits])
    gradcheck(lambda t: F.cross_entropy(t, minigrad.tensor(labels)), [logits])


# ----------------------------------------------------------------------------------------
# pooling


@given(case=pool_cases(), seed=seeds)
@settings(max_examples=30)
def test_max_pool2d_tie_free(case, seed):
    x = tie_free(seed, case["x_shape"])
    gradcheck(
        lambda t: F.max_pool2d(t, case["kernel_size"], case["stride"], case["padding"]), [x], directions=4
    )


@pytest.mark.parametrize(
    "kernel_size, stride, padding",
    [(3, 2, 1), (3, 2, 0), (3, 1, 1), (2, 1, 0), ((3, 2), (2, 1), (1, 1)), (2, None, 0)],
)
def test_max_pool2d_overlapping_windows(kernel_size, stride, padding):
    """Overlapping windows (stride < kernel) route several gradients to one winner, and
    padding (which never wins) sits next to negative values."""
    x = tie_free(7, (2, 2, 5, 6), -3.0, -0.5) if padding else tie_free(7, (2, 2, 5, 6))
    gradcheck(lambda t: F.max_pool2d(t, kernel_size, stride, padding), [x], directions=6)


def test_max_pool2d_negative_inputs_with_padding():
    """Every value negative: the zero padding must not win (it is -inf, not 0)."""
    x = -np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    y = F.max_pool2d(minigrad.tensor(x), 3, 2, 1)
    np.testing.assert_array_equal(y.numpy(), [[[[-1.0, -2.0], [-5.0, -6.0]]]])  # every window holds padding
    gradcheck(lambda t: F.max_pool2d(t, 3, 2, 1), [x + tie_free(1, x.shape, -0.1, 0.1)])


@given(case=pool_cases(), count_include_pad=st.booleans(), seed=seeds)
def test_avg_pool2d(case, count_include_pad, seed):
    x = uniform(seed, case["x_shape"])
    gradcheck(
        lambda t: F.avg_pool2d(t, case["kernel_size"], case["stride"], case["padding"], count_include_pad),
        [x],
        directions=4,
    )


@given(
    in_hw=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    out_hw=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    seed=seeds,
)
def test_adaptive_avg_pool2d(in_hw, out_hw, seed):
    x = uniform(seed, (2, 2) + in_hw)
    gradcheck(lambda t: F.adaptive_avg_pool2d(t, out_hw), [x])


@pytest.mark.parametrize("in_hw, out_hw", [((6, 4), (3, 2)), ((6, 4), (6, 4)), ((7, 5), (3, 2)), ((5, 5), 3), ((4, 6), (1, 1))])
def test_adaptive_avg_pool2d_divisible_and_not(in_hw, out_hw):
    x = uniform(3, (1, 2) + in_hw)
    gradcheck(lambda t: F.adaptive_avg_pool2d(t, out_hw), [x], directions=4)


# ----------------------------------------------------------------------------------------
# normalization


@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(1, 3), st.integers(1, 3)),
    size=st.integers(1, 5),
    alpha=st.sampled_from([1e-4, 0.1, 1.0]),
    beta=st.sampled_from([0.75, 0.5, 1.0]),
    k=st.sampled_from([1.0, 2.0]),
    seed=seeds,
)
def test_local_response_norm(shape, size, alpha, beta, k, seed):
    x = uniform(seed, shape, -2.0, 2.0)
    gradcheck(lambda t: F.local_response_norm(t, size, alpha, beta, k), [x], directions=4)


@given(
    shape=st.sampled_from([(4, 3), (2, 3, 2), (2, 2, 2, 3), (1, 2, 2, 2), (3, 1, 1, 2)]),
    affine=st.sampled_from(["weight and bias", "weight", "bias", "none"]),
    seed=seeds,
)
def test_batch_norm_training(shape, affine, seed):
    x = uniform(seed, shape, -2.0, 2.0)
    c = shape[1]
    weight, bias = uniform(seed + 1, (c,), 0.5, 1.5), uniform(seed + 2, (c,))
    if affine == "weight and bias":
        f = lambda x_, w_, b_: F.batch_norm(x_, np.zeros(c), np.ones(c), w_, b_, training=True)  # noqa: E731
        gradcheck(f, [x, weight, bias], directions=4)
    elif affine == "weight":
        gradcheck(lambda x_, w_: F.batch_norm(x_, None, None, w_, training=True), [x, weight], directions=4)
    elif affine == "bias":
        gradcheck(lambda x_, b_: F.batch_norm(x_, None, None, bias=b_, training=True), [x, bias], directions=4)
    else:
        gradcheck(lambda x_: F.batch_norm(x_, None, None, training=True), [x], directions=4)


@given(shape=st.sampled_from([(4, 3), (2, 3, 2, 2)]), seed=seeds)
def test_batch_norm_eval(shape, seed):
    c = shape[1]
    mean, var = uniform(seed + 3, (c,)), uniform(seed + 4, (c,), 0.5, 2.0)
    args = [uniform(seed, shape), uniform(seed + 1, (c,)), uniform(seed + 2, (c,))]
    gradcheck(lambda x_, w_, b_: F.batch_norm(x_, mean, var, w_, b_, training=False), args)


def test_batch_norm_training_updates_running_stats():
    x = uniform(5, (4, 2, 3, 3))
    running_mean, running_var = np.zeros(2), np.ones(2)
    F.batch_norm(minigrad.tensor(x), running_mean, running_var, training=True, momentum=0.25)
    axes = (0, 2, 3)
    np.testing.assert_allclose(running_mean, 0.25 * x.mean(axis=axes), rtol=1e-6)
    np.testing.assert_allclose(running_var, 0.75 + 0.25 * x.var(axis=axes, ddof=1), rtol=1e-6)


# ----------------------------------------------------------------------------------------
# resampling and padding


@given(case=interpolate_cases(), seed=seeds)
def test_interpolate(case, seed):
    x = uniform(seed, case["x_shape"])
    gradcheck(
        lambda t: F.interpolate(t, size=case["size"], scale_factor=case["scale_factor"], mode=case["mode"],
                                align_corners=case["align_corners"]),
        [x],
        directions=4,
    )


@given(case=pad_cases(), seed=seeds)
def test_pad(case, seed):
    x = uniform(seed, case["shape"])
    gradcheck(lambda t: F.pad(t, case["pad"], mode=case["mode"], value=case["value"]), [x], directions=4)


def test_pad_reflect_and_replicate_by_hand():
    x = minigrad.tensor(np.array([[[[1.0, 2.0, 3.0]]]]), requires_grad=True)
    y = F.pad(x, (2, 1), mode="reflect")
    np.testing.assert_array_equal(y.numpy()[0, 0, 0], [3, 2, 1, 2, 3, 2])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0, 0], [1, 3, 2])
    x.grad = None
    y = F.pad(x, (2, 1), mode="replicate")
    np.testing.assert_array_equal(y.numpy()[0, 0, 0], [1, 1, 1, 2, 3, 3])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0, 0], [3, 1, 2])


# ----------------------------------------------------------------------------------------
# dropout


@given(shape=shapes(max_dims=3, max_side=4), p=st.sampled_from([0.2, 0.5, 0.8]), seed=seeds)
def test_dropout_with_fixed_seed(shape, p, seed):
    mask_seed = seed % 1000

    def f(t):
        minigrad.manual_seed(mask_seed)  # the same mask on every evaluation
        return F.dropout(t, p=p, training=True)

    gradcheck(f, [uniform(seed, shape)])


def test_dropout_mask_and_identity_cases():
    x = minigrad.tensor(np.ones((50, 40)), requires_grad=True)
    minigrad.manual_seed(3)
    y = F.dropout(x, p=0.25)
    values = set(np.unique(y.numpy()).tolist())
    assert values <= {0.0, 1.0 / 0.75}
    assert 0.15 < np.mean(y.numpy() == 0) < 0.35
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, y.numpy())  # d(x * mask)/dx = mask, and x = 1
    assert F.dropout(x, p=0.5, training=False) is x
    assert F.dropout(x, p=0.0) is x
    np.testing.assert_array_equal(F.dropout(x, p=1.0).numpy(), 0.0)


# ----------------------------------------------------------------------------------------
# the checker catches a wrong backward


class _SlightlyWrongSquare(minigrad.Function):
    """x**2 with a backward 0.1% too large."""

    scale = 1.001

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad * _SlightlyWrongSquare.scale


@pytest.mark.parametrize("shape", [(3, 4), (9, 9)], ids=["elementwise", "directional-only"])
def test_checker_catches_a_backward_off_by_a_tenth_of_a_percent(shape, monkeypatch):
    x = uniform(0, shape, 0.5, 2.0)
    monkeypatch.setattr(_SlightlyWrongSquare, "scale", 1.0)
    gradcheck(_SlightlyWrongSquare.apply, [x])  # the correct backward passes
    monkeypatch.setattr(_SlightlyWrongSquare, "scale", 1.001)
    with pytest.raises(AssertionError, match="finite differences"):
        gradcheck(_SlightlyWrongSquare.apply, [x])


# ----------------------------------------------------------------------------------------
# ReLU backward rules, worked by hand


def test_relu_backward_rules_by_hand():
    """x -> relu -> * c -> relu -> . d, one forward backpropagated under each rule.

    x  = [-1,  2,  3, -4,  5,  6]
    r1 = [ 0,  2,  3,  0,  5,  6]         c = [2, 1, -1, 3, 1, -1]
    a  = [ 0,  2, -3,  0,  5, -6]
    r2 = [ 0,  2,  0,  0,  5,  0]         d = [1, -2, 3, 2, 1, -1],  z = r2 . d = 1

    standard:  ga = d * (a > 0)          = [0, -2, 0, 0, 1, 0];  gr1 = ga * c = [0, -2, 0, 0, 1, 0]
               gx = gr1 * (x > 0)        = [0, -2, 0, 0, 1, 0]
    deconvnet: ga = d * (d > 0)          = [1, 0, 3, 2, 1, 0];   gr1 = ga * c = [2, 0, -3, 6, 1, 0]
               gx = gr1 * (gr1 > 0)      = [2, 0, 0, 6, 1, 0]
    guided:    ga = d * (a > 0) * (d > 0) = [0, 0, 0, 0, 1, 0];  gr1 = [0, 0, 0, 0, 1, 0]
               gx = gr1 * (x > 0) * (gr1 > 0) = [0, 0, 0, 0, 1, 0]
    """
    x = minigrad.tensor(np.array([-1.0, 2.0, 3.0, -4.0, 5.0, 6.0]), requires_grad=True)
    c = np.array([2.0, 1.0, -1.0, 3.0, 1.0, -1.0])
    d = np.array([1.0, -2.0, 3.0, 2.0, 1.0, -1.0])
    z = (F.relu(F.relu(x) * c) * d).sum()
    assert z.item() == 1.0
    expected = {
        "standard": [0.0, -2.0, 0.0, 0.0, 1.0, 0.0],
        "deconvnet": [2.0, 0.0, 0.0, 6.0, 1.0, 0.0],
        "guided": [0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    }
    for rule in ["guided", "standard", "deconvnet", "guided", "standard"]:
        x.grad = None
        with minigrad.relu_backward(rule):
            z.backward(retain_graph=True)
        np.testing.assert_array_equal(x.grad, expected[rule], err_msg=rule)
    x.grad = None
    z.backward()  # outside any block the rule is "standard" again
    np.testing.assert_array_equal(x.grad, expected["standard"])


def test_relu_rule_is_read_at_backward_time_not_forward_time():
    x = minigrad.tensor(np.array([-1.0, 2.0]), requires_grad=True)
    with minigrad.relu_backward("deconvnet"):
        y = F.relu(x)  # recorded inside the block ...
    y.backward(np.array([3.0, -1.0]))  # ... but backpropagated outside it: standard
    np.testing.assert_array_equal(x.grad, [0.0, -1.0])


# ----------------------------------------------------------------------------------------
# frozen weights never compute a weight gradient


def _recording(kern, name, calls, monkeypatch):
    original = getattr(kern, name)

    def wrapper(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(kern, name, wrapper)


def test_conv2d_with_frozen_weights_skips_the_weight_gradient_kernel(monkeypatch):
    x = minigrad.tensor(uniform(0, (1, 2, 5, 5)), requires_grad=True)
    w = minigrad.tensor(uniform(1, (3, 2, 3, 3)))  # frozen
    w2 = minigrad.tensor(uniform(3, (2, 3, 3, 3)))  # frozen
    b = minigrad.tensor(uniform(2, (3,)))
    kern = minigrad.backend.kernels_for(x.data)
    calls = []
    _recording(kern, "conv2d_backward_weight", calls, monkeypatch)
    _recording(kern, "conv2d_backward_data", calls, monkeypatch)
    F.conv2d(F.relu(F.conv2d(x, w, b, padding=1)), w2).sum().backward()
    assert calls == ["conv2d_backward_data", "conv2d_backward_data"]
    assert w.grad is None and w2.grad is None and b.grad is None and x.grad is not None
    # and the other way round: a frozen input skips the data-gradient kernel
    calls.clear()
    x.requires_grad = False
    w.requires_grad = True
    F.conv2d(x, w, b, padding=1).sum().backward()
    assert calls == ["conv2d_backward_weight"]
    assert w.grad is not None


# ----------------------------------------------------------------------------------------
# bad input names the problem


def test_error_conv2d_channel_mismatch():
    with pytest.raises(ValueError, match=r"expects 3 input channels, the input has 2"):
        F.conv2d(np.zeros((1, 2, 5, 5)), np.zeros((4, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"groups=2 must divide"):
        F.conv2d(np.zeros((1, 3, 5, 5)), np.zeros((4, 1, 3, 3)), groups=2)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        F.conv2d(np.zeros((2, 5, 5)), np.zeros((4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"larger than the padded input"):
        F.conv2d(np.zeros((1, 2, 2, 2)), np.zeros((4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        F.conv2d(np.zeros((1, 2, 5, 5)), np.zeros((4, 2, 3, 3)), np.zeros(3))
    with pytest.raises(TypeError, match=r"conv2d needs inputs of one dtype, got float32, float64"):
        F.conv2d(np.zeros((1, 2, 5, 5), np.float32), np.zeros((4, 2, 3, 3)))


def test_error_linear_feature_mismatch():
    with pytest.raises(ValueError, match=r"input has 5 features, the weight \(3, 4\) expects 4"):
        F.linear(np.zeros((2, 5)), np.zeros((3, 4)))


def test_error_matmul_shape_mismatch():
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        minigrad.tensor(np.zeros((2, 3))) @ minigrad.tensor(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"matmul"):
        minigrad.matmul(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match=r"at least one dimension"):
        minigrad.matmul(np.float64(2.0), np.zeros(4))


def test_error_concatenate_and_stack_shape_mismatch():
    with pytest.raises(ValueError, match=r"cannot concatenate shapes \(2, 3\), \(2, 4\) along axis 0"):
        minigrad.concatenate([np.zeros((2, 3)), np.zeros((2, 4))], axis=0)
    with pytest.raises(ValueError, match=r"stack needs tensors of one shape"):
        minigrad.stack([np.zeros((2, 3)), np.zeros((3, 2))])
    with pytest.raises(ValueError, match=r"at least one tensor"):
        minigrad.concatenate([])


def test_error_reshape_size_mismatch():
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) \(6 elements\) to \(4, 2\)"):
        minigrad.tensor(np.zeros((2, 3))).reshape(4, 2)


def test_error_integer_arrays_where_floats_are_needed():
    with pytest.raises(TypeError, match=r"conv2d needs a floating-point input, got dtype int64"):
        F.conv2d(np.zeros((1, 2, 5, 5), dtype=np.int64), np.zeros((4, 2, 3, 3)))
    with pytest.raises(TypeError, match=r"only floating-point tensors can require gradients, got dtype int"):
        minigrad.tensor(np.arange(3), requires_grad=True)
    with pytest.raises(TypeError, match=r"only floating-point"):
        minigrad.tensor(np.arange(3)).requires_grad_()
    with pytest.raises(TypeError, match=r"max_pool2d needs a floating-point input"):
        F.max_pool2d(np.zeros((1, 1, 4, 4), dtype=np.int32), 2)
    with pytest.raises(ValueError, match=r"labels must be integers, got dtype float"):
        F.cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))


def test_error_backward_on_non_scalar_without_gradient():
    y = minigrad.tensor(np.ones((2, 3)), requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match=r"single-element tensor.*shape \(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"gradient of shape \(3,\) for a tensor of shape \(2, 3\)"):
        y.backward(np.ones(3))


def test_error_backward_on_a_tensor_without_grad():
    with pytest.raises(RuntimeError, match=r"does not require grad"):
        minigrad.tensor(np.ones(3)).sum().backward()
    x = minigrad.tensor(np.ones(3), requires_grad=True)
    with minigrad.no_grad():
        y = (x * 2.0).sum()
    with pytest.raises(RuntimeError, match=r"does not require grad"):
        y.backward()


def test_error_backward_twice_without_retain_graph():
    x = minigrad.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
        y.backward()
    z = (x.exp() * 3.0).sum()
    z.backward(retain_graph=True)
    z.backward()  # allowed once more after retain_graph=True
    np.testing.assert_allclose(x.grad, [2.0, 4.0] + 6.0 * np.exp([1.0, 2.0]))


def test_error_labels_out_of_range():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got values from 0 to 3"):
        F.cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got values from -1"):
        F.cross_entropy(np.zeros((2, 3)), np.array([-1, 2]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        F.cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))


def test_error_unknown_relu_rule():
    with pytest.raises(ValueError, match=r"unknown ReLU backward rule 'gudied'.*standard, deconvnet, guided"):
        with minigrad.relu_backward("gudied"):
            pass


def test_error_unknown_interpolate_and_pad_modes():
    x = np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"interpolate: unknown mode 'bicubic'"):
        F.interpolate(x, size=(4, 4), mode="bicubic")
    with pytest.raises(ValueError, match=r"pad: unknown mode 'circular'"):
        F.pad(x, (1, 1), mode="circular")
    with pytest.raises(ValueError, match=r"reflect padding \(3, 0\) must be smaller than dimension 3 of size 3"):
        F.pad(x, (3, 0), mode="reflect")
    with pytest.raises(ValueError, match=r"replicate padding \(0, 1\) needs dimension 2 to be non-empty"):
        F.pad(np.zeros((1, 1, 0, 3)), (1, 1, 0, 1), mode="replicate")
    assert F.pad(np.zeros((1, 0, 2, 3)), (1, 1, 1, 1), mode="reflect").shape == (1, 0, 4, 5)
    with pytest.raises(ValueError, match=r"exactly one of size and scale_factor"):
        F.interpolate(x, size=(4, 4), scale_factor=2.0)


def test_error_reduction_axis_out_of_range():
    with pytest.raises(ValueError, match=r"axis 2 is out of range for a tensor with 2 dimensions"):
        minigrad.tensor(np.zeros((2, 3))).sum(axis=2)
    with pytest.raises(ValueError, match=r"softmax: axis -3 is out of range for shape \(2, 3\)"):
        F.softmax(np.zeros((2, 3)), axis=-3)


@given(case=conv_cases(), seed=seeds, rule=st.sampled_from(["standard", "deconvnet", "guided"]),
       backend=st.sampled_from(["reference", "numba"]))
@settings(max_examples=30)
def test_conv2d_relu_is_relu_of_conv2d(case, seed, rule, backend):
    """The fused op gives bitwise what relu(conv2d(...)) gives, forward and backward under each
    ReLU rule (so conv2d's gradient check covers it), on both CPU backends."""
    x = uniform(seed, case["x_shape"])
    w = uniform(seed + 1, case["w_shape"])
    b = uniform(seed + 2, (case["w_shape"][0],)) if case["bias"] else None
    params = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    results = []
    with using_backend(backend):
        for fn in (lambda *a: F.conv2d_relu(*a, **params), lambda *a: F.relu(F.conv2d(*a, **params))):
            tensors = [minigrad.tensor(a, requires_grad=True) for a in (x, w) + (() if b is None else (b,))]
            y = fn(*tensors)
            with minigrad.relu_backward(rule):
                y.backward(uniform(seed + 3, y.shape))
            results.append([y.numpy()] + [t.grad for t in tensors])
    for fused, plain in zip(*results, strict=True):
        np.testing.assert_array_equal(fused, plain)


def test_backward_keeps_masks_and_narrow_indices_not_activations():
    """What a frozen-weight conv / ReLU / max-pool / linear chain keeps for backward: a 1-byte
    ReLU mask, max-pool indices in the narrowest type, the weight but never the input."""
    x = minigrad.tensor(uniform(0, (1, 2, 6, 6)).astype(np.float32), requires_grad=True)
    w = minigrad.tensor(uniform(1, (3, 2, 3, 3)).astype(np.float32))
    fc = minigrad.tensor(uniform(2, (4, 27)).astype(np.float32))
    pooled = F.max_pool2d(F.conv2d_relu(x, w, padding=1), 2)
    y = F.linear(pooled.reshape(1, -1), fc)
    conv_ctx = pooled._ctx.parents[0]._ctx
    saved_x, saved_w, mask = conv_ctx.saved_tensors
    assert saved_x is None and saved_w is w.data and mask.dtype == np.bool_
    (argmax,) = pooled._ctx.saved_tensors
    assert argmax.dtype == np.uint8
    relu_ctx = F.relu(x)._ctx
    assert relu_ctx.saved_tensors[0].dtype == np.bool_
    saved_a, saved_b = y._ctx.saved_tensors
    assert saved_a is None and saved_b is not None  # the frozen weight's input is not kept
