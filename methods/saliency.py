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

import time

import numpy as np

from methods import grabcut as gc
from methods.backprop_images import _deprocessed, backprop_image, check_input
from methods.imaging import overlay, to_uint8
from methods.result import Result

__all__ = ["saliency_map", "saliency_segmentation", "saliency", "SaliencyResult", "add_cli_arguments", "run_cli"]

FOREGROUND_QUANTILE = 0.95  # Simonyan et al. 2014, sec. 3.1
BACKGROUND_QUANTILE = 0.30


def saliency_map(model, x, target=None):
    """(N, H, W) saliency maps: max over channels of |dS_c/dI| (Simonyan et al. 2014, eq. in sec. 3).

    ``x``: a preprocessed float (N, C, H, W) batch; ``target``: None (each image's top class),
    a class index, or one index per image. S_c is the score before the softmax.
    """
    gradients = backprop_image(model, x, "standard", target=target)
    return np.abs(gradients).max(axis=1)


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


class SaliencyResult(Result):
    """``maps`` (N, H, W), ``targets`` (N,), ``images`` (uint8 inputs), ``masks`` (N, H, W) or None."""

    technique = "saliency"

    def __init__(self, maps, targets, images, masks, params, **extras):
        self.maps, self.targets, self.images, self.masks = maps, targets, images, masks
        super().__init__(params, **extras)

    def pictures(self):
        pictures = {}
        for i, (m, image) in enumerate(zip(self.maps, self.images)):
            pictures[f"{i}_map"] = to_uint8(m)
            pictures[f"{i}_overlay"] = overlay(image, m)
            if self.masks is not None:
                shown = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
                pictures[f"{i}_segmentation"] = np.where(self.masks[i][..., None], shown, shown // 4).astype(np.uint8)
        return pictures


def saliency(model, x, target=None, segment=True, foreground_quantile=FOREGROUND_QUANTILE,
             background_quantile=BACKGROUND_QUANTILE, iterations=5, seed=0):
    """Saliency maps and (optionally) their GrabCut segmentations, as a :class:`SaliencyResult`."""
    x = check_input(model, x)
    start = time.perf_counter()
    gradients, targets = backprop_image(model, x, "standard", target=target, return_targets=True)
    maps = np.abs(gradients).max(axis=1)
    seconds_map = time.perf_counter() - start
    images = _deprocessed(model, np.asarray(x))
    masks = None
    if segment:
        masks = np.stack([saliency_segmentation(image, m, foreground_quantile, background_quantile, iterations, seed)
                          for image, m in zip(images, maps)])
    params = {"target": target, "foreground_quantile": foreground_quantile,
              "background_quantile": background_quantile, "grabcut_iterations": iterations}
    return SaliencyResult(maps, targets, images, masks, params, seconds_map=seconds_map,
                          seconds=time.perf_counter() - start)


def add_cli_arguments(parser):
    parser.add_argument("--target", type=int, default=None, help="class index (default: each image's top class)")
    parser.add_argument("--no-segment", action="store_true", help="skip the saliency-seeded GrabCut segmentation")
    parser.add_argument("--foreground-quantile", type=float, default=FOREGROUND_QUANTILE,
                        help="saliency quantile above which pixels seed the foreground (default: 0.95, the paper's)")
    parser.add_argument("--background-quantile", type=float, default=BACKGROUND_QUANTILE,
                        help="saliency quantile below which pixels seed the background (default: 0.30, the paper's)")
    parser.add_argument("--iterations", type=int, default=5, help="GrabCut iterations (default: 5)")


def run_cli(args, model, x):
    return saliency(model, x, args.target, not args.no_segment, args.foreground_quantile,
                    args.background_quantile, args.iterations, args.seed)

