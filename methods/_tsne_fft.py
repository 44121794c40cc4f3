"""Interpolation-based t-SNE repulsion (FIt-SNE), imported only when ``method="fft"`` is used.

Linderman, Rachh, Hoskins, Steinerberger & Kluger 2019, "Fast interpolation-based t-SNE for
improved visualization of single-cell RNA-seq data", Nature Methods 16. The repulsive part of
the t-SNE gradient is a sum over all pairs of a smooth kernel of y_i - y_j. The embedding's
bounding square is cut into ``n_boxes`` x ``n_boxes`` equal boxes, each holding ``nodes`` x
``nodes`` equispaced interpolation nodes (at (k + 1/2) / nodes of the box side), so that all
nodes form one equispaced grid. Each point spreads a unit charge to the nodes of its box with
Lagrange weights; the grid potentials are a discrete convolution (a Toeplitz product) done by
FFT on a grid padded to twice the size; each point reads its potential back with the same
weights. O(N nodes^2 + G log G) for G grid nodes instead of O(N^2).

Three kernels of d = y_i - y_j are convolved: 1 / (1 + |d|^2) (its sum gives the normaliser
Z), and d_x / (1 + |d|^2)^2, d_y / (1 + |d|^2)^2 (the unnormalised repulsive force). FIt-SNE
convolves 1 / (1 + |d|^2)^2 with the charges 1, y_x, y_y and |y|^2 and forms the force as
y_i phi_1 - phi_y; that difference cancels badly far from the origin (an error of e in the
potentials becomes |y| e in the force), which the vector kernels avoid, at one charge grid
and three FFTs fewer per iteration.

Box side: ``box_width`` (1, openTSNE's ``ints_in_interval``) once the embedding is wider than
``min_boxes`` (50, openTSNE's ``min_num_intervals``) of them, smaller before; the side is kept
on a ladder of 2^(1/8) steps and the box count rounded up to a product of 2, 3 and 5, so the
kernels' transforms are reused across iterations and every FFT has a fast length. 3 nodes per
box is FIt-SNE's and openTSNE's default.

Threads: the spreading, the read-back and the attractive forces are short Numba loops; run as
``prange`` loops on this project's shared 2-core machine they cost more in synchronisation than
they save, so they are serial and release the GIL, and the two cores are used by running the
attractive forces (in ``methods/_tsne_bh.py``) on a second thread while NumPy's FFTs (which also
release the GIL) run on the first; see :func:`repulsion`.
"""

import math

import numpy as np
from numba import njit

#: Lagrange nodes per box side (FIt-SNE's and openTSNE's default).
NODES = 3
#: Fewest boxes per side (openTSNE's ``min_num_intervals``).
MIN_BOXES = 50
#: Largest box side in embedding units (openTSNE's ``ints_in_interval``).
BOX_WIDTH = 1.0
#: Box sides below BOX_WIDTH are rounded up to a power of this (kernel transforms reused).
LADDER = 2.0 ** 0.125


def smooth_size(n):
    """The smallest integer >= n whose only prime factors are 2, 3 and 5 (a fast FFT length)."""
    n = max(int(n), 1)
    while True:
        m = n
        for f in (2, 3, 5):
            while m % f == 0:
                m //= f
        if m == 1:
            return n
        n += 1


def grid_geometry(side, min_boxes=MIN_BOXES, box_width=BOX_WIDTH):
    """(number of boxes per side, box side) for an embedding whose bounding square has ``side``."""
    if side > min_boxes * box_width:
        return math.ceil(side / box_width), box_width
    side = max(side, 1e-12)
    step = math.ceil(math.log(side / min_boxes / box_width) / math.log(LADDER))
    return min_boxes, box_width * LADDER ** step


