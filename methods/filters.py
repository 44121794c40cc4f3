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

Tiles are enlarged with nearest-neighbour sampling so 3x3 kernels can be seen.
"""

import time

import numpy as np

from methods import imaging
from methods.patches import named_layers
from methods.result import Result

__all__ = ["filters", "conv_layers", "FiltersResult", "add_cli_arguments", "run_cli"]


def _numpy(array):
    array = getattr(array, "data", array)
    return array.get() if hasattr(array, "get") else np.asarray(array)


def conv_layers(model):
    """[(name, module)] of the model's convolutions, in forward order."""
    return [(name, m) for name, m in named_layers(model) if type(m).__name__ == "Conv2d"]


def filters(model, layer=None, max_filters=None, max_channels=16, zoom=None):
    """Pictures of the weights of convolution ``layer`` (default: the first one).

    ``max_filters``: draw at most this many filters (default: all for the first layer, 32 for
    deeper ones); ``max_channels``: at most this many input channels per filter for deeper
    layers (default 16). ``zoom``: integer enlargement (default: tiles of at least 24 px).
    Returns a :class:`FiltersResult` holding the weights (O, C, KH, KW).
    """
    start = time.perf_counter()
    convs = conv_layers(model)
    if not convs:
        raise ValueError("the model has no convolution layers")
    names = [name for name, _ in convs]
    if layer is None:
        layer, module = convs[0]
    else:
        known = dict(named_layers(model))
        if layer not in known:
            raise ValueError(f"unknown layer {layer!r}; the model's convolutions are: {', '.join(names)}")
        module = known[layer]
        if type(module).__name__ != "Conv2d":
            raise ValueError(f"layer {layer!r} is a {type(module).__name__}, not a convolution; "
                             f"the model's convolutions are: {', '.join(names)}")
    weights = _numpy(module.weight).astype(np.float64)
    first = layer == names[0]
    if max_filters is None:
        max_filters = len(weights) if first else 32
    for label, value in (("max_filters", max_filters), ("max_channels", max_channels)):
        if not (isinstance(value, (int, np.integer)) and value >= 1):
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    params = dict(layer=layer, max_filters=int(max_filters), max_channels=int(max_channels), zoom=zoom,
                  first_layer=first)
    return FiltersResult(params, weights, seconds=time.perf_counter() - start)


class FiltersResult(Result):
    """``weights`` (O, C, KH, KW); ``pictures()``: the grid described in the module docstring."""

    technique = "filters"

    def __init__(self, params, weights, seconds=0.0):
        super().__init__(params, shape=list(weights.shape), seconds=seconds,
                         weight_range=[float(weights.min()), float(weights.max())])
        self.weights = weights

    def _zoom(self):
        kh, kw = self.weights.shape[2:]
        return self.params.get("zoom") or max(1, -(-24 // max(kh, kw)))

    def tiles(self):
        """The first layer's filters as uint8 tiles (KH, KW[, 3]), each rescaled to 0-255 on its own."""
        w = self.weights[: self.params["max_filters"]]
        tiles = [imaging.to_uint8(f) for f in w]  # per filter: its own min -> 0, max -> 255
        if w.shape[1] == 3:
            return [t.transpose(1, 2, 0) for t in tiles]
        return [t[0] if len(t) == 1 else t.mean(0).astype(np.uint8) for t in tiles]

    def channel_rows(self):
        """Deeper layers: (filters, channels) of uint8 tiles, each filter rescaled over all its channels."""
        w = self.weights[: self.params["max_filters"], : self.params["max_channels"]]
        return [[tile for tile in imaging.to_uint8(f)] for f in w]

    def picture(self):
        z = self._zoom()
        enlarge = lambda t: np.kron(t, np.ones((z, z) + (1,) * (t.ndim - 2), np.uint8))  # noqa: E731
        if self.params.get("first_layer", True) and self.weights.shape[1] in (1, 3):
            return imaging.grid([enlarge(t) for t in self.tiles()], pad=max(1, z // 3))
        rows = self.channel_rows()
        tiles = [enlarge(t) for row in rows for t in row]
        return imaging.grid(tiles, columns=len(rows[0]), pad=max(1, z // 3))

    def pictures(self):
        return {self.params["layer"]: self.picture()}


def add_cli_arguments(parser):
    parser.add_argument("--layer", default=None, help="convolution layer (default: the first, e.g. conv1_1)")
    parser.add_argument("--max-filters", type=int, default=None,
                        help="at most this many filters (default: all for the first layer, 32 deeper)")
    parser.add_argument("--max-channels", type=int, default=16,
                        help="deeper layers: at most this many input channels per filter (default: 16)")
    parser.add_argument("--zoom", type=int, default=None, help="enlarge tiles by this factor (default: auto)")


def run_cli(args, model, x):
    return filters(model, args.layer, max_filters=args.max_filters, max_channels=args.max_channels, zoom=args.zoom)
