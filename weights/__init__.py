"""Checkpoint formats, converters and the model registry (NumPy only; never imports minigrad).

* :mod:`weights.safetensors` — our safetensors reader (memory-mapped, validating) and writer.
* :mod:`weights.torch_pth` — torchvision ``.pth`` files (zip and legacy) without torch, through
  our own pickle interpreter: an allowlist, no code from the file, bounded work per byte.
* :mod:`weights.untrusted` — regular files only, untrusted text shown escaped and capped, shapes
  NumPy can hold: the guards every reader shares.
* :mod:`weights.archs` — layer tables of AlexNet and the VGGs, shared with ``minigrad.models``.
* :mod:`weights.registry` — known checkpoints (URLs, SHA-256), the cache folder, downloads.
* :mod:`weights.convert` — ``.pth`` -> safetensors with metadata; loading for models.
* ``python -m weights list | fetch | convert | info`` — the command line.
"""

import os

from weights.errors import CheckpointError
from weights.safetensors import SafetensorsFile, load_file, save_file
from weights.torch_pth import load_pth
from weights.untrusted import shown

__all__ = ["CheckpointError", "SafetensorsFile", "imagenet_labels", "labels", "load_file", "load_pth", "save_file"]

_DATA = os.path.join(os.path.dirname(__file__), "data")
_LABEL_FILES = {"imagenet1k-torchvision": "imagenet1k_torchvision.txt"}


def labels(list_id):
    """The class-name list called ``list_id`` (e.g. ``"imagenet1k-torchvision"``) as a tuple."""
    try:
        name = _LABEL_FILES[list_id]
    except KeyError:
        raise CheckpointError(f"unknown class list {shown(list_id)}; known: {', '.join(_LABEL_FILES)}") from None
    with open(os.path.join(_DATA, name), encoding="utf-8") as f:
        return tuple(line.rstrip("\n") for line in f if line.strip())


def imagenet_labels():
    """torchvision's 1000 ImageNet-1k class names, index = class id (BSD-3-Clause, see LICENSES.md)."""
    return labels("imagenet1k-torchvision")
