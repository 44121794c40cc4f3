"""Neural style transfer: the content of one image in the style of another.

Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016:
minimize alpha L_content + beta L_style over the image, the content loss matching the features
of the content image at one layer, the style loss the Gram matrices of the style image at
several (as in texture synthesis, :mod:`methods.texture`). The options and defaults are those a
user of Justin Johnson's neural-style (jcjohnson/neural-style, technique-anchors.md sec. 4)
expects: content layer relu4_2 (weight 5), style layers relu1_1 ... relu5_1 (weight 100), total
variation (weight 1e-3), L-BFGS (or Adam with learning rate 10) for 1000 iterations, the
output's longer side 512 pixels, the style image scaled by ``style_scale``, several style images
blended by weight, a start from noise, the content or a given image, max or average pooling, a
snapshot every 100 steps.

The losses are neural-style's: the mean squared error of the features (content) and of the Gram
matrices normalized by C * H * W (style), each times its weight, plus tv_weight / 2 times
:func:`methods.lib.regularizers.total_variation` with beta = 2 (neural-style's TV gradient; it
leaves the last row and column out, we count their differences as 0). Its weights were chosen for
Caffe's VGG-19, which takes mean-subtracted 8-bit pixel levels: the features here are measured in
the same units (the model's input is converted with its preprocessing, and features and Gram
matrices scaled as the input's first and second powers of the pixel scale), so the weights keep
their balance on a network trained on normalized input.

Colour preservation (``original_colors``) is Gatys et al.'s luminance-only transfer ("Preserving
Color in Neural Artistic Style Transfer", arXiv:1606.05897, sec. 2.2): the transfer runs on the
luminance of both images (Y of YIQ), the style's matched to the content's mean and standard
deviation, and the result's luminance is combined with the content's I and Q.
"""

import numpy as np

import minigrad
from methods.lib import objectives
from methods.lib.datasets import load_picture
from methods.lib.figures import Panel, curves, figure
from methods.lib.inputs import frozen, to_host
from methods.lib.objectives import activations, content_layer, gram_matrix
from methods.lib.optimize import LBFGS, Adam, OptimizedResult, optimize
from methods.lib.options import Option, technique
from methods.lib.regularizers import pixel_scale, total_variation

__all__ = ["StyleResult", "style_transfer"]

#: RGB -> YIQ (NTSC), rows Y, I, Q.
YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _luminance(pixels):
    """The Y of YIQ of uint8 RGB pixels (H, W, 3), float64."""
    return pixels.astype(np.float64) @ YIQ[0]


