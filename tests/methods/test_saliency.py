"""Saliency maps (Simonyan et al. 2014), our max-flow and GrabCut, and saliency-seeded segmentation."""

import os

import numpy as np
import pytest

import methods
from methods import grabcut as gc
from methods.saliency import saliency, saliency_segmentation
from minigrad import nn
from tests.methods.tiny_models import NamedSequential, tiny_vgg


def region_model(size=16, region=(slice(4, 10), slice(6, 12)), classes=3, seed=0):
    """A classifier whose scores read only the pixels in ``region`` (fc weights zero elsewhere)."""
    rng = np.random.default_rng(seed)
    fc1, fc2 = nn.Linear(3 * size * size, 8), nn.Linear(8, classes)
    w = np.zeros((8, 3, size, size), np.float32)
    w[:, :, region[0], region[1]] = rng.normal(size=w[:, :, region[0], region[1]].shape)
    fc1.weight.data[...] = w.reshape(8, -1)
    fc2.weight.data[...] = rng.normal(size=fc2.weight.shape)
    layers = [("flatten", nn.Flatten()), ("fc1", fc1), ("relu1", nn.ReLU()), ("fc2", fc2)]
    return NamedSequential(layers, 3, size).eval()


def saliency_map(model, x, **options):
    return methods.saliency(model, x, segment=False, **options).maps


def test_saliency_lies_on_the_region_the_score_reads():
    region = (slice(4, 10), slice(6, 12))
    m = region_model(region=region)
    x = np.random.default_rng(0).normal(size=(3, 3, 16, 16)).astype(np.float32)
    maps = saliency_map(m, x)
    assert maps.shape == (3, 16, 16)
    inside = maps[:, region[0], region[1]].sum(axis=(1, 2))
    assert np.all(inside > 0) and np.allclose(inside, maps.sum(axis=(1, 2)))


def test_saliency_is_max_abs_gradient_of_the_score_before_softmax():
    m = tiny_vgg()
    x = np.random.default_rng(1).normal(size=(2, 3, 16, 16)).astype(np.float32)
    import minigrad

    t = minigrad.tensor(x, requires_grad=True)
    logits = m(t)
    top = logits.numpy().argmax(axis=1)
    (logits[0, int(top[0])] + logits[1, int(top[1])]).backward()
    result = methods.saliency(m, x, segment=False)
    np.testing.assert_allclose(result.maps, np.abs(t.grad).max(axis=1), rtol=1e-6)
    assert list(result.targets) == list(top) and result.masks is None
    np.testing.assert_allclose(saliency_map(m, x, target=[2, 2]), saliency_map(m, x, target=2), rtol=1e-6)


@pytest.mark.parametrize("x, options, message", [
    (np.zeros((1, 1, 16, 16), np.float32), {}, "takes 3-channel images, got 1"),
    (np.zeros((1, 3, 8, 8), np.float32), {}, "takes 16x16 images"),
    (np.zeros((2, 3, 16, 16), np.float32), {"target": [1]}, "give one target per image: 1 targets for 2 images"),
    (np.zeros((1, 3, 16, 16), np.float32), {"foreground_quantile": 0.2},
     r"background_quantile \(0.3\) must be below foreground_quantile \(0.2\)"),
    (np.zeros((1, 3, 16, 16), np.float32), {"foreground_quantile": 1.5},
     "foreground_quantile must be a number from 0 to 1, got 1.5"),
    (np.zeros((1, 3, 16, 16), np.float32), {"iterations": -1}, "iterations must be an integer from 1 to 100, got -1"),
    (np.zeros((1, 3, 16, 16), np.float32), {"segment": "yes"}, "segment must be True or False"),
])
def test_saliency_bad_input_is_named(x, options, message):
    with pytest.raises(ValueError, match=message):
        methods.saliency(tiny_vgg(), x, **options)


# ----------------------------------------------------------------------------- max-flow


