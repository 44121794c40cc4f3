"""Interpolation-based t-SNE repulsion (FIt-SNE), imported only when ``method="fft"`` is used.

Linderman, Rachh, Hoskins, Steinerberger & Kluger 2019, "Fast interpolation-based t-SNE for
improved visualization of single-cell RNA-seq data", Nature Methods 16. The repulsive part of
the t-SNE gradient sums a smooth kernel of y_i - y_j over all pairs. The embedding's bounding
square is cut into ``n_boxes`` x ``n_boxes`` equal boxes, each holding ``nodes`` x ``nodes``
interpolation nodes at (k + 1/2) / nodes of its side, so that all nodes form one equispaced
grid. Each point spreads its charges to the nodes of its box with Lagrange weights; the grid
potentials are a discrete convolution with the kernel (a Toeplitz product), done by FFT on
the grid zero-padded to twice its side; each point reads its potentials back with the same
weights. O(N nodes^2 + G log G) for G grid nodes instead of O(N^2).

Two kernels, as in FIt-SNE: 1 / (1 + |d|^2)^2 with the charges 1, y_x and y_y gives the
unnormalised repulsive force y_i phi_1 - (phi_x, phi_y) (a point's own charge cancels from it
exactly); 1 / (1 + |d|^2) with the unit charges gives the normaliser Z = sum_{i != j} q_ij,
read off the spectra by Parseval (no inverse FFT) less each point's own interpolated charge
(FIt-SNE subtracts the exact 1 per point, whose interpolation error swamps the small sums of
isolated points: Z off by 7.6% on 2,000 scattered points, against 0.02% here). Charges are
taken relative to the grid's centre, so they stay small.

Grid: ``n_boxes`` = max(``min_boxes``, side / ``box_width``) boxes of side side / n_boxes
(openTSNE's ``min_num_intervals`` = 50 and ``ints_in_interval`` = 1, FIt-SNE's 3 nodes). The
grid follows the embedding as it grows, so the kernels' transforms are recomputed each call.
Keeping boxes of fixed size instead (the transforms reused while the points drift through a
fixed grid) made every point's interpolation error change from one iteration to the next, and
the embedding ended 1.7% higher in KL (500 points, 4 seeds: 0.3367 against 0.3312), although
each gradient was as accurate. The FFTs run in single precision (measured on 10,000 points:
the final KL differs by 0.1%, the whole run takes 20% less CPU); spreading and reading back
in double.

Threads: given a ``concurrent.futures`` pool, the kernels' two transforms and the three charge
convolutions run as tasks on it (NumPy's FFTs release the GIL); the spreading and reading back
(tens of microseconds per thousand points) stay on the calling thread.
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
#: The FFTs' floating-point type.
PRECISION = np.float32


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


def kernel_spectrum(length, spacing, power):
    """The DFT of 1 / (1 + |d|^2)^power sampled at the node offsets d (multiples of ``spacing``)
    of a cyclic grid of ``length`` nodes per side, offsets beyond length / 2 wrapping round to
    negative ones: (length, length // 2 + 1), as ``rfft2`` lays it out. A linear convolution
    of a grid of side M <= length / 2 with it is exact. The kernel is even along both axes, so
    its DFT is real and even: it is made from the quarter of non-negative offsets by real
    FFTs of its distinct rows, then of the distinct columns (a quarter of rfft2's work)."""
    half = length // 2 + 1
    mirror = slice(length - half, 0, -1)  # the offsets that wrap round, as their positive twins
    d2 = (np.arange(half) * spacing) ** 2
    quarter = ((1.0 / (1.0 + d2[:, None] + d2[None, :])) ** power).astype(PRECISION)
    rows = np.fft.rfft(np.concatenate([quarter, quarter[:, mirror]], axis=1), axis=1).real
    rows = np.ascontiguousarray(rows.T)
    both = np.fft.rfft(np.concatenate([rows, rows[:, mirror]], axis=1), axis=1).real.T
    return np.concatenate([both, both[mirror]], axis=0)


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
def spread(y, own, grid, low0, low1, box, n_boxes, nodes):
    """Each point's box and Lagrange weights; the grid (3, M, M) of the charges 1, y_x - c_x and
    y_y - c_y spread to the nodes (c: the grid's centre, so the charges stay small); and the
    sum over points of their own charge's interpolated kernel-1 potential (``own``:
    :func:`box_kernel`), which the sum of q must not count."""
    n = y.shape[0]
    c0, c1 = low0 + 0.5 * n_boxes * box, low1 + 0.5 * n_boxes * box
    cells = np.empty((n, 2), np.int64)
    weights = np.empty((n, 2, nodes))
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


def _potential(charges, spectrum, length, out):
    """The kernel with ``spectrum`` convolved with one charge grid into ``out``, by FFT on the
    zero-padded cyclic grid (the inverse transforms only the rows read back); returns the
    charges' half spectrum."""
    m = charges.shape[0]
    f = np.fft.rfft2(charges, s=(length, length))
    out[:] = np.fft.irfft(np.fft.ifft(f * spectrum, axis=0)[:m], n=length, axis=1)[:, :m]
    return f


class _Now:
    """A finished call, with the ``result()`` of a future (the pool-less path)."""

    def __init__(self, function, *args):
        self.value = function(*args)

    def result(self):
        return self.value


class Repulsion:
    """``repulsion(y, pool=None)`` -> (F, Z): F[i] = sum_j (y_i - y_j) / (1 + |y_i - y_j|^2)^2
    and Z = sum_{i != j} 1 / (1 + |y_i - y_j|^2), both by interpolation; ``normaliser(y)`` is
    Z alone (two FFTs). The FFT work runs as tasks on ``pool`` (a ``concurrent.futures``
    executor) when one is given."""

    def __init__(self, nodes=NODES, min_boxes=MIN_BOXES, box_width=BOX_WIDTH):
        self.nodes, self.min_boxes, self.box_width = nodes, min_boxes, box_width

    def _grid(self, y):
        """(low corner x, low corner y, box side, boxes per side, nodes), FFT length."""
        low = y.min(0)
        side = max(float((y.max(0) - low).max()), 1e-12) * (1 + 1e-9)  # the largest point inside
        n_boxes = max(self.min_boxes, math.ceil(side / self.box_width))
        return (low[0], low[1], side / n_boxes, n_boxes, self.nodes), smooth_size(2 * n_boxes * self.nodes)

    def _spread(self, y, geometry):
        n_boxes, nodes = geometry[3], geometry[4]
        grid = np.zeros((3, n_boxes * nodes, n_boxes * nodes), PRECISION)
        return spread(y, box_kernel(geometry[2], nodes), grid, *geometry)

    def __call__(self, y, pool=None):
        geometry, length = self._grid(y)
        run = _Now if pool is None else pool.submit
        spacing = geometry[2] / self.nodes
        spectrum2 = run(kernel_spectrum, length, spacing, 2)
        spectrum1 = run(kernel_spectrum, length, spacing, 1)
        cells, weights, charges, self_q = self._spread(y, geometry)
        potentials = np.empty_like(charges)
        spectrum2 = spectrum2.result()
        tasks = [run(_potential, charges[k], spectrum2, length, potentials[k]) for k in range(3)]
        charge_spectrum = tasks[0].result()
        z = _pair_sum(charge_spectrum, spectrum1.result(), length) - self_q
        for task in tasks[1:]:
            task.result()
        return read_back(y, potentials, cells, weights, *geometry), z

    def normaliser(self, y):
        geometry, length = self._grid(y)
        _, _, charges, self_q = self._spread(y, geometry)
        spectrum = kernel_spectrum(length, geometry[2] / self.nodes, 1)
        return _pair_sum(np.fft.rfft2(charges[0], s=(length, length)), spectrum, length) - self_q
