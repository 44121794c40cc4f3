"""Saliency, occlusion, deconvnet and guided backprop on fashion-vgg: the garment claim with the
shipped weights (skipped until they ship), and every CLI entry on a small FashionVGG."""

import argparse
import importlib
import os

import numpy as np
import pytest

import methods
from methods import data
from minigrad.models import fashion_vgg as fashion


def trained_fashion_vgg():
    import weights

    path = os.path.join(os.path.dirname(os.path.abspath(weights.__file__)), fashion.WEIGHTS_NAME)
    if not os.path.exists(path):
        pytest.skip("the shipped fashion-vgg weights are not in weights/ yet")
    return fashion.fashion_vgg()


def dilate(masks):
    """Grow (N, H, W) boolean masks by one pixel in all 8 directions."""
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
    h, w = masks.shape[1:]
    return np.any([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)


def test_saliency_mass_lies_on_the_garment():
    """Fashion-MNIST garments sit on a black (0) background: most saliency lies on the garment
    (grown by one pixel, so its outline counts: a 3x3 filter sees an edge from both sides)."""
    model = trained_fashion_vgg()
    images, labels = data.fashion_sample()
    picks = np.concatenate([np.flatnonzero(labels == c)[:3] for c in range(10)])
    x = model.preprocess(images[picks])
    maps = methods.saliency_map(model, x, target=labels[picks].tolist())
    garment = dilate(images[picks] > 0)
    share = (maps * garment).sum(axis=(1, 2)) / maps.sum(axis=(1, 2))
    assert np.median(share) > 0.7, share
    # and more than the garment's share of the frame, for nearly every image
    assert np.mean(share > garment.mean(axis=(1, 2))) >= 0.9, share


@pytest.fixture(scope="module")
def small_model():
    return fashion.FashionVGG(blocks=((4,), (4,), (6,)), hidden=8).eval()


@pytest.mark.parametrize("technique, options, picture", [
    ("saliency", [], "saliency_0_segmentation.png"),
    ("occlusion", ["--size", "7", "--stride", "7"], "occlusion_0_probability.png"),
    ("deconvnet", ["--layer", "conv2_1", "--unit", "1,3,3"], "deconvnet_0.png"),
    ("guided-backprop", ["--target", "3"], "guided-backprop_0.png"),
])
def test_cli_modules_run_and_save(tmp_path, small_model, technique, options, picture):
    module = importlib.import_module("methods." + technique.replace("-", "_"))
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    module.add_cli_arguments(parser)
    args = parser.parse_args(options)
    x = small_model.preprocess(data.fashion_sample()[0][:1])
    result = module.run_cli(args, small_model, x)
    paths = result.save(tmp_path)
    assert any(p.endswith(picture) for p in paths), paths


def test_unknown_layer_is_named_on_fashion_vgg(small_model):
    x = small_model.preprocess(data.fashion_sample()[0][:1])
    with pytest.raises(ValueError, match="unknown layer 'conv9_1'"):
        methods.guided_backprop(small_model, x, layer="conv9_1", unit=0)
    with pytest.raises(ValueError, match="takes 1-channel images, got 3"):
        methods.saliency_map(small_model, np.zeros((1, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match="takes 28x28 images"):
        methods.occlusion(small_model, np.zeros((1, 1, 32, 32), np.float32))
