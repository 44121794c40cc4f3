"""Maximally activating patches: exact receptive fields (VGG16's and AlexNet's known sizes, gradient
support on odd geometries), every top patch where it says and re-evaluating to its activation,
clipping at the border, images of any size and mode brought to the model, and clear errors."""

import numpy as np
import pytest

import methods
import minigrad
from methods.lib.datasets import as_dataset, load_dataset
from methods.lib.features import last_convolution, last_pooling
from methods.lib.options import TECHNIQUES
from methods.lib.receptive import receptive_field, receptive_fields
from methods.lib.runner import run_technique
from minigrad import functional as F
from minigrad import nn
from tests.methods.tiny_models import NamedSequential, tiny_vgg


def odd_geometry(seed=0):
    """Linear (no ReLU), positive weights: a unit's gradient is non-zero exactly on its receptive field."""
    layers = [
        ("conv1", nn.Conv2d(1, 2, 3, stride=2, padding=2, dilation=2)),  # 40 -> 20
        ("pool1", nn.AvgPool2d(3, stride=2, padding=1)),  # -> 10
        ("conv2", nn.Conv2d(2, 3, (2, 3), stride=(1, 2), padding=(0, 1))),  # -> 9 x 5
        ("pool2", nn.AdaptiveAvgPool2d((3, 5))),  # exactly a (3, 1) average pool
        ("pool3", nn.MaxPool2d(2)),
    ]
    model = NamedSequential(layers, 1, 40)
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.uniform(0.1, 1.0, p.shape).astype(p.data.dtype)
    return model


