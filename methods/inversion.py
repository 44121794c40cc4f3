"""Feature inversion: images whose code at a layer matches an image's code.

Mahendran & Vedaldi, "Understanding Deep Image Representations by Inverting Them", CVPR 2015
(arXiv:1412.0035), eq. 1-5: from a random start, minimize

    ||Phi(x) - Phi0||^2 / ||Phi0||^2 + lambda_alpha ||x||_alpha^alpha + lambda_TV TV^beta(x)

with alpha = 6 (keeps the pixels within a range) and beta = 2 (smoothness without the spikes
beta = 1 leaves). The settings are those of the authors' code (aravindhm/deep-goggle,
experiments/experiment_cnn.m and core/invert_nn.m): x in mean-subtracted 8-bit pixel levels
(other models' inputs are converted with their preprocessing); both regularizers halved and
divided by sigma^2, the squared norm of a natural image (their x0_sigma, 68.9 levels RMS per
value); lambda_alpha = 8e-10; lambda_TV = 1, 10 or 100 for the first 30%, the next 30% and the
rest of the layers (their AlexNet layers 1-6, 7-12 and 13-20), for 227 x 227 images. The same
scene at a side s has neighbour differences 227 / s times larger, so TV^beta / sigma^2 grows as
(227 / s)^beta: lambda_TV is scaled by (s / 227)^beta to regularize any size as the authors did
at theirs (0.015 at 28 x 28 for beta = 2). 400 steps of gradient descent with momentum 0.9 on
sigma^2 times the objective, the learning rate 0.004, then 0.0004 from a quarter of the steps
and 0.00004 from three quarters, the momentum reset at each change; the start random with norm
sigma.

Several random starts of the same code ("multiple reconstructions ... all look the same to
the CNN", the lecture notes) and reconstructions from every layer are optimized together. The
result reports each reconstruction's relative code distance ||Phi(x) - Phi0||^2 / ||Phi0||^2 at
the start and the end. One forward pass of the whole batch to the deepest layer serves every
layer.
"""

import numpy as np

import minigrad
from methods.lib.figures import Panel, curves, figure
from methods.lib.inputs import frozen, to_host
from methods.lib.objectives import activations, blocks
from methods.lib.optimize import Momentum, OptimizedResult, optimize, reduced_size
from methods.lib.options import Option, technique
from methods.lib.regularizers import alpha_norm, pixel_scale, resize, total_variation
from minigrad import nn

__all__ = ["InversionResult", "invert"]

#: Mahendran & Vedaldi's natural-image norm per value, in 8-bit pixel levels (27098 over 227 x 227 x 3).
IMAGE_RMS = 27098.1157 / np.sqrt(227 * 227 * 3)


def distinct_layers(model, which="all"):
    """Every layer whose output is a new code ("all": all but dropout, the identity when
    evaluating, and flattening, the previous code reshaped), or one per stage ("blocks": the last
    layer of each convolutional block, each fully connected layer's rectified output and the last
    layer)."""
    layers = [(name, m) for name, m in model.layers() if not isinstance(m, (nn.Dropout, nn.Flatten))]
    if which == "all":
        return [name for name, _ in layers]
    chosen = [block[-1][0] for block in blocks(model)]
    names = [name for name, _ in layers]
    for k, (name, module) in enumerate(layers):
        follows_linear = k > 0 and isinstance(layers[k - 1][1], nn.Linear)
        if (follows_linear and isinstance(module, (nn.ReLU, nn.LeakyReLU))) or k == len(layers) - 1:
            chosen.append(name)
    return sorted(set(chosen), key=names.index)


def tv_weight_by_depth(model, layer, size, beta):
    """The authors' lambda_TV for ``layer`` -- 1, 10 or 100 by where it lies in the model -- scaled
    from their 227 x 227 images to ``size`` (h, w) for TV^beta."""
    names = model.layer_names
    depth = (names.index(layer) + 1) / len(names)
    weight = 1.0 if depth <= 0.3 else 10.0 if depth <= 0.6 else 100.0
    return weight * (size[0] * size[1] / 227 ** 2) ** (beta / 2)


