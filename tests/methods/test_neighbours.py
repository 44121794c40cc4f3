"""Nearest neighbours: the lists are the true nearest (brute force) in feature and pixel space,
under L2 and cosine; a query is never its own neighbour (by index, or an outside image identical
to a dataset image); label agreement; runs through the runner on a small fashion-vgg; clear errors."""

import numpy as np
import pytest

import methods
import minigrad
from methods.lib.datasets import as_dataset
from methods.lib.options import TECHNIQUES
from methods.lib.runner import run_technique
from tests.methods.tiny_models import tiny_vgg


def data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 16, 16), dtype=np.uint8)
    return images, (images[:, None] / 255.0).astype(np.float32)


def brute_force(feats, q, metric, exclude):
    if metric == "l2":
        d = np.sqrt(((feats - feats[q]) ** 2).sum(1))
    else:
        d = 1 - feats @ feats[q] / (np.linalg.norm(feats, axis=1) * np.linalg.norm(feats[q]))
    d[exclude] = np.inf
    return d


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_neighbours_are_the_brute_force_nearest(metric):
    model = tiny_vgg(channels=1)
    images, x = data()
    result = methods.neighbours(model, images, queries=[0, 7], layer="fc3", metric=metric, k=5, batch_size=8)
    with minigrad.no_grad():
        f = model.extract(minigrad.tensor(x), ["fc3"])["fc3"].numpy().astype(np.float64)
    for row, q in enumerate([0, 7]):
        for space, feats, index, dist in (("feature", f, result.feature_index, result.feature_distance),
                                          ("pixel", images.reshape(30, -1).astype(np.float64), result.pixel_index,
                                           result.pixel_distance)):
            d = brute_force(feats, q, metric, q)
            expected = np.argsort(d, kind="stable")[:5]
            np.testing.assert_array_equal(index[row], expected, err_msg=space)
            np.testing.assert_allclose(dist[row], d[expected], rtol=1e-4, atol=1e-6)
            assert q not in index[row]
    pictures = result.pictures()
    assert set(pictures) == {f"fc3_{metric}_grid", f"pixels_{metric}_grid"}
    panel = pictures[f"fc3_{metric}_grid"]
    assert panel.dtype == np.uint8 and panel.shape[0] > 2 * 112  # two query rows of 112 px tiles
    assert set(result.figures()) == {f"fc3_{metric}"}
    assert result.params["queries"] == [0, 7] and result.params["layer"] == "fc3"


def test_default_queries_and_layer():
    model = tiny_vgg(channels=1)
    images, _ = data()
    result = methods.neighbours(model, images, k=2)
    assert result.params["layer"] == "relu3"  # the layer before the output
    assert result.params["queries"] == [0, 1, 2, 3, 4] and result.feature_index.shape == (5, 2)
    for q, row in enumerate(result.feature_index):
        assert q not in row


def test_outside_queries_leave_out_identical_images():
    model = tiny_vgg(channels=1)
    images, x = data()
    result = methods.neighbours(model, images, x[:2], layer="fc3", k=3)
    # the dataset images identical to the queries are the queries themselves: left out
    assert 0 not in result.feature_index[0] and 1 not in result.feature_index[1]
    assert 0 not in result.pixel_index[0] and 1 not in result.pixel_index[1]
    with minigrad.no_grad():
        f = model.extract(minigrad.tensor(x), ["fc3"])["fc3"].numpy().astype(np.float64)
    for q in range(2):
        np.testing.assert_array_equal(result.feature_index[q],
                                      np.argsort(brute_force(f, q, "l2", q), kind="stable")[:3])
    # an outside image not in the dataset: its neighbours are the brute-force nearest, none left out
    other = np.random.default_rng(9).uniform(size=(1, 1, 16, 16)).astype(np.float32)
    result = methods.neighbours(model, images, other, layer="fc3", k=5)
    with minigrad.no_grad():
        g = model.extract(minigrad.tensor(other), ["fc3"])["fc3"].numpy().astype(np.float64)
    d = np.sqrt(((f - g) ** 2).sum(1))
    np.testing.assert_array_equal(result.feature_index[0], np.argsort(d, kind="stable")[:5])
    np.testing.assert_allclose(result.feature_distance[0], np.sort(d)[:5], rtol=1e-4)


