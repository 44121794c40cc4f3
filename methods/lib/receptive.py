"""Receptive fields: which input pixels each unit of a layer sees, from the model's declared layer
geometry (kernel, stride, padding and dilation of every window up to the layer).

With the effective kernel k_e = d (k - 1) + 1, each windowed layer maps the field as

    jump_out = jump_in * s        size_out = size_in + (k_e - 1) * jump_in
    start_out = start_in - p * jump_in

so unit (r, c) covers rows start + r * jump ... start + r * jump + size - 1 (same for columns),
possibly reaching into the padding. Pointwise layers keep the field; after a layer that mixes
all positions (flatten, linear) every unit sees the whole image. For VGG16 this gives conv5_3:
196 px and pool5: 212 px, the known values. Used by occlusion and maximally activating patches.
"""

from minigrad.models.base import layer_geometry

__all__ = ["ReceptiveField", "receptive_field", "receptive_fields", "smallest_input"]


class ReceptiveField:
    """Geometry of one layer's units in input pixels, per axis (rows, columns): ``size`` (the
    field's side), ``jump`` (pixels between neighbouring units), ``start`` (top-left pixel of
    unit 0, negative inside the padding). ``whole_image``: each unit sees everything."""

    def __init__(self, size=(1, 1), jump=(1, 1), start=(0, 0), whole_image=False):
        self.size, self.jump, self.start, self.whole_image = tuple(size), tuple(jump), tuple(start), whole_image

    def then(self, window):
        """The field after a :class:`minigrad.models.Window`."""
        size, jump, start = [], [], []
        for a in range(2):
            effective = window.dilation[a] * (window.kernel[a] - 1) + 1
            size.append(self.size[a] + (effective - 1) * self.jump[a])
            start.append(self.start[a] - window.padding[a] * self.jump[a])
            jump.append(self.jump[a] * window.stride[a])
        return ReceptiveField(size, jump, start, self.whole_image)

    def box(self, row, col):
        """(top, left, bottom, right), bottom/right exclusive, of unit (row, col); may leave the image."""
        top = self.start[0] + row * self.jump[0]
        left = self.start[1] + col * self.jump[1]
        return top, left, top + self.size[0], left + self.size[1]

    def as_dict(self):
        if self.whole_image:
            return {"whole_image": True}
        return {"size": list(self.size), "jump": list(self.jump), "start": list(self.start), "whole_image": False}

    def __repr__(self):
        return f"ReceptiveField(size={self.size}, jump={self.jump}, start={self.start}, whole_image={self.whole_image})"


def receptive_fields(model, size=None):
    """{layer name: :class:`ReceptiveField`} for every layer of ``model`` on inputs of spatial
    ``size`` (default: the model's input size; adaptive pooling needs one)."""
    fields, field = {}, ReceptiveField()
    for layer in model.geometry(size):
        if layer.kind == "global" or field.whole_image:
            field = ReceptiveField(whole_image=True)
        elif layer.kind == "window":
            field = field.then(layer.window)
        fields[layer.name] = field
    return fields


def receptive_field(model, layer, size=None):
    """The :class:`ReceptiveField` of ``layer``'s units (see :func:`receptive_fields`)."""
    model.check_layers([layer])
    return receptive_fields(model, size)[layer]


def smallest_input(model):
    """The smallest (H, W) on which every windowed layer of ``model`` before its first layer that
    mixes all positions (flatten, linear, adaptive pooling) still has an output, from the same
    window arithmetic run backwards: in = (out - 1) * s + d (k - 1) + 1 - 2 p. AlexNet: 63 x 63;
    VGG16: 32 x 32. (1, 1) for a model whose layers do not run in sequence."""
    if not model.sequential:
        return 1, 1
    windows = []
    for name, module in model.layers():
        layer = layer_geometry(name, module, None)
        if layer.kind == "global":
            break
        if layer.kind == "window":
            windows.append(layer.window)
    need = (1, 1)
    for w in reversed(windows):
        need = tuple(max(1, (need[a] - 1) * w.stride[a] + w.dilation[a] * (w.kernel[a] - 1) + 1 - 2 * w.padding[a])
                     for a in range(2))
    return need
