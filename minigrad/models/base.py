"""The model interface every technique reads, and adapters that give it to any ``nn.Module``.

A technique never guesses at a model: it asks this interface (torchvision's lesson, see
shared/notes/methods-library-anchors.md: the model carries what using it needs).

=====================  ====================================================================
``input_shape``        (C, H, W) the weights were trained at (None: unknown, any size runs)
``fixed_size``         True when only ``input_shape``'s size runs (no adaptive pooling)
``labels``             class names (tuple) or None
``preprocessing``      a :class:`~minigrad.models.preprocessing.Preprocessing`
``layers()``           [(name, module)] in forward order
``sequential``         True when running ``layers()`` one after another is the forward pass
``layer(name)``        one module; unknown names raise ValueError listing the valid ones
``extract(x, names)``  {name: Tensor} activations, connected to ``x`` for backprop
``check_input(x)``     ``x`` as a Tensor, or ValueError saying what the model takes
``preprocess(images)`` files, PIL images or arrays of any size and mode -> model input
``prepare_images``     the same images as uint8 pixels (N, H, W, C) before normalization
``deprocess(x)``       model input -> uint8 RGB images (N, H, W, 3)
``decode(logits)``     top-k (index, label, probability) per image
``geometry(size)``     per layer: kind ("window", "pointwise", "global") and window geometry
=====================  ====================================================================

VGG, AlexNet and fashion-vgg subclass :class:`Model`; :func:`as_model` wraps a user's
``nn.Sequential`` (layers named by index, "0", "1", ..., as in its state_dict; nested
containers give dotted names) or any ``nn.Module`` (its leaf modules, read through forward
hooks; not ``sequential``).
"""

import math
from collections import namedtuple

import numpy as np

from minigrad import nn
from minigrad import functional as F
from minigrad.models.preprocessing import Preprocessing
from minigrad.tensor import Tensor, tensor

__all__ = ["LayerGeometry", "Model", "adopt_state", "ModuleModel", "SequentialModel", "Window", "as_model", "layer_geometry"]

#: Kernel, stride, padding and dilation of a windowed layer, each a (rows, columns) pair, and the
#: value its padding stands for (0 for a convolution, -inf for max pooling).
Window = namedtuple("Window", ["kernel", "stride", "padding", "dilation", "pad_value"])

#: One layer as geometry sees it: ``kind`` is "window" (conv, pooling: ``window`` set, and
#: ``unpadded(t)`` runs the layer on an explicitly padded input), "pointwise" (the same at every
#: position: ReLU, batch norm and dropout in eval, LRN, identity) or "global" (mixes positions:
#: flatten, linear, anything unknown). ``output_size`` (H, W) when known.
LayerGeometry = namedtuple("LayerGeometry", ["name", "module", "kind", "window", "unpadded", "output_size"])

_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.Dropout, nn.BatchNorm2d, nn.LocalResponseNorm, nn.Identity)


def _pair(value):
    return (int(value), int(value)) if np.isscalar(value) else (int(value[0]), int(value[1]))


def _window_output(size, window):
    return tuple((size[a] + 2 * window.padding[a] - window.dilation[a] * (window.kernel[a] - 1) - 1)
                 // window.stride[a] + 1 for a in range(2))


def _fusable(conv, relu):
    """A plain nn.Conv2d directly followed by a plain nn.ReLU, neither with hooks: the pair can
    run as one ``F.conv2d_relu`` (bias and ReLU applied as the output is written, only the
    ReLU mask kept for backward) with the same result."""
    plain = (isinstance(conv, nn.Conv2d) and type(conv).forward is nn.Conv2d.forward
             and isinstance(relu, nn.ReLU) and type(relu).forward is nn.ReLU.forward)
    return plain and not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in (conv, relu))


