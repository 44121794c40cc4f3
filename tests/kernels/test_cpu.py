"""Parity of the Numba kernels (kernels.cpu) with the NumPy reference (kernels.reference).

Shapes and geometry are drawn by Hypothesis (odd sizes, stride larger than the kernel,
padding, dilation, groups, batch > 1, overlapping pooling windows); values come from a seeded
NumPy generator. Each test draws its dtype from (float32, float64), so both specializations
of every jitted loop are compiled once and then exercised by every example. The Winograd
path is checked against the direct method (the reference, in float64) on its own, on
VGG-sized layers, and on the logits of a reduced VGG16; the direct micro-kernel path
(float32 only) on its own against the reference.

Kept small on purpose: the first run compiles every kernel (Numba's cache makes later runs
fast), so the drawn shapes stay tiny and the number of distinct specializations low.
"""

import inspect

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

pytest.importorskip("numba")

import kernels  # noqa: E402
from kernels import cpu as K  # noqa: E402
from kernels import reference as R  # noqa: E402
from kernels.cpu import _common, _direct, _winograd, conv  # noqa: E402
from kernels.geometry import argmax_dtype  # noqa: E402

CONTRACT = (
    "conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight", "bias_relu_forward",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "relu_forward", "relu_backward", "lrn_forward", "lrn_backward", "matmul",
)

@pytest.fixture(autouse=True)
def always_parallel():
    """Small calls normally run on one thread (_common.SERIAL_BELOW); the tests' shapes are all
    small, so switch that off: every parallel loop runs on all threads, races included."""
    saved = _common.SERIAL_BELOW
    _common.SERIAL_BELOW = 0
    yield
    _common.SERIAL_BELOW = saved


dtypes = st.sampled_from([np.float32, np.float64])
seeds = st.integers(0, 2**32 - 1)


def _tol(dtype):
    return 2e-5 if dtype == np.float32 else 1e-11


def assert_close(actual, expected, dtype, scale_tol=None):
    """Equal shape and dtype, and |actual - expected| <= tol * max(1, max|expected|)."""
    assert actual.shape == expected.shape
    assert actual.dtype == np.dtype(dtype)
    assert actual.flags.c_contiguous
    tol = _tol(dtype) if scale_tol is None else scale_tol
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


def noncontiguous(a):
    """A copy of ``a`` seen through a non-contiguous view: every axis of a twice larger
    buffer taken with step -2 (Chainer's trick), then reversed back."""
    big = np.empty(tuple(2 * s for s in a.shape), a.dtype)
    view = big[(slice(None, None, -2),) * a.ndim][(slice(None, None, -1),) * a.ndim]
    view[...] = a
    assert a.size <= 1 or not view.flags.c_contiguous
    return view


# ----------------------------------------------------------------------------------------
# the contract itself


def test_exports_match_the_contract():
    assert set(CONTRACT) <= set(K.__all__)
    for name in CONTRACT:
        mine = inspect.signature(getattr(K, name))
        spec = inspect.signature(getattr(R, name))
        assert list(mine.parameters) == list(spec.parameters), name


def test_load_numba_returns_this_module():
    assert kernels.load("numba") is K


# ----------------------------------------------------------------------------------------
# convolution


@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 2))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))  # up to larger than the kernel
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    n = draw(st.integers(1, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 9))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 9))
    return dict(
        x_shape=(n, cg * groups, h, w), w_shape=(og * groups, cg, kh, kw),
        geometry=((sh, sw), (ph, pw), (dh, dw), groups),
    )


