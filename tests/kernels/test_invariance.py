"""Two properties every backend must have, tested on every backend:

* batch invariance: each kernel's result for an image is bitwise the same whatever other
  images share its batch, in whatever order (Hypothesis draws the compositions, with repeats
  and with images holding flat regions);
* equal receptive fields give bitwise-equal convolution outputs, whichever algorithm ran
  (Winograd's 4x4 tiles and BLAS's micro-tiles round each position differently), so max-pool
  ties in flat regions break as in exact arithmetic. ``kernels.patches`` says why.

conv2d_backward_weight sums over the batch by definition and is not per image; it is held to
the reference by the parity tests instead.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import patches
from tests.kernels.backends import BACKENDS, backend, needs_numba

# Geometries: (x shape of one image, w shape, stride, padding, dilation, groups, pool kernel,
# pool stride). The first is large enough for the Numba backend's Winograd path (128
# channels, 49 tiles per image); the second takes its direct micro-kernel; the others go
# through im2col with strides, dilation and groups.
GEOMETRIES = [
    ((128, 28, 28), (128, 128, 3, 3), (1, 1), (1, 1), (1, 1), 1, (2, 2), (2, 2)),
    ((16, 14, 14), (16, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1, (2, 2), (2, 2)),
    ((4, 9, 8), (6, 2, 3, 2), (2, 1), (1, 1), (1, 2), 2, (3, 3), (2, 2)),
    ((3, 7, 7), (5, 3, 1, 1), (1, 1), (0, 0), (1, 1), 1, (2, 3), (1, 2)),
]


def image_with_flat_regions(rng, shape, dtype):
    """Random values, then one or two rectangles set to a per-channel constant (a flat region,
    as a constant border or a black background is) and a repeated row (a tie across rows)."""
    c, h, w = shape
    x = rng.standard_normal(shape)
    for _ in range(rng.integers(1, 3)):
        r0, c0 = rng.integers(0, h), rng.integers(0, w)
        x[:, r0:r0 + rng.integers(2, h + 1), c0:c0 + rng.integers(2, w + 1)] = rng.standard_normal((c, 1, 1))
    x[:, -1] = x[:, rng.integers(0, h)]
    return x.astype(dtype)


@st.composite
def compositions(draw):
    """(geometry index, dtype, images (K, C, H, W), batch indices into the K images)."""
    g = draw(st.integers(0, len(GEOMETRIES) - 1))
    dtype = np.float32 if g < 2 else draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    k = draw(st.integers(1, 3))
    images = np.stack([image_with_flat_regions(rng, GEOMETRIES[g][0], dtype) for _ in range(k)])
    order = draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=5))
    return g, dtype, images, order, rng


def _per_image_results(be, geometry, x, w, b, gy_conv, gy_pool, rule):
    """Every per-image kernel on the batch x: a list of (name, array with the batch first)."""
    _, _, stride, padding, dilation, groups, pool_k, pool_s = geometry
    get, put = be.get, be.put
    conv = (stride, padding, dilation, groups)
    y = be.conv2d_forward(put(x), put(w), put(b), *conv, relu=True)
    yp, arg = be.max_pool2d_forward(y, pool_k, pool_s, (0, 0))
    out = [
        ("conv2d_forward", get(be.conv2d_forward(put(x), put(w), None, *conv))),
        ("conv2d_forward relu", get(y)),
        ("conv2d_backward_data", get(be.conv2d_backward_data(put(gy_conv), put(w), x.shape, *conv))),
        ("max_pool2d_forward", get(yp)),
        ("argmax", get(arg)),
        ("max_pool2d_backward", get(be.max_pool2d_backward(put(gy_pool), arg, y.shape, pool_k, pool_s, (0, 0)))),
        ("avg_pool2d_forward", get(be.avg_pool2d_forward(put(x), pool_k, pool_s, (0, 0), True))),
        ("relu_backward", get(be.relu_backward(put(gy_conv), y, rule))),
        ("bias_relu_forward", get(be.bias_relu_forward(put(x), put(b[:x.shape[1]])))),
        ("lrn_forward", get(be.lrn_forward(put(x), 3, 1e-2, 0.75, 1.0))),
    ]
    return out


@pytest.mark.parametrize("device", BACKENDS)
@given(case=compositions(), rule=st.sampled_from(["standard", "deconvnet", "guided"]))
@settings(max_examples=15)
def test_results_do_not_depend_on_the_batch(device, case, rule):
    g, dtype, images, order, rng = case
    geometry = GEOMETRIES[g]
    w = (rng.standard_normal(geometry[1]) / np.sqrt(np.prod(geometry[1][1:]))).astype(dtype)
    b = rng.standard_normal(geometry[1][0]).astype(dtype)
    be = backend(device)
    one = {}
    for k in sorted(set(order)):  # each image alone, with its own upstream gradients
        x = images[k:k + 1]
        y = be.get(be.conv2d_forward(be.put(x), be.put(w), be.put(b), *geometry[2:6], relu=True))
        gy_conv = np.random.default_rng(k).standard_normal(y.shape).astype(dtype)
        yp = be.get(be.max_pool2d_forward(be.put(y), geometry[6], geometry[7], (0, 0))[0])
        gy_pool = np.random.default_rng(k + 7).standard_normal(yp.shape).astype(dtype)
        one[k] = (gy_conv, gy_pool, _per_image_results(be, geometry, x, w, b, gy_conv, gy_pool, rule))
    batch = images[order]
    gy_conv = np.concatenate([one[k][0] for k in order])
    gy_pool = np.concatenate([one[k][1] for k in order])
    together = _per_image_results(be, geometry, batch, w, b, gy_conv, gy_pool, rule)
    for position, k in enumerate(order):
        for (name, alone), (_, in_batch) in zip(one[k][2], together, strict=True):
            np.testing.assert_array_equal(in_batch[position:position + 1], alone,
                                          err_msg=f"{name}: image {k} at position {position} of batch {order}")


# ----------------------------------------------------------------------------------------
# equal receptive fields, equal outputs


def brute_force_reps(x_image, kernel_hw, stride, padding, dilation, out_hw):
    """The first output pixel with a bitwise-equal receptive field, by comparing windows."""
    c, h, w = x_image.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = kernel_hw, stride, padding, dilation, out_hw
    bits = x_image.view(np.uint32 if x_image.itemsize == 4 else np.uint64).astype(np.int64)
    fields = []
    for i in range(oh):
        for j in range(ow):
            field = []
            for p in range(kh):
                for q in range(kw):
                    r, s = i * sh - ph + p * dh, j * sw - pw + q * dw
                    field.append(tuple(bits[:, r, s]) if 0 <= r < h and 0 <= s < w else None)
            fields.append(tuple(field))
    return np.array([fields.index(f) for f in fields])


@given(case=compositions())
def test_receptive_field_map_matches_brute_force(case):
    g, dtype, images, order, rng = case
    if g < 2:
        images = images[:, :3, :12, :12]  # keep the brute force quick
    _, w_shape, stride, padding, dilation, groups = GEOMETRIES[g][:6]
    x = images[0, : images.shape[1] // groups]
    h, w = x.shape[1:]
    kh, kw = w_shape[2:]
    out_hw = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                   for n, k, s, p, d in zip((h, w), (kh, kw), stride, padding, dilation))
    want = brute_force_reps(x, (kh, kw), stride, padding, dilation, out_hw)
    np.testing.assert_array_equal(patches.receptive_field_reps(np, x, (kh, kw), stride, padding, dilation, out_hw),
                                  want)


@needs_numba
@given(case=compositions(), zero_padding=st.booleans())
def test_numba_map_is_the_array_map(case, zero_padding):
    """kernels/cpu/_patches.py's hash tables give exactly the map of kernels/patches.py
    (checked by sharing the codes y[n, o, p] = p), including all-padding receptive fields."""
    from kernels.cpu import _patches

    g, dtype, images, order, rng = case
    x = images[order]
    _, w_shape, stride, padding, dilation, groups = GEOMETRIES[g][:6]
    if not zero_padding:
        padding = (w_shape[2] * dilation[0], w_shape[3] * dilation[1])  # some fields see no pixel at all
    n, c, h, w = x.shape
    kh, kw = w_shape[2:]
    oh, ow = ((h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1,
              (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1)
    codes = np.broadcast_to(np.arange(oh * ow, dtype=np.float64), (n, 2 * groups, oh * ow)).copy()
    words = x.reshape(n, c, h * w).view(np.uint32 if x.itemsize == 4 else np.uint64)
    empty = _patches.has_empty_fields((h, w), (kh, kw), stride, padding, dilation, (oh, ow))
    _patches.share_equal_outputs(words, codes, groups, h, w, kh, kw, *stride, *padding, *dilation, oh, ow, empty)
    for i in range(n):
        for gi in range(groups):
            rep = patches.receptive_field_reps(np, x[i, gi * c // groups:(gi + 1) * c // groups], (kh, kw), stride,
                                               padding, dilation, (oh, ow))
            np.testing.assert_array_equal(codes[i, 2 * gi:2 * gi + 2], np.broadcast_to(rep, (2, oh * ow)))


@pytest.mark.parametrize("device", BACKENDS)
@given(case=compositions())
def test_equal_receptive_fields_give_equal_outputs(device, case):
    g, dtype, images, order, rng = case
    x = images[order]
    _, w_shape, stride, padding, dilation, groups = GEOMETRIES[g][:6]
    w = rng.standard_normal(w_shape).astype(dtype)
    be = backend(device)
    y = be.get(be.conv2d_forward(be.put(x), be.put(w), None, stride, padding, dilation, groups))
    og, cg = w_shape[0] // groups, x.shape[1] // groups
    for i in range(x.shape[0]):
        for gi in range(groups):
            rep = patches.receptive_field_reps(np, x[i, gi * cg:(gi + 1) * cg], w_shape[2:], stride, padding,
                                               dilation, y.shape[2:])
            plane = y[i, gi * og:(gi + 1) * og].reshape(og, -1)
            np.testing.assert_array_equal(plane, plane[:, rep])


@pytest.mark.parametrize("device", BACKENDS)
@pytest.mark.parametrize("channels", [16, 128])
def test_flat_region_ties_go_to_the_first_pixel(device, channels):
    """A constant border around a textured square, conv + ReLU + 2x2 max-pool (a VGG block):
    in the border every pooled window is an exact tie and its argmax is the window's first
    pixel, as PyTorch's direct convolution gives, on every backend and algorithm (Numba's
    direct micro-kernel with 16 channels, its Winograd path with 128)."""
    rng = np.random.default_rng(3)
    x = np.full((1, channels, 28, 28), 0.7, np.float32)
    x[0, :, 10:18, 10:18] = rng.standard_normal((channels, 8, 8))
    w = (rng.standard_normal((channels, channels, 3, 3)) / (3 * np.sqrt(channels))).astype(np.float32)
    b = np.abs(rng.standard_normal(channels)).astype(np.float32)  # a positive flat value: the ReLU keeps it
    be = backend(device)
    y = be.conv2d_forward(be.put(x), be.put(w), be.put(b), (1, 1), (1, 1), (1, 1), 1, relu=True)
    _, arg = be.max_pool2d_forward(y, (2, 2), (2, 2), (0, 0))
    arg = be.get(arg).astype(np.int64)
    first = (np.arange(14)[:, None] * 2) * 28 + np.arange(14)[None, :] * 2
    border = np.zeros((14, 14), bool)
    border[1:3, 1:13] = border[11:13, 1:13] = border[1:13, 1:3] = border[1:13, 11:13] = True
    flat = be.get(y)[0][:, 2:26, 2:26]  # inside the padding's reach, outside the square's
    assert (arg[0][:, border] == first[border]).all()
    assert all(len(np.unique(plane[:6, :6])) == 1 for plane in flat)
