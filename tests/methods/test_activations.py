"""Activations: the grid shows the layer's own feature maps, one numbered tile per channel on one
scale (or one scale per channel); fully connected layers as one tile; layer features in batches;
clear errors for unknown layers, bad channels, bad options and images of the wrong shape."""

import numpy as np
import pytest

import methods
import minigrad
from methods.lib.features import layer_activations, layer_features
from methods.lib.images import enlarge, grid, to_uint8
from tests.methods.tiny_models import tiny_vgg


def batch(n=2, channels=3, size=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, channels, size, size)).astype(np.float32)


def extract(model, x, layer):
    with minigrad.no_grad():
        return model.extract(minigrad.tensor(x), [layer])[layer].numpy()


def test_grid_places_tiles_row_by_row_with_their_labels():
    tiles = [np.full((4, 6), 10 * (i + 1), np.uint8) for i in range(5)]
    picture = grid(tiles, columns=3, pad=2, fill=255)
    assert picture.shape == (2 * (4 + 2) + 2, 3 * (6 + 2) + 2)
    for i in range(5):
        r, c = divmod(i, 3)
        top, left = 2 + r * 6, 2 + c * 8
        assert (picture[top:top + 4, left:left + 6] == 10 * (i + 1)).all()
    assert (picture[-6:, -8:] == 255).all()  # the missing sixth tile is background
    labelled = grid(tiles, columns=3, pad=2, labels=list("abcde"))
    strip = labelled.shape[0] // 2 - 2 - 4 - 1  # two rows of (pad, strip, tile), pad at the end
    assert labelled.shape == (2 * (2 + strip + 4) + 2, 3 * (6 + 2) + 2, 3) and strip >= 10
    for i in range(5):
        r, c = divmod(i, 3)
        top, left = 2 + r * (strip + 6) + strip, 2 + c * 8
        assert (labelled[top:top + 4, left:left + 6] == 10 * (i + 1)).all()  # under its label, unchanged
        assert (labelled[top - strip:top, left:left + 6] < 128).any()  # the label is written in black
    with pytest.raises(ValueError, match="one shape"):
        grid([np.zeros((2, 2), np.uint8), np.zeros((3, 3), np.uint8)])
    with pytest.raises(ValueError, match="2 labels for 5 tiles"):
        grid(tiles, labels=["a", "b"])


def test_maps_are_the_layer_output_and_the_grid_has_a_numbered_tile_per_channel():
    model = tiny_vgg()
    x = batch()
    result = methods.activations(model, x, layer="relu1_1")
    expected = extract(model, x, "relu1_1")
    np.testing.assert_array_equal(result.maps, expected)
    assert result.channels == [0, 1, 2, 3]
    for i in range(2):
        picture = result.grid(i)
        low, high = expected[i].min(), expected[i].max()
        # one scale for the layer: each 16x16 map enlarged x2 (tiles of at least 32 px), numbered
        want = grid([enlarge(to_uint8(m, low, high), 2) for m in expected[i]], pad=1, labels=["0", "1", "2", "3"])
        np.testing.assert_array_equal(picture, want)
        assert picture.dtype == np.uint8 and picture.max() == 255
    assert set(result.pictures()) == {"relu1_1_0", "relu1_1_1"}
    figures = result.figures()
    assert set(figures) == {"0", "1"}
    assert all(f.dtype == np.uint8 and f.ndim == 3 and f.std() > 0 for f in figures.values())
    assert result.summary["maximum"] == pytest.approx(float(expected.max()))
    assert result.params["layer"] == "relu1_1"


def test_default_layer_is_the_first():
    model = tiny_vgg()
    result = methods.activations(model, batch(1))
    assert result.params["layer"] == "conv1_1"
    np.testing.assert_array_equal(result.maps, extract(model, batch(1), "conv1_1"))


def test_channel_scale_and_channel_subset():
    model = tiny_vgg()
    x = batch(1)
    result = methods.activations(model, x, layer="conv2_1", scale="channel", channels=[0, 3], upscale=3)
    expected = extract(model, x, "conv2_1")[:, [0, 3]]
    np.testing.assert_array_equal(result.maps, expected)
    assert result.maps.shape == (1, 2, 8, 8) and result.channels == [0, 3]
    # each tile stretched to its own range: both reach 0 and 255
    want = grid([enlarge(to_uint8(m), 3) for m in expected[0]], pad=1, labels=["0", "3"])
    np.testing.assert_array_equal(result.grid(0), want)


def test_fully_connected_layer_is_one_tile_of_its_units_row_by_row():
    model = tiny_vgg()
    x = batch(1)
    result = methods.activations(model, x, layer="fc3")  # 16 units: a 4x4 tile
    assert result.maps.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(result.maps.reshape(-1), extract(model, x, "fc3")[0])
    result = methods.activations(model, x, layer="fc4")  # 5 units: 3 columns, 2 rows, one cell empty
    assert result.maps.shape == (1, 1, 2, 3)
    np.testing.assert_array_equal(result.maps.reshape(-1)[:5], extract(model, x, "fc4")[0])
    assert np.isnan(result.maps.reshape(-1)[5])
    assert result.grid(0).dtype == np.uint8
    assert all(f.std() > 0 for f in result.figures().values())


def test_layer_features_batches_agree_with_one_pass():
    model = tiny_vgg()
    x = batch(7)
    np.testing.assert_allclose(layer_features(model, x, "fc3", batch_size=3),
                               layer_features(model, x, "fc3", batch_size=7), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(layer_features(model, x, "pool1", batch_size=7),
                                  extract(model, x, "pool1").reshape(7, -1))
    assert layer_features(model, x, "pool1", batch_size=2).shape == (7, 4 * 8 * 8)
    assert layer_features(model, x, "pool1", flatten=False).shape == (7, 4, 8, 8)
    np.testing.assert_array_equal(layer_activations(model, x, "conv2_1"), extract(model, x, "conv2_1"))


@pytest.mark.parametrize("x, options, message", [
    (batch(1), {"layer": "conv7_1"}, "unknown layer 'conv7_1' for NamedSequential; its layers are: conv1_1"),
    (batch(1), {"layer": "conv1_1", "channels": [4]}, r"channel\(s\) \[4\] out of range: layer 'conv1_1' has 4"),
    (batch(1), {"channels": [-1]}, "channels must be an integer >= 0"),
    (batch(1), {"scale": "log"}, "scale must be one of layer, channel"),
    (batch(1), {"upscale": 0}, "upscale must be an integer from 1 to 64"),
    (batch(1, channels=1), {}, "takes 3-channel images, got 1 channels"),
    (batch(1, size=20), {}, "takes 16x16 images, got 20x20"),
    (batch(1)[0], {}, r"takes a batch \(N, C, H, W\), got shape \(3, 16, 16\)"),
    (np.zeros((1, 3, 16, 16), np.uint8), {}, "expected a preprocessed float batch"),
    (np.full((1, 3, 16, 16), np.nan, np.float32), {}, "NaN"),
])
def test_bad_input(x, options, message):
    with pytest.raises(ValueError, match=message):
        methods.activations(tiny_vgg(), x, **options)


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="unknown option"):
        methods.activations(tiny_vgg(), batch(1), layers="conv1_1")