@given(case=conv_cases(), dtype=dtypes, seed=seeds, bias=st.booleans(), contiguous=st.booleans())
def test_conv2d_matches_reference(case, dtype, seed, bias, contiguous):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    w = rng.standard_normal(case["w_shape"]).astype(dtype)
    b = rng.standard_normal(case["w_shape"][0]).astype(dtype) if bias else None
    geometry = case["geometry"]
    y = R.conv2d_forward(x, w, b, *geometry)
    gy = rng.standard_normal(y.shape).astype(dtype)
    xs, ws, gys = (x, w, gy) if contiguous else (noncontiguous(x), noncontiguous(w), noncontiguous(gy))
    assert_close(K.conv2d_forward(xs, ws, b, *geometry), y, dtype)
    assert_close(K.conv2d_backward_data(gys, ws, x.shape, *geometry),
                 R.conv2d_backward_data(gy, w, x.shape, *geometry), dtype)
    assert_close(K.conv2d_backward_weight(gys, xs, w.shape, *geometry),
                 R.conv2d_backward_weight(gy, x, w.shape, *geometry), dtype)


@pytest.mark.parametrize("geometry", [((1, 2), (1, 2), (2, 1), 2), ((2, 2), (0, 1), (1, 1), 1)])
def test_im2col_in_row_blocks(monkeypatch, geometry):
    """Large images build their column matrix a few output rows at a time; force one-row
    blocks and check all three convolution kernels still match the reference."""
    monkeypatch.setattr(conv, "COLUMN_BLOCK_BYTES", 1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 11, 9))
    w = rng.standard_normal((6, 4 // geometry[3], 3, 2))
    b = rng.standard_normal(6)
    y = R.conv2d_forward(x, w, b, *geometry)
    gy = rng.standard_normal(y.shape)
    assert_close(K.conv2d_forward(x, w, b, *geometry), y, np.float64)
    assert_close(K.conv2d_backward_data(gy, w, x.shape, *geometry), R.conv2d_backward_data(gy, w, x.shape, *geometry),
                 np.float64)
    assert_close(K.conv2d_backward_weight(gy, x, w.shape, *geometry),
                 R.conv2d_backward_weight(gy, x, w.shape, *geometry), np.float64)


@given(half_kw=st.integers(0, 2), dw=st.integers(1, 2), kh=st.integers(1, 5), dh=st.integers(1, 2),
       ph=st.integers(0, 3), h=st.integers(1, 7), w=st.integers(1, 7), rows=st.booleans(), seed=seeds)
def test_same_width_stride_one_columns(half_kw, dw, kh, dh, ph, h, w, rows, seed):
    """Stride-1 convolutions whose output is as wide as the input (VGG's 3x3 padding 1,
    AlexNet's 5x5 padding 2) build each column-matrix row as one shifted copy of the plane
    (``_im2col._shifted_plane``, and col2im its adjoint); planes narrower than the shift, any
    vertical padding and one-row blocks included, all three kernels match the reference."""
    kw = 2 * half_kw + 1
    pw = half_kw * dw
    assume(h + 2 * ph - dh * (kh - 1) >= 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, h, w))
    wt = rng.standard_normal((4, 3, kh, kw))
    geometry = ((1, 1), (ph, pw), (dh, dw), 1)
    y = R.conv2d_forward(x, wt, None, *geometry)
    assert y.shape[3] == w
    gy = rng.standard_normal(y.shape)
    with pytest.MonkeyPatch.context() as patch:
        if rows:
            patch.setattr(conv, "COLUMN_BLOCK_BYTES", 1)
        assert_close(K.conv2d_forward(x, wt, None, *geometry), y, np.float64)
        assert_close(K.conv2d_backward_data(gy, wt, x.shape, *geometry),
                     R.conv2d_backward_data(gy, wt, x.shape, *geometry), np.float64)
        assert_close(K.conv2d_backward_weight(gy, x, wt.shape, *geometry),
                     R.conv2d_backward_weight(gy, x, wt.shape, *geometry), np.float64)


@given(n=st.integers(1, 2), c=st.integers(1, 9), k=st.integers(1, 9), h=st.integers(1, 13),
       w=st.integers(1, 13), ph=st.integers(0, 2), pw=st.integers(0, 2), seed=seeds)
def test_winograd_matches_direct(n, c, k, h, w, ph, pw, seed):
    """Winograd F(4x4, 3x3), forward and data gradient, against the float64 direct method."""
    if h + 2 * ph < 3 or w + 2 * pw < 3:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    geometry = ((1, 1), (ph, pw), (1, 1), 1)
    y = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *geometry)
    gy = rng.standard_normal(y.shape)
    gx = R.conv2d_backward_data(gy, wt.astype(np.float64), x.shape, *geometry)
    assert_close(conv.forward(x, wt, b, *geometry, algorithm="winograd"), y, np.float32, 1e-5)
    assert_close(conv.backward_data(gy.astype(np.float32), wt, x.shape, *geometry, algorithm="winograd"),
                 gx, np.float32, 1e-5)


