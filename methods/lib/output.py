"""Writing results safely: the output folder is checked before any work, nothing is written through
a symbolic link, every file appears whole or not at all, and JSON is valid JSON.

* :func:`check_folder` runs before a technique starts: a folder that holds files is refused
  unless ``force`` ("replace my earlier results"), and a folder that is a link is refused always;
  nothing is created until there are results to write (:func:`prepare_folder`).
* :func:`write_file` writes to a temporary file in the folder and renames it into place
  (``weights.safetensors.atomic_write``), so a link planted at a result's name is replaced as a
  link with ``force``, and refused without: it is never followed.
"""

import io
import json
import math
import os
import re

import numpy as np

from methods.lib.images import require
from weights.safetensors import atomic_write

__all__ = ["check_folder", "jsonable", "prepare_folder", "remove_results", "safe_name", "write_file", "write_json", "write_png"]


def safe_name(name):
    """``name`` as a file name: anything but letters, digits, ``-``, ``_`` and ``.`` becomes ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip(".")
    return cleaned or "result"


def check_folder(path, force=False):
    """Raise, before any work and without touching anything, unless results can go to ``path``: a
    link (to a folder or anywhere) is refused, so is a file, and so is a folder that already holds
    entries unless ``force``."""
    path = os.fspath(path)
    if os.path.islink(path):
        raise ValueError(f"{path} is a symbolic link; refusing to write results through it")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"{path} exists and is not a folder")
        if os.listdir(path) and not force:
            raise FileExistsError(f"{path} already holds files; choose another --out, or pass --force to replace "
                                  "earlier results")
    return path


def prepare_folder(path, force=False):
    """:func:`check_folder`, then create the folder (and its parents) if needed. Returns the path."""
    path = check_folder(path, force)
    os.makedirs(path, exist_ok=True)
    return path


def remove_results(folder, technique):
    """Delete an earlier run's ``<technique>_*.png`` and ``<technique>.json`` in ``folder`` (links are
    removed as links, never followed), so that ``--force`` replaces results instead of mixing them."""
    prefix = safe_name(technique)
    for entry in os.scandir(folder):
        if (entry.name == f"{prefix}.json" or (entry.name.startswith(prefix + "_") and entry.name.endswith(".png"))) \
                and (entry.is_symlink() or entry.is_file(follow_symlinks=False)):
            os.unlink(entry.path)


def write_file(folder, name, data, force=False):
    """Write ``data`` (bytes) as ``folder/name`` atomically; an existing entry (file or link) is
    replaced only with ``force``, a link only as a link. Returns the path."""
    path = os.path.join(folder, safe_name(name))
    if os.path.isdir(path) and not os.path.islink(path):
        raise ValueError(f"{path} is a folder; cannot write a result there")
    atomic_write(path, lambda handle: handle.write(data), overwrite=force)
    return path


def write_png(folder, name, image, force=False):
    """Write a uint8 H x W or H x W x 3 array as ``folder/name`` (PNG)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"a picture must be uint8, got {image.dtype}")
    pil = require("PIL.Image", "saving pictures")
    buffer = io.BytesIO()
    pil.fromarray(image).save(buffer, format="PNG")
    return write_file(folder, name, buffer.getvalue(), force)


def jsonable(value, limit=10_000):
    """``value`` made of JSON types: arrays as lists (or a description past ``limit`` elements),
    NumPy scalars as numbers, NaN and infinities as None."""
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), limit) if value.size <= limit else f"array of shape {list(value.shape)}"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, limit) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def write_json(folder, name, value, force=False):
    """Write ``value`` as valid JSON (``allow_nan=False`` after :func:`jsonable`)."""
    text = json.dumps(jsonable(value), indent=2, allow_nan=False) + "\n"
    return write_file(folder, name, text.encode("utf-8"), force)
