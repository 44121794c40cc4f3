"""The three guards every reader in ``weights`` puts between a file and the user.

* :func:`open_regular` — checkpoints are opened only if they are regular files. A device
  (``/dev/zero``), FIFO or socket is refused before a byte is read: hashing or parsing one
  would never end, and opening a FIFO for reading would block until some writer appears
  (so it is opened non-blocking, and only then checked).
* :func:`shown` / :func:`escaped` — text taken from a file (tensor names, metadata, storage
  keys) or from the command line is escaped and capped before it reaches an error message or
  the terminal: control characters (``"\\x1b[2J"`` would clear the screen), invisible format
  characters such as the bidi override U+202E, and lone surrogates (which no encoder accepts)
  become ``\\x..``/``\\u....`` escapes, and nothing printed grows with the file. Objects that
  are not text or numbers are never ``repr``'d: a tuple from a pickle may have 2**40 leaves.
* :func:`shape_problem` — a shape from a file must be one NumPy can hold; ``(0, 2**63)`` would
  otherwise surface as NumPy's ValueError or OverflowError.
"""

import os
import stat
import unicodedata

import numpy as np

from weights.errors import CheckpointError

__all__ = ["MAX_BYTES", "MAX_DIMS", "escaped", "open_regular", "shape_problem", "shown", "shown_shape"]

#: NumPy's limit on the number of dimensions (64 since NumPy 2.0, 32 before).
MAX_DIMS = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32
#: The largest byte count (and stride) an ndarray can have: a signed 64-bit index.
MAX_BYTES = 2**63 - 1
#: Default cap, in characters, on one field shown from a file.
FIELD_LIMIT = 120

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # so that opening a FIFO does not wait for a writer (POSIX)
_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_ESCAPED_CATEGORIES = frozenset(["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"])
_KINDS = [(stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")]


def _escape_char(c):
    if c in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[c]
    if unicodedata.category(c) not in _ESCAPED_CATEGORIES:
        return c
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def escaped(text, limit=FIELD_LIMIT):
    """``text`` safe to print: backslashes doubled, control, format, private-use, unassigned and
    surrogate characters escaped as in Python literals, and at most about ``limit`` characters
    (a longer text ends in ``...(+N characters)``). Only the kept prefix is examined."""
    out, used = [], 0
    for i, c in enumerate(text[: limit + 1]):
        e = _escape_char(c)
        if used + len(e) > limit:
            return "".join(out) + f"...(+{len(text) - i} characters)"
        out.append(e)
        used += len(e)
    return "".join(out)


def shown(value, limit=FIELD_LIMIT):
    """A short, safe rendering of an untrusted value for a message: strings quoted and
    :func:`escaped`, bytes likewise with a ``b`` prefix, numbers (at most 40 digits) as they
    are, anything else only by its type (never ``repr``: it may be a tuple bomb)."""
    if isinstance(value, str):
        return "'" + escaped(value, limit) + "'"
    if isinstance(value, (bytes, bytearray)):
        return "b'" + escaped(bytes(value[: limit + 1]).decode("latin-1"), limit) + "'"
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**40 else f"<a {value.bit_length()}-bit integer>"
    if isinstance(value, float):
        return repr(value)
    kind = next((t.__name__ for t in (list, dict, tuple, set, frozenset) if isinstance(value, t)), None)
    return f"<a {kind or type(value).__name__.lstrip('_')}>"


def open_regular(path):
    """Open ``path`` for binary reading if it is a regular file; otherwise raise
    :class:`CheckpointError` naming what it is. Symbolic links are followed (to their target's
    kind). The file is opened before it is checked, so what is checked is what is read."""
    path = os.fspath(path)
    name = escaped(path, 300)
    try:
        fd = os.open(path, os.O_RDONLY | _NONBLOCK | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise CheckpointError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{name}: is a directory, not a checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"{name}: cannot read ({e.strerror or e})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((k for test, k in _KINDS if test(mode)), "not a regular file")
            raise CheckpointError(f"{name}: is {kind}, not a checkpoint file; refusing to read it")
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def shape_problem(shape, itemsize):
    """What is wrong with ``shape`` (a tuple of non-negative ints) for NumPy, or None: more than
    :data:`MAX_DIMS` dimensions, or a byte count (of the non-zero dimensions, as NumPy checks
    even for empty arrays) beyond :data:`MAX_BYTES`. Phrased to follow "tensor 'name' "."""
    if len(shape) > MAX_DIMS:
        return f"has {len(shape)} dimensions; NumPy allows at most {MAX_DIMS}"
    total = itemsize
    for d in shape:
        if d > MAX_BYTES:
            return f"has a dimension of size {shown(d)}, beyond 2**63 - 1"
        total *= d or 1
        if total > MAX_BYTES:
            return f"has shape {shown_shape(shape)}: more than 2**63 bytes, which no array can hold"
    return None


def shown_shape(shape, limit=8):
    """``[d0, d1, ...]`` with at most ``limit`` dimensions listed."""
    dims = [shown(d) for d in shape[:limit]]
    return "[" + ", ".join(dims) + (f", ... ({len(shape)} dimensions)" if len(shape) > limit else "") + "]"
