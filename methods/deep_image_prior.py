"""Deep Image Prior: restoring an image by fitting a randomly initialized network to it alone.

Ulyanov, Vedaldi & Lempitsky, "Deep Image Prior", CVPR 2018 (arXiv:1711.10925). A generator
f_theta maps a fixed random code z to an image and theta is fitted to the corrupted observation
x0 only: theta* = argmin_theta E(f_theta(z); x0), x* = f_theta*(z) (eq. 2), with E the squared
error on the pixels that are known. No image prior is learned from data: the network's structure
is the prior. It fits natural images quickly and noise only reluctantly (the paper's Figure 2,
:func:`deep_image_prior_curves`), so a fit stopped early restores the signal and leaves the
corruption out; run long enough, it reproduces the corruption too.

As in the paper and its code (github.com/DmitryUlyanov/deep-image-prior: ``models/skip.py``, the
denoising and inpainting notebooks):

* the "skip" encoder-decoder: per scale, down a stride-2 3x3 convolution and a 3x3 convolution,
  a 1x1 skip branch of ``skip`` channels, and up -- after the deeper result is upsampled x2
  bilinearly, concatenated with the skip branch and batch-normalized -- a 3x3 and a 1x1
  convolution; every convolution followed by batch norm and LeakyReLU(0.2), reflection padding,
  a 1x1 convolution and a sigmoid at the end; 5 scales of 128 channels with 4 skip channels;
* the code z: 32 channels of uniform noise in [0, 0.1), fixed, perturbed at every step by
  Gaussian noise of standard deviation ``reg_noise`` (1/30 for denoising, 0.03 for inpainting);
* Adam with learning rate 0.01 on the weights (z is not optimized); batch norm uses the batch
  statistics throughout, as the code does;
* the restored image is the output averaged exponentially over the steps (weight 0.99);
* backtracking: when the fit to the observation falls by more than 5 dB in one step (a
  divergence), the weights return to the last good step;
* iterations: 3000 for denoising (sigma = 25), 6000 for inpainting, 2400 for JPEG restoration.

Where this differs from the code, and why:

* The code crops the image to a multiple of 32 pixels; here the network's output is made larger
  (a multiple of 2 ** ``scales``) and the fit measured on the central H x W, so the restored image
  has the input's own size.
* The code's backtracking copies the old weights back but keeps Adam's moments and then applies
  the step computed at the bad weights; here the weights and Adam's state both return to the
  last good step, and the bad step's gradient is dropped.
* Bilinear upsampling uses PyTorch's ``align_corners=False`` (its default since 0.4.0; the code
  was written when bilinear meant ``align_corners=True``).
* JPEG restoration uses the same network as denoising (the code shrinks it for its one JPEG
  example), and inpainting's test corruption removes random pixels (the paper's restoration
  experiment) rather than drawing text.
"""

import copy
import io
import math

import numpy as np

import minigrad
from methods.lib.figures import Panel, curves, figure
from methods.lib.images import require, resize, to_uint8
from methods.lib.datasets import load_pixels
from methods.lib.inputs import check_image, to_host
from methods.lib.options import Option, technique
from methods.lib.result import Result
from methods.lib.training import run_steps
from minigrad import functional as F
from minigrad import nn

__all__ = ["DeepImagePriorResult", "LearningCurvesResult", "SkipNet", "deep_image_prior", "deep_image_prior_curves",
           "psnr"]

TASKS = ("denoise", "inpaint", "jpeg")
#: The code's iterations and input-noise levels per task (denoising and inpainting notebooks).
PAPER_STEPS = {"denoise": 3000, "inpaint": 6000, "jpeg": 2400}
PAPER_REG_NOISE = {"denoise": 1 / 30, "inpaint": 0.03, "jpeg": 1 / 30}
#: A step whose fit to the observation is this many dB worse than the last one is undone.
BACKTRACK_DB = 5.0


