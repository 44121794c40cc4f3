"""Numba kernels for Barnes-Hut t-SNE (van der Maaten 2014), and the attractive forces and KL
terms over the sparse P that the Barnes-Hut and the FFT methods share; imported only when one
of them is used.

A quadtree is rebuilt from the 2-D embedding every iteration (O(N log N)); each point then
walks it and treats a cell as one point at the cell's centre of mass when the cell is small
seen from the point (cell side / distance < theta). The attractive forces run over the upper
triangle of the symmetric affinity matrix P (CSR).

Every loop here is serial and releases the GIL: ``methods.tsne`` runs them as tasks on a
thread pool (the tree walk split into ranges of points, the attractive forces beside it), one
synchronisation per iteration. ``prange`` loops were slower on this project's shared 2-core
machine: the walk and the attractive forces as ``prange`` loops ran 10,000 points x 1000
iterations in 135 s (70 s CPU) against 61 s (39 s CPU) serially, threads waiting for each
other at each of the ~3000 barriers.

Node layout (arrays indexed by node): ``centre`` (cx, cy), ``half`` (half side), ``com``
(centre of mass), ``mass`` (number of points), ``child`` (four children, -1 for a leaf),
``point`` (the point a leaf holds; coincident points share one leaf and add to its mass).
"""

import numpy as np
from numba import njit

MAX_DEPTH = 60


@njit(cache=True)
def _grow(array, size):
    shape = (size,) + array.shape[1:]
    out = np.empty(shape, array.dtype)
    out[: array.shape[0]] = array
    return out


@njit(cache=True)
def build_quadtree(y):
    """Insert every row of ``y`` (N, 2) into a quadtree; returns its node arrays (trimmed)."""
    n = y.shape[0]
    cap = 4 * n + 8
    centre = np.zeros((cap, 2))
    half = np.zeros(cap)
    com = np.zeros((cap, 2))
    mass = np.zeros(cap)
    child = -np.ones((cap, 4), np.int64)
    point = -np.ones(cap, np.int64)
    low0, low1 = y[:, 0].min(), y[:, 1].min()
    high0, high1 = y[:, 0].max(), y[:, 1].max()
    centre[0, 0], centre[0, 1] = 0.5 * (low0 + high0), 0.5 * (low1 + high1)
    half[0] = 0.5 * max(high0 - low0, high1 - low1) * (1 + 1e-5) + 1e-12
    used = 1
    for p in range(n):
        px, py = y[p, 0], y[p, 1]
        node, depth = 0, 0
        while True:
            m = mass[node]
            com[node, 0] = (com[node, 0] * m + px) / (m + 1)
            com[node, 1] = (com[node, 1] * m + py) / (m + 1)
            mass[node] = m + 1
            if child[node, 0] == -1:  # a leaf
                if m == 0:
                    point[node] = p
                    break
                q = point[node]
                if depth >= MAX_DEPTH or (y[q, 0] == px and y[q, 1] == py):
                    break  # coincident points (or too deep): one leaf of larger mass
                if used + 4 > cap:
                    cap *= 2
                    centre, half, com, mass = _grow(centre, cap), _grow(half, cap), _grow(com, cap), _grow(mass, cap)
                    child, point = _grow(child, cap), _grow(point, cap)
                h = 0.5 * half[node]
                for c in range(4):
                    k = used + c
                    centre[k, 0] = centre[node, 0] + (h if c & 1 else -h)
                    centre[k, 1] = centre[node, 1] + (h if c & 2 else -h)
                    half[k], mass[k], com[k, 0], com[k, 1] = h, 0.0, 0.0, 0.0
                    child[k, 0], child[k, 1], child[k, 2], child[k, 3], point[k] = -1, -1, -1, -1, -1
                    child[node, c] = k
                used += 4
                cq = (1 if y[q, 0] >= centre[node, 0] else 0) + (2 if y[q, 1] >= centre[node, 1] else 0)
                moved = child[node, cq]
                point[moved], mass[moved] = q, m
                com[moved, 0], com[moved, 1] = y[q, 0], y[q, 1]
                point[node] = -1
            c = (1 if px >= centre[node, 0] else 0) + (2 if py >= centre[node, 1] else 0)
            node = child[node, c]
            depth += 1
    order = leaf_order(child[:used], point[:used], n)
    return half[:used].copy(), com[:used].copy(), mass[:used].copy(), child[:used].copy(), order


