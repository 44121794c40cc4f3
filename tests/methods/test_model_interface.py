"""The model interface the techniques read, declared instead of guessed (issue 11): any nn.Sequential
(layers named by index, nested ones dotted) or functional-style nn.Module is adapted by as_model;
input shape and channels come from the declaration or the first convolution; each layer's
geometry (window, pointwise, global) gives receptive fields, and a model that does not run its
layers in sequence says so; inputs it cannot take are refused with the reason."""

import numpy as np
import pytest

import methods
import minigrad
from methods.lib import inputs
from minigrad import models, nn
from tests.methods.tiny_models import FunctionalTwin, tiny_vgg


def nested():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                         nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(4, 8, 3)), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))


def test_a_sequential_is_named_by_index_like_its_state_dict():
    net = nested()
    model = models.as_model(net)
    assert isinstance(model, models.Model) and model.sequential
    assert model.layer_names == ("0", "1", "2.0", "2.1", "3", "4")
    assert model.layer("2.1") is net[2][1]
    assert {key.rsplit(".", 1)[0] for key in net.state_dict()} == {"0", "2.1", "4"}
    # no declared size: the channels come from the first convolution, and any size runs
    assert model.input_shape is None and model.channels == 3 and not model.fixed_size
    declared = models.as_model(net, input_shape=(3, 16, 16))
    assert declared.input_shape == (3, 16, 16) and declared.fixed_size
    x = np.random.default_rng(0).normal(size=(2, 3, 16, 16)).astype(np.float32)
    with minigrad.no_grad():
        np.testing.assert_array_equal(declared(minigrad.tensor(x)).numpy(), net(minigrad.tensor(x)).numpy())
        acts = declared.extract(minigrad.tensor(x), ["2.0", "1"])
    assert list(acts) == ["2.0", "1"] and acts["2.0"].shape == (2, 4, 8, 8)
    assert models.as_model(model) is model and models.as_model(tiny_vgg()).layer_names[0] == "conv1_1"


def test_geometry_of_each_layer():
    geometry = models.as_model(nested()).geometry((16, 16))
    assert [(g.name, g.kind, g.output_size) for g in geometry] == [
        ("0", "window", (16, 16)), ("1", "pointwise", (16, 16)), ("2.0", "window", (8, 8)),
        ("2.1", "window", (6, 6)), ("3", "global", None), ("4", "global", None)]
    conv, pool = geometry[0].window, geometry[2].window
    assert (conv.kernel, conv.stride, conv.padding, conv.dilation, conv.pad_value) == ((3, 3), (1, 1), (1, 1), (1, 1),
                                                                                      0.0)
    assert (pool.kernel, pool.stride, pool.pad_value) == ((2, 2), (2, 2), -np.inf)
    # a window layer run on an explicitly padded input is the layer itself
    x = minigrad.tensor(np.random.default_rng(1).normal(size=(1, 3, 16, 16)).astype(np.float32))
    padded = minigrad.functional.pad(x, (1, 1, 1, 1))
    np.testing.assert_allclose(geometry[0].unpadded(padded).numpy(), geometry[0].module(x).numpy(), rtol=1e-6,
                               atol=1e-6)


def test_adaptive_pooling_is_a_window_only_when_it_divides():
    vgg = models.ConvNet("vgg16", init=None)  # weights left zero: only the geometry is read
    at = {size: {g.name: g for g in vgg.geometry((size, size))}["avgpool"] for size in (224, 448, 100)}
    assert at[224].kind == "pointwise"  # 7 x 7 in, 7 x 7 out
    assert at[448].kind == "window" and at[448].window.kernel == (2, 2) and at[448].window.stride == (2, 2)
    assert at[100].kind == "global"  # 3 x 3 in: not an average pool of whole windows
    assert vgg.input_shape == (3, 224, 224) and not vgg.fixed_size
    with pytest.raises(ValueError, match="20x20 images are too small for vgg16: layer pool5 would have no output"):
        vgg.check_input(np.zeros((1, 3, 20, 20), np.float32))


def test_a_functional_module_runs_as_written_and_its_layers_are_read_by_hooks():
    named = tiny_vgg()
    model = models.as_model(FunctionalTwin(named))
    assert not model.sequential and model.layer_names == ("conv1_1", "conv1_2", "conv2_1", "fc3", "fc4")
    assert model.channels == 3 and model.input_shape is None
    x = np.random.default_rng(2).normal(size=(2, 3, 16, 16)).astype(np.float32)
    with minigrad.no_grad():
        np.testing.assert_allclose(model(minigrad.tensor(x)).numpy(), named(minigrad.tensor(x)).numpy(), rtol=1e-6)
        ours = model.extract(minigrad.tensor(x), ["conv2_1", "fc3"])
        theirs = named.extract(minigrad.tensor(x), ["conv2_1", "fc3"])
    for name in ("conv2_1", "fc3"):
        np.testing.assert_array_equal(ours[name].numpy(), theirs[name].numpy())
    with pytest.raises(ValueError, match="FunctionalTwin does not run its layers in sequence, so layer geometry"):
        model.geometry()
    with pytest.raises(ValueError, match="unknown layer 'relu1_1' for FunctionalTwin; its layers are: conv1_1"):
        model.layer("relu1_1")


def test_the_techniques_adapt_a_network_to_the_batch_they_are_given():
    net = nested()
    x = np.random.default_rng(3).normal(size=(1, 3, 16, 16)).astype(np.float32)
    model = inputs.as_model(net, x)
    assert model.input_shape == (3, 16, 16) and model.fixed_size
    assert inputs.as_model(net).input_shape is None
    result = methods.saliency(net, x, segment=False)
    assert result.maps.shape == (1, 16, 16)
    assert result.images.shape == (1, 16, 16, 3) and result.images.dtype == np.uint8  # identity preprocessing
    with pytest.raises(TypeError, match="expected a minigrad model .* got object"):
        methods.saliency(object(), x)
    with pytest.raises(TypeError, match="as_model needs a minigrad nn.Module, got object"):
        models.as_model(object())


@pytest.mark.parametrize("shape, message", [
    ((1, 1, 16, 16), r"Sequential takes 3-channel images, got shape \(1, 1, 16, 16\)"),
    ((1, 3, 2, 2), "2x2 images are too small for Sequential: layer 2.1 would have no output"),
    ((1, 3, 16), r"Sequential takes a batch \(N, C, H, W\), got shape \(1, 3, 16\)"),
])
def test_inputs_an_adapted_network_cannot_take_are_named(shape, message):
    with pytest.raises(ValueError, match=message):
        models.as_model(nested()).check_input(np.zeros(shape, np.float32))


def test_bad_declarations_are_named():
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\), got \(3, 16\)"):
        models.as_model(nested(), input_shape=(3, 16))


def test_every_model_deprocesses_to_rgb():
    grey = models.as_model(nn.Sequential(nn.Conv2d(1, 2, 3)), input_shape=(1, 8, 8))
    x = np.random.default_rng(4).uniform(size=(2, 1, 8, 8)).astype(np.float32)
    pictures = grey.deprocess(x)
    assert pictures.shape == (2, 8, 8, 3) and pictures.dtype == np.uint8
    np.testing.assert_array_equal(pictures[..., 0], np.rint(x[:, 0] * 255).astype(np.uint8))
    assert (pictures == pictures[..., :1]).all()
    assert models.load("fashion-vgg").deprocess(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 28, 28, 3)
