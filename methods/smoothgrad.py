"""SmoothGrad: the gradient averaged over noisy copies of the image.

Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by adding noise",
ICML workshop 2017 (arXiv:1706.03825), eq. 3: M_hat(x) = 1/n sum_1^n M(x + N(0, sigma^2)), with
the paper's recommended n = 50 samples and noise level sigma / (x_max - x_min) = 15% (sec. 4.1),
the range taken per image in the model's input space. ``rule`` picks the map M that is smoothed
(Captum's NoiseTunnel idea: SmoothGrad wraps another method): "standard" the gradient (pictures
show max over colour of |M_hat|, as saliency), "guided" guided backprop, "deconvnet". The class
explained is the one the clean image is given (its top class by default), for every noisy copy.
"""

import numpy as np

import minigrad
from methods.lib.attribution import AttributionResult, class_title
from methods.lib.gradients import backprop
from methods.lib.inputs import probabilities, resolve_targets, to_host
from methods.lib.options import Option, technique
from methods.lib.progress import Progress

__all__ = ["smoothgrad"]


@technique("smoothgrad", "SmoothGrad", "Smilkov et al. 2017", [
    Option("target", "target", None, "class index or name to explain (default: each image's top class)"),
    Option("samples", "int", 50, "noisy copies averaged (the paper's n = 50)", low=1, high=10_000, gallery=16),
    Option("noise", "float", 0.15, "noise standard deviation as a fraction of each image's value range "
                                    "(the paper's 15%)", low=0, high=10),
    Option("rule", "choice", "standard", "the map smoothed: the gradient, guided backprop or deconvnet",
           choices=("standard", "guided", "deconvnet")),
    Option("batch_size", "int", 16, "noisy copies per backward pass", low=1),
    Option("seed", "int", 0, "seed of the noise", low=0),
])
def smoothgrad(model, x, *, target, samples, noise, rule, batch_size, seed):
    """SmoothGrad maps (N, C, H, W) of a preprocessed batch, as an :class:`AttributionResult`."""
    with minigrad.no_grad():
        scores = model(minigrad.tensor(x)).data
    targets = resolve_targets(model, target, scores)
    chosen = probabilities(scores)[np.arange(len(targets)), targets]
    host = to_host(x)
    rng = np.random.default_rng(seed)
    total = np.zeros(host.shape, np.float64)
    for i, image in enumerate(host):
        sigma = noise * float(image.max() - image.min())
        for start in Progress(range(0, samples, batch_size), f"smoothgrad image {i}"):
            count = min(batch_size, samples - start)
            noisy = image[None] + rng.normal(0.0, sigma, (count,) + image.shape).astype(image.dtype)
            total[i] += backprop(model, noisy, rule, target=[int(targets[i])] * count).gradients.sum(axis=0)
    maps = total / samples
    titles = [class_title(model, t, p) for t, p in zip(targets, chosen)]
    label = "max over colour of |smoothed gradient|" if rule == "standard" else f"smoothed {rule} magnitude"
    return AttributionResult(maps, model.deprocess(x), titles, label, targets, chosen, cmap="inferno")
