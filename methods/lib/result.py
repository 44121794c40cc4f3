"""What every technique returns: NumPy arrays, the parameters that made them, and pictures that
explain themselves.

A technique subclasses :class:`Result` and fills two dictionaries of uint8 pictures:

* ``figures()``: labelled figures (colour bars with real ranges, class names and probabilities,
  indices, legends) made with :mod:`methods.lib.figures`: what a person looks at first;
* ``pictures()``: the raw pictures at their native size (a 28 x 28 saliency map is a 28 x 28 PNG),
  saved a second time enlarged by nearest-neighbour sampling when they are small.

``save(folder)`` writes both as PNG and ``<technique>.json`` with the parameters, the inputs and
the numbers in ``summary`` (and ``<technique>.txt`` with :meth:`Result.text`, a table of numbers,
when there is one); ``plot()`` shows the figures with matplotlib.
"""

from methods.lib import output
from methods.lib.images import enlarge, require, upscale_factor

__all__ = ["Result"]

#: Maps smaller than this (pixels on the longer side) are also saved enlarged.
ENLARGE_BELOW = 128


class Result:
    """Base class. ``technique`` names it and ``params`` holds the option values (both set by the
    technique decorator); ``summary`` holds small numbers and facts worth recording (targets,
    probabilities, losses, seconds); ``inputs`` describes the images, when the CLI knows them."""

    technique = "result"

    def __init__(self, **summary):
        self.params = {}
        self.summary = summary
        self.inputs = None

    def figures(self):
        """{name: uint8 (H, W, 3)} labelled figures."""
        return {}

    def pictures(self):
        """{name: uint8 (H, W) or (H, W, 3)} raw pictures at native size."""
        return {}

    def text(self):
        """A plain-text report (a table of numbers) that the command line prints and ``save`` writes
        as ``<technique>.txt``; empty for most techniques."""
        return ""

    def record(self):
        """Everything the JSON file holds."""
        return {"technique": self.technique, "params": self.params, "inputs": self.inputs, **self.summary}

    def save(self, folder, force=False):
        """Write the figures, the maps (and enlarged copies of small ones) and ``<technique>.json``
        into ``folder`` (checked first: see :func:`methods.lib.output.prepare_folder`; with
        ``force`` an earlier run's files of this technique are replaced). Returns the paths written."""
        output.prepare_folder(folder, force)
        if force:
            output.remove_results(folder, self.technique)
        paths = [output.write_png(folder, f"{self.technique}_{name}.png", image, force)
                 for name, image in self.figures().items()]
        for name, image in self.pictures().items():
            paths.append(output.write_png(folder, f"{self.technique}_{name}.png", image, force))
            side = max(image.shape[:2])
            if side < ENLARGE_BELOW:
                factor = upscale_factor(side)
                paths.append(output.write_png(folder, f"{self.technique}_{name}_x{factor}.png",
                                              enlarge(image, factor), force))
        paths.append(output.write_json(folder, f"{self.technique}.json", self.record(), force))
        if self.text():
            paths.append(output.write_file(folder, f"{self.technique}.txt", (self.text() + "\n").encode("utf-8"),
                                           force))
        return paths

    def plot(self):
        """Show the figures (one matplotlib window each); returns the pyplot figures."""
        plt = require("matplotlib.pyplot", "plotting")
        shown = []
        for image in self.figures().values():
            fig = plt.figure(figsize=(image.shape[1] / 100, image.shape[0] / 100), dpi=100)
            fig.figimage(image)
            shown.append(fig)
        return shown