def random_graph(rng, n):
    e = int(rng.integers(0, 4 * n))
    tails, heads = rng.integers(0, n, e), rng.integers(0, n, e)
    keep = tails != heads
    tails, heads = tails[keep], heads[keep]
    caps = rng.integers(0, 20, len(tails))
    reverse = rng.integers(0, 20, len(tails)) * (rng.random(len(tails)) < 0.5)
    source = rng.integers(0, 30, n) * (rng.random(n) < 0.4)
    sink = rng.integers(0, 30, n) * (rng.random(n) < 0.4)
    return tails, heads, caps, reverse, source, sink


def test_maxflow_matches_scipy_and_its_cut_is_minimal():
    scipy_sparse = pytest.importorskip("scipy.sparse")
    from scipy.sparse.csgraph import maximum_flow

    rng = np.random.default_rng(0)
    for _ in range(150):
        n = int(rng.integers(2, 60))
        tails, heads, caps, reverse, source, sink = random_graph(rng, n)
        flow, in_source = gc.maxflow(n, tails, heads, caps, reverse, source, sink)
        rows = np.concatenate([tails, heads, np.full(n, n), np.arange(n)])
        cols = np.concatenate([heads, tails, np.arange(n), np.full(n, n + 1)])
        matrix = scipy_sparse.csr_matrix((np.concatenate([caps, reverse, source, sink]).astype(np.int32),
                                          (rows, cols)), shape=(n + 2, n + 2))
        matrix.sum_duplicates()
        expected = maximum_flow(matrix, n, n + 1).flow_value
        cut = (caps * (in_source[tails] & ~in_source[heads])).sum() + \
              (reverse * (in_source[heads] & ~in_source[tails])).sum() + \
              (source * ~in_source).sum() + (sink * in_source).sum()
        assert flow == pytest.approx(expected) and cut == pytest.approx(expected)


def test_maxflow_on_a_grid_with_real_capacities():
    rng = np.random.default_rng(1)
    h, w = 40, 50
    index = np.arange(h * w).reshape(h, w)
    tails = np.concatenate([index[:, 1:].ravel(), index[1:, :].ravel()])
    heads = np.concatenate([index[:, :-1].ravel(), index[:-1, :].ravel()])
    caps = rng.random(len(tails)) * 3
    source, sink = rng.random(h * w) * 2, rng.random(h * w) * 2
    flow, in_source = gc.maxflow(h * w, tails, heads, caps, caps, source, sink)
    cut = (caps * (in_source[tails] != in_source[heads])).sum() + (source * ~in_source).sum() + (sink * in_source).sum()
    assert cut == pytest.approx(flow, rel=1e-9)
    nx = pytest.importorskip("networkx")
    graph = nx.DiGraph()
    for t, hd, c in zip(tails, heads, caps):
        graph.add_edge(int(t), int(hd), capacity=float(c))
        graph.add_edge(int(hd), int(t), capacity=float(c))
    for i in range(h * w):
        graph.add_edge("s", i, capacity=float(source[i]))
        graph.add_edge(i, "t", capacity=float(sink[i]))
    assert flow == pytest.approx(nx.maximum_flow_value(graph, "s", "t"), rel=1e-9)


