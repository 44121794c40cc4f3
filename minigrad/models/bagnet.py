"""fashion-bagnet: bag-of-local-features networks for Fashion-MNIST (BagNet, at 28 x 28).

Brendel & Bethge, "Approximating CNNs with Bag-of-local-Features models works surprisingly well on
ImageNet", ICLR 2019: a network whose every unit sees only a Q x Q patch of the image computes a
feature vector per patch, a linear classifier turns each vector into class evidence, and the
image's logits are the evidence averaged over all patches. The paper's BagNets are ResNet-50s whose
3 x 3 convolutions beyond a receptive-field budget become 1 x 1 (BagNet-33, -17, -9 at 224 x 224;
``shared/notes/technique-anchors.md`` section 9). These are the same idea at Fashion-MNIST's
scale, with Q = 13, 9 and 5 (about the paper's 33/224 of the image at the largest)::

    conv1  5x5, stride 2, 1 -> 32                     receptive field 5, 2 pixels between units
    conv2  3x3 (1x1 when Q = 5), 32 -> 64             9
    conv3  3x3 (1x1 when Q < 13), 64 -> 128           13
    conv4  1x1, 128 -> 128
    conv5  1x1, 128 -> 128                            (the per-patch features)
    pool   global average; flatten; fc 128 -> 10

every convolution followed by ReLU and none padded, so a unit of conv5 sees exactly one Q x Q patch
(a 12 x 12, 10 x 10 or 8 x 8 grid of them, 2 pixels apart, for Q = 5, 9, 13). The stride-2 first
layer keeps the cost of the largest near fashion-vgg's (9 million multiply-adds per image), which
is what let three of them train on two shared CPU cores. Because ``fc`` is linear, averaging then
classifying equals classifying every patch then averaging: ``fc`` applied at each position of
conv5's output gives the (classes, h, w) evidence maps whose mean is the logits
(``methods.bagnet_evidence``). Any input of at least Q x Q pixels runs (the pooling is adaptive),
as the paper's BagNets run on any image size.

Trained by minigrad itself (``python -m training fashion-bagnet-q13``, ``-q9``, ``-q5``; ``training/bagnet.py``) and
shipped in ``weights/fashion-bagnet-q{5,9,13}.safetensors``; preprocessing and labels are
fashion-vgg's (grey, standardized with the training set's mean and standard deviation).
"""

from collections import OrderedDict

from minigrad import nn
from minigrad.models.base import Model, adopt_state
from minigrad.models.fashion_vgg import FashionVGG

__all__ = ["BAGNETS", "FashionBagNet", "PATCH_SIZES", "WIDTHS", "fashion_bagnet", "model_name", "weights_name"]

#: The receptive fields (patch sides) the architecture supports, smallest first.
PATCH_SIZES = (5, 9, 13)
#: Output channels of conv1 ... conv5.
WIDTHS = (32, 64, 128, 128, 128)


def model_name(q):
    """The name ``minigrad.models.load`` knows the network of patch size ``q`` by."""
    return f"fashion-bagnet-q{int(q)}"


#: The names ``minigrad.models.load`` takes -> patch size: "fashion-bagnet" is the largest.
BAGNETS = {"fashion-bagnet": PATCH_SIZES[-1], **{model_name(q): q for q in PATCH_SIZES}}


def weights_name(q):
    """The file in weights/ that holds it."""
    return model_name(q) + ".safetensors"


class FashionBagNet(Model):
    """The network above for patch size ``q`` (5, 9 or 13); ``widths`` (five channel counts) change
    its size (tests use tiny ones)."""

    input_shape = FashionVGG.input_shape
    fixed_size = False
    labels = FashionVGG.labels
    preprocessing = FashionVGG.preprocessing

    def __init__(self, q=PATCH_SIZES[-1], widths=WIDTHS, num_classes=len(FashionVGG.labels)):
        super().__init__()
        if q not in PATCH_SIZES:
            raise ValueError(f"q (the patch size) must be one of {', '.join(map(str, PATCH_SIZES))}, got {q!r}")
        if len(widths) != 5 or not all(int(w) >= 1 for w in widths):
            raise ValueError(f"widths must be five positive channel counts, got {widths!r}")
        kernels = (5, 3 if q >= 9 else 1, 3 if q >= 13 else 1, 1, 1)
        strides = (2, 1, 1, 1, 1)
        layers, channels = OrderedDict(), self.input_shape[0]
        for i, (k, s, width) in enumerate(zip(kernels, strides, widths), start=1):
            layers[f"conv{i}"] = nn.Conv2d(channels, int(width), k, stride=s)
            layers[f"relu{i}"] = nn.ReLU()
            channels = int(width)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        self.q = int(q)
        self.config = {"q": int(q), "widths": [int(w) for w in widths], "num_classes": int(num_classes)}
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def layers(self):
        """conv1, relu1, ..., conv5, relu5, pool, flatten, fc."""
        return list(self.features.named_children()) + [("pool", self.pool), ("flatten", self.flatten), ("fc", self.fc)]

    def describe(self):
        return model_name(self.q)


def fashion_bagnet(q=PATCH_SIZES[-1], path=None):
    """The shipped network of patch size ``q`` in eval mode, from ``weights/`` (or ``path``; its
    metadata says which ``q`` and widths it holds)."""
    import json
    import os

    import weights
    from weights import safetensors

    if path is None:
        if q not in PATCH_SIZES:
            raise ValueError(f"q (the patch size) must be one of {', '.join(map(str, PATCH_SIZES))}, got {q!r}")
        path = os.path.join(os.path.dirname(os.path.abspath(weights.__file__)), weights_name(q))
    with safetensors.SafetensorsFile(path) as f:
        config = json.loads(f.metadata.get("config") or "{}")
        with nn.init.skip_init():
            model = FashionBagNet(**config)
        adopt_state(model, {k: f[k] for k in f.keys()})
        model.metadata = dict(f.metadata)
    return model.eval()
