"""Equal receptive fields, equal outputs, on the CPU: the loops behind ``kernels.patches``.

Why a convolution's outputs are made to depend on their receptive field's *values* only,
not on their position, is explained in ``kernels/patches.py``; this module computes the same
map, rep[p] = the first output pixel (row-major) whose receptive field is bitwise equal to
pixel p's, with hash tables instead of sorts:

1. each input pixel's channel vector gets a 64-bit hash (one pass over the image, along
   rows, so it vectorises), then a table keyed by that hash gives every pixel the first
   pixel with the same vector, confirmed by comparing the vectors word by word;
2. each output pixel's receptive field is the tuple of its taps' pixel ids (-1 for
   padding); a second table gives the first output pixel with the same tuple;
3. the outputs of the later duplicates are overwritten with the first one's.

Tables are filled in row-major order, so the first occurrence is the one kept, as the
array version keeps it; a hash collision only costs a comparison. The images (and groups)
of a batch are independent iterations of one ``prange``.
"""

import functools

import numpy as np
from numba import njit, prange

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, inline="always")
def _mix(h):
    h ^= h >> np.uint64(31)
    h *= _M2
    h ^= h >> np.uint64(29)
    return h * _M3


@njit(cache=True)
def _table_size(count):
    size = 16
    while size < 2 * count:
        size *= 2
    return size


@njit(cache=True)
def _first_equal(keys, hashes, rep, by_column):
    """rep[p] = the first item q (in order) equal to item p, where item p is keys[:, p]
    (``by_column``) or keys[p], its hash hashes[p]: an open-addressing table of first
    occurrences, equality confirmed word by word. Returns how many items are not their own
    representative."""
    count = hashes.shape[0]
    size = _table_size(count)
    keys_of = np.empty(size, np.uint64)
    owner = np.full(size, -1, np.int64)
    moved = 0
    for p in range(count):
        h = _mix(hashes[p])
        slot = np.int64(h & np.uint64(size - 1))
        while True:
            q = owner[slot]
            if q < 0:
                owner[slot] = p
                keys_of[slot] = h
                rep[p] = p
                break
            if keys_of[slot] == h:
                same = True
                for t in range(keys.shape[0] if by_column else keys.shape[1]):
                    if (keys[t, q] != keys[t, p]) if by_column else (keys[q, t] != keys[p, t]):
                        same = False
                        break
                if same:
                    rep[p] = q
                    moved += 1
                    break
            slot = (slot + 1) & np.int64(size - 1)
    return moved


@njit(cache=True)
def _first_equal_pixels(words, c0, c1, rep):
    """rep[p] = the first pixel q with words[c0:c1, q] == words[c0:c1, p]; words (C, HW)."""
    hashes = np.zeros(words.shape[1], np.uint64)
    for c in range(c0, c1):
        m = (np.uint64(c - c0 + 1) * _M1) | np.uint64(1)
        row = words[c]
        for p in range(hashes.shape[0]):
            hashes[p] += np.uint64(row[p]) * m
    return _first_equal(words[c0:c1], hashes, rep, True)


@njit(cache=True)
def _first_equal_fields(pixel, height, width, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, rep):
    """rep[i*OW + j] = the first output pixel whose taps hold the same pixel ids."""
    taps = np.empty((oh * ow, kh * kw), np.int64)
    hashes = np.zeros(oh * ow, np.uint64)
    for i in range(oh):
        for j in range(ow):
            p = i * ow + j
            for a in range(kh):
                r = i * sh - ph + a * dh
                for b in range(kw):
                    col = j * sw - pw + b * dw
                    t = -1
                    if 0 <= r < height and 0 <= col < width:
                        t = pixel[r * width + col]
                    taps[p, a * kw + b] = t
                    hashes[p] += np.uint64(t) * ((np.uint64(a * kw + b + 1) * _M1) | np.uint64(1))
    return _first_equal(taps, hashes, rep, False)


@njit(parallel=True, cache=True)
def share_equal_outputs(words, y, groups, height, width, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, empty_fields):
    """In place: y[n, o, p] = y[n, o, rep[p]] for every image n and group, rep as in the
    module docstring; words (N, C, H*W) are the input's bit patterns, y is (N, O, OH*OW).
    ``empty_fields``: some receptive field lies wholly in the padding (all such are equal)."""
    n_batch, n_ch = words.shape[0], words.shape[1]
    n_out = y.shape[1]
    cg, og = n_ch // groups, n_out // groups
    for job in prange(n_batch * groups):
        jb = np.int64(job)
        n, g = jb // groups, jb % groups
        pixel = np.empty(height * width, np.int64)
        if _first_equal_pixels(words[n], g * cg, (g + 1) * cg, pixel) == 0 and not empty_fields:
            continue  # all pixels distinct: two receptive fields can only be equal if both are empty
        rep = np.empty(oh * ow, np.int64)
        if _first_equal_fields(pixel, height, width, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, rep) == 0:
            continue
        moved = np.flatnonzero(rep != np.arange(oh * ow))
        for o in range(g * og, (g + 1) * og):
            for t in range(moved.size):
                y[n, o, moved[t]] = y[n, o, rep[moved[t]]]


@functools.lru_cache(maxsize=256)
def has_empty_fields(size_hw, kernel_hw, stride, padding, dilation, out_hw):
    """Whether some output pixel's receptive field lies wholly in the padding (arguments:
    tuples of ints; the answer is remembered per geometry, as a network asks it every call)."""
    for size, k, s, p, d, out in zip(size_hw, kernel_hw, stride, padding, dilation, out_hw):
        taps = np.arange(out)[:, None] * s - p + np.arange(k)[None, :] * d
        if (((taps < 0) | (taps >= size)).all(axis=1)).any():
            return True
    return False