@st.composite
def direct_geometries(draw):
    """(kh, kw, ph, pw, h, w): padding below the kernel, the padded image at least the kernel."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ph, pw = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    h, w = draw(st.integers(max(1, kh - 2 * ph), 12)), draw(st.integers(max(1, kw - 2 * pw), 12))
    return kh, kw, ph, pw, h, w


@given(n=st.integers(1, 5), c=st.integers(1, 9), k=st.integers(1, 20), geometry=direct_geometries(),
       relu=st.booleans(), seed=seeds)
def test_direct_matches_reference(n, c, k, geometry, relu, seed):
    """The direct micro-kernel path, forward (bias, ReLU), data and weight gradients, against
    the float64 reference: any kernel size and padding below it, output channels that do not fill a panel,
    images narrower than a micro-tile and wider than several."""
    kh, kw, ph, pw, h, w = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c, kh, kw)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    geometry = ((1, 1), (ph, pw), (1, 1), 1)
    y = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), *geometry)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = R.conv2d_backward_data(gy.astype(np.float64), wt.astype(np.float64), x.shape, *geometry)
    assert_close(conv.forward(x, wt, b, *geometry, relu=relu, algorithm="direct"), np.maximum(y, 0) if relu else y,
                 np.float32)
    assert_close(conv.backward_data(gy, wt, x.shape, *geometry, algorithm="direct"), gx, np.float32)
    gw = R.conv2d_backward_weight(gy.astype(np.float64), x.astype(np.float64), wt.shape, *geometry)
    assert_close(conv.backward_weight(gy, x, wt.shape, *geometry, algorithm="direct"), gw, np.float32)


def test_direct_in_blocks_of_images_gives_the_same_bits(monkeypatch):
    """Large batches are padded a few images at a time; each image's outputs are the same
    chain of FMAs either way, so the results are bitwise equal (the weight gradient, a sum
    over the images, is accumulated across the blocks)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 16, 11, 9)).astype(np.float32)
    w = rng.standard_normal((20, 16, 3, 3)).astype(np.float32)
    geometry = ((1, 1), (1, 1), (1, 1), 1)
    gy = rng.standard_normal((5, 20, 11, 9)).astype(np.float32)
    assert conv.choose_algorithm(x.shape, w.shape, *geometry, np.float32) == "direct"
    assert conv.choose_algorithm(x.shape, w.shape, *geometry, np.float32, "data") == "direct"
    assert conv.choose_algorithm(x.shape, w.shape, *geometry, np.float32, "weight") == "direct"
    whole = (conv.forward(x, w, None, *geometry), conv.backward_data(gy, w, x.shape, *geometry))
    gw = conv.backward_weight(gy, x, w.shape, *geometry)
    monkeypatch.setattr(_direct, "BLOCK_BYTES", 1)
    blocked = (conv.forward(x, w, None, *geometry), conv.backward_data(gy, w, x.shape, *geometry))
    for a, b in zip(whole, blocked):
        np.testing.assert_array_equal(a, b)
    assert_close(conv.backward_weight(gy, x, w.shape, *geometry), gw, np.float32)  # summed in another order