def psnr(a, b):
    """Peak signal-to-noise ratio in dB of two arrays of values in [0, 1]: -10 log10 mean((a - b)^2)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


# ----------------------------------------------------------------------------- the network


class ConvUnit(nn.Module):
    """Reflection padding, a k x k convolution (stride 1 or 2), batch norm, LeakyReLU(0.2): every
    convolution of the skip network."""

    def __init__(self, in_channels, out_channels, kernel, stride=1):
        super().__init__()
        self.pad = (kernel - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        return F.leaky_relu(self.bn(self.conv(x)), 0.2)


class Scale(nn.Module):
    """One scale of the skip network: ``down`` (to half the size), the ``skip`` branch (when it has
    channels), ``merge`` (batch norm of the concatenation) and ``up``."""

    def __init__(self, in_channels, width, skip, deeper):
        super().__init__()
        self.skips = skip
        self.down = nn.Sequential(ConvUnit(in_channels, width, 3, stride=2), ConvUnit(width, width, 3))
        if skip:
            self.skip = ConvUnit(in_channels, skip, 1)
        self.merge = nn.BatchNorm2d(skip + deeper)
        self.up = nn.Sequential(ConvUnit(skip + deeper, width, 3), ConvUnit(width, width, 1))


class SkipNet(nn.Module):
    """The paper's "skip" encoder-decoder: ``scales`` scales of ``width`` channels with ``skip``
    skip channels, from ``in_channels`` code channels to ``out_channels`` values in (0, 1).
    Its input's height and width must be multiples of 2 ** scales, at least twice that
    (:meth:`size_for` gives the smallest such size)."""

    def __init__(self, in_channels=32, out_channels=3, width=128, skip=4, scales=5):
        super().__init__()
        self.scales = nn.ModuleList([Scale(in_channels if i == 0 else width, width, skip, width)
                                     for i in range(scales)])
        self.head = nn.Conv2d(width, out_channels, 1)

    def size_for(self, side):
        """The smallest input side >= ``side`` that the network takes."""
        unit = 2 ** len(self.scales)
        return max(-(-side // unit) * unit, 2 * unit)

    def forward(self, z):
        x = self.head(self._scale(0, z))
        return 1 / (1 + (-x.clip(-30, 30)).exp())  # the sigmoid; clipped so exp cannot overflow

    def _scale(self, i, x):
        scale = self.scales[i]
        deeper = scale.down(x)
        if i + 1 < len(self.scales):
            deeper = self._scale(i + 1, deeper)
        deeper = F.interpolate(deeper, scale_factor=2, mode="bilinear")
        if scale.skips:
            deeper = minigrad.concatenate([scale.skip(x), deeper], axis=1)
        return scale.up(scale.merge(deeper))


# ----------------------------------------------------------------------------- fitting


class Fit:
    """What fitting the network to one target recorded: per step the loss (mean squared error on
    the known pixels) and the PSNR of the output against the target (``fit``), and when the clean
    image is known the PSNR of the output (``clean``) and of the running average (``average``)
    against it; ``output`` the last output and ``averaged`` the running average, (C, H, W) in
    [0, 1]; ``steps`` finished, ``backtracks`` made."""

    def __init__(self):
        self.loss, self.fit, self.clean, self.average = [], [], [], []
        self.output = self.averaged = None
        self.steps = self.backtracks = 0


def _fit(net, z, target, steps, lr, reg_noise, average, backtrack, rng, known=None, clean=None,
         description="deep image prior"):
    """Fit ``net`` so that ``net(z + noise)``, cropped to the centre, matches ``target`` (C, H, W)
    on the pixels where ``known`` (H, W booleans; None: all) is true; Ctrl-C stops early. Returns
    a :class:`Fit`; a step undone by backtracking counts in ``steps`` but records nothing."""
    c, h, w = target.shape
    top, left = (z.shape[2] - h) // 2, (z.shape[3] - w) // 2
    goal = minigrad.tensor(target[None])
    weight = None if known is None else minigrad.tensor(known[None, None].astype(np.float32))
    count = target.size if known is None else c * float(known.sum())
    params = list(net.parameters())
    optimizer = minigrad.optim.Adam(params, lr=lr)
    record = Fit()
    saved = None

    def step(i):
        nonlocal saved
        code = z if reg_noise == 0 else z + rng.normal(0.0, reg_noise, z.shape).astype(np.float32)
        out = net(minigrad.tensor(code))[:, :, top:top + h, left:left + w]
        error = (out - goal) * (out - goal)
        loss = (error if weight is None else error * weight).sum() / count
        optimizer.zero_grad()
        loss.backward()
        value = float(loss.item())
        fit = -10.0 * math.log10(max(value, 1e-12))
        if backtrack and record.fit and fit < record.fit[-1] - BACKTRACK_DB and saved is not None:
            for p, data in zip(params, saved[0]):
                p.data[...] = data
            optimizer.state = copy.deepcopy(saved[1])
            record.backtracks += 1
            return {"loss": value, "backtracks": record.backtracks}
        if backtrack:
            saved = ([p.data.copy() for p in params], copy.deepcopy(optimizer.state))
        optimizer.step()
        image = to_host(out.data)[0]
        averaged = image if record.averaged is None or average == 0 else \
            average * record.averaged + (1 - average) * image
        record.output, record.averaged = image, averaged
        record.loss.append(value)
        record.fit.append(fit)
        if clean is not None:
            record.clean.append(psnr(image, clean))
            record.average.append(psnr(averaged, clean))
            return {"loss": value, "psnr": record.average[-1]}
        return {"loss": value}

    record.steps = run_steps(step, steps, description)
    return record


def _start(channels, size, options, seed):
    """The network and its code z for an image of ``size`` (h, w) with ``channels`` channels."""
    minigrad.manual_seed(seed)
    net = SkipNet(options["noise_channels"], channels, options["width"], options["skip"], options["scales"])
    rng = np.random.default_rng(seed)
    z = (rng.random((1, options["noise_channels"], net.size_for(size[0]), net.size_for(size[1])))
         * 0.1).astype(np.float32)
    return net, z, rng


def _as_float(image):
    """(C, H, W) float32 in [0, 1] of a checked uint8 or float picture."""
    image = np.asarray(image)
    pixels = image.astype(np.float32) / 255 if image.dtype == np.uint8 else image.astype(np.float32)
    return (pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)).copy()


def _like(pixels, original):
    """(C, H, W) values in [0, 1] in the layout and range of ``original`` (uint8 or float)."""
    image = pixels[0] if np.asarray(original).ndim == 2 else pixels.transpose(1, 2, 0)
    if original.dtype == np.uint8:
        return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return np.clip(image, 0, 1).astype(original.dtype)


def _jpeg(pixels, quality):
    """(C, H, W) in [0, 1] compressed as JPEG at ``quality`` and decoded again."""
    Image = require("PIL.Image", "JPEG compression")
    image = to_uint8(pixels.transpose(1, 2, 0), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(buffer, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        out = np.asarray(decoded, np.float32) / 255
    return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)


def _corrupt(clean, task, rng, sigma, missing, quality, mask=None):
    """The paper's test corruptions of a clean (C, H, W) image: (observed, mask or None).
    Inpainting removes the pixels outside ``mask``, or ``missing`` of them at random."""
    if task == "denoise":
        return np.clip(clean + rng.normal(0.0, sigma / 255, clean.shape), 0, 1).astype(np.float32), None
    if task == "inpaint":
        mask = rng.random(clean.shape[1:]) >= missing if mask is None else mask
        return clean * mask, mask
    return _jpeg(clean, quality), None


def _picture(pixels):
    """uint8 (H, W, 3) or (H, W) of (C, H, W) values in [0, 1]."""
    return to_uint8(pixels.transpose(1, 2, 0) if pixels.shape[0] == 3 else pixels[0], 0, 1)


def _check_mask(mask, image):
    """``mask`` (an array, or a file or sample:NAME whose white pixels are the known ones) as
    H x W booleans of the image's size with at least one true, or a ValueError."""
    if isinstance(mask, str):
        pixels = load_pixels(mask)
        mask = (pixels if pixels.ndim == 2 else pixels.mean(axis=2)) >= 128
    mask = to_host(mask)
    if mask.shape[:2] != image.shape[:2]:
        raise ValueError(f"mask must have the image's height and width {image.shape[:2]}, got shape {mask.shape}")
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2 or not np.isin(mask, (0, 1)).all():
        raise ValueError(f"mask must be H x W of booleans (or 0 and 1), got shape {mask.shape}, dtype {mask.dtype}")
    if not mask.any():
        raise ValueError("mask has no known pixels: there is nothing to fit")
    return mask.astype(bool)