def layer_geometry(name, module, input_size):
    """The :class:`LayerGeometry` of ``module`` on inputs of spatial size ``input_size`` (or None)."""
    window = unpadded = None
    if isinstance(module, nn.Conv2d):
        window = Window(_pair(module.kernel_size), _pair(module.stride), _pair(module.padding),
                        _pair(module.dilation), 0.0)
        unpadded = lambda t, m=module: F.conv2d(t, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)  # noqa: E731
    elif isinstance(module, nn.MaxPool2d):
        window = Window(_pair(module.kernel_size), _pair(module.stride), _pair(module.padding), (1, 1), -math.inf)
        unpadded = lambda t, w=window: F.max_pool2d(t, w.kernel, w.stride, 0)  # noqa: E731
    elif isinstance(module, nn.AvgPool2d) and (module.count_include_pad or _pair(module.padding) == (0, 0)):
        window = Window(_pair(module.kernel_size), _pair(module.stride), _pair(module.padding), (1, 1), 0.0)
        unpadded = lambda t, w=window: F.avg_pool2d(t, w.kernel, w.stride, 0)  # noqa: E731
    elif isinstance(module, nn.AdaptiveAvgPool2d) and input_size is not None:
        out = _pair(module.output_size)
        if tuple(input_size) == out:
            return LayerGeometry(name, module, "pointwise", None, None, out)
        if input_size[0] % out[0] == 0 and input_size[1] % out[1] == 0:  # exactly an average pool
            k = (input_size[0] // out[0], input_size[1] // out[1])
            window = Window(k, k, (0, 0), (1, 1), 0.0)
            unpadded = lambda t, w=window: F.avg_pool2d(t, w.kernel, w.stride, 0)  # noqa: E731
    elif isinstance(module, _POINTWISE):
        return LayerGeometry(name, module, "pointwise", None, None, input_size)
    if window is None:
        return LayerGeometry(name, module, "global", None, None, None)
    size = _window_output(input_size, window) if input_size is not None else None
    return LayerGeometry(name, module, "window", window, unpadded, size)


class Model(nn.Module):
    """Base class of every model the techniques run on (see the module docstring).

    Subclasses define :meth:`layers` and set ``input_shape``, ``fixed_size``, ``labels`` and
    ``preprocessing``; the rest is shared.
    """

    input_shape = None
    fixed_size = True
    labels = None
    preprocessing = Preprocessing()
    sequential = True

    def layers(self):
        """[(name, module)] for every layer in forward order."""
        raise NotImplementedError(f"{type(self).__name__} must define layers()")

    # ---- layers by name ----------------------------------------------------------------------
    @property
    def layer_names(self):
        return tuple(name for name, _ in self.layers())

    def check_layers(self, names):
        """Raise ValueError listing the valid names if any of ``names`` is not a layer."""
        known = self.layer_names
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            given = f"unknown layer {', '.join(map(repr, unknown))}" if unknown else "no layer named"
            raise ValueError(f"{given} for {self.describe()}; its layers are: {', '.join(known)}")

    def layer(self, name):
        """The module called ``name`` (e.g. ``model.layer("conv5_3")``)."""
        self.check_layers([name])
        return dict(self.layers())[name]

    def describe(self):
        """A short name for messages: the architecture or the class."""
        return getattr(self, "arch", None) or type(self).__name__

    # ---- running -----------------------------------------------------------------------------
    @property
    def channels(self):
        return None if self.input_shape is None else int(self.input_shape[0])

    def check_input(self, x):
        """``x`` as a float (N, C, H, W) Tensor this model can take, or a ValueError saying why."""
        if not isinstance(x, Tensor):
            x = tensor(np.asarray(x) if isinstance(x, (list, tuple)) else x)
        hint = "; model.preprocess(images) makes one from image files or arrays"
        if x.ndim != 4:
            raise ValueError(f"{self.describe()} takes a batch (N, C, H, W), got shape {tuple(x.shape)}{hint}")
        if x.dtype.kind != "f":
            raise ValueError(f"{self.describe()} takes float input, got dtype {x.dtype}{hint}")
        if x.shape[0] == 0:
            raise ValueError("the batch is empty")
        if self.input_shape is not None:
            c, h, w = self.input_shape
            if x.shape[1] != c:
                raise ValueError(f"{self.describe()} takes {c}-channel images, got {x.shape[1]} channels "
                                 f"(shape {tuple(x.shape)}){hint}")
            if self.fixed_size and tuple(x.shape[2:]) != (h, w):
                raise ValueError(f"{self.describe()} takes {h}x{w} images, got {x.shape[2]}x{x.shape[3]}{hint}")
        if not self.fixed_size:
            self._check_size_fits(tuple(x.shape[2:]))
        return x

    def _check_size_fits(self, size):
        if not self.sequential:
            return
        for layer in self.geometry(size):
            if layer.output_size is not None and min(layer.output_size) < 1:
                raise ValueError(f"{size[0]}x{size[1]} images are too small for {self.describe()}: "
                                 f"layer {layer.name} would have no output (try model.preprocess(images))")
            if layer.kind == "global":
                return

    def _run(self, x, keep=()):
        """Yield (name, output) layer after layer; a Conv2d directly followed by a ReLU runs as
        one fused op (and yields only the ReLU's output) unless the conv's output is in ``keep``."""
        layers = list(self.layers())
        i = 0
        while i < len(layers):
            name, module = layers[i]
            if i + 1 < len(layers) and name not in keep and _fusable(module, layers[i + 1][1]):
                x = F.conv2d_relu(x, module.weight, module.bias, module.stride, module.padding, module.dilation,
                                  module.groups)
                i += 1
                name = layers[i][0]
            else:
                x = module(x)
            yield name, x
            i += 1

    def forward(self, x):
        for _, x in self._run(self.check_input(x)):
            pass
        return x

    def extract(self, x, names):
        """The activations of ``names`` (a list, or one name) as ``{name: Tensor}``.

        The forward stops after the deepest requested layer (Chainer's ``VGGLayers`` idea); the
        outputs stay connected to ``x``, so a technique can backpropagate from any of them.
        """
        names = [names] if isinstance(names, str) else list(names)
        self.check_layers(names)
        wanted, found = set(names), {}
        for name, x in self._run(self.check_input(x), keep=wanted):
            if name in wanted:
                found[name] = x
                if len(found) == len(wanted):
                    break
        return {n: found[n] for n in names}

    # ---- geometry ----------------------------------------------------------------------------
    def geometry(self, size=None):
        """[:class:`LayerGeometry`] for every layer on inputs of spatial size ``size`` (H, W)
        (default: ``input_shape``'s). Requires a ``sequential`` model."""
        if not self.sequential:
            raise ValueError(f"{self.describe()} does not run its layers in sequence, so layer geometry "
                             "(receptive fields) cannot be derived from them")
        if size is None and self.input_shape is not None:
            size = tuple(self.input_shape[1:])
        out = []
        for name, module in self.layers():
            layer = layer_geometry(name, module, size)
            out.append(layer)
            size = layer.output_size if layer.output_size is None or min(layer.output_size) >= 1 else None
        return out

    # ---- data in and out ---------------------------------------------------------------------
    def preprocess(self, images, size=None, crop="center"):
        """Images -> the float32 (N, C, H, W) input this model takes.

        ``images``: one or a list of file paths, PIL images or arrays (uint8 0..255, uint16, or
        float in [0, 1]; H x W grey or H x W x 3/4 colour), or an (N, H, W[, C]) array. Each is
        converted to the model's colour mode and brought to ``size`` (default: the model's input
        size): with ``crop="center"`` the shorter side is resized and the centre cut out (the
        evaluation transform of the weights, e.g. 256 then 224 for torchvision's), with
        ``crop="none"`` the whole image is resized. A resize emits a
        :class:`~minigrad.models.preprocessing.PreprocessingNote` warning.
        """
        if size is None and self.input_shape is not None:
            size = tuple(self.input_shape[1:])
        return self.preprocessing(images, size=size, crop=crop)

    def prepare_images(self, images, size=None, crop="center", names=None):
        """The pixels :meth:`preprocess` would normalize: uint8 (N, H, W, C) in the model's colour
        mode (C = 1 or 3) at its input size (or ``size``); ``names`` label the resize notes."""
        if size is None and self.input_shape is not None:
            size = tuple(self.input_shape[1:])
        return self.preprocessing.prepare(images, size=size, crop=crop, names=names)

    def deprocess(self, x):
        """Undo :meth:`preprocess`: (N, C, H, W) -> uint8 RGB (N, H, W, 3); (C, H, W) -> (H, W, 3)."""
        return self.preprocessing.inverse(x)

    def decode(self, logits, k=5):
        """Top-``k`` predictions per image: lists of (class index, label or None, probability)."""
        z = np.asarray(logits.numpy() if isinstance(logits, Tensor) else logits, dtype=np.float64)
        z = z[None] if z.ndim == 1 else z
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        out = []
        for row in p:
            top = np.argsort(-row, kind="stable")[:k]
            out.append([(int(i), self.labels[i] if self.labels else None, float(row[i])) for i in top])
        return out

    def label(self, index):
        """The name of class ``index``, or "class <index>" when the model has no names."""
        if self.labels and 0 <= int(index) < len(self.labels):
            return self.labels[int(index)]
        return f"class {int(index)}"


def _leaf_modules(module, prefix=""):
    children = list(module.named_children())
    if not children:
        return [(prefix, module)] if prefix else []
    out = []
    for name, child in children:
        if child is not None:
            out += _leaf_modules(child, f"{prefix}.{name}" if prefix else name)
    return out


class _Adapter(Model):
    """What :func:`as_model` returns: the user's module plus the interface."""

    def __init__(self, module, input_shape=None, labels=None, preprocessing=None):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"as_model needs a minigrad nn.Module, got {type(module).__name__}")
        self.net = module
        leaves = _leaf_modules(module)
        first_conv = next((m for _, m in leaves if isinstance(m, nn.Conv2d)), None)
        if input_shape is None and first_conv is not None:
            input_shape = (first_conv.in_channels, None, None)
        if input_shape is not None and len(input_shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
        object.__setattr__(self, "_leaves", leaves)
        object.__setattr__(self, "labels", tuple(labels) if labels is not None else None)
        channels = input_shape[0] if input_shape is not None else 3
        object.__setattr__(self, "preprocessing", preprocessing or Preprocessing.identity(channels))
        sized = input_shape is not None and input_shape[1] is not None
        object.__setattr__(self, "input_shape", tuple(input_shape) if sized else None)
        object.__setattr__(self, "_channels", None if input_shape is None else int(input_shape[0]))
        object.__setattr__(self, "fixed_size", sized)

    @property
    def channels(self):
        return self._channels

    def check_input(self, x):
        x = super().check_input(x)
        if self.input_shape is None and self._channels is not None and x.shape[1] != self._channels:
            raise ValueError(f"{self.describe()} takes {self._channels}-channel images, got shape {tuple(x.shape)}")
        return x

    def describe(self):
        return type(self.net).__name__

    def layers(self):
        return list(self._leaves)


class SequentialModel(_Adapter):
    """An ``nn.Sequential`` (possibly nested) as a :class:`Model`: its leaf layers, named "0", "1",
    "2.0", ... as in its state_dict, run one after another."""


class ModuleModel(_Adapter):
    """Any ``nn.Module`` as a :class:`Model`: its forward runs as written, and :meth:`extract`
    reads the outputs of its leaf modules through forward hooks (so functional-style code between
    modules is fine, and the layers are not ``sequential``)."""

    sequential = False

    def forward(self, x):
        return self.net(self.check_input(x))

    def extract(self, x, names):
        names = [names] if isinstance(names, str) else list(names)
        self.check_layers(names)
        modules = dict(self.layers())
        found, handles = {}, []
        for name in names:
            handles.append(modules[name].register_forward_hook(
                lambda m, inputs, output, name=name: found.setdefault(name, output)))
        try:
            self.net(self.check_input(x))
        finally:
            for handle in handles:
                handle.remove()
        missing = [n for n in names if n not in found]
        if missing:
            raise ValueError(f"layer(s) {', '.join(missing)} of {self.describe()} did not run in its forward pass")
        return {n: found[n] for n in names}


def as_model(model, input_shape=None, labels=None, preprocessing=None):
    """``model`` with the :class:`Model` interface: a Model as it is, an ``nn.Sequential`` as a
    :class:`SequentialModel`, any other ``nn.Module`` as a :class:`ModuleModel`.

    ``input_shape`` (C, H, W) when the network needs one size (a Linear layer after the
    convolutions); without it the channels come from the first convolution and any size runs.
    The wrapped network takes inputs as they are (identity preprocessing: RGB or grey in [0, 1])
    unless ``preprocessing`` says otherwise.
    """
    if isinstance(model, Model):
        return model
    cls = SequentialModel if isinstance(model, nn.Sequential) else ModuleModel
    adapted = cls(model, input_shape, labels, preprocessing)
    adapted.train(model.training)
    return adapted


def adopt_state(model, tensors):
    """Load ``tensors`` ({state_dict key: array}) into ``model``: the one weight-loading path of
    every shipped model.

    Writable float32 C-contiguous arrays -- the copy-on-write views of a memory-mapped
    safetensors file -- become the parameters' data as they are: loading VGG16 then takes
    milliseconds, pages are read on first use, and a write (fine-tuning) copies only the page
    it touches, never the file. Anything else (a .pth's read-only views, other dtypes) is
    copied by ``load_state_dict``, which checks keys and shapes strictly.
    """
    entries = {key: (module, name) for key, module, _, name in model._state_entries()}
    missing = [k for k, (m, name) in entries.items() if k not in tensors and name not in m._optional_state]
    unexpected = [k for k in tensors if k not in entries]
    if missing or unexpected:
        raise nn.StateDictError(f"the weights do not fit {model.describe()}: missing {missing[:8]}, "
                                f"unexpected {unexpected[:8]}", missing, unexpected)
    rest = {}
    for key, arr in tensors.items():
        module, name = entries[key]
        current = getattr(module, name)
        data = current.data if isinstance(current, nn.Parameter) else current
        if (isinstance(arr, np.ndarray) and isinstance(data, np.ndarray) and arr.dtype == data.dtype
                and arr.shape == data.shape and arr.flags.writeable and arr.flags.c_contiguous):
            if isinstance(current, nn.Parameter):
                current.data = arr
            else:
                setattr(module, name, arr)  # a buffer (BatchNorm running statistics)
        else:
            rest[key] = arr
    if rest:
        model.load_state_dict(rest, strict=False)
