"""What every adversarial attack shares (torchattacks' lesson: one base, each attack a short
recipe): the space the attack works in, the model's scores and their gradients there, the
labels and targets, and the report.

The space. For a model that carries preprocessing (fashion-vgg, VGG, AlexNet, any
:class:`minigrad.models.Model`) the attack perturbs the *image*, not the normalized input: the
batch is de-normalized with ``model.preprocessing`` (range, mean, std) into pixels in [0, 1]
(in the network's channel order), perturbed there, clipped to [0, 1], and normalized again for
the model. ε, L∞, L2 and L0 are then in pixel units on [0, 1], comparable across models (8/255
means eight grey levels whatever the mean and std). A bare ``nn.Module`` (adapted by
:func:`minigrad.models.as_model` without preprocessing) declares no pixel range: the attack
works on its input as it is, in the input's own units, and clips nothing.

The report. Every attack returns an :class:`AttackResult`: ``.adversarial`` (the perturbed batch,
(N, C, H, W) NumPy in the same space as the input), ``.perturbation`` (in the attack's units),
its L∞, L2 and L0 norms per image, the label and confidence before and after, the target when
there is one, whether the attack succeeded and the step where it first did.
"""

import numpy as np

import minigrad
from methods.lib.attribution import class_title
from methods.lib.figures import Panel, curves, figure
from methods.lib.images import chw_to_hwc, to_uint8
from methods.lib.inputs import frozen, probabilities, resolve_targets, to_host
from methods.lib.options import Option
from methods.lib.result import Result
from minigrad import functional as F
from minigrad.models import Preprocessing
from minigrad.models.base import ModuleModel, SequentialModel

__all__ = ["EPS_UNITS", "LABEL", "TARGET", "AttackResult", "Setup", "Space", "class_gradients", "cross_entropy",
           "direction", "first_success", "mean_cross_entropy", "perturbation_picture", "project", "scores",
           "scores_and_gradient", "succeeded"]

#: What every ε's ``--help`` says about its units.
EPS_UNITS = ("in pixel units on [0, 1] for models with preprocessing (the de-normalized image is perturbed and "
             "clipped to [0, 1]); in the input's own units, unclipped, for a bare nn.Module")

#: The options every attack that takes a label and a target declares.
LABEL = Option("label", "target", None, "the true class the attack moves away from (index or name, or one per image; "
                                        "default: each image's predicted class)")
TARGET = Option("target", "target", None, "the class to reach (index or name, or one per image): a targeted attack "
                                          "(default: none, untargeted)")

#: Pixels may stray this far outside [0, 1] after float32 normalization and back.
RANGE_TOLERANCE = 1e-4


class Space:
    """Where an attack works: ``inputs = pixels * scale + offset`` per channel, ``box`` the valid
    pixel range ((0, 1), or None for a bare module) and ``units`` in words."""

    def __init__(self, model, dtype=np.float32):
        pre = model.preprocessing
        bare = isinstance(model, (SequentialModel, ModuleModel)) and pre == Preprocessing.identity(pre.depth)
        if bare:
            scale, offset, self.box = np.ones(pre.depth), np.zeros(pre.depth), None
            self.units = "input units"
        else:
            lo, hi = pre.range
            std, mean = pre.std.astype(np.float64), pre.mean.astype(np.float64)
            scale, offset, self.box = (hi - lo) / std, (lo - mean) / std, (0.0, 1.0)
            self.units = "pixel units on [0, 1]"
        self.scale = scale.reshape(1, -1, 1, 1).astype(dtype)
        self.offset = offset.reshape(1, -1, 1, 1).astype(dtype)
        self.channels = pre.channels

    def pixels(self, x):
        """Model input (N, C, H, W) -> the attack's pixels (checked against the box, then clipped)."""
        if self.box is None:
            return np.array(x)
        p = (np.asarray(x) - self.offset) / self.scale
        low, high = float(p.min()), float(p.max())
        if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
            raise ValueError(f"the batch is not a preprocessed image: de-normalized, its pixels span [{low:.3g}, "
                             f"{high:.3g}], outside [0, 1]; make it with model.preprocess(images), or attack a bare "
                             "nn.Module to perturb inputs in their own units")
        return np.clip(p, 0.0, 1.0)

    def inputs(self, p):
        """The attack's pixels (array or Tensor) -> the model's input."""
        if self.box is None:
            return p
        if isinstance(p, minigrad.Tensor):
            return p * minigrad.tensor(self.scale) + minigrad.tensor(self.offset)
        return (p * self.scale + self.offset).astype(p.dtype)

    def clip(self, p):
        """``p`` inside the box (as it is without one)."""
        return p if self.box is None else np.clip(p, *self.box)


