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
  from the header) and brought to the model's input size as ``model.preprocess`` would. A folder's
  images are read only when used (:class:`FolderImages`), so a folder of any size is a Dataset
  (ImageNet's 50,000 validation images are the reference case): the dataset-wide techniques
  stream it in batches (:mod:`methods.lib.scan`).
"""

import hashlib
import os
import warnings
from collections import namedtuple

import numpy as np

from methods import data
from minigrad.models import PreprocessingNote
from minigrad.models.preprocessing import read_image

__all__ = ["Dataset", "FolderImages", "IMAGE_SUFFIXES", "as_dataset", "default_image", "image_files", "image_source",
           "load_dataset", "load_images", "load_picture", "load_pixels", "photo_crops", "read_pixels", "sample_specs"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: ``images`` uint8 (N, H, W, C) (an array, or a :class:`FolderImages` that reads its files when
#: indexed); ``labels`` int64 (N,) or None; ``names`` the label names; ``sources`` one string per
#: image (file, or sample name and crop).
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


def sample_specs(model, limit=None):
    """The specs of the sample images, one by one (what a sweep over the images of the "sample"
    dataset runs on): ``sample:0``, ``sample:1``, ... for fashion-vgg, the shipped photos by name
    for any other model, and for None (a technique that takes no model)."""
    if model is not None and _is_fashion(model):
        return [f"sample:{i}" for i in range(len(data.fashion_sample()[0]))][:limit]
    return [f"sample:{name}" for name in sorted(data.SAMPLE_IMAGES)][:limit]


def image_source(spec):
    """What an image spec names, for ``model.preprocess``: ``sample:NAME`` (a shipped photograph)
    and ``sample:INDEX`` (an image of the shipped Fashion-MNIST sample) become arrays; files and
    arrays are returned as they are."""
    if not isinstance(spec, str) or not spec.startswith("sample:"):
        return spec
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


def load_picture(model, spec, longest=None, size=None):
    """One image (a file, ``sample:NAME``, ``sample:INDEX`` or an array) as uint8 (H, W, C) pixels in
    the model's colour mode (C = 1 or 3), at its own size, resized so that its longer side is
    ``longest`` pixels (what texture synthesis and style transfer optimize at), or resized to
    ``size`` = (h, w)."""
    source = image_source(spec)
    if isinstance(source, np.ndarray) and source.ndim == 2:
        source = source[..., None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreprocessingNote)
        pixels = _uint8(model.preprocessing.prepare([source]))[0]
        h, w = pixels.shape[:2]
        if longest is not None:
            size = (max(1, round(h * longest / max(h, w))), max(1, round(w * longest / max(h, w))))
        if size is not None and tuple(size) != (h, w):
            pixels = _uint8(model.preprocessing.prepare(pixels[None], size=tuple(size), crop="none"))[0]
    return pixels


def load_images(model, specs):
    """Images named on a command line, preprocessed for ``model``: image files, ``sample:NAME``
    (a shipped photograph) or ``sample:INDEX`` (an image of the shipped Fashion-MNIST sample).
    Returns (x, notes): the (N, C, H, W) batch and the resize notes, one string each."""
    images = [image_source(spec) for spec in specs]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PreprocessingNote)
        x = model.preprocessing.normalize(model.prepare_images(images, names=[str(spec) for spec in specs]))
    notes = [str(w.message) for w in caught if issubclass(w.category, PreprocessingNote)]
    for w in caught:
        if not issubclass(w.category, PreprocessingNote):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return x, notes


def load_pixels(spec):
    """The pixels of one image named as on a command line (a file, ``sample:NAME`` or
    ``sample:INDEX``), at its own size and mode: uint8 (H, W) grey or (H, W, 3) colour. For the
    techniques that work on an image itself, with no network (``inputs="image"``)."""
    if spec.startswith("sample:"):
        return image_source(spec)
    pixels = read_image(spec)
    return pixels[..., 0] if pixels.shape[2] == 1 else pixels


def image_files(folder, limit=None):
    """The image files under ``folder`` (any depth), sorted, the first ``limit`` of them (None: all)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"dataset {folder!r} is neither 'sample' nor a folder of images")
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(folder) for f in names
                   if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return files[:limit]


