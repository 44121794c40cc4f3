"""Metric-learning losses: contrastive, triplet with negative mining, lifted structure.

Each takes embeddings as minigrad Tensors and returns a scalar Tensor that backpropagates into
them (so into the network that produced them); which pairs or triplets count is decided on the
values alone, as the papers do, and carries no gradient.

* :func:`contrastive_loss` -- Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an
  Invariant Mapping", CVPR 2006, eq. 4: for a pair at Euclidean distance D with Y = 0 for a
  similar pair and Y = 1 for a dissimilar one, L = (1 - Y) D^2 / 2 + Y max(0, m - D)^2 / 2.
* :func:`triplet_loss` -- Schroff, Kalenichenko & Philbin, "FaceNet", CVPR 2015, eq. 1 and 3:
  L = max(0, ||f(a) - f(p)||^2 - ||f(a) - f(n)||^2 + alpha) over triplets (squared distances, as
  the paper; ``squared=False`` takes plain ones as the lecture notes write it), alpha = 0.2.
* :func:`batch_triplet_loss` -- the same with FaceNet's online mining (sec. 3.2): every
  anchor-positive pair of a labelled batch, each with a negative chosen in the batch: the closest
  one farther than the positive ("semi-hard", the paper's choice), or the closest one ("hard").
* :func:`lifted_structure_loss` -- Song, Xiang, Jegelka & Savarese, "Deep Metric Learning via
  Lifted Structured Feature Embedding", CVPR 2016, eq. 4: for every positive pair (i, j) of the
  batch, J_ij = log(sum_{k negative of i} exp(alpha - D_ik) + sum_{l negative of j} exp(alpha -
  D_jl)) + D_ij, and L = sum max(0, J_ij)^2 / (2 |P|), alpha = 1.

Distances are sqrt(||u - v||^2 + eps) with a tiny ``eps`` (1e-12): the gradient of a plain square
root is infinite at coincident points, which a batch of embeddings can contain.
"""

import numpy as np

from minigrad.functional import relu
from minigrad.tensor import Tensor, tensor

__all__ = ["batch_triplet_loss", "contrastive_loss", "lifted_structure_loss", "pairwise_distances", "triplet_loss"]

EPS = 1e-12


def _embeddings(name, x):
    x = x if isinstance(x, Tensor) else tensor(np.asarray(x))
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) batch of embeddings, got shape {tuple(x.shape)}")
    return x


def _labels(labels, n):
    labels = np.asarray(labels.numpy() if isinstance(labels, Tensor) else labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per embedding, got {labels.shape}")
    return labels


def _check_margin(margin):
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")


def _distance(a, b, squared=False):
    d2 = ((a - b) * (a - b)).sum(axis=1)
    return d2 if squared else (d2 + EPS).sqrt()


def pairwise_distances(x, squared=False):
    """(N, N) Euclidean distances between the rows of ``x`` (N, D), differentiable (see the module
    docstring for the ``eps`` inside the square root); ``squared`` gives squared distances."""
    x = _embeddings("x", x)
    n, d = x.shape
    diff = x.reshape(n, 1, d) - x.reshape(1, n, d)
    d2 = (diff * diff).sum(axis=2)
    return d2 if squared else (d2 + EPS).sqrt()


def contrastive_loss(x1, x2, dissimilar, margin=1.0):
    """Hadsell et al.'s contrastive loss averaged over pairs: ``x1``, ``x2`` (N, D) embeddings of
    the pairs, ``dissimilar`` (N,) Y: 0 (or False) for a similar pair, 1 for a dissimilar one;
    ``margin`` m: dissimilar pairs farther apart than m cost nothing."""
    x1, x2 = _embeddings("x1", x1), _embeddings("x2", x2)
    if x1.shape != x2.shape:
        raise ValueError(f"x1 and x2 must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")
    _check_margin(margin)
    y = _labels(dissimilar, x1.shape[0]).astype(x1.dtype)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("dissimilar must hold 0 (similar pair) or 1 (dissimilar pair) for every pair")
    d = _distance(x1, x2)
    push = relu(margin - d)
    return ((1 - y) * 0.5 * d * d + y * 0.5 * push * push).mean()


def triplet_loss(anchor, positive, negative, margin=0.2, squared=True):
    """FaceNet's triplet loss averaged over the triplets (rows of the three (N, D) batches)."""
    a, p, n = _embeddings("anchor", anchor), _embeddings("positive", positive), _embeddings("negative", negative)
    if not a.shape == p.shape == n.shape:
        raise ValueError(f"anchor, positive and negative must have one shape, got {tuple(a.shape)}, "
                         f"{tuple(p.shape)}, {tuple(n.shape)}")
    _check_margin(margin)
    return relu(_distance(a, p, squared) - _distance(a, n, squared) + margin).mean()


def mine_triplets(distances, labels, mining="semi-hard"):
    """(anchor, positive, negative) index arrays: every ordered anchor-positive pair of the batch
    with a negative chosen from the (N, N) ``distances`` (an array): "semi-hard" -- the closest
    negative farther from the anchor than the positive (FaceNet sec. 3.2), or the farthest negative
    when none is (as TensorFlow's ``triplet_semihard_loss``); "hard" -- the closest negative."""
    if mining not in ("semi-hard", "hard"):
        raise ValueError(f"mining must be 'semi-hard' or 'hard', got {mining!r}")
    same = labels[:, None] == labels[None, :]
    anchors, positives = np.nonzero(same & ~np.eye(len(labels), dtype=bool))
    negatives = np.empty(len(anchors), np.int64)
    for t, (i, j) in enumerate(zip(anchors, positives)):
        candidates = np.flatnonzero(~same[i])
        d = distances[i, candidates]
        if mining == "hard":
            negatives[t] = candidates[np.argmin(d)]
            continue
        farther = d > distances[i, j]
        negatives[t] = candidates[farther][np.argmin(d[farther])] if farther.any() else candidates[np.argmax(d)]
    return anchors, positives, negatives


def batch_triplet_loss(embeddings, labels, margin=0.2, mining="semi-hard", squared=True):
    """FaceNet's triplet loss over a labelled batch with online negative mining (see
    :func:`mine_triplets`); 0 when the batch holds no anchor-positive pair with a negative."""
    x = _embeddings("embeddings", embeddings)
    labels = _labels(labels, x.shape[0])
    _check_margin(margin)
    distances = pairwise_distances(x.detach(), squared).numpy()
    a, p, n = mine_triplets(distances, labels, mining)
    if len(a) == 0 or len(np.unique(labels)) < 2:
        return (x * 0.0).sum()
    return triplet_loss(x[a], x[p], x[n], margin, squared)


def lifted_structure_loss(embeddings, labels, margin=1.0):
    """Song et al.'s lifted structured loss over a labelled batch (eq. 4; ``margin`` is alpha);
    0 when the batch holds no positive pair with negatives."""
    x = _embeddings("embeddings", embeddings)
    labels = _labels(labels, x.shape[0])
    _check_margin(margin)
    same = labels[:, None] == labels[None, :]
    i, j = np.nonzero(np.triu(same, k=1))
    if len(i) == 0 or same.all():
        return (x * 0.0).sum()
    d = pairwise_distances(x)
    negatives = (~same).astype(x.dtype)
    spread = ((margin - d).exp() * negatives).sum(axis=1)
    j_ij = (spread[i] + spread[j]).log() + d[i, j]
    hinge = relu(j_ij)
    return (hinge * hinge).sum() / (2.0 * len(i))
