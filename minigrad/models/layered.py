"""What every shipped model shares: a forward that is a chain of named layers.

VGG, AlexNet and fashion-vgg differ in their layers and preprocessing, but the techniques
reach into all of them the same way: by the papers' layer names. A subclass lists its layers
in ``named_layers()``; this base gives ``layer_names``, ``layer(name)``, ``forward`` and
``extract(x, names)``, which runs the forward only as deep as the deepest layer asked for
(Chainer's ``VGGLayers.forward(x, layers=...)`` idea; hooks are not needed).
"""

from minigrad import nn
from minigrad.tensor import Tensor, tensor


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

    def forward(self, x):
        x = self.prepare_input(x)
        for _, module in self.named_layers():
            x = module(x)
        return x

    def extract(self, x, names):
        """The activations of the layers ``names`` (a list, or one name) as ``{name: Tensor}``.

        The forward stops after the deepest requested layer; the outputs stay connected to
        ``x``, so a technique can backpropagate from any of them to the input.
        """
        names = [names] if isinstance(names, str) else list(names)
        self.check_layer_names(names)
        x = self.prepare_input(x)
        wanted, found = set(names), {}
        for name, module in self.named_layers():
            x = module(x)
            if name in wanted:
                found[name] = x
                if len(found) == len(wanted):
                    break
        return {n: found[n] for n in names}
