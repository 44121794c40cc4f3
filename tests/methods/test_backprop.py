"""Deconvnet and guided backprop (methods.backprop on methods.lib.gradients.backprop): the claims,
on small minigrad models, a plain nn.Sequential and a functional-style nn.Module."""

import os

import numpy as np
import pytest

import methods
import minigrad
from methods.lib.gradients import backprop
from minigrad import nn
from tests.methods.tiny_models import FunctionalTwin, NamedSequential, tiny_vgg


@pytest.fixture(scope="module")
def model():
    return tiny_vgg(channels=3, size=16, classes=5)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).normal(size=(2, 3, 16, 16)).astype(np.float32)


def gradient_image(model, x, **kwargs):
    return backprop(model, x, "standard", **kwargs).gradients


def positive_model():
    m = tiny_vgg(channels=3, size=16, classes=5, seed=3)
    for p in m.parameters():
        p.data[...] = np.abs(p.data)
    return m


def test_guided_and_deconvnet_equal_gradient_without_negative_paths():
    m = positive_model()
    x = np.random.default_rng(2).uniform(0.1, 1.0, size=(2, 3, 16, 16)).astype(np.float32)
    plain = gradient_image(m, x, target=3)
    assert (plain > 0).any()
    np.testing.assert_allclose(methods.guided_backprop(m, x, target=3).maps, plain, rtol=1e-6, atol=0)
    np.testing.assert_allclose(methods.deconvnet(m, x, target=3).maps, plain, rtol=1e-6, atol=0)
    # and for a neuron of an inner layer
    plain = gradient_image(m, x, layer="conv2_1", unit=(1, 2, 2))
    np.testing.assert_allclose(methods.guided_backprop(m, x, layer="conv2_1", unit=(1, 2, 2)).maps, plain, rtol=1e-6)


def test_rules_differ_on_a_generic_net(model, x):
    plain = gradient_image(model, x, target=1)
    guided = methods.guided_backprop(model, x, target=1).maps
    deconv = methods.deconvnet(model, x, target=1).maps
    assert guided.shape == deconv.shape == plain.shape == x.shape
    assert not np.allclose(guided, plain) and not np.allclose(deconv, plain)


