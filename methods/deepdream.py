"""DeepDream: amplify whatever a layer sees in an image.

Mordvintsev, Olah & Tyka, "Inceptionism: Going Deeper into Neural Networks", Google Research
blog, 2015, and their notebook (google/deepdream, dream.ipynb; technique-anchors.md sec. 5):
gradient ascent on ||a_l(x)||^2 / 2, whose gradient at the layer is the activation itself
("set dx = x", the lecture notes), from the image itself. Each step:

* shifts the image circularly by a random jitter of up to 32 pixels (undone after the step);
* moves it by 1.5 * g / mean |g| (a normalized step, in 8-bit pixel levels: the notebook's
  Caffe input; other models' inputs are converted with their preprocessing);
* clips it to the valid pixel range.

Octaves: the image is shrunk 3 times by 1.4 (4 octaves); from the smallest, 10 steps each, the
detail the dream added is carried up to the next size (upsampled bilinearly) and added to the
image there. With a guide image the objective is the notebook's ``objective_guide``: each
position's activation vector is pulled towards the guide's activation vector it matches best
(the largest dot product), so the dream grows what the guide shows.
"""

import numpy as np

import minigrad
from methods.lib import regularizers
from methods.lib.datasets import load_picture
from methods.lib.figures import Panel, figure
from methods.lib.inputs import frozen, to_host
from methods.lib.objectives import activations, dream_layer
from methods.lib.optimize import GradientStep, OptimizedResult, Run, optimize
from methods.lib.options import Option, technique
from methods.lib.regularizers import octave_sizes, pixel_bounds, pixel_scale, resize

__all__ = ["DreamResult", "deepdream"]


def _guided(found, guide):
    """Per image sum over positions of the best dot product with the guide's feature vectors."""
    n, c = found.shape[:2]
    flat = found.reshape(n, c, -1).transpose(0, 2, 1)  # (N, P, C)
    return (flat @ guide).max(axis=2).sum(axis=1)      # guide: (C, Q)


class DreamResult(OptimizedResult):
    """``image`` (N, C, H, W) the dreams; ``originals`` the inputs as uint8 RGB; ``energy`` and
    ``start_energy`` (N,) ||a_l||^2 of the dream and of the input at full size; ``octaves`` the
    sizes dreamt at; snapshots: the dream at the end of each octave."""

    def __init__(self, model, run, originals, layer, sizes, energy, start_energy, guided, **summary):
        captions = [f"image {i}" for i in range(len(originals))]
        super().__init__(model, run, captions, layer=layer, octaves=[list(s) for s in sizes], energy=energy,
                         start_energy=start_energy, **summary)
        self.originals, self.layer, self.sizes = originals, layer, sizes
        self.energy, self.start_energy, self.guided = energy, start_energy, guided

    def figures(self):
        panels = []
        for i, original in enumerate(self.originals):
            panels.append(Panel(f"input {i}: ||a||^2 = {self.start_energy[i]:.3g}", image=original))
            panels.append(Panel(f"dream at {self.layer}: ||a||^2 = {self.energy[i]:.3g} "
                                f"({self.energy[i] / max(self.start_energy[i], 1e-30):.3g}x)", image=self.pixels[i]))
        guided = ", guided" if self.guided else ""
        title = (f"DeepDream at {self.layer}{guided}: {len(self.sizes)} octaves "
                 f"({' -> '.join(f'{h}x{w}' for h, w in self.sizes)}), {self.steps} steps in all")
        objective = "guide match" if self.guided else "||a||^2 / 2"
        return {"dream": figure(panels, columns=2, title=title, size=3.2),
                "objective": self.loss_curves(f"{objective} at {self.layer} while dreaming (steps of all octaves)",
                                              terms=["objective"], sign=-1.0, ylabel=objective,
                                              labels=self.captions),
                "octaves": figure([Panel("the dream at the end of each octave", image=self.evolution())],
                                  size="native")}


