"""Image helpers shared by every technique: scaling to uint8, grids, heatmaps, PNG files.

Pillow and matplotlib are imported only inside the functions that need them.
"""

import os

import numpy as np


def require(package, purpose):
    """Import an optional package, or raise an ImportError that says how to get it."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as error:
        pip_name = {"PIL": "pillow"}.get(package, package)
        raise ImportError(f"{purpose} needs {pip_name}: pip install {pip_name} ({error})") from error


def to_uint8(array, low=None, high=None):
    """Min-max scale an array to 0..255 (the range over the whole array unless low/high are given)."""
    array = np.asarray(array, dtype=np.float64)
    low = np.nanmin(array) if low is None else low
    high = np.nanmax(array) if high is None else high
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return np.clip(np.round(np.nan_to_num(scaled) * 255), 0, 255).astype(np.uint8)


def chw_to_hwc(array):
    """(C, H, W) -> (H, W, C), or (H, W) for a single channel."""
    array = np.asarray(array)
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def grid(images, columns=None, pad=1, fill=255):
    """Tile equally sized uint8 images (HxW or HxWxC) into one image, row by row."""
    images = [np.asarray(image) for image in images]
    if not images:
        raise ValueError("grid needs at least one image")
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(f"grid needs images of one shape, got {sorted(shapes)}")
    columns = columns or int(np.ceil(np.sqrt(len(images))))
    rows = -(-len(images) // columns)
    h, w = images[0].shape[:2]
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad) + images[0].shape[2:], fill, images[0].dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = image
    return canvas


def heatmap(values, colormap="jet"):
    """Colour a 2-D map (min-max scaled) with a matplotlib colormap: (H, W) -> uint8 (H, W, 3)."""
    matplotlib = require("matplotlib", "drawing a heatmap")
    scaled = to_uint8(values)
    return (matplotlib.colormaps[colormap](scaled / 255.0)[..., :3] * 255).astype(np.uint8)


def overlay(image, values, alpha=0.5, colormap="jet"):
    """Blend a heatmap of ``values`` (resized to the image by nearest sampling) over an RGB/gray image."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    rows = np.arange(image.shape[0]) * values.shape[0] // image.shape[0]
    cols = np.arange(image.shape[1]) * values.shape[1] // image.shape[1]
    colours = heatmap(np.asarray(values)[rows][:, cols], colormap)
    return np.round((1 - alpha) * image + alpha * colours).astype(np.uint8)


def save_png(path, image, overwrite=False):
    """Write a uint8 HxW or HxWx3 array as PNG; refuses to replace an existing file unless overwrite."""
    image_module = require("PIL.Image", "saving images")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (or --force) to replace it")
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"save_png needs a uint8 image, got {image.dtype}; scale it with to_uint8 first")
    image_module.fromarray(image).save(path)
    return path


def load_image(path, size=None, grayscale=False):
    """Read an image file as uint8 HxWx3 (or HxW with grayscale), optionally resized to (w, h)."""
    image_module = require("PIL.Image", "reading images")
    try:
        with image_module.open(path) as image:
            image = image.convert("L" if grayscale else "RGB")
            if size is not None:
                image = image.resize(size, image_module.BILINEAR)
            return np.asarray(image).copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"no image at {path}") from None
    except OSError as error:
        raise ValueError(f"cannot read {path} as an image: {error}") from None