def test_rule_matches_a_hand_computation():
    """One hidden ReLU layer: y = w2 . relu(W1 x); every rule by hand."""
    rng = np.random.default_rng(5)
    w1, w2 = rng.normal(size=(6, 12)).astype(np.float32), rng.normal(size=(2, 6)).astype(np.float32)
    fc1, fc2 = nn.Linear(12, 6, bias=False), nn.Linear(6, 2, bias=False)
    fc1.weight.data[...], fc2.weight.data[...] = w1, w2
    m = NamedSequential([("flatten", nn.Flatten()), ("fc1", fc1), ("relu1", nn.ReLU()), ("fc2", fc2)], 3, 2)
    x = rng.normal(size=(1, 3, 2, 2)).astype(np.float32)
    h = w1 @ x.reshape(-1)
    g = w2[0]
    expected = {
        "standard": w1.T @ (g * (h > 0)),
        "deconvnet": w1.T @ (g * (g > 0)),
        "guided": w1.T @ (g * (h > 0) * (g > 0)),
    }
    for rule, want in expected.items():
        got = backprop(m, x, rule, target=0).gradients
        np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-5, atol=1e-6, err_msg=rule)
    np.testing.assert_allclose(methods.deconvnet(m, x, target=0).maps.reshape(-1), expected["deconvnet"], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(methods.guided_backprop(m, x, target=0).maps.reshape(-1), expected["guided"],
                               rtol=1e-5, atol=1e-6)


def test_neuron_image_stays_in_its_receptive_field(model, x):
    # conv2_1 neuron (c, 3, 5): pool1 rows 2..4 -> conv1_2 rows 4..9 -> input rows 2..11 (cols 6..15)
    g = methods.guided_backprop(model, x, layer="conv2_1", unit=(0, 3, 5)).maps
    outside = np.ones(g.shape[2:], bool)
    outside[2:12, 6:16] = False
    assert np.abs(g[:, :, outside]).max() == 0
    g = gradient_image(model, x, layer="conv2_1", unit=(0, 3, 5))
    assert np.abs(g[:, :, ~outside]).max() > 0


def test_channel_seed_is_the_gradient_of_the_channel_sum(model, x):
    t = minigrad.tensor(x, requires_grad=True)
    model.extract(t, ["conv1_2"])["conv1_2"][:, 2].sum().backward()
    np.testing.assert_allclose(gradient_image(model, x, layer="conv1_2", unit=2), t.grad, rtol=1e-5, atol=1e-7)
    for p in model.parameters():
        p.grad = None


def test_fc_layer_unit_and_default_unit(model, x):
    g = methods.deconvnet(model, x, layer="fc3", unit=4).maps
    assert g.shape == x.shape and np.abs(g).max() > 0
    # each image's most active neuron of conv1_1
    g = methods.guided_backprop(model, x, layer="conv1_1").maps
    with minigrad.no_grad():
        acts = model.extract(minigrad.tensor(x), ["conv1_1"])["conv1_1"].numpy()
    for i in range(2):
        c, r, q = np.unravel_index(acts[i].argmax(), acts[i].shape)
        one = methods.guided_backprop(model, x[i:i + 1], layer="conv1_1", unit=(int(c), int(r), int(q))).maps
        np.testing.assert_allclose(g[i], one[0], rtol=1e-6, atol=1e-7)


def test_per_image_targets_match_single_runs(model, x):
    both = methods.guided_backprop(model, x, target=[0, 4])
    np.testing.assert_allclose(both.maps[0], methods.guided_backprop(model, x[:1], target=0).maps[0], rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(both.maps[1], methods.guided_backprop(model, x[1:], target=4).maps[0], rtol=1e-5,
                               atol=1e-7)
    assert list(both.targets) == [0, 4]
    with minigrad.no_grad():
        logits = model(minigrad.tensor(x)).numpy().astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(both.probabilities, [p[0, 0], p[1, 4]], rtol=1e-5)


def test_weights_get_no_gradient_and_stay_trainable(model, x):
    methods.guided_backprop(model, x, target=0)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert not model.training


def test_result_pictures_and_files(tmp_path, model, x):
    result = methods.deconvnet(model, x, target=2)
    assert set(result.figures()) == {"0", "1"} and set(result.pictures()) == {"0_map", "1_map"}
    assert all(p.dtype == np.uint8 and p.shape == (16, 16, 3) for p in result.pictures().values())
    paths = result.save(tmp_path / "out")
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(os.path.basename(p) for p in paths) == [
        "deconvnet.json", "deconvnet_0.png", "deconvnet_0_map.png", "deconvnet_0_map_x16.png", "deconvnet_1.png",
        "deconvnet_1_map.png", "deconvnet_1_map_x16.png"]


def plain_sequential(named):
    """The same modules as an nn.Sequential (layers "0", "1", ...)."""
    return nn.Sequential(*[module for _, module in named.layers()])


@pytest.mark.parametrize("technique", ["deconvnet", "guided_backprop"])
def test_plain_sequential_and_functional_module_give_the_same_images(model, x, technique):
    run = getattr(methods, technique)
    named = run(model, x, target=[1, 3]).maps
    np.testing.assert_allclose(run(plain_sequential(model), x, target=[1, 3]).maps, named, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(run(FunctionalTwin(model), x, target=[1, 3]).maps, named, rtol=1e-6, atol=1e-7)
    # a unit of a layer, by the nn.Sequential's index name ("5" is conv2_1) and the module's attribute name
    unit = run(model, x, layer="conv2_1", unit=(1, 2, 3)).maps
    np.testing.assert_allclose(run(plain_sequential(model), x, layer="5", unit=(1, 2, 3)).maps, unit, rtol=1e-6,
                               atol=1e-7)
    np.testing.assert_allclose(run(FunctionalTwin(model), x, layer="conv2_1", unit=(1, 2, 3)).maps, unit, rtol=1e-6,
                               atol=1e-7)


@pytest.mark.parametrize("kwargs, message", [
    ({"layer": "conv9_9", "unit": 0}, "unknown layer 'conv9_9'"),
    ({"layer": "conv1_1", "unit": 4}, "channel 4 is out of range"),
    ({"layer": "conv1_1", "unit": (0, 16, 0)}, "row 16 is out of range"),
    ({"layer": "conv1_1", "unit": (0, 0, 16)}, "column 16 is out of range"),
    ({"layer": "conv1_1", "unit": (0, 1)}, "unit must be a channel c or a neuron"),
    ({"layer": "fc3", "unit": (0, 1, 1)}, "does not fit a layer of shape"),
    ({"layer": "conv1_1", "unit": -1}, "unit must be a channel c or a neuron"),
    ({"target": 5}, "target class 5 is out of range"),
    ({"target": "cat"}, "unknown class name 'cat'; the model has no class names"),
    ({"target": [1]}, "give one target per image: 1 targets for 2 images"),
    ({"target": 1, "layer": "conv1_1"}, "either a target class or a layer"),
    ({"unit": 1}, "unit needs a layer"),
])
def test_bad_arguments_are_named(model, x, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        methods.guided_backprop(model, x, **kwargs)


@pytest.mark.parametrize("shape, message", [
    ((1, 1, 16, 16), "takes 3-channel images, got 1"),
    ((1, 3, 20, 16), "takes 16x16 images, got 20x16"),
    ((3, 16, 16), r"takes a batch \(N, C, H, W\)"),
    ((0, 3, 16, 16), "the batch is empty"),
])
def test_bad_images_are_named(model, shape, message):
    with pytest.raises(ValueError, match=message):
        methods.deconvnet(model, np.zeros(shape, np.float32), target=0)


def test_nan_image_is_refused(model):
    bad = np.zeros((1, 3, 16, 16), np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        methods.deconvnet(model, bad, target=0)
