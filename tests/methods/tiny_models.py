"""Small models with paper-style layer names for the methods tests, built from minigrad.nn on the
same :class:`~minigrad.models.Model` interface as the shipped models (nothing more)."""

from collections import OrderedDict

import numpy as np

from minigrad import functional as F
from minigrad import nn
from minigrad.models import Model, Preprocessing


class NamedSequential(Model):
    """A flat sequence of named layers, as the VGG/AlexNet models keep them."""

    def __init__(self, layers, channels, size, labels=None):
        super().__init__()
        self.net = nn.Sequential(OrderedDict(layers))
        self.input_shape = (channels, size, size)
        self.preprocessing = Preprocessing.identity(channels)
        self.labels = labels

    def layers(self):
        return list(self.net.named_children())


def tiny_vgg(channels=3, size=16, classes=5, width=4, seed=0):
    """conv1_1 relu1_1 conv1_2 relu1_2 pool1 conv2_1 relu2_1 pool2 flatten fc3 relu3 fc4 (random weights)."""
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


class FunctionalTwin(nn.Module):
    """A :func:`tiny_vgg`'s weights (shared, not copied) in a module written as torch users often
    write one: modules for the weights, ``minigrad.functional`` for ReLU, pooling and flattening.
    Its forward is not a run of its layers, so it is adapted as a non-sequential model."""

    def __init__(self, named):
        super().__init__()
        self.conv1_1, self.conv1_2 = named.layer("conv1_1"), named.layer("conv1_2")
        self.conv2_1, self.fc3, self.fc4 = named.layer("conv2_1"), named.layer("fc3"), named.layer("fc4")

    def forward(self, x):
        x = F.relu(self.conv1_2(F.relu(self.conv1_1(x))))
        x = F.max_pool2d(F.relu(self.conv2_1(F.max_pool2d(x, 2))), 2)
        return self.fc4(F.relu(self.fc3(x.reshape(x.shape[0], -1))))
