"""Nearest neighbours in a layer's feature space, beside nearest neighbours in pixel space.

Krizhevsky, Sutskever & Hinton, NIPS 2012, fig. 4 (right): the training images whose last
hidden layer (fc7, 4096-D) vectors are closest in Euclidean distance to a query's. The lecture
notes: "if we use nearest neighbours but instead of pixels use the last layer ... the feature
maps of two differently oriented images end up close to each other" -- which the pixel-space
neighbours drawn next to them show is *not* true of raw pixels.

Distances: "l2" (Euclidean, as in the paper) or "cosine" (1 - cosine similarity). Pixel space
uses the same metric on the raw uint8 pixels. A query taken from the dataset itself (given by
index, or as an outside image identical to a dataset image) is never returned as its own neighbour.
"""

import time

import numpy as np

from methods import imaging
from methods.activations import layer_features
from methods.patches import input_channels, load_dataset
from methods.result import Result

__all__ = ["neighbours", "distances", "NeighboursResult", "add_cli_arguments", "run_cli"]

METRICS = ("l2", "cosine")


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


def _nearest(dist, k, exclude):
    dist = dist.copy()
    for row, index in enumerate(exclude):
        if index is not None:
            dist[row, index] = np.inf
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, 1)


def _preprocess(model, images):
    images = np.asarray(images)
    return model.preprocess(images if images.ndim == 3 and input_channels(model) == 1 else list(images))


def neighbours(model, images, queries=None, layer="fc7", metric="l2", k=8, query_images=None, x=None, query_x=None,
               batch_size=64, labels=None):
    """The ``k`` nearest dataset images to each query in ``layer``'s feature space and in pixel space.

    ``images``: the dataset, uint8 (N, H, W[, 3]); ``x``: the same preprocessed (default
    ``model.preprocess(images)``). Queries are dataset indices (``queries``, default 0..4,
    each excluded from its own list) or outside images ``query_images`` (uint8, with
    ``query_x`` preprocessed; a dataset image identical to one is left out of its lists). Returns a :class:`NeighboursResult`.
    """
    start = time.perf_counter()
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    images = np.asarray(images)
    if images.ndim not in (3, 4) or len(images) < 2:
        raise ValueError(f"the dataset must be a uint8 batch (N, H, W[, C]) of at least 2 images, got {images.shape}")
    if not (isinstance(k, (int, np.integer)) and 1 <= k < len(images)):
        raise ValueError(f"k must be an integer between 1 and {len(images) - 1}, got {k!r}")
    x = _preprocess(model, images) if x is None else np.asarray(getattr(x, "data", x))
    features = layer_features(model, x, layer, batch_size=batch_size)
    if query_images is None:
        queries = list(range(min(5, len(images)))) if queries is None else [int(q) for q in np.atleast_1d(queries)]
        bad = [q for q in queries if not 0 <= q < len(images)]
        if bad:
            raise ValueError(f"query index(es) {bad} out of range for a dataset of {len(images)} images")
        query_images = images[queries]
        query_features = features[queries]
        exclude = queries
    else:
        query_images = np.asarray(query_images)
        if query_images.shape[1:] != images.shape[1:]:
            raise ValueError(f"query images {query_images.shape[1:]} and dataset images {images.shape[1:]} differ in shape")
        query_x = _preprocess(model, query_images) if query_x is None else np.asarray(getattr(query_x, "data", query_x))
        query_features = layer_features(model, query_x, layer, batch_size=batch_size)
        queries = None
        # an outside query that is pixel for pixel a dataset image is that image: leave it out
        flat = images.reshape(len(images), -1)
        same = [np.flatnonzero((flat == q.ravel()).all(1)) for q in query_images]
        exclude = [s if s.size else None for s in same]
    feature_index, feature_distance = _nearest(distances(query_features, features, metric), k, exclude)
    pixel_index, pixel_distance = _nearest(distances(query_images, images, metric), k, exclude)
    params = dict(layer=layer, metric=metric, k=int(k), queries=queries, dataset_size=len(images))
    return NeighboursResult(params, query_images, images, feature_index, feature_distance, pixel_index,
                            pixel_distance, labels=labels, seconds=time.perf_counter() - start)


