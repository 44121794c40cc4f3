"""Adversarial examples as the lecture notes show them: the logistic-regression example, and a
"distortion" trained from a zero image and added to real images.

**Why linear models are fooled** (Goodfellow, Shlens & Szegedy 2015, sec. 3, as the notes tell
it). A logistic regression P(y = 1 | x) = sigma(w.x + b) on ten inputs, with the notes' numbers
x = [2, -1, 3, -2, 2, 2, 1, -4, 5, 1], w = [-1, -1, 1, -1, 1, -1, 1, 1, -1, 1] and b = 0, scores
w.x = -3: p(class 1) = 1 / (1 + e^3) = 0.0474, 95% sure it is class 0. Moving every input by
eps = 0.5 in the direction of sign(w) -- the sign of the gradient of the score, FGSM's step --
adds eps ||w||_1 = 5 to the score: 2, p = 0.88. Each input moved by 0.5, the decision flipped;
with 150,528 inputs (a 224 x 224 colour image) a far smaller step per input suffices.
``logistic_example()`` computes this through minigrad's autograd and prints the notes' table::

    python -m methods adversarial --example logistic

**The distortion** (the notes: "obtained by starting with a zero image and training it to
optimize for the class you want it to classify as. Now add the distortion to the real image";
Szegedy et al. 2014 show such distortions, magnified, between "correct" and "ostrich"). Here the
zero image is the model's input 0 (the dataset's mean colour for mean-subtracted models); the
distortion is trained on it by targeted projected gradient steps (:func:`methods.pgd`, no random
start) within an L-inf budget eps in pixel units, then added to each image of the dataset,
clipped to the valid range. How often it *transfers* -- turns images of other classes into the
target -- is measured against random sign noise of the same size (the control). (A network whose
biases are all zero -- VGG with torchvision's random initialization -- has a zero gradient at
input 0, every ReLU sitting at its kink: its distortion stays zero, and the figure says so.)
"""

import numpy as np

import minigrad
from methods.lib.attack import EPS_UNITS, Space, perturbation_picture, scores
from methods.lib.attribution import class_title
from methods.lib.figures import Panel, figure, table
from methods.lib.inputs import probabilities, resolve_targets
from methods.lib.options import Option, technique
from methods.lib.output import text_table
from methods.lib.result import Result
from methods.pgd import pgd

__all__ = ["DistortionResult", "LogisticResult", "adversarial_examples", "logistic_example"]

#: The lecture notes' input and weights.
NOTES_X = (2, -1, 3, -2, 2, 2, 1, -4, 5, 1)
NOTES_W = (-1, -1, 1, -1, 1, -1, 1, 1, -1, 1)


def _sum_text(terms):
    """"-2 + 1 + 3 - 4": the products w_i x_i written out as the notes write them."""
    text = f"{terms[0]:g}"
    for t in terms[1:]:
        text += f" - {-t:g}" if t < 0 else f" + {t:g}"
    return text


class LogisticResult(Result):
    """The notes' example: ``x``, ``w``, ``eps``; ``score`` and ``probability`` (of class 1) before,
    ``adversarial`` (x + eps sign(w)) with ``adversarial_score`` and ``adversarial_probability``."""

    technique = "adversarial"

    def __init__(self, x, w, eps, adversarial, score, probability, adversarial_score, adversarial_probability):
        super().__init__(example="logistic", x=x, w=w, eps=eps, adversarial=adversarial, score=score,
                         probability=probability, adversarial_score=adversarial_score,
                         adversarial_probability=adversarial_probability)
        self.x, self.w, self.eps, self.adversarial = x, w, eps, adversarial
        self.score, self.probability = score, probability
        self.adversarial_score, self.adversarial_probability = adversarial_score, adversarial_probability

    def rows(self):
        return [(f"{a:g}", f"{b:g}", f"{c:g}") for a, b, c in zip(self.x, self.w, self.adversarial)]

    def text(self):
        before, after = _sum_text(self.w * self.x), _sum_text(self.w * self.adversarial)
        return "\n".join([
            "Let's fool a binary linear classifier (logistic regression), P(y = 1 | x) = sigma(w.x + b), b = 0:",
            "", text_table(("x", "w", f"adversarial x = x + {self.eps:g} sign(w)"), self.rows()), "",
            f"class 1 score before: {before} = {self.score:g}",
            f"=> probability of class 1 is 1/(1+e^(-({self.score:g}))) = {self.probability:.4f}",
            f"class 1 score after: {after} = {self.adversarial_score:g}",
            f"=> probability of class 1 is now 1/(1+e^(-({self.adversarial_score:g}))) = "
            f"{self.adversarial_probability:.4f}",
            f"i.e. we improved the class 1 probability from {self.probability:.0%} to "
            f"{self.adversarial_probability:.0%}, moving each input by {self.eps:g}."])

    def figures(self):
        title = (f"score {self.score:g} (p = {self.probability:.4f}) -> {self.adversarial_score:g} "
                 f"(p = {self.adversarial_probability:.4f})")
        return {"table": table(("x", "w", "adversarial x"), self.rows(), title=title, width=4.2)}


