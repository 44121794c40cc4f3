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
"""

from collections import namedtuple

import numpy as np

import minigrad
from methods.lib.inputs import frozen, probabilities, resolve_targets, to_host

__all__ = ["Backprop", "backprop", "unit_seed"]

#: ``gradients`` (N, C, H, W) d quantity / d image; ``targets`` (N,) the classes explained and
#: ``probabilities`` (N,) theirs (None for a layer unit); ``activation`` / ``activation_gradient``
#: the output of layer ``at`` and the gradient there (None without ``at``).
Backprop = namedtuple("Backprop", ["gradients", "targets", "probabilities", "activation", "activation_gradient"])


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


def backprop(model, x, rule="standard", target=None, layer=None, unit=None, at=None):
    """Backpropagate one quantity per image to the image under ``rule``; see :data:`Backprop`.

    The quantity is the class score ``target`` (None: each image's top class; an index or name;
    or one per image) when ``layer`` is None, else ``unit`` of ``layer`` (see :func:`unit_seed`).
    ``at``: also return the activation of this layer and the gradient reaching it (Grad-CAM).
    """
    if layer is not None and target is not None:
        raise ValueError("give either a target class or a layer (with a unit), not both")
    if layer is None and unit is not None:
        raise ValueError("a unit needs a layer: name the layer whose neuron or channel to follow")
    captured, handle = {}, None
    if at is not None:
        def keep(module, inputs, output):
            output.retain_grad()
            captured["activation"] = output
        handle = model.layer(at).register_forward_hook(keep)
    with frozen(model):
        image = minigrad.tensor(x, requires_grad=True)
        try:
            with minigrad.enable_grad():
                out = model(image) if layer is None else model.extract(image, [layer])[layer]
        finally:
            if handle is not None:
                handle.remove()
        if layer is None:
            targets = resolve_targets(model, target, out.data)
            chosen = probabilities(out.data)[np.arange(len(targets)), targets]
            xp = minigrad.get_array_module(out.data)
            seed = xp.zeros_like(out.data)
            seed[xp.arange(seed.shape[0]), xp.asarray(targets)] = 1
        else:
            targets = chosen = None
            seed = unit_seed(out.data, unit)
        if at is not None and "activation" not in captured:
            raise ValueError(f"layer {at!r} did not run before the quantity explained")
        with minigrad.relu_backward(rule):
            out.backward(seed)
    activation = captured.get("activation")
    return Backprop(to_host(image.grad), targets, chosen,
                    None if activation is None else activation.numpy(),
                    None if activation is None else to_host(activation.grad))
