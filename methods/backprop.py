"""Backprop-to-image: gradients, deconvnet and guided-backprop images of any score or neuron.

One pass forward, one pass backward: pick a quantity (a class score before the softmax, one
neuron ``(c, i, j)`` of a layer, or a whole channel ``c``), seed the backward pass there with
"all zeros except a 1" (the lecture notes' recipe), and backpropagate to the image under one
of minigrad's three ReLU rules (``minigrad.relu_backward``):

* ``"standard"``: the true gradient, Simonyan, Vedaldi & Zisserman, "Deep Inside
  Convolutional Networks: Visualising Image Classification Models and Saliency Maps",
  ICLR workshop 2014 (arXiv:1312.6034).
* ``"deconvnet"``: Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks",
  ECCV 2014 (arXiv:1311.2901). Their deconvnet unpools with the forward pass's switches (our
  max-pool backward), filters with the transposed filters (our conv backward) and rectifies
  the *signal* coming down (ReLU applied to the gradient, forward mask ignored).
* ``"guided"``: Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving for Simplicity: The
  All Convolutional Net", ICLR workshop 2015 (arXiv:1412.6806): both masks, so only paths
  of positive influence reach the image.

Because minigrad owns its autodiff, the rule applies to *every* ReLU of the model, functional
or module, in the features or the classifier (the anchors' hooks miss some; see
shared/notes/technique-anchors.md sec. 1 and 2). The model's weights are frozen for the
backward pass, so no weight gradient is ever computed.

The model helpers here (``check_input``, ``resolve_targets``, ``frozen``, ``layer_output``)
are shared by ``methods.saliency`` and ``methods.occlusion``.
"""

import contextlib

import numpy as np

import minigrad
from methods.imaging import chw_to_hwc, to_uint8
from methods.result import Result

__all__ = ["backprop_image", "guided_backprop", "deconvnet", "gradient_image", "BackpropResult"]


# ----------------------------------------------------------------------------- model helpers


def _array_module(x):
    return minigrad.get_array_module(x)


def _expected_input(model):
    """(channels, (H, W) or None) the model takes, as far as it says (``input_shape`` (C, H, W),
    or ``input_channels`` / ``input_size``)."""
    shape = getattr(model, "input_shape", None)
    if shape is not None and len(shape) == 3:
        return int(shape[0]), (int(shape[1]), int(shape[2]))
    channels = getattr(model, "input_channels", None)
    size = getattr(model, "input_size", None)
    if isinstance(size, int):
        size = (size, size)
    return channels, (tuple(size) if size is not None else None)


def _size_is_fixed(model):
    """False when an adaptive pooling layer lets the model take any image size (VGG, AlexNet)."""
    modules = model.modules() if hasattr(model, "modules") else ()
    return not any(type(m).__name__.startswith("AdaptiveAvgPool") for m in modules)


def check_input(model, x):
    """``x`` as a float (N, C, H, W) array of what the model takes, or a ValueError that says why."""
    if isinstance(x, minigrad.Tensor):
        x = x.data
    xp = _array_module(x)
    x = xp.asarray(x)
    if x.ndim == 3:
        raise ValueError(f"expected a batch of shape (N, C, H, W), got shape {x.shape}; add a batch axis with x[None]")
    if x.ndim != 4:
        raise ValueError(f"expected a preprocessed batch of shape (N, C, H, W), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise ValueError(f"expected a preprocessed float image batch (use model.preprocess), got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError("the batch is empty")
    channels, size = _expected_input(model)
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"the model takes {channels}-channel images, got {x.shape[1]} channels (shape {x.shape})")
    if size is not None and tuple(x.shape[2:]) != size and _size_is_fixed(model):
        raise ValueError(f"the model takes {size[0]}x{size[1]} images, got {x.shape[2]}x{x.shape[3]} (shape {x.shape})")
    if not bool(xp.isfinite(x).all()):
        raise ValueError("the image batch contains NaN or infinite values")
    return x


def layer_names(model):
    """The model's named layers in forward order, or None if it does not list them."""
    for attribute in ("layer_names", "names"):
        names = getattr(model, attribute, None)
        if callable(names):
            names = names()
        if names is not None:
            return list(names)
    return None


def check_layer(model, layer):
    names = layer_names(model)
    if names is not None and layer not in names:
        raise ValueError(f"unknown layer {layer!r}; the model's layers are: {', '.join(names)}")


