"""Nearest neighbours in a layer's feature space, beside nearest neighbours in pixel space.

Krizhevsky, Sutskever & Hinton, NIPS 2012, fig. 4 (right): the training images whose last
hidden layer (fc7, 4096-D) vectors are closest in Euclidean distance to a query's. The lecture
notes: "if we use nearest neighbours but instead of pixels use the last layer ... the feature
maps of two differently oriented images end up close to each other" -- which the pixel-space
neighbours drawn next to them show is *not* true of raw pixels.

Distances: "l2" (Euclidean, as in the paper) or "cosine" (1 - cosine similarity). Pixel space
uses the same metric on the raw uint8 pixels. A query taken from the dataset itself (given by
index, or as an outside image identical to a dataset image) is never returned as its own neighbour.

The dataset is streamed (:mod:`methods.lib.scan`): its features are computed once in batches into
a store (on disk for a folder, cached and resumable; float16 on request), then read back one
shard at a time, and the pixels are read in chunks, each pass keeping only the k nearest so far,
so memory does not grow with the dataset.
"""

import numpy as np

from methods.lib.datasets import as_dataset
from methods.lib.features import feature_layer, layer_features
from methods.lib.figures import Panel, figure
from methods.lib.images import enlarge, grid, rgb
from methods.lib.inputs import check_batch
from methods.lib.options import Option, technique
from methods.lib.result import Result
from methods.lib.scan import LayerFeatures, TopK, batch_size_for, scan

__all__ = ["NeighboursResult", "distances", "neighbours"]

METRICS = ("l2", "cosine")
PRECISIONS = ("float32", "float16")
#: Rows of pixels or features compared at a time, in float64 bytes.
CHUNK = 16 * 2**20


def distances(queries, items, metric="l2"):
    """(Q, N) distances between the rows of ``queries`` and ``items``: Euclidean or 1 - cosine."""
    q = np.asarray(queries, np.float64).reshape(len(queries), -1)
    d = np.asarray(items, np.float64).reshape(len(items), -1)
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} features, the items {d.shape[1]}")
    if metric == "l2":
        sq = (q * q).sum(1)[:, None] + (d * d).sum(1)[None, :] - 2.0 * q @ d.T
        return np.sqrt(np.maximum(sq, 0.0))
    if metric == "cosine":
        qn = np.linalg.norm(q, axis=1, keepdims=True)
        dn = np.linalg.norm(d, axis=1, keepdims=True)
        return 1.0 - (q / np.where(qn > 0, qn, 1)) @ (d / np.where(dn > 0, dn, 1)).T
    raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")


