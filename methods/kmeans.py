"""k-means clustering, our own: k-means++ seeding and Lloyd's iteration (Numba).

The bag-of-visual-words codebook (``methods.bag_of_words``) is the k-means clustering of random
image patches; this is that clustering, written here rather than borrowed:

* seeding: k-means++ (Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding",
  SODA 2007): the first centre is a point drawn uniformly, each next one a point drawn with
  probability proportional to its squared distance D(x)^2 to the nearest centre chosen so far.
  As in the authors' own code and scikit-learn, each step draws 2 + ln k candidates that way and
  keeps the one that lowers the potential (the sum of D(x)^2) most ("greedy k-means++");
* Lloyd's iteration (Lloyd 1982): assign every point to its nearest centre, move every centre to
  the mean of its points; a centre left without points is moved to the point farthest from its
  own centre (scikit-learn's rule). It stops when no label changes, when the centres move less
  than ``tol`` times the data's mean per-feature variance in total squared distance
  (scikit-learn's criterion), or after ``max_iter`` iterations;
* ``n_init`` runs from different seedings, the one of least inertia kept (scikit-learn's default
  for k-means++ is 1).

Both steps of an iteration are one pass (``methods/_kmeans_numba.py``): the dot products come
from BLAS matrix products chunk by chunk, the nearest centres and the sums per centre from a
compiled Numba loop. ``benchmarks/kmeans.py`` compares the time and inertia with scikit-learn's.
"""

import math

import numpy as np

from methods.lib.progress import Progress
from methods.lib.training import single_threaded_blas

__all__ = ["KMeansResult", "kmeans", "kmeans_plus_plus"]


class KMeansResult:
    """``centers`` (k, D), ``labels`` (N,) the nearest centre of each point, ``inertia`` the sum of
    squared distances of the points to their centres (float64), ``iterations`` of the best run,
    ``converged`` (False when ``max_iter`` or Ctrl-C stopped it), ``inertia_history`` per iteration."""

    def __init__(self, centers, labels, inertia, iterations, converged, inertia_history):
        self.centers, self.labels, self.inertia = centers, labels, inertia
        self.iterations, self.converged, self.inertia_history = iterations, converged, inertia_history

    def predict(self, X):
        """The nearest centre of every row of ``X`` (M, D): (M,) int64 (Lloyd's assignment step)."""
        from methods import _kmeans_numba as kernels

        x = np.ascontiguousarray(X, dtype=self.centers.dtype)
        if x.ndim != 2 or x.shape[1] != self.centers.shape[1]:
            raise ValueError(f"predict: X must have shape (M, {self.centers.shape[1]}), got {np.shape(X)}")
        labels = np.full(len(x), -1, np.int64)
        with single_threaded_blas():
            kernels.lloyd_pass(x, self.centers, labels, np.empty(len(x)))
        return labels

    def __repr__(self):
        return (f"KMeansResult(k={len(self.centers)}, inertia={self.inertia:.6g}, iterations={self.iterations}, "
                f"converged={self.converged})")


