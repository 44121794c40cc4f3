"""Grad-CAM and Guided Grad-CAM.

Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization", ICCV 2017 (arXiv:1610.02391), sec. 3:

* the weight of channel k of a convolutional layer's output A for class c is the spatial mean of
  the gradient of the score y^c (before the softmax): alpha_k = 1/Z sum_ij dy^c / dA^k_ij (eq. 1);
* the map is L = ReLU(sum_k alpha_k A^k) (eq. 2), at the layer's own resolution (14 x 14 at
  VGG16's relu5_3 for 224 x 224 input); ``.maps`` keep it so, and only pictures upsample it;
* Guided Grad-CAM (sec. 3.1) multiplies guided backpropagation by L upsampled bilinearly to the
  input size: class-discriminative and high-resolution.

The default layer is the paper's choice, the last convolutional layer (its rectified output when
a ReLU follows, e.g. relu5_3 of VGG16), read from the model's layer geometry.
"""

import numpy as np

import minigrad
from methods.lib.attribution import AttributionResult, class_title, signed_rgb
from methods.lib.features import last_convolution
from methods.lib.figures import Panel
from methods.lib.gradients import backprop
from methods.lib.options import Option, technique
from minigrad import functional as F

__all__ = ["GradCamResult", "grad_cam"]


class GradCamResult(AttributionResult):
    """``maps`` (N, h, w) Grad-CAM at the layer's resolution; ``weights`` (N, K) the channel weights
    alpha; ``guided`` (N, C, H, W) Guided Grad-CAM, or None."""

    def __init__(self, maps, images, titles, targets, probabilities, weights, guided, layer, **summary):
        super().__init__(maps, images, titles, f"Grad-CAM at {layer}", targets, probabilities, cmap="jet", **summary)
        self.weights, self.guided = weights, guided

    def panels(self, i):
        panels = super().panels(i)
        panels[1] = panels[1]._replace(title=f"Grad-CAM, {self.maps[i].shape[0]}x{self.maps[i].shape[1]}")
        if self.guided is not None:
            panels.append(Panel("Guided Grad-CAM (grey = 0)", image=signed_rgb(self.guided[i])))
        return panels

    def pictures(self):
        out = super().pictures()
        if self.guided is not None:
            for i, g in enumerate(self.guided):
                out[f"{i}_guided"] = signed_rgb(g)
        return out


@technique("grad-cam", "Grad-CAM and Guided Grad-CAM", "Selvaraju et al. 2017", [
    Option("target", "target", None, "class index or name to explain (default: each image's top class)"),
    Option("layer", "layer", None, "convolutional layer whose activations are weighted "
                                   "(default: the last convolution's output, e.g. relu5_3)"),
    Option("guided", "bool", True, "also compute Guided Grad-CAM (guided backprop times the upsampled map)"),
])
def grad_cam(model, x, *, target, layer, guided):
    """Grad-CAM maps (N, h, w) of a preprocessed batch at ``layer``, and Guided Grad-CAM, as a
    :class:`GradCamResult`."""
    layer = layer or last_convolution(model)
    model.check_layers([layer])
    result = backprop(model, x, "standard", target=target, at=layer)
    activation, gradient = result.activation, result.activation_gradient
    if activation.ndim != 4:
        raise ValueError(f"Grad-CAM needs a layer with spatial output (N, C, h, w); {layer!r} gives {activation.shape}")
    weights = gradient.mean(axis=(2, 3))
    maps = np.maximum(np.einsum("nk,nkhw->nhw", weights, activation), 0)
    guided_maps = None
    if guided:
        upsampled = F.interpolate(minigrad.tensor(maps[:, None].astype(np.float32)), size=tuple(x.shape[2:]),
                                  mode="bilinear").numpy()
        guided_maps = backprop(model, x, "guided", target=list(result.targets)).gradients * upsampled
    titles = [class_title(model, t, p) for t, p in zip(result.targets, result.probabilities)]
    out = GradCamResult(maps, model.deprocess(x), titles, result.targets, result.probabilities, weights,
                        guided_maps, layer)
    out.params["layer"] = layer
    return out
