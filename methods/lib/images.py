"""Pixel helpers every technique's pictures share: scaling to uint8, grey to RGB, nearest-neighbour
enlargement, and grids of tiles with their indices written on them.

Pillow is imported only where text is drawn.
"""

import importlib

import numpy as np

__all__ = ["chw_to_hwc", "contact_sheet", "enlarge", "grid", "require", "rgb", "to_uint8", "upscale_factor"]


def require(package, purpose):
    """Import an optional package, or raise an ImportError that says how to get it."""
    try:
        return importlib.import_module(package)
    except ImportError as error:
        pip_name = {"PIL": "pillow"}.get(package.split(".")[0], package.split(".")[0])
        raise ImportError(f"{purpose} needs {pip_name}: pip install {pip_name} ({error})") from error


def to_uint8(array, low=None, high=None):
    """Scale an array linearly to 0..255: ``low`` -> 0, ``high`` -> 255 (default: its own min and
    max, ignoring NaN); a constant array becomes 0."""
    array = np.asarray(array, dtype=np.float64)
    low = np.nanmin(array) if low is None else low
    high = np.nanmax(array) if high is None else high
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return np.clip(np.round(np.nan_to_num(scaled) * 255), 0, 255).astype(np.uint8)


def chw_to_hwc(array):
    """(C, H, W) -> (H, W, C), or (H, W) for a single channel."""
    array = np.asarray(array)
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def rgb(image):
    """A uint8 image as (H, W, 3): grey (H, W) or (H, W, 1) replicated, alpha dropped."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[..., :3]


def upscale_factor(side, target=256):
    """The integer factor that brings ``side`` pixels to at least ``target`` (1 if already there)."""
    return max(1, -(-target // max(int(side), 1)))


def enlarge(image, factor):
    """Nearest-neighbour enlargement by an integer factor (every pixel becomes a factor^2 block)."""
    image = np.asarray(image)
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _label_strip(text, width, height, fill):
    """A strip ``height`` px high with ``text`` in black on ``fill``, the font shrunk until the text
    fits the width, as uint8 (height, width, 3)."""
    Image = require("PIL.Image", "labelling tiles")
    ImageDraw = require("PIL.ImageDraw", "labelling tiles")
    ImageFont = require("PIL.ImageFont", "labelling tiles")
    strip = Image.new("RGB", (width, height), (fill, fill, fill))
    size = max(6, height - 2)
    font = ImageFont.load_default(size=size)
    while size > 6 and font.getlength(text) > width - 2:
        size -= 1
        font = ImageFont.load_default(size=size)
    ImageDraw.Draw(strip).text((1, (height - size) // 2 - 1), text, fill=(0, 0, 0), font=font)
    return np.asarray(strip)


def grid(images, columns=None, pad=1, fill=255, labels=None):
    """Tile equally sized uint8 images (H x W or H x W x 3) into one image, row by row.

    ``labels``: one string per tile (e.g. its channel index), written above it in a strip.
    """
    images = [np.asarray(image) for image in images]
    if not images:
        raise ValueError("grid needs at least one image")
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ValueError(f"grid needs images of one shape, got {sorted(shapes)}")
    if labels is not None:
        if len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} tiles")
        h, w = images[0].shape[:2]
        strip = min(24, max(10, w // 4))
        images = [np.concatenate([_label_strip(str(label), w, strip, fill), rgb(image)], axis=0)
                  for label, image in zip(labels, images)]
    columns = columns or int(np.ceil(np.sqrt(len(images))))
    rows = -(-len(images) // columns)
    h, w = images[0].shape[:2]
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad) + images[0].shape[2:], fill, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = image
    return canvas


def contact_sheet(paths, labels, cell=(420, 600), columns=3, pad=6):
    """The pictures in ``paths`` (image files) side by side: each scaled to fit a ``cell`` (height,
    width), centred on white, under its label, ``columns`` to a row (fewer when there are fewer)."""
    Image = require("PIL.Image", "drawing a contact sheet")
    tiles = []
    for path in paths:
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = min(cell[0] / im.height, cell[1] / im.width)
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
            tile = np.full(tuple(cell) + (3,), 255, np.uint8)
            top, left = (cell[0] - im.height) // 2, (cell[1] - im.width) // 2
            tile[top:top + im.height, left:left + im.width] = np.asarray(im)
            tiles.append(tile)
    return grid(tiles, columns=min(columns, len(tiles)), pad=pad, labels=labels)