def load_dataset(model, spec="sample", limit=None, cache=None):
    """The :class:`Dataset` named by ``spec`` ("sample" or a folder), at ``model``'s input size;
    ``limit``: only the first N images (None: all). A folder's images are read when used
    (:class:`FolderImages`); ``cache`` is where scans of it keep their shards (see
    :func:`methods.lib.scan.cache_root`; False: a temporary folder, removed after use)."""
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
        return Dataset(read_pixels(model, crops), labels, names, sources)
    files = image_files(spec, limit)
    folders = [os.path.relpath(os.path.dirname(f), spec) for f in files]
    labels, names = None, ()
    if any(f != "." for f in folders):
        names = tuple(sorted(set(folders)))
        index = {name: i for i, name in enumerate(names)}
        labels = np.array([index[f] for f in folders], np.int64)
    return Dataset(FolderImages(model, files, cache), labels, names, files)


def _uint8(pixels):
    """Pixels as uint8 (float pixels in [0, 1] scaled)."""
    return pixels if pixels.dtype == np.uint8 else np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)


class FolderImages:
    """The images of a list of files as one read-only uint8 (N, H, W, C) array at the model's input
    size, each file read (safely, see ``model.prepare_images``) only when indexed: ``images[i]``,
    ``images[a:b]``, ``images[[i, j]]``, ``images[i, top:bottom, left:right]``, ``len``, ``shape``.
    Nothing is kept between reads, so memory does not grow with the folder. ``np.asarray(images)``
    reads them all (for small folders). ``cache``: where scans keep their shards (None: the default
    cache; False: a temporary folder)."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, model, files, cache=None):
        self.model, self.files, self.cache = model, list(files), cache
        self.shape = (len(self.files),) + tuple(model.input_shape[1:]) + (model.input_shape[0],)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        rest = ()
        if isinstance(index, tuple):
            index, rest = index[0], index[1:]
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(f"image {index} out of range for {len(self)} images")
            return read_pixels(self.model, [self.files[index]])[0][rest]
        if isinstance(index, slice):
            files = self.files[index]
        else:
            files = [self.files[i] for i in np.arange(len(self))[np.asarray(index)]]
        pixels = read_pixels(self.model, files) if files else np.empty((0,) + self.shape[1:], np.uint8)
        return pixels[(slice(None),) + rest]

    def __array__(self, dtype=None, copy=None):
        pixels = self[:]
        return pixels if dtype is None else pixels.astype(dtype)

    def fingerprint(self):
        """A digest of what the images are: each file's path, size and modification time, and the
        model's input size and preprocessing (which make the pixels). Changes when any does."""
        digest = hashlib.sha256(repr((self.shape[1:], sorted(self.model.preprocessing.to_dict().items()))).encode())
        for path in self.files:
            stat = os.stat(path)
            digest.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "replace"))
        return digest.hexdigest()


def read_pixels(model, images):
    """Images (files, arrays, PIL images) at the model's input size as uint8 (N, H, W, C), without
    per-image resize notes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreprocessingNote)
        return _uint8(model.prepare_images(images))


def as_dataset(model, data, labels=None):
    """``data`` as a :class:`Dataset`: a Dataset as it is, a folder path (read as it is used, see
    :func:`load_dataset`), or images (an (N, H, W[, C]) array or a list of images of any kind)
    brought to the model's input size, with optional ``labels``."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        if labels is not None:
            raise ValueError("labels come from a folder's sub-folders; do not pass labels with a folder")
        return load_dataset(model, os.fspath(data))
    images = read_pixels(model, data)
    if labels is not None:
        labels = np.asarray(labels, np.int64)
        if labels.shape != (len(images),):
            raise ValueError(f"{len(labels)} labels for {len(images)} images")
    names = ()
    if labels is not None:
        count = int(labels.max()) + 1 if len(labels) else 0
        names = tuple(model.labels) if model.labels and count <= len(model.labels) else tuple(map(str, range(count)))
    return Dataset(images, labels, names, [f"image {i}" for i in range(len(images))])
