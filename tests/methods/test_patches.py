"""Maximally activating patches: exact receptive fields (VGG16's known sizes, gradient support on
odd geometries), every top patch where it says and re-evaluating to its activation, clipping at
the border, and clear errors."""

import numpy as np
import pytest

import minigrad
from minigrad import nn
from methods import patches as P
from tests.methods.tiny_models import NamedSequential, tiny_vgg


def odd_geometry(seed=0):
    """Linear (no ReLU), positive weights: a unit's gradient is non-zero exactly on its receptive field."""
    layers = [
        ("conv1", nn.Conv2d(1, 2, 3, stride=2, padding=2, dilation=2)),
        ("pool1", nn.AvgPool2d(3, stride=2, padding=1)),
        ("conv2", nn.Conv2d(2, 3, (2, 3), stride=(1, 2), padding=(0, 1))),
        ("pool2", nn.MaxPool2d(2)),
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


@pytest.mark.parametrize("layer", ["conv1", "pool1", "conv2"])
def test_receptive_field_is_exactly_the_gradient_support(layer):
    model = odd_geometry()
    x = minigrad.tensor(np.random.default_rng(1).uniform(size=(1, 1, 40, 40)).astype(np.float32),
                        requires_grad=True)
    out = model.extract(x, [layer])[layer]
    field = P.receptive_field(model, layer, x.shape)
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
    fields = P.receptive_fields(vgg, (1, 3, 224, 224))
    known = {"conv1_1": 3, "conv1_2": 5, "pool1": 6, "conv2_2": 14, "pool2": 16, "conv3_3": 40, "pool3": 44,
             "conv4_3": 92, "pool4": 100, "conv5_3": 196, "pool5": 212}
    assert {name: fields[name].size[0] for name in known} == known
    assert fields["pool5"].jump == (32, 32) and fields["fc7"].whole_image
    alexnet = convnet.ConvNet("alexnet", init=None)
    fields = P.receptive_fields(alexnet, (1, 3, 224, 224))
    assert fields["conv1"].size == (11, 11) and fields["conv5"].size == (163, 163) and fields["pool5"].size == (195, 195)


@pytest.mark.parametrize("layer,per_image", [("conv1_2", 1), ("pool1", None), ("conv2_1", 2)])
def test_top_patches_lie_at_their_coordinates_and_reevaluate(layer, per_image):
    model = tiny_vgg(channels=1, size=16)
    images, x = dataset()
    result = P.maximally_activating_patches(model, images, layer, channel=1, k=6, per_image=per_image, x=x,
                                            batch_size=5)
    assert len(result.patches) == 6
    values = [p["activation"] for p in result.patches]
    assert values == sorted(values, reverse=True)
    for record, crop in zip(result.patches, result.crops):
        top, left, bottom, right = record["clipped_box"]
        np.testing.assert_array_equal(crop, images[record["image"], top:bottom, left:right])
        full = record["box"]
        assert record["clipped"] == (full != record["clipped_box"])
        assert full[2] - full[0] == result.field.size[0]
        with minigrad.no_grad():
            act = model.extract(minigrad.tensor(x[record["image"]: record["image"] + 1]), [layer])[layer]
        row, col = record["unit"]
        assert act.numpy()[0, 1, row, col] == pytest.approx(record["activation"], rel=1e-5, abs=1e-6)
    if per_image == 1:
        assert len({p["image"] for p in result.patches}) == 6
    # brute force: the best unit over the whole dataset
    with minigrad.no_grad():
        every = model.extract(minigrad.tensor(x), [layer])[layer].numpy()[:, 1]
    assert values[0] == pytest.approx(float(every.max()), rel=1e-5)


def test_clipped_patches_are_recorded_and_padded():
    model = tiny_vgg(channels=1, size=16)
    images, x = dataset()
    result = P.maximally_activating_patches(model, images, "conv2_1", channel=0, k=12, per_image=None, x=x)
    field = result.field
    assert field.size == (10, 10) and field.start == (-4, -4)
    result = P.maximally_activating_patches(model, images, "conv2_1", channel=0, k=10_000, per_image=None, x=x)
    clipped = [p for p in result.patches if p["clipped"]]
    assert clipped and len(clipped) < len(result.patches)
    for record in clipped:
        t, l, b, r = record["clipped_box"]
        assert 0 <= t < b <= 16 and 0 <= l < r <= 16
    tiles = result.padded(fill=7)
    assert {t.shape for t in tiles} == {(10, 10)}
    pictures = result.pictures()
    assert len(pictures) == 1 and next(iter(pictures.values())).dtype == np.uint8


def test_fully_connected_layer_patch_is_the_whole_image():
    model = tiny_vgg(channels=1, size=16)
    images, x = dataset()
    result = P.maximally_activating_patches(model, images, "fc3", channel=3, k=3, x=x)
    assert all(p["box"] == (0, 0, 16, 16) and not p["clipped"] for p in result.patches)


def test_bad_input():
    model = tiny_vgg(channels=1, size=16)
    images, x = dataset()
    with pytest.raises(ValueError, match="unknown layer"):
        P.maximally_activating_patches(model, images, "conv9", channel=0, x=x)
    with pytest.raises(ValueError, match="out of range"):
        P.maximally_activating_patches(model, images, "conv1_1", channel=4, x=x)
    with pytest.raises(ValueError, match="channels"):
        P.maximally_activating_patches(model, np.zeros((2, 16, 16, 3), np.uint8), "conv1_1", channel=0,
                                       x=np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(ValueError, match="16x16"):
        P.maximally_activating_patches(model, images[:, :8, :8], "conv1_1", channel=0, x=x[:, :, :8, :8])
    with pytest.raises(ValueError, match="k must"):
        P.maximally_activating_patches(model, images, "conv1_1", channel=0, k=0, x=x)
    with pytest.raises(FileNotFoundError):
        P.load_dataset(model, "/nonexistent/folder")


def test_folder_dataset(tmp_path):
    from methods import imaging

    model = tiny_vgg(channels=1, size=16)
    for i, name in enumerate(["a", "b"]):
        (tmp_path / name).mkdir()
        imaging.save_png(str(tmp_path / name / f"{i}.png"), np.full((20, 30, 3), 40 * i, np.uint8))
    images, labels = P.load_dataset(model, str(tmp_path))
    assert images.shape == (2, 16, 16) and list(labels) == [0, 1]


def small_fashion_vgg():
    fashion = pytest.importorskip("minigrad.models.fashion_vgg")
    minigrad.manual_seed(0)
    return fashion.FashionVGG(blocks=((4,), (4,), (6,)), hidden=8).eval()


def test_on_fashion_vgg_through_the_cli_entry_point():
    import argparse

    model = small_fashion_vgg()
    assert P.receptive_field(model, "pool3", (1, 1, 28, 28)).size == (22, 22)
    parser = argparse.ArgumentParser()
    P.add_cli_arguments(parser)
    args = parser.parse_args(["--layer", "conv3_1", "--channel", "5", "-k", "4", "--limit", "40"])
    result = P.run_cli(args, model, None)
    images, _ = P.load_dataset(model, "sample", limit=40)
    x = model.preprocess(images)
    for record, crop in zip(result.patches, result.crops):
        t, l, b, r = record["clipped_box"]
        np.testing.assert_array_equal(crop, images[record["image"], t:b, l:r])
        with minigrad.no_grad():
            act = model.extract(minigrad.tensor(x[record["image"]:record["image"] + 1]), ["conv3_1"])["conv3_1"]
        assert act.numpy()[0, 5][record["unit"]] == pytest.approx(record["activation"], rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        P.maximally_activating_patches(model, images, "conv3_1", channel=6)
    with pytest.raises(ValueError, match="unknown layer"):
        P.maximally_activating_patches(model, images, "conv4_1", channel=0)


def test_sample_dataset_fits_the_model():
    fashion = small_fashion_vgg()
    images, labels = P.load_dataset(fashion, "sample", limit=10)
    assert images.shape == (10, 28, 28) and labels.shape == (10,)
    assert P.default_layer(fashion) == "pool3"
    convnet = pytest.importorskip("minigrad.models.convnet")
    vgg = convnet.ConvNet("vgg16", init=None)
    images, labels = P.load_dataset(vgg, "sample")
    assert images.shape[1:] == (224, 224, 3) and images.dtype == np.uint8 and len(images) == len(labels) >= 30
    assert P.default_layer(vgg) == "pool5"
