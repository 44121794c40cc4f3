"""Equal receptive fields, equal outputs: the rule that keeps max-pool ties where they belong.

Why. A convolution of an image with flat regions (a constant border, the black background of
a Fashion-MNIST image) gives, in exact arithmetic, *equal* outputs at every pixel whose
receptive field lies in the flat region, and a max-pool window over such pixels is a tie:
the first pixel wins (PyTorch's rule and ours), so that is where the gradient goes. In
floating point the equal values survive only if every output pixel is computed by the same
sequence of operations. PyTorch's direct convolution does that. BLAS does not: OpenBLAS's
sgemm rounds a column differently depending on its position inside the micro-tile (measured
here: of 12,544 identical columns, 12,528 differ from the first in the last bit), and
Winograd's tile transforms round each of the 16 positions of a 4x4 output block
differently. The tie then breaks by rounding noise, the gradient goes to another pixel, and
a gradient image differs from PyTorch's by up to half its peak.

The remedy does not constrain the arithmetic. After a convolution (by any algorithm), every
output pixel whose receptive field is bitwise equal to that of an earlier pixel (row-major
order, same image) takes that earlier pixel's output. Equal inputs then give bitwise-equal
outputs, whatever the algorithm's rounding, and exact ties stay exact through the network.
The work is a hash of each input pixel's channel vector and of each output pixel's tuple of
tap ids; duplicates are confirmed by comparing the values themselves, so a hash collision can
only miss a merge, never merge unequal receptive fields.

This module computes the map with array operations only (``xp`` is NumPy or CuPy), for the
reference and GPU backends; the Numba backend has its own loops (``kernels/cpu/_patches.py``)
that return the same map.
"""

import numpy as np

PAD = -1  # the id of a padding position in a receptive field

# Odd 64-bit multipliers for the row hash (any odd constants do; these are from splitmix64).
_MULTIPLIERS = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def _row_hash(xp, keys):
    """A uint64 hash of each row of the integer array ``keys`` (P, D), wrapping arithmetic."""
    m1, m2, m3 = (np.uint64(m) for m in _MULTIPLIERS)
    d = keys.shape[1]
    weights = (xp.arange(1, d + 1, dtype=np.uint64) * m1) | np.uint64(1)
    h = (keys.astype(np.uint64) * weights[None, :]).sum(axis=1, dtype=np.uint64)
    h ^= h >> np.uint64(31)
    h *= m2
    h ^= h >> np.uint64(29)
    return h * m3


def first_equal_row(xp, keys):
    """rep[p] = the smallest q with keys[q] == keys[p] (bitwise, whole row), for keys (P, D)."""
    p = keys.shape[0]
    index = xp.arange(p)
    if p == 0:
        return index
    h = _row_hash(xp, keys)
    order = xp.lexsort(xp.stack([index, h.view(np.int64)]))  # by hash, then by position
    sorted_h = h[order]
    new_run = xp.ones(p, dtype=bool)
    new_run[1:] = sorted_h[1:] != sorted_h[:-1]
    run_start = xp.flatnonzero(new_run)[xp.cumsum(new_run) - 1]
    leader = order[run_start]  # the first position in each run of equal hashes
    same = (keys[order] == keys[leader]).all(axis=1)
    rep = xp.empty_like(index)
    rep[order] = xp.where(same, leader, order)
    return rep


def _words(xp, a):
    """The bit patterns of a float array as unsigned integers of the same width."""
    return xp.ascontiguousarray(a).view(np.uint32 if a.dtype.itemsize == 4 else np.uint64)


def receptive_field_reps(xp, x_image, kernel_hw, stride, padding, dilation, out_hw):
    """For one image x_image (C, H, W): rep (OH*OW,) int64, the first output pixel (row-major)
    whose receptive field -- the kernel's taps over all C channels, padding included -- holds
    bitwise the same values as output pixel p's."""
    c, h, w = x_image.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = kernel_hw, stride, padding, dilation, out_hw
    pixel = first_equal_row(xp, _words(xp, x_image.reshape(c, h * w).T))
    rows = (xp.arange(oh) * sh - ph)[:, None] + (xp.arange(kh) * dh)[None, :]  # (OH, KH)
    cols = (xp.arange(ow) * sw - pw)[:, None] + (xp.arange(kw) * dw)[None, :]  # (OW, KW)
    inside = ((rows >= 0) & (rows < h))[:, None, :, None] & ((cols >= 0) & (cols < w))[None, :, None, :]
    flat = xp.clip(rows, 0, h - 1)[:, None, :, None] * w + xp.clip(cols, 0, w - 1)[None, :, None, :]
    taps = xp.where(inside, pixel[flat], PAD)  # (OH, OW, KH, KW) pixel ids
    return first_equal_row(xp, taps.reshape(oh * ow, kh * kw))


def share_equal_outputs(xp, y, x, kernel_hw, stride, padding, dilation, groups):
    """In place: y[n, o, p] = y[n, o, rep[p]] for every image n and group, rep from
    ``receptive_field_reps`` over the group's input channels. Returns y."""
    n, o = y.shape[:2]
    c = x.shape[1]
    cg, og = c // groups, o // groups
    for i in range(n):
        for g in range(groups):
            rep = receptive_field_reps(xp, x[i, g * cg:(g + 1) * cg], kernel_hw, stride, padding, dilation,
                                       y.shape[2:])
            moved = xp.flatnonzero(rep != xp.arange(rep.shape[0]))
            if moved.size:
                plane = y[i, g * og:(g + 1) * og].reshape(og, -1)
                plane[:, moved] = plane[:, rep[moved]]
    return y
