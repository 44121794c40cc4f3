"""Class model visualization: the image a network finds most typical of a class.

Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks: Visualising Image
Classification Models and Saliency Maps", ICLR workshop 2014 (arXiv:1312.6034), sec. 2:
arg max_I S_c(I) - lambda ||I||^2, with S_c the class score *before* the softmax (maximizing the
probability would mostly push the other classes down). The lecture notes' loop: feed in zeros,
set the gradient of the scores to the one-hot vector of class c, backpropagate to the image, make
a small update, repeat.

The regularization follows the cs231n class visualization (technique-anchors.md, sec. 6.1):
100 steps of lr 25 along the L2-normalized gradient of S_c - lambda ||I||^2 (lambda = 1e-3),
the image jittered by up to 16 pixels before each step and shifted back after it, clamped to the
valid pixel range, and blurred (sigma 0.5) every 10 steps. These values are for a 3 x 224 x 224
image; on another size the jitter and blur scale with the side and the step with the square root
of the number of values, so every pixel moves as far per step. The image is optimized in the
model's input space, one image per class, all classes in one batch, starting from zeros (the
dataset's mean colour) or, as cs231n does, from N(0, 1) noise: a network whose biases are zero
(a randomly initialized one) maps the zero image to zero activations, where no ReLU passes a
gradient.
"""

import numpy as np

import minigrad
from methods.lib import regularizers
from methods.lib.attribution import class_title
from methods.lib.figures import Panel, figure
from methods.lib.inputs import frozen, probabilities, resolve_targets
from methods.lib.optimize import GradientStep, OptimizedResult, optimize, optimized_size
from methods.lib.options import Option, technique
from methods.lib.regularizers import l2, pixel_bounds

__all__ = ["ClassModelResult", "class_model"]

#: The side and the number of values the cs231n defaults are stated for.
REFERENCE_SIDE, REFERENCE_VALUES = 224, 3 * 224 * 224


class ClassModelResult(OptimizedResult):
    """``image`` (N, C, H, W) one class model per target; ``targets`` (N,); ``scores`` and
    ``start_scores`` (N,) the class scores S_c after and before; ``probabilities`` (N,) and
    ``top_classes`` (N,) the model's verdict on each class model."""

    def __init__(self, model, run, targets, scores, start_scores, probs, top, **summary):
        captions = [f"{model.label(t)} ({int(t)})" for t in targets]
        self.titles = [class_title(model, t, p) for t, p in zip(targets, probs)]
        super().__init__(model, run, captions, targets=targets, scores=scores, start_scores=start_scores,
                         probabilities=probs, top_classes=top, **summary)
        self.targets, self.scores, self.start_scores = targets, scores, start_scores
        self.probabilities, self.top_classes = probs, top
        self.top_labels = [model.label(t) for t in top]

    def figures(self):
        panels = []
        for i, title in enumerate(self.titles):
            top = "" if self.top_classes[i] == self.targets[i] else f", top: {self.top_labels[i]}"
            panels.append(Panel(f"{title}\nS {self.start_scores[i]:.3g} -> {self.scores[i]:.3g}{top}",
                                image=self.pixels[i]))
        columns = min(5, len(panels))
        grid_figure = figure(panels, columns=columns, title=f"Class models after {self.steps} steps "
                             "(score before the softmax, start -> end; probability of the class)", size=2.8)
        scores = self.loss_curves("class score S_c while optimizing", terms=["score"], sign=-1.0, ylabel="S_c",
                                  labels=self.captions)
        evolution = figure([Panel("class models during the optimization", image=self.evolution())], size="native")
        return {"classes": grid_figure, "scores": scores, "evolution": evolution}


@technique("class-model", "Class model visualization", "Simonyan et al. 2014", [
    Option("target", "target", None, "class index or name, or a list (default: every class of a model with at most "
                                     "ten, else the first ten)"),
    Option("steps", "int", 100, "gradient ascent steps (cs231n's 100)", low=1, high=100_000, gallery=30),
    Option("learning_rate", "float", None, "length of each step along the L2-normalized gradient (default: cs231n's "
                                           "25 for a 3x224x224 image, scaled by the square root of the number of "
                                           "values)", low=0, open_low=True),
    Option("l2_weight", "float", 1e-3, "lambda of the L2 penalty lambda ||I||^2 (cs231n's 1e-3)", low=0),
    Option("blur_sigma", "float", None, "Gaussian blur in pixels (default: 0.5 at 224 pixels, scaled with the "
                                        "side)", low=0),
    Option("blur_every", "int", 10, "blur after every this many steps (0: never)", low=0),
    Option("jitter", "int", None, "largest random shift in pixels before each step (default: 16 at 224 pixels, "
                                  "scaled with the side)", low=0),
    Option("clip", "bool", True, "clamp the image to the valid pixel range after each step"),
    Option("start", "choice", "zeros", "the first image: zeros (the notes' loop; the dataset's mean colour) or random "
                                       "(N(0, 1) in the model's input, cs231n's start; a network with zero biases, "
                                       "such as a randomly initialized one, has no gradient at zeros)",
           choices=("zeros", "random"), gallery="random"),
    Option("max_size", "int", None, "optimize at most this many pixels per side (default: the model's input size)",
           low=8, gallery=32),
    Option("snapshot_every", "int", 25, "keep the image every this many steps (0: never)", low=0),
    Option("seed", "int", 0, "seed of the jitter and of a random start", low=0),
], inputs="model")
def class_model(model, *, target, steps, learning_rate, l2_weight, blur_sigma, blur_every, jitter, clip, start,
                max_size, snapshot_every, seed):
    """One class model per target, optimized together, as a :class:`ClassModelResult`."""
    c, h, w = optimized_size(model, max_size)
    side = max(h, w)
    learning_rate = learning_rate or 25.0 * np.sqrt(c * h * w / REFERENCE_VALUES)
    blur_sigma = 0.5 * side / REFERENCE_SIDE if blur_sigma is None else blur_sigma
    jitter = round(16 * side / REFERENCE_SIDE) if jitter is None else jitter
    with frozen(model), minigrad.no_grad():
        classes = model(minigrad.tensor(np.zeros((1, c, h, w), np.float32))).shape[1]
    wanted = list(range(min(classes, 10))) if target is None else target if isinstance(target, list) else [target]
    targets = resolve_targets(model, wanted, np.zeros((len(wanted), classes)))
    first = np.zeros((len(targets), c, h, w), np.float32)
    if start == "random":
        first = np.stack([np.random.default_rng([seed, i]).standard_normal((c, h, w)) for i in range(len(targets))])
    rows = np.arange(len(targets))
    low, high = pixel_bounds(model)

    def objective(x):
        scores = model(x)
        return {"score": -scores[rows, targets], "l2": l2_weight * l2(x)}

    after = [regularizers.blur_every(blur_sigma, blur_every)] + ([regularizers.clip(low, high)] if clip else [])
    with frozen(model):
        run = optimize(first.astype(np.float32), objective, steps=steps,
                       rule=GradientStep(learning_rate, normalize="l2"),
                       jitter=jitter, after=after, snapshot_every=snapshot_every, seed=seed,
                       description="class model")
        with minigrad.no_grad():
            final = model(minigrad.tensor(run.image)).data
    probs = probabilities(final)
    result = ClassModelResult(model, run, targets, final[rows, targets].astype(np.float64),
                              -run.terms["score"][0], probs[rows, targets], probs.argmax(axis=1))
    result.params.update(target=[int(t) for t in targets], learning_rate=float(learning_rate),
                         blur_sigma=float(blur_sigma), jitter=int(jitter))
    return result