# ----------------------------------------------------------------------------- the techniques

NETWORK_OPTIONS = [
    Option("width", "int", 128, "channels at every scale (the paper's 128; fewer run faster on a CPU)", low=1,
           high=1024, gallery=16),
    Option("skip", "int", 4, "skip-connection channels at every scale (the paper's 4; 0: none)", low=0, high=1024),
    Option("scales", "int", 5, "scales of the encoder-decoder (the paper's 5)", low=1, high=8, gallery=3),
    Option("noise_channels", "int", 32, "channels of the random code z (the paper's 32)", low=1, high=1024),
    Option("lr", "float", 0.01, "Adam's learning rate (the paper's 0.01)", low=0, open_low=True, high=1),
]


@technique("deep-image-prior", "Deep Image Prior", "Ulyanov et al. 2018", [
    Option("task", "choice", "denoise", "the corruption to undo: noise, missing pixels or JPEG compression",
           choices=TASKS),
    Option("clean", "image", None, "the clean original, when known (a file, sample:NAME or an array of the "
                                   "image's shape): PSNR against it at every step"),
    Option("mask", "image", None, "inpainting: the known pixels (a file or sample:NAME, white = known; or an "
                                  "H x W array, true = known)"),
    Option("corrupt", "bool", False, "take the image as the clean original and corrupt it first (noise of sigma, "
                                     "the pixels outside mask or a fraction missing of them, or JPEG at quality), "
                                     "as the paper's tests do; PSNR against the original is then known",
           gallery=True),
    Option("sigma", "float", 25.0, "standard deviation of the added noise in 0..255 units (the paper's 25)", low=0,
           high=255),
    Option("missing", "float", 0.5, "fraction of pixels removed at random (the paper's 50%)", low=0, high=0.99),
    Option("quality", "int", 10, "JPEG quality of the compression (1..95)", low=1, high=95),
    Option("size", "int", None, "scale the image (and clean, mask) so that its longer side is this many pixels "
                                "first (default: as given)", low=8, high=4096, gallery=32),
    Option("steps", "int", None, "optimization steps (default: the paper's 3000 for denoise, 6000 for inpaint, "
                                 "2400 for jpeg)", low=1, high=1_000_000, gallery=160),
    *NETWORK_OPTIONS,
    Option("reg_noise", "float", None, "standard deviation of the noise added to z at each step (default: the "
                                       "paper's 1/30 for denoise and jpeg, 0.03 for inpaint)", low=0, high=1),
    Option("average", "float", 0.99, "weight of the exponential average of the outputs (the paper's 0.99; "
                                     "0: the last output)", low=0, high=0.9999, gallery=0.9),
    Option("backtrack", "bool", True, "undo a step that makes the fit more than 5 dB worse (the paper's code)"),
    Option("seed", "int", 0, "seed of the network's initialization, z, the noise and the corruption", low=0),
], inputs="image")
def deep_image_prior(image="sample:chelsea", *, task, clean, mask, corrupt, sigma, missing, quality, size, steps,
                     width, skip, scales, noise_channels, lr, reg_noise, average, backtrack, seed):
    """Restore ``image`` (H x W x 3 or H x W, uint8 or float in [0, 1], or a file; the corrupted
    observation, or the original when ``corrupt``) by fitting a skip network to it. Returns a
    :class:`DeepImagePriorResult` whose ``.image`` has ``image``'s layout and range (uint8, or
    float64 in [0, 1])."""
    if corrupt and clean is not None:
        raise ValueError("give clean= or corrupt=True, not both: with corrupt the image is the clean original")
    if task == "inpaint" and mask is None and not corrupt:
        raise ValueError("inpainting needs mask= (H x W, true where a pixel is known), or corrupt=True to remove "
                         "pixels at random")
    if task != "inpaint" and mask is not None:
        raise ValueError(f"mask= is for task='inpaint', not {task!r}")
    if clean is not None:
        clean = check_image(clean, "clean")
        if clean.shape != image.shape:
            raise ValueError(f"clean must have the image's shape {image.shape}, got {clean.shape}")
    if mask is not None:
        mask = _check_mask(mask, image)
    if size is not None:
        image = resize(image, size)
        clean = None if clean is None else resize(clean, size)
        mask = None if mask is None else resize(mask.astype(np.uint8) * 255, size) >= 128
    pixels = _as_float(image)
    steps = steps or PAPER_STEPS[task]
    reg_noise = PAPER_REG_NOISE[task] if reg_noise is None else reg_noise
    net, z, rng = _start(pixels.shape[0], pixels.shape[1:], dict(width=width, skip=skip, scales=scales,
                                                                 noise_channels=noise_channels), seed)
    if corrupt:
        truth = pixels
        observed, mask = _corrupt(pixels, task, rng, sigma, missing, quality, mask)
    else:
        truth = None if clean is None else _as_float(clean)
        observed = pixels
    record = _fit(net, z, observed, steps, lr, reg_noise, average, backtrack, rng, known=mask, clean=truth,
                  description=f"deep image prior ({task})")
    if record.steps == 0:
        raise KeyboardInterrupt  # stopped before the first step: there is nothing to return
    result = DeepImagePriorResult(
        _like(record.averaged, image), record, observed, truth, mask, task,
        steps=record.steps, interrupted=record.steps < steps, backtracks=record.backtracks,
        psnr_observed=None if truth is None else psnr(observed, truth),
        psnr_restored=None if truth is None else psnr(record.averaged, truth),
        best_step=None if truth is None else int(np.argmax(record.average)) + 1,
        psnr_best=None if truth is None else max(record.average),
        history={"loss": record.loss, "psnr_fit": record.fit, "psnr_output": record.clean,
                 "psnr_average": record.average})
    result.params.update(steps=steps, reg_noise=reg_noise)
    return result


