"""Non-parametric texture synthesis by growing a texture pixel by pixel.

Efros & Leung, "Texture Synthesis by Non-parametric Sampling", ICCV 1999 (the lecture notes'
"regenerate pixels one at a time; form the neighbourhood of already generated pixels and copy
the nearest neighbour from the input"). The texture is modelled as a Markov random field: the
distribution of a pixel given its neighbourhood is estimated by looking the neighbourhood up in
the sample.

* A random 3 x 3 patch of the sample seeds the centre of the output.
* Pass after pass, the unfilled pixels that touch filled ones are synthesized, those with the
  most filled pixels in their ``window`` x ``window`` neighbourhood first (sec. 2).
* For each, the distance to every sample window is the sum of squared differences over the
  neighbourhood's *known* pixels, weighted by a two-dimensional Gaussian so that near neighbours
  count more (sec. 2.1; sigma = window / 6.4, from the pseudo-code on Efros's project page).
* The pixel is copied from the centre of a window picked at random among those whose distance is
  within (1 + epsilon) of the best (epsilon = 0.1, sec. 2.1): every output pixel is a pixel of
  the sample, and the randomness keeps the result from tiling the sample.

The compiled loop is in ``methods/_efros_leung_numba.py`` (Numba, imported when a synthesis
runs). The search over every sample window costs (sample side - window + 1)^2 x window^2 per
pixel, which is why the paper's samples are small: the sample is cut to its central ``crop``
square first (64 by default; 0 keeps it whole). Deterministic given ``seed``. Ctrl-C stops after
the current pass and keeps what has grown (``filled`` says which pixels).
"""

import importlib
import time

import numpy as np

from methods.lib.figures import Panel, figure
from methods.lib.images import to_uint8
from methods.lib.options import Option, technique
from methods.lib.progress import Progress
from methods.lib.result import Result

__all__ = ["EfrosLeungResult", "efros_leung"]

#: The size of the seed patch (Efros & Leung: 3 x 3).
SEED = 3


def _kernel():
    try:
        return importlib.import_module("methods._efros_leung_numba")
    except ImportError as error:
        raise ImportError(f"Efros-Leung synthesis needs numba: pip install numba ({error})") from error


def gaussian_window(window):
    """The window x window Gaussian weights, sigma = window / 6.4, peak 1."""
    t = np.arange(window) - window // 2
    g = np.exp(-t ** 2 / (2.0 * (window / 6.4) ** 2))
    return np.outer(g, g)


