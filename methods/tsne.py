"""t-SNE of feature vectors, our own implementation, and the lecture notes' picture of it.

t-SNE (van der Maaten & Hinton 2008, "Visualizing Data using t-SNE", JMLR 9) places N points in
2-D so that the Student-t similarities Q of the embedding match the Gaussian affinities P of the
data: it minimises KL(P || Q) by gradient descent with momentum. For large N, P is restricted
to each point's 3 * perplexity nearest neighbours and the repulsive part of the gradient is
approximated, either with a Barnes-Hut quadtree (van der Maaten 2014, "Accelerating t-SNE using
Tree-Based Algorithms", JMLR 15; ``methods/_tsne_bh.py``) or by polynomial interpolation on a
grid and FFT convolution (Linderman et al. 2019, FIt-SNE; ``methods/_tsne_fft.py``), both in
Numba, imported only then. The attractive forces and the KL run over the upper triangle of the
sparse P (``methods/_tsne_bh.py``).

Published defaults (see shared/notes/technique-anchors.md, section 10):

* perplexity 30; each point's Gaussian precision found by binary search on its entropy;
* early exaggeration 12 for the first 250 iterations, momentum 0.5 there and 0.8 after
  (van der Maaten & Hinton 2008), 1000 iterations in all (the paper's and scikit-learn's count);
* PCA initialisation rescaled so the first coordinate has standard deviation 1e-4 (openTSNE);
* learning rate max(N / exaggeration, 50) in each phase (openTSNE's rule, after Belkina et al.
  2019). The rule is stated for the gradient without the constant factor 4 (openTSNE's and
  bhtsne's convention), which is how the step below uses it; scikit-learn's ``learning_rate``
  is 4x smaller for the same step;
* per-coordinate gains (+0.2 when the gradient changes sign, x0.8 otherwise, at least 0.01;
  Jacobs 1988, as in every reference implementation) and openTSNE's step-norm cap of 5.

Deterministic given ``seed`` (it only matters for ``init="random"``), and the same for any
number of threads (each point's forces are computed by one task in one order). The notes' picture
(lecture "Understanding ConvNets": "we place the image at the coordinate") is drawn by
:meth:`TSNEResult.pictures` when the images are given.
"""

import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from methods.lib.datasets import FolderImages, as_dataset
from methods.lib.features import feature_layer
from methods.lib.figures import scatter
from methods.lib.images import rgb
from methods.lib.options import Option, technique
from methods.lib.progress import Progress
from methods.lib.result import Result
from methods.lib.scan import LayerFeatures, Thumbnails, batch_size_for, scan

#: N below which ``method="auto"`` uses the exact O(N^2) gradient, and from which it uses FFT
#: interpolation rather than Barnes-Hut. Measured on this project's 2-core machine, 1000
#: iterations, CPU seconds (wall seconds on a loaded machine): 500 points exact 1.2, Barnes-Hut
#: 0.9; 1000 points exact 22, Barnes-Hut 1.8, FFT 5.2; 2000 points Barnes-Hut 4.2 (9.8), FFT
#: 6.6 (8.4); 4000 points Barnes-Hut 8.9 (22.7), FFT 10.2 (13.8), Barnes-Hut then on one
#: thread, the FFT on two. The FFT's grid costs the same at any N.
EXACT_BELOW = 500
FFT_FROM = 2500
#: Side of the thumbnails kept for a folder's pictures (the 2000 px canvas // 25).
THUMBNAIL = 80


# ----- affinities -----


def squared_distances(a, b=None):
    """Squared Euclidean distances between the rows of ``a`` and ``b`` (float64, never negative)."""
    a = np.asarray(a, np.float64)
    b = a if b is None else np.asarray(b, np.float64)
    d = a @ b.T
    d *= -2.0  # in place: one (len(a), len(b)) array, not four
    d += (a * a).sum(1)[:, None]
    d += (b * b).sum(1)[None, :]
    return np.maximum(d, 0.0, out=d)


