"""BagNet class evidence: what each local patch says about each class.

Brendel & Bethge, "Approximating CNNs with Bag-of-local-Features models works surprisingly well on
ImageNet", ICLR 2019 (and the lecture notes' "Bag of Features - BagNet" slide): a BagNet computes a
feature vector for every Q x Q patch, a linear classifier turns each into class evidence -- "after
linear classification: #classes heatmaps of class evidence" -- and the evidence averaged over the
patches is the logits ("average class evidence and pass into softmax").

The reference repository draws these heatmaps by running every patch of the zero-padded image
through the network separately (about 50,000 passes for one 224 x 224 image; see
``shared/notes/technique-anchors.md`` section 9). Because the classifier is linear, the same maps
come from one forward pass: the classifier applied at every position of the feature map before
the global average pooling (the repository's ``avg_pool=False``). That is what this does, so the
maps' spatial mean equals the logits up to float32 rounding (``summary["mean_error"]``: the largest
difference, relative to the logit when it exceeds 1).

It needs a bag-of-local-features network -- one whose last layers are a global average pooling,
(flatten,) and a single linear layer, like ``minigrad.models.load("fashion-bagnet")`` -- and
refuses any other with an error that says so.
"""

import numpy as np

from methods.lib.attribution import class_title
from methods.lib.figures import Panel, figure
from methods.lib.images import grid, rgb, to_uint8
from methods.lib.inputs import probabilities
from methods.lib.options import Option, technique
from methods.lib.receptive import receptive_field
from methods.lib.result import Result
from minigrad import nn

__all__ = ["BagNetResult", "bagnet_evidence", "local_evidence_head"]

_PASS_THROUGH = (nn.Flatten, nn.Dropout, nn.Identity)


def _is_global_average(module):
    if isinstance(module, nn.AdaptiveAvgPool2d):
        size = module.output_size
        return size == 1 or tuple(np.atleast_1d(size)) in ((1,), (1, 1))
    return False


def local_evidence_head(model):
    """(feature layer, pooling layer, classifier layer) names of a bag-of-local-features network:
    the layer whose (N, C, h, w) output is pooled, the global average pooling, and the final
    ``nn.Linear``; a ValueError naming what the model ends with otherwise."""
    layers = model.layers()
    i = len(layers) - 1
    if i >= 0 and isinstance(layers[i][1], nn.Linear):
        j = i - 1
        while j >= 0 and isinstance(layers[j][1], _PASS_THROUGH):
            j -= 1
        if j >= 1 and _is_global_average(layers[j][1]):
            return layers[j - 1][0], layers[j][0], layers[i][0]
    ending = ", ".join(f"{name} ({type(module).__name__})" for name, module in layers[-4:])
    raise ValueError(f"bagnet-evidence needs a bag-of-local-features network whose last layers are global average "
                     f"pooling and one linear layer, like minigrad.models.load('fashion-bagnet'); "
                     f"{model.describe()} ends with {ending}")