def _central_crop(sample, crop):
    """The central ``crop`` x ``crop`` square of the sample (the whole sample if smaller, or crop 0),
    and its box (top, left, bottom, right)."""
    h, w = sample.shape[:2]
    if not crop or (h <= crop and w <= crop):
        return sample, (0, 0, h, w)
    ch, cw = min(crop, h), min(crop, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return sample[top:top + ch, left:left + cw], (top, left, top + ch, left + cw)


class EfrosLeungResult(Result):
    """``image`` uint8 (h, w) or (h, w, 3) (the sample's layout): the synthesized texture;
    ``sample`` the (cropped) sample it was grown from; ``source`` int64 (h, w, 2) the sample pixel
    each output pixel was copied from; ``errors`` (h, w) the best match's mean squared difference
    per known neighbour; ``filled`` bool (h, w): all True unless interrupted."""

    def __init__(self, image, sample, source, errors, filled, box, window, **summary):
        super().__init__(**summary)
        self.image, self.sample, self.source, self.errors, self.filled = image, sample, source, errors, filled
        self.box, self.window = box, window

    def source_map(self):
        """Where each pixel came from as colour: red = sample row, green = sample column (blue 96)."""
        h, w = self.sample.shape[:2]
        colour = np.full(self.source.shape[:2] + (3,), 96, np.uint8)
        colour[..., 0] = to_uint8(self.source[..., 0], 0, max(h - 1, 1))
        colour[..., 1] = to_uint8(self.source[..., 1], 0, max(w - 1, 1))
        colour[~self.filled] = 255
        return colour

    def figures(self):
        """The sample and the texture at the same pixel scale, and where each pixel was copied from."""
        h, w = self.image.shape[:2]
        sh, sw = self.sample.shape[:2]
        canvas = np.full((max(h, sh), max(w, sw)) + self.image.shape[2:], 255, np.uint8)
        canvas[:sh, :sw] = self.sample
        top, left, bottom, right = self.box
        done = self.filled.mean()
        panels = [Panel(f"sample {sw}x{sh} (rows {top}:{bottom}, columns {left}:{right})", image=canvas),
                  Panel(f"synthesized {w}x{h}" + ("" if done == 1 else f" ({100 * done:.0f}% grown)"),
                        image=self.image),
                  Panel("copied from: sample row (red), column (green)", image=self.source_map())]
        title = (f"Efros & Leung 1999: grown pixel by pixel, {self.window}x{self.window} window, "
                 f"epsilon {self.params.get('epsilon', 0.1):g}; every pixel is a copy of a sample pixel")
        return {"texture": figure(panels, columns=3, title=title, size=3.2)}

    def pictures(self):
        return {"image": self.image, "sample": self.sample, "source": self.source_map()}


@technique("efros-leung", "Texture synthesis by non-parametric sampling", "Efros & Leung 1999", [
    Option("size", "ints", (128, 128), "output height,width in pixels (one number: a square)", low=SEED,
           high=4096, gallery=(64, 64)),
    Option("window", "int", 11, "side of the (odd) neighbourhood window matched in the sample", low=3, high=99),
    Option("epsilon", "float", 0.1, "candidates are the sample windows within (1 + epsilon) of the best match",
           low=0, high=10),
    Option("crop", "int", 64, "the sample is first cut to its central crop x crop square; the search cost grows "
                              "with its area (0: the whole sample)", low=0, gallery=48),
    Option("seed", "int", 0, "seed of the seed patch's position and the random picks", low=0),
], inputs="image")
def efros_leung(sample="sample:gravel", *, size, window, epsilon, crop, seed):
    """Grow a ``size`` texture from ``sample`` (grey or RGB, uint8 or float in [0, 1]) pixel by
    pixel; returns an :class:`EfrosLeungResult` whose ``.image`` is uint8 in the sample's layout."""
    if len(size) not in (1, 2):
        raise ValueError(f"size must be one number or (height, width), got {size}")
    height, width = (size[0], size[0]) if len(size) == 1 else size
    if window % 2 == 0:
        raise ValueError(f"window must be odd (a pixel and the same number of neighbours on each side), got {window}")
    kernel = _kernel()
    pixels = sample if sample.dtype == np.uint8 else np.rint(sample * 255).astype(np.uint8)
    pixels, box = _central_crop(pixels, crop)
    if min(pixels.shape[:2]) < window:
        raise ValueError(f"the window ({window}x{window}) must fit in the sample ({pixels.shape[1]}x"
                         f"{pixels.shape[0]}); use a larger sample or crop, or a smaller window")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    values = pixels.reshape(pixels.shape[:2] + (-1,)).astype(np.float64)
    out = np.zeros((height, width, values.shape[2]))
    filled = np.zeros((height, width), np.uint8)
    source = np.zeros((height, width, 2), np.int64)
    errors = np.zeros((height, width))
    r0, c0 = rng.integers(0, pixels.shape[0] - SEED + 1), rng.integers(0, pixels.shape[1] - SEED + 1)
    top, left = (height - SEED) // 2, (width - SEED) // 2
    out[top:top + SEED, left:left + SEED] = values[r0:r0 + SEED, c0:c0 + SEED]
    filled[top:top + SEED, left:left + SEED] = 1
    source[top:top + SEED, left:left + SEED] = np.stack(np.meshgrid(np.arange(r0, r0 + SEED),
                                                                    np.arange(c0, c0 + SEED), indexing="ij"), -1)
    uniforms = rng.uniform(size=height * width)
    draw = 0
    weights = gaussian_window(window)
    rings = max(top, left, height - top - SEED, width - left - SEED)  # each pass adds one ring around the seed
    progress = Progress(range(rings), "efros-leung")
    try:
        for _ in progress:
            _, draw = kernel.grow_layer(values, out, filled, source, errors, weights, float(epsilon), uniforms, draw)
            progress.set(pixels=int(filled.sum()))
    except KeyboardInterrupt:
        pass
    image = out.astype(np.uint8).reshape((height, width) + pixels.shape[2:])
    done = filled.astype(bool)
    grown = done.copy()
    grown[top:top + SEED, left:left + SEED] = False
    return EfrosLeungResult(image, pixels, source, errors, done, box, window, pixels=int(done.sum()),
                            sample_shape=list(pixels.shape), crop_box=list(box), sigma=window / 6.4,
                            mean_best_error=float(errors[grown].mean()) if grown.any() else None,
                            synthesis_seconds=time.perf_counter() - start)