AVX2_BLOCK_CHECK = """
import llvmlite.binding as llvm
host = llvm.get_host_cpu_features()
class WithoutAVX512(dict):  # what _direct reads says no AVX-512; Numba's own code generation is unchanged
    def flatten(self):
        return host.flatten()
llvm.get_host_cpu_features = lambda: WithoutAVX512(avx512f=False)
import numpy as np
from kernels import reference as R
from kernels.cpu import _direct, conv
assert (_direct.LANES, _direct.ROWS, _direct.VECTORS) == (8, 4, 3)
rng = np.random.default_rng(0)
for c, k, h, w, kh, pad in [(3, 20, 9, 30, 3, 1), (16, 7, 5, 4, 5, 2)]:
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c, kh, kh)).astype(np.float32)
    geometry = ((1, 1), (pad, pad), (1, 1), 1)
    y = R.conv2d_forward(x.astype(np.float64), wt.astype(np.float64), None, *geometry)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = R.conv2d_backward_data(gy.astype(np.float64), wt.astype(np.float64), x.shape, *geometry)
    gw = R.conv2d_backward_weight(gy.astype(np.float64), x.astype(np.float64), wt.shape, *geometry)
    for got, want in [(conv.forward(x, wt, None, *geometry, algorithm="direct"), y),
                      (conv.backward_data(gy, wt, x.shape, *geometry, algorithm="direct"), gx),
                      (conv.backward_weight(gy, x, wt.shape, *geometry, algorithm="direct"), gw)]:
        assert np.abs(got - want).max() <= 2e-5 * max(1.0, np.abs(want).max()), np.abs(got - want).max()
"""