class DeepImagePriorResult(Result):
    """``image``: the restoration (the averaged output) in the input's layout and range;
    ``observed`` and ``clean`` (None when unknown) (C, H, W) in [0, 1]; ``mask`` the known pixels
    (inpainting) or None; ``fit`` the :class:`Fit` record (loss and PSNR per step). ``summary``:
    steps, PSNR of the observation and of the restoration against the clean image, the best
    averaged PSNR and its step, backtracks, whether Ctrl-C stopped it."""

    technique = "deep-image-prior"

    def __init__(self, image, fit, observed, clean, mask, task, **summary):
        super().__init__(**summary)
        self.image, self.fit, self.observed, self.clean, self.mask, self.task = image, fit, observed, clean, mask, task

    def figures(self):
        s = self.summary
        what = {"denoise": "noisy", "inpaint": "pixels missing (black)", "jpeg": "JPEG"}[self.task]
        known = self.clean is not None
        panels = [
            Panel(f"observed ({what})" + (f", PSNR {s['psnr_observed']:.2f} dB" if known else ""),
                  image=_picture(self.observed)),
            Panel(f"restored, step {s['steps']}" + (f", PSNR {s['psnr_restored']:.2f} dB" if known else ""),
                  image=_picture(self.fit.averaged)),
        ]
        if known:
            panels.append(Panel("clean original", image=_picture(self.clean)))
        out = {"restoration": figure(panels, title=f"Deep Image Prior ({self.task}), PSNR against the clean image"
                                     if known else f"Deep Image Prior ({self.task})")}
        series = {"output vs observation (fit)": self.fit.fit}
        if known:
            series = {"averaged output vs clean": self.fit.average, "output vs clean": self.fit.clean,
                      **series, "observation vs clean": [s["psnr_observed"]] * len(self.fit.fit)}
        out["psnr"] = curves(series, title="PSNR per step: the signal is fitted before the corruption" if known
                             else "PSNR of the output against the observation", ylabel="PSNR (dB)")
        return out

    def pictures(self):
        out = {"restored": _picture(self.fit.averaged), "observed": _picture(self.observed)}
        if self.clean is not None:
            out["clean"] = _picture(self.clean)
        return out


