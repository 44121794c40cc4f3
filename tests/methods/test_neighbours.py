"""Nearest neighbours: the lists are the true nearest (brute force) in feature and pixel space,
under L2 and cosine; a query is not its own neighbour; outside queries; clear errors."""

import numpy as np
import pytest

import minigrad
from methods import neighbours as Nb
from tests.methods.tiny_models import tiny_vgg


def data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 16, 16), dtype=np.uint8)
    return images, (images[:, None] / 255.0).astype(np.float32)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_neighbours_are_the_brute_force_nearest(metric):
    model = tiny_vgg(channels=1)
    images, x = data()
    result = Nb.neighbours(model, images, queries=[0, 7], layer="fc3", metric=metric, k=5, x=x)
    with minigrad.no_grad():
        f = model.extract(minigrad.tensor(x), ["fc3"])["fc3"].numpy().astype(np.float64)
    for row, q in enumerate([0, 7]):
        for space, feats, index, dist in (("feature", f, result.feature_index, result.feature_distance),
                                          ("pixel", images.reshape(30, -1).astype(np.float64), result.pixel_index,
                                           result.pixel_distance)):
            if metric == "l2":
                d = np.sqrt(((feats - feats[q]) ** 2).sum(1))
            else:
                d = 1 - feats @ feats[q] / (np.linalg.norm(feats, axis=1) * np.linalg.norm(feats[q]))
            d[q] = np.inf
            expected = np.argsort(d, kind="stable")[:5]
            np.testing.assert_array_equal(index[row], expected, err_msg=space)
            np.testing.assert_allclose(dist[row], d[expected], rtol=1e-4, atol=1e-6)
            assert q not in index[row]
    pictures = result.pictures()
    assert set(pictures) == {f"fc3_{metric}", f"pixels_{metric}"}
    panel = pictures[f"fc3_{metric}"]
    assert panel.dtype == np.uint8 and panel.shape[0] > 2 * 64


def test_outside_queries_and_label_agreement():
    model = tiny_vgg(channels=1)
    images, x = data()
    labels = np.arange(30) % 3
    result = Nb.neighbours(model, images, query_images=images[:2], query_x=x[:2], layer="fc3", k=3, x=x,
                           labels=labels)
    # the identical dataset images are the queries themselves: left out
    assert 0 not in result.feature_index[0] and 1 not in result.feature_index[1]
    assert 0 not in result.pixel_index[0] and 1 not in result.pixel_index[1]


def test_bad_input():
    model = tiny_vgg(channels=1)
    images, x = data()
    with pytest.raises(ValueError, match="metric"):
        Nb.neighbours(model, images, metric="manhattan", x=x)
    with pytest.raises(ValueError, match="unknown layer"):
        Nb.neighbours(model, images, layer="fc9", x=x)
    with pytest.raises(ValueError, match="out of range"):
        Nb.neighbours(model, images, queries=[30], layer="fc3", x=x)
    with pytest.raises(ValueError, match="k must"):
        Nb.neighbours(model, images, layer="fc3", k=30, x=x)
    with pytest.raises(ValueError, match="channels"):
        Nb.neighbours(model, images, layer="fc3", x=np.repeat(x, 3, 1))


def test_cli_entry_points_on_fashion_vgg(tmp_path):
    """filters, activations, neighbours and t-SNE through run_cli on a small fashion-vgg and the shipped sample."""
    import argparse

    fashion = pytest.importorskip("minigrad.models.fashion_vgg")
    from methods import activations, filters, tsne

    minigrad.manual_seed(0)
    model = fashion.FashionVGG(blocks=((4,), (4,), (6,)), hidden=8).eval()
    from methods import data

    x = model.preprocess(data.fashion_sample()[0][:1])

    def run(module, argv):
        parser = argparse.ArgumentParser()
        parser.add_argument("--image", action="append", default=None)
        parser.add_argument("--seed", type=int, default=0)
        module.add_cli_arguments(parser)
        result = module.run_cli(parser.parse_args(argv), model, x)
        paths = result.save(str(tmp_path / module.__name__), overwrite=True)
        assert any(p.endswith(".png") for p in paths) and any(p.endswith(".json") for p in paths)
        return result

    assert run(filters, []).weights.shape == (4, 1, 3, 3)
    assert run(activations, ["--layer", "relu2_1"]).maps.shape == (1, 4, 14, 14)
    result = run(Nb, ["--layer", "fc7", "--limit", "50", "-k", "3", "--queries", "0", "1"])
    assert result.feature_index.shape == (2, 3)
    result = run(tsne, ["--layer", "fc7", "--limit", "60", "--n-iter", "300", "--perplexity", "10"])
    assert result.coordinates.shape == (60, 2) and "embedding" in result.pictures()