def test_direct_with_the_avx2_register_block(tmp_path):
    """On a CPU without AVX-512 the micro-kernel has 8-float vectors in a 4 x 3 block; the same
    answers, checked in a fresh process (its own Numba cache: the block is frozen into the
    compiled code)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", AVX2_BLOCK_CHECK], env=env, cwd=root, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_direct_is_chosen_only_where_its_panels_fill():
    """Few output channels waste most of a panel: such directions go to im2col, whose speed
    does not depend on them (a 1-channel input's data gradient, fashion-vgg's conv1_1)."""
    geometry = ((1, 1), (1, 1), (1, 1), 1)
    assert conv.choose_algorithm((1, 1, 28, 28), (32, 1, 3, 3), *geometry, np.float32) == "direct"
    assert conv.choose_algorithm((1, 1, 28, 28), (32, 1, 3, 3), *geometry, np.float32, "data") == "im2col"
    assert conv.choose_algorithm((1, 32, 14, 14), (64, 32, 3, 3), *geometry, np.float64) == "im2col"
    assert conv.choose_algorithm((1, 32, 14, 14), (64, 32, 1, 1), (1, 1), (0, 0), (1, 1), 1, np.float32) == "im2col"
    with pytest.raises(ValueError, match="direct path needs"):
        conv.forward(np.zeros((1, 16, 8, 8), np.float32), np.zeros((16, 16, 3, 3), np.float32), None,
                     (2, 2), (1, 1), (1, 1), 1, algorithm="direct")
    with pytest.raises(ValueError, match="no weight gradient"):
        conv.backward_weight(np.zeros((1, 16, 8, 8), np.float32), np.zeros((1, 16, 8, 8), np.float32),
                             (16, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1, algorithm="winograd")


@pytest.mark.parametrize("c, k, size", [(128, 128, 56), (256, 256, 28)])
def test_winograd_error_on_vgg_sized_layers(c, k, size):
    """Relative to the output's largest magnitude, float32 Winograd stays within 2e-5 of the
    float64 direct convolution on VGG16's layer shapes (He-scaled weights)."""
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((1, c, size, size)), 0).astype(np.float32)
    w = (rng.standard_normal((k, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
    geometry = ((1, 1), (1, 1), (1, 1), 1)
    assert conv.choose_algorithm(x.shape, w.shape, *geometry, np.float32) == "winograd"
    y = R.conv2d_forward(x.astype(np.float64), w.astype(np.float64), None, *geometry)
    got = K.conv2d_forward(x, w, None, *geometry)
    assert np.abs(got - y).max() / np.abs(y).max() < 2e-5
    gy = rng.standard_normal(y.shape)
    gx = R.conv2d_backward_data(gy, w.astype(np.float64), x.shape, *geometry)
    got = K.conv2d_backward_data(gy.astype(np.float32), w, x.shape, *geometry)
    assert np.abs(got - gx).max() / np.abs(gx).max() < 2e-5


def test_winograd_logits_of_a_reduced_vgg16():
    """VGG16's 13 3x3 layers and 5 pools with channels divided by 8 (at least 16), on a 64x64
    image: Winograd float32 logits within 1e-4 (relative) of the float64 direct method."""
    from benchmarks import networks

    spec = []
    for layer in networks.vgg16_spec():
        if layer[0] == "conv":
            name, cin, cout = layer[1], layer[2], layer[3]
            spec.append(("conv", name, 3 if cin == 3 else max(16, cin // 8), max(16, cout // 8), 3, 1, 1))
        elif layer[0] == "pool":
            spec.append(layer)
    spec += [("fc", "fc6", 64 * 2 * 2, 32, True), ("fc", "fc8", 32, 10, False)]
    weights = networks.make_weights(spec)
    weights64 = {name: (w.astype(np.float64), b.astype(np.float64)) for name, (w, b) in weights.items()}
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    ours = networks.KernelNet(spec, weights, K, conv_algorithm="winograd").forward(x, keep=False)
    exact = networks.KernelNet(spec, weights64, R).forward(x.astype(np.float64), keep=False)
    assert np.abs(ours - exact).max() / np.abs(exact).max() < 1e-4


def test_weight_cache_sees_in_place_updates():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    geometry = ((1, 1), (1, 1), (1, 1), 1)
    first = conv.forward(x, w, None, *geometry, algorithm="winograd")
    np.testing.assert_array_equal(conv.forward(x, w, None, *geometry, algorithm="winograd"), first)
    w *= 2  # an optimizer step on the same array
    second = conv.forward(x, w, None, *geometry, algorithm="winograd")
    np.testing.assert_allclose(second, 2 * first, rtol=1e-5, atol=1e-5)


def test_conv_rejects_bad_geometry():
    x = np.zeros((1, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match="groups"):
        K.conv2d_forward(x, np.zeros((3, 2, 3, 3), np.float32), None, (1, 1), (0, 0), (1, 1), 2)
    with pytest.raises(ValueError, match="not positive"):
        K.conv2d_forward(x, np.zeros((3, 4, 7, 7), np.float32), None, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="gy has shape"):
        K.conv2d_backward_data(np.zeros((1, 3, 2, 2), np.float32), np.zeros((3, 4, 3, 3), np.float32),
                               x.shape, (1, 1), (0, 0), (1, 1), 1)


# ----------------------------------------------------------------------------------------
# pooling


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))  # includes 3x3/2 overlap and s > k
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    return (n, c, h, w), (kh, kw), (sh, sw), (ph, pw)


@given(case=pool_cases(), dtype=dtypes, seed=seeds, ties=st.booleans(), contiguous=st.booleans())
def test_max_pool_matches_reference(case, dtype, seed, ties, contiguous):
    """With ties=True the values are small integers, so windows hold repeated maxima (and
    overlapping windows share them): the winner must be the same pixel as the reference's,
    the first maximum in row-major order, and gradients of shared winners must add up."""
    shape, ksize, stride, padding = case
    rng = np.random.default_rng(seed)
    if ties:
        x = rng.integers(-2, 3, size=shape).astype(dtype)
    else:
        x = rng.permutation(np.prod(shape)).reshape(shape).astype(dtype) + rng.uniform(0, 0.5, shape).astype(dtype)
    y, arg = R.max_pool2d_forward(x, ksize, stride, padding)
    gy = rng.standard_normal(y.shape).astype(dtype)
    xs, gys = (x, gy) if contiguous else (noncontiguous(x), noncontiguous(gy))
    y2, arg2 = K.max_pool2d_forward(xs, ksize, stride, padding)
    np.testing.assert_array_equal(y2, y)
    assert arg2.dtype == argmax_dtype(*shape[2:])
    np.testing.assert_array_equal(arg2, arg)
    assert_close(K.max_pool2d_backward(gys, arg, shape, ksize, stride, padding),
                 R.max_pool2d_backward(gy, arg, shape, ksize, stride, padding), dtype)


@given(h=st.integers(2, 11), w=st.integers(2, 11), planes=st.integers(1, 3), dtype=dtypes, seed=seeds,
       values=st.sampled_from(["distinct", "ties", "nan"]))
def test_max_pool_2x2_stride_2_matches_reference(h, w, planes, dtype, seed, values):
    """VGG's pool (2x2, stride 2, no padding) has its own loop (``_max_plane_2x2``): the same
    winners as the reference with repeated maxima, with NaN (several in one window: the last
    wins) and with odd sizes whose last row or column no window reads."""
    rng = np.random.default_rng(seed)
    shape = (1, planes, h, w)
    x = rng.integers(-2, 3, size=shape).astype(dtype) if values != "distinct" else rng.standard_normal(shape).astype(dtype)
    if values == "nan":
        x[rng.random(shape) < 0.3] = np.nan
    y, arg = R.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    y2, arg2 = K.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(arg2, arg)


def test_max_pool_tie_rule_by_hand():
    x = np.array([[[[1.0, 3.0, 3.0], [3.0, 0.0, 3.0], [2.0, 3.0, 1.0]]]], np.float32)
    y, arg = K.max_pool2d_forward(x, (2, 2), (1, 1), (0, 0))
    np.testing.assert_array_equal(arg[0, 0], [[1, 1], [3, 5]])
    # padding never wins, even against an all-negative window
    y, arg = K.max_pool2d_forward(-np.ones((1, 1, 2, 2), np.float32), (3, 3), (1, 1), (1, 1))
    np.testing.assert_array_equal(y, -1)
    np.testing.assert_array_equal(arg[0, 0], [[0, 0], [0, 0]])
    gx = K.max_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), arg, (1, 1, 2, 2), (3, 3), (1, 1), (1, 1))
    np.testing.assert_array_equal(gx[0, 0], [[4, 0], [0, 0]])  # all four windows add into pixel 0


def test_max_pool_rejects_bad_argmax():
    with pytest.raises(ValueError, match="outside"):
        K.max_pool2d_backward(np.ones((1, 1, 1, 1), np.float32), np.array([[[[9]]]]), (1, 1, 2, 2),
                              (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match="padding"):
        K.max_pool2d_forward(np.ones((1, 1, 4, 4), np.float32), (2, 2), (2, 2), (2, 2))


@given(case=pool_cases(), dtype=dtypes, seed=seeds, count_include_pad=st.booleans(), contiguous=st.booleans())
def test_avg_pool_matches_reference(case, dtype, seed, count_include_pad, contiguous):
    shape, ksize, stride, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    y = R.avg_pool2d_forward(x, ksize, stride, padding, count_include_pad)
    gy = rng.standard_normal(y.shape).astype(dtype)
    xs, gys = (x, gy) if contiguous else (noncontiguous(x), noncontiguous(gy))
    assert_close(K.avg_pool2d_forward(xs, ksize, stride, padding, count_include_pad), y, dtype)
    assert_close(K.avg_pool2d_backward(gys, shape, ksize, stride, padding, count_include_pad),
                 R.avg_pool2d_backward(gy, shape, ksize, stride, padding, count_include_pad), dtype)


# ----------------------------------------------------------------------------------------
# ReLU, bias + ReLU, LRN

small_shapes = st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 7), st.integers(1, 7))


@given(shape=small_shapes, dtype=dtypes, seed=seeds, rule=st.sampled_from(R.RELU_RULES), contiguous=st.booleans())
def test_relu_matches_reference(shape, dtype, seed, rule, contiguous):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x[rng.random(shape) < 0.1] = 0  # exact zeros: the mask is x > 0, not x >= 0
    gy = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    xs, gys = (x, gy) if contiguous else (noncontiguous(x), noncontiguous(gy))
    np.testing.assert_array_equal(K.relu_forward(xs), R.relu_forward(x))
    gx = K.relu_backward(gys, xs, rule)
    assert gx.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(gx, R.relu_backward(gy, x, rule))
    np.testing.assert_array_equal(K.bias_relu_forward(xs, b), R.bias_relu_forward(x, b))


def test_relu_backward_rules_by_hand():
    x = np.array([[[[-1.0, 2.0, 3.0, -4.0]]]])
    gy = np.array([[[[5.0, -6.0, 7.0, 8.0]]]])
    np.testing.assert_array_equal(K.relu_backward(gy, x, "standard")[0, 0, 0], [0, -6, 7, 0])
    np.testing.assert_array_equal(K.relu_backward(gy, x, "deconvnet")[0, 0, 0], [5, 0, 7, 8])
    np.testing.assert_array_equal(K.relu_backward(gy, x, "guided")[0, 0, 0], [0, 0, 7, 0])
    with pytest.raises(ValueError, match="rule"):
        K.relu_backward(gy, x, "bogus")


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 9), st.integers(1, 4), st.integers(1, 5)),
       size=st.integers(1, 6), alpha=st.floats(1e-4, 1.0), beta=st.floats(0.1, 1.0), k=st.floats(0.5, 2.0),
       dtype=dtypes, seed=seeds)