@technique("deepdream", "DeepDream", "Mordvintsev et al. 2015", [
    Option("layer", "layer", None, "layer whose activations are amplified (default: the last ReLU of the "
                                   "second-to-last block, relu4_3 for VGG16)"),
    Option("steps", "int", 10, "steps per octave (the notebook's iter_n)", low=1, high=10_000),
    Option("octaves", "int", 4, "number of octaves (sizes)", low=1, high=12),
    Option("octave_scale", "float", 1.4, "size ratio between octaves", low=1),
    Option("step_size", "float", 1.5, "mean change per step in 8-bit pixel levels (step_size * g / mean |g|)",
           low=0, open_low=True),
    Option("jitter", "int", 32, "largest random circular shift in pixels before each step", low=0),
    Option("clip", "bool", True, "clip the image to the valid pixel range after each step"),
    Option("guide", "images", None, "guide image: a file or sample:NAME (default: none, plain ||a||^2)"),
    Option("seed", "int", 0, "seed of the jitter", low=0),
])
def deepdream(model, x, *, layer, steps, octaves, octave_scale, step_size, jitter, clip, guide, seed):
    """DeepDream of each image of the batch ``x``, as a :class:`DreamResult`."""
    layer = layer or dream_layer(model)
    model.check_layers([layer])
    x = to_host(x)
    sizes = octave_sizes(x.shape[2:], octaves, octave_scale)
    if octaves > 1 and not model.sequential and model.fixed_size and model.input_shape is not None:
        raise ValueError(f"{model.describe()} runs only at {x.shape[2]}x{x.shape[3]} (its own forward), so it cannot "
                         "dream at the smaller sizes of octaves; use octaves=1")
    levels = pixel_scale(model)
    low, high = pixel_bounds(model)
    guide_features = None
    if guide is not None:
        if len(guide) != 1:
            raise ValueError(f"deepdream takes one guide image, got {len(guide)}")
        pixels = load_picture(model, guide[0], longest=max(x.shape[2:]))
        with frozen(model), minigrad.no_grad():
            found = activations(model, minigrad.tensor(model.preprocessing.normalize(pixels[None])), [layer])[layer]
        guide_features = to_host(found)[0].reshape(found.shape[1], -1)

    def objective(image):
        found = activations(model, image, [layer])[layer]
        if guide_features is not None:
            return {"objective": -_guided(found, guide_features)}
        return {"objective": -(found * found).reshape(len(image), -1).sum(axis=1) * 0.5}

    after = [regularizers.clip(low * levels, high * levels)] if clip else []
    bases = [resize(x, size) for size in sizes]
    detail = np.zeros_like(bases[0])
    runs = []
    with frozen(model):
        for k, base in enumerate(bases):
            detail = resize(detail, base.shape[2:])
            run = optimize((base + detail) * levels, objective, steps=steps, rule=GradientStep(step_size, "mean"),
                           scale=1.0 / levels, jitter=jitter, after=after, seed=seed + k,
                           description=f"deepdream octave {k + 1}/{len(bases)}")
            runs.append(run)
            detail = run.image - base
            if run.interrupted:
                break
        dream = bases[-1] + resize(detail, bases[-1].shape[2:])
        with minigrad.no_grad():
            energy = [to_host((a * a).reshape(len(a), -1).sum(axis=1))
                      for a in (activations(model, minigrad.tensor(image), [layer])[layer] for image in (x, dream))]
    # the octaves' terms one after the other (each octave's last value is the next one's first)
    terms = {"objective": np.concatenate([r.terms["objective"][:-1] for r in runs]
                                         + [runs[-1].terms["objective"][-1:]])}
    snapshots = [(sum(r.steps for r in runs[:k + 1]), resize(r.image, bases[-1].shape[2:]))
                 for k, r in enumerate(runs[:-1])]
    whole = Run(dream, terms, snapshots, sum(r.steps for r in runs), any(r.interrupted for r in runs))
    result = DreamResult(model, whole, model.deprocess(x), layer, sizes, energy[1].astype(np.float64),
                         energy[0].astype(np.float64), guide is not None)
    result.params.update(layer=layer, guide=[g if isinstance(g, str) else f"array {g.shape}" for g in guide]
                         if guide else None)
    return result
