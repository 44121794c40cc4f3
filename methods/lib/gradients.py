"""Backprop-to-image, the one mechanism behind saliency, deconvnet, guided backprop, Grad-CAM,
SmoothGrad and integrated gradients.

One pass forward, one pass backward: pick a quantity -- a class score *before* the softmax, one
neuron ``(c, i, j)`` of a layer, or a whole channel ``c`` -- seed the backward pass there with
"all zeros except a 1" (the lecture notes' recipe) and backpropagate to the image under one of
minigrad's ReLU rules (``minigrad.relu_backward``): "standard" (the true gradient, Simonyan et
al. 2014), "deconvnet" (Zeiler & Fergus 2014: the signal coming down is rectified, the forward
mask ignored) or "guided" (Springenberg et al. 2015: both). Because minigrad owns its autodiff
the rule reaches *every* ReLU, in the features and the classifier, module or functional.

Each image's quantity depends on that image alone (the model is in eval mode), so one backward
pass serves the whole batch. The weights are frozen: no weight gradient is computed.
:func:`layer_gradients` keeps the gradient at every layer under each rule, from one forward
pass: where the rules part ways, layer by layer.
"""

import threading
from collections import namedtuple

import numpy as np

import minigrad
from methods.lib.inputs import frozen, probabilities, resolve_targets, to_host

__all__ = ["RULES", "Backprop", "LayerGradients", "backprop", "layer_gradients", "unit_seed"]

#: minigrad's ReLU backward rules, in the order the papers came.
RULES = ("standard", "deconvnet", "guided")

#: ``gradients`` (N, C, H, W) d quantity / d image; ``targets`` (N,) the classes explained and
#: ``probabilities`` (N,) theirs (None for a layer unit); ``activation`` / ``activation_gradient``
#: the output of layer ``at`` and the gradient there (None without ``at``).
Backprop = namedtuple("Backprop", ["gradients", "targets", "probabilities", "activation", "activation_gradient"])

#: ``layers`` the names of the layers that ran, in forward order; ``gradients`` {rule: {layer:
#: array}} the gradient at each layer's output; ``image`` {rule: (N, C, H, W)} the gradient at
#: the image; ``targets`` / ``probabilities`` as in :data:`Backprop`.
LayerGradients = namedtuple("LayerGradients", ["layers", "gradients", "image", "targets", "probabilities"])


def unit_seed(activation, unit):
    """The backward seed for ``unit`` of a layer's (N, C, H, W) or (N, F) activation array.

    ``unit``: a channel ``c`` (ones over the whole channel: the gradient of the channel's sum),
    a neuron ``(c, i, j)`` (``f`` for a fully connected layer), or None for each image's most
    active neuron (Zeiler & Fergus show the strongest activation).
    """
    xp = minigrad.get_array_module(activation)
    shape = activation.shape
    seed = xp.zeros_like(activation)
    n = shape[0]
    if unit is None:
        flat = activation.reshape(n, -1).argmax(axis=1)
        seed.reshape(n, -1)[xp.arange(n), flat] = 1
        return seed
    unit = (unit,) if np.isscalar(unit) else tuple(unit)
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


def _check_quantity(target, layer, unit):
    if layer is not None and target is not None:
        raise ValueError("give either a target class or a layer (with a unit), not both")
    if layer is None and unit is not None:
        raise ValueError("a unit needs a layer: name the layer whose neuron or channel to follow")


def _seed(model, out, target, layer, unit):
    """(seed, targets, probabilities) for the quantity: ``target``'s class score of the model's
    output ``out``, or ``unit`` of ``layer``'s output (no targets then)."""
    if layer is not None:
        return unit_seed(out.data, unit), None, None
    targets = resolve_targets(model, target, out.data)
    chosen = probabilities(out.data)[np.arange(len(targets)), targets]
    xp = minigrad.get_array_module(out.data)
    seed = xp.zeros_like(out.data)
    seed[xp.arange(seed.shape[0]), xp.asarray(targets)] = 1
    return seed, targets, chosen


def _capture(module, store, name):
    """A forward hook keeping ``module``'s output (with its gradient) in ``store[name]``, for the
    thread that registered it only: another thread running the same model meanwhile (the
    explorer's workers) leaves ``store`` alone."""
    owner = threading.get_ident()

    def keep(module, inputs, output):
        if threading.get_ident() == owner and name not in store:
            output.retain_grad()
            store[name] = output

    return module.register_forward_hook(keep)


def _forward(model, image, layer, captures):
    """The model's output (or ``layer``'s) on ``image`` with a graph, keeping the outputs of the
    layers named in ``captures`` ({name: store})."""
    handles = [_capture(model.layer(name), store, name) for name, store in captures.items()]
    try:
        with minigrad.enable_grad():
            return model(image) if layer is None else model.extract(image, [layer])[layer]
    finally:
        for handle in handles:
            handle.remove()


def backprop(model, x, rule="standard", target=None, layer=None, unit=None, at=None):
    """Backpropagate one quantity per image to the image under ``rule``; see :data:`Backprop`.

    The quantity is the class score ``target`` (None: each image's top class; an index or name;
    or one per image) when ``layer`` is None, else ``unit`` of ``layer`` (see :func:`unit_seed`).
    ``at``: also return the activation of this layer and the gradient reaching it (Grad-CAM).
    """
    _check_quantity(target, layer, unit)
    captured = {}
    with frozen(model):
        image = minigrad.tensor(x, requires_grad=True)
        out = _forward(model, image, layer, {} if at is None else {at: captured})
        seed, targets, chosen = _seed(model, out, target, layer, unit)
        if at is not None and at not in captured:
            raise ValueError(f"layer {at!r} did not run before the quantity explained")
        with minigrad.relu_backward(rule):
            out.backward(seed)
    activation = captured.get(at)
    return Backprop(to_host(image.grad), targets, chosen,
                    None if activation is None else activation.numpy(),
                    None if activation is None else to_host(activation.grad))


def layer_gradients(model, x, rules=RULES, target=None, layer=None, unit=None):
    """The gradient of one quantity per image at the output of every layer and at the image,
    under each ReLU rule in ``rules``: one forward pass, then one backward pass per rule on the
    same graph. The quantity is chosen as in :func:`backprop`. Returns :data:`LayerGradients`.

    Above the topmost ReLU the rules agree; each ReLU the gradient passes on its way down is
    where they can part (the explorer's backprop inspector shows where they do)."""
    _check_quantity(target, layer, unit)
    for rule in rules:
        if rule not in RULES:
            raise ValueError(f"unknown ReLU rule {rule!r}; the rules are: {', '.join(RULES)}")
    captured = {}
    names = model.layer_names
    if layer is not None:
        model.check_layers([layer])
        names = names[: names.index(layer) + 1]
    with frozen(model):
        image = minigrad.tensor(x, requires_grad=True)
        out = _forward(model, image, layer, {name: captured for name in names})
        seed, targets, chosen = _seed(model, out, target, layer, unit)
        ran = [name for name in names if name in captured]
        gradients, image_gradients = {}, {}
        for i, rule in enumerate(rules):
            for tensor in [image, *captured.values()]:
                tensor.grad = None
            with minigrad.relu_backward(rule):
                out.backward(seed, retain_graph=i < len(rules) - 1)
            gradients[rule] = {name: to_host(captured[name].grad) for name in ran
                               if captured[name].grad is not None}
            image_gradients[rule] = to_host(image.grad)
    return LayerGradients(ran, gradients, image_gradients, targets, chosen)
