"""The input convention a set of weights was trained with, and the conversions to and from it.

A network only understands images prepared exactly as its training images were: torchvision's
ImageNet weights want RGB in [0, 1] normalized by mean (0.485, 0.456, 0.406) and std
(0.229, 0.224, 0.225); the original Caffe VGG weights want BGR in [0, 255] minus a per-channel
mean; fashion-vgg wants one grey channel standardized with Fashion-MNIST's mean and std. Every
model carries a :class:`Preprocessing`, so techniques call ``model.preprocess(...)`` /
``model.deprocess(...)`` and never hard-code these numbers.

Images arrive as file paths, PIL images or arrays of any size and mode. Files are checked before
they are decoded: more than :data:`MAX_PIXELS` pixels (a decompression bomb, or a photo far
larger than any model needs) is refused from the header, and a large JPEG is decoded at reduced
scale when the model needs fewer pixels (Pillow's ``draft``). 16-bit images are scaled to 8 bits
(not clipped to white), palettes and alpha are dropped to RGB, grey is replicated to RGB and RGB
turned grey (ITU-R 601 luma, as Pillow's "L") to match the model.

Pillow is imported only when it is needed and a missing Pillow is reported with the command
that installs it.
"""

import json
import os
import warnings

import numpy as np

__all__ = ["MAX_PIXELS", "Preprocessing", "PreprocessingNote", "TORCHVISION", "read_image"]

#: The largest image (width x height) decoded: 64 megapixels, e.g. 8000 x 8000.
MAX_PIXELS = 64_000_000

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class PreprocessingNote(UserWarning):
    """An image was resized or converted to fit the model (shown once per message)."""


def _pil():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - exercised only where Pillow is absent
        raise ImportError(
            "reading or resizing images needs Pillow: pip install pillow (or pip install -e .)"
        ) from None
    return Image


def _is_pil_image(obj):
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "convert") and hasattr(obj, "size")


def _pil_to_array(im):
    """A decoded PIL image as uint8 (H, W, 3) or (H, W, 1), whatever its mode."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return (np.asarray(im, dtype=np.uint32) // 257).astype(np.uint8)[..., None]
    if im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if a.max(initial=0) > 255 else 255.0
        return np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)[..., None]
    if im.mode in ("L", "1"):
        return np.asarray(im.convert("L"), dtype=np.uint8)[..., None]
    if im.mode == "LA":
        return np.asarray(im, dtype=np.uint8)[..., :1]
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def read_image(source, target=None, max_pixels=None):
    """Decode an image file (or PIL image) into uint8 (H, W, 3) or (H, W, 1), never more than
    ``max_pixels`` (default :data:`MAX_PIXELS`) large: the size is read from the header first.
    ``target`` (h, w): the size it will be resized to, so a large JPEG is decoded at reduced scale."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if _is_pil_image(source):
        return _pil_to_array(source)
    Image = _pil()
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such image file" if not os.path.exists(path) else
                                f"{path}: not a regular file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is lower
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as error:
            raise ValueError(f"{path}: refused, the image is larger than the {limit / 1e6:.0f} megapixels allowed "
                             f"({error})") from None
        except (OSError, ValueError, SyntaxError) as error:
            raise ValueError(f"{path}: cannot read the image ({error})") from None
    with im:
        width, height = im.size
        if width * height > limit:
            raise ValueError(f"{path}: {width}x{height} is {width * height / 1e6:.0f} megapixels, more than the "
                             f"{limit / 1e6:.0f} allowed; resize it first")
        if target is not None and im.format == "JPEG":
            im.draft("RGB", (max(1, target[1]), max(1, target[0])))
            if im.size != (width, height):
                warnings.warn(PreprocessingNote(f"{path}: {width}x{height} JPEG decoded at {im.size[0]}x{im.size[1]} "
                                                "(it will be resized anyway)"), stacklevel=5)
        try:
            return _pil_to_array(im)
        except (OSError, ValueError, SyntaxError) as error:
            raise ValueError(f"{path}: cannot decode the image ({error})") from None


