"""The shipped data: sample images by name (without scikit-image), the Fashion-MNIST sample, licences."""

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
