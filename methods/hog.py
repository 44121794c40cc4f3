"""Histograms of oriented gradients, a differentiable HOG, and HOG inversion.

HOG (Dalal & Triggs, "Histograms of Oriented Gradients for Human Detection", CVPR 2005), in the
layout of scikit-image's ``skimage.feature.hog(..., block_norm="L2-Hys")``, which :func:`hog`
reproduces within 1e-5 (the largest difference seen is about 2e-7):

1. gradients by centred differences [-1, 0, 1] without smoothing (the paper's best choice),
   zero on the image border: g_row = I[r+1] - I[r-1], g_col = I[c+1] - I[c-1];
2. each pixel votes its gradient magnitude into one of ``orientations`` unsigned orientation
   bins over [0, 180) degrees (bin i holds 180 i / n <= angle < 180 (i + 1) / n), and the votes
   are averaged over cells of ``pixels_per_cell`` (pixels beyond the last whole cell are unused);
3. every ``cells_per_block`` window of cells (stride one cell) is normalized with L2-Hys:
   v / sqrt(|v|^2 + eps^2), clipped at 0.2, normalized again (eps = 1e-5);
4. the blocks are concatenated in the order (block row, block column, cell row, cell column,
   orientation).

:func:`soft_hog` is the same descriptor built from minigrad ops, with the one step that has no
gradient -- the hard choice of a bin -- replaced by soft votes: a pixel whose gradient has angle
theta and magnitude m gives bin b the share softmax_b(kappa cos 2(theta - theta_b)) of m, with
theta_b the bin centres (a von Mises kernel on the doubled angle, since orientation is unsigned).
cos 2 theta and sin 2 theta come from the gradient itself, ((g_col^2 - g_row^2), 2 g_col g_row) / m^2,
so no arctangent is needed and everything is smooth; a small epsilon keeps flat pixels (m = 0)
smooth too. The default kappa makes a bin's vote fall to half its peak at half a bin's width from
its centre; as kappa grows the soft HOG tends to :func:`hog`.

HOG inversion (Tatu, Lauze, Nielsen & Kimia, "Exploring the Representation Capabilities of the
HOG Descriptor", ICCV Workshops 2011, shown in the lecture notes as "identical HOG
representation"): starting from another image (noise, or a different photograph), gradient-based
optimization changes it until its HOG matches the HOG of a given image. The two images look
nothing alike, yet a HOG-based detector cannot tell them apart. :func:`hog_inversion` minimizes
|soft_hog(x) - soft_hog(target)|^2 / |soft_hog(target)|^2 over pixels in [0, 1] with
``minigrad.optim.LBFGS`` (strong-Wolfe line search, box by projection), and reports the distance
of the true HOG (:func:`hog`) as well.
"""

import math
import textwrap

import numpy as np

import minigrad
from methods.lib.figures import Panel, curves, figure
from methods.lib.images import require, to_uint8
from methods.lib.inputs import check_image
from methods.lib.options import Option, technique
from methods.lib.progress import Progress
from methods.lib.result import Result
from minigrad import functional as F

__all__ = ["HogInversionResult", "hog", "hog_glyphs", "hog_inversion", "soft_hog"]

#: The eps of the L2-Hys block normalization (scikit-image's).
EPS = 1e-5
#: L2-Hys clips the normalized block at this value (Dalal & Triggs).
CLIP = 0.2
#: Gradient magnitudes below this scale are smoothed in :func:`soft_hog` (image values are ~0..1).
SOFT_EPS = 1e-3


