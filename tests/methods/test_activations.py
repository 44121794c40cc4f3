"""Activations: the grid shows the layer's own feature maps, one tile per channel; fc layers;
clear errors for unknown layers, bad channels and images of the wrong shape."""

import numpy as np
import pytest

import minigrad
from methods import activations as A
from methods.activations import layer_features
from tests.methods.tiny_models import tiny_vgg


def batch(n=2, channels=3, size=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, channels, size, size)).astype(np.float32)


def test_maps_are_the_layer_output_and_the_grid_has_a_tile_per_channel():
    model = tiny_vgg()
    x = batch()
    result = A.activations(model, x, "relu1_1")
    with minigrad.no_grad():
        expected = model.extract(minigrad.tensor(x), ["relu1_1"])["relu1_1"].numpy()
    np.testing.assert_array_equal(result.maps, expected)
    picture = result.grid(0)
    assert picture.dtype == np.uint8
    # 4 channels of 16x16 enlarged x2 -> a 2x2 grid of 32 px tiles with padding
    assert picture.shape[0] > 64 and picture.shape[0] < 80
    # the brightest pixel of the grid belongs to the strongest activation (layer-wide scale)
    assert picture.max() == 255
    assert set(result.pictures()) == {"relu1_1_0", "relu1_1_1"}


def test_channel_scale_and_channel_subset():
    model = tiny_vgg()
    result = A.activations(model, batch(1), "conv2_1", scale="channel", channels=[0, 3])
    assert result.maps.shape == (1, 2, 8, 8)
    tiles = result.grid(0)
    assert tiles.dtype == np.uint8


def test_fully_connected_layer_is_one_tile():
    model = tiny_vgg()
    result = A.activations(model, batch(1), "fc3")
    assert result.maps.shape == (1, 1, 4, 4)


def test_layer_features_batches_agree_with_one_pass():
    model = tiny_vgg()
    x = batch(7)
    np.testing.assert_allclose(layer_features(model, x, "fc3", batch_size=3),
                               layer_features(model, x, "fc3", batch_size=7), rtol=1e-5, atol=1e-6)
    assert layer_features(model, x, "pool1", batch_size=2).shape == (7, 4 * 8 * 8)


def test_bad_input():
    model = tiny_vgg()
    with pytest.raises(ValueError, match="unknown layer"):
        A.activations(model, batch(1), "conv7_1")
    with pytest.raises(ValueError, match="out of range"):
        A.activations(model, batch(1), "conv1_1", channels=[4])
    with pytest.raises(ValueError, match="channels"):
        A.activations(model, batch(1, channels=1), "conv1_1")
    with pytest.raises(ValueError, match="16x16"):
        A.activations(model, batch(1, size=20), "conv1_1")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        A.activations(model, batch(1)[0], "conv1_1")
    with pytest.raises(ValueError, match="scale"):
        A.activations(model, batch(1), "conv1_1", scale="log")
