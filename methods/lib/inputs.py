"""What every technique does with its arguments before the real work: the model through the
declared interface, the batch checked against it, targets resolved, arrays brought to the host,
the weights frozen while images are differentiated."""

import contextlib

import numpy as np

import minigrad
from minigrad import models

__all__ = ["as_model", "check_batch", "check_image", "frozen", "probabilities", "resolve_targets", "to_host"]


def to_host(array):
    """A NumPy array from a NumPy/CuPy array or a minigrad Tensor."""
    if isinstance(array, minigrad.Tensor):
        return array.numpy()
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else np.asarray(array)


def as_model(model, x=None):
    """``model`` with the :class:`minigrad.models.Model` interface. A plain ``nn.Module`` is
    adapted (:func:`minigrad.models.as_model`); with a batch ``x`` at hand, its size becomes the
    adapted network's input size."""
    if isinstance(model, models.Model):
        return model
    if not isinstance(model, minigrad.nn.Module):
        raise TypeError(f"expected a minigrad model (minigrad.models.load(...) or an nn.Module), "
                        f"got {type(model).__name__}")
    shape = None
    if x is not None and getattr(x, "ndim", 0) == 4:
        shape = tuple(int(s) for s in x.shape[1:])
    return models.as_model(model, input_shape=shape)


def check_batch(model, x):
    """``x`` (an array or Tensor) as a float (N, C, H, W) array the model takes, on its device,
    or a ValueError that says what is wrong (shape, channels, size, NaN)."""
    data = x.data if isinstance(x, minigrad.Tensor) else x
    if isinstance(data, (list, tuple)) or (isinstance(data, np.ndarray) and data.dtype == np.uint8):
        raise ValueError("expected a preprocessed float batch (N, C, H, W); model.preprocess(images) makes one "
                         "from image files or uint8 arrays")
    data = model.check_input(data).data
    xp = minigrad.get_array_module(data)
    if not bool(xp.isfinite(data).all()):
        raise ValueError("the image batch contains NaN or infinite values")
    return data


def check_image(image, name="image"):
    """One image for a technique that works on the image itself (``inputs="image"``): a file or
    ``sample:NAME`` (read by :func:`methods.lib.datasets.load_pixels`), or an array (H, W) or
    (H, W, 1) grey, (H, W, 3) colour (an alpha channel is dropped), uint8 or float in [0, 1].
    Returns uint8 or float64 (H, W) or (H, W, 3), or a ValueError naming what is wrong."""
    if isinstance(image, str):
        from methods.lib.datasets import load_pixels

        return load_pixels(image)
    array = to_host(image)
    if array.ndim == 3 and array.shape[2] in (1, 4):
        array = array[..., 0] if array.shape[2] == 1 else array[..., :3]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3) or 0 in array.shape:
        raise ValueError(f"{name} must be an (H, W) grey or (H, W, 3) colour image, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind != "f":
        raise ValueError(f"{name} must be uint8 (0..255) or float in [0, 1], got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if array.min() < 0 or array.max() > 1:
        raise ValueError(f"{name}: a float image must hold values in [0, 1], got [{array.min():g}, {array.max():g}] "
                         "(pass uint8 for 0..255)")
    return array.astype(np.float64)


@contextlib.contextmanager
def frozen(model):
    """Evaluation mode and no weight gradients inside the block (backprop to an image never
    computes a weight gradient); both are restored afterwards."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    training = model.training
    model.eval()
    for p in params:
        p.requires_grad = False
    try:
        yield model
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad = flag
        model.train(training)


def _class_index(model, value, classes):
    if isinstance(value, str):
        labels = list(model.labels or ())
        names = [n.lower() for n in labels]
        if value.lower() not in names:
            if not labels:
                raise ValueError(f"unknown class name {value!r}; the model has no class names, give an index")
            shown = ", ".join(labels[:12]) + (", ..." if len(labels) > 12 else "")
            raise ValueError(f"unknown class name {value!r}; the classes are: {shown}")
        return names.index(value.lower())
    if not 0 <= int(value) < classes:
        raise ValueError(f"target class {int(value)} is out of range: the model has {classes} classes (0..{classes - 1})")
    return int(value)


def resolve_targets(model, target, scores):
    """Per-image class indices (int64 (N,)) for the (N, K) ``scores``: ``target`` None -> each
    image's top class; an index or a class name -> that class for all; a list -> one per image."""
    scores = to_host(scores)
    if scores.ndim != 2:
        raise ValueError(f"the model's output has shape {scores.shape}; class targets need scores (N, classes)")
    n, k = scores.shape
    if target is None:
        return scores.argmax(axis=1).astype(np.int64)
    if isinstance(target, (list, tuple, np.ndarray)):
        if len(target) != n:
            raise ValueError(f"give one target per image: {len(target)} targets for {n} images")
        return np.array([_class_index(model, t, k) for t in target], dtype=np.int64)
    return np.full(n, _class_index(model, target, k), dtype=np.int64)


def probabilities(scores):
    """Softmax of (N, K) scores, in float64 on the host."""
    z = to_host(scores).astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)