@contextlib.contextmanager
def frozen(model):
    """Evaluation mode and no weight gradients for the block; restores both afterwards."""
    params = []
    if hasattr(model, "parameters"):
        params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    training = getattr(model, "training", None)
    if training and hasattr(model, "eval"):
        model.eval()
    for p in params:
        p.requires_grad = False
    try:
        yield model
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad = flag
        if training and hasattr(model, "train"):
            model.train(True)


def layer_output(model, x, layer=None):
    """Run ``model`` on ``x`` (a Tensor) and return the output of ``layer`` (the logits if None).

    Uses ``model.extract(x, [layer])``, which runs the forward only as deep as needed.
    """
    if layer is None:
        return model(x)
    check_layer(model, layer)
    try:
        outputs = model.extract(x, [layer])
    except KeyError as error:
        raise ValueError(f"unknown layer {layer!r}: {error}") from None
    return outputs[layer]


def resolve_targets(target, scores):
    """Per-image class indices: ``None`` -> each image's top class; an int -> that class for all;
    a sequence -> one class per image. ``scores`` is the (N, K) score array."""
    n, k = scores.shape
    if target is None:
        return np.asarray(scores.argmax(axis=1).tolist(), dtype=np.int64)
    if isinstance(target, (int, np.integer)):
        targets = np.full(n, int(target), dtype=np.int64)
    else:
        targets = np.asarray(target)
        if targets.ndim != 1 or targets.shape[0] != n or targets.dtype.kind not in "iu":
            raise ValueError(f"target must be None, a class index or one class index per image ({n}), got {target!r}")
        targets = targets.astype(np.int64)
    bad = targets[(targets < 0) | (targets >= k)]
    if bad.size:
        raise ValueError(f"target class {int(bad[0])} is out of range: the model has {k} classes (0..{k - 1})")
    return targets


def _unit_seed(activation, unit):
    """The backward seed for ``unit`` of a layer's (N, C, H, W) or (N, F) activation array.

    ``unit`` is a channel ``c`` (ones over the whole channel: the gradient of the channel's sum),
    a neuron ``(c, i, j)`` (or ``(f,)``/``f`` for a fully connected layer), or None for each
    image's most active neuron (Zeiler & Fergus show the strongest activation).
    """
    xp = _array_module(activation)
    shape = activation.shape
    seed = xp.zeros_like(activation)
    n = shape[0]
    if unit is None:
        flat = activation.reshape(n, -1).argmax(axis=1)
        seed.reshape(n, -1)[xp.arange(n), flat] = 1
        return seed
    unit = (unit,) if isinstance(unit, (int, np.integer)) else tuple(unit)
    if not all(isinstance(u, (int, np.integer)) for u in unit):
        raise ValueError(f"unit must be a channel index or a tuple (c, i, j) of ints, got {unit!r}")
    if len(unit) not in (1, len(shape) - 1):
        raise ValueError(f"unit {unit!r} does not fit a layer of shape {tuple(shape[1:])} per image: "
                         f"give a channel c or a neuron of {len(shape) - 1} indices")
    for axis, (index, extent) in enumerate(zip(unit, shape[1:])):
        if not 0 <= index < extent:
            what = ("channel", "row", "column")[axis] if len(shape) == 4 else "unit"
            raise ValueError(f"{what} {index} is out of range for a layer of shape {tuple(shape[1:])} per image")
    if len(unit) == 1:
        seed[:, unit[0]] = 1
    else:
        seed[(slice(None),) + unit] = 1
    return seed


def backprop_image(model, x, rule="standard", target=None, layer=None, unit=None, return_targets=False):
    """d(quantity)/d(image) under a ReLU backward ``rule``, as an (N, C, H, W) NumPy array.

    The quantity is the class score ``target`` before the softmax (None: each image's top
    class; an int; or one per image) when ``layer`` is None, else ``unit`` of ``layer`` (see
    ``_unit_seed``). Each image's quantity depends on that image alone, so one backward pass
    serves the whole batch. ``return_targets=True`` also returns the class indices used
    (None when a layer unit was visualized).
    """
    x = check_input(model, x)
    if layer is not None and target is not None:
        raise ValueError("give either a target class or a layer (with a unit), not both")
    if layer is None and unit is not None:
        raise ValueError("unit needs a layer: name the layer whose neuron or channel to visualize")
    with frozen(model):
        image = minigrad.tensor(x, requires_grad=True)
        with minigrad.enable_grad():
            out = layer_output(model, image, layer)
        if layer is None:
            if out.ndim != 2:
                raise ValueError(f"the model's output has shape {out.shape}; expected class scores (N, classes)")
            targets = resolve_targets(target, out.numpy())
            xp = _array_module(out.data)
            seed = xp.zeros_like(out.data)
            seed[xp.arange(seed.shape[0]), xp.asarray(targets)] = 1
        else:
            targets = None
            seed = _unit_seed(out.data, unit)
        with minigrad.relu_backward(rule):
            out.backward(seed)
    gradients = minigrad.Tensor(image.grad).numpy()
    return (gradients, targets) if return_targets else gradients


