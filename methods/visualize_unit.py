"""Regularized visualization of any unit: the image that excites one neuron or channel most.

Yosinski, Clune, Nguyen, Fuchs & Lipson, "Understanding Neural Networks Through Deep
Visualization", ICML Deep Learning workshop 2015 (arXiv:1506.06579), sec. 3: gradient ascent on
the activation of a unit, each update followed by regularization steps r_theta:

* L2 decay, x <- (1 - theta_decay) x;
* a Gaussian blur of width theta_b_width every theta_b_every steps;
* clipping pixels with small norm: the pixels whose norm over the colours is below the
  theta_n_pct percentile are set to 0;
* clipping pixels with small contribution: those whose |sum_c x * gradient| (the first-order
  change of the activation if the pixel were set to 0) is below the theta_c_pct percentile.

The four hyper-parameter sets of the paper's Table 1, by name (``preset``), with the step
counts and learning-rate policies of the authors' deep-visualization-toolbox
(doc/running-optimize-image.md, technique-anchors.md sec. 12):

==============  =====  ==============  ============  ===========  =====  ==============================
preset          decay  blur (every)    norm pct      contrib pct  steps  toolbox learning rate
==============  =====  ==============  ============  ===========  =====  ==============================
norm            0      0.5 px (4)      50            0            500    progress 2, at most 100
decay           0.3    --              20            0            750    constant 100
blur (default)  1e-4   1.0 px (4)      0             0            1000   constant 100
contribution    0      0.5 px (4)      0             90           1000   progress 2, at most 1e8
==============  =====  ==============  ============  ===========  =====  ==============================

"blur" gave most of the paper's images. Table 1 holds the regularization; the step counts and
learning rates come from the toolbox, tuned to CaffeNet, whose activations are in the units of
its 0..255 input: a constant rate of 100 pixel levels per unit of gradient has no counterpart on
a network trained on normalized input (fashion-vgg's units barely move under it). Every preset
therefore takes the toolbox's "progress" step, the one that would raise the activation by
``progress`` if it were linear (lr = progress / ||g||^2, per image), with the progress measured
in standard deviations of the layer's activations for that image's start (2 by default, the
toolbox's value), so a preset does the same on any network. As in the toolbox, the image is optimized in
mean-subtracted 8-bit pixel levels (the blur widths and percentiles are the paper's; other
models' inputs are converted with their preprocessing), starts at the mean colour plus
N(0, 10 levels) noise, and is clipped to the valid pixel range after every step. For a
convolutional layer the default unit is the neuron at the centre of channel 0 (border units see
part of the image); ``restarts`` random starts of the same unit are optimized together and
shown side by side.
"""

import numpy as np

import minigrad
from methods.lib import regularizers
from methods.lib.figures import Panel, figure
from methods.lib.inputs import frozen
from methods.lib.objectives import activations, centre_unit, spatial_layers, unit_activation
from methods.lib.optimize import GradientStep, OptimizedResult, optimize, optimized_size
from methods.lib.options import Option, technique
from methods.lib.regularizers import pixel_bounds, pixel_scale
from minigrad import nn

__all__ = ["PRESETS", "UnitResult", "visualize_unit"]

#: Yosinski et al.'s Table 1 (see the module docstring): name -> settings.
PRESETS = {
    "norm": dict(decay=0.0, blur_sigma=0.5, blur_every=4, norm_percentile=50.0, contribution_percentile=0.0,
                 steps=500),
    "decay": dict(decay=0.3, blur_sigma=0.0, blur_every=0, norm_percentile=20.0, contribution_percentile=0.0,
                  steps=750),
    "blur": dict(decay=1e-4, blur_sigma=1.0, blur_every=4, norm_percentile=0.0, contribution_percentile=0.0,
                 steps=1000),
    "contribution": dict(decay=0.0, blur_sigma=0.5, blur_every=4, norm_percentile=0.0, contribution_percentile=90.0,
                         steps=1000),
}


class UnitResult(OptimizedResult):
    """``image`` (restarts, C, H, W) the visualizations of ``unit`` of ``layer``; ``activations`` and
    ``start_activations`` (restarts,) its value after and before."""

    def __init__(self, model, run, layer, unit, values, start_values, **summary):
        captions = [f"restart {i}" for i in range(len(values))]
        super().__init__(model, run, captions, layer=layer, unit=unit, activations=values,
                         start_activations=start_values, **summary)
        self.layer, self.unit, self.activations, self.start_activations = layer, unit, values, start_values
        what = f"channel {unit} (mean)" if np.isscalar(unit) else f"neuron {tuple(unit)}"
        self.what = f"{layer} {what}"

    def figures(self):
        panels = [Panel(f"{caption}: {self.start_activations[i]:.3g} -> {self.activations[i]:.3g}",
                        image=self.pixels[i]) for i, caption in enumerate(self.captions)]
        preset = self.params.get("preset", "")
        title = f"{self.what} after {self.steps} steps ({preset} preset); activation start -> end"
        return {"unit": figure(panels, columns=min(4, len(panels)), title=title, size=2.4),
                "activation": self.loss_curves(f"{self.what} while optimizing", terms=["activation"], sign=-1.0,
                                               ylabel="activation", labels=self.captions),
                "evolution": figure([Panel(f"{self.what} during the optimization", image=self.evolution())],
                                    size="native")}


