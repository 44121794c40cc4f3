"""Winograd F(4x4, 3x3) convolution for stride-1, undilated 3x3 kernels (Lavin & Gray 2016).

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016, compute a
4x4 block of outputs of a 3x3 correlation from a 6x6 input tile d with

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* is the elementwise product)

so each 4x4 output block needs 36 multiplications per (input channel, output channel) pair
instead of 144: a 4x cut in the arithmetic that dominates VGG-style networks. Summed over
input channels, the elementwise products become 36 independent matrix products per image

    M[n, xi] (K, T) = U[xi] (K, C) @ V[n, xi] (C, T),    xi = 0..35,  T = tiles of one image

which go to BLAS (``_gemm.py``). They are per image on purpose: a GEMM's rounding of one
column depends on where the column sits in the matrix, so stacking the tiles of a whole batch
into one product would make an image's result depend on its batch. The three transforms
around the products are the jitted loops below:

* ``weight_transform``: U[xi, k, c] = (G g_kc G^T)[xi], computed in float64 and rounded
  once, because G's entries (1/6, 1/12, 1/24) are not exact in float32;
* ``input_transform``: V[n, xi, c, t] = (B^T d_t B)[xi] for every 6x6 tile d_t of the
  zero-padded input plane (tiles overlap by 2 pixels); done as two 1-D passes (rows, then
  columns); the row pass reads each padded input row at stride 4 (constant offsets, which
  LLVM vectorises with wide loads and shuffles), the column pass reads contiguous runs along
  the tile index. It also notes planes holding a
  NaN or an infinity: the transforms mix all 36 values of a tile, so one non-finite input
  would spread NaN over outputs whose receptive field does not contain it (PyTorch keeps
  NaN and inf where they belong); such images are recomputed by im2col;
* ``output_transform``: y[n, k, 4*ty + r, 4*tx + s] = (A^T m A)[r, s] (+ bias, ReLU), again
  as two 1-D passes into column-phase order, interleaved into the in-bounds output pixels.

Each transform runs ``prange`` over independent (sample, channel) planes: every plane's
tiles write disjoint slots of V, M or y, so there are no races.

The interpolation points are 0, +-1, +-2 and infinity, the choice of Lavin & Gray's F(4x4, 3x3):

    B^T = [[4,  0, -5,  0, 1, 0],      G = [[ 1/4,     0,    0],     A^T = [[1, 1,  1, 1,  1, 0],
           [0, -4, -4,  1, 1, 0],           [-1/6,  -1/6, -1/6],            [0, 1, -1, 2, -2, 0],
           [0,  4, -4, -1, 1, 0],           [-1/6,   1/6, -1/6],            [0, 1,  1, 4,  4, 0],
           [0, -2, -1,  2, 1, 0],           [1/24, 1/12,  1/6],             [0, 1, -1, 8, -8, 1]]
           [0,  2, -1, -2, 1, 0],           [1/24, -1/12, 1/6],
           [0,  4,  0, -5, 0, 1]]           [   0,    0,    1]]

Float32 rounding grows with the larger transform coefficients: on VGG16-sized layers the
error against the float64 direct convolution is about 1e-5 of the output's largest magnitude
(tests/kernels/test_cpu.py and ``python -m benchmarks`` measure it).

The backward pass to the input of a stride-1 3x3 convolution with padding p is itself such a
convolution: of gy, with padding 2 - p, by the kernel flipped in both spatial axes and with
its input and output channels swapped. ``_common.data_gradient_kernel`` builds that kernel.
"""

import numpy as np
from numba import njit, prange

from ._common import threads_for
from ._gemm import per_image_matmul
from ._workspace import scratch

# Every jitted function in this file is compiled for float32 only: Winograd is the float32
# fast path; float64 convolutions (gradient checks) take the exact im2col route.


