"""Known pretrained checkpoints, where they live, how to check them, and the local cache.

Each :class:`Checkpoint` records torchvision's download URL, the file's SHA-256 (the full
digest where one is published by independent copies, otherwise the 8-hex prefix that torch.hub
embeds in the file name), its size, and the preprocessing and class list its weights expect.
Sources: torchvision's ``*_Weights.IMAGENET1K_V1`` enums, restated in
shared/notes/checkpoint-formats.md §1.1.

The cache folder is ``$MINIGRAD_HOME`` or ``~/.cache/minigrad``::

    checkpoints/<url file name>     downloads (kept so a later converter can re-read them)
    weights/<name>.safetensors      converted weights, what minigrad.models loads
    sha256.json                     full digests learnt on first verification of files whose
                                    registry entry holds only a prefix

Only :func:`download` touches the network, and only :mod:`weights.__main__`'s ``fetch`` calls it.
"""

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from weights.errors import CheckpointError
from weights.untrusted import escaped, open_regular, shown

__all__ = [
    "CHECKPOINTS",
    "Checkpoint",
    "LABELS_IMAGENET",
    "PREPROCESS_TORCHVISION",
    "cache_dir",
    "converted_path",
    "download",
    "find_by_filename",
    "get",
    "resolve",
    "sha256_file",
    "verify_sha256",
]

#: torchvision's ImageNet evaluation preprocessing (transforms._presets.ImageClassification).
PREPROCESS_TORCHVISION = {
    "channels": "RGB",
    "range": [0.0, 1.0],
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "resize": 256,
    "crop": 224,
    "interpolation": "bilinear",
}

#: Id of the class-name list shipped in weights/data/ (torchvision's ImageNet-1k names).
LABELS_IMAGENET = "imagenet1k-torchvision"

_BASE = "https://download.pytorch.org/models/"


class Checkpoint:
    """A known checkpoint: ``name`` (what ``fetch`` takes), ``arch``, ``url``, ``sha256`` (full
    64-hex digest or a prefix), ``size`` (bytes, exact where known, else from torchvision's MiB
    figure), ``fmt`` (``zip`` or ``legacy``), preprocessing dict and labels id."""

    def __init__(self, name, arch, filename, sha256, size, fmt, exact_size=False):
        self.name, self.arch, self.filename = name, arch, filename
        self.url = _BASE + filename
        self.sha256, self.size, self.fmt, self.exact_size = sha256, size, fmt, exact_size
        self.preprocessing, self.labels = PREPROCESS_TORCHVISION, LABELS_IMAGENET

    @property
    def max_size(self):
        """The most bytes a download of this file may have: its size, or 1 MiB more when the
        size is only known from torchvision's MiB figure."""
        return self.size if self.exact_size else self.size + (1 << 20)

    @property
    def full_digest(self):
        return len(self.sha256) == 64

    def __repr__(self):
        return f"Checkpoint({self.name!r}, {self.url!r})"


def _mib(x):
    return int(round(x * 2**20))


CHECKPOINTS = {
    c.name: c
    for c in [
        Checkpoint("alexnet", "alexnet", "alexnet-owt-7be5be79.pth",
                   "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", 244408911, "zip", True),
        Checkpoint("vgg11", "vgg11", "vgg11-8a719046.pth", "8a719046", _mib(506.84), "zip"),
        Checkpoint("vgg11_bn", "vgg11_bn", "vgg11_bn-6002323d.pth", "6002323d", _mib(506.881), "legacy"),
        Checkpoint("vgg13", "vgg13", "vgg13-19584684.pth", "19584684", _mib(507.545), "zip"),
        Checkpoint("vgg13_bn", "vgg13_bn", "vgg13_bn-abd245e5.pth", "abd245e5", _mib(507.59), "legacy"),
        Checkpoint("vgg16", "vgg16", "vgg16-397923af.pth",
                   "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", 553433881, "legacy", True),
        Checkpoint("vgg16_bn", "vgg16_bn", "vgg16_bn-6c64b313.pth",
                   "6c64b3138f2f4fcb3bcc4cafde11619c4f440eb1631787e93a682fd88305888a", _mib(527.866), "legacy"),
        Checkpoint("vgg19", "vgg19", "vgg19-dcbb9e9d.pth",
                   "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44", 574673361, "legacy", True),
        Checkpoint("vgg19_bn", "vgg19_bn", "vgg19_bn-c79401a0.pth", "c79401a0", _mib(548.143), "legacy"),
    ]
}


def get(name):
    """The registry entry called ``name``; an unknown name lists the known ones."""
    try:
        return CHECKPOINTS[name]
    except (KeyError, TypeError):
        raise CheckpointError(f"unknown checkpoint {shown(name)}; known: {', '.join(CHECKPOINTS)}") from None


def find_by_filename(filename):
    """The entry whose download is called ``filename`` (its base name), or None."""
    base = os.path.basename(os.fspath(filename))
    return next((c for c in CHECKPOINTS.values() if c.filename == base), None)


