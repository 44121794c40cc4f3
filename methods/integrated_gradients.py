"""Integrated gradients: attributions that add up to the change of the score.

Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017
(arXiv:1703.01365), eq. 1 and 3: IG_i(x) = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x'))/dx_i da,
approximated by a Riemann sum over ``steps`` points of the straight path from the baseline x'
(midpoints, which converge faster than the paper's right endpoints). Completeness (sec. 3,
"Completeness"): sum_i IG_i(x) = F(x) - F(x'); the result reports how far the sum misses, which
says whether ``steps`` is enough (the paper suggests 20 to 300 steps; we take 50, Captum's default).

Baseline: "black" (a black image through the model's preprocessing, the paper's choice for images)
or "zeros" (0 in the model's input space: the dataset's mean colour for mean-subtracted models).
F is the class score before the softmax.
"""

import numpy as np

import minigrad
from methods.lib.attribution import AttributionResult, class_title
from methods.lib.gradients import backprop
from methods.lib.inputs import probabilities, resolve_targets, to_host
from methods.lib.options import Option, technique
from methods.lib.progress import Progress

__all__ = ["integrated_gradients"]


def _baseline(model, x, kind):
    if kind == "zeros":
        return np.zeros_like(x)
    black = np.zeros((len(x),) + x.shape[2:] + (x.shape[1],), np.uint8)
    return model.preprocessing.normalize(black).astype(x.dtype)


@technique("integrated-gradients", "Integrated gradients", "Sundararajan et al. 2017", [
    Option("target", "target", None, "class index or name to explain (default: each image's top class)"),
    Option("steps", "int", 50, "points on the path from the baseline (Riemann midpoints)", low=1, high=10_000,
           gallery=16),
    Option("baseline", "choice", "black", "a black image, or zeros in the model's input space",
           choices=("black", "zeros")),
    Option("batch_size", "int", 16, "path points per backward pass", low=1),
])
def integrated_gradients(model, x, *, target, steps, baseline, batch_size):
    """Integrated gradients (N, C, H, W) of a preprocessed batch, as an :class:`AttributionResult`
    whose summary holds each image's ``completeness_error`` |sum IG - (F(x) - F(x'))| and the
    score difference it should equal."""
    host = to_host(x)
    reference = _baseline(model, host, baseline)
    with minigrad.no_grad():
        scores = to_host(model(minigrad.tensor(host)).data)
        base_scores = to_host(model(minigrad.tensor(reference)).data)
    targets = resolve_targets(model, target, scores)
    chosen = probabilities(scores)[np.arange(len(targets)), targets]
    alphas = (np.arange(steps) + 0.5) / steps
    maps = np.zeros(host.shape, np.float64)
    for i in range(len(host)):
        difference = host[i] - reference[i]
        for start in Progress(range(0, steps, batch_size), f"integrated gradients image {i}"):
            a = alphas[start:start + batch_size].astype(host.dtype)[:, None, None, None]
            path = reference[i][None] + a * difference[None]
            grads = backprop(model, path, "standard", target=[int(targets[i])] * len(a)).gradients
            maps[i] += grads.sum(axis=0)
        maps[i] *= difference / steps
    rows = np.arange(len(targets))
    expected = scores[rows, targets].astype(np.float64) - base_scores[rows, targets]
    error = np.abs(maps.reshape(len(maps), -1).sum(axis=1) - expected)
    titles = [class_title(model, t, p) for t, p in zip(targets, chosen)]
    return AttributionResult(maps, model.deprocess(x), titles, "sum over colour of IG", targets, chosen,
                               cmap="RdBu_r", symmetric=True, reduce="sum", completeness_error=error,
                               score_difference=expected)