@njit(cache=True)
def leaf_order(child, point, n):
    """The points in depth-first leaf order (points sharing a leaf with another are appended last)."""
    order = np.empty(n, np.int64)
    seen = np.zeros(n, np.bool_)
    stack = np.empty(4 * MAX_DEPTH + 8, np.int64)
    stack[0] = 0
    top, count = 1, 0
    while top > 0:
        top -= 1
        node = stack[top]
        if child[node, 0] == -1:
            p = point[node]
            if p >= 0:
                order[count] = p
                seen[p] = True
                count += 1
        else:
            for c in range(3, -1, -1):
                stack[top] = child[node, c]
                top += 1
    for p in range(n):  # coincident points: only one of them is a leaf's point
        if not seen[p]:
            order[count] = p
            count += 1
    return order


@njit(cache=True, nogil=True)
def repulsive_forces(y, half, com, mass, child, order, theta, start, stop, force, sum_q):
    """For the points order[start:stop], into force and sum_q: sum_j q_ij^2 (y_i - y_j) with
    q_ij = 1/(1+|y_i-y_j|^2) unnormalised, and sum_j q_ij. Points are visited in ``order`` (the
    tree's leaf order), so consecutive walks touch the same cells."""
    theta2 = theta * theta
    for t in range(start, stop):
        i = order[t]
        stack = np.empty(4 * MAX_DEPTH + 8, np.int64)
        stack[0] = 0
        top = 1
        fx, fy, sq = 0.0, 0.0, 0.0
        while top > 0:
            top -= 1
            node = stack[top]
            m = mass[node]
            if m == 0:
                continue
            dx, dy = y[i, 0] - com[node, 0], y[i, 1] - com[node, 1]
            d2 = dx * dx + dy * dy
            side = 2.0 * half[node]
            if child[node, 0] == -1 or side * side < theta2 * d2:
                if child[node, 0] == -1 and d2 == 0.0:
                    sq += m - 1.0  # the leaf holding point i (and points on top of it): q = 1, no force
                    continue
                q = 1.0 / (1.0 + d2)
                sq += m * q
                fx += m * q * q * dx
                fy += m * q * q * dy
            else:
                for c in range(4):
                    stack[top] = child[node, c]
                    top += 1
        force[i, 0], force[i, 1] = fx, fy
        sum_q[i] = sq


@njit(cache=True, nogil=True)
def attractive_forces(y, indptr, indices, p, exaggeration):
    """Per point: sum_j exaggeration * p_ij q_ij (y_i - y_j), q_ij = 1 / (1 + |y_i - y_j|^2), over
    the sparse symmetric P given by its upper triangle (CSR rows i, columns j > i): each stored
    pair pulls both its points, so P is read once per iteration (half the memory traffic of the
    full matrix, which bounds this loop). Serial: the pair's second write would race."""
    n = y.shape[0]
    force = np.zeros((n, 2))
    for i in range(n):
        yi0, yi1 = y[i, 0], y[i, 1]
        f0, f1 = 0.0, 0.0
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            d0, d1 = yi0 - y[j, 0], yi1 - y[j, 1]
            w = p[k] / (1.0 + d0 * d0 + d1 * d1)
            f0 += w * d0
            f1 += w * d1
            force[j, 0] -= w * d0
            force[j, 1] -= w * d1
        force[i, 0] += f0
        force[i, 1] += f1
    return force * exaggeration


@njit(cache=True, nogil=True)
def sparse_log_terms(y, indptr, indices, p):
    """sum_ij p_ij log(1 + |y_i - y_j|^2) over the stored entries of a sparse P (2-D); with
    sum p log p and log Z this makes KL(P || Q)."""
    s = 0.0
    for i in range(y.shape[0]):
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            d0, d1 = y[i, 0] - y[j, 0], y[i, 1] - y[j, 1]
            s += p[k] * np.log1p(d0 * d0 + d1 * d1)
    return s
