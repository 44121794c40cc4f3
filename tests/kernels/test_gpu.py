"""Tests of the CUDA kernels in kernels/gpu, on machines with or without a GPU.

Three layers, each holding the same .cu sources to a different standard:

1. NVRTC: every source compiles with NVIDIA's runtime compiler, warning-free, to PTX and
   to an sm_90 cubin, with every entry point present. No device needed; skipped only when
   no NVRTC library can be found.
2. Emulation: the sources compiled by the host C++ compiler (tests/kernels/cuda_emulation.py)
   run through the real host-side code of kernels/gpu (host.py) on NumPy arrays, and every
   contract function is held to kernels.reference over Hypothesis-drawn shapes, geometries,
   dtypes and launch geometries (tiny blocks and grids force the grid-stride loops, tiny
   im2col budgets force chunking over images, reversed thread order exposes races).
3. Device: the same parity tests on cupy arrays through kernels.gpu, marked ``gpu``; they
   skip unless CuPy imports and reports a CUDA device.
"""

import os
import re
import sys

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kernels import reference
from kernels.geometry import argmax_dtype
from tests.kernels import backends, cuda_emulation, nvrtc

HOST = cuda_emulation.load_host()
SOURCES = {name: HOST.read_source(name) for name in HOST.SOURCES}
ALL_ENTRY_POINTS = sorted(name for text in SOURCES.values() for name, _ in HOST.entry_points(text))

DTYPES = (np.float32, np.float64)
RULES = ("standard", "deconvnet", "guided")

HAS_DEVICE = backends.HAS_DEVICE
needs_device, needs_compiler, DEVICES = backends.needs_device, backends.needs_compiler, backends.DEVICES
launch_options = backends.launch_options
_backend = backends.backend


