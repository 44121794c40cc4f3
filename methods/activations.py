"""Feature maps of any named layer for an image, as a grid (the lecture notes' "Visualizing
Activations"; Yosinski et al. 2015, "Understanding Neural Networks Through Deep Visualization",
ICML Deep Learning workshop, whose toolbox shows every channel of a layer side by side).

Each channel of the layer's output (C, H, W) becomes one tile. By default every tile shares one
colour scale (the layer's minimum to maximum over all channels), so a bright tile means a
strongly active channel, as in Yosinski et al.'s toolbox; ``scale="channel"`` stretches each
tile to its own range instead, which shows the pattern of weak channels too. Fully connected
layers (a vector per image) are drawn as one near-square tile of their units.

Tiles are numbered by channel; with one scale the figure's colour bar gives the layer's range.
"""

import numpy as np

from methods.lib.features import layer_activations
from methods.lib.figures import Panel, figure
from methods.lib.images import enlarge, grid, tile_vector, to_uint8, upscale_factor
from methods.lib.options import Option, technique
from methods.lib.result import Result

__all__ = ["ActivationsResult", "activations"]


class ActivationsResult(Result):
    """``maps`` (N, C, H, W) float activations of ``layer`` (a fully connected layer: (N, 1, h, w),
    its units laid out row by row); ``channels`` the channel index of each map."""

    def __init__(self, layer, maps, channels, scale, upscale, **summary):
        super().__init__(**summary)
        self.layer, self.maps, self.channels, self.scale, self.upscale = layer, maps, channels, scale, upscale

    def grid(self, index=0):
        """Image ``index``'s maps as one uint8 grid, tiles numbered by channel."""
        maps = self.maps[index]
        factor = self.upscale or upscale_factor(max(maps.shape[1:]), 32)
        if self.scale == "layer":
            low, high = np.nanmin(maps), np.nanmax(maps)
            tiles = [to_uint8(np.where(np.isnan(m), low, m), low, high) for m in maps]
        else:
            tiles = [to_uint8(np.where(np.isnan(m), np.nanmin(m), m)) for m in maps]
        labels = [str(c) for c in self.channels] if len(self.channels) > 1 else None
        return grid([enlarge(t, factor) for t in tiles], pad=max(1, factor // 4), labels=labels)

    def figures(self):
        out = {}
        for i in range(len(self.maps)):
            shape = "x".join(map(str, self.maps[i].shape[1:]))
            if self.scale == "layer":
                low, high = float(np.nanmin(self.maps[i])), float(np.nanmax(self.maps[i]))
                title = f"{self.layer}: {len(self.channels)} channels of {shape}, one scale for all"
                out[f"{i}"] = figure([Panel(title, image=self.grid(i), cmap="gray", low=low, high=high,
                                            label="activation")], size="native")
            else:
                title = f"{self.layer}: {len(self.channels)} channels of {shape}, each scaled to its own range"
                out[f"{i}"] = figure([Panel(title, image=self.grid(i))], size="native")
        return out

    def pictures(self):
        return {f"{self.layer}_{i}": self.grid(i) for i in range(len(self.maps))}


@technique("activations", "Feature maps of any layer", "Yosinski et al. 2015", [
    Option("layer", "layer", None, "layer whose feature maps are drawn (default: the first layer, e.g. conv1_1)"),
    Option("scale", "choice", "layer", "one colour scale for the whole layer, or one per channel",
           choices=("layer", "channel")),
    Option("channels", "ints", None, "only these channels (default: all)", low=0),
    Option("upscale", "int", None, "enlarge each tile by this factor (default: tiles of at least 32 px)", low=1,
           high=64),
])
def activations(model, x, *, layer, scale, channels, upscale):
    """Feature maps of ``layer`` for every image of the preprocessed batch ``x``, as an
    :class:`ActivationsResult`."""
    layer = layer or model.layer_names[0]
    maps = layer_activations(model, x, layer)
    if maps.ndim == 2:  # a fully connected layer: one tile of all units
        if channels is not None:
            raise ValueError(f"layer {layer!r} is fully connected ({maps.shape[1]} units, drawn as one tile): "
                             "leave channels out")
        maps = np.stack([tile_vector(v) for v in maps])[:, None]
    elif maps.ndim != 4:
        raise ValueError(f"layer {layer!r} gives activations of shape {maps.shape}; expected (N, C, H, W) or (N, F)")
    chosen = list(range(maps.shape[1]))
    if channels is not None:
        bad = [c for c in channels if c >= maps.shape[1]]
        if bad:
            raise ValueError(f"channel(s) {bad} out of range: layer {layer!r} has {maps.shape[1]} channels")
        maps, chosen = maps[:, channels], list(channels)
    result = ActivationsResult(layer, maps, chosen, scale, upscale, shape=list(maps.shape),
                               active_fraction=float((np.nan_to_num(maps) > 0).mean()),
                               maximum=float(np.nanmax(maps)))
    result.params["layer"] = layer
    return result
