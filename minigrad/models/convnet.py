"""VGG and AlexNet in torchvision's exact layout, with the papers' layer names.

The network is built from the layer table in :mod:`weights.archs` (the same table the checkpoint
converter checks files against), as three children exactly like torchvision's::

    features    Sequential: conv / [bn] / relu / maxpool ...   keys features.N.weight, ...
    avgpool     AdaptiveAvgPool2d(7) for VGG, (6) for AlexNet   (so any input size >= 32 works)
    classifier  Sequential: linear / relu / dropout ...         keys classifier.N.weight, ...

so a torchvision ``state_dict`` (converted by ``python -m weights convert``) loads with strict
key and shape checks. On top of that every layer has its name from the papers -- ``conv1_1``,
``relu1_1``, ``pool1`` ... ``fc8`` -- and :meth:`ConvNet.extract` returns the activations of the
layers asked for, running the forward only as deep as the deepest of them.
"""

import math

import numpy as np

import weights
from minigrad import backend, nn
from minigrad.models.base import Model, adopt_state
from minigrad.models.preprocessing import TORCHVISION, Preprocessing
from minigrad.seeding import random_generator
from weights import archs, registry
from weights.convert import load_state

__all__ = ["ConvNet", "build"]

def _module(layer):
    p, kind = layer.params, layer.kind
    if kind == "conv":
        return nn.Conv2d(p["in_channels"], p["out_channels"], p["kernel_size"], p["stride"], p["padding"])
    if kind == "bn":
        return nn.BatchNorm2d(p["num_features"], eps=p["eps"], momentum=p["momentum"])
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "maxpool":
        return nn.MaxPool2d(p["kernel_size"], p["stride"], p["padding"])
    if kind == "adaptive_avgpool":
        return nn.AdaptiveAvgPool2d(p["output_size"])
    if kind == "dropout":
        return nn.Dropout(p["p"])
    if kind == "linear":
        return nn.Linear(p["in_features"], p["out_features"])
    if kind == "flatten":  # torch.flatten(x, 1) in torchvision's forward; not a registered child
        return nn.Flatten(1)
    raise ValueError(f"unknown layer kind {kind!r}")


def _draw(array, fill):
    """Run ``fill(host)`` on a float32 host array and make ``array`` hold the result: in place
    for a NumPy float32 array (no temporary for VGG's 100M-weight fc6), else through a host
    buffer (CuPy arrays, float64 models)."""
    if isinstance(array, np.ndarray) and array.dtype == np.float32 and array.flags.c_contiguous:
        fill(array)
        return
    host = np.empty(array.shape, np.float32)
    fill(host)
    array[...] = backend.to_device(host, backend.device_of(array)) if backend.device_of(array) != "cpu" else host


def _uniform(rng, bound):
    def fill(h):  # U(-bound, bound) in place
        rng.random(out=h, dtype=np.float32)
        h *= 2 * bound
        h -= bound
    return fill


def _normal(rng, std):
    def fill(h):  # N(0, std^2) in place
        rng.standard_normal(out=h, dtype=np.float32)
        h *= std
    return fill