def conditional_affinities(distances, perplexity, tol=1e-5, max_steps=200):
    """Rows p_{j|i} = exp(-beta_i d_ij) / sum, with beta_i found by bisection so that each row's
    entropy is log(perplexity) (nats). ``distances`` (N, K) holds squared distances to the K
    candidate neighbours of each point (the point itself excluded). Returns (P_cond, beta)."""
    d = np.asarray(distances, np.float64)
    d = d - d.min(axis=1, keepdims=True)  # the entropy does not change; exp cannot underflow to 0 everywhere
    n = d.shape[0]
    target = math.log(perplexity)
    beta = np.ones(n)
    low = np.full(n, -np.inf)
    high = np.full(n, np.inf)
    active = np.arange(n)
    for _ in range(max_steps):
        if active.size == 0:
            break
        da, b = d[active], beta[active]
        p = np.exp(-b[:, None] * da)
        s = p.sum(1)
        entropy = np.log(s) + b * (da * p).sum(1) / s
        error = entropy - target
        done = np.abs(error) < tol
        up = error > 0  # entropy too high: the Gaussian is too wide, raise the precision
        low[active[up]] = b[up]
        high[active[~up]] = b[~up]
        lo, hi = low[active], high[active]
        new = np.where(up, np.where(np.isinf(hi), b * 2, 0.5 * (b + hi)),
                       np.where(np.isinf(lo), b / 2, 0.5 * (b + lo)))
        beta[active[~done]] = new[~done]
        active = active[~done]
    p = np.exp(-beta[:, None] * d)
    return p / p.sum(1, keepdims=True), beta


def _check_perplexity(n, perplexity):
    if not perplexity > 0:
        raise ValueError(f"tsne: perplexity must be positive, got {perplexity}")
    if perplexity >= n - 1:
        raise ValueError(f"tsne: perplexity {perplexity} needs more than {perplexity + 1:g} points, got {n}; "
                         "lower the perplexity (a third of N or less is usual)")


def joint_affinities_dense(x, perplexity):
    """The symmetric P = (P_cond + P_cond^T) / 2N over all pairs, as a dense (N, N) array."""
    n = x.shape[0]
    d = squared_distances(x)
    off = ~np.eye(n, dtype=bool)
    cond, _ = conditional_affinities(d[off].reshape(n, n - 1), perplexity)
    p = np.zeros((n, n))
    p[off] = cond.ravel()
    return (p + p.T) / (2.0 * n)


def nearest_neighbours(x, k, chunk=512):
    """Indices and squared distances of each row's k nearest other rows (exact, in chunks of
    rows small enough for their distances to stay in a few tens of MB)."""
    n = x.shape[0]
    index = np.empty((n, k), np.int64)
    dist = np.empty((n, k))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        d = squared_distances(x[start:stop], x)
        d[np.arange(stop - start), np.arange(start, stop)] = np.inf
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        pd = np.take_along_axis(d, part, 1)
        order = np.argsort(pd, axis=1)
        index[start:stop] = np.take_along_axis(part, order, 1)
        dist[start:stop] = np.take_along_axis(pd, order, 1)
    return index, dist


def joint_affinities_sparse(x, perplexity):
    """P restricted to the k = min(N-1, 3*perplexity) nearest neighbours, symmetrised and
    normalised like the dense one; returned in CSR form (indptr, indices, values)."""
    n = x.shape[0]
    k = min(n - 1, int(3 * perplexity))
    index, dist = nearest_neighbours(x, k)
    cond, _ = conditional_affinities(dist, perplexity)
    rows = np.repeat(np.arange(n), k)
    cols = index.ravel()
    key = np.concatenate([rows * n + cols, cols * n + rows])
    values = np.concatenate([cond.ravel(), cond.ravel()])
    keys, inverse = np.unique(key, return_inverse=True)
    summed = np.bincount(inverse, weights=values) / (2.0 * n)
    rows, cols = keys // n, keys % n
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, cols.astype(np.int64), summed


def upper_triangle(indptr, indices, values):
    """The entries above the diagonal of a symmetric CSR matrix (column indices as int32)."""
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    keep = indices > rows
    upper = np.zeros_like(indptr)
    np.cumsum(np.bincount(rows[keep], minlength=len(indptr) - 1), out=upper[1:])
    return upper, indices[keep].astype(np.int32), values[keep]


# ----- initialisation -----


