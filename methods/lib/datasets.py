"""Datasets for the techniques that scan many images: maximally activating patches, neighbours,
t-SNE.

A :class:`Dataset` holds the images as the model sees them (uint8 (N, H, W, C) at its input
size, C = 1 or 3), their labels and the label names, and where each image came from. Three
sources, chosen by :func:`load_dataset`'s ``spec``:

* ``"sample"`` for a one-channel 28 x 28 model (fashion-vgg): the 2,000 Fashion-MNIST test images
  shipped in ``methods/data``, labelled by class;
* ``"sample"`` for any other model: the shipped photographs and textures, ten distinct crops of
  each (the central square and a 3 x 3 grid of 60% squares), labelled by photograph;
* a folder of image files (sorted; sub-folders become labels), each read safely (size checked
  from the header) and brought to the model's input size as ``model.preprocess`` would.
"""

import os
import warnings
from collections import namedtuple

import numpy as np

from methods import data
from minigrad.models import PreprocessingNote
from minigrad.models.preprocessing import read_image

__all__ = ["Dataset", "IMAGE_SUFFIXES", "as_dataset", "default_image", "load_dataset", "load_images", "load_pixels",
           "photo_crops"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: ``images`` uint8 (N, H, W, C); ``labels`` int64 (N,) or None; ``names`` the label names;
#: ``sources`` one string per image (file, or sample name and crop).
Dataset = namedtuple("Dataset", ["images", "labels", "names", "sources"])


def photo_crops(side=0.6):
    """The shipped photographs and textures as (crops, labels, names, sources): from each, the
    central square of its shorter side and a 3 x 3 grid of squares ``side`` times as large, all
    at their own pixels (callers resize). Every crop covers a different region, so no two are alike."""
    crops, labels, names, sources = [], [], [], []
    for label, name in enumerate(sorted(data.SAMPLE_IMAGES)):
        image = data.sample_image(name)
        h, w = image.shape[:2]
        square = min(h, w)
        boxes = [((h - square) // 2, (w - square) // 2, square)]
        s = int(square * side)
        for top in np.linspace(0, h - s, 3).astype(int):
            for left in np.linspace(0, w - s, 3).astype(int):
                boxes.append((int(top), int(left), s))
        for top, left, size in boxes:
            crops.append(image[top:top + size, left:left + size])
            labels.append(label)
            sources.append(f"sample:{name}[{top}:{top + size}, {left}:{left + size}]")
        names.append(name)
    return crops, np.array(labels, np.int64), tuple(names), sources


def _is_fashion(model):
    return model.input_shape is not None and tuple(model.input_shape) == (1, 28, 28)


def default_image(model):
    """The image a command shows when none is named: a Fashion-MNIST test image for fashion-vgg
    (``sample:0``, a sneaker), the cat photograph (``sample:chelsea``) for any other model."""
    return "sample:0" if _is_fashion(model) else "sample:chelsea"


def load_images(model, specs):
    """Images named on a command line, preprocessed for ``model``: image files, ``sample:NAME``
    (a shipped photograph) or ``sample:INDEX`` (an image of the shipped Fashion-MNIST sample).
    Returns (x, notes): the (N, C, H, W) batch and the resize notes, one string each."""
    images = [_sample(spec) if isinstance(spec, str) and spec.startswith("sample:") else spec for spec in specs]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PreprocessingNote)
        x = model.preprocessing.normalize(model.prepare_images(images, names=[str(spec) for spec in specs]))
    notes = [str(w.message) for w in caught if issubclass(w.category, PreprocessingNote)]
    for w in caught:
        if not issubclass(w.category, PreprocessingNote):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return x, notes


def _sample(spec):
    """The shipped image ``sample:NAME`` (a photograph or texture) or ``sample:INDEX`` (Fashion-MNIST)."""
    key = spec.split(":", 1)[1]
    if key.isdigit():
        sample = data.fashion_sample()[0]
        if int(key) >= len(sample):
            raise ValueError(f"{spec}: the Fashion-MNIST sample has images 0..{len(sample) - 1}")
        return sample[int(key)]
    if key in data.SAMPLE_IMAGES:
        return data.sample_image(key)
    raise ValueError(f"{spec}: no such sample; use sample:0..1999 (Fashion-MNIST) or sample:NAME with NAME "
                     f"one of {', '.join(sorted(data.SAMPLE_IMAGES))}")


def load_pixels(spec):
    """The pixels of one image named as on a command line (a file, ``sample:NAME`` or
    ``sample:INDEX``), at its own size and mode: uint8 (H, W) grey or (H, W, 3) colour. For the
    techniques that work on an image itself, with no network (``inputs="image"``)."""
    if spec.startswith("sample:"):
        return _sample(spec)
    pixels = read_image(spec)
    return pixels[..., 0] if pixels.shape[2] == 1 else pixels


def load_dataset(model, spec="sample", limit=None):
    """The :class:`Dataset` named by ``spec`` ("sample" or a folder), at ``model``'s input size;
    ``limit``: only the first N images (None: all)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None (all images), got {limit!r}")
    if model.input_shape is None:
        raise ValueError(f"{model.describe()} does not declare an input size; a dataset needs one "
                         "(minigrad.models.as_model(net, input_shape=(C, H, W)))")
    if spec == "sample":
        if _is_fashion(model):
            images, labels = data.fashion_sample()
            images, labels = images[:limit], labels[:limit]
            sources = [f"fashion_mnist_sample[{i}]" for i in range(len(images))]
            return Dataset(images[..., None], labels, data.FASHION_CLASSES, sources)
        crops, labels, names, sources = photo_crops()
        crops, labels, sources = crops[:limit], labels[:limit], sources[:limit]
        return Dataset(_fit(model, crops), labels, names, sources)
    if not os.path.isdir(spec):
        raise FileNotFoundError(f"dataset {spec!r} is neither 'sample' nor a folder of images")
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(spec) for f in names
                   if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {spec}")
    files = files[:limit]
    folders = [os.path.relpath(os.path.dirname(f), spec) for f in files]
    labels, names = None, ()
    if any(f != "." for f in folders):
        names = tuple(sorted(set(folders)))
        labels = np.array([names.index(f) for f in folders], np.int64)
    return Dataset(_fit(model, files), labels, names, files)


def _fit(model, images):
    """Images of any size and mode at the model's input size, uint8, without per-image notes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreprocessingNote)
        pixels = model.prepare_images(images)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)
    return pixels


def as_dataset(model, data, labels=None):
    """``data`` as a :class:`Dataset`: a Dataset as it is, or images (an (N, H, W[, C]) array or a
    list of images of any kind) brought to the model's input size, with optional ``labels``."""
    if isinstance(data, Dataset):
        return data
    images = _fit(model, data)
    if labels is not None:
        labels = np.asarray(labels, np.int64)
        if labels.shape != (len(images),):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
    names = ()
    if labels is not None:
        count = int(labels.max()) + 1 if len(labels) else 0
        names = tuple(model.labels) if model.labels and count <= len(model.labels) else tuple(map(str, range(count)))
    return Dataset(images, labels, names, [f"image {i}" for i in range(len(images))])
