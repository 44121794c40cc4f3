"""The optimizing-the-image techniques do what their papers claim (issue 13):

* class models (Simonyan et al.): each of fashion-vgg's ten classes becomes the top class of its
  class model, and its score rises;
* unit visualization (Yosinski et al.): every preset raises the unit for every restart; the
  restarts differ; the norm preset leaves half of the pixels at the mean colour;
* feature inversion (Mahendran & Vedaldi): from conv layers the relative code distance falls
  below 5% of the start, from random starts that end apart;
* DeepDream: ||a_l||^2 at least doubles;
* texture synthesis (Gatys et al. 2015): the Gram loss falls at least tenfold;
* style transfer (Gatys et al. 2016): the style loss falls; luminance-only transfer keeps the
  content's colours.

And for all: ``.image`` is a batch the model takes, bad arguments are named, Ctrl-C returns what
there is."""

import importlib

import numpy as np
import pytest

import methods
import minigrad
from methods import data
from methods.lib.datasets import load_images
from methods.lib.objectives import activations
from methods.lib.regularizers import pixel_bounds
from minigrad import models
from tests.methods.tiny_models import tiny_vgg


@pytest.fixture(scope="module")
def fashion():
    return models.load("fashion-vgg")


def photo_model(size=32):
    """A random tiny VGG taking 3 x size x size images (random filters are enough for textures,
    dreams and style: Ustyuzhaninov et al. 2017)."""
    return tiny_vgg(channels=3, size=size, width=8)


def test_every_class_becomes_the_top_class_of_its_class_model(fashion):
    result = methods.class_model(fashion, steps=30)
    assert list(result.targets) == list(range(10)) and result.image.shape == (10, 1, 28, 28)
    assert (result.top_classes == result.targets).all()
    assert (result.scores > result.start_scores + 5).all()
    assert result.params["learning_rate"] == pytest.approx(25 * np.sqrt(784 / (3 * 224 * 224)))
    assert result.params["jitter"] == 2 and result.params["blur_sigma"] == 0.0625  # 16 and 0.5 at 224, scaled
    with minigrad.no_grad():
        scores = fashion(minigrad.tensor(result.image)).numpy()  # .image is what the model takes
    np.testing.assert_allclose(scores[np.arange(10), result.targets], result.scores, rtol=1e-4)
    low = fashion.preprocessing.normalize(np.zeros((1, 1, 1, 1), np.uint8)).item()
    assert result.image.min() >= low - 1e-6  # clamped to the valid pixel range
    assert methods.class_model(fashion, target="Bag", steps=2).targets.tolist() == [8]


@pytest.mark.parametrize("preset", ["norm", "decay", "blur", "contribution"])
def test_every_preset_raises_the_unit_for_every_restart(fashion, preset):
    result = methods.visualize_unit(fashion, layer="conv2_1", unit=(3, 7, 7), preset=preset, steps=40, restarts=3)
    assert result.image.shape == (3, 1, 28, 28)
    assert (result.activations > result.start_activations + 0.5).all(), (result.start_activations, result.activations)
    assert not np.allclose(result.image[0], result.image[1])  # different starts, different images
    with minigrad.no_grad():
        found = fashion.extract(minigrad.tensor(result.image), ["conv2_1"])["conv2_1"].numpy()
    np.testing.assert_allclose(found[:, 3, 7, 7], result.activations, rtol=1e-4, atol=1e-5)
    if preset == "norm":  # Yosinski et al.'s 50% of pixels with small norm set to the mean colour
        assert ((result.image == 0).mean(axis=(1, 2, 3)) >= 0.45).all()


def test_a_channel_and_a_fully_connected_unit(fashion):
    channel = methods.visualize_unit(fashion, layer="relu2_1", unit=5, steps=20, restarts=1)
    assert channel.params["unit"] == 5 and channel.activations[0] > channel.start_activations[0]
    neuron = methods.visualize_unit(fashion, layer="fc8", unit=3, steps=20, restarts=1)
    assert neuron.activations[0] > neuron.start_activations[0] + 1
    with pytest.raises(ValueError, match=r"channel 40 is out of range for a layer of shape \(32, 28, 28\)"):
        methods.visualize_unit(fashion, layer="relu1_1", unit=40, steps=1)