def pca_initialisation(x, n_components=2, std=1e-4):
    """The top principal components of x, signs fixed (largest |value| positive), rescaled so
    that the first coordinate has standard deviation ``std`` (openTSNE's rescale)."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(0)
    n, dim = x.shape
    if dim <= n:
        _, vectors = np.linalg.eigh(x.T @ x)
        y = x @ vectors[:, ::-1][:, :n_components]
    else:
        values, vectors = np.linalg.eigh(x @ x.T)
        y = vectors[:, ::-1][:, :n_components] * np.sqrt(np.maximum(values[::-1][:n_components], 0))
    signs = np.sign(y[np.abs(y).argmax(0), np.arange(y.shape[1])])
    y = y * np.where(signs == 0, 1, signs)
    scale = y[:, 0].std()
    return y / scale * std if scale > 0 else y


# ----- gradients -----


def exact_forces(p, y, exaggeration):
    """The KL gradient divided by 4 (exact): sum_j (exag * p_ij - q_ij) w_ij (y_i - y_j),
    w_ij = 1 / (1 + |y_i - y_j|^2), q_ij = w_ij / Z. Also returns Z."""
    w = 1.0 / (1.0 + squared_distances(y))
    np.fill_diagonal(w, 0.0)
    z = w.sum()
    m = (exaggeration * p - w / z) * w
    return m.sum(1)[:, None] * y - m @ y, z


def exact_kl(p, y):
    """KL(P || Q) over all pairs."""
    w = 1.0 / (1.0 + squared_distances(y))
    np.fill_diagonal(w, 0.0)
    q = w / w.sum()
    mask = p > 0
    return float((p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-300))).sum())


def sparse_kl(indptr, indices, values, y, chunk=1024):
    """KL(P || Q) for a sparse P (CSR, every stored entry, as :func:`joint_affinities_sparse`
    returns it) against the exact Q of the embedding ``y`` (Z summed over all pairs, in row
    chunks: O(N^2) time, O(N * chunk) memory). One yardstick for embeddings that different
    approximations (or libraries) produced."""
    y = np.asarray(y, np.float64)
    n = y.shape[0]
    z = 0.0
    for start in range(0, n, chunk):
        block = 1.0 / (1.0 + squared_distances(y[start: start + chunk], y))
        z += block.sum() - block.shape[0]  # the diagonal, q_ii = 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    keep = values > 0
    p, rows, cols = values[keep], rows[keep], np.asarray(indices)[keep]
    d = ((y[rows] - y[cols]) ** 2).sum(1)
    return float((p * (np.log(p) + np.log1p(d))).sum() + p.sum() * math.log(z))


class _Objective:
    """A gradient and KL evaluator; used as a context manager so that threads it holds end."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Release what the evaluator holds (nothing unless it runs threads)."""


class _Exact(_Objective):
    def __init__(self, x, perplexity):
        self.p = joint_affinities_dense(x, perplexity)

    def forces(self, y, exaggeration):
        return exact_forces(self.p, y, exaggeration)[0]

    def kl(self, y):
        return exact_kl(self.p, y)


class _Sparse(_Objective):
    """P on the nearest neighbours (its upper triangle, CSR) and an approximate repulsion
    ``self.repulsion(y)`` -> (F, Z), F[i] = sum_j w_ij^2 (y_i - y_j), Z = sum_{i != j} w_ij;
    ``self.normaliser(y)`` is Z alone.

    Threads: with more than one Numba thread (``numba.get_num_threads()``, all cores unless
    set), the attractive forces and the repulsion's pieces run as tasks on a thread pool of
    that size (Numba loops that release the GIL, NumPy FFTs); every point's result is computed
    by one task in one order, so the embedding does not depend on the thread count. Measured
    against ``prange`` loops on the shared 2-core machine: see benchmarks/README.md."""

    def __init__(self, x, perplexity, name):
        try:
            import numba

            from methods import _tsne_bh
        except ImportError as error:
            raise ImportError(f"{name} t-SNE needs numba: pip install numba ({error}); "
                              "or pass method='exact'") from error
        self.bh = _tsne_bh
        self.indptr, self.indices, self.p = upper_triangle(*joint_affinities_sparse(x, perplexity))
        self.entropy = 2.0 * float((self.p * np.log(np.where(self.p > 0, self.p, 1.0))).sum())  # sum p log p
        self.threads = numba.get_num_threads()
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def forces(self, y, exaggeration):
        args = (y, self.indptr, self.indices, self.p, float(exaggeration))
        attraction = self.pool.submit(self.bh.attractive_forces, *args) if self.pool else None
        repulsive, z = self.repulsion(y)
        attractive = attraction.result() if attraction else self.bh.attractive_forces(*args)
        return attractive - repulsive / z

    def kl(self, y):
        """KL over P's non-zeros, with the approximate Z (the cost the approximation optimises):
        sum p log p + sum p log(1 + d^2) + log Z (sum p = 1)."""
        log_terms = 2.0 * self.bh.sparse_log_terms(y, self.indptr, self.indices, self.p)
        return self.entropy + log_terms + math.log(self.normaliser(y))

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()


