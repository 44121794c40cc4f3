"""Pixel helpers every technique's pictures share: scaling to uint8, grey to RGB, nearest-neighbour
enlargement, resizing, and grids of tiles with their indices written on them.

Pillow is imported only where pictures are resized or text is drawn.
"""

import importlib

import numpy as np

__all__ = ["chw_to_hwc", "colorize", "colormap", "contact_sheet", "enlarge", "grid", "require", "resize", "rgb",
           "shrink", "tile_vector", "to_uint8", "upscale_factor"]


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


def colormap(name, count=256):
    """matplotlib's colour map ``name`` as ``count`` uint8 RGB colours, low to high."""
    colours = require("matplotlib", "colouring maps").colormaps[name](np.linspace(0.0, 1.0, count))
    return np.round(colours[:, :3] * 255).astype(np.uint8)


def colorize(values, cmap, low=None, high=None):
    """A 2-D map as uint8 RGB (H, W, 3) through colour map ``cmap``, ``low`` -> its first colour
    and ``high`` -> its last (default: the map's range); what a figure's ``imshow`` with a colour
    bar from ``low`` to ``high`` shows, without drawing a figure."""
    return colormap(cmap)[to_uint8(values, low, high)]


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


def tile_vector(vector):
    """A 1-D vector of units (a fully connected layer) as a near-square 2-D tile, row by row
    (missing cells NaN)."""
    vector = np.asarray(vector, dtype=np.float64).ravel()
    n = vector.size
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    tile = np.full(rows * cols, np.nan)
    tile[:n] = vector
    return tile.reshape(rows, cols)


def upscale_factor(side, target=256):
    """The integer factor that brings ``side`` pixels to at least ``target`` (1 if already there)."""
    return max(1, -(-target // max(int(side), 1)))


def enlarge(image, factor):
    """Nearest-neighbour enlargement by an integer factor (every pixel becomes a factor^2 block)."""
    image = np.asarray(image)
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def resize(image, side):
    """A picture (H, W) or (H, W, C), uint8 or float in [0, 1], scaled with Pillow's Lanczos filter
    so that its longer side is ``side`` pixels, in its own dtype and range."""
    Image = require("PIL.Image", "resizing pictures")
    image = np.asarray(image)
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return image
    planes = image.reshape(h, w, -1)
    if image.dtype == np.uint8:
        out = [np.asarray(Image.fromarray(planes[..., c]).resize(size, Image.LANCZOS)) for c in range(planes.shape[2])]
    else:
        out = [np.clip(np.asarray(Image.fromarray(planes[..., c].astype(np.float32), "F").resize(size, Image.LANCZOS)),
                       0, 1).astype(image.dtype) for c in range(planes.shape[2])]
    return np.stack(out, axis=2).reshape((size[1], size[0]) + image.shape[2:])


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


def shrink(images, largest, side):
    """uint8 images (N, H, W, C) as float32 in [0, 1], averaged down to ``side`` x ``side`` when
    either side exceeds ``largest`` (adaptive average pooling, PyTorch's cell boundaries); for
    techniques that train small networks or cluster patches and need no more pixels than that."""
    from minigrad import functional as F
    from minigrad import tensor

    x = np.asarray(images, np.float32) / 255.0
    if max(x.shape[1:3]) <= largest:
        return x
    pooled = F.adaptive_avg_pool2d(tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), (side, side))
    return np.ascontiguousarray(pooled.numpy().transpose(0, 2, 3, 1))


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