def _close(got, want, dtype, scale=1.0):
    """Parity within rounding: float64 to ~1e-12, float32 to ~1e-5 of the data's scale."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == np.dtype(dtype), (got.dtype, dtype)
    if np.dtype(dtype) == np.float64:
        rtol, atol = 1e-10, 1e-12
    else:
        rtol, atol = 2e-5, 2e-6
    magnitude = float(np.max(np.abs(want), initial=0.0)) * scale
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * (1.0 + magnitude))


def _maybe_strided(rng, a):
    """Half the time, the same values as a non-contiguous (reversed) view."""
    if a.ndim and rng.random() < 0.5:
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    return a


# ----------------------------------------------------------------------------------------
# 1. NVRTC


NVRTC_TARGETS = ("compute_75", "sm_90")


def _nvrtc_or_skip():
    if nvrtc.backend() is None:
        pytest.skip(nvrtc.unavailable_reason())


@pytest.mark.parametrize("target", NVRTC_TARGETS)
@pytest.mark.parametrize("source", HOST.SOURCES)
def test_source_compiles_with_nvrtc(source, target):
    _nvrtc_or_skip()
    options = (*HOST.NVRTC_OPTIONS, "--device-as-default-execution-space")  # what cupy.RawModule passes
    image, log = nvrtc.compile_source(SOURCES[source], source, target, options)
    assert "warning" not in log.lower(), log
    for name, _ in HOST.entry_points(SOURCES[source]):
        if target.startswith("compute_"):
            assert re.search(rb"\.entry\s+" + name.encode() + rb"\(", image), f"{name} missing from the PTX"
        else:
            assert name.encode() in image, f"{name} missing from the cubin"


def test_ctypes_nvrtc_route_compiles_too():
    """The fallback used where CuPy is absent, kept working where CuPy is present."""
    try:
        route = nvrtc._CtypesNVRTC()
    except OSError as error:
        pytest.skip(f"no libnvrtc loadable through ctypes: {error}")
    image, log = route.compile(SOURCES["pool.cu"], "pool.cu", (*HOST.NVRTC_OPTIONS, "-arch=compute_75"), cubin=False)
    assert "warning" not in log.lower(), log
    assert b".entry max_pool2d_backward_i64_f64(" in image


def test_nvrtc_reports_errors():
    _nvrtc_or_skip()
    with pytest.raises(nvrtc.NVRTCError, match="broken.cu"):
        nvrtc.compile_source('extern "C" __global__ void f(float* y) { y[0] = undefined_name; }', "broken.cu",
                             "compute_75")


# ----------------------------------------------------------------------------------------
# source conventions (no compiler needed)


def test_every_entry_point_has_float_and_double():
    for source, text in SOURCES.items():
        names = {name for name, _ in HOST.entry_points(text)}
        assert names, f"{source} has no entry points"
        for name in names:
            stem, _, suffix = name.rpartition("_")
            assert suffix in ("f32", "f64"), name
            assert {f"{stem}_f32", f"{stem}_f64"} <= names, f"{source}: {stem} lacks a float or double entry point"


def test_sources_are_self_contained_and_loop_grid_stride():
    for source, text in SOURCES.items():
        assert "#include" not in text, f"{source} includes a header: NVRTC and the emulator get none"
        assert "atomicAdd" not in text, f"{source} uses atomics where a gather was asked for"
        loops = len(re.findall(r"e \+= \(long long\)blockDim\.x \* gridDim\.x", text))
        kernels = len(re.findall(r"__device__ void \w+_impl", text))
        assert loops == kernels > 0, f"{source}: {kernels} kernel bodies but {loops} grid-stride loops"


def test_kernels_gpu_exports_exactly_the_contract():
    if not HAS_DEVICE:
        pytest.importorskip("cupy")
    import kernels.gpu

    assert sorted(kernels.gpu.__all__) == sorted(HOST.CONTRACT)
    for name in HOST.CONTRACT:
        assert callable(getattr(kernels.gpu, name))


def test_import_without_cupy_names_the_gpu_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes "import cupy" raise ImportError
    for name in [m for m in sys.modules if m == "kernels.gpu" or m.startswith("kernels.gpu.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r"gpu.*extra|extra.*gpu"):
        import kernels.gpu  # noqa: F401
    import kernels

    with pytest.raises(ImportError, match="cupy"):
        kernels.load("cupy")


# ----------------------------------------------------------------------------------------
# 2 and 3. parity with kernels.reference, emulated and on a device


@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 2))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 8)), draw(st.integers(1, 8))
    if draw(st.booleans()) and draw(st.booleans()):  # a quarter of cases: the 1x1 fast path
        kernel, stride, padding, dilation = (1, 1), (1, 1), (0, 0), (draw(st.integers(1, 2)),) * 2
    else:
        kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    oh = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    assume(oh >= 1 and ow >= 1)
    return dict(
        x_shape=(n, cg * groups, h, w),
        w_shape=(og * groups, cg) + kernel,
        geometry=(stride, padding, dilation, groups),
        bias=draw(st.booleans()), dtype=draw(st.sampled_from(DTYPES)), seed=draw(st.integers(0, 2**32 - 1)),
    )


@pytest.mark.parametrize("device", DEVICES)
@given(case=conv_cases(), launch=launch_options)
def test_conv2d_matches_reference(device, case, launch):
    be = _backend(device, launch)
    rng = np.random.default_rng(case["seed"])
    dtype, geometry = case["dtype"], case["geometry"]
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    w = rng.standard_normal(case["w_shape"]).astype(dtype)
    b = rng.standard_normal(case["w_shape"][0]).astype(dtype) if case["bias"] else None
    want = reference.conv2d_forward(x, w, b, *geometry)
    x_in = _maybe_strided(rng, x)
    got = be.get(be.conv2d_forward(be.put(x_in), be.put(w), None if b is None else be.put(b), *geometry))
    scale = np.sqrt(w[0].size)
    _close(got, want, dtype, scale)
    np.testing.assert_array_equal(x_in, x)  # inputs are never written

    gy = rng.standard_normal(want.shape).astype(dtype)
    gx = be.get(be.conv2d_backward_data(be.put(gy), be.put(w), x.shape, *geometry))
    _close(gx, reference.conv2d_backward_data(gy, w, x.shape, *geometry), dtype, scale)
    gw = be.get(be.conv2d_backward_weight(be.put(gy), be.put(x), w.shape, *geometry))
    _close(gw, reference.conv2d_backward_weight(gy, x, w.shape, *geometry), dtype, np.sqrt(gy[:, 0].size))


@st.composite
def pool_cases(draw, max_kernel=4):
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    assume(h + 2 * padding[0] >= kernel[0] and w + 2 * padding[1] >= kernel[1])
    return dict(
        x_shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), geometry=(kernel, stride, padding),
        dtype=draw(st.sampled_from(DTYPES)), ties=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)),
    )


@pytest.mark.parametrize("device", DEVICES)
@given(case=pool_cases(), launch=launch_options)
def test_max_pool2d_matches_reference(device, case, launch):
    """Includes tie-heavy inputs (a few integer levels), where only the exact tie rule
    (first maximum in row-major window order) reproduces the reference's argmax."""
    be = _backend(device, launch)
    rng = np.random.default_rng(case["seed"])
    dtype, geometry = case["dtype"], case["geometry"]
    if case["ties"]:
        x = rng.integers(-1, 2, case["x_shape"]).astype(dtype)
    else:
        x = rng.standard_normal(case["x_shape"]).astype(dtype)
    want_y, want_arg = reference.max_pool2d_forward(x, *geometry)
    y, arg = be.max_pool2d_forward(be.put(_maybe_strided(rng, x)), *geometry)
    np.testing.assert_array_equal(be.get(y), want_y)
    assert be.get(arg).dtype == argmax_dtype(*case["x_shape"][2:])
    np.testing.assert_array_equal(be.get(arg), want_arg)

    gy = rng.standard_normal(want_y.shape).astype(dtype)
    gx = be.get(be.max_pool2d_backward(be.put(gy), arg, x.shape, *geometry))
    _close(gx, reference.max_pool2d_backward(gy, want_arg, x.shape, *geometry), dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_max_pool2d_nan_and_infinity_follow_the_reference(device):
    be = _backend(device, {})
    x = np.full((1, 2, 4, 5), -np.inf)
    x[0, 1] = np.arange(20.0).reshape(4, 5)
    x[0, 1, 1, 1] = x[0, 1, 2, 3] = np.nan
    for geometry in [((3, 3), (1, 1), (1, 1)), ((2, 2), (2, 2), (0, 0)), ((3, 2), (2, 1), (1, 0))]:
        want_y, want_arg = reference.max_pool2d_forward(x, *geometry)
        y, arg = be.max_pool2d_forward(be.put(x), *geometry)
        np.testing.assert_array_equal(be.get(y), want_y)
        np.testing.assert_array_equal(be.get(arg), want_arg)


@pytest.mark.parametrize("device", DEVICES)
@given(case=pool_cases(), count_include_pad=st.booleans(), launch=launch_options)
def test_avg_pool2d_matches_reference(device, case, count_include_pad, launch):
    be = _backend(device, launch)
    rng = np.random.default_rng(case["seed"])
    dtype, geometry = case["dtype"], case["geometry"]
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    want = reference.avg_pool2d_forward(x, *geometry, count_include_pad)
    got = be.get(be.avg_pool2d_forward(be.put(_maybe_strided(rng, x)), *geometry, count_include_pad))
    _close(got, want, dtype)
    gy = rng.standard_normal(want.shape).astype(dtype)
    gx = be.get(be.avg_pool2d_backward(be.put(gy), x.shape, *geometry, count_include_pad))
    _close(gx, reference.avg_pool2d_backward(gy, x.shape, *geometry, count_include_pad), dtype)


@pytest.mark.parametrize("device", DEVICES)
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4).map(tuple),
    dtype=st.sampled_from(DTYPES),
    integers=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    launch=launch_options,
)
def test_relu_forward_and_backward_rules_match_reference(device, shape, dtype, integers, seed, launch):
    """Integer-valued draws put exact zeros in x and gy, the edge of every mask."""
    be = _backend(device, launch)
    rng = np.random.default_rng(seed)

    def draw():
        return (rng.integers(-2, 3, shape) if integers else rng.standard_normal(shape)).astype(dtype)

    x, gy = draw(), draw()
    np.testing.assert_array_equal(be.get(be.relu_forward(be.put(_maybe_strided(rng, x)))), reference.relu_forward(x))
    for rule in RULES:
        got = be.get(be.relu_backward(be.put(gy), be.put(_maybe_strided(rng, x)), rule))
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, reference.relu_backward(gy, x, rule))


