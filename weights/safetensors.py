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
array: the file is a regular one, the header length is at most 100 MB (the reference
reader's bound), the header has the form of a safetensors header before ``json`` builds
anything from it (see :func:`_form_problem`: junk of any size costs a few copies of itself,
never millions of objects), the JSON is an object with no duplicate keys, dtypes are known,
shapes are lists of non-negative integers NumPy can hold, every tensor's byte count is
``prod(shape) * itemsize``, and the tensors tile the data buffer exactly (no gap, no overlap,
nothing missing at the end). Anything else raises :class:`weights.CheckpointError` naming the
problem, with names from the file escaped and cut short.

The writer pads the header with spaces so the data buffer starts 8-byte aligned, orders the
tensors by descending alignment then name (as the reference writer does; readers index by
name), writes through a temporary file in the target folder and renames it into place, and
refuses to replace an existing file unless ``overwrite=True``.
"""

import json
import math
import operator
import os
import secrets

import numpy as np

from weights.errors import CheckpointError
from weights.untrusted import (
    MAX_DIMS,
    escaped,
    open_regular,
    shape_problem,
    shown,
    shown_shape,
)

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
        return f"TensorInfo({shown(self.name)}, {self.dtype}, {shown_shape(self.shape)}, [{self.begin}, {self.end}])"


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
    raise CheckpointError(f"{escaped(os.fspath(path), 300)}: not a valid safetensors file: {msg}")


_INT_ONLY = {int}
_DTYPE_CODES = {code: code for code in DTYPES}


#: At most this many ``__metadata__`` entries (the format sets no limit; real files have a few).
MAX_METADATA = 65_536
#: Headers up to this size are parsed even when the shape check fails, for a precise message.
_PARSE_ANYWAY = 1 << 16
_CHUNK = 1 << 20
_SKELETON_TABLE = bytes.maketrans(b'"-0123456789', b"s00000000000")
_TENSOR_FORMS = (b"{s:s,s:A,s:A}", b"{s:A,s:s,s:A}", b"{s:A,s:A,s:s}")


def _skeleton(raw):
    """``raw`` without whitespace, each string reduced to ``s`` and each digit and minus sign to
    ``0``; None if a string is not terminated. Escapes are removed first so that only real
    quotes remain; which bytes lie inside strings is then the running parity of the quotes,
    computed with NumPy a megabyte at a time."""
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    parts, inside = [], False
    for start in range(0, len(text), _CHUNK):
        chunk = np.frombuffer(text, np.uint8, count=min(_CHUNK, len(text) - start), offset=start)
        parity = np.logical_xor.accumulate(chunk == ord('"'))
        if inside:
            parity = ~parity
        inside = bool(parity[-1])
        kept = chunk[~parity].tobytes()  # outside strings, plus each string's closing quote
        parts.append(kept.translate(_SKELETON_TABLE, b" \t\r\n"))
    return None if inside else b"".join(parts)


def _form_problem(raw):
    """Why the header bytes ``raw`` cannot be a safetensors header, judged from their shape
    alone, or None. In the :func:`_skeleton` (strings ``s``, integers ``0``), arrays of at most
    :data:`MAX_DIMS` integers become ``A``; then every entry must read ``{s:s,s:A,s:A}`` (in
    some order) except one map of at most :data:`MAX_METADATA` strings. Passing this bounds what
    ``json.loads`` builds to a few small objects per entry; without it, 99 MB of
    ``[{},{},...]`` becomes 33 million dicts (2.5 GB). Only ``bytes`` operations and NumPy run
    here: linear time, a few copies of the header at most, no object per token."""
    t = _skeleton(raw)
    if t is None:
        return "a string is not terminated"
    if b"0" * 21 in t:
        return "an integer has more than 20 digits"
    while b"00" in t:
        t = t.replace(b"00", b"0")
    if b"0" + b",0" * MAX_DIMS in t:
        return f"an array has more than {MAX_DIMS} elements"
    t = t.replace(b"[0", b"[").replace(b",0", b"")
    arrays = t.count(b"[]")
    if t.count(b"[") != arrays or t.count(b"]") != arrays:
        return "an array holds something other than integers"
    t = t.replace(b"[]", b"A")
    for form in _TENSOR_FORMS:
        t = t.replace(form, b"T")
    if t.count(b",s:s") >= MAX_METADATA:
        return f"more than {MAX_METADATA} metadata entries"
    t = t.replace(b",s:s", b"").replace(b"{s:s}", b"M").replace(b"{}", b"M")
    if t.count(b"M") > 1:
        return "more than one entry is not a tensor ({dtype, shape, data_offsets})"
    t = t.replace(b",s:T", b"").replace(b",s:M", b"")
    if t not in (b"M", b"{s:T}", b"{s:M}"):
        return "it is not a JSON object of tensor entries ({dtype, shape, data_offsets}) and one map of strings"
    return None


class _Problem:
    """What is wrong with one tensor entry, reported once its name is known."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


def _entry_problem(code, shape, offs):
    if type(code) is not str or code not in DTYPES:
        return f"has unknown dtype {shown(code)} (known: {', '.join(DTYPES)})"
    if type(shape) is not list or not set(map(type, shape)) <= _INT_ONLY or min(shape, default=0) < 0:
        return f"has shape {_shown_list(shape)}; a shape is a list of non-negative integers"
    problem = shape_problem(shape, DTYPES[code][1])
    if problem is not None:
        return problem
    if type(offs) is not list or len(offs) != 2 or not set(map(type, offs)) <= _INT_ONLY:
        return f"has data_offsets {_shown_list(offs)}; expected [begin, end] integers"
    begin, end = offs
    if not 0 <= begin <= end:
        return f"has data_offsets [{shown(begin)}, {shown(end)}]; need 0 <= begin <= end"
    need = math.prod(shape) * DTYPES[code][1]
    if end - begin != need:
        return (f"({code} {shown_shape(shape)}) needs {need} bytes but its data_offsets [{begin}, {end}] "
                f"span {end - begin}")
    return None


def _shown_list(v):
    return shown_shape(v) if type(v) is list else shown(v)


def _json_object(pairs):
    """``object_pairs_hook``: a tensor entry becomes a :class:`TensorInfo` (name filled in
    later) or a :class:`_Problem` at once, so only a few small objects stay per entry; any
    other object becomes a dict, refusing duplicate keys."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise CheckpointError(f"duplicate key {shown(key)} in the JSON header")
    if len(out) == 3 and out.keys() == _ENTRY_KEYS:
        code, shape, offs = out["dtype"], out["shape"], out["data_offsets"]
        problem = _entry_problem(code, shape, offs)
        if problem:
            return _Problem(problem)
        return TensorInfo(None, _DTYPE_CODES[code], tuple(shape), offs[0], offs[1])  # one str per dtype
    return out


def _parse_header(f, n, path, buffer_len):
    """Read the ``n``-byte JSON header from ``f`` and check it against a data buffer of
    ``buffer_len`` bytes; return ``(tensors, metadata)``. (Reading here lets the bytes be freed
    as soon as they are decoded.)"""
    try:
        raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"{escaped(os.fspath(path), 300)}: cannot read ({e.strerror or e})") from None
    if len(raw) != n:
        _fail(path, "the file changed size while being read")
    if not raw.lstrip(b" \t\r\n").startswith(b"{"):
        _fail(path, "the header is not a JSON object (it must start with '{')")
    problem = _form_problem(raw)
    if problem is not None and len(raw) > _PARSE_ANYWAY:
        _fail(path, problem)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        _fail(path, f"the header is not UTF-8 ({e.reason} at byte {8 + e.start})")
    del raw
    try:
        tensors = json.loads(text, object_pairs_hook=_json_object)
    except CheckpointError as e:
        _fail(path, str(e))
    except RecursionError:
        _fail(path, "the JSON header is nested too deeply")
    except ValueError as e:
        _fail(path, f"the header is not valid JSON ({str(e)[:200]})")
    del text
    if not isinstance(tensors, dict):
        _fail(path, "the header is not a JSON object")

    metadata = tensors.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        _fail(path, '"__metadata__" must be a map from strings to strings')

    for name, entry in tensors.items():  # the dict is kept, its values checked and named
        if isinstance(entry, TensorInfo):
            entry.name = name
        elif isinstance(entry, _Problem):
            _fail(path, f"tensor {shown(name)} {entry.text}")
        elif isinstance(entry, dict):
            missing, extra = sorted(_ENTRY_KEYS - set(entry)), set(entry) - _ENTRY_KEYS
            what = [f"missing {missing}"] if missing else []
            if extra:
                what.append("unexpected [" + ", ".join(shown(k, 40) for k in sorted(extra)[:5])
                            + (", ...]" if len(extra) > 5 else "]"))
            _fail(path, f"entry {shown(name)} has the wrong fields ({', '.join(what)})")
        else:
            _fail(path, f"entry {shown(name)} is not a JSON object")
    if problem is not None:  # a small header whose entries all passed, e.g. too many metadata entries
        _fail(path, problem)

    # The tensors must tile the data buffer exactly: sorted by offset, each starts where the
    # previous one ended, the first at 0 and the last at the end of the file.
    pos, prev = 0, None
    for info in sorted(tensors.values(), key=operator.attrgetter("begin", "end")):
        if info.begin != pos:
            if info.begin < pos:
                _fail(path, f"tensors {shown(prev)} and {shown(info.name)} overlap in the data buffer")
            where = f"after tensor {shown(prev)}" if prev is not None else "at the start of the data buffer"
            _fail(path, f"{info.begin - pos} unused bytes {where} (a gap before {shown(info.name)})")
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


def _read_header(f, path):
    """Read and validate the header from the open regular file ``f``; return a :class:`Header`."""
    size = os.fstat(f.fileno()).st_size
    try:
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
    except OSError as e:
        raise CheckpointError(f"{escaped(os.fspath(path), 300)}: cannot read ({e.strerror or e})") from None
    tensors, metadata = _parse_header(f, n, path, size - 8 - n)
    return Header(tensors, metadata, 8 + n, size)


def read_header(path):
    """Read and validate the header of the safetensors file at ``path``; return a :class:`Header`.

    Refuses anything but a regular file; reads only the first ``8 + N`` bytes.
    """
    with open_regular(path) as f:
        return _read_header(f, path)


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
        self._mm = None
        with open_regular(self.path) as f:  # header and mapping from the same open file
            self.header = _read_header(f, self.path)
            if self.header.file_size > 0:
                try:
                    self._mm = np.memmap(f, dtype=np.uint8, mode=self._mode, shape=(self.header.file_size,))
                except (OSError, ValueError) as e:
                    raise CheckpointError(f"{escaped(self.path, 300)}: cannot map the file ({e})") from None
        self.metadata = dict(self.header.metadata)

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
            raise KeyError(f"{shown(name)} is not in {escaped(self.path, 300)}") from None
        dt, _ = DTYPES[info.dtype]
        if info.dtype == "BF16":
            raw = self._view(info, np.dtype("<u2"))
            out = (raw.astype(np.uint32) << 16).view(np.float32)
            out.flags.writeable = False
            return out
        if dt is None:
            raise CheckpointError(
                f"{escaped(self.path, 300)}: tensor {shown(name)} has dtype {info.dtype}, which NumPy cannot represent"
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
            f"tensor {shown(name)} has dtype {arr.dtype}, which safetensors cannot store "
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
        raise CheckpointError(f"metadata must map strings to strings; bad entries: {', '.join(shown(k, 40) for k in bad[:5])}")
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise CheckpointError(f"tensor names must be strings, got {shown(name)}")
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