def _as_hwc(a):
    """An array image as (H, W, 3) or (H, W, 1): uint8, or float32 in [0, 1]."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or 0 in a.shape:
        raise ValueError(f"an image must be H x W (grey) or H x W x 3 (or x 1, x 4), got shape {a.shape}")
    a = a[:, :, :3] if a.shape[2] == 4 else a
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return (a.astype(np.uint32) // 257).astype(np.uint8)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ValueError("the image contains NaN or infinite values")
        if a.min() < -1e-6 or a.max() > 1 + 1e-6:
            raise ValueError(f"a floating-point image must hold values in [0, 1], got [{a.min():g}, {a.max():g}] "
                             "(pass uint8 for 0..255 images)")
        return np.clip(a, 0, 1).astype(np.float32)
    if a.dtype.kind in "iu" and (a.size == 0 or (a.min() >= 0 and a.max() <= 255)):
        return a.astype(np.uint8)
    raise ValueError(f"images must be uint8 (0..255), uint16, or float in [0, 1]; got dtype {a.dtype}")


def _resize(a, size, interpolation):
    """Resize an (H, W, C) uint8 or float32 image to ``size`` (h, w) with Pillow."""
    Image = _pil()
    method = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[interpolation]
    h, w = size
    if a.dtype == np.uint8:
        mode = "L" if a.shape[2] == 1 else "RGB"
        out = np.asarray(Image.fromarray(a[..., 0] if mode == "L" else a, mode).resize((w, h), method))
        return out.reshape(h, w, a.shape[2])
    planes = [np.asarray(Image.fromarray(a[..., c], "F").resize((w, h), method)) for c in range(a.shape[2])]
    return np.clip(np.stack(planes, axis=2), 0, 1).astype(np.float32)


class Preprocessing:
    """One input convention.

    ``channels`` "RGB", "BGR" or "L" (grey: one channel) in the network's order; ``range``
    (lo, hi) the values 0..255 map to before normalization ((0, 1) for torchvision, (0, 255) for
    Caffe); ``mean`` and ``std`` per channel, in ``range`` units; ``resize`` and ``crop`` the
    evaluation transform (shorter side to ``resize``, then a central ``crop`` square: 256 and 224
    for torchvision); None for both takes images at their own size.
    """

    def __init__(self, channels="RGB", range=(0.0, 1.0), mean=None, std=None, resize=None, crop=None,
                 interpolation="bilinear"):
        if channels not in ("RGB", "BGR", "L"):
            raise ValueError(f"channels must be 'RGB', 'BGR' or 'L', got {channels!r}")
        n = 1 if channels == "L" else 3
        mean = (0.0,) * n if mean is None else mean
        std = (1.0,) * n if std is None else std
        if len(mean) != n or len(std) != n or not all(s > 0 for s in std):
            raise ValueError(f"mean and std need {n} value(s) each for {channels}, std positive")
        lo, hi = float(range[0]), float(range[1])
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"range must be two finite numbers lo < hi, got {list(range)}")
        for name, value in (("resize", resize), ("crop", crop)):
            if value is not None and not (isinstance(value, (int, np.integer)) and 1 <= value <= 8192):
                raise ValueError(f"{name} must be an integer from 1 to 8192 (or None), got {value!r}")
        if (resize is None) != (crop is None) or (crop is not None and crop > resize):
            raise ValueError(f"resize and crop are given together, crop <= resize; got {resize}, {crop}")
        if interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(f"unknown interpolation {interpolation!r}")
        self.channels, self.interpolation = channels, interpolation
        self.range = (lo, hi)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.resize, self.crop = (None, None) if crop is None else (int(resize), int(crop))

    @classmethod
    def identity(cls, channels=3):
        """Images in [0, 1] as they are (RGB, or grey for one channel), at their own size."""
        return cls("L" if channels == 1 else "RGB")

    @property
    def depth(self):
        """How many channels the network sees (1 or 3)."""
        return 1 if self.channels == "L" else 3

    # ---- (de)serialization, for safetensors metadata ---------------------------------------
    def to_dict(self):
        return {"channels": self.channels, "range": list(self.range), "mean": self.mean.tolist(),
                "std": self.std.tolist(), "resize": self.resize, "crop": self.crop,
                "interpolation": self.interpolation}

    @classmethod
    def from_dict(cls, d):
        keys = ("channels", "range", "mean", "std", "resize", "crop", "interpolation")
        try:
            return cls(**{k: d[k] for k in keys if k in d})
        except (TypeError, ValueError) as error:
            raise ValueError(f"invalid preprocessing metadata: {error}") from None

    @classmethod
    def from_json(cls, text):
        try:
            d = json.loads(text)
        except ValueError as e:
            raise ValueError(f"preprocessing metadata is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError("preprocessing metadata must be a JSON object")
        return cls.from_dict(d)

    def __eq__(self, other):
        return isinstance(other, Preprocessing) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return (f"Preprocessing({self.channels}, range={self.range}, mean={self.mean.tolist()}, "
                f"std={self.std.tolist()}, resize={self.resize}, crop={self.crop})")

    # ---- images in ----------------------------------------------------------------------------
    def _fit(self, a, size, crop, label):
        """Bring one (H, W, C) image to ``size`` (h, w), noting what changed."""
        h, w = a.shape[:2]
        if size is None or (h, w) == tuple(size):
            return a
        th, tw = size
        if crop == "center":
            # torchvision's Resize(short) then CenterCrop: the shorter side to short, the longer
            # one truncated in proportion, the crop offsets rounded
            short = int(max(th, tw) * (self.resize / self.crop if self.crop else 1.0))
            if h <= w:
                nh, nw = short, max(tw, int(short * w / h))
            else:
                nh, nw = max(th, int(short * h / w)), short
            nh, nw = max(nh, th), max(nw, tw)
            a = _resize(a, (nh, nw), self.interpolation) if (nh, nw) != (h, w) else a
            top, left = int(round((nh - th) / 2.0)), int(round((nw - tw) / 2.0))
            a = a[top:top + th, left:left + tw]
            how = f"resized to {nw}x{nh} and centre-cropped"
        else:
            a = _resize(a, (th, tw), self.interpolation)
            how = "resized"
        warnings.warn(PreprocessingNote(f"{label}: {w}x{h} {how} to {tw}x{th}, the model's input size"),
                      stacklevel=5)
        return a

    def _convert(self, a):
        """Images (..., 1 or 3 channels) -> the network's number of channels."""
        if self.depth == 1 and a.shape[-1] == 3:
            grey = a.astype(np.float32) @ _LUMA
            return (np.rint(grey) if a.dtype == np.uint8 else grey).astype(a.dtype)[..., None]
        if self.depth == 3 and a.shape[-1] == 1:
            return np.repeat(a, 3, axis=-1)
        return a

    def _images(self, images):
        """The argument as a list of images (or a stacked batch array, unchanged)."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return images
        if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[2] not in (1, 3, 4):
            return images[..., None]  # N grey images
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("no images given")
            return list(images)
        return [images]

    def prepare(self, images, size=None, crop="center", names=None):
        """The pixel half of preprocessing: images (as for :meth:`__call__`) read, converted to the
        network's colour mode and brought to ``size``, as a uint8 (or float32 in [0, 1] when the
        input was float) array (N, H, W, C), C = 1 or 3. ``names``: what resize notes call each
        image (default: its path, or "image i")."""
        if crop not in ("center", "none"):
            raise ValueError(f"crop must be 'center' or 'none', got {crop!r}")
        if size is not None:
            size = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
            if not (1 <= size[0] <= 8192 and 1 <= size[1] <= 8192):
                raise ValueError(f"size must be from 1 to 8192 pixels, got {size}")
        batch = self._images(images)
        if isinstance(batch, np.ndarray) and (size is None or batch.shape[1:3] == size) \
                and batch.shape[3] in (1, 3, 4):
            return self._convert(_as_hwc_batch(batch))  # the fast path: one array, nothing to resize
        arrays = []
        for i, image in enumerate(batch):
            label = names[i] if names else os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"image {i}"
            if isinstance(image, (str, os.PathLike)) or _is_pil_image(image):
                image = read_image(image, target=size)
            arrays.append(self._fit(self._convert(_as_hwc(image)), size, crop, label))
        sizes = {a.shape[:2] for a in arrays}
        if len(sizes) > 1:
            raise ValueError(f"the images have different sizes {sorted(sizes)}; give preprocess a size")
        kinds = {a.dtype for a in arrays}
        return np.stack([a.astype(np.float32) / 255.0 if len(kinds) > 1 and a.dtype == np.uint8 else a
                         for a in arrays])

    def normalize(self, pixels):
        """(N, H, W, C) uint8 or [0, 1] float pixels -> the network's (N, C, H, W) float32 input."""
        x = pixels.astype(np.float32) / 255.0 if pixels.dtype == np.uint8 else pixels.astype(np.float32)
        lo, hi = self.range
        x = x * np.float32(hi - lo) + np.float32(lo)
        if self.channels == "BGR":
            x = x[..., ::-1]
        x = (x - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)

    def __call__(self, images, size=None, crop="center"):
        """Images -> the network's input, an (N, C, H, W) float32 NumPy array (see
        :meth:`minigrad.models.base.Model.preprocess`)."""
        return self.normalize(self.prepare(images, size, crop))

    # ---- images out ---------------------------------------------------------------------------
    def inverse(self, x):
        """The network's input convention -> uint8 RGB images, values outside the displayable
        range clipped. (N, C, H, W) -> (N, H, W, 3), or (C, H, W) -> (H, W, 3)."""
        if hasattr(x, "numpy") and not isinstance(x, np.ndarray):  # a minigrad Tensor
            x = x.numpy()
        if hasattr(x, "get") and not isinstance(x, np.ndarray):  # a CuPy array
            x = x.get()
        x = np.asarray(x, dtype=np.float32)
        single = x.ndim == 3
        if single:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != self.depth:
            raise ValueError(f"deprocess expects ({self.depth}, H, W) images with or without a batch axis, "
                             f"got shape {x.shape}")
        x = x.transpose(0, 2, 3, 1) * self.std + self.mean
        if self.channels == "BGR":
            x = x[..., ::-1]
        lo, hi = self.range
        x = (x - lo) / (hi - lo)
        out = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
        if self.depth == 1:
            out = np.repeat(out, 3, axis=3)
        return out[0] if single else out


def _as_hwc_batch(batch):
    """An (N, H, W, C) array batch checked and converted like :func:`_as_hwc`, at once."""
    n = batch.shape[0]
    if n == 0:
        raise ValueError("no images given")
    flat = _as_hwc(batch.reshape(n * batch.shape[1], batch.shape[2], batch.shape[3]))
    return flat.reshape(n, batch.shape[1], batch.shape[2], flat.shape[2])


#: torchvision's ImageNet convention (all IMAGENET1K_V1 AlexNet / VGG weights).
TORCHVISION = Preprocessing("RGB", (0.0, 1.0), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 256, 224)
