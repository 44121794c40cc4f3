"""HOG, the differentiable soft HOG and HOG inversion (methods/hog.py).

* ``methods.hog`` equals scikit-image's ``feature.hog(..., block_norm="L2-Hys")`` to 1e-5 on
  random shapes, cell and block sizes, orientation counts and dtypes, and on the shipped photos;
* ``soft_hog`` passes the Hypothesis gradient check in float64, and tends to ``hog`` as its
  sharpness grows;
* the glyphs draw each bin as a line along the edge its gradient describes;
* the claim (Tatu et al. 2011, the lecture notes' "identical HOG representation"): inversion
  brings the true HOG distance below 10% of its start while the image still looks like the
  start and not like the target; Ctrl-C keeps what was reached; the command line runs it with
  no network.
"""

import importlib
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import methods
import minigrad
from methods import data
from methods.__main__ import main
from methods.hog import cell_histograms, default_sharpness, hog, hog_glyphs, soft_hog
from tests.strategies import seeds, uniform


@st.composite
def hog_cases(draw):
    """(shape, orientations, pixels_per_cell, cells_per_block) with at least one block."""
    orientations = draw(st.integers(1, 12))
    cell = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    block = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    shape = tuple(max(3, b * c) + draw(st.integers(0, 9)) for b, c in zip(block, cell))
    return shape, orientations, cell, block


@given(case=hog_cases(), seed=seeds, dtype=st.sampled_from(["float64", "float32", "uint8"]))
def test_hog_equals_scikit_image(case, seed, dtype):
    feature = pytest.importorskip("skimage.feature")
    shape, orientations, cell, block = case
    image = uniform(seed, shape, 0.0, 1.0)
    image = (image * 255).astype(np.uint8) if dtype == "uint8" else image.astype(dtype)
    ours = hog(image, orientations, cell, block)
    theirs = feature.hog(image, orientations, cell, block, block_norm="L2-Hys", feature_vector=True)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["astronaut", "brick", "chelsea"])
def test_hog_equals_scikit_image_on_photos(name):
    """Photos hold many exactly horizontal and vertical gradients: the bin edges at 0 degrees."""
    feature = pytest.importorskip("skimage.feature")
    image = data.sample_image(name)
    image = image.mean(axis=2) / 255 if image.ndim == 3 else image
    np.testing.assert_allclose(hog(image), feature.hog(image, block_norm="L2-Hys"), rtol=0, atol=1e-5)


@st.composite
def soft_cases(draw):
    shape, orientations, cell, block = draw(hog_cases())
    return shape, max(orientations, 2), cell, block, draw(st.sampled_from([None, 3.0, 30.0]))


@given(case=soft_cases(), seed=seeds)
def test_soft_hog_gradient(case, seed):
    shape, orientations, cell, block, sharpness = case
    image = uniform(seed, shape, 0.0, 1.0)
    minigrad.gradcheck(lambda x: soft_hog(x, orientations, cell, block, sharpness), [image], directions=4)


def test_soft_hog_tends_to_hog_as_its_votes_sharpen():
    """On an image whose first and last rows are flat (a border row's gradient is exactly
    horizontal, which lies on the edge between the first and last bins, where a soft vote splits)."""
    image = np.random.default_rng(1).uniform(size=(48, 40))
    image[0] = image[-1] = 0.5
    exact = hog(image, 9, 8, 2)
    errors = [np.linalg.norm(soft_hog(image, 9, 8, 2, sharpness=k).numpy() - exact) / np.linalg.norm(exact)
              for k in (default_sharpness(9), 100.0, 1e3, 1e5)]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0.05 and errors[-1] < 1e-3


def test_soft_hog_layout_and_dtype_follow_hog():
    image = np.random.default_rng(2).uniform(size=(40, 33))
    soft = soft_hog(image.astype(np.float32), 6, (5, 4), (2, 3))
    assert soft.dtype == np.float32 and soft.shape == hog(image, 6, (5, 4), (2, 3)).shape


def test_default_sharpness_halves_a_vote_half_a_bin_away():
    for n in (4, 9, 18):
        half_bin = np.pi / (2 * n)
        kappa = default_sharpness(n)
        assert np.exp(kappa * (np.cos(2 * half_bin) - 1)) == pytest.approx(0.5)