class ConvNet(Model):
    """AlexNet or a VGG (``arch`` in :data:`weights.archs.ARCHS`), torchvision's layout.

    Usually made by ``minigrad.models.vgg16(...)`` and friends or ``minigrad.models.load(...)``.
    ``init`` ("torchvision", or None to leave the weights zero for loading) picks the initial
    weights. ``preprocessing`` and ``labels`` describe what the weights expect and predict.

    It implements the model interface of :class:`~minigrad.models.base.Model`: ``layers()``
    with the papers' names, ``preprocessing`` and ``labels`` from the weights, ``input_shape``
    (3, 224, 224), the size the weights were trained at; ``fixed_size`` is False, since any size
    from 32 x 32 for VGG (63 x 63 for AlexNet) runs thanks to the adaptive pooling.
    """

    fixed_size = False

    def __init__(self, arch, num_classes=1000, init="torchvision", preprocessing=None, labels=None):
        super().__init__()
        table = archs.layers(arch, num_classes)
        with nn.init.skip_init():
            mods = [(layer, _module(layer)) for layer in table]
        feats = [m for layer, m in mods if layer.key.startswith("features.")]
        heads = [m for layer, m in mods if layer.key.startswith("classifier.")]
        self.features = nn.Sequential(*feats)
        self.avgpool = next(m for layer, m in mods if layer.key == "avgpool")
        self.classifier = nn.Sequential(*heads)
        object.__setattr__(self, "arch", arch)
        object.__setattr__(self, "num_classes", int(num_classes))
        # (name, module) in forward order; the flatten between avgpool and classifier is not a
        # registered child (torchvision has none), so state_dict keys and repr stay torchvision's
        object.__setattr__(self, "_steps", [(layer.name, m) for layer, m in mods])
        object.__setattr__(self, "preprocessing", preprocessing or TORCHVISION)
        object.__setattr__(self, "labels", tuple(labels) if labels is not None else None)
        object.__setattr__(self, "input_shape", (3, self.preprocessing.crop, self.preprocessing.crop))
        if init == "torchvision":
            self.reset_parameters()
        elif init is not None:
            raise ValueError(f"init must be 'torchvision' or None, got {init!r}")

    # ---- initialization -------------------------------------------------------------------
    def reset_parameters(self):
        """torchvision's initialization, drawn from ``minigrad.random_generator()``.

        VGG (``torchvision.models.VGG.__init__``): conv weights Kaiming-normal with fan_out and
        the ReLU gain, conv and linear biases zero, linear weights N(0, 0.01^2), BatchNorm
        weight 1 and bias 0. AlexNet keeps PyTorch's layer defaults: weights and biases
        U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Numbers are drawn directly in float32.
        """
        rng = random_generator()
        for m in self.modules():
            if isinstance(m, nn.Conv2d) or isinstance(m, nn.Linear):
                w, b = m.weight.data, m.bias.data
                fan_in = math.prod(w.shape[1:])
                if self.arch == "alexnet":
                    bound = np.float32(1.0 / math.sqrt(fan_in))
                    _draw(w, _uniform(rng, bound))
                    _draw(b, _uniform(rng, bound))
                    continue
                if isinstance(m, nn.Conv2d):
                    std = np.float32(math.sqrt(2.0 / (w.shape[0] * math.prod(w.shape[2:]))))  # fan_out, ReLU
                else:
                    std = np.float32(0.01)
                _draw(w, _normal(rng, std))
                b[...] = 0
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data[...] = 1
                m.bias.data[...] = 0
                m.reset_running_stats()
        return self

    def layers(self):
        """[(paper name, module)] for every layer in forward order (``flatten`` included)."""
        return list(self._steps)

    def extra_repr(self):
        return f"arch={self.arch!r}, num_classes={self.num_classes}"


def _metadata_preprocessing(meta):
    text = meta.get("preprocessing")
    return Preprocessing.from_json(text) if text else TORCHVISION


def _metadata_labels(meta, num_classes):
    list_id = meta.get("labels")
    if list_id:
        names = weights.labels(list_id)
        if len(names) == num_classes:
            return names
    return None


def build(arch, weights_arg=None, num_classes=None):
    """Make ``arch`` with torchvision's random init (``weights_arg=None``) or with the weights in
    a file (our safetensors, or a torch ``.pth`` read without torch) or registry entry
    (``"vgg16"``: the converted file that ``python -m weights fetch vgg16`` stored)."""
    if arch not in archs.ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(archs.ARCHS)}")
    if weights_arg is None:
        return ConvNet(arch, 1000 if num_classes is None else num_classes,
                       labels=weights.imagenet_labels() if num_classes in (None, 1000) else None)
    if isinstance(weights_arg, str) and weights_arg in registry.CHECKPOINTS:
        entry = registry.get(weights_arg)
        if entry.arch != arch:
            raise ValueError(f"checkpoint {weights_arg!r} holds {entry.arch} weights, not {arch}")
    path = registry.resolve(weights_arg)
    tensors, meta = load_state(path, copy_on_write=True)
    file_arch = meta.get("arch")
    if file_arch and file_arch != arch:
        raise ValueError(f"{path} holds {file_arch} weights, not {arch}")
    shapes = {k: v.shape for k, v in tensors.items()}
    missing, unexpected, mismatched = archs.check_state(arch, shapes)
    if missing or unexpected or mismatched:
        raise weights.CheckpointError(f"{path}: " + archs.describe_mismatch(arch, missing, unexpected, mismatched))
    n = int(shapes["classifier.6.weight"][0])
    if num_classes is not None and num_classes != n:
        raise ValueError(f"{path} has {n} classes, but num_classes={num_classes} was asked for")
    model = ConvNet(arch, n, init=None, preprocessing=_metadata_preprocessing(meta),
                    labels=_metadata_labels(meta, n))
    adopt_state(model, tensors)
    object.__setattr__(model, "source", meta.get("source", str(path)))
    return model