def kernel_spectra(length, spacing):
    """The DFTs of the two kernels sampled at the node offsets (multiples of ``spacing``) of a
    cyclic grid of ``length`` nodes per side, offsets beyond length / 2 wrapping round to
    negative ones: (2, length, length // 2 + 1) float32. The kernels and the layout are even,
    so the DFTs are real. A linear convolution of a grid of side M <= length / 2 is exact."""
    offsets = np.arange(length, dtype=np.float64)
    offsets[offsets > length / 2] -= length
    d = offsets * spacing
    k1 = 1.0 / (1.0 + d[:, None] ** 2 + d[None, :] ** 2)
    return np.fft.rfft2(np.stack([k1, k1 * k1])).real.astype(np.float32)


def box_kernel(box, nodes):
    """Kernel 1 at the node offsets within one box, (2 nodes - 1, 2 nodes - 1), offset k at
    index k + nodes - 1: what a point's interpolated potential holds of its own charge."""
    d = np.arange(1 - nodes, nodes) * (box / nodes)
    return 1.0 / (1.0 + d[:, None] ** 2 + d[None, :] ** 2)


@njit(cache=True, nogil=True)
def _lagrange(u, nodes, out):
    """The ``nodes`` Lagrange polynomials of the nodes (k + 1/2) / nodes at u in [0, 1], into out."""
    for k in range(nodes):
        t_k = (k + 0.5) / nodes
        v = 1.0
        for j in range(nodes):
            if j != k:
                t_j = (j + 0.5) / nodes
                v *= (u - t_j) / (t_k - t_j)
        out[k] = v


@njit(cache=True, nogil=True)
def spread(y, own, low0, low1, box, n_boxes, nodes):
    """Each point's box and Lagrange weights; the grid (3, M, M) of the charges 1, y_x - c_x and
    y_y - c_y spread to the nodes (c: the grid's centre, so the charges stay small); and the
    sum over points of their own charge's interpolated kernel-1 potential (``own``:
    :func:`box_kernel`), which the sum of q must not count."""
    n = y.shape[0]
    m = n_boxes * nodes
    c0, c1 = low0 + 0.5 * n_boxes * box, low1 + 0.5 * n_boxes * box
    cells = np.empty((n, 2), np.int64)
    weights = np.empty((n, 2, nodes))
    grid = np.zeros((3, m, m), np.float32)
    auto = np.empty((2, 2 * nodes - 1))
    self_q = 0.0
    for i in range(n):
        u0 = (y[i, 0] - low0) / box
        u1 = (y[i, 1] - low1) / box
        b0 = min(int(u0), n_boxes - 1)
        b1 = min(int(u1), n_boxes - 1)
        cells[i, 0], cells[i, 1] = b0, b1
        w0, w1 = weights[i, 0], weights[i, 1]
        _lagrange(u0 - b0, nodes, w0)
        _lagrange(u1 - b1, nodes, w1)
        q0, q1 = y[i, 0] - c0, y[i, 1] - c1
        for a in range(nodes):
            for b in range(nodes):
                w = w0[a] * w1[b]
                r0, r1 = b0 * nodes + a, b1 * nodes + b
                grid[0, r0, r1] += w
                grid[1, r0, r1] += w * q0
                grid[2, r0, r1] += w * q1
        # own potential: sum_{a,b,a',b'} w0[a] w1[b] K(a - a', b - b') w0[a'] w1[b'], summed by
        # offset (the weights are a product, so their autocorrelations factor)
        auto[:] = 0.0
        for a in range(nodes):
            for b in range(nodes):
                auto[0, a - b + nodes - 1] += w0[a] * w0[b]
                auto[1, a - b + nodes - 1] += w1[a] * w1[b]
        for a in range(2 * nodes - 1):
            for b in range(2 * nodes - 1):
                self_q += auto[0, a] * auto[1, b] * own[a, b]
    return cells, weights, grid, self_q


