"""NaN and infinities go where PyTorch puts them, on every backend.

Hypothesis inserts NaN, +inf and -inf at random positions of the input (and of the upstream
gradient for backward kernels); each backend's result must have NaN, +inf and -inf at
exactly the places PyTorch's has them (and equal finite values elsewhere). Torch is the
oracle when installed; the reference is held to the same rules without it (it is the
specification the other backends' parity tests use). What used to go wrong: Numba's
max-pool kept a NaN only when it came first in its window; ReLU's backward dropped the
gradient at a NaN input; adaptive average pooling by a 0/1 matrix turned one inf into NaN
across whole rows (0 * inf); Winograd's tile transforms spread one NaN over outputs whose
receptive field does not contain it.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kernels.backends import BACKENDS, backend

torch = pytest.importorskip("torch")
TF = torch.nn.functional

# NumPy's matmul warns about the invalid values these tests feed it on purpose
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

SPECIALS = [np.nan, np.inf, -np.inf]


def with_specials(rng, a, count):
    """A copy of ``a`` with ``count`` entries replaced by NaN, +inf or -inf at random places."""
    a = a.copy()
    flat = a.reshape(-1)
    for index in rng.choice(flat.size, size=min(count, flat.size), replace=False):
        flat[index] = SPECIALS[rng.integers(3)]
    return a


def assert_same_specials(got, want, what, rtol=1e-5):
    """NaN, +inf, -inf at the same places; finite values equal within rounding."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, what
    for name, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        mismatch = test(got) != test(want)
        assert not mismatch.any(), f"{what}: {name} at {np.argwhere(mismatch)[:5].tolist()} differs from torch"
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=rtol, atol=rtol, err_msg=what)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


