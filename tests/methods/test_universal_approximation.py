"""Universal approximation (the lecture notes' slides): the six shifted ReLUs and their sum Z are
reproduced exactly by the notes' feed_forward written in minigrad; wider one-hidden-layer networks
fit better; a network fits on its training interval and not off it."""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import methods
import minigrad

ua = importlib.import_module("methods.universal_approximation")  # the module; methods.<name> is the function
from tests.methods.test_every_model import check_outputs


def test_z_equals_the_notes_formula_at_1000_points():
    x = np.linspace(-3, 3, 1000)
    relu = lambda v: np.maximum(v, 0)  # noqa: E731  (the slide, typed in)
    n1, n2, n3 = relu(-5 * x - 7.7), relu(-1.2 * x - 1.3), relu(1.2 * x + 1)
    n4, n5, n6 = relu(1.2 * x - .2), relu(2 * x - 1.1), relu(5 * x - 5)
    formula = -n1 - n2 - n3 + n4 + n5 + n6
    with minigrad.no_grad():
        z = ua.feed_forward(x[:, None], *ua.notes_network()).numpy()[:, 0]
    np.testing.assert_allclose(z, formula, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ua.notes_units(x), np.stack([n1, n2, n3, n4, n5, n6]), rtol=0, atol=0)
    result = methods.universal_approximation(hidden=[1], steps=1)
    assert result.summary["z_max_error"] <= 1e-12 and result.units.shape == (6, len(result.x))


def test_feed_forward_gradients():
    rng = np.random.default_rng(0)
    x, wh, bh, wo, bo = (rng.normal(size=shape) for shape in [(7, 1), (1, 5), (5,), (5, 1), (1,)])
    assert np.abs(x @ wh + bh).min() > 1e-3  # away from the ReLUs' kinks
    minigrad.gradcheck(lambda *t: ua.feed_forward(*t), [x, wh, bh, wo, bo])


def test_wider_networks_fit_better_inside_and_none_outside(tmp_path):
    result = methods.universal_approximation(hidden=[1, 4, 64], steps=400, function="sine")
    mse = result.summary["mse"]
    assert mse[0] > 5 * mse[2] and mse[2] < 0.02, mse
    assert result.summary["mse_outside"] > 100 * result.summary["mse_inside"], result.summary
    assert list(result.fits) == [1, 4, 64] and result.params["hidden"] == [1, 4, 64]
    record = check_outputs(result, tmp_path / "ua")
    assert set(result.figures()) == {"units", "z", "fits", "error", "losses", "compact_domain"}
    assert record["mse"] == mse


def test_ctrl_c_keeps_the_networks_done(ctrl_c_on_call):
    ctrl_c_on_call(ua, "feed_forward", 1 + 3 + 2 + 3)  # Z; network 1's 3 steps and 2 evaluations; network 2's third step
    result = methods.universal_approximation(hidden=[2, 8, 32], steps=3)
    assert result.summary["interrupted"] and list(result.fits) == [2, 8]
    assert [len(v) for v in result.losses.values()] == [3, 2]


def test_command_line_takes_no_model(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    help_text = subprocess.run([sys.executable, "-m", "methods", "universal-approximation", "--help"],
                               capture_output=True, text=True, cwd=root, check=True).stdout
    assert "--model" not in help_text and "--hidden" in help_text and "--image" not in help_text
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "methods", "universal-approximation", "--out", str(out), "--steps", "2",
                    "--hidden", "1,3"], capture_output=True, text=True, cwd=root, check=True)
    record = json.loads((out / "universal-approximation.json").read_text())
    assert record["params"]["hidden"] == [1, 3] and record["inputs"] is None


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="function must be one of sine, wave, bump"):
        methods.universal_approximation(function="cosine")
    with pytest.raises(TypeError, match="takes no model or images"):
        methods.universal_approximation(minigrad.nn.Linear(1, 1))