@pytest.mark.parametrize("device", DEVICES)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4)),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
    launch=launch_options,
)
def test_bias_relu_forward_matches_reference(device, shape, dtype, seed, launch):
    be = _backend(device, launch)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    got = be.get(be.bias_relu_forward(be.put(_maybe_strided(rng, x)), be.put(b)))
    np.testing.assert_array_equal(got, reference.bias_relu_forward(x, b))


@pytest.mark.parametrize("device", DEVICES)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 7), st.integers(1, 4), st.integers(1, 4)),
    size=st.integers(1, 6),
    alpha=st.sampled_from([1e-4, 1e-2, 0.5]),
    beta=st.sampled_from([0.5, 0.75, 1.0]),
    k=st.sampled_from([1.0, 2.0]),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**32 - 1),
    launch=launch_options,
)
def test_lrn_matches_reference(device, shape, size, alpha, beta, k, dtype, seed, launch):
    """Sizes cover even windows, where the backward window is not the forward one."""
    be = _backend(device, launch)
    rng = np.random.default_rng(seed)
    x = (2 * rng.standard_normal(shape)).astype(dtype)
    want = reference.lrn_forward(x, size, alpha, beta, k)
    _close(be.get(be.lrn_forward(be.put(_maybe_strided(rng, x)), size, alpha, beta, k)), want, dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    gx = be.get(be.lrn_backward(be.put(gy), be.put(x), be.put(want), size, alpha, beta, k))
    _close(gx, reference.lrn_backward(gy, x, want, size, alpha, beta, k), dtype)


# ----------------------------------------------------------------------------------------
# properties of the kernels themselves (emulation only: they need control of the launch)


@needs_compiler
@given(case=conv_cases(), pool=pool_cases(), first=launch_options, second=launch_options)
def test_results_do_not_depend_on_launch_geometry_or_thread_order(case, pool, first, second):
    """Every kernel is a gather with one writer per output element, summing in a fixed
    order: any grid, block size or thread order gives the same bits."""
    rng = np.random.default_rng(case["seed"])
    dtype, geometry = case["dtype"], case["geometry"]
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    w = rng.standard_normal(case["w_shape"]).astype(dtype)
    px = rng.standard_normal(pool["x_shape"]).astype(dtype)
    results = []
    for launch in (first, second):
        be = _backend("emulated", launch)
        y = be.conv2d_forward(x, w, None, *geometry)
        gx = be.conv2d_backward_data(y, w, x.shape, *geometry)
        py, arg = be.max_pool2d_forward(px, *pool["geometry"])
        pgx = be.max_pool2d_backward(py, arg, px.shape, *pool["geometry"])
        agx = be.avg_pool2d_backward(be.avg_pool2d_forward(px, *pool["geometry"], False), px.shape,
                                     *pool["geometry"], False)
        lgx = be.lrn_backward(x, x, be.lrn_forward(x, 3, 0.1, 0.75, 1.0), 3, 0.1, 0.75, 1.0)
        results.append((y, gx, py, arg, pgx, agx, lgx))
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


@needs_compiler
def test_every_entry_point_runs_under_emulation(monkeypatch):
    """The parity tests above reach every kernel of every source in both precisions."""
    be = _backend("emulated", {})
    rng = np.random.default_rng(0)
    for dtype in DTYPES:
        x = rng.standard_normal((2, 4, 5, 5)).astype(dtype)
        w = rng.standard_normal((4, 2, 3, 3)).astype(dtype)
        y = be.conv2d_forward(x, w, None, (1, 1), (1, 1), (1, 1), 2)
        be.conv2d_backward_data(y, w, x.shape, (1, 1), (1, 1), (1, 1), 2)
        be.conv2d_backward_weight(y, x, w.shape, (1, 1), (1, 1), (1, 1), 2)
        be.bias_relu_forward(x, x[0, :, 0, 0].copy())
        be.relu_backward(x, be.relu_forward(x), "guided")
        for shape in [(1, 2, 5, 5), (1, 1, 17, 17), (1, 1, 257, 256)]:  # uint8, uint16, int32 indices
            px = rng.standard_normal(shape).astype(dtype)
            py, arg = be.max_pool2d_forward(px, (3, 3), (2, 2), (1, 1))
            be.max_pool2d_backward(py, arg, px.shape, (3, 3), (2, 2), (1, 1))
        be.avg_pool2d_backward(be.avg_pool2d_forward(x, (2, 2), (1, 1), (1, 1), True), x.shape, (2, 2), (1, 1),
                               (1, 1), True)
        be.lrn_backward(x, x, be.lrn_forward(x, 5, 1e-4, 0.75, 2.0), 5, 1e-4, 0.75, 2.0)
    with monkeypatch.context() as patch:  # int64 indices need a plane of over 2**31 pixels
        patch.setattr(HOST, "argmax_dtype", lambda h, w: np.dtype(np.int64))
        for dtype in DTYPES:
            px = rng.standard_normal((1, 1, 4, 4)).astype(dtype)
            py, arg = be.max_pool2d_forward(px, (2, 2), (2, 2), (0, 0))
            assert arg.dtype == np.int64
            be.max_pool2d_backward(py, arg, px.shape, (2, 2), (2, 2), (0, 0))
    assert sorted(be.runtime.launched) == ALL_ENTRY_POINTS


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batches(device):
    be = _backend(device, {})
    x = np.zeros((0, 2, 4, 4), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    y = be.get(be.conv2d_forward(be.put(x), be.put(w), be.put(np.ones(3, np.float32)), (1, 1), (1, 1), (1, 1), 1))
    assert y.shape == (0, 3, 4, 4)
    assert be.get(be.conv2d_backward_data(be.put(y), be.put(w), x.shape, (1, 1), (1, 1), (1, 1), 1)).shape == x.shape
    gw = be.get(be.conv2d_backward_weight(be.put(y), be.put(x), w.shape, (1, 1), (1, 1), (1, 1), 1))
    np.testing.assert_array_equal(gw, np.zeros(w.shape, np.float32))
    py, arg = be.max_pool2d_forward(be.put(x), (2, 2), (2, 2), (0, 0))
    assert be.get(py).shape == be.get(arg).shape == (0, 2, 2, 2)
    assert be.get(be.relu_forward(be.put(x))).shape == x.shape


@pytest.mark.parametrize("device", DEVICES)
def test_bad_arguments_raise_clear_errors(device):
    be = _backend(device, {})
    x = be.put(np.zeros((1, 4, 5, 5), np.float32))
    w = be.put(np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="does not fit input shape"):
        be.conv2d_forward(x, w, None, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="is not positive"):
        be.conv2d_forward(x, be.put(np.zeros((2, 4, 7, 7), np.float32)), None, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="padding"):
        be.max_pool2d_forward(x, (2, 2), (2, 2), (2, 2))
    with pytest.raises(ValueError, match="stride"):
        be.avg_pool2d_forward(x, (2, 2), (0, 1), (0, 0), True)
    with pytest.raises(ValueError, match="rule"):
        be.relu_backward(x, x, "fancy")
    with pytest.raises(ValueError, match="bias"):
        be.bias_relu_forward(x, be.put(np.zeros(3, np.float32)))
    with pytest.raises(TypeError, match="float32 or float64"):
        be.relu_forward(be.put(np.zeros(3, np.int32)))
    with pytest.raises(ValueError, match="LRN size"):
        be.lrn_forward(x, 0, 1e-4, 0.75, 2.0)


# ----------------------------------------------------------------------------------------
# the public kernels.gpu functions on a device


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_DEVICE, reason="needs CuPy and a CUDA device")
def test_public_kernels_gpu_functions_on_device():
    import cupy

    import kernels.gpu as gpu

    rng = np.random.default_rng(1)
    for dtype in DTYPES:
        x = rng.standard_normal((2, 6, 9, 9)).astype(dtype)
        w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
        b = rng.standard_normal(4).astype(dtype)
        geometry = ((2, 1), (1, 1), (1, 2), 2)
        y = gpu.conv2d_forward(cupy.asarray(x), cupy.asarray(w), cupy.asarray(b), *geometry)
        assert isinstance(y, cupy.ndarray)
        _close(cupy.asnumpy(y), reference.conv2d_forward(x, w, b, *geometry), dtype, 9)
        py, arg = gpu.max_pool2d_forward(cupy.asarray(x), (3, 3), (2, 2), (1, 1))
        want_y, want_arg = reference.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1))
        np.testing.assert_array_equal(cupy.asnumpy(py), want_y)
        np.testing.assert_array_equal(cupy.asnumpy(arg), want_arg)
        _close(cupy.asnumpy(gpu.lrn_forward(cupy.asarray(x), 5, 1e-4, 0.75, 2.0)),
               reference.lrn_forward(x, 5, 1e-4, 0.75, 2.0), dtype)
        np.testing.assert_array_equal(cupy.asnumpy(gpu.relu_backward(cupy.asarray(x), cupy.asarray(x), "guided")),
                                      reference.relu_backward(x, x, "guided"))


