"""Deconvnet and guided backpropagation images of a class score, a channel or a neuron.

* Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014
  (arXiv:1311.2901), sec. 2.1: the deconvnet unpools with the forward pass's switches (our
  max-pool backward), filters with the transposed filters (our conv backward) and rectifies the
  *signal* coming down (ReLU applied to the gradient, the forward mask ignored).
* Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving for Simplicity: The All Convolutional
  Net", ICLR workshop 2015 (arXiv:1412.6806), sec. 3.4: guided backpropagation applies both
  masks, so only paths of positive influence reach the image.

Both are one backward pass of :func:`methods.lib.gradients.backprop` under another ReLU rule;
the quantity is a class score before the softmax, or a unit of any layer: a channel ``c`` (the
gradient of the channel's sum), a neuron ``(c, i, j)``, or by default the layer's most active
neuron (Zeiler & Fergus show the strongest activation). The pictures are the (C, H, W)
reconstruction scaled symmetrically about zero (grey = 0) and its per-pixel magnitude with a
colour bar.
"""

from methods.lib.attribution import AttributionResult, class_title, signed_rgb
from methods.lib.figures import Panel
from methods.lib.gradients import backprop
from methods.lib.options import Option, technique

__all__ = ["BackpropResult", "deconvnet", "guided_backprop"]

OPTIONS = [
    Option("target", "target", None, "class index or name to explain (default: each image's top class)"),
    Option("layer", "layer", None, "explain a unit of this layer instead of a class score"),
    Option("unit", "unit", None, "with layer: a channel c or a neuron c,i,j (default: the most active neuron)"),
]


class BackpropResult(AttributionResult):
    """``maps`` (N, C, H, W) image-space reconstructions; panels: input, the reconstruction
    (grey = 0), its magnitude with a colour bar."""

    def panels(self, i):
        return [Panel(self.titles[i], image=self.images[i]),
                Panel(f"{self.technique} (grey = 0)", image=signed_rgb(self.maps[i])),
                Panel("magnitude", values=self.magnitude(i), cmap="magma", label=self.map_label)]


def _run(model, x, rule, target, layer, unit):
    result = backprop(model, x, rule, target=target, layer=layer, unit=unit)
    if layer is None:
        titles = [class_title(model, t, p) for t, p in zip(result.targets, result.probabilities)]
    else:
        titles = [f"{layer}, unit {'most active' if unit is None else unit}"] * len(x)
    return BackpropResult(result.gradients, model.deprocess(x), titles, "max over colour of |reconstruction|",
                          result.targets, result.probabilities)


@technique("deconvnet", "Deconvnet reconstructions", "Zeiler & Fergus 2014", OPTIONS)
def deconvnet(model, x, *, target, layer, unit):
    """Zeiler & Fergus (2014, sec. 2.1) deconvnet reconstructions of a class score or a layer unit,
    as a :class:`BackpropResult` whose ``maps`` are (N, C, H, W)."""
    return _run(model, x, "deconvnet", target, layer, unit)


@technique("guided-backprop", "Guided backpropagation", "Springenberg et al. 2015", OPTIONS)
def guided_backprop(model, x, *, target, layer, unit):
    """Guided backpropagation (Springenberg et al. 2015, sec. 3.4) of a class score or a layer unit,
    as a :class:`BackpropResult` whose ``maps`` are (N, C, H, W)."""
    return _run(model, x, "guided", target, layer, unit)
