"""The fused conv + bias + ReLU on every backend: forward (``relu=True``) and its data gradient
(``relu_rule``, the rule applied as gy is read) against the reference's unfused chain.

The Winograd-sized case (float32, 128 channels, 28x28) makes the Numba backend apply the rule
inside its input transform, the 16-channel one goes through its direct micro-kernel, and the
small one through im2col with strides and groups.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import reference
from tests.kernels.backends import BACKENDS, backend

CASES = [
    ((2, 128, 28, 28), (128, 128, 3, 3), ((1, 1), (1, 1), (1, 1), 1), np.float32),
    ((2, 16, 12, 10), (16, 16, 3, 3), ((1, 1), (1, 1), (1, 1), 1), np.float32),
    ((2, 4, 9, 8), (6, 2, 3, 2), ((2, 1), (1, 1), (1, 2), 2), np.float64),
]


@pytest.mark.parametrize("device", BACKENDS)
@given(case=st.sampled_from(CASES), rule=st.sampled_from(["standard", "deconvnet", "guided"]),
       seed=st.integers(0, 2**32 - 1), with_mask=st.booleans())
@settings(max_examples=12)
def test_fused_conv_relu_matches_the_unfused_reference(device, case, rule, seed, with_mask):
    x_shape, w_shape, geometry, dtype = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    be = backend(device)
    want = reference.relu_forward(reference.conv2d_forward(x, w, b, *geometry))
    y = be.get(be.conv2d_forward(be.put(x), be.put(w), be.put(b), *geometry, relu=True))
    tol = 1e-4 if dtype == np.float32 else 1e-12  # float32 sums of up to 1,152 unit-scale terms
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    mask = ~(want <= 0)
    gy = rng.standard_normal(want.shape).astype(dtype)
    gy[rng.random(gy.shape) < 0.2] = 0  # exact zeros: the edge of the deconvnet and guided masks
    expected = reference.conv2d_backward_data(reference.relu_backward(gy, mask, rule), w, x_shape, *geometry)
    passed = be.put(mask) if with_mask or rule != "deconvnet" else None
    got = be.get(be.conv2d_backward_data(be.put(gy), be.put(w), x_shape, *geometry, relu_mask=passed,
                                         relu_rule=rule))
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * np.abs(expected).max())


@pytest.mark.parametrize("device", BACKENDS)
def test_fused_backward_needs_its_mask(device):
    be = backend(device)
    gy = np.ones((1, 2, 4, 4), np.float32)
    w = np.ones((2, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="relu_mask"):
        be.conv2d_backward_data(be.put(gy), be.put(w), gy.shape, (1, 1), (1, 1), (1, 1), 1, relu_mask=None,
                                relu_rule="guided")
