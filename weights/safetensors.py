"""Our own reader and writer for the safetensors format (no dependency beyond NumPy).

Why this format: it holds nothing but named arrays, so loading it can never run code (unlike a
pickle), and its data are raw little-endian bytes at known offsets, so a 500 MB VGG16 opens
through ``numpy.memmap`` in milliseconds and pages in only the layers that are used.

Layout (https://github.com/huggingface/safetensors, restated)::

    bytes 0..8        N, the header length, unsigned 64-bit little-endian
    bytes 8..8+N      a UTF-8 JSON object:
                        {"<name>": {"dtype": "F32", "shape": [64, 3, 3, 3],
                                    "data_offsets": [begin, end]},
                         ...,
                         "__metadata__": {"<str>": "<str>", ...}}      (optional)
    bytes 8+N..       the data buffer: every tensor in C order, little-endian, packed

``data_offsets`` are relative to the start of the data buffer, ``end`` exclusive. The reader
here checks everything a hostile or damaged file could get wrong before it hands out a single
array: the header length is bounded, the JSON is an object with no duplicate keys, dtypes are
known, shapes are lists of non-negative integers, every tensor's byte count is
``prod(shape) * itemsize``, and the tensors tile the data buffer exactly (no gap, no overlap,
nothing missing at the end). Anything else raises :class:`weights.CheckpointError` naming the
problem.

The writer pads the header with spaces so the data buffer starts 8-byte aligned, orders the
tensors by descending alignment then name (as the reference writer does; readers index by
name), writes through a temporary file in the target folder and renames it into place, and
refuses to replace an existing file unless ``overwrite=True``.
"""

import json
import math
import os
import secrets

import numpy as np

from weights.errors import CheckpointError

__all__ = [
    "DTYPES",
    "MAX_HEADER_BYTES",
    "SafetensorsFile",
    "load_file",
    "read_header",
    "save_file",
]

#: The largest header the reader accepts (the reference implementation's bound).
MAX_HEADER_BYTES = 100_000_000

#: safetensors dtype code -> (NumPy dtype or None when NumPy has none, itemsize in bytes).
DTYPES = {
    "BOOL": (np.dtype("?"), 1),
    "U8": (np.dtype("u1"), 1),
    "I8": (np.dtype("i1"), 1),
    "I16": (np.dtype("<i2"), 2),
    "U16": (np.dtype("<u2"), 2),
    "F16": (np.dtype("<f2"), 2),
    "I32": (np.dtype("<i4"), 4),
    "U32": (np.dtype("<u4"), 4),
    "F32": (np.dtype("<f4"), 4),
    "F64": (np.dtype("<f8"), 8),
    "I64": (np.dtype("<i8"), 8),
    "U64": (np.dtype("<u8"), 8),
    # Legal safetensors dtypes that NumPy cannot represent. BF16 is widened to float32 on
    # read (a copy); the 8-bit floats are refused when the tensor is asked for.
    "BF16": (None, 2),
    "F8_E5M2": (None, 1),
    "F8_E4M3": (None, 1),
}

_NUMPY_TO_CODE = {
    (kind, size): code
    for code, (dt, size) in DTYPES.items()
    if dt is not None
    for kind in [dt.kind]
}

_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


class TensorInfo:
    """One header entry, validated: ``dtype`` code, ``shape`` tuple, ``begin``/``end`` offsets."""

    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name, dtype, shape, begin, end):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end

    @property
    def nbytes(self):
        return self.end - self.begin

    def __repr__(self):
        return f"TensorInfo({self.name!r}, {self.dtype}, {list(self.shape)}, [{self.begin}, {self.end}])"


class Header:
    """A parsed and validated safetensors header.

    ``tensors`` maps name -> :class:`TensorInfo` in file order, ``metadata`` is the
    ``__metadata__`` string map (empty when absent), ``data_start`` is the absolute offset of
    the data buffer, ``file_size`` the size of the file that was checked.
    """

    def __init__(self, tensors, metadata, data_start, file_size):
        self.tensors, self.metadata = tensors, metadata
        self.data_start, self.file_size = data_start, file_size


