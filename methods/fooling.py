"""Fooling images: pictures of nothing that a network classifies with near certainty.

Nguyen, Yosinski & Clune, "Deep Neural Networks are Easily Fooled: High Confidence Predictions for
Unrecognizable Images", CVPR 2015 (arXiv:1412.1897); the lecture notes show their >= 99.6%
confidence images. Two ways to make one per target class, both from random noise:

* ``method="gradient"`` (the paper's sec. 3.4, after Simonyan et al. 2014): gradient ascent on
  the log-probability of the target class from uniform noise; each step moves every pixel by at
  most ``lr`` (the gradient divided by its largest entry), clipped to the valid range. An image
  stops once it reaches the threshold.
* ``method="evolution"`` (sec. 2.2, direct encoding, with MAP-Elites, sec. 2.1): an archive holds
  the best image found so far for each target class. Each generation picks ``population`` elites
  at random, mutates them -- each pixel with probability ``mutation_rate``, halved every 1,000
  generations, by Deb's polynomial mutation with strength (distribution index) 15 -- and a child
  replaces the elite of every class for which it is more confident. The pixels start as uniform
  noise. No gradients: only forward passes. (The paper found direct encoding works on MNIST but
  not on ImageNet; 224 x 224 x 3 independent pixels are too many to evolve.)

Noise and the valid range are in pixel units on [0, 1] for models with preprocessing; a bare
nn.Module gets noise in [0, 1] in its own input units and no clipping.
"""

import numpy as np

from methods.lib.attack import EPS_UNITS, Space, cross_entropy, scores, scores_and_gradient
from methods.lib.attribution import class_title
from methods.lib.figures import Panel, curves, figure
from methods.lib.inputs import probabilities, resolve_targets
from methods.lib.options import Option, technique
from methods.lib.progress import Progress
from methods.lib.result import Result

__all__ = ["FoolingResult", "fooling_image", "polynomial_mutation"]

#: Deb's distribution index for the polynomial mutation (Nguyen et al.'s "mutation strength").
STRENGTH = 15.0


class FoolingResult(Result):
    """``image`` (K, C, H, W) one fooling image per class of ``targets`` (K,), in the model's input
    space; ``confidence`` (K,) the probability the model gives each its target; ``reached`` (K,)
    whether it reached ``threshold``; ``reached_at`` the step (or generation) it did, -1 for never;
    ``history`` {class: confidence per step}."""

    def __init__(self, model, image, targets, confidence, threshold, reached_at, history, method, **summary):
        self.image, self.targets, self.confidence, self.threshold = image, targets, confidence, threshold
        self.reached = confidence >= threshold
        self.reached_at, self.history, self.method = np.where(self.reached, reached_at, -1), history, method
        names = [model.label(t) for t in targets]
        super().__init__(method=method, targets=names, confidence=confidence, reached=self.reached,
                         reached_at=self.reached_at, all_reached=bool(self.reached.all()), **summary)
        self._titles = [class_title(model, t, p) for t, p in zip(targets, confidence)]
        self._pictures = model.deprocess(image)

    def figures(self):
        panels = [Panel(("reached: " if ok else "below: ") + title, image=picture)
                  for title, picture, ok in zip(self._titles, self._pictures, self.reached)]
        title = (f"fooling images by {self.method}: {int(self.reached.sum())} of {len(self.reached)} classes at "
                 f">= {self.threshold:.1%} confidence")
        out = {"images": figure(panels, columns=min(5, len(panels)), title=title)}
        if self.history:
            out["confidence"] = curves(self.history, title="confidence in the target class",
                                       xlabel="generation" if self.method == "evolution" else "step",
                                       ylabel="probability")
        return out

    def pictures(self):
        return {f"class{t}": picture for t, picture in zip(self.targets, self._pictures)}


def polynomial_mutation(values, rate, rng, low=0.0, high=1.0):
    """Deb & Agrawal's polynomial mutation of ``values`` in [low, high]: each entry is changed with
    probability ``rate`` by delta * (high - low), delta = (2u)^(1/(eta+1)) - 1 for u < 1/2 and
    1 - (2(1-u))^(1/(eta+1)) otherwise (u uniform, eta = 15: mostly small steps)."""
    u = rng.uniform(0, 1, values.shape)
    exponent = 1.0 / (STRENGTH + 1.0)
    delta = np.where(u < 0.5, (2 * u) ** exponent - 1, 1 - (2 * (1 - u)) ** exponent)
    chosen = rng.uniform(0, 1, values.shape) < rate
    return np.where(chosen, values + delta * (high - low), values)


def _default_targets(classes):
    """Every class of a model with at most ten; otherwise three spread over the range."""
    return np.arange(classes) if classes <= 10 else np.linspace(0, classes, 3, endpoint=False).astype(np.int64)