def _check(x, k):
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"kmeans: X must be a non-empty (N, D) array, got shape {x.shape}")
    if x.dtype.kind not in "fiub":
        raise ValueError(f"kmeans: X must hold numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=x.dtype if x.dtype in (np.float32, np.float64) else np.float64)
    if not np.isfinite(x).all():
        raise ValueError("kmeans: X contains NaN or infinite values")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= x.shape[0]:
        raise ValueError(f"kmeans: k must be an integer from 1 to the number of points ({x.shape[0]}), got {k!r}")
    return x


def _squared_norms(x):
    return np.einsum("ij,ij->i", x, x, dtype=np.float64)


def kmeans_plus_plus(x, k, rng, local_trials=None):
    """k centres chosen from the rows of ``x`` by greedy k-means++ (see the module docstring);
    ``local_trials`` candidates per step (default 2 + int(ln k)). Returns (k, D) in x's dtype."""
    x = _check(x, k)
    n = x.shape[0]
    trials = local_trials or 2 + int(math.log(k))
    norms = _squared_norms(x)
    centers = np.empty((k, x.shape[1]), x.dtype)
    first = rng.integers(n)
    centers[0] = x[first]
    closest = np.maximum(norms + norms[first] - 2.0 * (x @ x[first]), 0.0)
    potential = closest.sum()
    for c in range(1, k):
        if potential <= 0:  # every point is a centre already: take any others
            centers[c:] = x[rng.choice(n, k - c, replace=False)]
            break
        draws = rng.random(trials) * potential
        candidates = np.minimum(np.searchsorted(np.cumsum(closest), draws), n - 1)
        distance = np.maximum(norms[candidates, None] + norms[None, :] - 2.0 * (x[candidates] @ x.T), 0.0)
        np.minimum(closest, distance, out=distance)
        potentials = distance.sum(axis=1)
        best = int(np.argmin(potentials))
        centers[c] = x[candidates[best]]
        closest, potential = distance[best], potentials[best]
    return centers


def _lloyd(x, centers, max_iter, tol, kernels, progress_label, verbose):
    """Lloyd's iteration from ``centers``; returns (centers, labels, iterations, converged, history, interrupted)."""
    n = x.shape[0]
    labels = np.full(n, -1, np.int64)
    distances = np.empty(n)
    history, converged, interrupted, iterations = [], False, False, 0
    progress = Progress(range(max_iter), progress_label, verbose=verbose)
    try:
        for _ in progress:
            sums, counts, changed = kernels.lloyd_pass(x, centers, labels, distances)
            iterations += 1
            history.append(float(distances.sum(dtype=np.float64)))
            progress.set(inertia=history[-1], changed=int(changed))
            if changed == 0:  # the centres are the means of unchanged sets: a fixed point
                converged = True
                break
            updated = (sums / np.maximum(counts, 1)[:, None]).astype(x.dtype)
            empty = np.flatnonzero(counts == 0)
            if empty.size:
                far = np.argsort(-distances, kind="stable")[:empty.size]
                updated[empty] = x[far]
            shift = float(((updated.astype(np.float64) - centers) ** 2).sum())
            centers = updated
            if shift <= tol:
                converged = True
                break
    except KeyboardInterrupt:
        interrupted = True
    kernels.lloyd_pass(x, centers, labels, distances)  # labels that match the final centres
    return centers, labels, iterations, converged, history, interrupted


def kmeans(X, k, seed=0, n_init=1, max_iter=300, tol=1e-4, init="k-means++", verbose=None):
    """Cluster the rows of ``X`` (N, D) into ``k`` groups; returns a :class:`KMeansResult`.

    ``seed`` makes the seeding reproducible; ``n_init`` seedings are tried and the best kept;
    ``init`` is "k-means++" or a (k, D) array of starting centres; ``max_iter`` and ``tol`` as
    scikit-learn's KMeans. float32 input is clustered in float32 (sums in float64). Ctrl-C stops
    the iteration and returns the centres so far (``converged`` False).
    """
    from methods import _kmeans_numba as kernels

    x = _check(X, k)
    if isinstance(n_init, bool) or not isinstance(n_init, (int, np.integer)) or n_init < 1:
        raise ValueError(f"kmeans: n_init must be a positive integer, got {n_init!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"kmeans: max_iter must be a positive integer, got {max_iter!r}")
    if not tol >= 0:
        raise ValueError(f"kmeans: tol must be >= 0, got {tol!r}")
    given = None
    if not isinstance(init, str):
        given = np.ascontiguousarray(init, dtype=x.dtype)
        if given.shape != (k, x.shape[1]):
            raise ValueError(f"kmeans: an init array must have shape ({k}, {x.shape[1]}), got {given.shape}")
    elif init != "k-means++":
        raise ValueError(f"kmeans: init must be 'k-means++' or a (k, D) array, got {init!r}")
    tol_abs = tol * float(np.var(x, axis=0, dtype=np.float64).mean())
    rng = np.random.default_rng(seed)
    best = None
    with single_threaded_blas():
        for run in range(1 if given is not None else n_init):
            start = given if given is not None else kmeans_plus_plus(x, k, rng)
            centers, labels, iterations, converged, history, interrupted = _lloyd(
                x, start, max_iter, tol_abs, kernels, f"k-means (k={k}, N={x.shape[0]}, run {run + 1}/{n_init})",
                verbose)
            inertia = float(kernels.exact_distances(x, centers, labels).sum())
            if best is None or inertia < best.inertia:
                best = KMeansResult(centers, labels, inertia, iterations, converged, history)
            if interrupted:
                break
    return best