def _fail(path, msg):
    raise CheckpointError(f"{path}: not a valid safetensors file: {msg}")


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise CheckpointError(f"duplicate key {key!r} in the JSON header")
        out[key] = value
    return out


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_header(raw, path, buffer_len):
    """Check the JSON header bytes ``raw`` against a data buffer of ``buffer_len`` bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        _fail(path, f"the header is not UTF-8 ({e.reason} at byte {8 + e.start})")
    if not text.lstrip(" \t\r\n").startswith("{"):
        _fail(path, "the header is not a JSON object (it must start with '{')")
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates)
    except CheckpointError as e:
        _fail(path, str(e))
    except RecursionError:
        _fail(path, "the JSON header is nested too deeply")
    except ValueError as e:
        _fail(path, f"the header is not valid JSON ({e})")
    if not isinstance(obj, dict):
        _fail(path, "the header is not a JSON object")

    metadata = obj.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        _fail(path, '"__metadata__" must be a map from strings to strings')

    tensors = {}
    for name, entry in obj.items():
        if not isinstance(entry, dict):
            _fail(path, f"entry {name!r} is not a JSON object")
        if set(entry) != _ENTRY_KEYS:
            missing, extra = _ENTRY_KEYS - set(entry), set(entry) - _ENTRY_KEYS
            what = []
            if missing:
                what.append(f"missing {sorted(missing)}")
            if extra:
                what.append(f"unexpected {sorted(extra)}")
            _fail(path, f"entry {name!r} has the wrong fields ({', '.join(what)})")
        code = entry["dtype"]
        if not isinstance(code, str) or code not in DTYPES:
            _fail(path, f"tensor {name!r} has unknown dtype {code!r} (known: {', '.join(DTYPES)})")
        shape = entry["shape"]
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            _fail(path, f"tensor {name!r} has shape {shape!r}; a shape is a list of non-negative integers")
        if len(shape) > 64:
            _fail(path, f"tensor {name!r} has {len(shape)} dimensions (NumPy allows at most 64)")
        offs = entry["data_offsets"]
        if not (isinstance(offs, list) and len(offs) == 2 and all(_is_int(o) for o in offs)):
            _fail(path, f"tensor {name!r} has data_offsets {offs!r}; expected [begin, end] integers")
        begin, end = offs
        if not 0 <= begin <= end:
            _fail(path, f"tensor {name!r} has data_offsets [{begin}, {end}]; need 0 <= begin <= end")
        need = math.prod(shape) * DTYPES[code][1]
        if end - begin != need:
            _fail(
                path,
                f"tensor {name!r} ({code} {shape}) needs {need} bytes but its data_offsets "
                f"[{begin}, {end}] span {end - begin}",
            )
        tensors[name] = TensorInfo(name, code, tuple(shape), begin, end)

    # The tensors must tile the data buffer exactly: sorted by offset, each starts where the
    # previous one ended, the first at 0 and the last at the end of the file.
    pos, prev = 0, None
    for info in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if info.begin != pos:
            if info.begin < pos:
                _fail(path, f"tensors {prev!r} and {info.name!r} overlap in the data buffer")
            where = f"after tensor {prev!r}" if prev is not None else "at the start of the data buffer"
            _fail(path, f"{info.begin - pos} unused bytes {where} (a gap before {info.name!r})")
        pos, prev = info.end, info.name
    if pos > buffer_len:
        _fail(
            path,
            f"the file is truncated: the tensors need {pos} bytes after the header but only "
            f"{buffer_len} are present",
        )
    if pos < buffer_len:
        _fail(path, f"{buffer_len - pos} trailing bytes after the last tensor are not described by the header")
    return tensors, metadata


def read_header(path):
    """Read and validate the header of the safetensors file at ``path``; return a :class:`Header`.

    Reads only the first ``8 + N`` bytes; never more than the file holds.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            prefix = f.read(8)
            if len(prefix) < 8:
                _fail(path, f"the file has {size} bytes, fewer than the 8-byte header length")
            n = int.from_bytes(prefix, "little")
            if n > MAX_HEADER_BYTES:
                _fail(path, f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
            if 8 + n > size:
                _fail(path, f"the file is truncated: the header claims {n} bytes but only {size - 8} follow")
            if n < 2:
                _fail(path, f"header length {n} is too short for a JSON object")
            raw = f.read(n)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a safetensors file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(raw) != n:
        _fail(path, "the file changed size while being read")
    tensors, metadata = _parse_header(raw, path, size - 8 - n)
    return Header(tensors, metadata, 8 + n, size)


class SafetensorsFile:
    """A safetensors file opened through ``numpy.memmap``; a mapping name -> array.

    Opening parses and validates the header only; ``f[name]`` returns an ndarray that views the
    mapped file (no copy, pages load on first touch), except BF16 tensors, which NumPy cannot
    hold and are widened to a float32 copy. The arrays are read-only, or with
    ``copy_on_write=True`` writable with private copy-on-write pages: a model can own them as
    its parameters and train, and the file never changes. Use as a context manager or call
    :meth:`close`; arrays already handed out keep the mapping alive.
    """

    def __init__(self, path, copy_on_write=False):
        self.path = os.fspath(path)
        self._mode = "c" if copy_on_write else "r"
        self.header = read_header(self.path)
        self.metadata = dict(self.header.metadata)
        self._mm = None
        if self.header.file_size > 0:
            try:
                self._mm = np.memmap(self.path, dtype=np.uint8, mode=self._mode, shape=(self.header.file_size,))
            except (OSError, ValueError) as e:
                raise CheckpointError(f"{self.path}: cannot map the file ({e})") from None

    def keys(self):
        return list(self.header.tensors)

    def __iter__(self):
        return iter(self.header.tensors)

    def __len__(self):
        return len(self.header.tensors)

    def __contains__(self, name):
        return name in self.header.tensors

    def items(self):
        return [(k, self[k]) for k in self.header.tensors]

    def __getitem__(self, name):
        try:
            info = self.header.tensors[name]
        except KeyError:
            raise KeyError(f"{name!r} is not in {self.path}") from None
        dt, _ = DTYPES[info.dtype]
        if info.dtype == "BF16":
            raw = self._view(info, np.dtype("<u2"))
            out = (raw.astype(np.uint32) << 16).view(np.float32)
            out.flags.writeable = False
            return out
        if dt is None:
            raise CheckpointError(
                f"{self.path}: tensor {name!r} has dtype {info.dtype}, which NumPy cannot represent"
            )
        return self._view(info, dt)

    def _view(self, info, dt):
        if info.nbytes == 0:
            out = np.empty(info.shape, dt)
            out.flags.writeable = self._mode == "c"
            return out
        return np.ndarray(info.shape, dtype=dt, buffer=self._mm, offset=self.header.data_start + info.begin)

    def close(self):
        """Drop this object's reference to the mapping (arrays handed out stay valid)."""
        self._mm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"SafetensorsFile({self.path!r}, {len(self)} tensors)"


def load_file(path, copy_on_write=False):
    """Return ``(tensors, metadata)``: a dict name -> memmap-backed array (read-only, or private
    copy-on-write with ``copy_on_write=True``), and the metadata map."""
    f = SafetensorsFile(path, copy_on_write)
    return {k: f[k] for k in f.keys()}, f.metadata


def _code_for(name, arr):
    code = _NUMPY_TO_CODE.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise CheckpointError(
            f"tensor {name!r} has dtype {arr.dtype}, which safetensors cannot store "
            f"(supported: bool, int8-64, uint8-64, float16/32/64)"
        )
    return code


def _tmp_name(path):
    folder, base = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{base}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write(path, write, *, overwrite=False):
    """Create ``path`` by calling ``write(fileobj)`` on a temporary file in the same folder,
    then renaming it into place, so an interrupted run never leaves a half-written file.

    Without ``overwrite`` an existing ``path`` is an error, checked before any work and again,
    atomically, at the final link (so a file that appears meanwhile is not replaced either).
    """
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        raise CheckpointError(f"{path} already exists; refusing to overwrite it (use overwrite=True / --force)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CheckpointError(f"cannot write {path}: folder {folder} does not exist")
    tmp = _tmp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise CheckpointError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails atomically if path exists
            except FileExistsError:
                raise CheckpointError(f"{path} already exists; refusing to overwrite it") from None
            except OSError:  # a filesystem without hard links
                if os.path.lexists(path):
                    raise CheckpointError(f"{path} already exists; refusing to overwrite it") from None
                os.replace(tmp, path)
    except OSError as e:
        raise CheckpointError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def save_file(tensors, path, metadata=None, *, overwrite=False):
    """Write ``tensors`` (a mapping name -> array-like) and ``metadata`` (str -> str) to ``path``.

    Arrays are stored C-ordered and little-endian whatever their layout in memory. Refuses to
    replace an existing file unless ``overwrite=True``.
    """
    metadata = {} if metadata is None else dict(metadata)
    bad = [k for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise CheckpointError(f"metadata must map strings to strings; bad entries: {bad!r}")
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise CheckpointError(f"tensor names must be strings, got {name!r}")
        if name == "__metadata__":
            raise CheckpointError('"__metadata__" is reserved and cannot name a tensor')
        arr = np.asarray(value)
        code = _code_for(name, arr)
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        if not arr.flags.c_contiguous:  # (np.ascontiguousarray would turn rank 0 into rank 1)
            arr = arr.copy(order="C")
        arrays[name] = (code, arr)

    order = sorted(arrays, key=lambda k: (-DTYPES[arrays[k][0]][1], k))
    header, pos = {}, 0
    for name in order:
        code, arr = arrays[name]
        header[name] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [pos, pos + arr.nbytes]}
        pos += arr.nbytes
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-(8 + len(raw)) % 8)

    def write(f):
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name in order:
            arr = arrays[name][1]
            if arr.nbytes:
                f.write(arr.reshape(-1).view(np.uint8).data)

    atomic_write(path, write, overwrite=overwrite)
