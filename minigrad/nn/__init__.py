"""minigrad.nn: modules, parameters and the layers of the classic CNNs, PyTorch-compatible.

A :class:`Module` owns :class:`Parameter` tensors, buffers (plain arrays such as batch-norm running
statistics) and child modules, all registered by attribute assignment exactly as in PyTorch::

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)   # a child module named "conv"
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1).flatten(1))

Registration order, names and ``state_dict`` keys follow PyTorch (``conv.weight``, ``fc.bias``,
``features.0.weight`` inside a :class:`Sequential`, ``bn.running_mean``, ``bn.num_batches_tracked``),
so a torchvision checkpoint converted to NumPy arrays loads with ``load_state_dict`` unchanged.

Three files: ``module.py`` (Module, Parameter, Sequential, ModuleList, hooks, state dicts),
``layers.py`` (the layers, each calling :mod:`minigrad.functional`) and ``init.py`` (PyTorch's
initializers, drawn from ``minigrad.random_generator()`` so ``minigrad.manual_seed`` makes models
reproducible).
"""

from minigrad.nn import init
from minigrad.nn.layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Identity,
                                LeakyReLU, Linear, LocalResponseNorm, MaxPool2d, ReLU, Upsample)
from minigrad.nn.module import IncompatibleKeys, Module, ModuleList, Parameter, RemovableHandle, Sequential, StateDictError

__all__ = [
    "Module", "Parameter", "Sequential", "ModuleList", "Identity", "Conv2d", "Linear", "ReLU",
    "LeakyReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Dropout", "BatchNorm2d", "Flatten",
    "Upsample", "LocalResponseNorm", "StateDictError", "RemovableHandle", "IncompatibleKeys", "init",
]
