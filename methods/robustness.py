"""Robustness curves: a model's accuracy under attack as the attack's budget eps grows.

What a user of these attacks reaches for first (foolbox's attacks sweep eps in one call; Madry et
al. 2018, fig. 2, plot accuracy against eps): over a dataset -- the Fashion-MNIST test sample for
fashion-vgg -- each L-inf attack of ``attacks`` is run at ``points`` values of eps from 0 to
``max_eps`` and the accuracy recorded:

* ``fgsm``: :func:`methods.fgsm` (Goodfellow et al. 2015), one signed step;
* ``pgd``: :func:`methods.pgd` with ``steps`` steps from a random start (Madry et al. 2018);
* ``noise``: random signs of size eps (no gradient: the control, showing that it is the
  direction of the perturbation, not its size, that fools the model).

Accuracy is measured against the dataset's labels when they are the model's classes
(fashion-vgg on its sample); otherwise (photographs labelled by name) against the model's own
clean predictions, i.e. the share of predictions the attack leaves unchanged. eps is in pixel
units on [0, 1] for models with preprocessing.
"""

import numpy as np

from methods.fgsm import fgsm
from methods.lib.attack import EPS_UNITS, Space, scores
from methods.lib.figures import curves, table
from methods.lib.options import Option, technique
from methods.lib.output import text_table
from methods.lib.progress import Progress
from methods.lib.result import Result
from methods.pgd import pgd

__all__ = ["ATTACKS", "RobustnessResult", "robustness"]

ATTACKS = ("fgsm", "pgd", "noise")


class RobustnessResult(Result):
    """``eps`` (P,) the budgets; ``accuracy`` {attack: (P,) accuracies}; ``labels_from`` "dataset"
    or "clean predictions"; ``images`` how many were attacked."""

    def __init__(self, eps, accuracy, labels_from, images, units, **summary):
        super().__init__(eps=eps, accuracy=accuracy, labels_from=labels_from, images=images, units=units, **summary)
        self.eps, self.accuracy, self.labels_from, self.images, self.units = eps, accuracy, labels_from, images, units

    def rows(self):
        return [[float(e)] + [float(self.accuracy[a][i]) for a in self.accuracy] for i, e in enumerate(self.eps)]

    def text(self):
        return (f"accuracy under attack ({self.images} images, against the {self.labels_from}; eps in {self.units}):\n"
                + text_table(["eps"] + list(self.accuracy), self.rows()))

    def figures(self):
        title = f"accuracy under attack, {self.images} images (against the {self.labels_from})"
        return {"curves": curves(self.accuracy, title=title, xlabel=f"eps ({self.units})", ylabel="accuracy",
                                 x=self.eps),
                "table": table(["eps"] + list(self.accuracy), self.rows(), title=title)}


def _parse(attacks):
    names = [a.strip() for a in attacks.split(",") if a.strip()]
    unknown = [a for a in names if a not in ATTACKS]
    if unknown or not names:
        raise ValueError(f"attacks must be a comma-separated list of {', '.join(ATTACKS)}, got {attacks!r}")
    return list(dict.fromkeys(names))


@technique("robustness", "Robustness curves: accuracy under attack as eps grows",
           "Goodfellow et al. 2015; Madry et al. 2018", [
    Option("attacks", "str", "fgsm,pgd,noise", f"comma-separated L-inf attacks among {', '.join(ATTACKS)}"),
    Option("max_eps", "float", 0.2, f"the largest eps, {EPS_UNITS}", low=0, open_low=True, gallery=0.1),
    Option("points", "int", 5, "eps values from 0 to max_eps", low=2, high=100, gallery=3),
    Option("steps", "int", 10, "PGD steps (alpha = 2.5 eps / steps)", low=1, high=10_000, gallery=2),
    Option("images", "int", None, "attack only the first N images of the dataset (default: all)", low=1, gallery=2),
    Option("batch_size", "int", 100, "images per attack call", low=1),
    Option("seed", "int", 0, "seed of PGD's random start and of the noise", low=0),
], inputs="dataset")
def robustness(model, dataset, *, attacks, max_eps, points, steps, images, batch_size, seed):
    """Accuracy of ``model`` on ``dataset`` under each attack at each eps: a :class:`RobustnessResult`
    (a plot, a table, and ``text()`` for the terminal)."""
    names = _parse(attacks)
    pixels = dataset.images[:images]
    x = model.preprocessing.normalize(pixels)
    space = Space(model, x.dtype)
    known = dataset.labels is not None and tuple(dataset.names) == tuple(model.labels or ())
    clean = np.concatenate([scores(model, space, space.pixels(x[i:i + batch_size])).argmax(axis=1)
                            for i in range(0, len(x), batch_size)])
    labels = dataset.labels[:len(x)] if known else clean
    eps = np.linspace(0, max_eps, points)
    correct = {name: np.zeros(points) for name in names}
    rng = np.random.default_rng(seed)
    progress = Progress([(e, i) for e in range(1, points) for i in range(0, len(x), batch_size)], "robustness")
    for k, start in progress:
        batch, truth = x[start:start + batch_size], labels[start:start + batch_size]
        for name in names:
            if name == "fgsm":
                predicted = fgsm(model, batch, label=list(truth), eps=eps[k]).adversarial_class
            elif name == "pgd":
                predicted = pgd(model, batch, label=list(truth), eps=eps[k], steps=steps, seed=seed).adversarial_class
            else:
                p = space.pixels(batch)
                noisy = space.clip(p + eps[k] * np.sign(rng.uniform(-1, 1, p.shape))).astype(batch.dtype)
                predicted = scores(model, space, noisy).argmax(axis=1)
            correct[name][k] += (predicted == truth).sum()
    accuracy = {}
    for name in names:
        correct[name][0] = (clean == labels).sum()
        accuracy[name] = correct[name] / len(x)
    return RobustnessResult(eps, accuracy, "dataset labels" if known else "clean predictions", len(x), space.units)