@njit(cache=True, inline="always")
def _g_row(g0, g1, g2):
    """G @ (g0, g1, g2): the 1-D kernel transform, a 3-vector to a 6-vector (multiplications
    by the reciprocals, which is as exact in float64 as dividing and much faster)."""
    s = (g0 + g2) * (-1.0 / 6.0)
    t = g1 * (1.0 / 6.0)
    a = g0 * (1.0 / 24.0) + g2 * (1.0 / 6.0)
    b = g1 * (1.0 / 12.0)
    return (g0 * 0.25, s - t, s + t, a + b, a - b, g2)


@njit(parallel=True, cache=True)
def weight_transform(w, u):
    """u[i*6 + j, k, c] = (G w[k, c] G^T)[i, j]; w (K, C, 3, 3), u (36, K, C).

    Per output channel k, the C kernels are first gathered tap-major (g[tap, c]), so that
    every step below is a loop along c over contiguous rows, in float64."""
    n_out, n_in = w.shape[0], w.shape[1]
    for kk in prange(n_out):
        k = np.int64(kk)
        g = np.empty((9, n_in), np.float64)
        for c in range(n_in):
            for tap in range(9):
                g[tap, c] = w[k, c, tap // 3, tap % 3]
        # t[i*3 + q] = (G g)[i, q]: the 1-D transform down each of the 3 columns
        t = np.empty((18, n_in), np.float64)
        for q in range(3):
            for c in range(n_in):
                r = _g_row(g[q, c], g[3 + q, c], g[6 + q, c])
                for i in range(6):
                    t[i * 3 + q, c] = r[i]
        # u[i*6 + j] = ((G g) G^T)[i, j]: the same transform along each of the 6 rows
        for i in range(6):
            for c in range(n_in):
                r = _g_row(t[i * 3, c], t[i * 3 + 1, c], t[i * 3 + 2, c])
                for j in range(6):
                    u[i * 6 + j, k, c] = r[j]


@njit(parallel=True, cache=True)
def input_transform(x, v, ph, pw, th, tw, nonfinite, mask, rule):
    """v[n, i*6 + j, c, ty*tw + tx] = (B^T d B)[i, j] for the 6x6 tile d whose corner is
    padded-input pixel (4*ty, 4*tx). x (N, C, H, W) float32, v (N, 36, C, th*tw);
    nonfinite[n*C + c] is set when plane (n, c) holds a NaN or an infinity. With ``rule`` >= 0
    (0 standard, 1 deconvnet, 2 guided) x is a gradient that first goes through that ReLU
    backward rule with ``mask`` (N, C, H, W) bool, as it is read (a data gradient of
    conv + ReLU without a separate pass); ``rule`` -1 reads x as it is."""
    n_batch, n_ch, height, width = x.shape
    hp = 4 * th + 2
    for plane in prange(n_batch * n_ch):
        nc = np.int64(plane)
        n = nc // n_ch
        c = nc % n_ch
        # pass 1, along rows: t[j, h, tx] = (B^T applied to xpad[h, 4tx : 4tx+6])[j], each
        # input row first copied into the zero-padded row buffer a. The six reads per tile
        # are at stride 4 with constant offsets, which LLVM turns into wide loads and
        # shuffles; each inner loop writes one 1-D slice indexed by the bare loop counter,
        # so a single alias check lets it vectorise (with many arrays per loop LLVM gives up).
        # Rows of the padding stay zero (their transform is zero).
        t = np.zeros((6, hp, tw), np.float32)
        a = np.zeros(4 * tw + 2, np.float32)
        bad = False  # v - v is 0 unless v is NaN or infinite (an OR reduction, which vectorises)
        for h in range(min(height, hp - ph)):
            src = x[n, c, h]
            if rule < 0:
                for w in range(width):
                    bad |= src[w] - src[w] != 0.0
                a[pw:pw + width] = src
            else:
                for w in range(width):
                    g = src[w]
                    keep = True
                    if rule != 1:
                        keep = not mask[n, c, h, w] <= 0
                    if rule != 0:
                        keep = keep and not g <= 0
                    g = g if keep else np.float32(0.0)
                    bad |= g - g != 0.0
                    a[pw + w] = g
            o = t[0, h + ph]
            for tx in range(tw):
                o[tx] = 4.0 * a[4 * tx] - 5.0 * a[4 * tx + 2] + a[4 * tx + 4]
            o = t[1, h + ph]
            for tx in range(tw):
                o[tx] = -4.0 * (a[4 * tx + 1] + a[4 * tx + 2]) + a[4 * tx + 3] + a[4 * tx + 4]
            o = t[2, h + ph]
            for tx in range(tw):
                o[tx] = 4.0 * (a[4 * tx + 1] - a[4 * tx + 2]) - a[4 * tx + 3] + a[4 * tx + 4]
            o = t[3, h + ph]
            for tx in range(tw):
                o[tx] = 2.0 * (a[4 * tx + 3] - a[4 * tx + 1]) - a[4 * tx + 2] + a[4 * tx + 4]
            o = t[4, h + ph]
            for tx in range(tw):
                o[tx] = 2.0 * (a[4 * tx + 1] - a[4 * tx + 3]) - a[4 * tx + 2] + a[4 * tx + 4]
            o = t[5, h + ph]
            for tx in range(tw):
                o[tx] = 4.0 * a[4 * tx + 1] - 5.0 * a[4 * tx + 3] + a[4 * tx + 5]
        nonfinite[nc] = bad
        # pass 2, along columns (rows 4ty .. 4ty+5 of t), the same way
        vn = v[n]
        for ty in range(th):
            r = 4 * ty
            p0 = ty * tw
            for j in range(6):
                e = t[j, r:r + 6, :]
                o = vn[j, c, p0:p0 + tw]
                for tx in range(tw):
                    o[tx] = 4.0 * e[0, tx] - 5.0 * e[2, tx] + e[4, tx]
                o = vn[6 + j, c, p0:p0 + tw]
                for tx in range(tw):
                    o[tx] = -4.0 * (e[1, tx] + e[2, tx]) + e[3, tx] + e[4, tx]
                o = vn[12 + j, c, p0:p0 + tw]
                for tx in range(tw):
                    o[tx] = 4.0 * (e[1, tx] - e[2, tx]) - e[3, tx] + e[4, tx]
                o = vn[18 + j, c, p0:p0 + tw]
                for tx in range(tw):
                    o[tx] = 2.0 * (e[3, tx] - e[1, tx]) - e[2, tx] + e[4, tx]
                o = vn[24 + j, c, p0:p0 + tw]
                for tx in range(tw):
                    o[tx] = 2.0 * (e[1, tx] - e[3, tx]) - e[2, tx] + e[4, tx]
                o = vn[30 + j, c, p0:p0 + tw]
                for tx in range(tw):
                    o[tx] = 4.0 * e[1, tx] - 5.0 * e[3, tx] + e[5, tx]


@njit(parallel=True, cache=True)
def output_transform(m, y, bias, relu, th, tw):
    """y[n, k, 4ty + r, 4tx + s] = (A^T m_tile A)[r, s] + bias[k], then max(., 0) if relu.

    m (N, 36, K, th*tw) float32, y (N, K, OH, OW), bias (K,) (zeros for no bias)."""
    n_batch, n_out, oh, ow = y.shape
    full = ow // 4  # tiles whose four columns are all inside the output
    for plane in prange(n_batch * n_out):
        nk = np.int64(plane)
        n = nk // n_out
        k = nk % n_out
        bk = bias[k]
        s = np.empty((4, 6, tw), np.float32)
        o = np.empty((4, 4, tw), np.float32)  # o[col, row, tx]: contiguous along tx
        mn = m[n]
        for ty in range(th):
            p0 = ty * tw
            # pass 1, along i (contiguous in tx): s[r, j, tx] = (A^T m[:, j])[r]
            for j in range(6):
                for tx in range(tw):
                    m0 = mn[j, k, p0 + tx]
                    m1 = mn[6 + j, k, p0 + tx]
                    m2 = mn[12 + j, k, p0 + tx]
                    m3 = mn[18 + j, k, p0 + tx]
                    m4 = mn[24 + j, k, p0 + tx]
                    m5 = mn[30 + j, k, p0 + tx]
                    a = m1 + m2
                    b = m1 - m2
                    cc = m3 + m4
                    d = m3 - m4
                    s[0, j, tx] = m0 + a + cc
                    s[1, j, tx] = b + 2.0 * d
                    s[2, j, tx] = a + 4.0 * cc
                    s[3, j, tx] = b + 8.0 * d + m5
            # pass 2, along j, into column-phase order o[s, r, tx] (contiguous along tx)
            for r in range(4):
                for tx in range(tw):
                    q0 = s[r, 0, tx]
                    q1 = s[r, 1, tx]
                    q2 = s[r, 2, tx]
                    q3 = s[r, 3, tx]
                    q4 = s[r, 4, tx]
                    q5 = s[r, 5, tx]
                    a = q1 + q2
                    b = q1 - q2
                    cc = q3 + q4
                    d = q3 - q4
                    o[0, r, tx] = q0 + a + cc
                    o[1, r, tx] = b + 2.0 * d
                    o[2, r, tx] = a + 4.0 * cc
                    o[3, r, tx] = b + 8.0 * d + q5
            # interleave the four column phases into the output rows (in-bounds part only)
            for r in range(4):
                i = 4 * ty + r
                if i >= oh:
                    break
                for tx in range(full):
                    for col in range(4):
                        val = o[col, r, tx] + bk
                        if relu and not val > 0.0:
                            val = np.float32(0.0)
                        y[n, k, i, 4 * tx + col] = val
                for jj in range(4 * full, ow):
                    val = o[jj - 4 * full, r, full] + bk
                    if relu and not val > 0.0:
                        val = np.float32(0.0)
                    y[n, k, i, jj] = val


def transform_weights(w):
    """U (36, K, C) float32 for a (K, C, 3, 3) kernel."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    u = np.empty((36, w.shape[0], w.shape[1]), np.float32)
    weight_transform(w, u)
    return u


# Images are transformed and multiplied a few at a time, so that the transformed tiles (2.25x
# the input, as many again for the products) stay this size whatever the batch: a batch of 32
# VGG16 images would otherwise need 1.8 GB of them at conv1_2.
TILE_BUFFER_BYTES = 64 * 2**20


_NO_MASK = np.zeros((1, 1, 1, 1), np.bool_)


def conv3x3(x, u, ph, pw, bias=None, relu=False, relu_mask=None, relu_rule=-1):
    """Stride-1 3x3 correlation of x (N, C, H, W) float32 by the transformed kernel u (36, K, C),
    zero padding (ph, pw), plus ``bias`` and max(., 0) if ``relu``; with ``relu_rule`` >= 0,
    x first goes through that ReLU backward rule with ``relu_mask`` (see ``input_transform``).

    Returns y (N, K, H + 2ph - 2, W + 2pw - 2) float32 and a boolean per image that is True
    where the image holds a NaN or an infinity: that image's y is not valid (see the module
    docstring) and must be recomputed by another algorithm."""
    n, c, h, w = x.shape
    k = u.shape[1]
    oh, ow = h + 2 * ph - 2, w + 2 * pw - 2
    th, tw = (oh + 3) // 4, (ow + 3) // 4
    y = np.empty((n, k, oh, ow), np.float32)
    b = np.zeros(k, np.float32) if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    nonfinite = np.empty(n * c, np.bool_)
    step = max(1, TILE_BUFFER_BYTES // (36 * max(c, k) * th * tw * 4))
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        v = scratch("winograd_v", (n1 - n0, 36, c, th * tw), np.float32)
        with threads_for(v.size):
            input_transform(x[n0:n1], v, ph, pw, th, tw, nonfinite[n0 * c:n1 * c],
                            _NO_MASK if relu_mask is None else relu_mask[n0:n1], relu_rule)
        m = scratch("winograd_m", (n1 - n0, 36, k, th * tw), np.float32)
        per_image_matmul(u, v, m)
        with threads_for(m.size):
            output_transform(m, y[n0:n1], b, bool(relu), th, tw)
    return y, nonfinite.reshape(n, c).any(axis=1)
