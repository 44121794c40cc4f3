"""Numba kernels for k-means (Lloyd's iteration), imported by ``methods.kmeans`` when it runs.

One pass over the data does Lloyd's two steps at once, chunk by chunk, in the layout of
scikit-learn's ``_lloyd_iter_chunked_dense``: for a chunk of ``CHUNK`` points the dot products with
every centre come from one matrix product (BLAS, through NumPy: the bulk of the arithmetic, at the
machine's best speed), then one compiled loop finds each point's nearest centre as the smallest
||c||^2 - 2 x.c, counts the labels that changed and adds the point to its centre's running sum.
The loop is serial: on the shared two-core machine this was written on, Numba's thread pool
waiting at barriers cost ten times what it saved (a pass over 20,000 points took 0.08 s on one
thread and 0.8 s on two), and BLAS already uses the cores for the products.
"""

import numpy as np
from numba import njit

#: Points per matrix product: large enough for BLAS to run at speed, small enough for the cache.
CHUNK = 4096


@njit(cache=True)
def assign_chunk(x, dots, center_norms, labels, distances, sums, counts):
    """For the rows of ``x`` (m, D) with ``dots`` = x @ centers.T (m, K): write each row's nearest
    centre into ``labels`` (m,) and its squared distance (||x||^2 + ||c||^2 - 2 x.c, clipped at
    0) into ``distances``; add the row to ``sums[label]`` (K, D, float64) and one to
    ``counts[label]``. Returns how many labels changed."""
    m, d = x.shape
    k = dots.shape[1]
    changed = 0
    for i in range(m):
        best = 0
        best_value = center_norms[0] - 2.0 * dots[i, 0]
        for j in range(1, k):
            value = center_norms[j] - 2.0 * dots[i, j]
            if value < best_value:
                best, best_value = j, value
        if labels[i] != best:
            changed += 1
            labels[i] = best
        counts[best] += 1
        norm = 0.0
        for f in range(d):
            v = np.float64(x[i, f])
            sums[best, f] += v
            norm += v * v
        distances[i] = max(norm + best_value, 0.0)
    return changed


def lloyd_pass(x, centers, labels, distances):
    """Assign every row of ``x`` (N, D) to its nearest row of ``centers`` (K, D) and sum the rows
    per centre; ``labels`` and ``distances`` (N,) are written. Returns (sums (K, D) float64,
    counts (K,), number of labels that changed)."""
    k, d = centers.shape
    center_t = np.ascontiguousarray(centers.T)
    center_norms = np.einsum("ij,ij->i", centers, centers, dtype=np.float64)
    sums = np.zeros((k, d))
    counts = np.zeros(k, np.int64)
    changed = 0
    for start in range(0, x.shape[0], CHUNK):
        stop = min(start + CHUNK, x.shape[0])
        dots = x[start:stop] @ center_t
        changed += assign_chunk(x[start:stop], dots, center_norms, labels[start:stop], distances[start:stop],
                                sums, counts)
    return sums, counts, changed


@njit(cache=True)
def exact_distances(x, centers, labels):
    """||x_i - c_{label_i}||^2 for every row, summed difference by difference in float64: the
    inertia reported, free of the expansion's cancellation."""
    n, d = x.shape
    out = np.empty(n)
    for i in range(n):
        c = labels[i]
        total = 0.0
        for f in range(d):
            diff = np.float64(x[i, f]) - np.float64(centers[c, f])
            total += diff * diff
        out[i] = total
    return out
