"""Occlusion (Zeiler & Fergus 2014): incremental inference gives the map of full recomputation, on
odd geometries and a plain nn.Sequential; a functional-style module or a model whose layer
sequence is not its forward falls back to full recomputation; the maps find the region a class
reads; clear errors."""

import os

import numpy as np
import pytest

import methods
from methods.occlusion import occlusion, occlusion_positions
from minigrad import nn
from tests.methods.tiny_models import FunctionalTwin, NamedSequential, tiny_vgg


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(2, 3, 16, 16)).astype(np.float32)


def odd_geometry_model(seed=1):
    """Strided, padded, dilated convs, overlapping padded max-pool, avg-pool, BN, LRN, LeakyReLU."""
    rng = np.random.default_rng(seed)
    layers = [
        ("conv1", nn.Conv2d(3, 4, 5, stride=2, padding=2)), ("bn1", nn.BatchNorm2d(4)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(3, stride=2, padding=1)),
        ("conv2", nn.Conv2d(4, 6, 3, padding=2, dilation=2)), ("lrn2", nn.LocalResponseNorm(3)),
        ("relu2", nn.LeakyReLU(0.1)),
        ("pool2", nn.AvgPool2d(2, stride=1)),
        ("conv3", nn.Conv2d(6, 6, (3, 1), stride=(1, 2), padding=(1, 0))), ("relu3", nn.ReLU()),
        ("flatten", nn.Flatten()), ("fc4", nn.Linear(6 * 4 * 2, 7)),
    ]
    model = NamedSequential(layers, 3, 20)
    for name, p in model.named_parameters():
        p.data[...] = rng.normal(0, 0.4, p.shape).astype(np.float32)
    bn = model.layer("bn1")
    bn.running_mean[...] = rng.normal(size=4)
    bn.running_var[...] = rng.uniform(0.5, 2, size=4)
    return model.eval()


def assert_same_maps(a, b, atol):
    assert a.summary["used_incremental"] and not b.summary["used_incremental"]
    np.testing.assert_allclose(a.probability, b.probability, rtol=0, atol=atol)
    np.testing.assert_array_equal(a.top_class, b.top_class)
    np.testing.assert_allclose(a.top_probability, b.top_probability, rtol=0, atol=atol)
    np.testing.assert_allclose(a.maps, b.maps, rtol=0, atol=atol)


@pytest.mark.parametrize("size, stride, fill", [(3, 2, "zeros"), (4, 3, "mean"), (5, 3, "blur"), (1, 3, "zeros"),
                                                (16, 4, "zeros")])
def test_incremental_equals_full_recomputation(x, size, stride, fill):
    m = tiny_vgg()
    a = occlusion(m, x, size=size, stride=stride, fill=fill, batch_size=13)
    b = occlusion(m, x, size=size, stride=stride, fill=fill, batch_size=13, incremental=False)
    assert_same_maps(a, b, atol=1e-6)


def test_incremental_equals_full_in_float64_to_rounding(x):
    m = tiny_vgg().double()
    x64 = x.astype(np.float64)
    a = occlusion(m, x64, size=3, stride=2, batch_size=16)
    b = occlusion(m, x64, size=3, stride=2, batch_size=16, incremental=False)
    assert_same_maps(a, b, atol=1e-13)


@pytest.mark.parametrize("size, stride", [(3, 2), (6, 4), (7, 5)])
def test_incremental_equals_full_on_odd_geometry(size, stride):
    m = odd_geometry_model()
    x = np.random.default_rng(2).normal(size=(1, 3, 20, 20)).astype(np.float32)
    a = occlusion(m, x, size=size, stride=stride, target=3, batch_size=11)
    b = occlusion(m, x, size=size, stride=stride, target=3, batch_size=11, incremental=False)
    assert_same_maps(a, b, atol=1e-6)