@pytest.mark.parametrize("call, message", [
    (lambda: hog(np.zeros((20, 30))), r"too small for 8x8-pixel cells in 3x3-cell blocks: it needs at least 24x24"),
    (lambda: hog(np.zeros((30, 30, 3))), r"HOG takes a 2-D \(grey\) image, got shape \(30, 30, 3\)"),
    (lambda: hog(np.zeros((30, 30)), orientations=0), "orientations must be a positive integer, got 0"),
    (lambda: hog(np.zeros((30, 30)), pixels_per_cell=(8, 0)), "pixels_per_cell must be a positive integer or a pair"),
    (lambda: hog(np.full((30, 30), np.nan)), "the image contains NaN or infinite values"),
    (lambda: soft_hog(np.zeros((30, 30)), sharpness=-1.0), "sharpness must be positive, got -1.0"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_glyph_is_a_line_along_the_edge():
    """Bin 4 of 9 (80-100 degrees: a gradient along the rows, from a horizontal edge) draws a
    horizontal line through the cell's centre; bin 0 (a horizontal gradient) a vertical one."""
    histograms = np.zeros((1, 2, 9))
    histograms[0, 0, 4] = histograms[0, 1, 0] = 1.0
    glyphs = hog_glyphs(histograms, scale=16)
    assert glyphs.shape == (16, 32) and glyphs.dtype == np.uint8
    rows, cols = np.nonzero(glyphs[:, :16])
    assert set(rows) <= {7, 8, 9} and cols.max() - cols.min() >= 12
    rows, cols = np.nonzero(glyphs[:, 16:])
    assert rows.max() - rows.min() >= 12 and np.ptp(cols) <= 3


def test_cell_histograms_undo_the_block_layout():
    """A descriptor whose block entries equal the value of the cell they hold gives back the cells."""
    cells = np.random.default_rng(3).uniform(size=(5, 6, 4))
    blocks = np.stack([np.stack([cells[i:i + 2, j:j + 3] for j in range(4)]) for i in range(4)])
    assert np.allclose(cell_histograms(blocks.ravel(), (40, 48), 4, 8, (2, 3)), cells)


# ----------------------------------------------------------------------------- the inversion


@pytest.fixture(scope="module")
def inverted():
    return methods.hog_inversion(size=48, steps=240)


def test_inversion_brings_the_hog_distance_below_a_tenth_of_its_start(inverted):
    """Tatu et al.'s demonstration: the coffee cup, changed until its HOG is the astronaut's."""
    summary = inverted.summary
    feature = pytest.importorskip("skimage.feature")
    target = feature.hog(inverted.target, block_norm="L2-Hys")
    distance = np.linalg.norm(feature.hog(inverted.image, block_norm="L2-Hys") - target) / np.linalg.norm(target)
    assert distance == pytest.approx(summary["hog_distance"])  # scikit-image agrees on the distance
    assert summary["hog_distance"] < 0.1 * summary["hog_distance_start"]
    assert inverted.distances[-1] == pytest.approx(summary["hog_distance"])
    assert inverted.losses[-1] < 0.05 * inverted.losses[0]


def test_the_two_images_look_different(inverted):
    """Nearly the same HOG, yet the pixels follow the start, not the target."""
    assert inverted.summary["pixel_correlation_with_target"] < 0.4
    assert inverted.summary["pixel_correlation_with_start"] > 0.5
    assert inverted.image.shape == inverted.target.shape == (48, 48)
    assert inverted.image.min() >= 0 and inverted.image.max() <= 1


def test_inversion_result_pictures_and_record(inverted, tmp_path):
    figures = inverted.figures()
    assert set(figures) == {"hog", "loss"} and all(f.dtype == np.uint8 and f.min() < f.max() for f in figures.values())
    pictures = inverted.pictures()
    assert pictures["glyphs"].shape == pictures["target_glyphs"].shape == (6 * 24, 6 * 24)
    paths = inverted.save(tmp_path)
    record = json.loads((tmp_path / "hog-inversion.json").read_text())
    assert record["params"]["start"] == "sample:coffee" and record["params"]["sharpness"] == default_sharpness(9)
    assert record["iterations"] == 240 and len(record["sharpness_stages"]) == 4
    assert any(p.endswith("hog-inversion_hog.png") for p in paths)


def test_inversion_from_an_array_and_from_noise_is_deterministic():
    rng = np.random.default_rng(4)
    target = rng.uniform(size=(32, 32))
    a = methods.hog_inversion(target, size=0, start="noise", steps=8, seed=3)
    b = methods.hog_inversion(target, size=0, start="noise", steps=8, seed=3)
    c = methods.hog_inversion(target, size=0, start=rng.uniform(size=(20, 50)), steps=8, stages=1)
    assert np.array_equal(a.image, b.image) and a.params["start"] == "uniform noise"
    assert c.params["start"] == "array 20x50" and c.start.shape == (32, 32) and len(c.summary["sharpness_stages"]) == 1


def test_ctrl_c_keeps_what_was_reached(ctrl_c_on_call):
    module = importlib.import_module("methods.hog")  # the module (methods.hog is the function)
    ctrl_c_on_call(module, "hog", 4)  # the target's HOG, then the distance after each of three steps
    result = methods.hog_inversion(np.random.default_rng(5).uniform(size=(32, 32)), size=0, steps=50)
    assert result.summary["iterations"] == 2 and len(result.distances) == 2


def test_bad_options_are_named_before_any_work():
    with pytest.raises(ValueError, match="start must be an image: a file, sample:NAME, or an"):
        methods.hog_inversion(start="")
    with pytest.raises(ValueError, match="the image .16x16. is too small for 8x8-pixel cells"):
        methods.hog_inversion(np.zeros((16, 16)), size=0)
    with pytest.raises(ValueError, match=r"image must be an \(H, W\) grey or \(H, W, 3\) colour image"):
        methods.hog_inversion(np.zeros((2, 16, 16)))
    with pytest.raises(ValueError, match="sample:nope: no such sample"):
        methods.hog_inversion(start="sample:nope")
    with pytest.raises(TypeError, match=r"hog-inversion\(\) takes one image, then options by name"):
        methods.hog_inversion("sample:astronaut", "sample:coffee")


def test_command_line_needs_no_model(tmp_path, capsys):
    out = tmp_path / "inv"
    code = main(["hog-inversion", "--image", "sample:chelsea", "--size", "40", "--steps", "4", "--start", "noise",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "hog-inversion.json").read_text())
    assert record["inputs"] == {"image": "sample:chelsea"} and record["params"]["size"] == 40
    assert record["image_shape"] == [27, 40]  # 300 x 451 brought to 40 pixels on the longer side
    with pytest.raises(SystemExit):
        main(["hog-inversion", "--model", "fashion-vgg", "--out", str(tmp_path / "no")])
    assert "unrecognized arguments: --model" in capsys.readouterr().err

