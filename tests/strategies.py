"""Hypothesis strategies shared by the minigrad tests.

Shapes and geometry come from Hypothesis (so failures shrink to small cases); array values
come from a NumPy generator seeded by a drawn integer (fast, and still reproducible from the
failing example). Every array is float64: gradient checks by finite differences need it.
"""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

seeds = st.integers(0, 2**32 - 1)


def generator(seed):
    """A generator for ``seed`` whose stream differs from ``default_rng(seed)``, the one
    gradcheck and the oracle draw their upstream gradients from: with seed 0 an input would
    otherwise be an affine copy of the upstream gradient, which hides errors in ops like
    batch_norm whose gradient then vanishes."""
    return np.random.default_rng((int(seed), 0x5EED))


def shapes(min_dims=1, max_dims=3, min_side=1, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def uniform(seed, shape, low=-1.0, high=1.0):
    """Values uniform in [low, high)."""
    return generator(seed).uniform(low, high, size=shape)


def signed_away_from_zero(seed, shape, low=0.1, high=2.0):
    """Values with |v| in [low, high) and a random sign: no kink of abs/relu within eps."""
    rng = generator(seed)
    return rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def tie_free(seed, shape, low=-3.0, high=3.0):
    """Distinct values: a shuffled linspace with a jitter of a quarter of its gap.

    Any two values differ by at least half the gap, (high - low) / (size - 1) / 2, far more
    than a finite-difference step, so max/min and max-pooling pick the same winner under
    every perturbation and ties never occur.
    """
    rng = generator(seed)
    size = int(np.prod(shape, dtype=np.int64))
    values = np.linspace(low, high, max(size, 1))[:size]
    gap = (high - low) / max(size - 1, 1)
    values = values + rng.uniform(-0.25, 0.25, size=size) * gap
    rng.shuffle(values)
    return values.reshape(shape)


@st.composite
def arrays(draw, shape=None, low=-1.0, high=1.0, **shape_kwargs):
    """A float64 array of ``shape`` (or of a drawn shape) with values uniform in [low, high)."""
    shape = draw(shapes(**shape_kwargs)) if shape is None else shape
    return uniform(draw(seeds), shape, low, high)


@st.composite
def axes_for(draw, ndim):
    """An ``axis`` argument for a reduction: None, one axis (maybe negative) or a tuple of axes."""
    kind = draw(st.sampled_from(["none", "int", "tuple"] if ndim else ["none"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    chosen = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(a - ndim if draw(st.booleans()) else a for a in chosen)


def _prime_factors(n):
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


@st.composite
def reshape_targets(draw, shape):
    """A shape with the same number of elements (maybe with one -1)."""
    size = int(np.prod(shape, dtype=np.int64))
    ndim = draw(st.integers(1, 4))
    dims = [1] * ndim
    for factor in _prime_factors(size):
        dims[draw(st.integers(0, ndim - 1))] *= factor
    if draw(st.booleans()) and size > 0:
        dims[draw(st.integers(0, ndim - 1))] = -1
    return tuple(dims)


@st.composite
def broadcast_pairs(draw, max_dims=3, max_side=3):
    """Two shapes that broadcast together (either may have fewer dimensions or size-1 axes)."""
    result = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=max_dims, max_side=max_side))
    return result.input_shapes


@st.composite
def conv_cases(draw, max_groups=3):
    """Geometry of a small conv2d whose output has at least one pixel."""
    groups = draw(st.integers(1, max_groups))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    n = draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    hw = tuple(  # at least one output pixel, and no more padding than F.conv2d takes (the input size)
        max(1, d * (k - 1) + 1 - 2 * p, p) + draw(st.integers(0, 3)) for k, p, d in zip(kernel, padding, dilation)
    )
    return {
        "x_shape": (n, cin) + hw,
        "w_shape": (cout, cin // groups) + kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "bias": draw(st.booleans()),
    }


@st.composite
def pool_cases(draw, max_kernel=3, overlapping=True):
    """Geometry of a small 2-D pooling: kernel, stride (possibly smaller than the kernel, so
    windows overlap), padding <= kernel // 2, and an input at least as large as one window."""
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    hw = tuple(max(1, k - 2 * p) + draw(st.integers(0, 3)) for k, p in zip(kernel, padding))
    return {
        "x_shape": (draw(st.integers(1, 2)), draw(st.integers(1, 2))) + hw,
        "kernel_size": kernel,
        "stride": stride,
        "padding": padding,
    }


@st.composite
def interpolate_cases(draw):
    """Input (N, C, H, W), mode, align_corners and either an output size or a scale factor."""
    mode = draw(st.sampled_from(["nearest", "bilinear"]))
    x_shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    align_corners = draw(st.booleans()) if mode == "bilinear" else False
    if draw(st.booleans()):
        size, scale = (draw(st.integers(1, 6)), draw(st.integers(1, 6))), None
    else:
        size, scale = None, draw(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]))
        if any(int(np.floor(n * scale)) < 1 for n in x_shape[2:]):
            scale = 2.0
    return {"x_shape": x_shape, "mode": mode, "align_corners": align_corners, "size": size, "scale_factor": scale}


@st.composite
def pad_cases(draw):
    """Input shape, torch-style pad tuple and mode; reflect widths stay below each dimension."""
    mode = draw(st.sampled_from(["constant", "reflect", "replicate"]))
    ndim = 4 if mode != "constant" else draw(st.integers(1, 4))
    shape = draw(hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=1, max_side=4))
    padded_dims = draw(st.integers(1, 2 if mode != "constant" else ndim))
    widths = []
    for axis in range(ndim - 1, ndim - 1 - padded_dims, -1):
        limit = shape[axis] - 1 if mode == "reflect" else 3
        widths += [draw(st.integers(0, min(limit, 3))), draw(st.integers(0, min(limit, 3)))]
    value = draw(st.sampled_from([0.0, 1.5, -2.0])) if mode == "constant" else 0.0
    return {"shape": shape, "pad": tuple(widths), "mode": mode, "value": value}