def guided_backprop(model, x, target=None, layer=None, unit=None):
    """Guided backpropagation (Springenberg et al. 2015, sec. 3.4): (N, C, H, W) image gradients
    where every ReLU passes only positive gradients at positive inputs.

    ``target``: class score to explain (None = top class, int, or one per image). Or
    ``layer`` + ``unit``: a neuron ``(c, i, j)``, a channel ``c`` (gradient of its sum), or
    None for the most active neuron of the layer.
    """
    return backprop_image(model, x, "guided", target, layer, unit)


def deconvnet(model, x, target=None, layer=None, unit=None):
    """Zeiler & Fergus (2014, sec. 2.1) deconvnet reconstruction as (N, C, H, W) arrays:
    unpooling by the forward switches, transposed filters, and ReLU on the reconstruction.
    Same arguments as :func:`guided_backprop`."""
    return backprop_image(model, x, "deconvnet", target, layer, unit)


def gradient_image(model, x, target=None, layer=None, unit=None):
    """The plain gradient (Simonyan et al. 2014) with the same arguments."""
    return backprop_image(model, x, "standard", target, layer, unit)


def visualize(gradients):
    """(N, C, H, W) gradients -> list of uint8 images, each scaled symmetrically about zero
    (grey = 0), so the sign of the reconstruction stays visible."""
    images = []
    for g in np.asarray(gradients, dtype=np.float64):
        bound = float(np.abs(g).max())
        images.append(chw_to_hwc(to_uint8(g, -bound, bound) if bound > 0 else np.full(g.shape, 128, np.uint8)))
    return images


class BackpropResult(Result):
    """``gradients`` (N, C, H, W); ``pictures()`` shows each scaled about zero beside the input."""

    def __init__(self, technique, gradients, inputs, params, **extras):
        self.technique = technique
        self.gradients = gradients
        self.inputs = inputs
        super().__init__(params, **extras)

    def pictures(self):
        pictures = {}
        for i, image in enumerate(visualize(self.gradients)):
            pictures[f"{i}"] = image
            if self.inputs is not None:
                pictures[f"{i}_input"] = self.inputs[i]
        return pictures


def _deprocessed(model, x):
    """uint8 HxW(x3) images of the batch for display."""
    if hasattr(model, "deprocess"):
        try:
            images = model.deprocess(x)
            return [np.asarray(image) for image in images]
        except Exception:  # a display nicety; fall back to min-max scaling
            pass
    return [chw_to_hwc(to_uint8(image)) for image in np.asarray(x)]


def run_technique(name, rule, model, x, target=None, layer=None, unit=None):
    """Compute and wrap as a Result (used by the CLI modules and the gallery)."""
    import time

    start = time.perf_counter()
    gradients = backprop_image(model, x, rule, target, layer, unit)
    seconds = time.perf_counter() - start
    params = {"rule": rule, "target": target, "layer": layer, "unit": unit}
    return BackpropResult(name, gradients, _deprocessed(model, np.asarray(x)), params, seconds=seconds)


def add_shared_cli_arguments(parser):
    parser.add_argument("--target", type=int, default=None, help="class index to explain (default: the top class)")
    parser.add_argument("--layer", default=None, help="visualize a unit of this layer instead of a class score")
    parser.add_argument("--unit", default=None,
                        help="with --layer: a channel 'c' or a neuron 'c,i,j' (default: the most active neuron)")


def parse_unit(text):
    if text is None:
        return None
    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise ValueError(f"--unit must be 'c' or 'c,i,j' with integers, got {text!r}") from None
    return parts[0] if len(parts) == 1 else parts


__all__ += ["check_input", "resolve_targets", "frozen", "layer_output", "layer_names", "visualize"]