class _BarnesHut(_Sparse):
    def __init__(self, x, perplexity, theta):
        super().__init__(x, perplexity, "Barnes-Hut")
        self.theta = theta

    def repulsion(self, y):
        """The tree walk in one range of points per thread (the tree's leaf order keeps each
        range's walks on nearby cells)."""
        n = y.shape[0]
        tree = self.bh.build_quadtree(y)
        force, sum_q = np.empty((n, 2)), np.empty(n)
        bounds = np.linspace(0, n, self.threads + 1).astype(int)
        walks = [(y, *tree, self.theta, start, stop, force, sum_q) for start, stop in zip(bounds[:-1], bounds[1:])]
        if self.pool is None:
            for walk in walks:
                self.bh.repulsive_forces(*walk)
        else:
            for task in [self.pool.submit(self.bh.repulsive_forces, *walk) for walk in walks]:
                task.result()
        return force, sum_q.sum()

    def normaliser(self, y):
        return self.repulsion(y)[1]


class _Interpolation(_Sparse):
    """FIt-SNE (``methods/_tsne_fft.py``)."""

    def __init__(self, x, perplexity):
        super().__init__(x, perplexity, "FFT-interpolation")
        from methods import _tsne_fft

        self.interpolation = _tsne_fft.Repulsion()

    def repulsion(self, y):
        return self.interpolation(y, self.pool)

    def normaliser(self, y):
        return self.interpolation.normaliser(y)


# ----- the optimiser -----


def _initial_embedding(init, x, seed):
    n = x.shape[0]
    if isinstance(init, str):
        if init == "pca":
            return pca_initialisation(x)
        if init == "random":
            return np.random.default_rng(seed).normal(0.0, 1e-4, (n, 2))
        raise ValueError(f"tsne: init must be 'pca', 'random' or an (N, 2) array, got {init!r}")
    y = np.array(init, np.float64)
    if y.shape != (n, 2):
        raise ValueError(f"tsne: an init array must have shape ({n}, 2), got {y.shape}")
    return y


