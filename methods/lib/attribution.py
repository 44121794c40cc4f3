"""What attribution techniques share (Captum's lesson: one call shape, one result): a result whose
``.maps`` hold one map per image, the classes explained with their probabilities, and figures
that put the input, the map with its colour bar, and the overlay side by side.

Saliency, deconvnet, guided backprop, Grad-CAM, SmoothGrad, integrated gradients and occlusion
all return an :class:`AttributionResult` (or a subclass that adds panels).
"""

import numpy as np

from methods.lib.figures import Panel, figure
from methods.lib.images import chw_to_hwc, to_uint8
from methods.lib.result import Result

__all__ = ["AttributionResult", "class_title", "signed_rgb"]


def class_title(model, target, probability):
    """"tabby (281), p = 0.62": a class named for figure titles (near 1, p keeps its digits)."""
    shown = f"{probability:.3g}" if probability < 0.999 else f"1 - {1 - probability:.2g}"
    return f"{model.label(target)} ({int(target)}), p = {shown}"


def signed_rgb(gradient):
    """A (C, H, W) gradient as a uint8 picture scaled symmetrically about zero (grey = 0), so the
    sign of each colour channel stays visible (how deconvnet and guided-backprop images are shown)."""
    g = np.asarray(gradient, dtype=np.float64)
    bound = float(np.abs(g).max())
    return chw_to_hwc(to_uint8(g, -bound, bound) if bound > 0 else np.full(g.shape, 128, np.uint8))


class AttributionResult(Result):
    """``maps``: (N, H, W) or (N, C, H, W) attributions (or (N, h, w) at a layer's resolution);
    ``targets`` / ``probabilities`` (N,) the class explained per image and its probability (None
    when a layer unit is explained); ``images`` the inputs as uint8 RGB (N, H, W, 3);
    ``titles`` one caption per image; ``map_label`` what the map's values are; ``reduce`` how a
    colour map becomes one value per pixel: "absmax" (max over channels of |map|) or "sum"."""

    def __init__(self, maps, images, titles, map_label, targets=None, probabilities=None, cmap="viridis",
                 symmetric=False, reduce="absmax", **summary):
        super().__init__(**summary)
        self.maps, self.images, self.titles = maps, images, titles
        self.targets, self.probabilities = targets, probabilities
        self.map_label, self.cmap, self.symmetric, self.reduce = map_label, cmap, symmetric, reduce
        if targets is not None:
            self.summary.update(targets=targets, probabilities=probabilities)
        self.summary["explained"] = list(titles)

    def magnitude(self, i):
        """Image ``i``'s map as one 2-D array (colour maps reduced over channels by ``reduce``)."""
        m = np.asarray(self.maps[i], dtype=np.float64)
        if m.ndim == 2:
            return m
        return m.sum(axis=0) if self.reduce == "sum" else np.abs(m).max(axis=0)

    def panels(self, i):
        """The panels of image ``i``'s figure: input, map with colour bar, overlay."""
        values = self.magnitude(i)
        return [Panel(self.titles[i], image=self.images[i]),
                Panel(self.technique, values=values, cmap=self.cmap, label=self.map_label, symmetric=self.symmetric),
                Panel("overlay", image=self.images[i], values=values, cmap=self.cmap, label=self.map_label,
                      symmetric=self.symmetric, smooth=values.shape != self.images[i].shape[:2])]

    def figures(self):
        return {f"{i}": figure(self.panels(i)) for i in range(len(self.images))}

    def pictures(self):
        out = {}
        for i in range(len(self.images)):
            m = np.asarray(self.maps[i])
            out[f"{i}_map"] = signed_rgb(m) if m.ndim == 3 else to_uint8(m)
        return out