class BagNetResult(Result):
    """``maps`` (N, classes, h, w): the class evidence of every patch (patch (r, c) is the input's
    ``field.box(r, c)``); ``logits`` (N, classes) from the same forward pass (equal to the maps'
    spatial means) and ``softmax`` their probabilities; ``targets`` / ``probabilities`` the top class
    of each image and its probability; ``images`` the inputs (uint8 RGB); ``field`` the patches' receptive field;
    ``titles`` one caption per image; ``labels`` the class names; ``shown`` classes per figure,
    ``patches`` top patches shown."""

    technique = "bagnet-evidence"

    def __init__(self, maps, logits, softmax, images, titles, field, labels, shown, patches, **summary):
        super().__init__(**summary)
        self.maps, self.logits, self.softmax, self.images, self.titles = maps, logits, softmax, images, titles
        self.field, self.labels, self.shown, self.patches = field, labels, shown, patches
        self.targets = logits.argmax(axis=1)
        self.probabilities = softmax[np.arange(len(softmax)), self.targets]
        self.summary.update(targets=self.targets.tolist(), probabilities=self.probabilities.tolist())

    def pixel_map(self, i, k):
        """Image ``i``'s evidence for class ``k`` at input resolution: each patch's value drawn on
        the jump x jump cell around its centre, NaN where no patch is centred (the border)."""
        h, w = self.images[i].shape[:2]
        out = np.full((h, w), np.nan)
        (jr, jc), (qr, qc) = self.field.jump, self.field.size
        for r in range(self.maps.shape[2]):
            for c in range(self.maps.shape[3]):
                top, left, _, _ = self.field.box(r, c)
                cr, cc = top + (qr - jr) // 2, left + (qc - jc) // 2
                out[max(cr, 0):max(cr + jr, 0), max(cc, 0):max(cc + jc, 0)] = self.maps[i, k, r, c]
        return out

    def _class_title(self, i, k):
        p = self.softmax[i, k]
        shown = f"{p:.2g}" if p < 0.995 else f"1 - {1 - p:.1g}"
        return f"{self.labels[k]}: mean {self.logits[i, k]:+.2f}, p = {shown}"

    def top_patches(self, i, k):
        """[(value, (top, left, bottom, right))] of the ``patches`` strongest evidence for class ``k``."""
        values = self.maps[i, k].ravel()
        order = np.argsort(-values, kind="stable")[:self.patches]
        w = self.maps.shape[3]
        return [(float(values[j]), self.field.box(*divmod(int(j), w))) for j in order]

    def figures(self):
        out = {}
        for i in range(len(self.images)):
            order = np.argsort(-self.logits[i], kind="stable")[:self.shown]
            bound = float(np.abs(self.maps[i, order]).max()) or 1.0
            panels = [Panel(self.titles[i], image=self.images[i])]
            panels += [Panel(self._class_title(i, k), image=self.images[i], values=self.pixel_map(i, k), cmap="RdBu_r",
                             low=-bound, high=bound, label="class evidence", alpha=0.75) for k in order]
            out[f"{i}_evidence"] = figure(panels, columns=min(len(panels), 4), size=2.6,
                                          title=f"BagNet class evidence of {self.field.size[0]}x{self.field.size[1]} "
                                                f"patches (red: for, blue: against; the mean of each map is the logit)")
            top = int(self.targets[i])
            crops = [Panel(f"{value:+.2f}", image=_crop(self.images[i], box)) for value, box in self.top_patches(i, top)]
            out[f"{i}_patches"] = figure(crops, columns=len(crops), size=1.6,
                                         title=f"the {len(crops)} patches with most evidence for {self.labels[top]}")
        return out

    def pictures(self):
        out = {}
        for i in range(len(self.images)):
            bound = float(np.abs(self.maps[i]).max()) or 1.0
            tiles = [to_uint8(m, -bound, bound) for m in self.maps[i]]
            out[f"{i}_maps"] = grid(tiles, columns=5, labels=[str(k) for k in range(len(tiles))])
        return out


def _crop(image, box):
    """The part of ``image`` inside ``box`` (top, left, bottom, right), zero where it leaves the image."""
    top, left, bottom, right = box
    h, w = image.shape[:2]
    out = np.zeros((bottom - top, right - left) + image.shape[2:], image.dtype)
    rows, cols = slice(max(top, 0), min(bottom, h)), slice(max(left, 0), min(right, w))
    out[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left] = image[rows, cols]
    return rgb(out)


@technique("bagnet-evidence", "BagNet class evidence of local patches", "Brendel & Bethge 2019", [
    Option("classes", "int", 10, "class maps shown per image, highest logit first", low=1),
    Option("patches", "int", 6, "patches with the most evidence for the top class shown per image", low=1, high=64),
], model="fashion-bagnet")
def bagnet_evidence(model, x, *, classes, patches):
    """The (N, classes, h, w) class-evidence maps of a bag-of-local-features network on a
    preprocessed batch, from one forward pass, as a :class:`BagNetResult`."""
    import minigrad

    feature, _, classifier = local_evidence_head(model)
    linear = model.layer(classifier)
    with minigrad.no_grad():
        out = model.extract(minigrad.tensor(x), [feature, classifier])
    features = np.asarray(out[feature].numpy(), np.float64)
    logits = out[classifier].numpy()
    if features.ndim != 4:
        raise ValueError(f"bagnet-evidence: layer {feature} of {model.describe()} gives {features.shape}, not "
                         "(N, C, h, w) feature maps")
    weight = np.asarray(linear.weight.numpy(), np.float64)
    bias = np.zeros(weight.shape[0]) if linear.bias is None else np.asarray(linear.bias.numpy(), np.float64)
    maps = (np.einsum("kc,nchw->nkhw", weight, features) + bias[None, :, None, None]).astype(np.float32)
    field = receptive_field(model, feature, tuple(x.shape[2:]))
    labels = [model.label(k) for k in range(weight.shape[0])]
    error = float((np.abs(maps.mean(axis=(2, 3), dtype=np.float64) - logits) / np.maximum(np.abs(logits), 1)).max())
    softmax = probabilities(logits)
    titles = [class_title(model, t, softmax[i, t]) for i, t in enumerate(logits.argmax(axis=1))]
    return BagNetResult(maps, logits, softmax, model.deprocess(x), titles, field, labels, min(classes, len(labels)),
                        patches, layer=feature, patch_size=list(field.size), grid=list(maps.shape[2:]),
                        class_scores=logits.tolist(), mean_error=error)