def _pair(value, name):
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                                 for v in pair):
        raise ValueError(f"{name} must be a positive integer or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _geometry(shape, orientations, pixels_per_cell, cells_per_block):
    """Checked parameters: (orientations, (cell rows, cell cols), (block rows, block cols), (cells down, across))."""
    if isinstance(orientations, bool) or not isinstance(orientations, (int, np.integer)) or orientations < 1:
        raise ValueError(f"orientations must be a positive integer, got {orientations!r}")
    cell, block = _pair(pixels_per_cell, "pixels_per_cell"), _pair(cells_per_block, "cells_per_block")
    if len(shape) != 2:
        raise ValueError(f"HOG takes a 2-D (grey) image, got shape {tuple(shape)}")
    need = (max(3, block[0] * cell[0]), max(3, block[1] * cell[1]))
    if shape[0] < need[0] or shape[1] < need[1]:
        raise ValueError(f"the image ({shape[0]}x{shape[1]}) is too small for {cell[0]}x{cell[1]}-pixel cells in "
                         f"{block[0]}x{block[1]}-cell blocks: it needs at least {need[0]}x{need[1]} pixels")
    return int(orientations), cell, block, (shape[0] // cell[0], shape[1] // cell[1])


def _gradients(x):
    """Centred differences (g_row, g_col) of a 2-D Tensor, zero on the border rows / columns."""
    g_row = F.pad(x[2:, :] - x[:-2, :], (0, 0, 1, 1))
    g_col = F.pad(x[:, 2:] - x[:, :-2], (1, 1, 0, 0))
    return g_row, g_col


def _cells(votes, cell, cells):
    """(n, H, W) votes -> (n, cells down, cells across) means over each cell."""
    n = votes.shape[0]
    (ch, cw), (rows, cols) = cell, cells
    votes = votes[:, :rows * ch, :cols * cw].reshape(n, rows, ch, cols, cw)
    return votes.sum(axis=(2, 4)) / float(ch * cw)


def _blocks(histograms, block):
    """L2-Hys normalized blocks of (n, rows, cols) cell histograms, flattened in the order
    (block row, block column, cell row, cell column, orientation)."""
    n, rows, cols = histograms.shape
    (bh, bw) = block
    down, across = rows - bh + 1, cols - bw + 1
    stacked = minigrad.stack([histograms[:, i:i + down, j:j + across] for i in range(bh) for j in range(bw)])
    v = stacked.reshape(bh, bw, n, down, across).transpose(3, 4, 0, 1, 2)
    v = v / (((v * v).sum(axis=(2, 3, 4), keepdims=True) + EPS ** 2).sqrt())
    v = v.clip(high=CLIP)
    v = v / (((v * v).sum(axis=(2, 3, 4), keepdims=True) + EPS ** 2).sqrt())
    return v.reshape(-1)


def hog(image, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3)):
    """The HOG descriptor of a 2-D image (any real dtype; values used as they are), as a float64
    vector equal to ``skimage.feature.hog(image, orientations, pixels_per_cell, cells_per_block,
    block_norm="L2-Hys", feature_vector=True)``. Like scikit-image, the gradients of a float32
    image are taken in float32 and those of any other image in float64."""
    image = np.asarray(image)
    if image.dtype.kind not in "biuf":
        raise ValueError(f"HOG takes a real-valued image, got dtype {image.dtype}")
    n, cell, block, cells = _geometry(image.shape, orientations, pixels_per_cell, cells_per_block)
    image = image.astype(np.float32 if image.dtype in (np.float16, np.float32) else np.float64)
    if not np.isfinite(image).all():
        raise ValueError("the image contains NaN or infinite values")
    with minigrad.no_grad():
        g_row, g_col = (g.numpy().astype(np.float64) for g in _gradients(minigrad.tensor(image)))
        magnitude = np.hypot(g_col, g_row)
        angle = np.rad2deg(np.arctan2(g_row, g_col)) % 180
        edges = (180.0 / n) * np.arange(n + 1)
        bins = np.searchsorted(edges, angle, side="right") - 1  # n (an angle rounded up to 180) votes nowhere
        votes = magnitude * (bins == np.arange(n)[:, None, None])
        return _blocks(_cells(minigrad.tensor(votes), cell, cells), block).numpy()


def default_sharpness(orientations):
    """kappa for which a bin's soft vote halves half a bin's width away from its centre."""
    return math.log(2.0) / (2.0 * math.sin(math.pi / (2 * orientations)) ** 2)


def soft_hog(x, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3), sharpness=None):
    """The HOG descriptor of a 2-D image Tensor with soft orientation votes (see the module notes),
    as a differentiable 1-D Tensor laid out like :func:`hog`'s. ``sharpness``: the von Mises
    kappa (default :func:`default_sharpness`); larger is closer to the hard HOG."""
    x = minigrad.tensor(x) if not isinstance(x, minigrad.Tensor) else x
    n, cell, block, cells = _geometry(x.shape, orientations, pixels_per_cell, cells_per_block)
    kappa = default_sharpness(n) if sharpness is None else float(sharpness)
    if not kappa > 0:
        raise ValueError(f"sharpness must be positive, got {sharpness!r}")
    g_row, g_col = _gradients(x)
    squared = g_row * g_row + g_col * g_col
    magnitude = (squared + SOFT_EPS ** 2).sqrt() - SOFT_EPS
    cos2 = (g_col * g_col - g_row * g_row) / (squared + SOFT_EPS ** 2)
    sin2 = (2.0 * g_col * g_row) / (squared + SOFT_EPS ** 2)
    centres = (np.arange(n) + 0.5) * (2.0 * np.pi / n)  # doubled bin-centre angles
    xp = minigrad.get_array_module(x.data)
    c = minigrad.tensor(xp.asarray(np.cos(centres)[:, None, None], dtype=x.dtype))
    s = minigrad.tensor(xp.asarray(np.sin(centres)[:, None, None], dtype=x.dtype))
    logits = (cos2.reshape(1, *x.shape) * c + sin2.reshape(1, *x.shape) * s) * kappa
    votes = F.softmax(logits, axis=0) * magnitude.reshape(1, *x.shape)
    return _blocks(_cells(votes, cell, cells), block)


