"""A layer's activations for a batch or a whole dataset, without building a graph (what the
activation grids, patches, neighbours and t-SNE read), and the papers' default layers, found
through the model's declared geometry."""

import numpy as np

import minigrad
from minigrad import nn
from methods.lib.inputs import check_batch, to_host
from methods.lib.progress import Progress

__all__ = ["feature_layer", "last_convolution", "last_pooling", "layer_activations", "layer_features"]


def layer_activations(model, x, layer):
    """The output of ``layer`` for the preprocessed batch ``x`` (N, C, H, W), as a NumPy array.

    Runs the model only as deep as ``layer`` and records no graph; an unknown layer or a batch
    the model cannot take is a ValueError saying so."""
    x = check_batch(model, x)
    model.check_layers([layer])
    with minigrad.no_grad():
        return to_host(model.extract(minigrad.tensor(x), [layer])[layer])


def layer_features(model, x, layer, batch_size=64, flatten=True, verbose=None):
    """Activations of ``layer`` for every image of ``x`` (N, C, H, W), ``batch_size`` at a time
    (with progress); (N, features) with ``flatten`` (the vectors t-SNE and neighbours compare)."""
    model.check_layers([layer])
    chunks = [layer_activations(model, x[i: i + batch_size], layer)
              for i in Progress(range(0, len(x), batch_size), f"features {layer}", verbose=verbose)]
    out = np.concatenate(chunks)
    return out.reshape(len(out), -1) if flatten else out


def _spatial_layers(model):
    """(name, module) of the layers before the first one that mixes all positions; for a model
    that does not run its layers in sequence, its modules up to the first fully connected one."""
    if not model.sequential:
        layers = model.layers()
        stop = next((i for i, (_, m) in enumerate(layers) if isinstance(m, nn.Linear)), len(layers))
        return layers[:stop]
    layers = model.geometry()
    stop = next((i for i, layer in enumerate(layers) if layer.kind == "global"), len(layers))
    # an adaptive pooling that leaves the size as it is (VGG's avgpool at 224) is no pooling
    return [(layer.name, layer.module) for layer in layers[:stop]
            if not (isinstance(layer.module, nn.AdaptiveAvgPool2d) and layer.kind == "pointwise")]


def feature_layer(model):
    """fc7 (Krizhevsky et al.'s last hidden layer) when the model has one, else the layer before the output."""
    names = model.layer_names
    return "fc7" if "fc7" in names else names[max(len(names) - 2, 0)]


def last_pooling(model):
    """The last pooling layer before the layers that mix all positions (Girshick et al. look at
    AlexNet's pool5), else the last windowed layer there."""
    layers = _spatial_layers(model)
    pools = [name for name, m in layers if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d))]
    convs = [name for name, m in layers if isinstance(m, nn.Conv2d)]
    if not pools and not convs:
        raise ValueError(f"{model.describe()} has no convolution or pooling layer")
    return (pools or convs)[-1]


def last_convolution(model):
    """The last convolution before the layers that mix all positions, or the ReLU right after it
    (Grad-CAM's "last convolutional layer", rectified: relu5_3 of VGG16)."""
    layers = _spatial_layers(model)
    convs = [i for i, (_, m) in enumerate(layers) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{model.describe()} has no convolution")
    last = convs[-1]
    if last + 1 < len(layers) and isinstance(layers[last + 1][1], (nn.ReLU, nn.LeakyReLU)):
        last += 1
    return layers[last][0]