TARGETS = ("natural image", "image + noise", "shuffled pixels", "white noise")


@technique("dip-learning-curves", "Deep Image Prior learning curves (Figure 2)", "Ulyanov et al. 2018", [
    Option("size", "int", None, "scale the image so that its longer side is this many pixels first "
                                "(default: as given)", low=8, high=4096, gallery=32),
    Option("steps", "int", 2400, "optimization steps for each of the four targets", low=1, high=1_000_000,
           gallery=60),
    *NETWORK_OPTIONS,
    Option("sigma", "float", 25.0, "standard deviation of the noise of 'image + noise', 0..255 units", low=0,
           high=255),
    Option("seed", "int", 0, "seed of the network's initialization, z, the noise and the shuffling", low=0),
], inputs="image")
def deep_image_prior_curves(image="sample:chelsea", *, size, steps, width, skip, scales, noise_channels, lr, sigma,
                            seed):
    """The paper's Figure 2: the same network, from the same initialization and code z, fitted
    to four targets made from ``image`` -- the image, the image plus Gaussian noise, its pixels
    shuffled, and uniform white noise -- with the mean squared error recorded per step (plain
    reconstruction: no input noise, no averaging). Returns a :class:`LearningCurvesResult`."""
    if size is not None:
        image = resize(image, size)
    pixels = _as_float(image)
    rng = np.random.default_rng(seed)
    c, h, w = pixels.shape
    order = rng.permutation(h * w)
    targets = {
        "natural image": pixels,
        "image + noise": np.clip(pixels + rng.normal(0.0, sigma / 255, pixels.shape), 0, 1).astype(np.float32),
        "shuffled pixels": pixels.reshape(c, -1)[:, order].reshape(c, h, w),
        "white noise": rng.random(pixels.shape).astype(np.float32),
    }
    fits = {}
    for name, target in targets.items():
        net, z, fit_rng = _start(c, (h, w), dict(width=width, skip=skip, scales=scales,
                                                 noise_channels=noise_channels), seed)
        fits[name] = _fit(net, z, target, steps, lr, 0.0, 0.0, True, fit_rng, description=f"fitting {name}")
        if fits[name].steps < steps:
            break  # Ctrl-C: keep the curves finished so far
    if not fits[TARGETS[0]].steps:
        raise KeyboardInterrupt
    finished = {name: fit for name, fit in fits.items() if fit.steps}
    return LearningCurvesResult(
        {name: targets[name] for name in finished}, finished,
        steps={name: fit.steps for name, fit in finished.items()}, interrupted=any(f.steps < steps for f in fits.values())
        or len(fits) < len(TARGETS), final_mse={name: fit.loss[-1] for name, fit in finished.items()},
        mse={name: fit.loss for name, fit in finished.items()})