def cell_histograms(descriptor, shape, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3)):
    """What a HOG descriptor says about each cell: its normalized histograms averaged over the
    blocks that contain it, (cells down, cells across, orientations), for an image of ``shape``."""
    n, _, (bh, bw), (rows, cols) = _geometry(shape, orientations, pixels_per_cell, cells_per_block)
    down, across = rows - bh + 1, cols - bw + 1
    blocks = np.asarray(descriptor, dtype=np.float64).reshape(down, across, bh, bw, n)
    total, count = np.zeros((rows, cols, n)), np.zeros((rows, cols, 1))
    for i in range(bh):
        for j in range(bw):
            total[i:i + down, j:j + across] += blocks[:, :, i, j]
            count[i:i + down, j:j + across] += 1
    return total / count


def hog_glyphs(histograms, scale=16):
    """Draw (rows, cols, n) cell histograms as HOG glyphs: in each ``scale`` x ``scale`` square, one
    line through the centre per orientation bin, along the edge that bin's gradient describes
    (perpendicular to it), as bright as the bin's value over the largest bin. uint8 (H, W)."""
    histograms = np.asarray(histograms, dtype=np.float64)
    rows, cols, n = histograms.shape
    top = histograms.max()
    canvas = np.zeros((rows * scale, cols * scale))
    if top <= 0:
        return canvas.astype(np.uint8)
    theta = (np.arange(n) + 0.5) * np.pi / n  # gradient direction of each bin's centre (row, col) = (sin, cos)
    t = np.linspace(-0.45 * scale, 0.45 * scale, 2 * scale)  # along the edge: (cos, -sin)
    centre_r = (np.arange(rows) + 0.5) * scale
    centre_c = (np.arange(cols) + 0.5) * scale
    r = centre_r[:, None, None, None] + np.cos(theta)[None, None, :, None] * t
    c = centre_c[None, :, None, None] - np.sin(theta)[None, None, :, None] * t
    r, c = np.broadcast_arrays(r, c)
    value = np.broadcast_to(histograms[..., None] / top, r.shape)
    index_r = np.clip(np.floor(r).astype(np.int64), 0, rows * scale - 1)
    index_c = np.clip(np.floor(c).astype(np.int64), 0, cols * scale - 1)
    np.maximum.at(canvas, (index_r.ravel(), index_c.ravel()), value.ravel())
    return to_uint8(canvas, 0.0, 1.0)


# ----- HOG inversion -----


def _grey(image):
    """A checked image (uint8 or float in [0, 1], grey or RGB) as float64 grey in [0, 1] (ITU-R 601 luma)."""
    image = np.asarray(image, dtype=np.float64) / (255.0 if image.dtype == np.uint8 else 1.0)
    return image @ np.array([0.299, 0.587, 0.114]) if image.ndim == 3 else image


def _resize(image, shape):
    """A float image in [0, 1] resized bilinearly to ``shape`` (h, w) with Pillow."""
    if image.shape == tuple(shape):
        return image
    Image = require("PIL.Image", "resizing images")
    resized = Image.fromarray(image.astype(np.float32), "F").resize((shape[1], shape[0]), Image.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float64), 0.0, 1.0)


