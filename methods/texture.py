"""Texture synthesis with Gram matrices: a new image with the texture's feature statistics.

Gatys, Ecker & Bethge, "Texture Synthesis Using Convolutional Neural Networks", NIPS 2015
(arXiv:1505.07376): a texture is described by the Gram matrices of a CNN's feature maps at
several layers (eq. 1: G_ij = sum_k F_ik F_jk, the correlations between channels over the
positions); starting from white noise, L-BFGS finds an image whose Gram matrices match the
texture's (eq. 2-4). The authors' reference code (leongatys/DeepTextures, technique-anchors.md
sec. 4) uses conv1_1 and pool1 ... pool4 of VGG-19 with average instead of max pooling, a 256
pixel texture, and L-BFGS-B with 20 correction pairs for up to 2000 iterations inside the pixel
box; so do the defaults here (Caffe's conv1_1 is rectified in place: our relu1_1; other models'
equivalent layers are found from their blocks, :func:`methods.lib.objectives.texture_layers`).

Each layer's loss is ||G(x) - G(texture)||^2 / ||G(texture)||^2 (Gram matrices normalized by
C * H * W, :func:`methods.lib.objectives.gram_matrix`). Gatys et al. weight all layers alike on a
VGG whose filters were rescaled to unit mean activation (their "normalized network"); dividing
each layer's loss by its target's squared norm gives every layer the same say on any network,
trained or random. Random filters are enough for textures (Ustyuzhaninov, Brendel, Gatys &
Bethge, "What does it take to generate natural textures?", ICLR 2017), so vgg16-random
synthesizes them offline.
"""

import numpy as np

import minigrad
from methods.lib.datasets import load_picture
from methods.lib.figures import Panel, curves, figure
from methods.lib.inputs import frozen, to_host
from methods.lib.objectives import activations, gram_matrix, texture_layers
from methods.lib.optimize import LBFGS, OptimizedResult, optimize
from methods.lib.options import Option, technique
from methods.lib.regularizers import pixel_bounds

__all__ = ["TextureResult", "gram_losses", "texture_synthesis", "white_noise"]


def white_noise(model, count, size, seed):
    """``count`` images of uniform random 8-bit pixels, (count, C, h, w) in the model's input space."""
    pixels = np.random.default_rng([seed, 2]).integers(0, 256, (count,) + tuple(size) + (model.preprocessing.depth,))
    return model.preprocessing.normalize(pixels.astype(np.uint8))


def gram_losses(model, layers, targets, pooling):
    """A function of the image Tensor giving, per layer, ||G(x) - target||^2 / ||target||^2 per image
    ({layer: Tensor (N,)}), for target Gram matrices ``targets`` {layer: (C, C) array}."""
    norms = {layer: np.float32(max(float((target ** 2).sum()), 1e-30)) for layer, target in targets.items()}

    def losses(x):
        found = activations(model, x, layers, pooling)
        out = {}
        for layer in layers:
            difference = (gram_matrix(found[layer]) - targets[layer]).reshape(len(x), -1)
            out[layer] = (difference * difference).sum(axis=1) / norms[layer]
        return out

    return losses


def target_grams(model, x, layers, pooling):
    """{layer: (C, C) Gram matrix} of the single image ``x`` (1, C, H, W)."""
    with frozen(model), minigrad.no_grad():
        found = activations(model, minigrad.tensor(x), layers, pooling)
        return {layer: to_host(gram_matrix(found[layer]))[0] for layer in layers}


class TextureResult(OptimizedResult):
    """``image`` (1, C, H, W) the synthesized texture; ``texture`` the source as uint8 RGB;
    ``gram_loss`` and ``start_gram_loss`` the summed relative Gram losses after and before;
    ``terms`` the loss of each layer per step."""

    def __init__(self, model, run, texture, layers, **summary):
        start = sum(run.terms[layer][0] for layer in layers)
        final = sum(run.terms[layer][-1] for layer in layers)
        super().__init__(model, run, ["synthesized"], layers=list(layers), gram_loss=final, start_gram_loss=start,
                         **summary)
        self.texture, self.layers = texture, list(layers)
        self.gram_loss, self.start_gram_loss = final, start

    def figures(self):
        panels = [Panel("texture", image=self.texture),
                  Panel(f"synthesized, {self.steps} L-BFGS steps\nGram loss {self.start_gram_loss[0]:.3g} -> "
                        f"{self.gram_loss[0]:.3g}", image=self.pixels[0])]
        layers = ", ".join(self.layers)
        series = {layer: self.terms[layer][:, 0] for layer in self.layers}
        return {"texture": figure(panels, columns=2, title=f"Texture synthesis from Gram matrices at {layers}",
                                  size=3.2),
                "loss": curves(series, title="relative Gram loss per layer while optimizing",
                               ylabel="||G - G0||^2 / ||G0||^2", log=True, size=(6.0, 3.6)),
                "evolution": figure([Panel("the texture during the optimization", image=self.evolution())],
                                    size="native")}


@technique("texture", "Texture synthesis with Gram matrices", "Gatys et al. 2015", [
    Option("layers", "layers", None, "layers whose Gram matrices are matched (default: conv1_1 (rectified) and "
                                     "pool1 ... pool4, or the model's equivalents)"),
    Option("steps", "int", 2000, "L-BFGS iterations (DeepTextures' 2000)", low=1, high=100_000, gallery=60),
    Option("image_size", "int", 256, "the texture's longer side, in pixels (DeepTextures' 256)", low=16, high=4096,
           gallery=96),
    Option("pooling", "choice", "avg", "pooling layers as max, or replaced by average pooling (Gatys et al.)",
           choices=("avg", "max")),
    Option("history", "int", 20, "L-BFGS correction pairs (DeepTextures' 20)", low=1, high=1000),
    Option("snapshot_every", "int", 250, "keep the image every this many steps (0: never)", low=0, gallery=15),
    Option("seed", "int", 0, "seed of the white-noise start", low=0),
], inputs="pictures", example="sample:brick")
def texture_synthesis(model, texture, *, layers, steps, image_size, pooling, history, snapshot_every, seed):
    """A texture synthesized from ``texture`` (an image file, ``sample:NAME`` or a uint8 array), as a
    :class:`TextureResult`."""
    layers = layers or texture_layers(model)
    model.check_layers(layers)
    pixels = load_picture(model, texture, longest=image_size)
    x = model.preprocessing.normalize(pixels[None])
    losses = gram_losses(model, layers, target_grams(model, x, layers, pooling), pooling)
    low, high = pixel_bounds(model)
    with frozen(model):
        run = optimize(white_noise(model, 1, pixels.shape[:2], seed), losses, steps=steps,
                       rule=LBFGS(history, bounds=(low, high)), snapshot_every=snapshot_every, seed=seed,
                       description="texture synthesis")
    result = TextureResult(model, run, model.deprocess(x)[0], layers)
    result.params.update(layers=list(layers))
    result.inputs = {"images": [texture if isinstance(texture, str) else f"array {np.shape(texture)}"]}
    return result
