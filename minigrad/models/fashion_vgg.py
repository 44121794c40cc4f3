"""fashion-vgg: a small VGG-style classifier for 28x28 grayscale Fashion-MNIST images.

Why it exists: the visualization techniques need a trained network, and none can be downloaded
on a fresh machine. This one is small enough to train with minigrad itself on two CPU cores
(``python -m training fashion-vgg``) and to ship in the repository (about 2 MB), yet has
the structure the techniques expect from VGG (Simonyan & Zisserman 2015): blocks of 3x3
convolutions with ReLU, each closed by a 2x2 max-pool, then three fully connected layers. Its
layers carry VGG's paper names, so every technique's layer arguments (``conv1_1``, ``relu3_1``,
``pool2``, ``fc7``, ...) work unchanged::

    features:   conv1_1 relu1_1 pool1   (1 -> 32 channels, 28x28 -> 14x14)
                conv2_1 relu2_1 pool2   (32 -> 64,         14x14 -> 7x7)
                conv3_1 relu3_1 pool3   (64 -> 128,        7x7 -> 3x3)
    classifier: fc6 relu6 drop6         (1152 -> 256)
                fc7 relu7 drop7         (256 -> 256)
                fc8                     (256 -> 10 class scores, no softmax)

One 3x3 convolution per block instead of VGG's two or three: on Fashion-MNIST the second
convolution of a block costs twice the compute of the whole block for a fraction of a percent of
accuracy, and the training budget is a few CPU-minutes. State-dict keys are
``features.conv1_1.weight`` ... ``classifier.fc8.bias``.

Preprocessing lives with the model, so techniques never hard-code it: ``preprocess`` maps
images (uint8 (N, 28, 28) as stored in the dataset, 0 = background and 255 = ink, or any image
file, colour or grey, of any size: made grey and brought to 28 x 28) to float32
(N, 1, 28, 28) standardized with the training set's pixel mean and standard deviation;
``deprocess`` inverts it (to RGB, as for every model).
"""

from collections import OrderedDict

from minigrad import nn
from minigrad.models.base import Model, adopt_state
from minigrad.models.preprocessing import Preprocessing

__all__ = ["FashionVGG", "fashion_vgg", "LABELS", "MEAN", "STD", "WEIGHTS_NAME"]

#: The ten Fashion-MNIST classes in label order (Xiao, Rasul & Vollgraf 2017).
LABELS = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

#: Pixel mean and standard deviation of the 60,000 training images, on the 0..1 scale.
MEAN = 0.2860
STD = 0.3530

#: The file in weights/ that holds the trained parameters.
WEIGHTS_NAME = "fashion-vgg.safetensors"

#: Output channels of the convolutions of each block (one tuple per block).
BLOCKS = ((32,), (64,), (128,))
#: Width of fc6 and fc7.
HIDDEN = 256


class FashionVGG(Model):
    """The network above. ``blocks`` and ``hidden`` change its size (tests use tiny ones);
    ``dropout`` is the drop probability after fc6 and fc7 in training mode (0.1)."""

    input_shape = (1, 28, 28)
    labels = LABELS
    preprocessing = Preprocessing("L", (0.0, 1.0), (MEAN,), (STD,), resize=28, crop=28)

    def __init__(self, blocks=BLOCKS, hidden=HIDDEN, num_classes=len(LABELS), dropout=0.1):
        super().__init__()
        if not blocks or not all(blocks):
            raise ValueError(f"blocks must be a non-empty sequence of non-empty channel tuples, got {blocks!r}")
        side = self.input_shape[1]
        for _ in blocks:
            side //= 2
        if side < 1:
            raise ValueError(f"{len(blocks)} blocks of 2x2 pooling do not fit a 28x28 input")
        features, channels = OrderedDict(), self.input_shape[0]
        for b, convs in enumerate(blocks, start=1):
            for i, out in enumerate(convs, start=1):
                features[f"conv{b}_{i}"] = nn.Conv2d(channels, int(out), 3, padding=1)
                features[f"relu{b}_{i}"] = nn.ReLU()
                channels = int(out)
            features[f"pool{b}"] = nn.MaxPool2d(2)
        self.features = nn.Sequential(features)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(OrderedDict([
            ("fc6", nn.Linear(channels * side * side, hidden)),
            ("relu6", nn.ReLU()),
            ("drop6", nn.Dropout(dropout)),
            ("fc7", nn.Linear(hidden, hidden)),
            ("relu7", nn.ReLU()),
            ("drop7", nn.Dropout(dropout)),
            ("fc8", nn.Linear(hidden, num_classes)),
        ]))
        self.config = {"blocks": [list(map(int, c)) for c in blocks], "hidden": int(hidden),
                       "num_classes": int(num_classes), "dropout": float(dropout)}
        self.reset_parameters()

    def reset_parameters(self):
        """He-normal convolutions (fan_out, as torchvision's VGG) with zero biases; the linear layers
        keep PyTorch's default, which trains faster here than VGG's N(0, 0.01)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        return self

    def layers(self):
        """(paper name, module) for every layer in forward order; the flatten step is ``flatten``."""
        return (list(self.features.named_children()) + [("flatten", self.flatten)]
                + list(self.classifier.named_children()))

    def describe(self):
        return "fashion-vgg"


def fashion_vgg(pretrained=True, path=None):
    """Build fashion-vgg in eval mode, loaded from ``weights/fashion-vgg.safetensors`` (or ``path``).

    The file is opened through ``numpy.memmap`` (weights.safetensors), so loading costs
    milliseconds. ``pretrained=False`` gives the randomly initialized network.
    """
    if not pretrained:
        return FashionVGG().eval()
    from weights import safetensors

    if path is None:
        import os

        import weights

        path = os.path.join(os.path.dirname(os.path.abspath(weights.__file__)), WEIGHTS_NAME)
    with safetensors.SafetensorsFile(path) as f:
        config = _config_from(f.metadata)
        with nn.init.skip_init():
            model = FashionVGG(**config)
        adopt_state(model, {k: f[k] for k in f.keys()})
        model.metadata = dict(f.metadata)
    return model.eval()


def _config_from(metadata):
    """The constructor arguments recorded in a checkpoint's metadata (defaults when absent)."""
    import json

    raw = metadata.get("config")
    if not raw:
        return {}
    config = json.loads(raw)
    return {"blocks": tuple(tuple(b) for b in config["blocks"]), "hidden": config["hidden"],
            "num_classes": config["num_classes"], "dropout": config.get("dropout", 0.1)}
