"""Efros-Leung texture synthesis (methods/efros_leung.py, Numba).

The claim: every output pixel is a copy of a sample pixel (exactly, for uint8: the one the
result says it came from), in the sample's layout, deterministically given the seed; a periodic
sample is continued periodically; the search picks among the windows within (1 + epsilon) of
the best; the compiled kernel gives exactly what a NumPy version of it gives; Ctrl-C keeps what
has grown; the command line and the gallery run it with no network.
"""

import importlib
import json

import numpy as np
import pytest

import methods
from methods.__main__ import main
from methods.efros_leung import gaussian_window
from methods.gallery import render

pytest.importorskip("numba")


def crop(name, side=32):
    return methods.data.sample_image(name)[200:200 + side, 200:200 + side]


@pytest.mark.parametrize("name", ["gravel", "chelsea"])
def test_every_output_pixel_is_the_sample_pixel_it_came_from(name):
    sample = crop(name)
    result = methods.efros_leung(sample, size=(24, 28), window=7)
    assert result.image.dtype == np.uint8 and result.image.shape == (24, 28) + sample.shape[2:]
    assert result.filled.all()
    rows, cols = result.source[..., 0], result.source[..., 1]
    half = 7 // 2
    assert rows.min() >= 0 and cols.min() >= 0 and rows.max() < 32 and cols.max() < 32
    assert np.array_equal(result.image, sample[rows, cols])
    inside = (rows >= half) & (rows < 32 - half) & (cols >= half) & (cols < 32 - half)
    seed = np.zeros((24, 28), bool)
    seed[10:13, 12:15] = True  # the 3 x 3 seed patch at the centre may come from anywhere in the sample
    assert inside[~seed].all()  # every other pixel is the centre of a whole sample window


def test_deterministic_given_the_seed():
    sample = crop("grass")
    a = methods.efros_leung(sample, size=(20, 20), window=5, seed=7)
    b = methods.efros_leung(sample, size=(20, 20), window=5, seed=7)
    c = methods.efros_leung(sample, size=(20, 20), window=5, seed=8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.source, b.source)
    assert not np.array_equal(a.image, c.image)


def test_a_periodic_sample_is_continued_periodically():
    """Vertical stripes of period 5: every known neighbourhood has exact matches, so each column
    of the output is constant and consecutive columns follow the stripe order."""
    stripes = np.tile(np.array([0, 60, 120, 180, 240], np.uint8), (30, 6))
    result = methods.efros_leung(stripes, size=(25, 25), window=7, seed=1)
    image = result.image.astype(int)
    assert (image == image[0]).all()
    assert set(np.diff(image[0]) % 300) <= {60, 300 - 240}
    assert result.summary["mean_best_error"] == 0.0


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 1.0])
def test_a_pixel_is_copied_from_a_window_within_one_plus_epsilon_of_the_best(epsilon):
    """One unknown pixel amid known ones, against the distances computed here: the Gaussian-
    weighted SSD over the known pixels of every whole sample window; the random draw u picks
    the candidate at position floor(u * count) in raster order."""
    kernel = importlib.import_module("methods._efros_leung_numba")
    rng = np.random.default_rng(3)
    sample = rng.integers(0, 256, (14, 15, 1)).astype(np.float64)
    weights = gaussian_window(5)
    known = np.ones((5, 5), np.uint8)
    known[2, 2] = known[0, 4] = 0  # the pixel to grow and an unknown neighbour
    windows = np.lib.stride_tricks.sliding_window_view(sample[..., 0], (5, 5))
    for u in (0.0, 0.5, 0.999):
        out = sample[3:8, 4:9].copy() + rng.integers(-20, 21, (5, 5, 1))
        out[known == 0] = 0
        distances = ((windows - out[..., 0]) ** 2 * weights * known).sum(axis=(2, 3))
        candidates = np.argwhere(distances <= distances.min() * (1 + epsilon))
        filled, source, errors = known.copy(), np.zeros((5, 5, 2), np.int64), np.zeros((5, 5))
        grown, draw = kernel.grow_layer(sample, out, filled, source, errors, weights, epsilon, np.array([u, 0.0]), 0)
        assert grown == draw == 2 and filled.all()  # (2, 2) first: more known neighbours than (0, 4)
        chosen = candidates[int(u * len(candidates))] + 2
        assert tuple(source[2, 2]) == tuple(chosen) and out[2, 2, 0] == sample[chosen[0], chosen[1], 0]
        assert errors[2, 2] == pytest.approx(distances.min() / (weights * known).sum())