def cross_entropy(classes):
    """The loss ``sum_i -log softmax(z_i)[classes_i]`` as a function of the logits: a sum, so each
    image's gradient is its own whatever the batch."""
    return lambda z: F.cross_entropy(z, classes, reduction="sum")


def scores(model, space, p):
    """The logits (N, K) of pixels ``p``, as a host array, without a graph."""
    with minigrad.no_grad():
        return to_host(model(minigrad.tensor(space.inputs(p))).data)


def scores_and_gradient(model, space, p, loss):
    """(logits (N, K), d loss / d pixels (N, C, H, W)) for ``loss(logits Tensor) -> scalar``; the
    model's weights are frozen (no weight gradient is computed)."""
    with frozen(model):
        image = minigrad.tensor(p, requires_grad=True)
        with minigrad.enable_grad():
            z = model(space.inputs(image))
            value = loss(z)
        value.backward()
    return to_host(z.data), to_host(image.grad)


def class_gradients(model, space, p, classes):
    """(logits (N, K), gradients (N, J, C, H, W)): the gradient of each image's class scores
    ``classes[i, j]`` (before the softmax), one backward pass per column j over one forward."""
    classes = np.asarray(classes)
    with frozen(model):
        image = minigrad.tensor(p, requires_grad=True)
        with minigrad.enable_grad():
            z = model(space.inputs(image))
        xp = minigrad.get_array_module(z.data)
        rows = xp.arange(len(p))
        out = np.empty((len(p), classes.shape[1]) + p.shape[1:], p.dtype)
        for j in range(classes.shape[1]):
            seed = xp.zeros_like(z.data)
            seed[rows, xp.asarray(classes[:, j])] = 1
            image.grad = None
            z.backward(seed, retain_graph=j + 1 < classes.shape[1])
            out[:, j] = to_host(image.grad)
    return to_host(z.data), out


def direction(gradient, norm):
    """The steepest-ascent step of unit size per image: sign(g) for "linf" (Goodfellow et al.'s fast
    gradient sign), g / ||g||_2 for "l2"."""
    if norm == "linf":
        return np.sign(gradient)
    length = np.sqrt((gradient.reshape(len(gradient), -1).astype(np.float64) ** 2).sum(axis=1))
    return (gradient / (length + 1e-12).reshape(-1, 1, 1, 1)).astype(gradient.dtype)


def project(delta, eps, norm):
    """``delta`` brought back into the ``norm`` ball of radius ``eps`` (per image)."""
    if norm == "linf":
        return np.clip(delta, -eps, eps)
    length = np.sqrt((delta.reshape(len(delta), -1).astype(np.float64) ** 2).sum(axis=1))
    factor = np.minimum(1.0, eps / np.maximum(length, 1e-12)).reshape(-1, 1, 1, 1)
    return (delta * factor).astype(delta.dtype)


def succeeded(logits, labels, targets=None):
    """Per image: the top class is the target (targeted), or is not the label (untargeted)."""
    top = np.asarray(logits).argmax(axis=1)
    return top == targets if targets is not None else top != labels


def mean_cross_entropy(logits, classes):
    """The batch's mean cross-entropy of ``classes`` from host logits (for the loss curves)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(z)), classes].mean())


def first_success(flipped_at, success, step):
    """``flipped_at`` with ``step`` recorded where an image succeeded for the first time (-1: not yet)."""
    return np.where((flipped_at < 0) & success, step, flipped_at)


class Setup:
    """An attack's starting point: ``space``, the clean ``pixels`` and ``logits``, the ``labels``
    (the class moved away from: given, or each image's prediction) and the ``targets`` (the class
    to reach, or None for an untargeted attack)."""

    def __init__(self, model, x, label=None, target=None):
        x = to_host(x)
        self.model, self.x = model, x
        self.space = Space(model, x.dtype)
        self.pixels = self.space.pixels(x).astype(x.dtype)
        self.logits = scores(model, self.space, self.pixels)
        self.labels = resolve_targets(model, label, self.logits)
        self.targets = None if target is None else resolve_targets(model, target, self.logits)


def perturbation_picture(delta, channels="RGB", bound=None):
    """A perturbation (C, H, W) as uint8 RGB: grey = 0, white / black = +/- ``bound`` (default its
    own largest magnitude). Returns (picture, bound); the amplification is 0.5 / bound. Changes
    below float32's resolution of [0, 1] (1e-7) count as none."""
    delta = np.asarray(delta, np.float64)
    if channels == "BGR":
        delta = delta[::-1]
    bound = float(np.abs(delta).max()) if bound is None else float(bound)
    if bound < 1e-7:
        bound = 0.0
        picture = np.full(delta.shape, 128, np.uint8)
    else:
        picture = to_uint8(delta, -bound, bound)
    picture = chw_to_hwc(picture)
    return (np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture), bound