def test_lrn_matches_reference(shape, size, alpha, beta, k, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    y = R.lrn_forward(x, size, alpha, beta, k)
    assert_close(K.lrn_forward(x, size, alpha, beta, k), y, dtype)
    assert_close(K.lrn_backward(gy, x, y, size, alpha, beta, k), R.lrn_backward(gy, x, y, size, alpha, beta, k), dtype)


# ----------------------------------------------------------------------------------------
# frozen weights: backprop to the image never computes a weight gradient


def test_no_weight_gradient_kernel_runs_for_frozen_weights(monkeypatch):
    minigrad = pytest.importorskip("minigrad")

    def forbidden(*args, **kwargs):
        raise AssertionError("conv2d_backward_weight ran although the weights are frozen")

    monkeypatch.setattr(K, "conv2d_backward_weight", forbidden)
    previous = minigrad.get_backend()
    minigrad.set_backend("numba")
    try:
        rng = np.random.default_rng(0)
        x = minigrad.tensor(rng.standard_normal((1, 3, 8, 8)).astype(np.float32), requires_grad=True)
        w = minigrad.tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=False)
        b = minigrad.tensor(np.zeros(4, np.float32), requires_grad=False)
        y = minigrad.functional.conv2d(x, w, b, padding=1)
        y.sum().backward()
        assert x.grad is not None and w.grad is None
    finally:
        minigrad.set_backend(None if previous == kernels.default_cpu_backend() else previous)