def cache_dir():
    """``$MINIGRAD_HOME`` or ``~/.cache/minigrad`` (not created here)."""
    env = os.environ.get("MINIGRAD_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "minigrad"


def download_path(entry):
    return cache_dir() / "checkpoints" / entry.filename


def converted_path(name):
    """Where ``fetch`` stores the converted weights of registry entry ``name``."""
    return cache_dir() / "weights" / f"{get(name).name}.safetensors"


def resolve(weights):
    """Map a ``weights=`` argument (registry name or path) to an existing file path."""
    if isinstance(weights, str) and weights in CHECKPOINTS:
        path = converted_path(weights)
        if not path.exists():
            raise CheckpointError(
                f"the {weights} weights are not in the cache ({path}); run:  python -m weights fetch {weights}"
            )
        return path
    path = Path(os.fspath(weights)).expanduser()
    if not path.exists():
        hint = "" if os.sep in str(weights) or "." in str(weights) else f" and not a known checkpoint ({', '.join(CHECKPOINTS)})"
        raise CheckpointError(f"{weights}: no such file{hint}")
    return path


def sha256_file(path, progress=None):
    """Hex SHA-256 of the regular file at ``path`` (a device or FIFO would never end), read in
    4 MiB chunks."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        try:
            while chunk := f.read(1 << 22):
                h.update(chunk)
                if progress is not None:
                    progress(len(chunk))
        except OSError as e:
            raise CheckpointError(f"{escaped(os.fspath(path), 300)}: cannot read ({e.strerror or e})") from None
    return h.hexdigest()


def _learnt_path():
    return cache_dir() / "sha256.json"


def _learnt():
    try:
        data = json.loads(_learnt_path().read_text())
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def verify_sha256(entry, digest, source):
    """Check ``digest`` (of file ``source``) against ``entry``; raise on a mismatch.

    A full registry digest must match exactly. A prefix must match, and the first full digest
    seen for it is remembered in the cache's ``sha256.json`` so later files must match it all.
    """
    if entry.full_digest:
        if digest != entry.sha256:
            raise CheckpointError(
                f"{source}: wrong SHA-256 for {entry.name}: the file has {digest}, expected {entry.sha256} "
                f"(a damaged or different download; delete it and fetch again)"
            )
        return
    if not digest.startswith(entry.sha256):
        raise CheckpointError(
            f"{source}: wrong SHA-256 for {entry.name}: the file has {digest}, which does not start with "
            f"the published prefix {entry.sha256} (a damaged or different download)"
        )
    learnt = _learnt().get(entry.filename)
    if learnt is not None and learnt != digest:
        raise CheckpointError(
            f"{source}: wrong SHA-256 for {entry.name}: the file has {digest}, but {learnt} was recorded "
            f"on first verification in {_learnt_path()}"
        )
    if learnt is None:
        try:
            path = _learnt_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            data = _learnt()
            data[entry.filename] = digest
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, path)
        except OSError:
            pass  # recording is a convenience; the prefix check already passed


class Progress:
    """A one-line progress display on stderr: bytes done, total, percent, rate."""

    def __init__(self, label, total, stream=None):
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = self.last = time.monotonic()
        self.last_pct = -10

    def __call__(self, n):
        self.done += n
        now = time.monotonic()
        pct = 100 * self.done / self.total if self.total else None
        if self.tty and now - self.last < 0.1:
            return
        if not self.tty and (pct is None or pct < self.last_pct + 10):
            return
        self.last = now
        if pct is not None:
            self.last_pct = pct - pct % 10
        self._show(now)

    def _show(self, now):
        rate = self.done / max(now - self.start, 1e-9) / 2**20
        total = f"/{self.total / 2**20:.1f}" if self.total else ""
        pct = f" {100 * self.done / self.total:5.1f}%" if self.total else ""
        line = f"{self.label}: {self.done / 2**20:.1f}{total} MiB{pct} {rate:.1f} MiB/s"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self):
        self._show(time.monotonic())
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()


def download(url, dest, *, expected_size=None, max_size=None, progress=True, timeout=60):
    """Download ``url`` to ``dest`` through ``dest.part`` + rename; return the SHA-256.

    Stops with an error as soon as more than ``max_size`` bytes arrive (a mirror serving the
    wrong file, or ``file:///dev/zero``); ``expected_size`` only feeds the progress display.
    ``dest.part`` is created afresh (a link left in its place is not followed) and removed
    whatever ends the download early: an error, a refused size, Ctrl-C.
    The only function in minigrad that opens a network connection.
    """
    import urllib.request  # here, so importing weights never loads the network stack
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    shown_url = escaped(url, 300)
    h = hashlib.sha256()
    finished = False
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part.unlink(missing_ok=True)
        with urllib.request.urlopen(url, timeout=timeout) as r:
            length = r.headers.get("Content-Length") if hasattr(r, "headers") else None
            length = int(length) if length and length.isdigit() else None
            if max_size is not None and length is not None and length > max_size:
                raise CheckpointError(
                    f"download of {shown_url} refused: it announces {length} bytes, more than the "
                    f"{max_size} that {dest.name} can have"
                )
            bar = Progress(dest.name, length or expected_size) if progress else None
            received = 0
            with open(part, "xb") as f:
                while chunk := r.read(1 << 20):
                    received += len(chunk)
                    if max_size is not None and received > max_size:
                        raise CheckpointError(
                            f"download of {shown_url} stopped: it sent more than the {max_size} bytes "
                            f"that {dest.name} can have (a different file?)"
                        )
                    f.write(chunk)
                    h.update(chunk)
                    if bar:
                        bar(len(chunk))
            if bar:
                bar.close()
        os.replace(part, dest)
        finished = True
    except CheckpointError:
        raise
    except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        if getattr(e, "filename", None):
            reason = f"{reason}: {e.filename}"
        raise CheckpointError(f"download of {shown_url} failed: {escaped(str(reason), 300)}") from None
    finally:
        if not finished:
            part.unlink(missing_ok=True)
    return h.hexdigest()