class LearningCurvesResult(Result):
    """``targets`` and ``fits`` ({name: (C, H, W) target}, {name: :class:`Fit`}) for the four
    targets of Figure 2 (fewer when Ctrl-C stopped it); ``summary`` holds the mean squared error
    per step and at the end of each."""

    technique = "dip-learning-curves"

    def __init__(self, targets, fits, **summary):
        super().__init__(**summary)
        self.targets, self.fits = targets, fits

    def steps_to(self, mse):
        """{name: the first step whose loss is at most ``mse``, or None}."""
        return {name: next((i + 1 for i, v in enumerate(fit.loss) if v <= mse), None) for name, fit in self.fits.items()}

    def figures(self):
        curve = curves({name: fit.loss for name, fit in self.fits.items()}, log=True, ylabel="mean squared error",
                       title="Learning curves (Figure 2): natural images fit fast, noise slowly")
        panels = [Panel(f"{name} (target)", image=_picture(target)) for name, target in self.targets.items()]
        panels += [Panel(f"fit after {fit.steps} steps, MSE {fit.loss[-1]:.2g}", image=_picture(fit.output))
                   for fit in self.fits.values()]
        return {"curves": curve, "fits": figure(panels, columns=len(self.targets), title="targets and fits")}

    def pictures(self):
        out = {}
        for name, target in self.targets.items():
            key = name.replace(" + ", "_plus_").replace(" ", "_")
            out[f"{key}_target"] = _picture(target)
            out[f"{key}_fit"] = _picture(self.fits[name].output)
        return out