def test_maxflow_refuses_bad_graphs():
    with pytest.raises(ValueError, match="non-negative"):
        gc.maxflow(2, [0], [1], [-1.0], [0.0], [1.0, 0.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="endpoints"):
        gc.maxflow(2, [0], [2], [1.0], [0.0], [1.0, 0.0], [0.0, 1.0])


# ----------------------------------------------------------------------------- GrabCut


def synthetic_scene(rng, size=72, noise=35.0):
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - 34) ** 2 + (xx - 38) ** 2 < 22 ** 2
    image = np.empty((size, size, 3))
    image[:] = (60, 120, 60)
    image[disc] = (170, 90, 60)
    image[((xx // 8 + yy // 8) % 2 == 0)] += (20, 0, 30)  # textured background
    image += rng.normal(0, noise, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), disc, yy, xx


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("undecided", [gc.PR_FGD, gc.PR_BGD])
def test_grabcut_agrees_with_opencv(undecided):
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(2)
    image, disc, yy, xx = synthetic_scene(rng)
    mask = np.full(disc.shape, undecided, np.uint8)
    mask[(yy - 34) ** 2 + (xx - 38) ** 2 < 10 ** 2] = gc.FGD
    mask[(yy < 5) | (xx < 5) | (yy >= 67) | (xx >= 67)] = gc.BGD
    ours = gc.grabcut(image, mask, iterations=5)
    theirs = mask.copy()
    cv2.grabCut(image, theirs, None, np.zeros((1, 65)), np.zeros((1, 65)), 5, cv2.GC_INIT_WITH_MASK)
    fg_ours = (ours == gc.FGD) | (ours == gc.PR_FGD)
    fg_theirs = (theirs == gc.FGD) | (theirs == gc.PR_FGD)
    assert iou(fg_ours, fg_theirs) >= 0.9
    assert (ours[mask == gc.FGD] == gc.FGD).all() and (ours[mask == gc.BGD] == gc.BGD).all()


def test_saliency_seeded_grabcut_finds_the_object_and_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    image, disc, yy, xx = synthetic_scene(rng)
    # a saliency map that peaks in the middle of the object and fades outwards
    saliency_map = np.exp(-((yy - 34) ** 2 + (xx - 38) ** 2) / (2 * 14.0 ** 2)) + 0.05 * rng.random(disc.shape)
    ours = saliency_segmentation(image, saliency_map)
    assert iou(ours, disc) >= 0.9
    mask = np.full(disc.shape, gc.PR_FGD, np.uint8)
    mask[saliency_map >= np.quantile(saliency_map, 0.95)] = gc.FGD
    mask[saliency_map <= np.quantile(saliency_map, 0.30)] = gc.BGD
    theirs = mask.copy()
    cv2.grabCut(image, theirs, None, np.zeros((1, 65)), np.zeros((1, 65)), 5, cv2.GC_INIT_WITH_MASK)
    assert iou(ours, (theirs == gc.FGD) | (theirs == gc.PR_FGD)) >= 0.9


def test_segmentation_bad_input_is_named():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="flat"):
        saliency_segmentation(image, np.zeros((8, 8)))
    with pytest.raises(ValueError, match="must be \\(H, W\\) of the image"):
        saliency_segmentation(image, np.zeros((4, 8)))
    with pytest.raises(ValueError, match="both some"):
        gc.grabcut(image, np.full((8, 8), gc.BGD, np.uint8))


def test_saliency_result_segments_and_saves_figures_maps_and_masks(tmp_path):
    m = region_model(region=(slice(3, 12), slice(4, 13)))
    x = np.random.default_rng(4).normal(size=(1, 3, 16, 16)).astype(np.float32)
    result = saliency(m, x)
    assert result.maps.shape == (1, 16, 16) and result.masks.shape == (1, 16, 16) and result.masks.dtype == bool
    np.testing.assert_array_equal(result.masks[0], saliency_segmentation(result.images[0], result.maps[0]))
    assert not result.masks[0][result.maps[0] <= np.quantile(result.maps[0], 0.30)].any()  # sure background
    assert result.masks[0][result.maps[0] >= np.quantile(result.maps[0], 0.95)].all()  # sure foreground
    paths = result.save(tmp_path / "out")
    assert sorted(os.path.basename(p) for p in paths) == sorted(os.listdir(tmp_path / "out")) == [
        "saliency.json", "saliency_0.png", "saliency_0_map.png", "saliency_0_map_x16.png", "saliency_0_mask.png",
        "saliency_0_mask_x16.png"]
    pictures = result.pictures()
    np.testing.assert_array_equal(pictures["0_mask"], result.masks[0].astype(np.uint8) * 255)
    assert pictures["0_map"].max() == 255 and pictures["0_map"].min() == 0