def tsne(features, perplexity=30.0, n_iter=1000, early_exaggeration=12.0, early_exaggeration_iter=250,
         learning_rate="auto", initial_momentum=0.5, final_momentum=0.8, init="pca", method="auto",
         theta=0.5, max_step_norm=5.0, min_gain=0.01, seed=0, images=None, labels=None, verbose=None):
    """Embed ``features`` (N, D) in 2-D with t-SNE; returns a :class:`TSNEResult`.

    ``method``: "exact" (O(N^2) gradient, van der Maaten & Hinton 2008), "barnes-hut" (O(N log N),
    van der Maaten 2014, needs numba), "fft" (interpolation, O(N) plus a fixed-size FFT grid,
    Linderman et al. 2019, needs numba) or "auto": the fastest here for the N (exact below
    ``EXACT_BELOW`` points, Barnes-Hut below ``FFT_FROM``, FFT from there).
    ``learning_rate="auto"`` is max(N / exaggeration, 50) in each phase (openTSNE). ``init`` is
    "pca", "random" (N(0, 1e-4^2), drawn from ``seed``) or an (N, 2) array. ``images`` (N, H, W[, 3]
    uint8) and ``labels`` (N,) are kept for the picture. Ctrl-C stops early and keeps the result.
    """
    x = np.asarray(features, np.float64)
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1) if x.ndim > 2 else x
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"tsne: features must have shape (N, D) with N >= 2, got {np.shape(features)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("tsne: features contain NaN or infinite values")
    n = x.shape[0]
    _check_perplexity(n, perplexity)
    if early_exaggeration_iter > n_iter:
        raise ValueError(f"tsne: early_exaggeration_iter ({early_exaggeration_iter}) exceeds n_iter ({n_iter})")
    if method == "auto":
        method = "exact" if n < EXACT_BELOW else "barnes-hut" if n < FFT_FROM else "fft"
    if method not in ("exact", "barnes-hut", "fft"):
        raise ValueError(f"tsne: method must be 'auto', 'exact', 'barnes-hut' or 'fft', got {method!r}")
    if images is not None and len(images) != n:
        raise ValueError(f"tsne: {len(images)} images for {n} feature vectors")
    if labels is not None and len(labels) != n:
        raise ValueError(f"tsne: {len(labels)} labels for {n} feature vectors")

    start = time.perf_counter()
    y = _initial_embedding(init, x, seed)
    if method == "exact":
        objective = _Exact(x, perplexity)
    elif method == "barnes-hut":
        objective = _BarnesHut(x, perplexity, theta)
    else:
        objective = _Interpolation(x, perplexity)
    affinity_seconds = time.perf_counter() - start

    update = np.zeros_like(y)
    gains = np.ones_like(y)
    kl_history = []
    steps = Progress(range(n_iter), f"t-SNE ({method}, N={n})", verbose=verbose)
    done = 0
    with objective:
        try:
            for it in steps:
                early = it < early_exaggeration_iter
                exaggeration = early_exaggeration if early else 1.0
                momentum = initial_momentum if early else final_momentum
                lr = max(n / exaggeration, 50.0) if learning_rate == "auto" else float(learning_rate)
                grad = objective.forces(y, exaggeration)
                same = np.sign(grad) == np.sign(update)
                gains = np.maximum(np.where(same, gains * 0.8, gains + 0.2), min_gain)
                update = momentum * update - lr * gains * grad
                if max_step_norm:
                    norm = np.sqrt((update * update).sum(1, keepdims=True))
                    update = np.where(norm > max_step_norm, update * (max_step_norm / np.maximum(norm, 1e-300)), update)
                y = y + update
                y -= y.mean(0)
                done = it + 1
                if done % 50 == 0 or done == n_iter:
                    kl_history.append((done, objective.kl(y)))
                    steps.set(kl=kl_history[-1][1])
        except KeyboardInterrupt:
            pass
        kl = kl_history[-1][1] if kl_history and kl_history[-1][0] == done else objective.kl(y)
    params = dict(perplexity=perplexity, n_iter=n_iter, early_exaggeration=early_exaggeration,
                  early_exaggeration_iter=early_exaggeration_iter, learning_rate=learning_rate,
                  initial_momentum=initial_momentum, final_momentum=final_momentum,
                  init=init if isinstance(init, str) else "array", method=method, theta=theta,
                  max_step_norm=max_step_norm, seed=seed)
    result = TSNEResult(y, kl, images=images, labels=labels, kl_history=kl_history, iterations=done,
                        seconds=time.perf_counter() - start, affinity_seconds=affinity_seconds)
    result.params = params
    return result