def logistic_example(eps=0.5):
    """The notes' logistic-regression example: the FGSM step ``eps * sign(d score / d x)`` (the
    gradient taken by minigrad: it is w) applied to x. Returns a :class:`LogisticResult`."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")
    w = minigrad.tensor(np.array(NOTES_W, np.float64))
    x = minigrad.tensor(np.array(NOTES_X, np.float64), requires_grad=True)
    score = (w * x).sum()
    score.backward()
    adversarial = x.numpy() + eps * np.sign(x.grad)
    after = float(np.dot(w.numpy(), adversarial))

    def sigma(s):
        return 1.0 / (1.0 + np.exp(-s))

    return LogisticResult(x.numpy(), w.numpy(), float(eps), adversarial, float(score.item()),
                          sigma(float(score.item())), after, sigma(after))


class DistortionResult(Result):
    """``distortion`` (C, H, W) in the attack's units, trained on the zero image (``zero``, the
    model's input 0) towards class ``target``; ``adversarial`` the dataset images plus the
    distortion (N, C, H, W, the model's input space); ``before`` / ``after`` / ``noise`` their
    predicted classes without it, with it, and with random sign noise of the same size;
    ``eligible`` the images counted (neither labelled nor predicted as the target);
    ``transfer_rate`` / ``noise_transfer_rate`` the share of those now predicted as the target,
    ``flip_rate`` / ``noise_flip_rate`` the share whose prediction changed."""

    technique = "adversarial"

    def __init__(self, model, space, target, zero, distortion, images, adversarial, before, after, noise, eligible,
                 zero_probabilities, eps):
        self.target, self.zero, self.distortion, self.adversarial = target, zero, distortion, adversarial
        self.before, self.after, self.noise, self.eligible = before, after, noise, eligible
        counted = max(int(eligible.sum()), 1)
        self.transfer_rate = float((after[eligible] == target).sum() / counted)
        self.flip_rate = float((after[eligible] != before[eligible]).sum() / counted)
        self.noise_transfer_rate = float((noise[eligible] == target).sum() / counted)
        self.noise_flip_rate = float((noise[eligible] != before[eligible]).sum() / counted)
        super().__init__(example="distortion", target=model.label(target), eps=eps, images=len(images),
                         eligible=int(eligible.sum()), transfer_rate=self.transfer_rate, flip_rate=self.flip_rate,
                         noise_transfer_rate=self.noise_transfer_rate, noise_flip_rate=self.noise_flip_rate,
                         zero_before=class_title(model, zero_probabilities[0].argmax(), zero_probabilities[0].max()),
                         zero_after=class_title(model, zero_probabilities[1].argmax(), zero_probabilities[1].max()))
        self._model, self._space, self._images = model, space, images

    def text(self):
        rows = [("the distortion", self.transfer_rate, self.flip_rate),
                ("random sign noise, same L-inf", self.noise_transfer_rate, self.noise_flip_rate)]
        return (f"distortion towards {self.summary['target']} (L-inf {self.summary['eps']:g}, {self._space.units}) "
                f"added to {self.summary['eligible']} images of other classes:\n"
                + text_table(("added", "now the target", "prediction changed"), rows))

    def figures(self):
        model, label = self._model, self._model.label
        picture, bound = perturbation_picture(self.distortion, self._space.channels)
        shown = np.flatnonzero(self.eligible)[:4]
        zero_images = model.deprocess(self._space.inputs(np.stack([self.zero, self._space.clip(
            self.zero + self.distortion)]).astype(np.float32)))
        amplified = f"x{0.5 / bound:.3g}, grey = 0, white = +{bound:.3g}" if bound else "none (zero gradient)"
        panels = [Panel(f"zero image\n{self.summary['zero_before']}", image=zero_images[0]),
                  Panel(f"distortion\n{amplified}", image=picture),
                  Panel(f"zero + distortion\n{self.summary['zero_after']}", image=zero_images[1])]
        for i in shown[:2]:
            panels += [Panel(f"image {i}\npredicted {label(self.before[i])}", image=self._images[i]),
                       Panel(f"+ distortion\npredicted {label(self.after[i])}",
                             image=model.deprocess(self.adversarial[i]))]
        title = (f"distortion towards {label(self.target)}: {self.transfer_rate:.1%} of {self.summary['eligible']} "
                 f"images become {label(self.target)} (random noise: {self.noise_transfer_rate:.1%})")
        out = {"distortion": figure(panels[:3], title=title)}
        if len(panels) > 3:
            out["examples"] = figure(panels[3:], columns=4, title="real images plus the distortion")
        return out

    def pictures(self):
        """The distortion (amplified, grey = 0; left out when it is zero: a zero gradient at the zero
        image, which the figure states) and the first two eligible images with it added."""
        out = {}
        if np.any(self.distortion):
            out["perturbation"] = perturbation_picture(self.distortion, self._space.channels)[0]
        for i in np.flatnonzero(self.eligible)[:2]:
            out[f"{i}_distorted"] = self._model.deprocess(self.adversarial[i])
        return out


def _distortion(model, dataset, target, eps, steps, images, seed):
    pixels = dataset.images[:images]
    x = model.preprocessing.normalize(pixels)
    space = Space(model, x.dtype)
    clean = space.pixels(x).astype(x.dtype)
    before = scores(model, space, clean)
    predicted = before.argmax(axis=1)
    if target is None:
        target = int(np.argmin(np.bincount(predicted, minlength=before.shape[1])))
    else:
        target = int(resolve_targets(model, target, before[:1])[0])
    zero = np.zeros((1,) + x.shape[1:], x.dtype)
    trained = pgd(model, zero, target=target, eps=eps, steps=steps, random_start=False)
    distortion = trained.perturbation[0]
    zero_pixels = space.pixels(zero)[0]
    noise_delta = eps * np.sign(np.random.default_rng(seed).uniform(-1, 1, distortion.shape)).astype(x.dtype)
    adversarial = space.clip(clean + distortion).astype(x.dtype)
    after = scores(model, space, adversarial).argmax(axis=1)
    noise = scores(model, space, space.clip(clean + noise_delta).astype(x.dtype)).argmax(axis=1)
    eligible = predicted != target
    known = dataset.labels is not None and tuple(dataset.names) == tuple(model.labels or ())
    if known:
        eligible &= dataset.labels[:images] != target
    zero_probabilities = probabilities(scores(model, space, np.stack([zero_pixels, space.clip(
        zero_pixels + distortion)]).astype(x.dtype)))
    return DistortionResult(model, space, target, zero_pixels, distortion, model.deprocess(x),
                            space.inputs(adversarial), predicted, after, noise, eligible, zero_probabilities, eps)


@technique("adversarial", "Adversarial examples in the lecture notes: the logistic example and the distortion",
           "Szegedy et al. 2014; Goodfellow et al. 2015", [
    Option("example", "choice", "distortion", "distortion: train a distortion on the zero image towards a class and "
                                              "add it to the dataset's images; logistic: the notes' 10-input logistic "
                                              "regression table (ignores the model and dataset)",
           choices=("distortion", "logistic")),
    Option("target", "target", None, "the distortion's class (default: the class the model predicts least often on "
                                     "the dataset)"),
    Option("eps", "float", 0.1, f"the distortion's L-inf size, {EPS_UNITS}; the logistic example's step is 0.5",
           low=0),
    Option("steps", "int", 50, "projected gradient steps training the distortion", low=1, high=100_000, gallery=20),
    Option("images", "int", None, "add the distortion to only the first N dataset images (default: all)", low=1,
           gallery=16),
    Option("seed", "int", 0, "seed of the random-noise control", low=0),
], inputs="dataset")
def adversarial_examples(model, dataset, *, example, target, eps, steps, images, seed):
    """The notes' adversarial examples: a :class:`DistortionResult`, or with
    ``example="logistic"`` the :class:`LogisticResult` of :func:`logistic_example`."""
    if example == "logistic":
        return logistic_example()
    return _distortion(model, dataset, target, eps, steps, images or len(dataset.images), seed)