class AttackResult(Result):
    """``adversarial`` (N, C, H, W) the perturbed batch in the input's space; ``perturbation`` in the
    attack's units (``units``); ``linf``, ``l2``, ``l0`` its norms per image (L0: entries changed);
    ``labels`` / ``targets`` the classes moved away from / towards (None: untargeted);
    ``clean_class`` / ``clean_confidence`` and ``adversarial_class`` / ``adversarial_confidence``
    the top class and its probability before and after; ``success`` per image; ``flipped_at`` the
    step where each image first succeeded (-1: never; ``last_step`` for the returned batch when no
    earlier step was recorded); ``history`` {name: values per step} drawn as curves; ``name`` the attack."""

    def __init__(self, setup, adversarial_pixels, name, flipped_at=-1, last_step=1, history=None, **summary):
        super().__init__(**summary)
        model, space = setup.model, setup.space
        self.name, self.units, self.channels = name, space.units, space.channels
        self.labels, self.targets = setup.labels, setup.targets
        self.original = setup.x
        self.perturbation = (adversarial_pixels - setup.pixels).astype(setup.x.dtype)
        self.adversarial = space.inputs(adversarial_pixels).astype(setup.x.dtype)
        flat = self.perturbation.reshape(len(self.perturbation), -1).astype(np.float64)
        self.linf, self.l2 = np.abs(flat).max(axis=1), np.sqrt((flat ** 2).sum(axis=1))
        self.l0 = (flat != 0).sum(axis=1)
        after = scores(model, space, adversarial_pixels)
        rows = np.arange(len(after))
        before_p, after_p = probabilities(setup.logits), probabilities(after)
        self.clean_class, self.adversarial_class = setup.logits.argmax(axis=1), after.argmax(axis=1)
        self.clean_confidence = before_p[rows, self.clean_class]
        self.adversarial_confidence = after_p[rows, self.adversarial_class]
        self.success = succeeded(after, self.labels, self.targets)
        flipped_at = np.broadcast_to(np.asarray(flipped_at), self.success.shape)
        self.flipped_at = np.where(self.success, np.where(flipped_at >= 0, flipped_at, last_step), -1)
        self.history = history or {}
        self._model = model
        self._before = [class_title(model, c, p) for c, p in zip(self.clean_class, self.clean_confidence)]
        self._after = [class_title(model, c, p) for c, p in zip(self.adversarial_class, self.adversarial_confidence)]
        self.summary.update(
            attack=name, units=self.units, success_rate=float(self.success.mean()), success=self.success,
            flipped_at=self.flipped_at, linf=self.linf, l2=self.l2, l0=self.l0,
            labels=[model.label(c) for c in self.labels],
            targets=None if self.targets is None else [model.label(c) for c in self.targets],
            before=self._before, after=self._after)

    def panels(self, i):
        """Original, perturbation (amplified, grey = 0) and adversarial image ``i``."""
        picture, bound = perturbation_picture(self.perturbation[i], self.channels)
        amplified = f"x{0.5 / bound:.3g}, grey = 0, white = +{bound:.3g}" if bound else "none"
        return [Panel(f"original\n{self._before[i]}", image=self._model.deprocess(self.original[i])),
                Panel(f"perturbation\n{amplified}", image=picture),
                Panel(f"adversarial\n{self._after[i]}", image=self._model.deprocess(self.adversarial[i]))]

    def caption(self, i):
        goal = (f"target {self.summary['targets'][i]}" if self.targets is not None
                else f"away from {self.summary['labels'][i]}")
        outcome = f"succeeded at step {self.flipped_at[i]}" if self.success[i] else "failed"
        return (f"{self.name} ({goal}): {outcome}; L-inf {self.linf[i]:.3g}, L2 {self.l2[i]:.3g}, "
                f"L0 {self.l0[i]} ({self.units})")

    def figures(self):
        out = {f"{i}": figure(self.panels(i), title=self.caption(i)) for i in range(len(self.adversarial))}
        if self.history:
            ylabel = next(iter(self.history)) if len(self.history) == 1 else "value (see the legend)"
            out["history"] = curves(self.history, title=f"{self.name} by step", ylabel=ylabel)
        return out

    def pictures(self):
        out = {}
        for i in range(len(self.adversarial)):
            out[f"{i}_adversarial"] = self._model.deprocess(self.adversarial[i])
            out[f"{i}_perturbation"] = perturbation_picture(self.perturbation[i], self.channels)[0]
        return out
