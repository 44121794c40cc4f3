"""The shipped data: sample images by name (without scikit-image), the Fashion-MNIST sample, licences;
the datasets built from them (photo crops without duplicates, labelled by photo), image folders,
and images brought to a model's input."""

import os
import sys

import numpy as np
import pytest

from methods import data

SHAPES = {
    "astronaut": (512, 512, 3), "chelsea": (300, 451, 3), "coffee": (400, 600, 3), "rocket": (427, 640, 3),
    "brick": (512, 512), "grass": (512, 512), "gravel": (512, 512),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_sample_image_by_name(name):
    image = data.sample_image(name)
    assert image.dtype == np.uint8 and image.shape == SHAPES[name]
    assert image.std() > 10  # a real picture, not a blank
    image[0, 0] = 0  # a private, writable copy
    assert data.sample_image(name).flags.writeable


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(KeyError) as error:
        data.sample_image("lena")
    message = str(error.value)
    assert "lena" in message
    assert all(name in message for name in SHAPES)


def test_sample_images_need_no_scikit_image(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # any "import skimage" now fails
    assert data.sample_image("coffee").shape == SHAPES["coffee"]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_identical_to_scikit_image(name):
    skdata = pytest.importorskip("skimage.data")
    np.testing.assert_array_equal(data.sample_image(name), getattr(skdata, name)())


def test_fashion_sample_is_balanced_and_from_the_test_split():
    images, labels = data.fashion_sample()
    assert images.shape == (2000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (2000,) and labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 200))
    assert len(data.FASHION_CLASSES) == 10
    with np.load(os.path.join(data.DATA_DIR, "fashion_mnist_sample.npz")) as archive:
        index = archive["test_indices"]
    assert np.all(np.diff(index) > 0) and index.min() >= 0 and index.max() < 10000
    assert len({images[i].tobytes() for i in range(len(images))}) > 1990  # distinct images


def test_every_shipped_file_has_its_licence_recorded():
    with open(os.path.join(data.DATA_DIR, "LICENSES.md"), encoding="utf-8") as f:
        licences = f.read()
    shipped = [n for n in os.listdir(data.DATA_DIR) if n.endswith((".png", ".jpg", ".npz"))]
    assert len(shipped) == len(SHAPES) + 1
    for name in shipped:
        assert f"`{name}`" in licences, name
    assert "MIT" in licences and "CC0" in licences and "public domain" in licences


# ----------------------------------------------------------------------------- datasets


def grey_model(size=28):
    from minigrad import models, nn

    return models.as_model(nn.Sequential(nn.Conv2d(1, 2, 3)), input_shape=(1, size, size))


def colour_model(size=224):
    from minigrad import models, nn

    return models.as_model(nn.Sequential(nn.Conv2d(3, 2, 3)), input_shape=(3, size, size))


@pytest.mark.parametrize("size", [224, 64])
def test_photo_dataset_has_no_duplicates_and_labels_by_photo(size):
    """The sample dataset of a colour model (VGG, AlexNet): distinct crops of the shipped photos
    and textures, each labelled by its photo, at the model's size (issue 11: once 35 images of
    which 13 distinct)."""
    import re
    import warnings

    from methods.lib.datasets import load_dataset

    model = colour_model(size)
    dataset = load_dataset(model, "sample")
    images = dataset.images
    assert images.dtype == np.uint8 and images.shape[1:] == (size, size, 3) and len(images) >= 60
    assert len({image.tobytes() for image in images}) == len(images)
    flat = images.reshape(len(images), -1).astype(np.float32)
    closest = min(np.abs(flat[i + 1:] - flat[i]).mean(axis=1).min() for i in range(len(flat) - 1))
    assert closest > 5, closest  # not even near-duplicates (mean difference in 0..255 levels)
    assert dataset.names == tuple(sorted(data.SAMPLE_IMAGES))
    assert dataset.labels.dtype == np.int64 and set(dataset.labels) == set(range(len(dataset.names)))
    assert len(dataset.sources) == len(images)
    for i in range(0, len(images), 7):
        name, top, bottom, left, right = re.fullmatch(r"sample:(\w+)\[(\d+):(\d+), (\d+):(\d+)\]",
                                                      dataset.sources[i]).groups()
        assert name == dataset.names[dataset.labels[i]]
        crop = data.sample_image(name)[int(top):int(bottom), int(left):int(right)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.testing.assert_array_equal(images[i], model.prepare_images(crop)[0])
    limited = load_dataset(model, "sample", limit=12)
    np.testing.assert_array_equal(limited.images, images[:12])


def test_fashion_dataset_for_a_grey_28x28_model():
    from methods.lib.datasets import default_image, load_dataset

    model = grey_model()
    dataset = load_dataset(model, "sample", limit=50)
    images, labels = data.fashion_sample()
    assert dataset.images.shape == (50, 28, 28, 1)
    np.testing.assert_array_equal(dataset.images[..., 0], images[:50])
    np.testing.assert_array_equal(dataset.labels, labels[:50])
    assert dataset.names == data.FASHION_CLASSES
    assert default_image(model) == "sample:0" and default_image(colour_model()) == "sample:chelsea"


def test_folder_dataset(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    from methods.lib.datasets import load_dataset

    model = grey_model(16)
    for i, name in enumerate(["a", "b"]):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((20, 30, 3), 40 * (i + 1), np.uint8)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    dataset = load_dataset(model, str(tmp_path))
    assert dataset.images.shape == (2, 16, 16, 1) and list(dataset.labels) == [0, 1] and dataset.names == ("a", "b")
    assert dataset.images[0].min() == dataset.images[0].max() == 40  # grey stays grey, resized
    assert dataset.sources == [str(tmp_path / "a" / "0.png"), str(tmp_path / "b" / "1.png")]
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(flat / "x.png")
    dataset = load_dataset(model, str(flat))
    assert dataset.labels is None and dataset.names == () and dataset.images.shape == (1, 16, 16, 1)


def test_dataset_errors_are_named(tmp_path):
    from methods.lib.datasets import as_dataset, load_dataset, load_images
    from minigrad import models, nn

    model = grey_model()
    with pytest.raises(FileNotFoundError, match="neither 'sample' nor a folder"):
        load_dataset(model, str(tmp_path / "nonexistent"))
    with pytest.raises(ValueError, match="no image files"):
        load_dataset(model, str(tmp_path))
    for limit in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="limit must be a positive integer"):
            load_dataset(model, "sample", limit=limit)
    sizeless = models.as_model(nn.Sequential(nn.Conv2d(1, 2, 3)))
    with pytest.raises(ValueError, match="does not declare an input size"):
        load_dataset(sizeless, "sample")
    with pytest.raises(ValueError, match="3 labels for 2 images"):
        as_dataset(model, np.zeros((2, 28, 28), np.uint8), labels=[0, 1, 2])
    with pytest.raises(ValueError, match="no such sample"):
        load_images(model, ["sample:lena"])


def test_as_dataset_and_load_images_bring_images_to_the_model():
    from methods.lib.datasets import Dataset, as_dataset, load_images

    model = grey_model()
    colour = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 3), dtype=np.uint8)
    dataset = as_dataset(model, colour, labels=[0, 2, 2])
    assert dataset.images.shape == (3, 28, 28, 1) and list(dataset.labels) == [0, 2, 2]
    luma = np.rint(colour.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    np.testing.assert_array_equal(dataset.images[..., 0], luma.astype(np.uint8))
    assert as_dataset(model, dataset) is dataset and isinstance(dataset, Dataset)
    x, notes = load_images(model, ["sample:3", "sample:chelsea"])
    assert x.shape == (2, 1, 28, 28) and x.dtype == np.float32
    assert notes == ["sample:chelsea: 451x300 resized to 42x28 and centre-cropped to 28x28, the model's input size"]
    np.testing.assert_array_equal(x[0], model.preprocess(data.fashion_sample()[0][3])[0])


def test_resize_brings_the_longer_side_to_the_size_asked_in_its_own_range():
    from methods.lib.images import resize

    pixels = data.sample_image("chelsea")
    values = pixels.astype(np.float32) / 255
    small_pixels, small_values = resize(pixels, 45), resize(values, 45)
    assert small_pixels.shape == small_values.shape == (30, 45, 3)
    assert small_pixels.dtype == np.uint8 and small_values.dtype == np.float32
    assert 0 <= small_values.min() and small_values.max() <= 1
    assert np.abs(small_pixels / 255 - small_values).max() < 0.01  # the same filter on bytes and on floats
    assert resize(pixels[..., 0], 45).shape == (30, 45) and resize(pixels, 451) is pixels