def _resize_to(model, x, max_size):
    """The batch brought down to at most ``max_size`` pixels per side, when the model takes other sizes."""
    size = reduced_size(model, x.shape[2:], max_size)
    return x if size == tuple(x.shape[2:]) else resize(x, size)


class InversionResult(OptimizedResult):
    """``image`` (N * L * S, C, H, W): for each input image, each layer of ``layers`` and each of the
    S starts, a reconstruction, in that order (:meth:`index`); ``originals`` the inputs as uint8 RGB;
    ``code_distance`` and ``start_code_distance`` ||Phi(x) - Phi0||^2 / ||Phi0||^2 per
    reconstruction after and before."""

    def __init__(self, model, run, originals, layers, starts, weights, **summary):
        self.layers, self.starts = list(layers), starts
        count = len(run.image) // (len(layers) * starts)
        captions = [f"image {n}, {layer}, start {s}" for n in range(count) for layer in layers for s in range(starts)]
        codes = run.terms["code"]
        super().__init__(model, run, captions, layers=self.layers, tv_weights=weights,
                         code_distance=codes[-1], start_code_distance=codes[0], **summary)
        self.originals = originals
        self.code_distance, self.start_code_distance = codes[-1], codes[0]

    def pictures(self):
        return {f"image{n}_{layer}_start{s}": self.pixels[self.index(n, layer, s)]
                for n in range(len(self.originals)) for layer in self.layers for s in range(self.starts)}

    def index(self, image, layer, start=0):
        """Position in the batch of the reconstruction of input ``image`` from ``layer``, start ``start``."""
        return (image * len(self.layers) + self.layers.index(layer)) * self.starts + start

    def figures(self):
        out = {}
        for n, original in enumerate(self.originals):
            panels = []
            for s in range(self.starts):
                panels.append(Panel("original" if s == 0 else "", image=original))
                for layer in self.layers:
                    i = self.index(n, layer, s)
                    panels.append(Panel(f"{layer}: {100 * self.code_distance[i]:.2g}%", image=self.pixels[i]))
            title = (f"Reconstructions of image {n} from each layer after {self.steps} steps ({self.starts} random "
                     f"start{'s' if self.starts > 1 else ''} per layer, one per row);\nunder each: the relative code "
                     "distance ||Phi(x) - Phi0||^2 / ||Phi0||^2")
            out[f"reconstructions_{n}"] = figure(panels, columns=len(self.layers) + 1, title=title, size=1.5)
        codes = self.terms["code"]
        series = {layer: codes[:, [self.index(n, layer, s) for n in range(len(self.originals))
                                   for s in range(self.starts)]].mean(axis=1) for layer in self.layers}
        out["code_distance"] = curves(series, title="relative code distance while optimizing (mean over starts)",
                                      ylabel="||Phi(x) - Phi0||^2 / ||Phi0||^2", log=True, size=(6.0, 3.6))
        return out