class NeighboursResult(Result):
    """``feature_index`` / ``pixel_index`` (Q, k) dataset indices, nearest first, with their
    ``*_distance``; ``query_images`` and the dataset ``images`` for the picture."""

    technique = "neighbours"

    def __init__(self, params, query_images, images, feature_index, feature_distance, pixel_index, pixel_distance,
                 labels=None, seconds=0.0):
        extras = dict(feature_index=feature_index, feature_distance=feature_distance, pixel_index=pixel_index,
                      pixel_distance=pixel_distance, seconds=seconds)
        if labels is not None:
            labels = np.asarray(labels)
            extras["feature_label_agreement"] = float(self._agreement(labels, params, feature_index))
            extras["pixel_label_agreement"] = float(self._agreement(labels, params, pixel_index))
        super().__init__(params, **extras)
        self.query_images, self.images = query_images, images
        self.feature_index, self.feature_distance = feature_index, feature_distance
        self.pixel_index, self.pixel_distance = pixel_index, pixel_distance
        self.labels = labels

    @staticmethod
    def _agreement(labels, params, index):
        queries = params.get("queries")
        if queries is None:
            return float("nan")
        return (labels[index] == labels[np.asarray(queries)][:, None]).mean()

    def _thumb(self, image, size):
        image = np.asarray(image)
        if image.dtype != np.uint8:
            image = imaging.to_uint8(image)
        h, w = image.shape[:2]
        scale = size / max(h, w)
        if scale < 1:
            rows = (np.arange(int(h * scale)) / scale).astype(int)
            cols = (np.arange(int(w * scale)) / scale).astype(int)
            image = image[rows][:, cols]
        elif scale >= 2:
            f = int(scale)
            image = np.kron(image, np.ones((f, f) + (1,) * (image.ndim - 2), np.uint8))
        return np.repeat(image[..., None], 3, 2) if image.ndim == 2 else image[..., :3]

    def panel(self, index, size=96, separator=6):
        """One row per query: the query, a gap, then its neighbours nearest first."""
        thumbs = []
        for q, row in zip(self.query_images, index):
            query = self._thumb(q, size)
            gap = np.full(query.shape[:1] + (separator, 3), 255, np.uint8)
            gap[:, separator // 2 - 1: separator // 2 + 1] = 0
            thumbs.append(np.concatenate([query, gap], 1))
            thumbs.extend(self._thumb(self.images[j], size) for j in row)
        width = max(t.shape[1] for t in thumbs)
        tiles = [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0)), constant_values=255) for t in thumbs]
        return imaging.grid(tiles, columns=index.shape[1] + 1, pad=2)

    def pictures(self):
        return {f"{self.params['layer']}_{self.params['metric']}": self.panel(self.feature_index),
                f"pixels_{self.params['metric']}": self.panel(self.pixel_index)}


def add_cli_arguments(parser):
    parser.add_argument("--layer", default="fc7", help="feature layer (default: fc7, as in Krizhevsky et al.)")
    parser.add_argument("--metric", default="l2", choices=METRICS, help="distance (default: l2)")
    parser.add_argument("-k", "--neighbours", type=int, default=8, help="neighbours per query (default: 8)")
    parser.add_argument("--queries", type=int, nargs="*", default=None,
                        help="dataset indices to query (default: the --image images if given, else 0..4)")
    parser.add_argument("--dataset", default="sample",
                        help="'sample' (the shipped Fashion-MNIST sample for fashion-vgg, the shipped photos for "
                             "other models) or a folder of images (default: sample)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N dataset images")


def run_cli(args, model, x):
    images, labels = load_dataset(model, args.dataset, limit=args.limit)
    if args.image and args.queries is None:
        query_images = np.asarray(model.deprocess(x))
        return neighbours(model, images, layer=args.layer, metric=args.metric, k=args.neighbours,
                          query_images=query_images, query_x=x, labels=labels)
    return neighbours(model, images, queries=args.queries, layer=args.layer, metric=args.metric, k=args.neighbours,
                      labels=labels)
