"""t-SNE: the oracle (scikit-learn's KL), the Barnes-Hut tree against the exact gradient, the
perplexity calibration, blob separation, the picture and bad input."""

import importlib
import math

import numpy as np
import pytest

T = importlib.import_module("methods.tsne")  # the module (methods.tsne is also the function's name)


def blobs(n_per, centres, dim=10, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1, (centres, dim)) * 20
    x = np.concatenate([m + spread * rng.normal(size=(n_per, dim)) for m in means])
    return x, np.repeat(np.arange(centres), n_per)


def knn_accuracy(y, labels, k=5):
    d = T.squared_distances(y)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    votes = labels[nearest]
    predicted = np.array([np.bincount(v).argmax() for v in votes])
    return (predicted == labels).mean()


def test_kl_within_5_percent_of_sklearn():
    manifold = pytest.importorskip("sklearn.manifold")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(40, 8)) + shift for shift in (0, 4, 8)])  # overlapping clusters
    ours = T.tsne(x, method="exact")
    theirs = manifold.TSNE(method="exact", init="pca", perplexity=30, random_state=0).fit(x)
    assert ours.kl_divergence == pytest.approx(theirs.kl_divergence_, rel=0.05)


def test_barnes_hut_forces_match_exact_at_theta_zero():
    pytest.importorskip("numba")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(120, 5)), rng.normal(size=(120, 2))
    y[7] = y[3]  # two points on top of each other share a leaf
    bh = T._BarnesHut(x, 10.0, theta=0.0)
    dense = np.zeros((120, 120))
    dense[np.repeat(np.arange(120), np.diff(bh.indptr)), bh.indices] = bh.p
    exact, _ = T.exact_forces(dense, y, 4.0)
    np.testing.assert_allclose(bh.forces(y, 4.0), exact, rtol=1e-9, atol=1e-15)
    assert bh.kl(y) == pytest.approx(T.exact_kl(dense, y), rel=1e-9)
    bh.theta = 0.5
    approx = bh.forces(y, 4.0)
    assert np.linalg.norm(approx - exact) / np.linalg.norm(exact) < 0.05


def test_sparse_affinities_are_symmetric_and_sum_to_one():
    x, _ = blobs(40, 3)
    indptr, indices, p = T.joint_affinities_sparse(x, 10.0)
    n = len(x)
    dense = np.zeros((n, n))
    dense[np.repeat(np.arange(n), np.diff(indptr)), indices] = p
    np.testing.assert_allclose(dense, dense.T)
    assert dense.sum() == pytest.approx(1.0)
    assert np.all(np.diag(dense) == 0)
    full = T.joint_affinities_dense(x, 10.0)
    assert full.sum() == pytest.approx(1.0) and np.allclose(full, full.T)


@pytest.mark.parametrize("perplexity", [5.0, 30.0])
def test_binary_search_reaches_the_perplexity(perplexity):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 6)) * np.array([1, 10, 100, 0.1, 1, 1])
    d = T.squared_distances(x)
    off = ~np.eye(200, dtype=bool)
    cond, beta = T.conditional_affinities(d[off].reshape(200, 199), perplexity)
    entropy = -(cond * np.log(np.maximum(cond, 1e-300))).sum(1)
    np.testing.assert_allclose(np.exp(entropy), perplexity, rtol=1e-4)
    np.testing.assert_allclose(cond.sum(1), 1.0)
    assert np.all(beta > 0)


def test_pca_initialisation_has_std_1e4():
    x, _ = blobs(30, 4)
    y = T.pca_initialisation(x)
    assert y.shape == (120, 2)
    assert y[:, 0].std() == pytest.approx(1e-4)
    centred = x - x.mean(0)
    top = np.linalg.svd(centred, full_matrices=False)[2][0]
    assert abs(np.corrcoef(centred @ top, y[:, 0])[0, 1]) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["exact", "barnes-hut"])
def test_separates_gaussian_blobs(method):
    if method == "barnes-hut":
        pytest.importorskip("numba")
    x, labels = blobs(60, 5, dim=20)
    result = T.tsne(x, method=method, n_iter=500, perplexity=20)
    assert result.coordinates.shape == (300, 2)
    assert knn_accuracy(result.coordinates, labels) == 1.0
    # clusters far apart relative to their size
    centres = np.stack([result.coordinates[labels == c].mean(0) for c in range(5)])
    spread = max(np.sqrt(((result.coordinates[labels == c] - centres[c]) ** 2).sum(1)).max() for c in range(5))
    gaps = np.sqrt(T.squared_distances(centres))[~np.eye(5, dtype=bool)]
    assert gaps.min() > spread
    assert result.kl_history[-1][0] == 500 and math.isfinite(result.kl_divergence)


def test_deterministic_and_barnes_hut_close_to_exact():
    pytest.importorskip("numba")
    x, _ = blobs(50, 4)
    a, b = T.tsne(x, method="exact", n_iter=400), T.tsne(x, method="exact", n_iter=400)
    np.testing.assert_array_equal(a.coordinates, b.coordinates)
    c = T.tsne(x, method="barnes-hut", n_iter=400)
    assert c.kl_divergence == pytest.approx(a.kl_divergence, rel=0.1)


def test_picture_places_each_image_at_its_coordinate():
    images = np.zeros((3, 8, 8), np.uint8)
    images[1] = 255
    coords = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    result = T.TSNEResult(coords, 0.0, images=images, canvas=100)
    canvas = result.image_map()
    # image 1 (white) at the top-right corner, image 0 (black) at the bottom-left, image 2 top-left
    assert canvas[0:8, 92:100].min() == 255
    assert canvas[92:100, 0:8].max() == 0
    assert canvas[0:8, 0:8].max() == 0
    result = T.TSNEResult(coords, 0.0, images=images, labels=np.array([0, 1, 1]), label_names=("dark", "light"))
    assert set(result.pictures()) == {"embedding"}
    figures = result.figures()
    assert set(figures) == {"scatter", "thumbnails"}
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.std() > 0 for p in figures.values())


def test_bad_input():
    x, _ = blobs(10, 2)
    with pytest.raises(ValueError, match="perplexity"):
        T.tsne(x, perplexity=30)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        T.tsne(bad, perplexity=3)
    with pytest.raises(ValueError, match="init"):
        T.tsne(x, perplexity=3, init=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="method"):
        T.tsne(x, perplexity=3, method="fft")
    with pytest.raises(ValueError, match="labels"):
        T.tsne(x, perplexity=3, labels=[0, 1])
