"""What the optimizing-the-image techniques measure: Gram matrices, activations at any image size,
and the layers the papers read, found in any model.

* :func:`gram_matrix` -- Gatys et al.'s style representation, the channel-by-channel inner
  products of a layer's feature maps, normalized by C * H * W (as neural-style), as one
  differentiable op;
* :func:`activations` -- a layer's activations like ``model.extract``, also at image sizes a
  fixed-size model's classifier would refuse (texture, style and DeepDream's octaves only read
  convolutional layers, which run at any size), optionally with every max pooling replaced by an
  average pooling of the same window (Gatys et al. 2015 and 2016);
* :func:`blocks` and the default layers of the papers, named for VGG and found for any model
  from its layer sequence: :func:`style_layers` (relu1_1 ... relu5_1), :func:`content_layer`
  (relu4_2), :func:`texture_layers` (conv1_1 and pool1 ... pool4, Caffe's conv1_1 being
  rectified in place: our relu1_1) and :func:`dream_layer` (relu4_3 for VGG16).
"""

import minigrad
from methods.lib.gradients import unit_seed
from minigrad import Function, nn
from minigrad import functional as F
from minigrad.models.base import layer_geometry

__all__ = ["activations", "blocks", "centre_unit", "content_layer", "dream_layer", "gram_matrix", "spatial_layers",
           "style_layers", "texture_layers", "unit_activation"]

_POOLS = (nn.MaxPool2d, nn.AvgPool2d)
_RELUS = (nn.ReLU, nn.LeakyReLU)
#: Layers from which on positions are mixed (or the layout changes): the classifier.
_GLOBAL = (nn.Linear, nn.Flatten, nn.AdaptiveAvgPool2d)


class GramMatrix(Function):
    """G[n] = F[n] F[n]^T / (C H W) for features F[n] of shape (C, H * W)."""

    @staticmethod
    def forward(ctx, features):
        n, c = features.shape[:2]
        flat = features.reshape(n, c, -1)
        scale = 1.0 / (c * flat.shape[2])
        ctx.save_for_backward(flat)
        ctx.scale, ctx.shape = scale, features.shape
        return (flat @ flat.swapaxes(1, 2)) * features.dtype.type(scale)

    @staticmethod
    def backward(ctx, grad):
        (flat,) = ctx.saved_tensors
        symmetric = (grad + grad.swapaxes(1, 2)) * grad.dtype.type(ctx.scale)
        return ((symmetric @ flat).reshape(ctx.shape),)


def gram_matrix(features):
    """The Gram matrices (N, C, C) of (N, C, H, W) feature maps, each entry sum_ij F_c F_d over the
    positions, divided by C * H * W (neural-style's normalization; Gatys et al. 2015, eq. 1
    without it). Differentiable."""
    features = features if isinstance(features, minigrad.Tensor) else minigrad.tensor(features)
    if features.ndim != 4:
        raise ValueError(f"gram_matrix takes feature maps (N, C, H, W), got shape {tuple(features.shape)}")
    return GramMatrix.apply(features)


