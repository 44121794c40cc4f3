"""Image-specific class saliency and saliency-seeded GrabCut segmentation.

Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks: Visualising Image
Classification Models and Saliency Maps", ICLR workshop 2014 (arXiv:1312.6034):

* sec. 3: the saliency of pixel (i, j) for class c is M_ij = max over colour channels of
  |dS_c / dI|, S_c the class score *before* the softmax, the derivative taken at the image
  by one backward pass (the lecture notes: "at each pixel take abs val, and max over channels").
* sec. 3.1, weakly supervised object localisation: GrabCut (Rother et al. 2004) whose
  foreground colour model is estimated from the pixels above the 95% saliency quantile and
  the background model from those below the 30% quantile. We pass those as GrabCut's sure
  seeds (FGD / BGD), fit the first colour models to them alone, leave the rest undecided,
  and iterate GrabCut (5 rounds by default) with our own max-flow (``methods.grabcut``).
"""

import numpy as np

from methods import grabcut as gc
from methods.lib.attribution import AttributionResult, class_title
from methods.lib.figures import Panel
from methods.lib.gradients import backprop
from methods.lib.options import Option, technique

__all__ = ["SaliencyResult", "saliency", "saliency_segmentation"]

FOREGROUND_QUANTILE = 0.95  # Simonyan et al. 2014, sec. 3.1
BACKGROUND_QUANTILE = 0.30


def saliency_segmentation(image, saliency, foreground_quantile=FOREGROUND_QUANTILE,
                          background_quantile=BACKGROUND_QUANTILE, iterations=5, seed=0):
    """Foreground mask (H, W bool) of ``image`` (H, W[, C]) by GrabCut seeded from ``saliency`` (H, W).

    Pixels with saliency above the ``foreground_quantile`` are sure foreground, those below the
    ``background_quantile`` sure background (Simonyan et al. 2014, sec. 3.1: 95% and 30%); the
    first colour models are fit to those seeds alone, the rest is decided by the graph cut.
    """
    image = np.asarray(image)
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.ndim != 2 or saliency.shape != image.shape[:2]:
        raise ValueError(f"the saliency map {saliency.shape} must be (H, W) of the image {image.shape}")
    if not 0 <= background_quantile < foreground_quantile <= 1:
        raise ValueError(f"need 0 <= background_quantile ({background_quantile}) < foreground_quantile "
                         f"({foreground_quantile}) <= 1")
    high = np.quantile(saliency, foreground_quantile)
    low = np.quantile(saliency, background_quantile)
    mask = np.full(saliency.shape, gc.PR_FGD, dtype=np.uint8)
    mask[saliency >= high] = gc.FGD
    mask[saliency <= low] = gc.BGD
    if not ((mask == gc.FGD).any() and (mask == gc.BGD).any()) or (mask == gc.FGD).all():
        raise ValueError("the saliency map is flat: it gives no distinct foreground and background seeds")
    labels = gc.grabcut(image, mask, iterations=iterations, seed=seed, init_from_seeds=True)
    return (labels == gc.FGD) | (labels == gc.PR_FGD)


class SaliencyResult(AttributionResult):
    """``maps`` (N, H, W) saliency; ``masks`` (N, H, W) bool GrabCut foregrounds, or None."""

    def __init__(self, maps, images, titles, targets, probabilities, masks, **summary):
        super().__init__(maps, images, titles, "max over colour of |dS/dI|", targets, probabilities,
                         cmap="inferno", **summary)
        self.masks = masks

    def panels(self, i):
        panels = super().panels(i)
        if self.masks is not None:
            image = self.images[i]
            cut = np.where(self.masks[i][..., None], image, image // 4).astype(np.uint8)
            panels.append(Panel(f"GrabCut foreground ({self.masks[i].mean():.0%})", image=cut))
        return panels

    def pictures(self):
        out = super().pictures()
        if self.masks is not None:
            for i, mask in enumerate(self.masks):
                out[f"{i}_mask"] = mask.astype(np.uint8) * 255
        return out


@technique("saliency", "Saliency maps and saliency-seeded GrabCut", "Simonyan et al. 2014", [
    Option("target", "target", None, "class index or name (default: each image's top class)"),
    Option("segment", "bool", True, "also segment the object by GrabCut seeded from the saliency (sec. 3.1)"),
    Option("foreground_quantile", "float", FOREGROUND_QUANTILE,
           "saliency quantile above which pixels seed the foreground (the paper's 0.95)", low=0, high=1),
    Option("background_quantile", "float", BACKGROUND_QUANTILE,
           "saliency quantile below which pixels seed the background (the paper's 0.30)", low=0, high=1),
    Option("iterations", "int", 5, "GrabCut iterations", low=1, high=100),
    Option("seed", "int", 0, "random seed of GrabCut's colour models", low=0),
])
def saliency(model, x, *, target, segment, foreground_quantile, background_quantile, iterations, seed):
    """Saliency maps M = max over colour channels of |dS_c/dI| (sec. 3) of a preprocessed batch,
    and (``segment``) their GrabCut segmentations, as a :class:`SaliencyResult` whose ``maps``
    are (N, H, W)."""
    if segment and not background_quantile < foreground_quantile:
        raise ValueError(f"background_quantile ({background_quantile}) must be below foreground_quantile "
                         f"({foreground_quantile})")
    result = backprop(model, x, "standard", target=target)
    maps = np.abs(result.gradients).max(axis=1)
    images = model.deprocess(x)
    masks, skipped = None, []
    if segment:
        masks = np.zeros(maps.shape, bool)
        for i, (image, m) in enumerate(zip(images, maps)):
            try:
                masks[i] = saliency_segmentation(image, m, foreground_quantile, background_quantile, iterations, seed)
            except ValueError as error:  # a flat map (a dead network, a constant image) gives no seeds
                skipped.append(f"image {i}: {error}")
    titles = [class_title(model, t, p) for t, p in zip(result.targets, result.probabilities)]
    return SaliencyResult(maps, images, titles, result.targets, result.probabilities, masks,
                          **({"segmentation_skipped": skipped} if skipped else {}))