def test_inversion_from_conv_layers_reaches_a_small_code_distance(fashion):
    x, _ = load_images(fashion, ["sample:0"])
    result = methods.invert(fashion, x, layers=["conv1_1", "conv2_1"], starts=2, steps=200)
    assert result.image.shape == (4, 1, 28, 28) and result.layers == ["conv1_1", "conv2_1"]
    assert (result.code_distance < 0.05 * result.start_code_distance).all(), result.code_distance
    assert not np.allclose(result.image[0], result.image[1])  # two starts, two images, one code
    i = result.index(0, "conv2_1", 1)
    with minigrad.no_grad():
        code = fashion.extract(minigrad.tensor(result.image[i:i + 1]), ["conv2_1"])["conv2_1"].numpy()
        target = fashion.extract(minigrad.tensor(x), ["conv2_1"])["conv2_1"].numpy()
    assert ((code - target) ** 2).sum() / (target ** 2).sum() == pytest.approx(result.code_distance[i], rel=1e-3)


@pytest.mark.slow
def test_inversion_from_every_conv_layer_with_the_papers_settings(fashion):
    x, _ = load_images(fashion, ["sample:0"])
    layers = ["conv1_1", "relu1_1", "pool1", "conv2_1", "relu2_1", "pool2", "conv3_1", "relu3_1"]
    result = methods.invert(fashion, x, layers=layers)
    assert (result.code_distance < 0.05 * result.start_code_distance).all(), result.code_distance


def test_deepdream_at_least_doubles_the_layer_energy():
    model = photo_model()
    with pytest.warns(models.PreprocessingNote):
        x = model.preprocess(data.sample_image("chelsea"))
    result = methods.deepdream(model, x)
    assert result.params["layer"] == "relu1_2" and result.sizes == [(12, 12), (16, 16), (23, 23), (32, 32)]
    assert result.image.shape == x.shape and (result.energy >= 2 * result.start_energy).all()
    assert len(result.snapshots) == 3 and result.steps == 40
    guided = methods.deepdream(model, x, guide="sample:gravel", octaves=2)
    assert guided.energy[0] > guided.start_energy[0] and not np.allclose(guided.image, result.image)


def test_texture_synthesis_lowers_the_gram_loss_tenfold():
    model = photo_model()
    result = methods.texture_synthesis(model, "sample:brick", steps=25, image_size=32)
    assert result.layers == ["relu1_1", "pool1", "pool2"] and result.image.shape == (1, 3, 32, 32)
    assert result.gram_loss[0] < 0.1 * result.start_gram_loss[0]
    texture = model.preprocessing.normalize(result.texture[None])
    with minigrad.no_grad():
        ours = activations(model, minigrad.tensor(result.image), ["pool2"], "avg")["pool2"]
        theirs = activations(model, minigrad.tensor(texture), ["pool2"], "avg")["pool2"]
        g, t = methods.gram_matrix(ours).numpy(), methods.gram_matrix(theirs).numpy()
    assert ((g - t) ** 2).sum() / (t ** 2).sum() == pytest.approx(result.terms["pool2"][-1, 0], rel=1e-3)
    low, high = pixel_bounds(model)
    assert (result.image >= low - 1e-5).all() and (result.image <= high + 1e-5).all()  # L-BFGS in the pixel box