def _grey(luminance):
    """A luminance (H, W) as uint8 RGB pixels."""
    return np.repeat(np.clip(np.rint(luminance), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _recolour(result, content):
    """The luminance of ``result`` with the I and Q of ``content`` (both uint8 RGB (H, W, 3))."""
    yiq = content.astype(np.float64) @ YIQ.T
    yiq[..., 0] = _luminance(result)
    return np.clip(np.rint(yiq @ np.linalg.inv(YIQ).T), 0, 255).astype(np.uint8)


class StyleResult(OptimizedResult):
    """``image`` (1, C, H, W) the stylized image; ``content`` and ``styles`` the inputs as uint8 RGB at
    the sizes used; ``terms`` the content, style and TV losses per step."""

    def __init__(self, model, run, content, styles, weights, **summary):
        super().__init__(model, run, ["result"], **summary)
        self.content, self.styles, self.weights = content, styles, weights

    def figures(self):
        panels = [Panel(f"content {self.content.shape[1]}x{self.content.shape[0]}", image=self.content)]
        for k, (style, weight) in enumerate(zip(self.styles, self.weights)):
            shown = f"style {k}" + (f", weight {weight:.2g}" if len(self.styles) > 1 else "")
            panels.append(Panel(f"{shown} {style.shape[1]}x{style.shape[0]}", image=style))
        final = {name: values[-1, 0] for name, values in self.terms.items()}
        panels.append(Panel(f"result, {self.steps} steps\ncontent {final['content']:.3g}, style {final['style']:.3g}, "
                            f"TV {final['tv']:.3g}", image=self.pixels[0]))
        series = {name: values[:, 0] for name, values in self.terms.items() if values.any()}
        return {"style": figure(panels, columns=len(panels), title="Neural style transfer", size=3.0),
                "loss": curves(series, title="weighted losses while optimizing", log=True),
                "evolution": figure([Panel("the image during the optimization", image=self.evolution())],
                                    size="native")}


@technique("style-transfer", "Neural style transfer", "Gatys et al. 2016", [
    Option("style", "images", ["sample:brick"], "style image(s): files or sample:NAME, several separated by commas"),
    Option("style_blend_weights", "floats", None, "one weight per style image (default: equal), normalized to sum 1",
           low=0),
    Option("content_weight", "float", 5.0, "alpha, the content loss weight (neural-style's 5)", low=0),
    Option("style_weight", "float", 100.0, "beta, the style loss weight (neural-style's 100)", low=0),
    Option("tv_weight", "float", 1e-3, "total variation weight, 0 to disable (neural-style's 1e-3)", low=0,
           gallery=0.0),
    Option("content_layers", "layers", None, "layer(s) of the content loss (default: relu4_2 or the model's "
                                             "equivalent)"),
    Option("style_layers", "layers", None, "layers of the style loss (default: relu1_1 ... relu5_1 or the model's "
                                           "equivalents)"),
    Option("optimizer", "choice", "lbfgs", "L-BFGS or Adam", choices=("lbfgs", "adam")),
    Option("learning_rate", "float", 10.0, "Adam's learning rate, in 8-bit pixel levels", low=0, open_low=True),
    Option("steps", "int", 1000, "iterations (neural-style's num_iterations)", low=1, high=100_000, gallery=40),
    Option("image_size", "int", 512, "the output's longer side in pixels", low=16, high=4096, gallery=96),
    Option("style_scale", "float", 1.0, "the style image's longer side relative to image_size", low=0.01, high=10),
    Option("init", "choice", "random", "start from small noise (random) or from the content image (image)",
           choices=("random", "image"), gallery="image"),
    Option("init_image", "images", None, "start from this image instead (resized to the output's size)"),
    Option("original_colors", "bool", False, "keep the content's colours: luminance-only transfer"),
    Option("pooling", "choice", "max", "max pooling, or average pooling in its place", choices=("max", "avg")),
    Option("history", "int", 100, "L-BFGS correction pairs", low=1, high=1000),
    Option("snapshot_every", "int", 100, "keep the image every this many steps (0: never)", low=0, gallery=10),
    Option("seed", "int", 0, "seed of the random start", low=0),
], inputs="pictures")
def style_transfer(model, content, *, style, style_blend_weights, content_weight, style_weight, tv_weight,
                   content_layers, style_layers, optimizer, learning_rate, steps, image_size, style_scale, init,
                   init_image, original_colors, pooling, history, snapshot_every, seed):
    """``content`` (an image file, ``sample:NAME`` or a uint8 array) in the style of ``style``, as a
    :class:`StyleResult`."""
    content_names = content_layers or [content_layer(model)]
    style_names = style_layers or objectives.style_layers(model)
    model.check_layers(content_names + style_names)
    if style_blend_weights is not None and len(style_blend_weights) != len(style):
        raise ValueError(f"style_blend_weights must give one weight per style image: {len(style_blend_weights)} "
                         f"for {len(style)}")
    blend = np.ones(len(style)) if style_blend_weights is None else np.asarray(style_blend_weights, np.float64)
    if not blend.sum() > 0:
        raise ValueError("style_blend_weights must not all be 0")
    blend = blend / blend.sum()
    content_pixels = load_picture(model, content, longest=image_size)
    style_pixels = [load_picture(model, s, longest=max(16, round(image_size * style_scale))) for s in style]
    recolour = original_colors and model.preprocessing.depth == 3
    if recolour:
        target = _luminance(content_pixels)
        luminances = [_luminance(s) for s in style_pixels]
        style_pixels = [_grey((y - y.mean()) * target.std() / max(y.std(), 1e-6) + target.mean()) for y in luminances]
        content_pixels_used = _grey(target)
    else:
        content_pixels_used = content_pixels
    normalize = model.preprocessing.normalize
    x_content = normalize(content_pixels_used[None])
    levels = pixel_scale(model)
    unit = float(levels.mean())
    with frozen(model), minigrad.no_grad():
        found = activations(model, minigrad.tensor(x_content), content_names, pooling)
        content_targets = {layer: to_host(found[layer]) for layer in content_names}
        grams = {layer: 0.0 for layer in style_names}
        for weight, pixels in zip(blend, style_pixels):
            found = activations(model, minigrad.tensor(normalize(pixels[None])), style_names, pooling)
            for layer in style_names:
                grams[layer] = grams[layer] + np.float32(weight) * to_host(gram_matrix(found[layer]))

    def objective(x):
        found = activations(model, x, content_names + style_names, pooling)
        content_loss = style_loss = 0.0
        for layer in content_names:
            difference = (found[layer] - content_targets[layer]).reshape(len(x), -1)
            weight = np.float32(content_weight * unit ** 2)
            content_loss = content_loss + (difference * difference).mean(axis=1) * weight
        for layer in style_names:
            difference = (gram_matrix(found[layer]) - grams[layer]).reshape(len(x), -1)
            style_loss = style_loss + (difference * difference).mean(axis=1) * np.float32(style_weight * unit ** 4)
        return {"content": content_loss, "style": style_loss,
                "tv": total_variation(x * levels, 2.0) * np.float32(tv_weight / 2)}

    if init_image is not None:
        if len(init_image) != 1:
            raise ValueError(f"init_image takes one image, got {len(init_image)}")
        start = normalize(load_picture(model, init_image[0], size=content_pixels.shape[:2])[None])
    elif init == "image":
        start = x_content
    else:
        noise = np.random.default_rng([seed, 3]).standard_normal(x_content.shape) * 0.001
        start = (noise / levels).astype(np.float32)
    rule = LBFGS(history) if optimizer == "lbfgs" else Adam(learning_rate / unit)
    with frozen(model):
        run = optimize(start.astype(np.float32), objective, steps=steps, rule=rule, snapshot_every=snapshot_every,
                       seed=seed, description="style transfer")
    if recolour:
        pixels = _recolour(model.deprocess(run.image)[0], content_pixels)
        run = run._replace(image=normalize(pixels[None]))
    shown = [load_picture(model, s, longest=max(16, round(image_size * style_scale))) for s in style] \
        if recolour else style_pixels
    result = StyleResult(model, run, model.deprocess(normalize(content_pixels[None]))[0],
                         [model.deprocess(normalize(s[None]))[0] for s in shown], list(blend))
    result.params.update(style=[s if isinstance(s, str) else f"array {np.shape(s)}" for s in style],
                         style_blend_weights=list(blend), content_layers=content_names, style_layers=style_names,
                         init_image=None if init_image is None else [s if isinstance(s, str) else
                                                                     f"array {np.shape(s)}" for s in init_image])
    result.inputs = {"images": [content if isinstance(content, str) else f"array {np.shape(content)}"]}
    return result
