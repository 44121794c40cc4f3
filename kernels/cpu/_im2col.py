"""im2col / col2im for the general convolution path (any stride, padding, dilation, groups).

For a run of samples n0 + s, the column matrices are

    col[s, (c*KH + p)*KW + q, i*OW + j] = xpad[n0 + s, c, i*sh + p*dh, j*sw + q*dw]

so that a convolution is one BLAS product per sample and group, Y_g (Og, OH*OW) = W_g (Og,
Cg*KH*KW) @ col_g, the rows of a group being contiguous. A run is several small images at
once, or one row block (output rows i0 .. i1 - 1) of a large one. Both loops run ``prange``
over things that write disjoint memory:

* ``im2col`` over the (sample, row) pairs of col (each row is written by one thread);
* ``col2im`` (the adjoint, gx[n, c, ...] += col[...]) over the (sample, channel) input
  planes: all the rows that add into plane c belong to c, so each plane is summed by a single
  thread and the scatter-add has no race, whatever the overlap of the windows.

Stride-1 convolutions whose output is as wide as their input (3x3 with padding 1, 5x5 with
padding 2: most of VGG's and AlexNet's) take a shortcut in both: a column-matrix row is the
plane shifted by (p*dh - ph, q*dw - pw), which in flat coordinates is one contiguous run,
so it is copied (or, in col2im, added) in one loop and only the columns that wrapped round a
row edge are zeroed, instead of a few short copies per output row with bounds for each
(``_shifted_plane``, ``_add_shifted_plane``: 2.4x faster on a training batch's 14 x 14 planes,
2.9x on AlexNet's conv2).

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


@njit(cache=True, inline="always")
def _shift_runs(off_h, off_w, height, width, i0, i1):
    """Where output rows i0 .. i1 - 1 of a stride-1 "same-width" convolution (OW == W) read a
    plane shifted by (off_h, off_w), in flat coordinates: rows ia .. ib - 1 have their source
    row inside the plane, and entries [a + lo, a + hi) of the column-matrix row map one to one
    onto plane.flat[src + lo .. src + hi). (The first row's leading columns can fall before
    the plane and the last row's trailing ones after it; every bound stays >= 0, since a
    negative slice bound would count from the end.)"""
    ia = min(max(i0, -off_h), i1)
    ib = max(min(i1, height - off_h), ia)
    a, b = (ia - i0) * width, (ib - i0) * width
    src = (ia + off_h) * width + off_w
    lo = min(max(0, -src), b - a)
    hi = max(lo, min(b - a, height * width - src))
    return ia, ib, a, b, src, lo, hi


@njit(cache=True, inline="always")
def _zero_wrapped(row_values, off_w, width, i0, ia, ib):
    """Zero, in rows ia .. ib - 1, the entries whose source column wrapped round a row edge."""
    wrapped = min(abs(off_w), width)
    for i in range(ia, ib):
        row = (i - i0) * width
        if off_w < 0:
            row_values[row:row + wrapped] = 0
        elif off_w > 0:
            row_values[row + width - wrapped:row + width] = 0


@njit(cache=True, inline="always")
def _shifted_plane(plane, out, off_h, off_w, height, width, i0, i1):
    """One column-matrix row of a stride-1 "same-width" convolution: output rows i0 .. i1 - 1
    of the plane shifted by (off_h, off_w), zero outside it. In flat coordinates that is one
    contiguous copy, after which the columns that wrapped round a row edge are zeroed: one
    long copy instead of a short one per row."""
    ia, ib, a, b, src, lo, hi = _shift_runs(off_h, off_w, height, width, i0, i1)
    out[:a + lo] = 0
    out[a + lo:a + hi] = plane[src + lo:src + hi]
    out[a + hi:] = 0
    _zero_wrapped(out, off_w, width, i0, ia, ib)


@njit(cache=True, inline="always")
def _add_shifted_plane(plane, src_row, off_h, off_w, height, width, i0, i1):
    """The adjoint of ``_shifted_plane``: plane.flat[k + off_h*W + off_w] += src_row[k] for the
    entries that came from inside the plane, as one contiguous add. The wrapped columns are
    zeroed in ``src_row`` (a scratch column matrix) first, so the one add drops them; each
    pixel still sums its taps in the same order as the row-by-row loop."""
    ia, ib, a, b, src, lo, hi = _shift_runs(off_h, off_w, height, width, i0, i1)
    _zero_wrapped(src_row, off_w, width, i0, ia, ib)
    for k in range(lo, hi):
        plane[src + k] += src_row[a + k]


@njit(parallel=True, cache=True)
def im2col(x, n0, col, kh, kw, sh, sw, ph, pw, dh, dw, i0, i1, ow, rows_first=False):
    """Fill col (S, C*KH*KW, (i1 - i0)*OW) with output rows i0 <= i < i1 of samples
    n0 .. n0 + S - 1 of x (N, C, H, W); padding reads as zero. With ``rows_first`` col is
    laid out (C*KH*KW, S, (i1 - i0)*OW) instead: one matrix whose columns run over every
    sample, for the weight gradient's single GEMM."""
    n_ch, height, width = x.shape[1], x.shape[2], x.shape[3]
    rows = n_ch * kh * kw
    samples = col.shape[1] if rows_first else col.shape[0]
    zero = x.dtype.type(0)
    for job in prange(samples * rows):
        jb = np.int64(job)
        s, r = jb // rows, jb % rows
        n = n0 + s
        c = r // (kh * kw)
        p = (r // kw) % kh
        q = r % kw
        out = col[r, s] if rows_first else col[s, r]
        if sh == 1 and sw == 1 and ow == width:
            _shifted_plane(x[n, c].reshape(height * width), out, p * dh - ph, q * dw - pw, height, width, i0, i1)
            continue
        j_lo, j_hi = _valid_range(width, ow, sw, q * dw - pw)
        w0 = q * dw - pw
        for i in range(i0, i1):
            h = i * sh + p * dh - ph
            dst = out[(i - i0) * ow:(i - i0 + 1) * ow]
            if h < 0 or h >= height:
                dst[:] = zero
                continue
            # slices, not indexed loops with computed bounds: those LLVM does not vectorise
            dst[:j_lo] = zero
            dst[j_hi:] = zero
            src = x[n, c, h]
            if sw == 1:
                dst[j_lo:j_hi] = src[j_lo + w0:j_hi + w0]
            else:
                dst[j_lo:j_hi] = src[j_lo * sw + w0:(j_hi - 1) * sw + w0 + 1:sw]


@njit(parallel=True, cache=True)
def side_by_side(src, dst):
    """dst[r, s, :] = src[s, r, :]: samples' (R, L) matrices laid side by side as one (R, S*L)
    matrix, the layout of im2col's ``rows_first`` (the weight gradient's gy, and a pointwise
    convolution's input, which is its own column matrix). A parallel copy, row by row; im2col
    with a 1x1 kernel gives the same, at 1.5-4x the time on a training batch (its per-row shift
    bookkeeping)."""
    n_samples, n_rows = src.shape[0], src.shape[1]
    for job in prange(n_rows * n_samples):
        jb = np.int64(job)
        r, s = jb // n_samples, jb % n_samples
        dst[r, s, :] = src[s, r, :]


@njit(parallel=True, cache=True)
def col2im(col, gx, n0, kh, kw, sh, sw, ph, pw, dh, dw, i0, i1, ow, accumulate):
    """gx[n0 + s, c, i*sh + p*dh - ph, j*sw + q*dw - pw] += col[s, (c*KH + p)*KW + q, (i - i0)*OW + j]
    for the output rows i0 <= i < i1; each gx[n0 + s] is zeroed first unless ``accumulate``;
    padding positions are dropped. col is scratch: for stride-1 same-width convolutions the
    entries that fall on horizontal padding are zeroed in it (``_add_shifted_plane``)."""
    n_ch, height, width = gx.shape[1], gx.shape[2], gx.shape[3]
    for job in prange(col.shape[0] * n_ch):
        jb = np.int64(job)
        s, c = jb // n_ch, jb % n_ch
        n = n0 + s
        if not accumulate:
            for h in range(height):
                for w in range(width):
                    gx[n, c, h, w] = 0
        for p in range(kh):
            for q in range(kw):
                src = col[s, (c * kh + p) * kw + q]
                if sh == 1 and sw == 1 and ow == width:
                    _add_shifted_plane(gx[n, c].reshape(height * width), src, p * dh - ph, q * dw - pw,
                                       height, width, i0, i1)
                    continue
                j_lo, j_hi = _valid_range(width, ow, sw, q * dw - pw)
                w0 = q * dw - pw
                for i in range(i0, i1):
                    h = i * sh + p * dh - ph
                    if h < 0 or h >= height:
                        continue
                    base = (i - i0) * ow
                    if sw == 1:
                        for j in range(j_lo, j_hi):
                            gx[n, c, h, j + w0] += src[base + j]
                    else:
                        for j in range(j_lo, j_hi):
                            gx[n, c, h, j * sw + w0] += src[base + j]