def centre_unit(shape):
    """The neuron at the centre of channel 0 of a layer whose activation has ``shape`` (N, C, H, W),
    unit 0 of an (N, F) layer: Yosinski et al.'s choice for a convolutional layer (its border units
    see only part of the image)."""
    return (0, shape[2] // 2, shape[3] // 2) if len(shape) == 4 else 0


def unit_activation(activation, unit):
    """Per image, a Tensor (N,): the value of neuron ``unit`` = (c, i, j) (or f of an (N, F) layer), or
    the mean of channel ``unit`` = c, of the layer output ``activation`` (checked as
    :func:`methods.lib.gradients.unit_seed` checks it)."""
    mask = unit_seed(activation.data, unit)
    count = float(mask[0].sum())
    return (activation * mask).reshape(activation.shape[0], -1).sum(axis=1) / count


# ----------------------------------------------------------------------------- layers


def spatial_layers(model):
    """[(name, module)] of the layers before the classifier (the first fully connected, flattening
    or adaptive pooling layer): the ones that run at any image size."""
    layers = model.layers()
    stop = next((i for i, (_, m) in enumerate(layers) if isinstance(m, _GLOBAL)), len(layers))
    return layers[:stop]


def activations(model, x, names, pooling="max"):
    """{name: Tensor} of the (N, C, H, W) Tensor ``x``'s activations at ``names``, connected to ``x``.

    A model that runs its layers in sequence runs them here up to the deepest name, at any image
    size as long as every name comes before the classifier; with ``pooling="avg"`` each max
    pooling layer is replaced by an average pooling of the same window. Other models go through
    ``model.extract`` (their own forward, at the sizes they take)."""
    names = [names] if isinstance(names, str) else list(names)
    model.check_layers(names)
    if pooling not in ("max", "avg"):
        raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
    if not model.sequential:
        if pooling == "avg" and any(isinstance(m, nn.MaxPool2d) for _, m in model.layers()):
            raise ValueError(f"pooling='avg' replaces max pooling layers one by one, which needs a model that "
                             f"runs its layers in sequence; {model.describe()} does not")
        return model.extract(x, names)
    if model.channels is not None and x.shape[1] != model.channels:
        raise ValueError(f"{model.describe()} takes {model.channels}-channel images, got shape {tuple(x.shape)}")
    if model.input_shape is not None and model.fixed_size and tuple(x.shape[2:]) != tuple(model.input_shape[1:]):
        spatial = {name for name, _ in spatial_layers(model)}
        beyond = [n for n in names if n not in spatial]
        if beyond:
            h, w = model.input_shape[1:]
            raise ValueError(f"layer {', '.join(beyond)} of {model.describe()} needs {h}x{w} images (it comes after "
                             f"the classifier's first layer), got {x.shape[2]}x{x.shape[3]}")
    wanted, found = set(names), {}
    for name, module in model.layers():
        if pooling == "avg" and isinstance(module, nn.MaxPool2d):
            window = layer_geometry(name, module, None).window
            x = F.avg_pool2d(x, window.kernel, window.stride, window.padding)
        else:
            x = module(x)
        if name in wanted:
            found[name] = x
            if len(found) == len(wanted):
                break
    return {n: found[n] for n in names}


def blocks(model):
    """The spatial layers grouped into blocks, each ending with its pooling layer (VGG's five):
    a list of [(name, module)]. Without pooling layers each convolution starts a block."""
    groups, current = [], []
    pooled = any(isinstance(m, _POOLS) for _, m in spatial_layers(model))
    for name, module in spatial_layers(model):
        if not pooled and isinstance(module, nn.Conv2d) and current:
            groups.append(current)
            current = []
        current.append((name, module))
        if isinstance(module, _POOLS):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    if not groups:
        raise ValueError(f"{model.describe()} has no convolutional layers before its classifier")
    return groups


def _rectified(block):
    """The names of a block's ReLU outputs, or of its convolutions when it has no ReLU module."""
    relus = [name for name, m in block if isinstance(m, _RELUS)]
    return relus or [name for name, m in block if isinstance(m, nn.Conv2d)] or [block[0][0]]


def style_layers(model):
    """The first rectified layer of each of the first five blocks: relu1_1 ... relu5_1 for VGG
    (Gatys et al. 2016; neural-style's default)."""
    return [_rectified(block)[0] for block in blocks(model)[:5]]


def content_layer(model):
    """The second rectified layer of the fourth block, relu4_2 for VGG (Gatys et al. 2016); on a
    shallower model its deepest block, and the last rectified layer of a block with fewer."""
    found = blocks(model)
    rectified = _rectified(found[min(3, len(found) - 1)])
    return rectified[min(1, len(rectified) - 1)]


def texture_layers(model):
    """The first rectified layer and the pooling layers ending the first four blocks: conv1_1 (in
    Caffe rectified in place, our relu1_1) and pool1 ... pool4 for VGG (Gatys et al. 2015); every
    convolution's output of a model without pooling layers."""
    found = blocks(model)
    pools = [block[-1][0] for block in found[:4] if isinstance(block[-1][1], _POOLS)]
    if not pools:
        return [_rectified(block)[0] for block in found]
    return [_rectified(found[0])[0]] + pools


def dream_layer(model):
    """The last rectified layer of the second-to-last block (relu4_3 for VGG16), a layer deep enough
    for object parts and shallow enough to keep the image's layout."""
    found = blocks(model)
    return _rectified(found[max(len(found) - 2, 0)])[-1]
