"""What every shipped model shares: a forward that is a chain of named layers.

VGG, AlexNet and fashion-vgg differ in their layers and preprocessing, but the techniques
reach into all of them the same way: by the papers' layer names. A subclass lists its layers
in ``named_layers()``; this base gives ``layer_names``, ``layer(name)``, ``forward`` and
``extract(x, names)``, which runs the forward only as deep as the deepest layer asked for
(Chainer's ``VGGLayers.forward(x, layers=...)`` idea; hooks are not needed).
"""

from minigrad import functional as F
from minigrad import nn
from minigrad.tensor import Tensor, tensor


def _fusable(conv, relu):
    """A plain nn.Conv2d directly followed by a plain nn.ReLU, neither with hooks: the pair can
    run as one ``F.conv2d_relu`` (bias and ReLU applied as the output is written, only the
    ReLU mask kept for backward) with the same result."""
    plain = (isinstance(conv, nn.Conv2d) and type(conv).forward is nn.Conv2d.forward
             and isinstance(relu, nn.ReLU) and type(relu).forward is nn.ReLU.forward)
    return plain and not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in (conv, relu))


class LayeredModel(nn.Module):
    """Base class; subclasses define ``named_layers()`` and may override ``prepare_input``."""

    def named_layers(self):
        """[(paper-style name, module)] in forward order."""
        raise NotImplementedError

    def prepare_input(self, x):
        """Turn ``x`` into the Tensor the first layer takes, refusing what the model cannot use."""
        return x if isinstance(x, Tensor) else tensor(x)

    @property
    def layer_names(self):
        """Every layer's name in forward order (``conv1_1`` ... ``fc8``)."""
        return tuple(name for name, _ in self.named_layers())

    def check_layer_names(self, names):
        """Raise ValueError listing the valid names if any of ``names`` is not a layer."""
        known = self.layer_names
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            given = f"unknown layer name(s) {', '.join(map(repr, unknown))}" if unknown else "no layer names given"
            raise ValueError(f"{given} for {type(self).__name__}; valid names: {', '.join(known)}")

    def layer(self, name):
        """The module called ``name`` (e.g. ``model.layer("conv5_3")``)."""
        self.check_layer_names([name])
        return dict(self.named_layers())[name]

    def _run(self, x, keep=()):
        """Yield (name, output) layer after layer; a Conv2d directly followed by a ReLU runs as
        one fused op (and yields only the ReLU's output) unless the conv's output is in ``keep``."""
        layers = list(self.named_layers())
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
        for _, x in self._run(self.prepare_input(x)):
            pass
        return x

    def extract(self, x, names):
        """The activations of the layers ``names`` (a list, or one name) as ``{name: Tensor}``.

        The forward stops after the deepest requested layer; the outputs stay connected to
        ``x``, so a technique can backpropagate from any of them to the input.
        """
        names = [names] if isinstance(names, str) else list(names)
        self.check_layer_names(names)
        wanted, found = set(names), {}
        for name, x in self._run(self.prepare_input(x), keep=wanted):
            if name in wanted:
                found[name] = x
                if len(found) == len(wanted):
                    break
        return {n: found[n] for n in names}
