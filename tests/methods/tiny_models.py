"""Small models with paper-style layer names for the methods tests (saliency, occlusion,
deconvnet/guided backprop), built from minigrad.nn, with the interface the shipped models
have: ``model(x)`` -> logits, ``model.extract(x, names)``, ``layer_names``, ``input_channels``,
``input_size``."""

from collections import OrderedDict

import numpy as np

from minigrad import nn
from minigrad.models.layered import LayeredModel


class NamedSequential(LayeredModel):
    """A flat sequence of named layers, as the VGG/AlexNet models keep them; ``extract`` and
    ``layer_names`` come from the models' shared base."""

    def __init__(self, layers, input_channels, input_size):
        super().__init__()
        self.layers = nn.Sequential(OrderedDict(layers))
        self.input_channels = input_channels
        self.input_size = input_size

    def named_layers(self):
        return list(self.layers.named_children())


def tiny_vgg(channels=3, size=16, classes=5, width=4, seed=0):
    """conv1_1 relu1_1 pool1 conv2_1 relu2_1 pool2 flatten fc3 relu3 fc4 (VGG-like, random weights)."""
    rng = np.random.default_rng(seed)
    layers = [
        ("conv1_1", nn.Conv2d(channels, width, 3, padding=1)), ("relu1_1", nn.ReLU()),
        ("conv1_2", nn.Conv2d(width, width, 3, padding=1)), ("relu1_2", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2_1", nn.Conv2d(width, 2 * width, 3, padding=1)), ("relu2_1", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc3", nn.Linear(2 * width * (size // 4) ** 2, 16)), ("relu3", nn.ReLU()),
        ("fc4", nn.Linear(16, classes)),
    ]
    model = NamedSequential(layers, channels, size)
    for p in model.parameters():
        p.data[...] = rng.normal(0, 0.3, p.shape).astype(np.float32)
    return model.eval()
