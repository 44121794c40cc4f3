"""Feature maps of any named layer for an image, as a grid (the lecture notes' "Visualizing
Activations"; Yosinski et al. 2015, "Understanding Neural Networks Through Deep Visualization",
ICML Deep Learning workshop, whose toolbox shows every channel of a layer side by side).

Each channel of the layer's output (C, H, W) becomes one tile. By default every tile shares one
colour scale (the layer's minimum to maximum over all channels), so a bright tile means a
strongly active channel, as in Yosinski et al.'s toolbox; ``scale="channel"`` stretches each
tile to its own range instead, which shows the pattern of weak channels too. Fully connected
layers (a vector per image) are drawn as one near-square tile of their units.

Also here, shared with ``patches``, ``neighbours`` and ``tsne``: :func:`layer_features`, the
activations of one layer for a whole dataset, computed in batches without building a graph.
"""

import math
import time

import numpy as np

import minigrad
from methods import imaging
from methods.backprop_images import check_input, check_layer
from methods.result import Result

__all__ = ["activations", "layer_features", "layer_activations", "ActivationsResult", "add_cli_arguments", "run_cli"]


def _numpy(array):
    if isinstance(array, minigrad.Tensor):
        array = array.data
    return array.get() if hasattr(array, "get") else np.asarray(array)


def layer_activations(model, x, layer):
    """The output of ``layer`` for the preprocessed batch ``x`` (N, C, H, W), as a NumPy array.

    Runs the model only as deep as ``layer`` (``model.extract``), records no graph, and raises
    a ValueError naming the valid layers for an unknown name and the expected input for a
    batch of the wrong shape, channels or size."""
    x = check_input(model, x)
    check_layer(model, layer)
    with minigrad.no_grad():
        try:
            out = model.extract(minigrad.tensor(x), [layer])[layer]
        except KeyError as error:  # models that report an unknown name as KeyError
            raise ValueError(f"unknown layer {layer!r}: {error}") from None
    return _numpy(out)


def layer_features(model, x, layer, batch_size=64, flatten=True):
    """Activations of ``layer`` for every image of ``x`` (N, C, H, W), ``batch_size`` at a time;
    (N, features) with ``flatten`` (the vectors t-SNE and nearest neighbours compare)."""
    x = np.asarray(x) if not isinstance(x, minigrad.Tensor) else x.data
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"expected a non-empty preprocessed batch (N, C, H, W), got shape {x.shape}")
    chunks = [layer_activations(model, x[i: i + batch_size], layer) for i in range(0, len(x), batch_size)]
    out = np.concatenate(chunks)
    return out.reshape(len(out), -1) if flatten else out


def _tile(vector):
    """A 1-D vector of units as a near-square 2-D tile (missing cells NaN, drawn as the minimum)."""
    n = vector.size
    cols = int(math.ceil(math.sqrt(n)))
    rows = -(-n // cols)
    tile = np.full(rows * cols, np.nan)
    tile[:n] = vector
    return tile.reshape(rows, cols)


def activations(model, x, layer, scale="layer", channels=None, upscale=None):
    """Feature maps of ``layer`` for the first image of the preprocessed batch ``x``.

    ``scale``: "layer" (one colour scale for every channel, default) or "channel" (each tile
    min-max scaled on its own). ``channels``: which channels to show (default all).
    ``upscale``: integer nearest-neighbour enlargement of each tile (default: so tiles are at
    least 32 px). Returns an :class:`ActivationsResult` with ``maps`` (C, H, W) for every image.
    """
    if scale not in ("layer", "channel"):
        raise ValueError(f"scale must be 'layer' or 'channel', got {scale!r}")
    start = time.perf_counter()
    maps = layer_activations(model, x, layer)
    if maps.ndim == 2:  # a fully connected layer: one tile of all units
        maps = np.stack([_tile(v) for v in maps])[:, None]
    elif maps.ndim != 4:
        raise ValueError(f"layer {layer!r} gives activations of shape {maps.shape}; expected (N, C, H, W) or (N, F)")
    if channels is not None:
        channels = [int(c) for c in np.atleast_1d(channels)]
        bad = [c for c in channels if not 0 <= c < maps.shape[1]]
        if bad:
            raise ValueError(f"channel(s) {bad} out of range: layer {layer!r} has {maps.shape[1]} channels")
        maps = maps[:, channels]
    params = dict(layer=layer, scale=scale, channels=channels, upscale=upscale)
    return ActivationsResult(params, maps, seconds=time.perf_counter() - start)


class ActivationsResult(Result):
    """``maps`` (N, C, H, W) float activations; ``pictures()`` draws the first image's as a grid
    (one per image in the batch)."""

    technique = "activations"

    def __init__(self, params, maps, seconds=0.0):
        super().__init__(params, shape=list(maps.shape), seconds=seconds,
                         active_fraction=float((np.nan_to_num(maps) > 0).mean()),
                         maximum=float(np.nanmax(maps)))
        self.maps = maps

    def grid(self, index=0):
        maps = self.maps[index]
        h, w = maps.shape[1:]
        factor = self.params.get("upscale") or max(1, int(math.ceil(32 / max(h, w))))
        if self.params.get("scale", "layer") == "layer":
            low, high = np.nanmin(maps), np.nanmax(maps)
            tiles = [imaging.to_uint8(np.where(np.isnan(m), low, m), low, high) for m in maps]
        else:
            tiles = [imaging.to_uint8(np.where(np.isnan(m), np.nanmin(m), m)) for m in maps]
        tiles = [np.kron(t, np.ones((factor, factor), np.uint8)) for t in tiles]
        return imaging.grid(tiles, pad=max(1, factor // 4), fill=255)

    def pictures(self):
        return {f"{self.params['layer']}_{i}": self.grid(i) for i in range(len(self.maps))}


def add_cli_arguments(parser):
    parser.add_argument("--layer", default="conv1_1", help="layer whose feature maps are drawn (default: conv1_1)")
    parser.add_argument("--scale", default="layer", choices=("layer", "channel"),
                        help="one colour scale for the whole layer, or one per channel (default: layer)")
    parser.add_argument("--channels", type=int, nargs="*", default=None, help="only these channels (default: all)")
    parser.add_argument("--upscale", type=int, default=None, help="enlarge each tile by this factor (default: auto)")


def run_cli(args, model, x):
    return activations(model, x, args.layer, scale=args.scale, channels=args.channels, upscale=args.upscale)
