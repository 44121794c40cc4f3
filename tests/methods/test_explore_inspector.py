"""The backprop inspector and what the explorer added to methods/lib: the gradient at every layer
under each ReLU rule from one forward pass (equal to one backward per layer and rule), the rules
agreeing exactly down to the first ReLU and parting there, capture hooks that ignore other
threads, progress reported to a listener on the thread, and colour maps as matplotlib's."""

import threading

import numpy as np
import pytest

from methods.explore.inspector import InspectorResult, inspect, layer_map
from methods.lib import progress
from methods.lib.gradients import RULES, backprop, layer_gradients
from methods.lib.images import colorize
from tests.methods.tiny_models import tiny_vgg


@pytest.fixture(scope="module")
def model():
    return tiny_vgg()


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(3).normal(0, 1, (1, 3, 16, 16)).astype(np.float32)


@pytest.mark.parametrize("quantity", [{"target": 2}, {"layer": "relu2_1", "unit": 1}, {"layer": "fc3", "unit": 5}])
def test_every_layers_gradient_equals_a_backward_pass_that_stops_there(model, x, quantity):
    found = layer_gradients(model, x, RULES, **quantity)
    stop = quantity.get("layer", model.layer_names[-1])
    assert found.layers == list(model.layer_names[: model.layer_names.index(stop) + 1])
    for rule in RULES:
        alone = backprop(model, x, rule, **quantity)
        assert np.allclose(found.image[rule], alone.gradients, rtol=1e-5, atol=1e-7)
        for name in found.layers:
            at = backprop(model, x, rule, at=name, **quantity)
            assert np.allclose(found.gradients[rule][name], at.activation_gradient, rtol=1e-5, atol=1e-7), (rule, name)
    if "target" in quantity:
        assert found.targets.tolist() == [2] and 0 < found.probabilities[0] < 1


def test_the_rules_agree_exactly_down_to_the_first_relu_and_part_below_it(model, x):
    result = inspect(model, x, target=2)
    names = [row["name"] for row in result.rows]
    assert names == list(reversed(model.layer_names)) + ["image"]
    above = names[: names.index("relu3") + 1]  # fc4, relu3: the gradient has crossed no ReLU yet
    for row in result.rows[: len(above)]:
        assert len(set(row["norms"].values())) == 1 and all(c > 1 - 1e-6 for c in row["cosine"].values())
    assert result.parting == "fc3"
    parted = result.rows[len(above)]
    assert min(c for c in parted["cosine"].values() if c is not None) < 0.999
    assert result.summary["parting_layer"] == "fc3" and result.summary["quantity"].startswith("the score of")


def test_a_units_inspection_starts_at_its_layer(model, x):
    result = inspect(model, x, layer="pool1", unit=(1, 2, 3))
    assert [row["name"] for row in result.rows][:3] == ["pool1", "relu1_2", "conv1_2"]
    # one positive seed on a positive maximum crosses relu1_2 unchanged under every rule: the
    # rules see mixed signs, and part, only below relu1_1
    assert model.extract(x, ["pool1"])["pool1"].numpy()[0, 1, 2, 3] > 0
    assert result.parting == "conv1_1"
    seed = result.rows[0]["maps"]["standard"]
    assert seed.shape == (8, 8) and seed[2, 3] == 1 and seed.sum() == 1


def test_the_inspector_takes_one_image_and_checks_its_options(model, x):
    with pytest.raises(ValueError, match="one image, got a batch of 2"):
        inspect(model, np.concatenate([x, x]))
    with pytest.raises(ValueError, match="unit must be"):
        inspect(model, x, layer="relu2_1", unit=-1)
    with pytest.raises(ValueError, match="either a target class or a layer"):
        inspect(model, x, target=1, layer="relu2_1")
    with pytest.raises(ValueError, match="unknown layer"):
        inspect(model, x, layer="conv9")
    with pytest.raises(ValueError, match="unknown ReLU rule"):
        layer_gradients(model, x, ["standard", "leaky"])


def test_layer_maps_are_the_norm_over_channels_or_a_square_of_units():
    g = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    assert np.allclose(layer_map(g), np.sqrt(g[0] ** 2 + g[1] ** 2))
    tile = layer_map(-np.arange(10.0))
    assert tile.shape == (3, 4) and np.array_equal(tile.ravel()[:10], np.arange(10.0)) and np.isnan(tile.ravel()[10:]).all()


def test_the_inspectors_files_explain_themselves(model, x, tmp_path):
    result = inspect(model, x, target=2)
    names = [path.rsplit("/", 1)[1] for path in result.save(str(tmp_path))]
    assert names == ["backprop-inspector_norms.png", "backprop-inspector_agreement.png",
                     "backprop-inspector_maps.png", "backprop-inspector.json"]
    maps = result.pictures()["maps"]
    assert maps.ndim == 3 and maps.shape[1] < maps.shape[0] and maps.std() > 0
    assert isinstance(result, InspectorResult) and result.params["rules"] == list(RULES)


def test_a_capture_ignores_a_forward_pass_of_another_thread(model, x):
    """While Grad-CAM's capture hook is in place, another thread runs the same model on another
    image: the capture keeps this thread's activation (before, whichever ran first won)."""
    other = np.random.default_rng(4).normal(0, 1, x.shape).astype(np.float32)
    expected = backprop(model, x, "standard", at="relu2_1")
    once = []

    def meanwhile(module, inputs, output):
        if not once:
            once.append(True)
            thread = threading.Thread(target=lambda: model(other))
            thread.start()
            thread.join()

    handle = model.layer("conv1_1").register_forward_hook(meanwhile)
    try:
        got = backprop(model, x, "standard", at="relu2_1")
    finally:
        handle.remove()
    assert once and np.array_equal(got.activation, expected.activation)
    assert np.allclose(got.activation_gradient, expected.activation_gradient)


def test_progress_is_reported_to_a_listener_on_its_own_thread_only():
    heard = []
    with progress.report_to(lambda *step: heard.append(step)):
        list(progress.Progress(range(3), "here", verbose=False))
        thread = threading.Thread(target=lambda: list(progress.Progress(range(5), "there", verbose=False)))
        thread.start()
        thread.join()
        with progress.report_to(lambda *step: None):
            list(progress.Progress(range(2), "inner", verbose=False))
        list(progress.Progress(range(1), "again", verbose=False))
    list(progress.Progress(range(2), "after", verbose=False))
    assert heard == [("here", 0, 3), ("here", 1, 3), ("here", 2, 3), ("here", 3, 3), ("again", 0, 1), ("again", 1, 1)]


def test_colorize_is_matplotlibs_colour_map():
    matplotlib = pytest.importorskip("matplotlib")
    values = np.random.default_rng(0).normal(0, 1, (20, 30))
    for cmap in ("viridis", "magma", "jet", "gray"):
        got = colorize(values, cmap, -1.0, 2.0)
        mapper = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(-1.0, 2.0), cmap)
        expected = mapper.to_rgba(values, bytes=True)[..., :3]
        assert got.shape == (20, 30, 3) and got.dtype == np.uint8
        assert np.abs(got.astype(int) - expected).max() <= 8, cmap  # one step of a 256-colour table apart
