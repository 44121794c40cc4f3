"""What every technique returns: NumPy arrays plus the parameters that made them.

A technique subclasses ``Result`` and lists, in ``pictures()``, the uint8 images a person
would look at; ``save(directory)`` writes those as PNG and everything else (parameters,
losses, scores) as JSON, and ``plot()`` shows the pictures with matplotlib.
"""

import json
import os

import numpy as np

from methods.imaging import require, save_png


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 10_000 else f"array{value.shape}"
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class Result:
    """Base class: ``technique`` names it, ``params`` holds its settings, ``extras`` small numbers."""

    technique = "result"

    def __init__(self, params, **extras):
        self.params = dict(params)
        self.extras = extras

    def pictures(self):
        """{name: uint8 HxW or HxWx3 image} to save and plot."""
        raise NotImplementedError

    def save(self, directory, overwrite=False):
        """Write ``<technique>_<name>.png`` for each picture and ``<technique>.json``; returns the paths."""
        os.makedirs(directory, exist_ok=True)
        paths = [save_png(os.path.join(directory, f"{self.technique}_{name}.png"), image, overwrite)
                 for name, image in self.pictures().items()]
        meta_path = os.path.join(directory, f"{self.technique}.json")
        if os.path.exists(meta_path) and not overwrite:
            raise FileExistsError(f"{meta_path} exists; pass overwrite=True (or --force) to replace it")
        with open(meta_path, "w") as handle:
            json.dump({"technique": self.technique, "params": _jsonable(self.params),
                       **_jsonable(self.extras)}, handle, indent=2)
        return paths + [meta_path]

    def plot(self, columns=3):
        """A matplotlib figure with one panel per picture."""
        plt = require("matplotlib.pyplot", "plotting")
        pictures = self.pictures()
        rows = -(-len(pictures) // columns)
        figure, axes = plt.subplots(rows, min(columns, len(pictures)), squeeze=False,
                                    figsize=(4 * min(columns, len(pictures)), 4 * rows))
        for axis in axes.flat:
            axis.axis("off")
        for axis, (name, image) in zip(axes.flat, pictures.items()):
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
            axis.set_title(f"{self.technique}: {name}")
        figure.tight_layout()
        return figure