def _fit(image, size):
    """``image`` with its longer side brought to ``size`` pixels (0: as it is)."""
    if not size:
        return image
    h, w = image.shape
    scale = size / max(h, w)
    return _resize(image, (max(1, round(h * scale)), max(1, round(w * scale))))


def _correlation(a, b):
    """Pearson correlation of two images' pixels (0 when either is constant)."""
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else 0.0


def _relative(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


class HogInversionResult(Result):
    """``image`` (H, W) float64 in [0, 1]: the start image changed until its HOG matches the
    target's; ``target`` and ``start`` the two images it began from; ``losses`` the relative
    squared soft-HOG distance per L-BFGS iteration and ``distances`` the relative distance of the
    true HOG (:func:`hog`, scikit-image's) after each; ``hog_params`` the HOG's parameters."""

    def __init__(self, image, target, start, start_name, losses, distances, hog_params, sharpness, **summary):
        super().__init__(**summary)
        self.image, self.target, self.start, self.start_name = image, target, start, start_name
        self.losses, self.distances, self.hog_params, self.sharpness = losses, distances, hog_params, sharpness

    def glyphs(self, image):
        descriptor = hog(image, **self.hog_params)
        return hog_glyphs(cell_histograms(descriptor, image.shape, **self.hog_params), scale=24)

    def figures(self):
        start, final = self.summary["hog_distance_start"], self.summary["hog_distance"]
        share = f"\n= {100 * final / start:.1f}% of the start's" if start > 0 else ""
        images = [("target (its HOG is the one matched)", self.target),
                  (f"start ({self.start_name})\nHOG distance {start:.3f}", self.start),
                  (f"result: HOG distance {final:.3f}{share}", self.image)]
        panels = [Panel(title, image=to_uint8(image, 0.0, 1.0)) for title, image in images]
        panels += [Panel(f"HOG of the {word}", image=self.glyphs(image))
                   for word, (_, image) in zip(("target", "start", "result"), images)]
        cell, block = self.hog_params["pixels_per_cell"], self.hog_params["cells_per_block"]
        title = (f"HOG inversion (Tatu et al. 2011): the result's HOG is nearly the target's, its pixels follow the "
                 f"start (pixel correlation {self.summary['pixel_correlation_with_target']:.2f} with the target, "
                 f"{self.summary['pixel_correlation_with_start']:.2f} with the start). "
                 f"Distance = |HOG(x) - HOG(target)| / |HOG(target)|; {self.hog_params['orientations']} orientations, "
                 f"{cell}x{cell}-pixel cells, {block}x{block}-cell L2-Hys blocks")
        loss = curves({"soft HOG (optimized)": np.sqrt(self.losses),
                       "HOG (scikit-image's, hard bins)": self.distances},
                      title=f"L-BFGS, {len(self.sharpness)} stage(s): soft-vote sharpness "
                            f"{self.sharpness[0]:.3g} -> {self.sharpness[-1]:.3g}",
                      xlabel="L-BFGS iteration", ylabel="relative HOG distance to the target", log=True)
        return {"hog": figure(panels, columns=3, title="\n".join(textwrap.wrap(title, 110)), size=3.2), "loss": loss}

    def pictures(self):
        return {"image": to_uint8(self.image, 0.0, 1.0), "target": to_uint8(self.target, 0.0, 1.0),
                "start": to_uint8(self.start, 0.0, 1.0), "glyphs": self.glyphs(self.image),
                "target_glyphs": self.glyphs(self.target)}


def _start_image(start, shape, seed):
    """The start: uniform noise from ``seed``, or an image (file, sample:NAME, array) resized to ``shape``."""
    if isinstance(start, str) and start == "noise":
        return np.random.default_rng(seed).uniform(size=shape), "uniform noise"
    name = start if isinstance(start, str) else f"array {'x'.join(map(str, np.shape(start)))}"
    return _resize(_grey(check_image(start, "start")), shape), name


@technique("hog-inversion", "HOG inversion: different images, identical HOG", "Tatu et al. 2011", [
    Option("start", "image", "sample:coffee", "what the optimization starts from and changes: 'noise' (uniform, "
                                              "from the seed) or an image (a file or sample:NAME), resized to the "
                                              "target's size"),
    Option("size", "int", 128, "the target is resized so that its longer side has this many pixels (0: as it is)",
           low=0, high=2048, gallery=64),
    Option("orientations", "int", 9, "HOG orientation bins over 0-180 degrees (Dalal & Triggs: 9)", low=1, high=180),
    Option("pixels_per_cell", "int", 8, "side of a HOG cell in pixels (Dalal & Triggs: 8)", low=1, high=256),
    Option("cells_per_block", "int", 3, "side of a normalization block in cells (scikit-image's default: 3)",
           low=1, high=32),
    Option("sharpness", "float", None, "kappa of the soft orientation votes in the first stage (default: a bin's "
                                       "vote halves half a bin away from its centre; 11.5 for 9 bins)",
           low=0, open_low=True),
    Option("anneal", "float", 16.0, "the sharpness grows geometrically to this multiple of its first value over the "
                                    "stages, so that the soft HOG approaches the true one (1: constant)", low=1),
    Option("stages", "int", 4, "L-BFGS runs, each restarted at the next sharpness", low=1, high=100),
    Option("steps", "int", 400, "L-BFGS iterations in all, shared equally by the stages", low=1, high=100000,
           gallery=200),
    Option("seed", "int", 0, "seed of the noise start", low=0),
], inputs="image")
def hog_inversion(image="sample:astronaut", *, start, size, orientations, pixels_per_cell, cells_per_block,
                  sharpness, anneal, stages, steps, seed):
    """Change the ``start`` image until its HOG matches the HOG of ``image`` (Tatu et al. 2011);
    returns a :class:`HogInversionResult`. Images are made grey. Ctrl-C stops early and keeps
    what was reached."""
    params = {"orientations": orientations, "pixels_per_cell": pixels_per_cell, "cells_per_block": cells_per_block}
    target = _fit(_grey(image), size)
    _geometry(target.shape, orientations, pixels_per_cell, cells_per_block)
    first, start_name = _start_image(start, target.shape, seed)
    kappa0 = default_sharpness(orientations) if sharpness is None else sharpness
    kappas = [kappa0 * anneal ** (i / max(stages - 1, 1)) for i in range(stages)]
    true_target = hog(target, **params)
    x = minigrad.tensor(first.copy(), requires_grad=True)
    losses, distances = [], []
    stage = None
    progress = Progress(range(steps), "hog-inversion")
    try:
        for step in progress:
            if step * stages // steps != stage:  # a new stage: a sharper soft HOG, a fresh L-BFGS
                stage = step * stages // steps
                kappa = kappas[stage]
                goal = soft_hog(target, sharpness=kappa, **params).detach()
                scale = float((goal * goal).sum().item())
                optimizer = minigrad.optim.LBFGS([x], max_iter=1, max_eval=20, history_size=20,
                                                 line_search_fn="strong_wolfe", bounds=(0.0, 1.0))

                def closure(optimizer=optimizer, kappa=kappa, goal=goal, scale=scale):
                    optimizer.zero_grad()
                    difference = soft_hog(x, sharpness=kappa, **params) - goal
                    loss = (difference * difference).sum() / scale
                    loss.backward()
                    return loss

            loss = float(optimizer.step(closure).item())
            distance = _relative(hog(x.numpy(), **params), true_target)
            losses.append(loss)
            distances.append(distance)
            progress.set(stage=stage + 1, soft=loss ** 0.5, hog=distance)
    except KeyboardInterrupt:
        pass
    result = x.numpy().clip(0.0, 1.0)
    start_distance = _relative(hog(first, **params), true_target)
    final = _relative(hog(result, **params), true_target)
    with minigrad.no_grad():
        soft = _relative(soft_hog(result, sharpness=kappas[-1], **params).numpy(),
                         soft_hog(target, sharpness=kappas[-1], **params).numpy())
    out = HogInversionResult(result, target, first, start_name, np.array(losses), np.array(distances), params, kappas,
                             hog_distance_start=start_distance, hog_distance=final,
                             hog_distance_ratio=final / start_distance if start_distance > 0 else None,
                             soft_distance=soft, iterations=len(losses),
                             pixel_correlation_with_target=_correlation(result, target),
                             pixel_correlation_with_start=_correlation(result, first),
                             image_shape=list(target.shape), sharpness_stages=kappas)
    out.params.update(start=start_name, sharpness=kappa0)
    return out
