"""Bag of visual words: dense patches and word histograms are what they say, and on the shipped
Fashion-MNIST sample the bag of raw 7 x 7 patches classifies far above chance, below the CNN it is
compared with (whose accuracy is measured on the same test images)."""

import numpy as np
import pytest

import methods
import minigrad
from methods.bag_of_words import dense_patches, histograms
from methods.kmeans import kmeans
from methods.lib.datasets import Dataset, load_dataset
from methods.lib.training import split_by_class
from minigrad import models
from tests.methods.test_every_model import check_outputs


@pytest.fixture(scope="module")
def fashion():
    return models.load("fashion-vgg")


def test_dense_patches_are_the_image_windows():
    images = np.random.default_rng(0).random((2, 9, 8, 3)).astype(np.float32)
    patches, (rows, cols) = dense_patches(images, 4, 2)
    assert (rows, cols) == (3, 3) and patches.shape == (2, 9, 48)
    for n in range(2):
        for i in range(rows):
            for j in range(cols):
                np.testing.assert_array_equal(patches[n, i * cols + j], images[n, 2 * i:2 * i + 4, 2 * j:2 * j + 4].ravel())


def test_histograms_count_the_nearest_words():
    images = np.random.default_rng(1).random((5, 6, 6, 1)).astype(np.float32)
    patches, _ = dense_patches(images, 3, 1)
    codebook = kmeans(patches.reshape(-1, 9), 4, seed=0)
    hist, words = histograms(codebook, images, 3, 1, numbers=100)  # several batches
    assert hist.shape == (5, 4) and words.shape == (5, 16)
    np.testing.assert_allclose(hist.sum(1), 1.0, rtol=1e-6)
    nearest = ((patches[..., None, :] - codebook.centers) ** 2).sum(-1).argmin(-1)
    np.testing.assert_array_equal(words, nearest)
    np.testing.assert_allclose(hist[2], np.bincount(nearest[2], minlength=4) / 16)


def test_on_the_sample_it_beats_chance_and_reports_the_cnn_on_the_same_images(fashion, tmp_path):
    data = load_dataset(fashion, "sample")
    result = methods.bag_of_words(fashion, data, words=32, samples=4000, steps=300)
    train, test = split_by_class(data.labels, 0.8)
    assert result.summary["train_images"] == len(train) and len(result.predictions) == len(test) == 400
    np.testing.assert_array_equal(result.labels, data.labels[test])
    assert result.accuracy > 0.6, result.accuracy  # chance: 0.1
    with minigrad.no_grad():
        logits = fashion(minigrad.tensor(fashion.preprocessing.normalize(data.images[test]))).numpy()
    assert result.model_accuracy == pytest.approx((logits.argmax(1) == data.labels[test]).mean())
    assert result.model_accuracy > result.accuracy
    assert result.centers.shape == (32, 7, 7, 1) and result.params["patch"] == 7 and result.params["stride"] == 2
    assert result.frequency.sum() == pytest.approx(1.0)
    check_outputs(result, tmp_path / "bow")


def test_other_labels_have_no_model_accuracy_and_unlabelled_data_is_refused(fashion):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 28, 28, 1), dtype=np.uint8)
    result = methods.bag_of_words(fashion, Dataset(images, np.arange(40) % 2, ("odd", "even"), ["x"] * 40), words=4,
                                  samples=200, steps=5)
    assert result.model_accuracy is None and result.summary["model_accuracy"] is None
    with pytest.raises(ValueError, match="needs a labelled dataset"):
        methods.bag_of_words(fashion, Dataset(images, None, (), ["x"] * 40), steps=1)
    with pytest.raises(ValueError, match="patch must be at most the image side \\(28\\)"):
        methods.bag_of_words(fashion, Dataset(images, np.arange(40) % 2, ("a", "b"), ["x"] * 40), patch=30)
