"""Checkpoint conversion (torch ``.pth`` -> our safetensors) and loading for minigrad.models.

:func:`convert_pth` is what ``python -m weights convert`` and ``fetch`` run: hash the source,
check the hash when the file is a known download, read it with the torch-free reader, check
every key and shape against the architecture's layer table, and write a safetensors file whose
metadata says what it holds (arch, source file and SHA-256, preprocessing, class list) so a
model can be rebuilt from the file alone.

:func:`load_state` is what ``minigrad.models`` calls for ``weights=<path or name>``.
"""

import json
import os

import numpy as np

from weights import archs, registry
from weights.errors import CheckpointError
from weights.safetensors import SafetensorsFile, save_file
from weights.torch_pth import load_pth, sniff_format
from weights.untrusted import escaped, open_regular, shown

__all__ = ["ConvertResult", "convert_pth", "load_state", "read_format"]

FORMAT_TAG = "minigrad-weights-1"


class ConvertResult:
    """What a conversion produced: output path, arch, source SHA-256, tensor count, bytes, format."""

    def __init__(self, path, arch, sha256, count, nbytes, fmt, num_classes):
        self.path, self.arch, self.sha256, self.count = path, arch, sha256, count
        self.nbytes, self.fmt, self.num_classes = nbytes, fmt, num_classes


def read_format(path):
    """Sniff ``path``'s format (see :func:`weights.torch_pth.sniff_format`); a device, FIFO or
    other non-regular file is refused here, before anything hashes or parses it."""
    with open_regular(path) as f:
        try:
            return sniff_format(f.read(264))
        except OSError as e:
            raise CheckpointError(f"{escaped(os.fspath(path), 300)}: cannot read ({e.strerror or e})") from None


def fit_to_arch(tensors, arch, source):
    """Check ``tensors`` against ``arch`` (guessing it when None) and return
    ``(arch, num_classes, {key: float32 array})`` with optional BatchNorm counters dropped."""
    shapes = {k: v.shape for k, v in tensors.items()}
    if arch is None:
        arch = archs.guess_arch(shapes)
        if arch is None:
            raise CheckpointError(
                f"{source}: cannot tell which architecture this is (it matches none of "
                f"{', '.join(archs.ARCHS)}); pass --arch"
            )
    elif arch not in archs.ARCHS:
        raise CheckpointError(f"unknown architecture {shown(arch)}; known: {', '.join(archs.ARCHS)}")
    missing, unexpected, mismatched = archs.check_state(arch, shapes)
    if missing or unexpected or mismatched:
        raise CheckpointError(f"{source}: " + archs.describe_mismatch(arch, missing, unexpected, mismatched))
    want = archs.expected_state(arch, archs._num_classes(shapes) or 1000)
    out = {}
    for key in want:
        arr = tensors[key]
        if arr.dtype.kind != "f":
            raise CheckpointError(f"{source}: tensor {key!r} has dtype {arr.dtype}; expected floating point")
        out[key] = arr if arr.dtype == np.float32 else arr.astype(np.float32)
    return arch, int(want["classifier.6.weight"][0]), out


def convert_pth(src, out, arch=None, *, overwrite=False, check_hash=True, progress=None):
    """Convert the torch checkpoint ``src`` into the safetensors file ``out``.

    ``arch`` (one of :data:`weights.archs.ARCHS`) is guessed from the keys when None. When
    ``src``'s file name is a registry download (e.g. ``vgg16-397923af.pth``) its SHA-256 is
    verified first unless ``check_hash=False``. Never replaces ``out`` unless ``overwrite``.
    """
    src, out = os.fspath(src), os.fspath(out)
    if not overwrite and os.path.lexists(out):
        raise CheckpointError(f"{escaped(out, 300)} already exists; refusing to overwrite it (use --force)")
    if arch is not None and arch not in archs.ARCHS:
        raise CheckpointError(f"unknown architecture {shown(arch)}; known: {', '.join(archs.ARCHS)}")
    fmt = read_format(src)
    digest = registry.sha256_file(src, progress)
    entry = registry.find_by_filename(src)
    if entry is not None:
        if check_hash:
            registry.verify_sha256(entry, digest, src)
        if arch is None:
            arch = entry.arch
    tensors = load_pth(src)
    arch, num_classes, state = fit_to_arch(tensors, arch, os.path.basename(src))
    labels = registry.LABELS_IMAGENET if num_classes == 1000 else ""
    metadata = {
        "format": FORMAT_TAG,
        "arch": arch,
        "num_classes": str(num_classes),
        "source": os.path.basename(src),
        "source_sha256": digest,
        "source_format": fmt,
        "preprocessing": json.dumps(registry.PREPROCESS_TORCHVISION, sort_keys=True),
        "labels": labels,
    }
    save_file(state, out, metadata, overwrite=overwrite)
    nbytes = sum(a.nbytes for a in state.values())
    return ConvertResult(out, arch, digest, len(state), nbytes, fmt, num_classes)


def load_state(path, copy_on_write=False):
    """Read weights for a model from ``path``: our safetensors (memory-mapped; with
    ``copy_on_write`` the arrays are writable private pages) or a torch ``.pth`` (read without
    torch; read-only views). Returns ``(tensors, metadata)``; a ``.pth`` gets metadata
    describing torchvision's conventions."""
    path = os.fspath(path)
    fmt = read_format(path)
    if fmt == "safetensors":
        f = SafetensorsFile(path, copy_on_write)
        return {k: f[k] for k in f.keys()}, dict(f.metadata)
    tensors = load_pth(path)
    meta = {"source": os.path.basename(path), "source_format": fmt,
            "preprocessing": json.dumps(registry.PREPROCESS_TORCHVISION, sort_keys=True),
            "labels": registry.LABELS_IMAGENET}
    return tensors, meta