@technique("visualize-unit", "Regularized visualization of any unit", "Yosinski et al. 2015", [
    Option("layer", "layer", None, "the unit's layer, convolutional or fully connected (default: the last "
                                   "convolution, before its ReLU so that the gradient reaches every unit: conv5_3)"),
    Option("unit", "unit", None, "a neuron (c, i, j) (f for a fully connected layer) or a channel c, whose mean is "
                                 "maximized (default: the neuron at the centre of channel 0)"),
    Option("preset", "choice", "blur", "Yosinski et al.'s Table 1 row: norm, decay, blur (their most used) or "
                                       "contribution", choices=tuple(PRESETS)),
    Option("steps", "int", None, "gradient ascent steps (default: the preset's 500 to 1000)", low=1, high=100_000,
           gallery=150),
    Option("progress", "float", 2.0, "each step would raise a linear activation by this many standard deviations of "
                                     "the layer's activations at the start (the toolbox's progress rate 2)",
           low=0, open_low=True),
    Option("decay", "float", None, "L2 decay per step, x <- (1 - decay) x (default: the preset's)", low=0, high=1),
    Option("blur_sigma", "float", None, "Gaussian blur in pixels (default: the preset's)", low=0),
    Option("blur_every", "int", None, "blur after every this many steps, 0: never (default: the preset's)", low=0),
    Option("norm_percentile", "float", None, "zero the pixels whose norm is below this percentile "
                                             "(default: the preset's)", low=0, high=100),
    Option("contribution_percentile", "float", None, "zero the pixels whose |contribution| is below this percentile "
                                                     "(default: the preset's)", low=0, high=100),
    Option("restarts", "int", 4, "random starts optimized side by side (the notes show 4)", low=1, high=64),
    Option("max_size", "int", None, "optimize at most this many pixels per side (default: the model's input size)",
           low=8, gallery=32),
    Option("snapshot_every", "int", None, "keep the images every this many steps, 0: never (default: a tenth of "
                                          "the steps)", low=0),
    Option("seed", "int", 0, "seed of the random starts", low=0),
], inputs="model")
def visualize_unit(model, *, layer, unit, preset, steps, progress, decay, blur_sigma, blur_every, norm_percentile,
                   contribution_percentile, restarts, max_size, snapshot_every, seed):
    """``restarts`` regularized visualizations of one unit, as a :class:`UnitResult`."""
    given = dict(steps=steps, decay=decay, blur_sigma=blur_sigma, blur_every=blur_every,
                 norm_percentile=norm_percentile, contribution_percentile=contribution_percentile)
    settings = {name: PRESETS[preset][name] if value is None else value for name, value in given.items()}
    if layer is None:
        convolutions = [name for name, m in spatial_layers(model) if isinstance(m, nn.Conv2d)]
        if not convolutions:
            raise ValueError(f"{model.describe()} has no convolution before its classifier; name the layer")
        layer = convolutions[-1]
    model.check_layers([layer])
    c, h, w = optimized_size(model, max_size)
    scale = 1.0 / pixel_scale(model)
    low, high = (bound / scale for bound in pixel_bounds(model))
    start = np.stack([np.random.default_rng([seed, i]).normal(0.0, 10.0, (c, h, w)) for i in range(restarts)])
    start = np.clip(start.astype(np.float32), low, high)
    with frozen(model), minigrad.no_grad():
        probe = activations(model, minigrad.tensor(start * scale), [layer])[layer]
    unit = centre_unit(probe.shape) if unit is None else unit
    spread = probe.data.reshape(restarts, -1).std(axis=1)
    spread = np.where(spread > 0, spread, 1.0).astype(np.float32)  # each image's own scale: restarts independent

    def objective(x):
        return {"activation": -unit_activation(activations(model, x, [layer])[layer], unit)}

    rule = GradientStep(np.inf, normalize="progress", progress=progress * spread)
    after = [regularizers.decay(settings["decay"]),
             regularizers.blur_every(settings["blur_sigma"], settings["blur_every"]),
             regularizers.zero_small_norm(settings["norm_percentile"]),
             regularizers.zero_small_contribution(settings["contribution_percentile"]),
             regularizers.clip(low, high)]
    every = max(1, settings["steps"] // 10) if snapshot_every is None else snapshot_every
    with frozen(model):
        run = optimize(start, objective, steps=settings["steps"], rule=rule, scale=scale, after=after,
                       snapshot_every=every, seed=seed, description=f"visualize {layer}")
    values = -run.terms["activation"]
    result = UnitResult(model, run, layer, unit, values[-1], values[0])
    result.params.update(layer=layer, unit=list(unit) if isinstance(unit, tuple) else unit, snapshot_every=every,
                         **settings)
    return result
