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
    """``image`` as a NumPy picture a model-free technique takes, or a ValueError naming the
    problem: H x W or H x W x C (C = 1 or 3), uint8 (0..255) or floating point in [0, 1], finite.
    The array is returned as it is (its dtype tells the technique which range to give back)."""
    if isinstance(image, minigrad.Tensor) or not hasattr(image, "shape"):
        raise TypeError(f"{name} must be a NumPy array (H, W) or (H, W, C), got {type(image).__name__}")
    image = to_host(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)) or 0 in image.shape:
        raise ValueError(f"{name} must have shape (H, W) or (H, W, C) with C = 1 or 3, got {image.shape}")
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind != "f":
        raise ValueError(f"{name} must be uint8 (0..255) or floating point in [0, 1], got dtype {image.dtype}")
    if not np.isfinite(image).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if image.min() < 0 or image.max() > 1:
        raise ValueError(f"a floating-point {name} must hold values in [0, 1], got [{image.min():g}, {image.max():g}] "
                         "(pass uint8 for 0..255 pictures)")
    return image


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