def reference_layer(sample, out, filled, source, errors, weights, epsilon, uniforms, draw):
    """The compiled kernel's contract in NumPy, written independently: the same pass (pixels that
    touch filled ones, most known neighbours first, ties in raster order), each pixel's distances
    to every sample window at once."""
    _, width, channels = out.shape
    k = weights.shape[0]
    half = k // 2
    windows = np.lib.stride_tricks.sliding_window_view(sample, (k, k), axis=(0, 1))  # (rows, cols, C, k, k)
    known = np.pad(filled, half)
    touching = np.lib.stride_tricks.sliding_window_view(np.pad(filled, 1), (3, 3)).any(axis=(2, 3)) & (filled == 0)
    counts = np.lib.stride_tricks.sliding_window_view(known, (k, k)).sum(axis=(2, 3))
    pending = np.flatnonzero(touching.ravel())
    padded = np.pad(out, ((half, half), (half, half), (0, 0)))
    for p in pending[np.argsort(-counts.ravel()[pending], kind="stable")]:
        r, c = divmod(p, width)
        mask = known[r:r + k, c:c + k] * weights
        distances = ((windows - padded[r:r + k, c:c + k].transpose(2, 0, 1)) ** 2 * mask).sum(axis=(2, 3, 4))
        candidates = np.argwhere(distances <= distances.min() * (1 + epsilon))
        y, x = candidates[min(int(uniforms[draw] * len(candidates)), len(candidates) - 1)]
        draw += 1
        out[r, c] = padded[r + half, c + half] = sample[y + half, x + half]
        source[r, c] = y + half, x + half
        errors[r, c] = distances.min() / (mask.sum() * channels)
        filled[r, c] = known[r + half, c + half] = 1
    return len(pending), draw


@pytest.mark.parametrize("name, window, epsilon", [("gravel", 5, 0.1), ("chelsea", 7, 0.5), ("grass", 3, 0.0)])
def test_the_compiled_kernel_matches_a_numpy_reference(monkeypatch, name, window, epsilon):
    sample = crop(name, 20)
    fast = methods.efros_leung(sample, size=(15, 17), window=window, epsilon=epsilon, seed=4)
    monkeypatch.setattr(importlib.import_module("methods._efros_leung_numba"), "grow_layer", reference_layer)
    slow = methods.efros_leung(sample, size=(15, 17), window=window, epsilon=epsilon, seed=4)
    assert np.array_equal(fast.image, slow.image) and np.array_equal(fast.source, slow.source)
    np.testing.assert_allclose(fast.errors, slow.errors, rtol=1e-9)


def test_a_float_sample_and_a_square_size():
    sample = crop("gravel").astype(np.float64) / 255
    result = methods.efros_leung(sample, size=16, window=5)
    assert result.image.shape == (16, 16) and result.params["size"] == [16]
    assert set(np.unique(result.image)) <= set(np.unique(crop("gravel")))


def test_the_sample_is_cropped_to_its_centre():
    result = methods.efros_leung("sample:brick", size=(12, 12), window=5, crop=20)
    assert result.sample.shape == (20, 20) and result.box == (246, 246, 266, 266)
    assert np.array_equal(result.sample, methods.data.sample_image("brick")[246:266, 246:266])


def test_gaussian_window_follows_the_pseudo_code():
    g = gaussian_window(11)
    assert g.shape == (11, 11) and g[5, 5] == 1.0 and np.allclose(g, g.T)
    sigma = 11 / 6.4
    assert g[5, 6] == pytest.approx(np.exp(-1 / (2 * sigma ** 2)))


def test_ctrl_c_keeps_what_has_grown(ctrl_c_on_call):
    ctrl_c_on_call(importlib.import_module("methods._efros_leung_numba"), "grow_layer", 3)
    result = methods.efros_leung(crop("gravel"), size=(21, 21), window=5)
    assert result.filled.sum() == 7 * 7  # the seed and two rings
    assert result.filled[7:14, 7:14].all() and result.image[0, 0] == 0
    assert result.figures()["texture"].dtype == np.uint8


@pytest.mark.parametrize("values, message", [
    ({"window": 6}, "window must be odd"),
    ({"window": 41}, r"the window \(41x41\) must fit in the sample \(32x32\)"),
    ({"size": (2, 10)}, r"size must be an integer from 3 to 4096, got \(2, 10\)"),
    ({"size": (10, 10, 10)}, r"size must be one number or \(height, width\)"),
    ({"epsilon": -0.1}, "epsilon must be a number from 0 to 10, got -0.1"),
])
def test_bad_options_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        methods.efros_leung(crop("gravel"), **values)


def test_missing_numba_is_named(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "methods._efros_leung_numba", None)
    with pytest.raises(ImportError, match="Efros-Leung synthesis needs numba: pip install numba"):
        methods.efros_leung(crop("gravel"), size=8, window=5)


def test_command_line_and_gallery_need_no_model(tmp_path, capsys):
    out = tmp_path / "el"
    code = main(["efros-leung", "--image", "sample:grass", "--size", "12,16", "--window", "5", "--crop", "24",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "efros-leung.json").read_text())
    assert record["inputs"] == {"image": "sample:grass"} and record["params"]["size"] == [12, 16]
    assert record["sample_shape"] == [24, 24] and record["pixels"] == 12 * 16
    assert {"efros-leung_texture.png", "efros-leung_image.png", "efros-leung_sample_x11.png"} <= {
        p.name for p in out.iterdir()}
    entries = render(str(tmp_path / "g"), techniques=["efros-leung"], verbose=False)
    assert "error" not in entries[0] and entries[0]["model"] is None
    page = (tmp_path / "g" / "index.html").read_text()
    assert "<code>python -m methods efros-leung</code>" in page
