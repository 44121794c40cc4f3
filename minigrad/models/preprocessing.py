"""The input convention a set of weights was trained with, and the conversions to and from it.

A network only understands images prepared exactly as its training images were: torchvision's
ImageNet weights want RGB in [0, 1] normalized by mean (0.485, 0.456, 0.406) and std
(0.229, 0.224, 0.225); the original Caffe VGG weights want BGR in [0, 255] minus a per-channel
mean. Every model carries a :class:`Preprocessing` (read from its weights file's metadata), so
visualization code calls ``model.preprocess(...)`` / ``model.deprocess(...)`` and never
hard-codes these numbers.

Pillow is imported only when it is needed (reading image files, PIL images, resizing) and a
missing Pillow is reported with the command that installs it.
"""

import json
import os

import numpy as np

__all__ = ["Preprocessing", "TORCHVISION"]


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


class Preprocessing:
    """One input convention.

    ``channels`` "RGB" or "BGR" (the order the network expects); ``range`` (lo, hi) the values
    uint8 0..255 map to before normalization ((0, 1) for torchvision, (0, 255) for Caffe);
    ``mean`` and ``std`` per channel, in the network's channel order and in ``range`` units;
    ``resize`` and ``crop`` the evaluation transform (shorter side to ``resize``, then a
    central ``crop`` x ``crop`` square).
    """

    def __init__(self, channels="RGB", range=(0.0, 1.0), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                 resize=256, crop=224, interpolation="bilinear"):
        if channels not in ("RGB", "BGR"):
            raise ValueError(f"channels must be 'RGB' or 'BGR', got {channels!r}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError("mean and std need three values each, std positive")
        if interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(f"unknown interpolation {interpolation!r}")
        self.channels, self.interpolation = channels, interpolation
        self.range = (float(range[0]), float(range[1]))
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.resize, self.crop = int(resize), int(crop)

    # ---- (de)serialization, for safetensors metadata ---------------------------------------
    def to_dict(self):
        return {"channels": self.channels, "range": list(self.range), "mean": self.mean.tolist(),
                "std": self.std.tolist(), "resize": self.resize, "crop": self.crop,
                "interpolation": self.interpolation}

    @classmethod
    def from_dict(cls, d):
        keys = ("channels", "range", "mean", "std", "resize", "crop", "interpolation")
        return cls(**{k: d[k] for k in keys if k in d})

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
    def _load(self, image, center_crop):
        """One image as an (H, W, 3) array: uint8, or float32 in [0, 1]."""
        if isinstance(image, (str, os.PathLike)):
            Image = _pil()
            try:
                with Image.open(image) as im:
                    image = im.convert("RGB")
            except FileNotFoundError:
                raise FileNotFoundError(f"{image}: no such image file") from None
            except (OSError, ValueError) as e:
                raise ValueError(f"{image}: cannot read the image ({e})") from None
        elif _is_pil_image(image):
            image = image.convert("RGB")
        if not _is_pil_image(image):
            image = self._as_hwc(image)
            if not center_crop:
                return image
            if image.dtype != np.uint8:
                image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
            image = _pil().fromarray(image)
        if center_crop:
            image = self._resize_crop(image)
        return np.asarray(image, dtype=np.uint8)

    @staticmethod
    def _as_hwc(a):
        a = np.asarray(a)
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
            raise ValueError(f"an image must be H x W, H x W x 3 (or x 1, x 4) , got shape {a.shape}")
        if a.shape[2] == 1:
            a = np.repeat(a, 3, axis=2)
        elif a.shape[2] == 4:
            a = a[:, :, :3]  # drop alpha
        if a.dtype == np.uint8:
            return a
        if a.dtype.kind == "f":
            if a.size and (np.nanmin(a) < -1e-6 or np.nanmax(a) > 1 + 1e-6):
                raise ValueError(
                    f"a floating-point image must hold values in [0, 1], got [{np.nanmin(a):g}, {np.nanmax(a):g}] "
                    "(pass uint8 for 0..255 images)"
                )
            return a.astype(np.float32)
        raise ValueError(f"images must be uint8 (0..255) or float in [0, 1], got dtype {a.dtype}")

    def _resize_crop(self, im):
        """torchvision's eval transform: shorter side to ``resize``, central ``crop`` square."""
        Image = _pil()
        w, h = im.size
        if w <= h:
            nw, nh = self.resize, int(self.resize * h / w)
        else:
            nw, nh = int(self.resize * w / h), self.resize
        method = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[self.interpolation]
        im = im.resize((nw, nh), method)
        c = self.crop
        if nw < c or nh < c:
            raise ValueError(f"crop {c} is larger than the resized image {nw} x {nh}")
        left, top = int(round((nw - c) / 2.0)), int(round((nh - c) / 2.0))
        return im.crop((left, top, left + c, top + c))

    def __call__(self, images, center_crop=False):
        """Images -> the network's input, an (N, 3, H, W) float32 NumPy array.

        ``images``: one image or a list of them, each a uint8 H x W x 3 array (0..255), a float
        array in [0, 1], a PIL image or a file path; or an N x H x W x 3 array. With
        ``center_crop=True`` each is first resized (shorter side ``resize``) and center-cropped
        to ``crop`` x ``crop``, the standard evaluation transform; otherwise all images must
        already share one size.
        """
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise ValueError("no images given")
        arrays = [self._load(im, center_crop) for im in images]
        sizes = {a.shape[:2] for a in arrays}
        if len(sizes) > 1:
            raise ValueError(
                f"the images have different sizes {sorted(sizes)}; pass center_crop=True or resize them first"
            )
        x = np.stack([a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a for a in arrays])
        lo, hi = self.range
        x = x * np.float32(hi - lo) + np.float32(lo)
        if self.channels == "BGR":
            x = x[..., ::-1]
        x = (x - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)

    # ---- images out ---------------------------------------------------------------------------
    def inverse(self, x):
        """The network's input convention -> uint8 RGB images.

        ``x``: a Tensor or array, (N, 3, H, W) -> (N, H, W, 3), or (3, H, W) -> (H, W, 3).
        Values outside the displayable range are clipped.
        """
        if hasattr(x, "data") and not isinstance(x, np.ndarray):  # a minigrad Tensor
            x = x.data
        if hasattr(x, "get") and not isinstance(x, np.ndarray):  # a CuPy array
            x = x.get()
        x = np.asarray(x, dtype=np.float32)
        single = x.ndim == 3
        if single:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"deprocess expects (N, 3, H, W) or (3, H, W), got shape {x.shape}")
        x = x.transpose(0, 2, 3, 1) * self.std + self.mean
        if self.channels == "BGR":
            x = x[..., ::-1]
        lo, hi = self.range
        x = (x - lo) / (hi - lo)
        out = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
        return out[0] if single else out


#: torchvision's ImageNet convention (all IMAGENET1K_V1 AlexNet / VGG weights).
TORCHVISION = Preprocessing("RGB", (0.0, 1.0), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 256, 224)
