"""The raw weights of a convolution drawn as pictures: the first and simplest look inside a CNN.

Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks", NIPS 2012, fig. 3 (the 96 conv1 kernels of AlexNet); the lecture notes: "first layer
of ConvNet: visualizing the learned filters/weights ... rescaled to 0-255", because the input
that excites a filter most (for a fixed norm) is a copy of the filter itself.

* First layer (filters over the image's channels): one tile per filter, RGB for 3-channel
  input (grayscale for 1), each filter min-max rescaled on its own to 0-255, as in the notes.
* Deeper layers (filters over C feature maps, "not that interesting" but shown in the notes from
  the ConvNetJS demo): one row per filter, one grayscale tile per input channel, each filter
  rescaled on its own across all its channels so their relative strength stays visible.

Tiles are enlarged with nearest-neighbour sampling so 3x3 kernels can be seen, and numbered by
filter (and input channel); the figure's colour bar gives the weights' real range.
"""

import numpy as np

from methods.lib.figures import Panel, figure
from methods.lib.images import enlarge, grid, to_uint8, upscale_factor
from methods.lib.inputs import to_host
from methods.lib.options import Option, technique
from methods.lib.result import Result
from minigrad import nn

__all__ = ["FiltersResult", "conv_layers", "filters"]


def conv_layers(model):
    """[(name, module)] of the model's convolutions, in forward order."""
    return [(name, m) for name, m in model.layers() if isinstance(m, nn.Conv2d)]


class FiltersResult(Result):
    """``weights`` (O, C, KH, KW) of the layer; ``figures()`` the grid described in the module docstring."""

    def __init__(self, layer, weights, first_layer, max_filters, max_channels, zoom, **summary):
        super().__init__(**summary)
        self.layer, self.weights, self.first_layer = layer, weights, first_layer
        self.max_filters, self.max_channels, self.zoom = max_filters, max_channels, zoom

    def _zoom(self):
        return self.zoom or upscale_factor(max(self.weights.shape[2:]), 48)

    def picture(self):
        """The grid of filters: first layer in colour (or grey), deeper layers one row per filter."""
        z = self._zoom()
        w = self.weights[: self.max_filters]
        if self.first_layer and w.shape[1] in (1, 3):
            tiles = [to_uint8(f) for f in w]  # per filter: its own min -> 0, max -> 255
            tiles = [t.transpose(1, 2, 0) if len(t) == 3 else t[0] for t in tiles]
            return grid([enlarge(t, z) for t in tiles], pad=max(1, z // 3), labels=[str(i) for i in range(len(tiles))])
        w = w[:, : self.max_channels]
        tiles = [enlarge(tile, z) for f in w for tile in to_uint8(f)]
        labels = [f"{o}.{c}" for o in range(len(w)) for c in range(w.shape[1])]
        return grid(tiles, columns=w.shape[1], pad=max(1, z // 3), labels=labels)

    def figures(self):
        numbered = "filter" if self.first_layer else "filter.channel"
        low, high = float(self.weights.min()), float(self.weights.max())
        title = (f"{self.layer} weights {tuple(self.weights.shape)}: tiles numbered {numbered},\n"
                 f"each scaled to its own min..max (all weights span {low:.3g}..{high:.3g})")
        return {self.layer: figure([Panel(title, image=self.picture())], size="native")}

    def pictures(self):
        return {f"{self.layer}_grid": self.picture()}


@technique("filters", "First-layer filter and weight visualization", "Krizhevsky et al. 2012", [
    Option("layer", "layer", None, "convolution layer (default: the first, e.g. conv1_1)"),
    Option("max_filters", "int", None, "at most this many filters (default: all for the first layer, 32 deeper)", low=1),
    Option("max_channels", "int", 16, "deeper layers: at most this many input channels per filter", low=1),
    Option("zoom", "int", None, "enlarge tiles by this factor (default: tiles of at least 48 px)", low=1, high=64),
], inputs="model")
def filters(model, *, layer, max_filters, max_channels, zoom):
    """Pictures of the weights of convolution ``layer`` (default: the first one), as a :class:`FiltersResult`."""
    convs = conv_layers(model)
    if not convs:
        raise ValueError(f"{model.describe()} has no convolution layers")
    names = [name for name, _ in convs]
    if layer is None:
        layer, module = convs[0]
    else:
        model.check_layers([layer])
        module = model.layer(layer)
        if not isinstance(module, nn.Conv2d):
            raise ValueError(f"layer {layer!r} is a {type(module).__name__}, not a convolution; "
                             f"the model's convolutions are: {', '.join(names)}")
    weights = to_host(module.weight).astype(np.float64)
    first = layer == names[0]
    max_filters = max_filters or (len(weights) if first else 32)
    result = FiltersResult(layer, weights, first, max_filters, max_channels, zoom, shape=list(weights.shape),
                           weight_range=[float(weights.min()), float(weights.max())])
    result.params.update(layer=layer, max_filters=max_filters)
    return result
