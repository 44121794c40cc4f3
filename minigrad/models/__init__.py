"""Pretrained-architecture models: AlexNet and VGG 11/13/16/19 (with and without batch norm).

::

    from minigrad import models

    model = models.vgg16()                       # torchvision's random initialization
    model = models.vgg16(weights="vgg16")        # after: python -m weights fetch vgg16
    model = models.vgg16(weights="my.safetensors")   # or a torchvision .pth, read without torch
    model = models.load("vgg16")                 # same, in eval mode with frozen weights

    x = model.preprocess("cat.jpg")                         # (1, 3, 224, 224): resize 256, centre 224
    acts = model.extract(x, ["relu4_2", "fc7"])            # {"relu4_2": Tensor, "fc7": Tensor}
    model.decode(model(x))                                  # [[(281, "tabby", 0.62), ...]]

Every model implements one interface, :class:`Model` (``minigrad/models/base.py``): input
shape, ``layers()`` with the papers' names, ``preprocess`` / ``deprocess``, ``extract``,
``labels`` and each layer's window geometry; :func:`as_model` gives it to any ``nn.Module``.
VGG and AlexNet have torchvision's ``state_dict`` keys (``features.N.*``, ``classifier.N.*``).
Weights come from the ``weights`` package; see ``python -m weights list``.
"""

import os as _os

from weights import CheckpointError as _CheckpointError
from weights import archs as _archs
from weights import registry as _registry
from weights.convert import load_state as _load_state

from minigrad.models.base import LayerGeometry, Model, Window, as_model
from minigrad.models.convnet import ConvNet, build
from minigrad.models.preprocessing import TORCHVISION, Preprocessing, PreprocessingNote

__all__ = [
    "ARCHS", "ConvNet", "LayerGeometry", "Model", "Preprocessing", "PreprocessingNote", "TORCHVISION", "Window",
    "alexnet", "as_model", "available", "load", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
    "vgg19_bn",
]

ARCHS = _archs.ARCHS


def _builder(arch, paper):
    def make(weights=None, num_classes=None):
        return build(arch, weights, num_classes)

    make.__name__ = make.__qualname__ = arch
    make.__doc__ = f"""{paper}, in torchvision's layout.

    ``weights``: None for torchvision's random initialization; a path to a ``.safetensors``
    file made by ``python -m weights convert`` (or a torchvision ``.pth``, read without torch);
    or a registry name such as ``"{arch}"`` for the converted file ``python -m weights fetch``
    stored. ``num_classes`` defaults to 1000, or to what the weights hold.
    Returns a :class:`ConvNet` in training mode, as PyTorch constructors do; call ``.eval()``.
    """
    return make


alexnet = _builder("alexnet", "AlexNet (Krizhevsky et al. 2012, torchvision's one-GPU variant)")
vgg11 = _builder("vgg11", "VGG-11, configuration A (Simonyan & Zisserman 2015)")
vgg11_bn = _builder("vgg11_bn", "VGG-11 with batch normalization")
vgg13 = _builder("vgg13", "VGG-13, configuration B (Simonyan & Zisserman 2015)")
vgg13_bn = _builder("vgg13_bn", "VGG-13 with batch normalization")
vgg16 = _builder("vgg16", "VGG-16, configuration D (Simonyan & Zisserman 2015)")
vgg16_bn = _builder("vgg16_bn", "VGG-16 with batch normalization")
vgg19 = _builder("vgg19", "VGG-19, configuration E (Simonyan & Zisserman 2015)")
vgg19_bn = _builder("vgg19_bn", "VGG-19 with batch normalization")


RANDOM_SUFFIX = "-random"


def available():
    """The names :func:`load` takes on this machine: the shipped model, converted checkpoints
    in the weights cache, and every architecture with torchvision's random init (``vgg16-random``)."""
    cached = [n for n in _registry.CHECKPOINTS if _registry.converted_path(n).exists()]
    from minigrad.models.bagnet import BAGNETS

    return ["fashion-vgg", *BAGNETS] + cached + [arch + RANDOM_SUFFIX for arch in ARCHS]


def load(name, arch=None):
    """A model ready for visualization: eval mode, parameters frozen.

    ``name`` is ``"fashion-vgg"`` (the small network shipped in weights/), ``"fashion-bagnet"``
    (the shipped BagNet with the largest patches; ``"fashion-bagnet-q5"``, ``-q9``, ``-q13`` by
    patch size), a registry name
    (``"vgg16"``, fetched beforehand with ``python -m weights fetch``), an architecture with
    ``-random`` (``"vgg16-random"``: torchvision's random initialization, seeded by
    ``minigrad.manual_seed``) or a weights file; the architecture comes from the registry, the
    file's metadata, or its keys and shapes (``arch`` overrides). An unknown name raises an
    error listing :func:`available`. Call ``.train()`` / ``.requires_grad_()`` to fine-tune.
    """
    if name in ("fashion-vgg", "fashion_vgg") and arch is None:
        from minigrad.models.fashion_vgg import fashion_vgg

        return fashion_vgg().eval().requires_grad_(False)
    if isinstance(name, str) and arch is None:
        from minigrad.models.bagnet import BAGNETS, fashion_bagnet

        if name in BAGNETS:
            return fashion_bagnet(BAGNETS[name]).requires_grad_(False)
    if isinstance(name, str) and name.endswith(RANDOM_SUFFIX) and name[: -len(RANDOM_SUFFIX)] in ARCHS:
        return build(name[: -len(RANDOM_SUFFIX)]).eval().requires_grad_(False)
    if arch is None:
        if isinstance(name, str) and name in _registry.CHECKPOINTS:
            arch = _registry.get(name).arch
        else:
            if not _os.path.exists(_os.fspath(name)):
                raise _CheckpointError(
                    f"unknown model {name!r}: no such file and not a model name; models available here: {', '.join(available())}; "
                    f"more with python -m weights fetch NAME ({', '.join(_registry.CHECKPOINTS)})"
                )
            tensors, meta = _load_state(_registry.resolve(name))
            from minigrad.models.bagnet import BAGNETS, fashion_bagnet

            if meta.get("arch") in BAGNETS:
                return fashion_bagnet(path=name).requires_grad_(False)
            arch = meta.get("arch") or _archs.guess_arch({k: v.shape for k, v in tensors.items()})
            if arch is None:
                raise ValueError(
                    f"{name}: cannot tell the architecture from the file (none of {', '.join(ARCHS)}); pass arch="
                )
    return build(arch, name).eval().requires_grad_(False)