class TSNEResult(Result):
    """``coordinates`` (N, 2), ``kl_divergence`` (final KL(P||Q); for Barnes-Hut and FFT the cost
    over P's non-zeros with the approximate Z; :func:`sparse_kl` gives it with the exact Z),
    ``kl_history`` [(iteration, KL)] every 50 iterations; ``images`` and ``labels`` (with
    ``label_names``) for the pictures, when known."""

    technique = "tsne"

    def __init__(self, coordinates, kl_divergence, images=None, labels=None, kl_history=(), iterations=0,
                 seconds=0.0, affinity_seconds=0.0, label_names=None, canvas=2000):
        super().__init__(kl_divergence=kl_divergence, kl_history=list(kl_history), iterations=iterations,
                         seconds=seconds, affinity_seconds=affinity_seconds)
        self.coordinates = coordinates
        self.kl_divergence = kl_divergence
        self.kl_history = list(kl_history)
        self.images = None if images is None else np.asarray(images)
        self.labels = None if labels is None else np.asarray(labels)
        self.label_names = label_names
        self.canvas = canvas

    def _groups(self):
        if self.labels is None:
            return np.zeros(len(self.coordinates), int), ["all points"]
        codes, inverse = np.unique(self.labels, return_inverse=True)
        names = [self.label_names[c] if self.label_names is not None and c < len(self.label_names) else str(c)
                 for c in codes]
        return inverse, names

    def figures(self):
        groups, names = self._groups()
        title = f"t-SNE of {len(self.coordinates)} points, KL = {self.kl_divergence:.3f}"
        out = {"scatter": scatter(self.coordinates, groups, names, title=title)}
        if self.images is not None and len(self.images) <= 400:
            out["thumbnails"] = scatter(self.coordinates, groups, names, title=title,
                                        thumbnails=[rgb(image) for image in self.images])
        return out

    def pictures(self):
        return {"embedding": self.image_map()} if self.images is not None else {}

    def image_map(self, size=None, thumbnail=None):
        """The notes' picture: every image drawn at its t-SNE coordinate (later ones on top), at
        most a 25th of the canvas side (``thumbnail`` pixels if given)."""
        size = size or self.canvas
        images = self.images
        h, w = images.shape[1:3]
        thumb = thumbnail or min(max(h, w), max(8, size // 25))
        rows = (np.arange(thumb) * h) // thumb
        cols = (np.arange(thumb) * w) // thumb
        canvas = np.full((size, size, 3), 255, np.uint8)
        y = self.coordinates
        low, high = y.min(0), y.max(0)
        pos = np.round((y - low) / np.where(high > low, high - low, 1.0) * (size - thumb)).astype(int)
        for image, (col, row) in zip(images, pos):
            top = size - thumb - row
            canvas[top: top + thumb, col: col + thumb] = rgb(image[rows][:, cols])
        return canvas


@technique("tsne", "t-SNE of feature vectors", "van der Maaten & Hinton 2008", [
    Option("layer", "layer", None, "layer whose activations are embedded (default: fc7, else the layer before "
                                   "the output)"),
    Option("perplexity", "float", 30.0, "perplexity (lowered to (N-1)/3 for datasets too small for it)", low=1),
    Option("iterations", "int", 1000, "iterations in all", low=1, high=100_000),
    Option("early_exaggeration", "float", 12.0, "early exaggeration", low=1),
    Option("exaggeration_iterations", "int", 250, "iterations with early exaggeration", low=0),
    Option("learning_rate", "float", None, "step size (default: max(N / exaggeration, 50), openTSNE's rule)",
           low=0, open_low=True),
    Option("method", "choice", "auto", f"gradient: exact, barnes-hut, fft (interpolation, FIt-SNE) or auto "
                                       f"(exact below {EXACT_BELOW} points, barnes-hut below {FFT_FROM}, fft from there)",
           choices=("auto", "exact", "barnes-hut", "fft")),
    Option("theta", "float", 0.5, "Barnes-Hut opening angle", low=0, high=1),
    Option("init", "choice", "pca", "initialisation", choices=("pca", "random")),
    Option("seed", "int", 0, "seed of the random initialisation", low=0),
    Option("precision", "choice", "float32", "how the features are stored; float16 halves a folder scan's disk "
                                             "and memory", choices=("float32", "float16")),
], inputs="dataset")
def tsne_embedding(model, dataset, *, layer, perplexity, iterations, early_exaggeration, exaggeration_iterations,
                   learning_rate, method, theta, init, seed, precision):
    """t-SNE of ``layer``'s activations over a dataset (a Dataset, images, or a folder path, whose
    features and thumbnails are streamed into the scan cache: :mod:`methods.lib.scan`), as a
    :class:`TSNEResult` (the lecture notes' picture: each image placed at its coordinate)."""
    dataset = as_dataset(model, dataset)
    layer = layer or feature_layer(model)
    model.check_layers([layer])
    images = dataset.images
    works = [LayerFeatures(layer, precision)]
    if isinstance(images, FolderImages):  # the pictures draw thumbnails of at most a 25th of the 2000 px canvas
        works.append(Thumbnails(min(THUMBNAIL, max(images.shape[1:3]))))
    stores = scan(model, dataset, works, batch_size_for(model, images, layer), f"t-SNE features {layer}")
    features = stores[0].array("features")
    if len(stores) > 1:
        images = stores[1].array("thumbnails")
    if 3 * perplexity > len(features) - 1:  # a small dataset (e.g. the photo sample for VGG): lower it
        perplexity = max(1.0, (len(features) - 1) / 3)
    exaggeration_iterations = min(exaggeration_iterations, iterations)
    result = tsne(features, perplexity=perplexity, n_iter=iterations, early_exaggeration=early_exaggeration,
                  early_exaggeration_iter=exaggeration_iterations, learning_rate=learning_rate or "auto",
                  method=method, theta=theta, init=init, seed=seed, images=images, labels=dataset.labels)
    result.label_names = dataset.names
    result.params = {"layer": layer, "perplexity": perplexity, "exaggeration_iterations": exaggeration_iterations,
                     "learning_rate": learning_rate or "max(N / exaggeration, 50)", "method": result.params["method"]}
    return result