def _blocks(read, count, width):
    """(start, rows) in blocks of at most :data:`CHUNK` bytes in float64 (what :func:`distances` makes
    of them), each read by ``read(start, stop)`` and flattened to ``width`` columns."""
    step = max(1, CHUNK // (8 * width))
    for start in range(0, count, step):
        yield start, read(start, start + step).reshape(-1, width)


def _push(top, dist, start, exclude):
    """Add the (Q, n) distances to items start.. to ``top``, items in a query's ``exclude`` left out."""
    for row, index in enumerate(exclude):
        here = index[(index >= start) & (index < start + dist.shape[1])]
        dist[row, here - start] = np.inf
    top.push(dist, start + np.arange(dist.shape[1]))


@technique("neighbours", "Nearest neighbours in feature space", "Krizhevsky et al. 2012", [
    Option("layer", "layer", None, "feature layer (default: fc7, as in Krizhevsky et al., else the layer before "
                                   "the output)"),
    Option("metric", "choice", "l2", "distance: Euclidean (the paper's) or 1 - cosine similarity", choices=METRICS),
    Option("k", "int", 8, "neighbours per query", low=1),
    Option("queries", "ints", None, "dataset indices to query (default: the given query images, else 0..4)", low=0),
    Option("batch_size", "int", None, "images per forward pass (default: as many as fit 512 MB of activations, "
                                      "at most 64)", low=1),
    Option("precision", "choice", "float32", "how the features are stored; float16 halves a folder scan's disk "
                                             "and memory (distances then come from rounded features)",
           choices=PRECISIONS),
], inputs="dataset")
def neighbours(model, dataset, query_x=None, *, layer, metric, k, queries, batch_size, precision):
    """The ``k`` nearest dataset images to each query in ``layer``'s feature space and in pixel space.

    ``dataset``: a :class:`~methods.lib.datasets.Dataset`, images, or a folder path (streamed).
    Queries are dataset indices (``queries``, default 0..4, each left out of its own list) or
    outside images ``query_x`` (a preprocessed batch; a dataset image identical to one is left
    out of its list). Returns a :class:`NeighboursResult`.
    """
    dataset = as_dataset(model, dataset)
    images = dataset.images
    layer = layer or feature_layer(model)
    model.check_layers([layer])
    if len(images) < 2:
        raise ValueError(f"the dataset needs at least 2 images, got {len(images)}")
    if k >= len(images):
        raise ValueError(f"k must be below the dataset size ({len(images)}), got {k}")
    if query_x is None:
        queries = list(range(min(5, len(images)))) if queries is None else queries
        bad = [q for q in queries if q >= len(images)]
        if bad:
            raise ValueError(f"query index(es) {bad} out of range for a dataset of {len(images)} images")
        query_images, exclude = images[queries], [np.array([q]) for q in queries]
    else:
        query_x = check_batch(model, query_x)
        query_images = model.deprocess(query_x)[..., :images.shape[3]]
        queries, exclude = None, [np.empty(0, np.int64) for _ in query_x]
    batch_size = batch_size or batch_size_for(model, images, layer)
    store, = scan(model, dataset, [LayerFeatures(layer, precision)], batch_size, f"neighbours {layer}")
    if query_x is None:
        query_features = store.take("features", queries)
    else:
        query_features = layer_features(model, query_x, layer, batch_size=batch_size).astype(precision)
    pixels, features = TopK(k, len(query_images)), TopK(k, len(query_images))
    flat_queries = query_images.reshape(len(query_images), -1)
    for start, block in _blocks(lambda a, b: images[a:b], len(images), flat_queries.shape[1]):
        if queries is None:  # an outside query that is pixel for pixel a dataset image is that image: leave it out
            exclude = [np.concatenate([e, start + np.flatnonzero((block == q).all(1))])
                       for e, q in zip(exclude, flat_queries)]
        _push(pixels, distances(flat_queries, block, metric), start, exclude)
    for first, rows in store.chunks("features"):
        for start, block in _blocks(lambda a, b: rows[a:b], len(rows), rows.shape[1]):
            _push(features, distances(query_features, block, metric), first + start, exclude)
    result = NeighboursResult(layer, metric, query_images, dataset, features.index, features.keys, pixels.index,
                              pixels.keys, queries)
    result.params.update(layer=layer, queries=queries, batch_size=batch_size)
    return result


class NeighboursResult(Result):
    """``feature_index`` / ``pixel_index`` (Q, k) dataset indices, nearest first, with their
    ``*_distance``; ``query_images`` and the ``dataset`` for the pictures; with labels, the
    share of neighbours of the query's class in each space."""

    def __init__(self, layer, metric, query_images, dataset, feature_index, feature_distance, pixel_index,
                 pixel_distance, queries):
        summary = dict(feature_index=feature_index, feature_distance=feature_distance, pixel_index=pixel_index,
                       pixel_distance=pixel_distance, dataset_size=len(dataset.images))
        if dataset.labels is not None and queries is not None:
            query_labels = dataset.labels[np.asarray(queries)][:, None]
            summary["feature_label_agreement"] = float((dataset.labels[feature_index] == query_labels).mean())
            summary["pixel_label_agreement"] = float((dataset.labels[pixel_index] == query_labels).mean())
        super().__init__(**summary)
        self.layer, self.metric, self.query_images, self.dataset = layer, metric, query_images, dataset
        self.feature_index, self.feature_distance = feature_index, feature_distance
        self.pixel_index, self.pixel_distance = pixel_index, pixel_distance

    def panel(self, index, size=112):
        """One row per query: the query (framed), then its neighbours nearest first, each tile
        labelled with its distance (and class, when the dataset has labels)."""
        distance = self.feature_distance if index is self.feature_index else self.pixel_distance
        factor = max(1, size // max(self.dataset.images.shape[1:3]))
        tiles, labels = [], []
        for q, (query, row) in enumerate(zip(self.query_images, index)):
            framed = rgb(enlarge(query, factor)).copy()
            framed[:3], framed[-3:], framed[:, :3], framed[:, -3:] = 0, 0, 0, 0
            tiles.append(framed)
            labels.append("query")
            for rank, j in enumerate(row):
                tiles.append(rgb(enlarge(self.dataset.images[j], factor)))
                name = f"{self.dataset.names[self.dataset.labels[j]][:9]} " if self.dataset.labels is not None else ""
                d = distance[q, rank]
                labels.append(f"{name}d={d:.0f}" if d >= 100 else f"{name}d={d:.3g}")
        return grid(tiles, columns=index.shape[1] + 1, pad=2, labels=labels)

    def figures(self):
        return {f"{self.layer}_{self.metric}": figure([
            Panel(f"nearest in {self.layer} features ({self.metric})", image=self.panel(self.feature_index)),
            Panel(f"nearest in pixels ({self.metric})", image=self.panel(self.pixel_index))], columns=1, size="native")}

    def pictures(self):
        return {f"{self.layer}_{self.metric}_grid": self.panel(self.feature_index),
                f"pixels_{self.metric}_grid": self.panel(self.pixel_index)}