def test_plain_sequential_runs_incrementally_and_a_functional_module_falls_back(x):
    named = tiny_vgg()
    reference = occlusion(named, x, size=4, stride=3, incremental=False)
    sequential = occlusion(nn.Sequential(*[m for _, m in named.layers()]), x, size=4, stride=3)
    assert_same_maps(sequential, reference, atol=1e-6)
    functional = occlusion(FunctionalTwin(named), x, size=4, stride=3)
    assert not functional.summary["used_incremental"]
    np.testing.assert_allclose(functional.probability, reference.probability, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(functional.top_class, reference.top_class)


def test_maps_find_the_region_the_class_reads():
    """A model whose class-0 score grows with the pixels of one square: covering it drops p(0)."""
    size = 16
    fc = nn.Linear(3 * size * size, 2)
    w = np.zeros((2, 3, size, size), np.float32)
    w[0, :, 2:6, 9:13] = 1.0
    fc.weight.data[...] = w.reshape(2, -1)
    fc.bias.data[...] = (0.0, 4.0)
    conv = nn.Conv2d(3, 3, 1)
    conv.weight.data[...] = np.eye(3, dtype=np.float32)[:, :, None, None]
    conv.bias.data[...] = 0
    m = NamedSequential([("conv1", conv), ("relu1", nn.ReLU()), ("flatten", nn.Flatten()), ("fc2", fc)], 3, size)
    x = np.full((1, 3, size, size), 0.5, np.float32)
    result = occlusion(m, x, target=0, size=4, stride=1, batch_size=169)
    r, c = np.unravel_index(result.probability[0].argmin(), result.probability[0].shape)
    assert (result.rows[r], result.cols[c]) == (2, 9)
    assert result.base_probability[0] > 0.99 and result.probability[0].min() < 0.05
    assert result.top_class[0, r, c] == 1 and result.top_class[0, 0, 0] == 0
    assert result.maps.shape == (1, size, size)
    # the drop in p(0) is largest on the square and nothing outside the occluders' reach of it
    drop = result.maps[0]
    peak = np.unravel_index(drop.argmax(), drop.shape)
    assert 2 <= peak[0] < 6 and 9 <= peak[1] < 13 and drop[2:6, 9:13].min() > 0
    near = np.zeros((size, size), bool)
    near[0:9, 6:16] = True  # pixels covered by a 4x4 occluder that also covers part of the square
    assert np.abs(drop[~near]).max() < 1e-6 and drop[near].min() >= -1e-6
    assert list(result.targets) == [0]


def test_positions_cover_every_pixel():
    assert occlusion_positions(16, 4, 2) == [0, 2, 4, 6, 8, 10, 12]
    assert occlusion_positions(16, 5, 4) == [0, 4, 8, 11]
    assert occlusion_positions(5, 5, 3) == [0]


def test_default_size_and_stride_are_a_seventh_and_half_of_it(x):
    result = occlusion(tiny_vgg(), x[:1])
    assert result.params["size"] == 2 and result.params["stride"] == 1  # 16 // 7, then half
    assert result.probability.shape == (1, 15, 15) and result.summary["positions"] == 225


def test_layer_sequence_mismatch_falls_back_to_full(x):
    class Twisted(NamedSequential):
        def forward(self, t):
            return super().forward(t) * 2.0

    m = tiny_vgg()
    twisted = Twisted(m.layers(), 3, 16)
    with pytest.warns(UserWarning, match="does not reproduce"):
        result = occlusion(twisted, x, size=4, stride=4)
    assert not result.summary["used_incremental"]
    full = occlusion(twisted, x, size=4, stride=4, incremental=False)
    np.testing.assert_array_equal(result.probability, full.probability)


def test_saves_figures_maps_and_json(tmp_path, x):
    result = methods.occlusion(tiny_vgg(), x, size=4, stride=4)
    paths = result.save(tmp_path / "out")
    assert sorted(os.path.basename(p) for p in paths) == sorted(os.listdir(tmp_path / "out")) == [
        "occlusion.json", "occlusion_0.png", "occlusion_0_probability.png", "occlusion_0_probability_x64.png",
        "occlusion_1.png", "occlusion_1_probability.png", "occlusion_1_probability_x64.png"]
    probability = result.pictures()["0_probability"]
    assert probability.shape == (4, 4) and probability.min() == 0 and probability.max() == 255  # its own range


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 0}, "size must be an integer >= 1 or None, got 0"),
    ({"size": 17}, "occluder size 17 must be at most the image side"),
    ({"stride": 0}, "stride must be an integer >= 1 or None, got 0"),
    ({"fill": "grey"}, "fill must be one of zeros, mean, blur"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"blur_sigma": -1.0}, "blur_sigma must be a number >= 0 or None"),
    ({"incremental": 1}, "incremental must be True or False"),
    ({"target": 9}, "target class 9 is out of range"),
    ({"target": -1}, "target must be a class index >= 0 or a class name"),
])
def test_bad_arguments_are_named(x, kwargs, message):
    with pytest.raises(ValueError, match=message):
        occlusion(tiny_vgg(), x, **kwargs)


def test_bad_images_are_named():
    with pytest.raises(ValueError, match="takes 3-channel images, got 1"):
        occlusion(tiny_vgg(), np.zeros((1, 1, 16, 16), np.float32))
    with pytest.raises(ValueError, match="takes 16x16 images"):
        occlusion(tiny_vgg(), np.zeros((1, 3, 17, 16), np.float32))