@pytest.mark.parametrize("groups,m", [(1, 7), (3, 5), (2, 1)])
def test_row_split_matmul_matches_numpy(groups, m):
    """The im2col GEMM split by output rows across threads (single-threaded BLAS each),
    including a transposed left operand as the data gradient passes it."""
    from kernels.cpu import _gemm

    rng = np.random.default_rng(0)
    a = rng.standard_normal((groups, 6, m)).astype(np.float32).transpose(0, 2, 1)
    b = rng.standard_normal((groups, 6, 11)).astype(np.float32)
    out = np.empty((groups, m, 11), np.float32)
    assert _gemm.row_split_matmul(a, b, out) is out
    np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("groups,m,n", [(1, 7, 3), (1, 3, 7), (2, 5, 5)])
@pytest.mark.parametrize("terms", [9, 5000])
def test_reduction_split_matmul_matches_numpy(monkeypatch, groups, m, n, terms):
    """The weight gradient's a @ b^T with the summed axis cut into per-thread partials (long
    sums only; three here, whatever this machine's core count) and the larger output side in
    BLAS's row position, either way round."""
    from kernels.cpu import _gemm

    monkeypatch.setattr(_gemm, "_ranges", lambda extent: [(0, extent // 3), (extent // 3, extent // 2),
                                                          (extent // 2, extent)])
    rng = np.random.default_rng(0)
    a = rng.standard_normal((groups, m, terms))
    b = rng.standard_normal((groups, n, terms))
    got = _gemm.reduction_split_matmul(a, b)
    assert got.shape == (groups, m, n)
    np.testing.assert_allclose(got, a @ b.transpose(0, 2, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("block_bytes", [1, 2000, 16 * 2**20])
def test_im2col_blocks_and_blas_threads(monkeypatch, block_bytes):
    """All three convolution kernels by blocks of one row, of a few samples, and of the whole
    batch give the reference's answer (the per-sample GEMMs are split across threads, each on
    single-threaded BLAS), and BLAS's thread limit is restored afterwards."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(conv, "COLUMN_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    geometry = ((1, 1), (1, 1), (1, 1), 1)
    gy = rng.standard_normal((5, 6, 9, 9)).astype(np.float32)
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info()]
    assert_close(conv.forward(x, w, None, *geometry, algorithm="im2col"), R.conv2d_forward(x, w, None, *geometry),
                 np.float32)
    assert_close(conv.backward_data(gy, w, x.shape, *geometry, algorithm="im2col"),
                 R.conv2d_backward_data(gy, w, x.shape, *geometry), np.float32)
    assert_close(K.conv2d_backward_weight(gy, x, w.shape, *geometry),
                 R.conv2d_backward_weight(gy, x, w.shape, *geometry), np.float32)
    assert [p["num_threads"] for p in threadpoolctl.threadpool_info()] == before


def test_winograd_in_chunks_of_images_gives_the_same_bits(monkeypatch):
    """Large batches are transformed a few images at a time (bounded tile buffers); each
    image's GEMMs have the same shapes either way, so the results are bitwise equal."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    geometry = ((1, 1), (1, 1), (1, 1), 1)
    gy = rng.standard_normal((5, 16, 20, 20)).astype(np.float32)
    whole = (conv.forward(x, w, None, *geometry, algorithm="winograd"),
             conv.backward_data(gy, w, x.shape, *geometry, algorithm="winograd"))
    monkeypatch.setattr(_winograd, "TILE_BUFFER_BYTES", 1)
    chunked = (conv.forward(x, w, None, *geometry, algorithm="winograd"),
               conv.backward_data(gy, w, x.shape, *geometry, algorithm="winograd"))
    for a, b in zip(whole, chunked):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shapes", [((1, 300), (300, 5000)), ((7, 64), (64, 3)), ((2, 3, 40, 50), (50, 60)),
                                    ((4, 5), (2, 5, 6))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transposed", [False, True])
def test_matmul_matches_numpy(shapes, dtype, transposed):
    """The fully connected layers' product, split along output columns when large, on
    contiguous operands and on transposed views (as a Linear layer's weight comes)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(dtype) for s in shapes)
    if transposed:
        b = np.ascontiguousarray(b.swapaxes(-1, -2)).swapaxes(-1, -2)
    got = K.matmul(a, b)
    want = np.matmul(a, b)
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=_tol(dtype), atol=_tol(dtype) * 10)
