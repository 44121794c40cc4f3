"""Filters: each first-layer filter is its own weights rescaled to 0-255; deeper layers are
per-input-channel grids; clear errors for unknown and non-convolution layers."""

import numpy as np
import pytest

from methods import filters as Fl
from tests.methods.tiny_models import tiny_vgg


def test_first_layer_tiles_are_each_filter_rescaled_to_0_255():
    model = tiny_vgg(channels=3)
    result = Fl.filters(model)
    assert result.params["layer"] == "conv1_1"
    w = dict(model.layers.named_children())["conv1_1"].weight.numpy()
    tiles = result.tiles()
    assert len(tiles) == 4 and tiles[0].shape == (3, 3, 3)
    for tile, f in zip(tiles, w):
        assert tile.min() == 0 and tile.max() == 255
        expected = np.round((f - f.min()) / (f.max() - f.min()) * 255).transpose(1, 2, 0)
        np.testing.assert_array_equal(tile, expected.astype(np.uint8))
    picture = result.picture()
    assert picture.dtype == np.uint8 and picture.ndim == 3


def test_grayscale_first_layer():
    result = Fl.filters(tiny_vgg(channels=1))
    assert result.tiles()[0].shape == (3, 3)
    assert result.picture().ndim == 2


def test_deeper_layer_is_a_per_input_channel_grid():
    model = tiny_vgg(channels=3)
    result = Fl.filters(model, "conv2_1", max_filters=5, max_channels=3, zoom=4)
    rows = result.channel_rows()
    assert len(rows) == 5 and all(len(r) == 3 for r in rows)
    w = dict(model.layers.named_children())["conv2_1"].weight.numpy()[:5, :3]
    for row, f in zip(rows, w):  # one scale per filter, across its channels
        stacked = np.stack(row)
        assert stacked.min() == 0 and stacked.max() == 255
        assert np.argmax(stacked) == np.argmax(f)
    picture = result.picture()
    # 5 rows x 3 columns of 12 px tiles with 1 px padding
    assert picture.shape == (5 * 13 + 1, 3 * 13 + 1)


def test_bad_input():
    model = tiny_vgg()
    with pytest.raises(ValueError, match="unknown layer"):
        Fl.filters(model, "conv9_9")
    with pytest.raises(ValueError, match="not a convolution"):
        Fl.filters(model, "pool1")
    with pytest.raises(ValueError, match="max_filters"):
        Fl.filters(model, max_filters=0)