# ----------------------------------------------------------------------------------------
# the emulator guards its own claims


@needs_compiler
class TestEmulator:
    SOURCE = r"""
template <typename T>
__device__ void scale_impl(const T* __restrict__ x, T* __restrict__ y, long long n, T factor, int shift)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (long long)blockDim.x * gridDim.x) {
        y[e + shift] = x[e] * factor;
    }
}
extern "C" __global__ void scale_f32(const float* __restrict__ x, float* __restrict__ y, long long n,
                                     float factor, int shift)
{
    scale_impl<float>(x, y, n, factor, shift);
}
extern "C" __global__ void count_f64(double* __restrict__ total, long long n)
{
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (long long)blockDim.x * gridDim.x) {
        atomicAdd(total, 1.0);
    }
}
"""

    @pytest.fixture(scope="class")
    @classmethod
    def module(cls):
        return cuda_emulation.EmulatedModule(cls.SOURCE, "selftest.cu")

    def test_runs_the_grid_and_checks_types(self, module):
        scale = module.get_function("scale_f32")
        x = np.arange(10, dtype=np.float32)
        y = np.zeros(10, np.float32)
        scale((3,), (2,), (x, y, np.int64(10), np.float32(2), np.int32(0)))
        np.testing.assert_array_equal(y, 2 * x)
        scale(1, 1, (x, y, 10, np.float32(3), np.int32(0)))  # a Python int is a long long, as in CuPy
        np.testing.assert_array_equal(y, 3 * x)
        with pytest.raises(cuda_emulation.EmulationError, match="factor is a C float"):
            scale(1, 1, (x, y, np.int64(10), 2.0, np.int32(0)))
        with pytest.raises(cuda_emulation.EmulationError, match="shift is a C int"):
            scale(1, 1, (x, y, np.int64(10), np.float32(2), 0))
        with pytest.raises(cuda_emulation.EmulationError, match="float64"):
            scale(1, 1, (x.astype(np.float64), y, np.int64(10), np.float32(2), np.int32(0)))
        with pytest.raises(cuda_emulation.EmulationError, match="C-contiguous"):
            scale(1, 1, (np.zeros(20, np.float32)[::2], y, np.int64(10), np.float32(2), np.int32(0)))
        with pytest.raises(cuda_emulation.EmulationError, match="overlap"):
            scale(1, 1, (y, y, np.int64(10), np.float32(2), np.int32(0)))

    def test_catches_out_of_bounds_writes_and_unwritten_outputs(self, module):
        scale = module.get_function("scale_f32")
        x = np.ones(8, np.float32)
        with pytest.raises(cuda_emulation.EmulationError, match="wrote outside y"):
            scale((2,), (4,), (x, np.zeros(8, np.float32), np.int64(8), np.float32(1), np.int32(1)))
        y = np.zeros(8, np.float32)
        scale((1,), (4,), (x, y, np.int64(6), np.float32(1), np.int32(0)), poison_outputs=True)
        assert np.isnan(y[6:]).all() and (y[:6] == 1).all()

    def test_atomic_add_is_a_plain_add(self, module):
        total = np.zeros(1)
        module.get_function("count_f64")((3,), (5,), (total, np.int64(12)), reverse=True)
        assert total[0] == 12

    def test_refuses_shared_memory(self):
        source = 'extern "C" __global__ void f(float* y) { __shared__ float tile[4]; tile[0] = 1; y[0] = tile[0]; }'
        with pytest.raises(cuda_emulation.EmulationError, match="shared"):
            cuda_emulation.EmulatedModule(source, "shared.cu")

    def test_libraries_are_cached_by_source_hash(self):
        first = cuda_emulation.compile_library(self.SOURCE, "selftest.cu")
        assert os.path.dirname(first) == cuda_emulation.cache_dir()
        assert cuda_emulation.compile_library(self.SOURCE, "selftest.cu") == first
        assert cuda_emulation.compile_library(self.SOURCE + "\n", "selftest.cu") != first