@technique("inversion", "Feature inversion", "Mahendran & Vedaldi 2015", [
    Option("layers", "layers", None, "layer(s) whose code is inverted (default: those of layer_set)"),
    Option("layer_set", "choice", "all", "without layers: every layer but dropout and flattening (all, the paper's "
                                         "figure), or the last of each block and the classifier's (blocks)",
           choices=("all", "blocks"), gallery="blocks"),
    Option("starts", "int", 1, "random starts per layer, shown in rows", low=1, high=64, gallery=2),
    Option("steps", "int", 400, "gradient descent steps (the authors' 400)", low=1, high=100_000, gallery=80),
    Option("learning_rate", "float", 0.004, "the authors' first learning rate, divided by 10 after a quarter and "
                                            "again after three quarters of the steps", low=0, open_low=True,
           gallery=0.01),
    Option("momentum", "float", 0.9, "momentum of the gradient descent", low=0, high=1),
    Option("alpha", "float", 6.0, "the alpha of the alpha-norm regularizer", low=1),
    Option("alpha_weight", "float", 8e-10, "lambda_alpha, on pixel levels (the authors' 8e-10)", low=0),
    Option("beta", "float", 2.0, "the beta of the TV^beta regularizer", low=1),
    Option("tv_weight", "float", None, "lambda_TV (default: the authors' 1, 10 or 100 by the layer's depth, scaled "
                                       "from 227 x 227 to the image size)", low=0),
    Option("max_size", "int", None, "reduce larger inputs to this many pixels per side first (models that take "
                                    "other sizes)", low=8, gallery=32),
    Option("snapshot_every", "int", 100, "keep the images every this many steps (0: never)", low=0),
    Option("seed", "int", 0, "seed of the random starts", low=0),
])
def invert(model, x, *, layers, layer_set, starts, steps, learning_rate, momentum, alpha, alpha_weight, beta, tv_weight,
           max_size, snapshot_every, seed):
    """Reconstructions of the batch ``x`` from its codes at ``layers``, as an :class:`InversionResult`."""
    layers = layers or distinct_layers(model, layer_set)
    model.check_layers(layers)
    x = _resize_to(model, to_host(x), max_size)
    n, (c, h, w) = len(x), x.shape[1:]
    levels = pixel_scale(model)
    sigma2 = float(IMAGE_RMS ** 2 * c * h * w)
    weights = {layer: tv_weight_by_depth(model, layer, (h, w), beta) if tv_weight is None else tv_weight
               for layer in layers}
    with frozen(model), minigrad.no_grad():
        codes = activations(model, minigrad.tensor(x), layers)
        targets = {layer: to_host(codes[layer]) for layer in layers}
    # the batch: for each image, each layer, each start
    rows = {layer: [(i * len(layers) + k) * starts + s for i in range(n) for s in range(starts)]
            for k, layer in enumerate(layers)}
    sources = {layer: np.repeat(np.arange(n), starts) for layer in layers}
    size = n * len(layers) * starts
    noise = np.stack([np.random.default_rng([seed, b]).standard_normal((c, h, w)) for b in range(size)])
    start = (noise * (np.sqrt(sigma2) / np.sqrt((noise ** 2).sum(axis=(1, 2, 3), keepdims=True)))).astype(np.float32)
    tv_per_item = np.zeros(size, np.float32)
    for layer in layers:
        tv_per_item[rows[layer]] = weights[layer]

    def objective(image):
        found = activations(model, image, layers)
        pieces, order = [], []
        for layer in layers:
            code = found[layer][np.asarray(rows[layer])]
            target = targets[layer][sources[layer]]
            difference = (code - target).reshape(len(target), -1)
            norm = np.maximum((target.reshape(len(target), -1) ** 2).sum(axis=1), 1e-30).astype(np.float32)
            pieces.append((difference * difference).sum(axis=1) / norm)
            order += rows[layer]
        code = minigrad.concatenate(pieces)[np.argsort(order)] if len(pieces) > 1 else pieces[0]
        pixels = image * levels
        return {"code": code,
                "alpha": alpha_norm(pixels, alpha) * np.float32(alpha_weight / 2 / sigma2),
                "tv": total_variation(pixels, beta) * (tv_per_item / np.float32(2 * sigma2))}

    quarter = max(1, steps // 4)
    rule = Momentum(learning_rate * sigma2, momentum, schedule=[(0, 1.0), (quarter, 0.1), (3 * quarter, 0.01)])
    with frozen(model):
        run = optimize(start, objective, steps=steps, rule=rule, scale=1.0 / levels, snapshot_every=snapshot_every,
                       seed=seed, description="inversion")
    result = InversionResult(model, run, model.deprocess(x), layers, starts, weights)
    result.params.update(layers=list(layers), tv_weight=tv_weight)
    return result