def test_style_transfer_lowers_the_style_loss_and_can_keep_the_colours():
    model = photo_model()
    result = methods.style_transfer(model, "sample:coffee", style="sample:gravel", steps=15, image_size=32)
    assert result.image.shape == (1, 3, 21, 32) and result.terms["style"][-1, 0] < 0.5 * result.terms["style"][0, 0]
    both = methods.style_transfer(model, "sample:coffee", style=["sample:gravel", "sample:brick"],
                                  style_blend_weights=[3, 1], steps=3, image_size=32, optimizer="adam")
    assert both.params["style_blend_weights"] == [0.75, 0.25] and len(both.styles) == 2
    kept = methods.style_transfer(model, "sample:coffee", style="sample:gravel", steps=5, image_size=32,
                                  original_colors=True, init="image")
    yiq = importlib.import_module("methods.style_transfer").YIQ
    chroma = lambda pixels: pixels.astype(np.float64) @ yiq[1:].T  # noqa: E731
    off = np.abs(chroma(kept.pixels[0]) - chroma(kept.content))
    assert (off <= 2.5).mean() > 0.99  # all but the pixels whose new luminance puts them out of the RGB gamut
    with pytest.raises(ValueError, match="style_blend_weights must give one weight per style image: 1 for 2"):
        methods.style_transfer(model, "sample:coffee", style=["sample:gravel", "sample:brick"],
                               style_blend_weights=[1], steps=1)


def test_ctrl_c_returns_the_images_so_far(fashion):
    calls = []

    def interrupt(module, inputs, output):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt

    handle = fashion.layer("conv1_1").register_forward_hook(interrupt)
    try:
        result = methods.class_model(fashion, target=[1, 2], steps=50)
    finally:
        handle.remove()
    assert result.interrupted and result.steps == 4 and result.summary["interrupted"]
    assert result.image.shape == (2, 1, 28, 28) and np.isfinite(result.image).all()


def test_bad_arguments_are_named(fashion):
    x, _ = load_images(fashion, ["sample:0"])
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        methods.invert(fashion, x, layers=["conv9"])
    with pytest.raises(ValueError, match="max_size 16 is smaller than fashion-vgg's input size 28x28, the only size"):
        methods.class_model(fashion, max_size=16)
    with pytest.raises(ValueError, match="sample:nothing: no such sample"):
        methods.texture_synthesis(fashion, "sample:nothing")
    with pytest.raises(ValueError, match="deepdream takes one guide image, got 2"):
        methods.deepdream(fashion, x, guide=["sample:brick", "sample:grass"])
    with pytest.raises(ValueError, match="does not declare an input size"):
        methods.class_model(minigrad.nn.Sequential(minigrad.nn.Conv2d(3, 4, 3)))


@pytest.mark.parametrize("name", ["class_model", "visualize_unit", "inversion", "deepdream", "texture",
                                  "style_transfer"])
def test_the_gradient_reaching_the_image_stays_float32(monkeypatch, name):
    """A float64 constant in an objective would turn the whole backward pass into float64 (twice the
    time, and no Winograd): every technique's gradient at the image is float32, like the image."""
    module = importlib.import_module(f"methods.{name}")
    original, dtypes = module.optimize, []

    def checked(start, objective, **kwargs):
        def watched(x):
            if x.requires_grad:
                x.register_hook(lambda g: dtypes.append(g.dtype))
            return objective(x)

        return original(start, watched, **kwargs)

    monkeypatch.setattr(module, "optimize", checked)
    model = photo_model()
    x = np.random.default_rng(0).uniform(size=(1, 3, 32, 32)).astype(np.float32)
    calls = {"class_model": lambda: methods.class_model(model, target=[1], steps=2),
             "visualize_unit": lambda: methods.visualize_unit(model, steps=2, restarts=1),
             "inversion": lambda: methods.invert(model, x, layers=["pool1", "fc4"], steps=2),
             "deepdream": lambda: methods.deepdream(model, x, steps=2, octaves=2),
             "texture": lambda: methods.texture_synthesis(model, "sample:brick", steps=2, image_size=32),
             "style_transfer": lambda: methods.style_transfer(model, "sample:coffee", style=["sample:brick",
                                                                                             "sample:grass"],
                                                              steps=2, image_size=32)}
    calls[name]()
    assert dtypes and set(dtypes) == {np.dtype(np.float32)}
