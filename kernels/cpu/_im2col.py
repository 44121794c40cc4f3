"""im2col / col2im for the general convolution path (any stride, padding, dilation, groups).

For one sample n, the column matrix is

    col[(c*KH + p)*KW + q, i*OW + j] = xpad[n, c, i*sh + p*dh, j*sw + q*dw]

so that a convolution is one BLAS product per group, Y_g (Og, OH*OW) = W_g (Og, Cg*KH*KW) @
col_g, the rows of a group being contiguous. Both loops run ``prange`` over things that
write disjoint memory:

* ``im2col`` over the C*KH*KW rows of col (each row is written by one thread);
* ``col2im`` (the adjoint, gx[n, c, ...] += col[...]) over the C input planes: all the rows
  that add into plane c belong to c, so each plane is summed by a single thread and the
  scatter-add has no race, whatever the overlap of the windows (stride < kernel).

Both are compiled once per dtype (float32, float64); the geometry is passed as ints.
"""

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _valid_range(size, out, stride, offset):
    """The output indices j in [lo, hi) with 0 <= j*stride + offset < size."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    hi = out
    last = size - 1 - offset  # j*stride <= last
    if last < 0:
        hi = 0
    else:
        hi = min(out, last // stride + 1)
    if hi < lo:
        hi = lo
    return lo, hi


@njit(parallel=True, cache=True)
def im2col(x, n, col, kh, kw, sh, sw, ph, pw, dh, dw, i0, i1, ow):
    """Fill col (C*KH*KW, (i1 - i0)*OW) with output rows i0 <= i < i1 of sample n of
    x (N, C, H, W); padding reads as zero."""
    n_ch, height, width = x.shape[1], x.shape[2], x.shape[3]
    zero = x.dtype.type(0)
    for row in prange(n_ch * kh * kw):
        r = np.int64(row)
        c = r // (kh * kw)
        p = (r // kw) % kh
        q = r % kw
        j_lo, j_hi = _valid_range(width, ow, sw, q * dw - pw)
        for i in range(i0, i1):
            h = i * sh + p * dh - ph
            base = (i - i0) * ow
            if h < 0 or h >= height:
                for j in range(ow):
                    col[r, base + j] = zero
                continue
            for j in range(j_lo):
                col[r, base + j] = zero
            w0 = q * dw - pw
            if sw == 1:
                for j in range(j_lo, j_hi):
                    col[r, base + j] = x[n, c, h, j + w0]
            else:
                for j in range(j_lo, j_hi):
                    col[r, base + j] = x[n, c, h, j * sw + w0]
            for j in range(j_hi, ow):
                col[r, base + j] = zero


@njit(parallel=True, cache=True)
def col2im(col, gx, n, kh, kw, sh, sw, ph, pw, dh, dw, i0, i1, ow, accumulate):
    """gx[n, c, i*sh + p*dh - ph, j*sw + q*dw - pw] += col[(c*KH + p)*KW + q, (i - i0)*OW + j]
    for the output rows i0 <= i < i1; gx[n] is zeroed first unless ``accumulate``; padding
    positions are dropped."""
    n_ch, height, width = gx.shape[1], gx.shape[2], gx.shape[3]
    for plane in prange(n_ch):
        c = np.int64(plane)
        if not accumulate:
            for h in range(height):
                for w in range(width):
                    gx[n, c, h, w] = 0
        for p in range(kh):
            for q in range(kw):
                r = (c * kh + p) * kw + q
                j_lo, j_hi = _valid_range(width, ow, sw, q * dw - pw)
                w0 = q * dw - pw
                for i in range(i0, i1):
                    h = i * sh + p * dh - ph
                    if h < 0 or h >= height:
                        continue
                    base = (i - i0) * ow
                    if sw == 1:
                        for j in range(j_lo, j_hi):
                            gx[n, c, h, j + w0] += col[r, base + j]
                    else:
                        for j in range(j_lo, j_hi):
                            gx[n, c, h, j * sw + w0] += col[r, base + j]