def _gradient(model, space, start, targets, threshold, steps, lr):
    p, history = start.copy(), {}
    reached_at = np.full(len(p), -1)
    confidence = probabilities(scores(model, space, p))[np.arange(len(p)), targets]
    progress = Progress(range(steps), "fooling (gradient)")
    try:
        for step in progress:
            active = np.flatnonzero(confidence < threshold)
            if not len(active):
                break
            logits, gradient = scores_and_gradient(model, space, p[active], cross_entropy(targets[active]))
            confidence[active] = probabilities(logits)[np.arange(len(active)), targets[active]]
            for k, c in zip(targets, confidence):
                history.setdefault(str(k), []).append(float(c))
            reached_at = np.where((reached_at < 0) & (confidence >= threshold), step, reached_at)
            scale = np.abs(gradient).reshape(len(active), -1).max(axis=1).reshape(-1, 1, 1, 1) + 1e-12
            p[active] = space.clip(p[active] - lr * gradient / scale)
            progress.set(reached=int((confidence >= threshold).sum()))
    except KeyboardInterrupt:
        pass
    confidence = probabilities(scores(model, space, p))[np.arange(len(p)), targets]
    return p, confidence, np.where((reached_at < 0) & (confidence >= threshold), steps, reached_at), history


def _evolution(model, space, start, targets, threshold, generations, population, rate, rng):
    elites = start.copy()
    fitness = probabilities(scores(model, space, elites))[np.arange(len(elites)), targets]
    reached_at, history = np.where(fitness >= threshold, 0, -1), {}
    progress = Progress(range(1, generations + 1), "fooling (evolution)")
    try:
        for generation in progress:
            if (fitness >= threshold).all():
                break
            parents = elites[rng.integers(0, len(elites), population)]
            children = polynomial_mutation(parents, rate * 0.5 ** ((generation - 1) // 1000), rng)
            children = space.clip(children).astype(start.dtype)
            confidence = probabilities(scores(model, space, children))[:, targets]
            best = confidence.argmax(axis=0)
            better = confidence[best, np.arange(len(targets))] > fitness
            elites[better] = children[best[better]]
            fitness = np.where(better, confidence[best, np.arange(len(targets))], fitness)
            reached_at = np.where((reached_at < 0) & (fitness >= threshold), generation, reached_at)
            for k, c in zip(targets, fitness):
                history.setdefault(str(k), []).append(float(c))
            progress.set(reached=int((fitness >= threshold).sum()))
    except KeyboardInterrupt:
        pass
    return elites, fitness, reached_at, history


@technique("fooling", "Fooling images", "Nguyen et al. 2015", [
    Option("target", "target", None, "classes to fool the model into (index or name, or several; default: every "
                                     "class of a model with at most ten, else three spread over the range)"),
    Option("method", "choice", "gradient", "gradient ascent from noise, or evolution of the pixels (MAP-Elites, "
                                           "direct encoding)", choices=("gradient", "evolution")),
    Option("threshold", "float", 0.996, "the confidence to reach (the paper's >= 99.6%)", low=0, high=1,
           open_low=True),
    Option("steps", "int", 200, "most gradient steps, or generations of evolution", low=1, high=1_000_000,
           gallery=12),
    Option("lr", "float", 0.1, f"gradient: the largest change of a pixel per step, {EPS_UNITS}", low=0,
           open_low=True),
    Option("population", "int", 64, "evolution: children per generation", low=1),
    Option("mutation_rate", "float", 0.1, "evolution: probability that a pixel is mutated (the paper's 0.1, halved "
                                          "every 1,000 generations)", low=0, high=1, open_low=True),
    Option("seed", "int", 0, "seed of the noise (and of the evolution)", low=0),
], inputs="model")
def fooling_image(model, *, target, method, threshold, steps, lr, population, mutation_rate, seed):
    """One fooling image per target class, from uniform noise: a :class:`FoolingResult`."""
    if model.input_shape is None:
        raise ValueError(f"{model.describe()} does not declare an input size; fooling images need one "
                         "(minigrad.models.as_model(net, input_shape=(C, H, W)))")
    space = Space(model)
    rng = np.random.default_rng(seed)
    classes = scores(model, space, np.full((1,) + tuple(model.input_shape), 0.5, np.float32)).shape[1]
    if target is None:
        targets = _default_targets(classes)
    else:
        wanted = target if isinstance(target, list) else [target]
        targets = np.unique(resolve_targets(model, wanted, np.zeros((len(wanted), classes))))
    start = rng.uniform(0, 1, (len(targets),) + tuple(model.input_shape)).astype(np.float32)
    if method == "gradient":
        p, confidence, reached_at, history = _gradient(model, space, start, targets, threshold, steps, lr)
    else:
        p, confidence, reached_at, history = _evolution(model, space, start, targets, threshold, steps, population,
                                                        mutation_rate, rng)
    history = {model.label(int(k)): v for k, v in history.items()}
    return FoolingResult(model, space.inputs(p).astype(np.float32), targets, confidence, threshold, reached_at,
                         history, method)