@njit(cache=True, nogil=True)
def read_back(y, potentials, cells, weights, low0, low1, box, n_boxes, nodes):
    """The repulsive force on each point (N, 2) from the kernel-2 potentials (3, M, M) of the
    charges 1, y_x - c_x, y_y - c_y, interpolated from the nodes of its box. A point's own
    charge cancels from it exactly."""
    n = y.shape[0]
    c0, c1 = low0 + 0.5 * n_boxes * box, low1 + 0.5 * n_boxes * box
    force = np.empty((n, 2))
    for i in range(n):
        r0, r1 = cells[i, 0] * nodes, cells[i, 1] * nodes
        s0, s1, s2 = 0.0, 0.0, 0.0
        for a in range(nodes):
            for b in range(nodes):
                w = weights[i, 0, a] * weights[i, 1, b]
                s0 += w * potentials[0, r0 + a, r1 + b]
                s1 += w * potentials[1, r0 + a, r1 + b]
                s2 += w * potentials[2, r0 + a, r1 + b]
        force[i, 0] = (y[i, 0] - c0) * s0 - s1
        force[i, 1] = (y[i, 1] - c1) * s0 - s2
    return force


def _pair_sum(f, spectrum, length):
    """sum_a C(a) (K * C)(a) over the cyclic grid, by Parseval, from the half spectrum f of C."""
    power = f.real.astype(np.float64) ** 2 + f.imag.astype(np.float64) ** 2
    power[:, 1: (length + 1) // 2] *= 2.0  # these columns stand for their mirror images too
    return float(np.einsum("ij,ij->", power, spectrum, dtype=np.float64)) / (length * length)


def _potential(charges, spectra, length, k, out):
    """Kernel 2 convolved with charge grid k into out[k], by FFT on the zero-padded cyclic grid;
    for the unit charges (k = 0) also returns their kernel-1 pair sum (the sum of q over all
    pairs, each point with itself included)."""
    m = charges.shape[1]
    f = np.fft.rfft2(charges[k], s=(length, length))
    out[k] = np.fft.irfft2(f * spectra[1], s=(length, length))[:m, :m]
    return _pair_sum(f, spectra[0], length) if k == 0 else 0.0


class Repulsion:
    """``repulsion(y, pool=None)`` -> (F, Z): F[i] = sum_j (y_i - y_j) / (1 + |y_i - y_j|^2)^2
    and Z = sum_{i != j} 1 / (1 + |y_i - y_j|^2), both by interpolation; ``normaliser(y)`` is Z
    alone (one FFT). The three FFT convolutions run as tasks on ``pool`` (a
    ``concurrent.futures`` executor) when given. Keeps the kernels' transforms for the last grid."""

    def __init__(self, nodes=NODES, min_boxes=MIN_BOXES, box_width=BOX_WIDTH):
        self.nodes, self.min_boxes, self.box_width = nodes, min_boxes, box_width
        self._key = None

    def _spread(self, y):
        low = y.min(0)
        side = float((y.max(0) - low).max())
        n_boxes, box = grid_geometry(side * (1 + 1e-9), self.min_boxes, self.box_width)
        length = smooth_size(2 * n_boxes * self.nodes)
        if self._key != (length, box):
            self._key = (length, box)
            self._spectra = kernel_spectra(length, box / self.nodes)
            self._own = box_kernel(box, self.nodes)
        geometry = (low[0], low[1], box, n_boxes, self.nodes)
        return geometry, length, spread(y, self._own, *geometry)

    def __call__(self, y, pool=None):
        geometry, length, (cells, weights, charges, self_q) = self._spread(y)
        potentials = np.empty_like(charges)
        args = [(charges, self._spectra, length, k, potentials) for k in range(3)]
        if pool is None:
            sums = [_potential(*a) for a in args]
        else:
            sums = [task.result() for task in [pool.submit(_potential, *a) for a in args]]
        return read_back(y, potentials, cells, weights, *geometry), sums[0] - self_q

    def normaliser(self, y):
        _, length, (_, _, charges, self_q) = self._spread(y)
        return _pair_sum(np.fft.rfft2(charges[0], s=(length, length)), self._spectra[0], length) - self_q
