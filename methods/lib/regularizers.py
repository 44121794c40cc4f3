"""Regularizers and image transforms of the optimizing-the-image techniques, each written once.

Two kinds, after Lucent's split of objectives and transforms (shared/notes/methods-library-anchors.md):

* **penalties** -- differentiable functions of the image Tensor, one value per image, added to
  an objective: :func:`l2` (Simonyan et al. 2014's lambda ||I||^2), :func:`alpha_norm`
  (Mahendran & Vedaldi 2015's ||x||_alpha^alpha) and :func:`total_variation` (their TV^beta);
* **steps between updates** -- functions ``f(image, gradient, step)`` that change the image
  array in place after each update, as Yosinski et al. 2015 and the cs231n class visualization
  do: :func:`clip` to the valid pixel range, :func:`decay` (the L2 decay x <- (1 - d) x),
  :func:`blur_every` (a Gaussian blur every k steps), :func:`zero_small_norm` and
  :func:`zero_small_contribution` (Yosinski et al.'s pixel-norm and contribution clipping).

Also here: the model's valid pixel range and 8-bit pixel scale (:func:`pixel_bounds`,
:func:`pixel_scale`, read from ``model.preprocessing``), :func:`gaussian_blur`, :func:`roll`
(jitter), :func:`resize` and :func:`octave_sizes` (DeepDream's octaves). Array code is written
once for NumPy and CuPy.
"""

import numpy as np

import minigrad
from minigrad import Function
from minigrad import functional as F

__all__ = ["alpha_norm", "blur_every", "clip", "decay", "gaussian_blur", "l2", "octave_sizes", "pixel_bounds",
           "pixel_scale", "resize", "roll", "total_variation", "zero_small_contribution", "zero_small_norm"]


# ----------------------------------------------------------------------------- the model's pixels


def pixel_bounds(model):
    """(low, high), each (1, C, 1, 1) float32: the model-input values of pixel levels 0 and 255 per
    channel (the valid range an optimized image is clipped to; cs231n clamps the same way)."""
    p = model.preprocessing
    lo, hi = p.range
    low = (lo - p.mean) / p.std
    high = (hi - p.mean) / p.std
    return low.reshape(1, -1, 1, 1).astype(np.float32), high.reshape(1, -1, 1, 1).astype(np.float32)


def pixel_scale(model):
    """(1, C, 1, 1) float32: 8-bit pixel levels per unit of the model's input, per channel (about
    58 for torchvision's ImageNet normalization, 1 for Caffe's mean-subtracted 0..255 input).

    The classic papers worked on Caffe models, whose input *is* mean-subtracted pixel levels;
    their step sizes, decays and weights keep their meaning on any model when the image is
    optimized in these units (model input = pixels / scale)."""
    p = model.preprocessing
    lo, hi = p.range
    return (p.std * (255.0 / (hi - lo))).reshape(1, -1, 1, 1).astype(np.float32)


# ----------------------------------------------------------------------------- penalties


def l2(x):
    """Per-image squared L2 norm ||x||^2, a Tensor (N,), for a Tensor (N, ...)."""
    return (x * x).reshape(x.shape[0], -1).sum(axis=1)


def alpha_norm(x, alpha=6.0):
    """Per-image ||x||_alpha^alpha = sum |x|^alpha (Mahendran & Vedaldi 2015, eq. 4), a Tensor (N,).
    alpha >= 1; large alpha (their 6) keeps the pixels within a range without fixing it."""
    if not alpha >= 1:
        raise ValueError(f"alpha must be >= 1, got {alpha}")
    return (abs(x) ** alpha).reshape(x.shape[0], -1).sum(axis=1)