def test_label_agreement_is_the_share_of_neighbours_of_the_query_class():
    model = tiny_vgg(channels=1)
    images, _ = data()
    labels = np.arange(30) % 3
    dataset = as_dataset(model, images, labels=labels)
    result = methods.neighbours(model, dataset, queries=[0, 4, 8], layer="fc3", k=4)
    expected = np.mean([labels[result.feature_index[r]] == labels[q] for r, q in enumerate([0, 4, 8])])
    assert result.summary["feature_label_agreement"] == pytest.approx(expected)
    expected = np.mean([labels[result.pixel_index[r]] == labels[q] for r, q in enumerate([0, 4, 8])])
    assert result.summary["pixel_label_agreement"] == pytest.approx(expected)


@pytest.mark.parametrize("query_x, options, message", [
    (None, {"metric": "manhattan"}, "metric must be one of l2, cosine"),
    (None, {"layer": "fc9"}, "unknown layer 'fc9'"),
    (None, {"queries": [30], "layer": "fc3"}, r"query index\(es\) \[30\] out of range for a dataset of 30 images"),
    (None, {"queries": [-1]}, "queries must be an integer >= 0"),
    (None, {"layer": "fc3", "k": 30}, "k must be below the dataset size"),
    (None, {"k": 0}, "k must be an integer >= 1"),
    (np.zeros((1, 3, 16, 16), np.float32), {"layer": "fc3"}, "takes 1-channel images, got 3"),
    (np.zeros((1, 16, 16), np.float32), {"layer": "fc3"}, r"takes a batch \(N, C, H, W\)"),
])
def test_bad_input(query_x, options, message):
    model = tiny_vgg(channels=1)
    images, _ = data()
    with pytest.raises(ValueError, match=message):
        methods.neighbours(model, images, query_x, **options)


def test_a_dataset_of_one_image_is_refused():
    with pytest.raises(ValueError, match="at least 2 images"):
        methods.neighbours(tiny_vgg(channels=1), data(1)[0], k=1)


def test_runner_on_a_small_fashion_vgg_and_its_sample():
    """filters, activations, neighbours and t-SNE as the command line runs them."""
    fashion = pytest.importorskip("minigrad.models.fashion_vgg")
    minigrad.manual_seed(0)
    model = fashion.FashionVGG(blocks=((4,), (4,), (6,)), hidden=8).eval()

    def run(name, values, **where):
        result, notes = run_technique(TECHNIQUES[name], model, values, **where)
        assert notes == [] and result.technique == name
        assert all(f.dtype == np.uint8 for f in result.figures().values())
        return result

    assert run("filters", {}).weights.shape == (4, 1, 3, 3)
    assert run("activations", {"layer": "relu2_1"}).maps.shape == (1, 4, 14, 14)
    result = run("neighbours", {"layer": "fc7", "k": 3, "queries": [0, 1]}, limit=50)
    assert result.feature_index.shape == (2, 3) and result.inputs["images"] == 50
    assert 0 < result.summary["feature_label_agreement"] <= 1
    result = run("neighbours", {"layer": "fc7", "k": 3}, images=["sample:7"], limit=50)
    assert result.feature_index.shape == (1, 3) and 7 not in result.feature_index[0]  # the query is image 7
    assert result.inputs["queries"] == ["sample:7"]
    result = run("tsne", {"layer": "fc7", "iterations": 300, "perplexity": 10.0}, limit=60)
    assert result.coordinates.shape == (60, 2) and "embedding" in result.pictures()
