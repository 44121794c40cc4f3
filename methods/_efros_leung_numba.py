"""The compiled inner loop of Efros-Leung texture synthesis (methods/efros_leung.py): one layer of
new pixels per call, so that the caller can show progress and stop on Ctrl-C between layers.
Imported only when a synthesis runs, so ``import methods`` needs no Numba."""

import numpy as np
from numba import njit


@njit(cache=True)
def grow_layer(sample, out, filled, source, errors, weights, epsilon, uniforms, draw):
    """Synthesize every unfilled pixel of ``out`` that touches a filled one (its 3 x 3
    neighbourhood), those with the most filled pixels in their window first.

    For each, the weighted SSD between its known neighbours and every window of ``sample`` that
    fits inside it is computed (weights: the Gaussian ``weights`` times the known-pixel mask), and
    the centre pixel of a window picked uniformly -- by ``uniforms[draw]`` -- among those within
    (1 + ``epsilon``) of the best is copied in. ``sample`` (Hs, Ws, C) and ``out`` (H, W, C) are
    float64; ``filled`` uint8 (H, W), ``source`` int64 (H, W, 2) (the sample pixel copied) and
    ``errors`` float64 (H, W) (the best match's mean squared difference per known neighbour) are
    written in place. Returns (pixels filled, next draw)."""
    height, width, channels = out.shape
    k = weights.shape[0]
    half = k // 2
    rows, cols = sample.shape[0] - k + 1, sample.shape[1] - k + 1
    pending = np.empty(height * width, np.int64)
    counts = np.empty(height * width, np.int64)
    n = 0
    for r in range(height):
        for c in range(width):
            if filled[r, c]:
                continue
            touching = False
            for dr in range(-1, 2):
                for dc in range(-1, 2):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < height and 0 <= cc < width and filled[rr, cc]:
                        touching = True
            if not touching:
                continue
            known = 0
            for rr in range(max(r - half, 0), min(r + half + 1, height)):
                for cc in range(max(c - half, 0), min(c + half + 1, width)):
                    known += filled[rr, cc]
            pending[n] = r * width + c
            counts[n] = known
            n += 1
    order = np.argsort(-counts[:n], kind="mergesort")  # most known neighbours first; ties in raster order
    offset_r = np.empty(k * k, np.int64)
    offset_c = np.empty(k * k, np.int64)
    weight = np.empty(k * k)
    distance = np.empty(rows * cols)
    for p in range(n):
        r, c = divmod(pending[order[p]], width)
        m = 0
        total = 0.0
        for i in range(k):
            for j in range(k):
                rr, cc = r + i - half, c + j - half
                if 0 <= rr < height and 0 <= cc < width and filled[rr, cc]:
                    offset_r[m], offset_c[m], weight[m] = i, j, weights[i, j]
                    total += weights[i, j]
                    m += 1
        best = np.inf
        for y in range(rows):
            for x in range(cols):
                d = 0.0
                for q in range(m):
                    i, j = offset_r[q], offset_c[q]
                    for ch in range(channels):
                        diff = out[r + i - half, c + j - half, ch] - sample[y + i, x + j, ch]
                        d += weight[q] * diff * diff
                    if d > best * (1.0 + epsilon):  # cannot be a candidate any more
                        break
                distance[y * cols + x] = d
                best = min(best, d)
        limit = best * (1.0 + epsilon)
        candidates = 0
        for s in range(rows * cols):
            if distance[s] <= limit:
                candidates += 1
        pick = min(int(uniforms[draw] * candidates), candidates - 1)
        draw += 1
        for s in range(rows * cols):
            if distance[s] <= limit:
                if pick == 0:
                    y, x = divmod(s, cols)
                    for ch in range(channels):
                        out[r, c, ch] = sample[y + half, x + half, ch]
                    source[r, c, 0], source[r, c, 1] = y + half, x + half
                    break
                pick -= 1
        errors[r, c] = best / (total * channels)
        filled[r, c] = 1
    return n, draw
