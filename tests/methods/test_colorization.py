"""Self-supervision by colorization: CIE Lab both ways (against scikit-image, and round trips), the
network's shapes, the checkerboard that keeps test patches away from training ones, the gallery's
run (it colours better than the mean colour, both probes beat chance, figures and valid JSON),
Ctrl-C, and errors. Training runs on the compiled kernels when Numba is there."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import methods
import minigrad
from methods.colorization import ColorNet, Photo, lab_to_rgb, rgb_to_lab
from methods.lib.options import TECHNIQUES


pytestmark = pytest.mark.usefixtures("compiled_kernels")


def test_lab_matches_scikit_image():
    color = pytest.importorskip("skimage.color")
    rgb = np.random.default_rng(0).random((50, 40, 3))
    np.testing.assert_allclose(rgb_to_lab(rgb), color.rgb2lab(rgb), atol=1e-3)  # it rounds 7.787, 0.008856
    lab = color.rgb2lab(rgb)
    np.testing.assert_allclose(lab_to_rgb(lab), color.lab2rgb(lab), atol=1e-5)


def test_lab_of_known_colours():
    np.testing.assert_allclose(rgb_to_lab([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), [[100, 0, 0], [0, 0, 0]], atol=0.01)
    assert rgb_to_lab([1.0, 0.0, 0.0])[1] > 70 and rgb_to_lab([0.0, 0.0, 1.0])[2] < -100  # red is +a, blue -b


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, (4, 3), elements=st.floats(0, 1)))
def test_lab_round_trip(rgb):
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-7)  # sRGB's two pieces meet to 3e-8


def test_colornet_shapes_for_any_size():
    net = ColorNet(width=2)
    x = minigrad.tensor(np.zeros((3, 1, 30, 22), np.float32))
    assert net(x).shape == (3, 2, 30, 22)
    assert [f.shape for f in net.features(x)] == [(3, 2, 30, 22), (3, 4, 15, 11), (3, 8, 7, 5)]


def test_checkerboard_keeps_test_squares_apart_from_training_squares():
    photo = Photo("chelsea", 0.5, 40)
    assert photo.lab.shape == (150, 226, 3) and photo.colour
    train, test = set(photo.cells["train"]), set(photo.cells["test"])
    assert train and test and not train & test
    assert all((top // 40 + left // 40) % 2 == 0 for top, left in train)
    assert all((top // 40 + left // 40) % 2 == 1 for top, left in test)
    assert len(train | test) == (150 // 40) * (226 // 40)
    patches = photo.patches("test", 5, 24, 40, np.random.default_rng(0))
    assert patches.shape == (5, 24, 24, 3)
    assert not Photo("brick", 0.25, 32).colour


def test_the_gallerys_run_colours_better_than_the_mean_colour(tmp_path):
    """The gallery's quick run (30 steps of 8 patches): it already colours the test squares better
    than the mean colour does, both probes beat chance, and it draws and writes valid JSON."""
    spec = TECHNIQUES["colorization"]
    result = methods.colorization(**spec.gallery_values())
    s = result.summary
    assert s["steps"] == 30 and not s["interrupted"] and len(result.losses) == 30
    assert s["colour_rmse"] < s["baseline_colour_rmse"]
    assert s["images"] == ["astronaut", "brick", "chelsea", "coffee", "grass", "gravel", "rocket"]
    assert s["chance"] == pytest.approx(1 / 7)
    for accuracy in s["probe_accuracy"].values():
        assert accuracy > 2 * s["chance"]
    assert set(result.colourized) == {"astronaut", "chelsea", "coffee", "rocket"}
    figures = result.figures()
    assert set(figures) == {"colourized", "training", "probe"}
    assert all(f.dtype == np.uint8 and f.min() < f.max() for f in figures.values())
    paths = result.save(tmp_path)
    record = json.loads((tmp_path / "colorization.json").read_text(), parse_constant=pytest.fail)
    assert record["params"] == spec.gallery_values() and record["probe_accuracy"] == s["probe_accuracy"]
    assert any(p.endswith("colorization_chelsea_colourized.png") for p in paths)


def test_ctrl_c_keeps_the_network_trained_so_far(ctrl_c_at_step):
    ctrl_c_at_step(3)
    result = methods.colorization(steps=10, batch_size=2, width=2, probe_patches=2)
    assert result.summary["steps"] == 2 and result.summary["interrupted"] and len(result.losses) == 2
    assert set(result.summary["probe_accuracy"]) == {"colorization features", "random features"}


def test_errors_are_named():
    with pytest.raises(ValueError, match=r"patch \(40\) must fit in a checkerboard square: at most cell \(32\)"):
        methods.colorization(patch=40, cell=32)
    with pytest.raises(ValueError, match="fewer than two 300 px squares"):
        methods.colorization(cell=300, patch=32, scale=0.5)
    with pytest.raises(TypeError, match=r"colorization\(\) takes no model or images, only options by name"):
        methods.colorization(3)


def test_command_line_takes_neither_model_nor_image(tmp_path, capsys):
    from methods.__main__ import main

    for flag in ("--model", "--image"):
        with pytest.raises(SystemExit):
            main(["colorization", flag, "x", "--out", str(tmp_path / "a")])
        assert f"unrecognized arguments: {flag} x" in capsys.readouterr().err
    code = main(["colorization", "--steps", "2", "--batch-size", "2", "--width", "2", "--probe-patches", "2",
                 "--out", str(tmp_path / "b")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "b" / "colorization.json").read_text(), parse_constant=pytest.fail)
    assert record["inputs"] is None and record["steps"] == 2 and record["params"]["width"] == 2