class TotalVariation(Function):
    """sum over channels and pixels of ((x[i, j+1] - x[i, j])^2 + (x[i+1, j] - x[i, j])^2)^(beta/2),
    per image, with the differences past the last row and column taken as 0 (the image's edge
    repeated, as Mahendran & Vedaldi's code does). Where both differences vanish and beta < 2 the
    gradient is taken as 0 (a subgradient) instead of dividing by zero."""

    @staticmethod
    def forward(ctx, x, beta):
        xp = minigrad.get_array_module(x)
        right = xp.zeros_like(x)
        down = xp.zeros_like(x)
        right[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
        down[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
        squared = right * right + down * down
        ctx.save_for_backward(right, down, squared)
        ctx.beta = beta
        return (squared ** (beta / 2)).reshape(x.shape[0], -1).sum(axis=1)

    @staticmethod
    def backward(ctx, grad):
        right, down, squared = ctx.saved_tensors
        xp = minigrad.get_array_module(squared)
        beta = ctx.beta
        if beta == 2:
            weight = xp.full_like(squared, 2.0)
        else:
            positive = squared > 0
            weight = xp.where(positive, beta * xp.where(positive, squared, 1) ** (beta / 2 - 1), 0)
        weight *= grad.reshape((-1,) + (1,) * (squared.ndim - 1))
        wr, wd = weight * right, weight * down
        dx = -(wr + wd)
        dx[..., :, 1:] += wr[..., :, :-1]
        dx[..., 1:, :] += wd[..., :-1, :]
        return (dx,)


def total_variation(x, beta=2.0):
    """Per-image total variation TV^beta of an (N, C, H, W) Tensor, a Tensor (N,) (Mahendran &
    Vedaldi 2015, eq. 5); beta = 2 (the default) is the squared-difference smoothness term of
    neural style transfer, beta = 1 the classic edge-preserving TV. Sum it for one loss."""
    x = minigrad.tensor(x) if not isinstance(x, minigrad.Tensor) else x
    if x.ndim != 4:
        raise ValueError(f"total_variation takes a batch (N, C, H, W), got shape {tuple(x.shape)}")
    if not beta >= 1:
        raise ValueError(f"beta must be >= 1, got {beta}")
    return TotalVariation.apply(x, beta=float(beta))


# ----------------------------------------------------------------------------- array transforms


def gaussian_blur(image, sigma):
    """An (N, C, H, W) array blurred by a Gaussian of standard deviation ``sigma`` pixels along H
    and W, separably, with mirrored edges and the kernel cut at 4 sigma (as scipy.ndimage's
    gaussian_filter, which cs231n and Yosinski et al. use). sigma <= 0 returns the image."""
    if sigma <= 0:
        return image
    xp = minigrad.get_array_module(image)
    radius = int(4.0 * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(image.dtype)
    out = image
    for axis in (2, 3):
        n = out.shape[axis]
        width = [(0, 0)] * 4
        width[axis] = (radius, radius)
        padded = xp.pad(out, width, mode="symmetric")
        blurred = xp.zeros_like(out)
        for k, weight in enumerate(taps):
            index = [slice(None)] * 4
            index[axis] = slice(k, k + n)
            blurred += weight * padded[tuple(index)]
        out = blurred
    return out


def roll(image, shift):
    """An (N, C, H, W) array shifted circularly by ``shift`` = (rows, columns) pixels (jitter)."""
    xp = minigrad.get_array_module(image)
    return xp.roll(image, shift, axis=(2, 3)) if any(shift) else image


def resize(image, size):
    """An (N, C, H, W) array resized bilinearly to ``size`` = (h, w)."""
    if tuple(image.shape[2:]) == tuple(size):
        return image
    with minigrad.no_grad():
        return F.interpolate(minigrad.tensor(image), size=tuple(size), mode="bilinear").data


def octave_sizes(size, octaves, scale):
    """The image sizes of ``octaves`` octaves, smallest first, each ``scale`` times the one before
    and the last ``size`` = (h, w) (Mordvintsev et al.'s DeepDream: 4 octaves at scale 1.4)."""
    h, w = size
    return [(max(1, round(h / scale ** k)), max(1, round(w / scale ** k))) for k in range(octaves - 1, -1, -1)]


# ----------------------------------------------------------------------------- steps between updates
# Each returns ``f(image, gradient, step)``, changing the (N, C, H, W) image array in place.


def clip(low, high):
    """Clamp every pixel to [low, high] (arrays broadcastable to the image, e.g. :func:`pixel_bounds`)."""
    def step(image, gradient, t):
        xp = minigrad.get_array_module(image)
        xp.clip(image, xp.asarray(low), xp.asarray(high), out=image)
    return step


def decay(rate):
    """Yosinski et al.'s L2 decay: x <- (1 - rate) x after every update (rate 0: nothing)."""
    def step(image, gradient, t):
        if rate:
            image *= 1.0 - rate
    return step


def blur_every(sigma, every):
    """A Gaussian blur of ``sigma`` pixels after updates 0, every, 2 every, ... (every 0: never)."""
    def step(image, gradient, t):
        if every and sigma > 0 and t % every == 0:
            image[...] = gaussian_blur(image, sigma)
    return step


def _below_percentile(values, percentile):
    """Per image (axis 0), where ``values`` (N, H, W) fall below their own ``percentile``."""
    xp = minigrad.get_array_module(values)
    flat = values.reshape(values.shape[0], -1)
    cut = xp.percentile(flat, percentile, axis=1).reshape(-1, 1, 1)
    return values < cut


def zero_small_norm(percentile):
    """Yosinski et al.'s pixel-norm clipping: set to 0 (the mean colour) the pixels whose norm over
    the colour channels is below the ``percentile``-th of the image (0: off)."""
    def step(image, gradient, t):
        if percentile > 0:
            xp = minigrad.get_array_module(image)
            norms = xp.sqrt((image * image).sum(axis=1))
            image *= ~_below_percentile(norms, percentile)[:, None]
    return step


def zero_small_contribution(percentile):
    """Yosinski et al.'s contribution clipping: setting a pixel to 0 would change the objective by
    about -sum_c x * gradient (first order); set to 0 the pixels where the absolute value of this
    contribution is below the ``percentile``-th of the image (0: off)."""
    def step(image, gradient, t):
        if percentile > 0:
            contribution = abs((image * gradient).sum(axis=1))
            image *= ~_below_percentile(contribution, percentile)[:, None]
    return step