@st.composite
def cases(draw):
    """dtype, a rng, specials per array, and an input size; float32 cases take Numba's
    Winograd path (128 channels, 28x28), which must hand such images to im2col, or its direct
    path (16 channels, 10x10), where padding and the dropped columns of its extended rows
    must not leak a NaN or an infinity into a neighbouring output."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype == np.float32:
        shape = draw(st.sampled_from([(2, 128, 28, 28), (2, 16, 10, 10)]))
    else:
        shape = (2, 3, draw(st.integers(4, 9)), draw(st.integers(4, 9)))
    return dtype, rng, draw(st.integers(1, 4)), shape


@pytest.mark.parametrize("device", BACKENDS)
@given(case=cases(), stride=st.sampled_from([1, 2]), padding=st.sampled_from([0, 1]))
@settings(max_examples=15)
def test_convolution(device, case, stride, padding):
    dtype, rng, count, shape = case
    be = backend(device)
    x = with_specials(rng, rng.standard_normal(shape), count).astype(dtype)
    w = (rng.standard_normal((shape[1], shape[1], 3, 3)) / np.sqrt(9 * shape[1])).astype(dtype)  # unit-scale outputs
    b = rng.standard_normal(shape[1]).astype(dtype)
    s = (1, 1) if dtype == np.float32 else (stride, stride)  # stride 1: the Winograd and direct cases
    geometry = (s, (padding, padding), (1, 1), 1)
    want = TF.conv2d(t(x).double(), t(w).double(), t(b).double(), s, padding).numpy()
    got = be.get(be.conv2d_forward(be.put(x), be.put(w), be.put(b), *geometry))
    assert_same_specials(got, want, "conv2d_forward", rtol=2e-4)
    got = be.get(be.conv2d_forward(be.put(x), be.put(w), be.put(b), *geometry, relu=True))
    assert_same_specials(got, torch.relu(torch.from_numpy(want)).numpy(), "conv2d_forward relu", rtol=2e-4)
    gy = with_specials(rng, rng.standard_normal(want.shape), count).astype(dtype)
    want = torch.nn.grad.conv2d_input(x.shape, t(w).double(), t(gy).double(), s, padding).numpy()
    got = be.get(be.conv2d_backward_data(be.put(gy), be.put(w), x.shape, *geometry))
    assert_same_specials(got, want, "conv2d_backward_data", rtol=2e-4)


@pytest.mark.parametrize("device", BACKENDS)
@given(case=cases(), kernel=st.sampled_from([2, 3]), stride=st.sampled_from([1, 2]),
       padding=st.sampled_from([0, 1]))
def test_pooling(device, case, kernel, stride, padding):
    dtype, rng, count, shape = case
    be = backend(device)
    x = with_specials(rng, rng.standard_normal(shape), count).astype(dtype)
    if rng.random() < 0.5:  # several NaN in one window: PyTorch routes the gradient to the last
        x[0, 0, :2, :2] = np.nan
    geometry = ((kernel, kernel), (stride, stride), (padding, padding))
    xt = t(x).requires_grad_(True)
    want, index = TF.max_pool2d(xt, kernel, stride, padding, return_indices=True)
    got, arg = be.max_pool2d_forward(be.put(x), *geometry)
    assert_same_specials(be.get(got), want.detach().numpy(), "max_pool2d_forward")
    np.testing.assert_array_equal(be.get(arg).astype(np.int64), index.numpy())
    gy = with_specials(rng, rng.standard_normal(want.shape), count).astype(dtype)
    want.backward(t(gy))
    got = be.get(be.max_pool2d_backward(be.put(gy), arg, x.shape, *geometry))
    assert_same_specials(got, xt.grad.numpy(), "max_pool2d_backward")

    xt = t(x).requires_grad_(True)
    want = TF.avg_pool2d(xt, kernel, stride, padding, count_include_pad=False)
    got = be.get(be.avg_pool2d_forward(be.put(x), *geometry, False))
    assert_same_specials(got, want.detach().numpy(), "avg_pool2d_forward")
    want.backward(t(gy))
    got = be.get(be.avg_pool2d_backward(be.put(gy), x.shape, *geometry, False))
    assert_same_specials(got, xt.grad.numpy(), "avg_pool2d_backward")


def torch_relu_backward(gy, y, rule):
    """The three rules as PyTorch users write them: autograd's ReLU backward
    (threshold_backward against the output) and relu() on the gradient (Captum's hooks)."""
    if rule == "deconvnet":
        return torch.relu(gy)
    if rule == "guided":
        gy = torch.relu(gy)
    return torch.ops.aten.threshold_backward(gy, y, 0)


@pytest.mark.parametrize("device", BACKENDS)
@given(case=cases(), rule=st.sampled_from(["standard", "deconvnet", "guided"]), mask=st.booleans())
def test_relu(device, case, rule, mask):
    """ReLU backward takes the forward input, output or boolean mask ~(y <= 0) alike."""
    dtype, rng, count, shape = case
    be = backend(device)
    x = with_specials(rng, rng.standard_normal(shape), count).astype(dtype)
    x[0, 0, 0, :3] = 0  # exact zeros: masked, as PyTorch masks them
    y = torch.relu(t(x))
    assert_same_specials(be.get(be.relu_forward(be.put(x))), y.numpy(), "relu_forward")
    b = rng.standard_normal(shape[1]).astype(dtype)
    assert_same_specials(be.get(be.bias_relu_forward(be.put(x), be.put(b))),
                         torch.relu(t(x) + t(b)[:, None, None]).numpy(), "bias_relu_forward")
    gy = with_specials(rng, rng.standard_normal(shape), count).astype(dtype)
    saved = ~(y.numpy() <= 0) if mask else x
    got = be.get(be.relu_backward(be.put(gy), be.put(saved), rule))
    assert_same_specials(got, torch_relu_backward(t(gy), y, rule).numpy(), f"relu_backward {rule}")


@pytest.mark.parametrize("device", BACKENDS)
@given(case=cases())
def test_local_response_norm(device, case):
    dtype, rng, count, shape = case
    be = backend(device)
    x = with_specials(rng, rng.standard_normal(shape), count).astype(dtype)
    xt = t(x).requires_grad_(True)
    want = TF.local_response_norm(xt, 3, 1e-2, 0.75, 1.0)
    y = be.lrn_forward(be.put(x), 3, 1e-2, 0.75, 1.0)
    assert_same_specials(be.get(y), want.detach().numpy(), "lrn_forward")
    gy = with_specials(rng, rng.standard_normal(shape), count).astype(dtype)
    want.backward(t(gy))
    got = be.get(be.lrn_backward(be.put(gy), be.put(x), y, 3, 1e-2, 0.75, 1.0))
    assert_same_specials(got, xt.grad.numpy(), "lrn_backward", rtol=1e-4)
