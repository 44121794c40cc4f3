"""Filters: each first-layer filter is its own weights rescaled to 0-255, numbered; deeper layers are
one row of per-input-channel tiles per filter, one scale per filter; any nn.Sequential works; clear
errors for unknown and non-convolution layers and bad options."""

import numpy as np
import pytest

import methods
from minigrad import nn
from tests.methods.tiny_models import tiny_vgg


def rescaled(f):
    """A filter (or any array) linearly to 0..255, its own min -> 0 and max -> 255."""
    return np.round((f - f.min()) / (f.max() - f.min()) * 255).astype(np.uint8)


def tiles_of(picture, rows, columns, side, pad):
    """The (side x side) tiles of a labelled grid, row by row: each sits under its label strip."""
    strip = (picture.shape[0] - pad) // rows - side - pad
    assert picture.shape[:2] == (rows * (strip + side + pad) + pad, columns * (side + pad) + pad)
    out = []
    for r in range(rows):
        for c in range(columns):
            top, left = pad + r * (strip + side + pad) + strip, pad + c * (side + pad)
            label = picture[top - strip:top, left:left + side]
            assert (label < 128).any(), (r, c)  # a number is written above the tile
            out.append(picture[top:top + side, left:left + side])
    return out


def test_first_layer_tiles_are_each_filter_rescaled_to_0_255():
    model = tiny_vgg(channels=3)
    result = methods.filters(model, zoom=5)
    assert result.params == {"layer": "conv1_1", "max_filters": 4, "max_channels": 16, "zoom": 5}
    w = model.layer("conv1_1").weight.numpy()
    np.testing.assert_array_equal(result.weights, w)
    picture = result.picture()
    assert picture.dtype == np.uint8 and picture.ndim == 3
    tiles = tiles_of(picture, rows=2, columns=2, side=15, pad=1)
    for tile, f in zip(tiles, w):
        expected = rescaled(f).transpose(1, 2, 0)  # RGB, enlarged x5 by nearest neighbour
        np.testing.assert_array_equal(tile, np.repeat(np.repeat(expected, 5, 0), 5, 1))
        assert tile.min() == 0 and tile.max() == 255
    assert set(result.pictures()) == {"conv1_1_grid"}
    figure = result.figures()["conv1_1"]
    assert figure.dtype == np.uint8 and figure.std() > 0


def test_grayscale_first_layer():
    model = tiny_vgg(channels=1)
    result = methods.filters(model, zoom=4)
    w = model.layer("conv1_1").weight.numpy()
    for tile, f in zip(tiles_of(result.picture(), 2, 2, 12, 1), w):
        assert (tile == tile[..., :1]).all()  # grey
        np.testing.assert_array_equal(tile[..., 0], np.repeat(np.repeat(rescaled(f[0]), 4, 0), 4, 1))


def test_deeper_layer_is_a_per_input_channel_grid_with_one_scale_per_filter():
    model = tiny_vgg(channels=3)
    result = methods.filters(model, layer="conv2_1", max_filters=5, max_channels=3, zoom=4)
    assert not result.first_layer and result.params["max_filters"] == 5
    w = model.layer("conv2_1").weight.numpy()[:5, :3]
    # 5 rows (filters) x 3 columns (input channels) of 12 px tiles with 1 px padding
    tiles = tiles_of(result.picture(), rows=5, columns=3, side=12, pad=1)
    for o, f in enumerate(w):
        scaled = rescaled(f)  # one scale per filter, across its channels
        for c in range(3):
            np.testing.assert_array_equal(tiles[3 * o + c][..., 0], np.repeat(np.repeat(scaled[c], 4, 0), 4, 1))
        stacked = np.stack([t[..., 0] for t in tiles[3 * o: 3 * o + 3]])
        assert stacked.min() == 0 and stacked.max() == 255
    assert methods.filters(model, layer="conv2_1").params["max_filters"] == 32  # deeper default


def test_plain_sequential_layers_are_named_by_index():
    net = nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 2, 3))
    result = methods.filters(net)
    assert result.params["layer"] == "0" and result.first_layer
    np.testing.assert_array_equal(result.weights, net[0].weight.numpy())
    deeper = methods.filters(net, layer="3")
    assert deeper.weights.shape == (2, 6, 3, 3) and not deeper.first_layer
    with pytest.raises(ValueError, match="layer '2' is a MaxPool2d, not a convolution; the model's convolutions "
                                         "are: 0, 3"):
        methods.filters(net, layer="2")


@pytest.mark.parametrize("options, message", [
    ({"layer": "conv9_9"}, "unknown layer 'conv9_9' for NamedSequential"),
    ({"layer": "pool1"}, ("layer 'pool1' is a MaxPool2d, not a convolution; the model's convolutions are: "
                          "conv1_1, conv1_2, conv2_1")),
    ({"max_filters": 0}, "max_filters must be an integer >= 1 or None, got 0"),
    ({"max_channels": 0}, "max_channels must be an integer >= 1, got 0"),
    ({"zoom": 65}, "zoom must be an integer from 1 to 64 or None, got 65"),
])
def test_bad_input(options, message):
    with pytest.raises(ValueError, match=message):
        methods.filters(tiny_vgg(), **options)


def test_a_model_without_convolutions_and_an_image_batch_are_refused():
    with pytest.raises(ValueError, match="has no convolution layers"):
        methods.filters(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(TypeError, match="takes the model, then options by name"):
        methods.filters(tiny_vgg(), np.zeros((1, 3, 16, 16), np.float32))