def dataset(n=12, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    return images, (images[:, None] / 255.0).astype(np.float32)


def activations(model, x, layer):
    with minigrad.no_grad():
        return model.extract(minigrad.tensor(x), [layer])[layer].numpy()


@pytest.mark.parametrize("layer", ["conv1", "pool1", "conv2", "pool2"])
def test_receptive_field_is_exactly_the_gradient_support(layer):
    model = odd_geometry()
    x = minigrad.tensor(np.random.default_rng(1).uniform(size=(1, 1, 40, 40)).astype(np.float32),
                        requires_grad=True)
    field = receptive_field(model, layer, (40, 40))
    assert not field.whole_image
    out = model.extract(x, [layer])[layer]
    h, w = out.shape[2:]
    for row, col in [(0, 0), (h // 2, w // 2), (h - 1, w - 1)]:
        x.grad = None
        out = model.extract(x, [layer])[layer]
        mask = np.zeros(out.shape, np.float32)
        mask[0, 0, row, col] = 1
        (out * minigrad.tensor(mask)).sum().backward()
        grad = x.grad.numpy() if isinstance(x.grad, minigrad.Tensor) else np.asarray(x.grad)
        support = np.argwhere(grad[0, 0] != 0)
        top, left, bottom, right = field.box(row, col)
        # every pixel the unit depends on lies in its field; the field's first and last rows and
        # columns are taps of the chain, so they are in the support whenever they are in the image
        # (dilation leaves holes inside, which the bounding box covers)
        for axis, (low, high) in enumerate([(top, bottom), (left, right)]):
            assert support[:, axis].min() >= max(low, 0) and support[:, axis].max() <= min(high, 40) - 1
            if low >= 0:
                assert support[:, axis].min() == low
            if high <= 40:
                assert support[:, axis].max() == high - 1


def test_vgg16_and_alexnet_receptive_fields_match_the_known_values():
    convnet = pytest.importorskip("minigrad.models.convnet")
    vgg = convnet.ConvNet("vgg16", init=None)  # weights left zero: only the geometry is read
    fields = receptive_fields(vgg, (224, 224))
    known = {"conv1_1": 3, "conv1_2": 5, "pool1": 6, "conv2_2": 14, "pool2": 16, "conv3_3": 40, "pool3": 44,
             "conv4_3": 92, "pool4": 100, "conv5_3": 196, "pool5": 212}
    assert {name: fields[name].size[0] for name in known} == known
    assert fields["pool5"].jump == (32, 32) and fields["fc7"].whole_image
    # the default size is the model's input size
    assert {k: f.as_dict() for k, f in receptive_fields(vgg).items()} == {k: f.as_dict() for k, f in fields.items()}
    alexnet = convnet.ConvNet("alexnet", init=None)
    fields = receptive_fields(alexnet, (224, 224))
    assert fields["conv1"].size == (11, 11) and fields["conv5"].size == (163, 163)
    assert fields["pool5"].size == (195, 195) and fields["pool5"].jump == (32, 32) and fields["fc7"].whole_image
    assert last_pooling(vgg) == "pool5" and last_convolution(vgg) == "relu5_3"
    assert last_pooling(alexnet) == "pool5" and last_convolution(alexnet) == "relu5"


@pytest.mark.parametrize("layer,per_image", [("conv1_2", 1), ("pool1", 0), ("conv2_1", 2)])
def test_top_patches_lie_at_their_coordinates_and_reevaluate(layer, per_image):
    model = tiny_vgg(channels=1, size=16)
    images, x = dataset()
    result = methods.maximally_activating_patches(model, images, layer=layer, channel=1, k=6, per_image=per_image,
                                                  batch_size=5)
    assert len(result.patches) == 6
    values = [p["activation"] for p in result.patches]
    assert values == sorted(values, reverse=True)
    for record, crop in zip(result.patches, result.crops):
        top, left, bottom, right = record["clipped_box"]
        np.testing.assert_array_equal(crop[..., 0], images[record["image"], top:bottom, left:right])
        full = record["box"]
        assert record["clipped"] == (full != record["clipped_box"])
        assert full[2] - full[0] == result.field.size[0] and full == result.field.box(*record["unit"])
        act = activations(model, x[record["image"]: record["image"] + 1], layer)
        row, col = record["unit"]
        assert act[0, 1, row, col] == pytest.approx(record["activation"], rel=1e-5, abs=1e-6)
        assert record["source"] == f"image {record['image']}" and record["label"] is None
    per = [p["image"] for p in result.patches]
    if per_image:
        assert max(per.count(i) for i in set(per)) <= per_image
    if per_image == 1:
        assert len(set(per)) == 6
    # brute force: the top six units over the whole dataset under the same per-image limit
    every = activations(model, x, layer)[:, 1].reshape(len(x), -1)
    if per_image:
        every = -np.sort(-every, axis=1)[:, :per_image]
    np.testing.assert_allclose(values, -np.sort(-every.ravel())[:6], rtol=1e-5)
    assert result.summary["dataset_size"] == 12 and len(result.summary["patches"]) == 6


def test_clipped_patches_are_recorded_and_padded():
    model = tiny_vgg(channels=1, size=16)
    images, _ = dataset()
    result = methods.maximally_activating_patches(model, images, layer="conv2_1", channel=0, k=12, per_image=0)
    field = result.field
    assert field.size == (10, 10) and field.start == (-4, -4) and field.jump == (2, 2)
    result = methods.maximally_activating_patches(model, images, layer="conv2_1", channel=0, k=10_000, per_image=0)
    assert len(result.patches) == 12 * 8 * 8  # every unit of the dataset
    clipped = [p for p in result.patches if p["clipped"]]
    assert clipped and len(clipped) < len(result.patches)
    for record in clipped:
        t, l, b, r = record["clipped_box"]
        assert 0 <= t < b <= 16 and 0 <= l < r <= 16
    tiles = result.padded(fill=7)
    assert {t.shape for t in tiles} == {(10, 10, 3)}
    corner = next(i for i, p in enumerate(result.patches) if p["unit"] == (0, 0))
    assert (tiles[corner][:4, :, 0] == 7).all() and (tiles[corner][:, :4, 0] == 7).all()  # outside the image
    np.testing.assert_array_equal(tiles[corner][4:, 4:, 0], result.crops[corner][..., 0])
    pictures = result.pictures()
    assert set(pictures) == {"conv2_1_0_grid"} and pictures["conv2_1_0_grid"].dtype == np.uint8


def test_fully_connected_layer_patch_is_the_whole_image():
    model = tiny_vgg(channels=1, size=16)
    images, x = dataset()
    result = methods.maximally_activating_patches(model, images, layer="fc3", channel=3, k=3)
    assert result.field.whole_image
    assert all(p["box"] == (0, 0, 16, 16) and not p["clipped"] for p in result.patches)
    expected = np.argsort(-activations(model, x, "fc3")[:, 3], kind="stable")[:3]
    assert [p["image"] for p in result.patches] == list(expected)


def test_images_of_any_size_and_mode_are_brought_to_the_model():
    """Colour images for a grey model are converted to grey, smaller ones resized: the patches are
    those of the converted dataset."""
    model = tiny_vgg(channels=1, size=16)
    rng = np.random.default_rng(3)
    colour = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    converted = as_dataset(model, colour)
    assert converted.images.shape == (6, 16, 16, 1)
    a = methods.maximally_activating_patches(model, colour, layer="conv1_2", channel=0, k=4)
    b = methods.maximally_activating_patches(model, converted, layer="conv1_2", channel=0, k=4)
    assert a.patches == b.patches
    small = rng.integers(0, 256, (5, 8, 8), dtype=np.uint8)
    resized = as_dataset(model, small)
    assert resized.images.shape == (5, 16, 16, 1)
    a = methods.maximally_activating_patches(model, small, layer="conv1_1", channel=0, k=3)
    b = methods.maximally_activating_patches(model, resized, layer="conv1_1", channel=0, k=3)
    assert a.patches == b.patches and a.summary["dataset_size"] == 5


@pytest.mark.parametrize("options, message", [
    ({"layer": "conv9", "channel": 0}, "unknown layer 'conv9'"),
    ({"layer": "conv1_1", "channel": 4}, r"channel 4 out of range: layer 'conv1_1' has 4 channels \(0..3\)"),
    ({"layer": "conv1_1", "channel": -1}, "channel must be an integer >= 0, got -1"),
    ({"layer": "conv1_1", "k": 0}, "k must be an integer from 1 to 10000, got 0"),
    ({"layer": "conv1_1", "per_image": -1}, "per_image must be an integer >= 0, got -1"),
])
def test_bad_input(options, message):
    model = tiny_vgg(channels=1, size=16)
    images, _ = dataset()
    with pytest.raises(ValueError, match=message):
        methods.maximally_activating_patches(model, images, **options)


def test_receptive_fields_of_a_model_without_layer_geometry_are_refused_clearly():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return F.relu(self.conv(x)).reshape(x.shape[0], -1)

    model = minigrad.models.as_model(Functional(), input_shape=(1, 16, 16))
    with pytest.raises(ValueError, match="does not run its layers in sequence"):
        receptive_field(model, "conv")
    with pytest.raises(TypeError, match="takes the model and a dataset"):
        methods.maximally_activating_patches(tiny_vgg(channels=1))


def small_fashion_vgg():
    fashion = pytest.importorskip("minigrad.models.fashion_vgg")
    minigrad.manual_seed(0)
    return fashion.FashionVGG(blocks=((4,), (4,), (6,)), hidden=8).eval()


def test_on_fashion_vgg_through_the_runner():
    model = small_fashion_vgg()
    assert receptive_field(model, "pool3", (28, 28)).size == (22, 22)
    assert last_pooling(model) == "pool3" and last_convolution(model) == "relu3_1"
    spec = TECHNIQUES["patches"]
    result, _ = run_technique(spec, model, {"layer": "conv3_1", "channel": 5, "k": 4}, limit=40)
    assert result.inputs == {"dataset": "sample", "limit": 40, "images": 40, "queries": None}
    data = load_dataset(model, "sample", limit=40)
    x = model.preprocessing.normalize(data.images)
    assert len(result.patches) == 4
    for record, crop in zip(result.patches, result.crops):
        t, l, b, r = record["clipped_box"]
        np.testing.assert_array_equal(crop, data.images[record["image"], t:b, l:r])
        act = activations(model, x[record["image"]:record["image"] + 1], "conv3_1")
        assert act[0, 5][record["unit"]] == pytest.approx(record["activation"], rel=1e-5, abs=1e-6)
        assert record["label"] == data.names[data.labels[record["image"]]]
    assert methods.maximally_activating_patches(model, data, k=2).params["layer"] == "pool3"
    with pytest.raises(ValueError, match="out of range"):
        methods.maximally_activating_patches(model, data, layer="conv3_1", channel=6)
    with pytest.raises(ValueError, match="unknown layer"):
        methods.maximally_activating_patches(model, data, layer="conv4_1", channel=0)
