"""Read PyTorch ``.pth`` checkpoints (torchvision's state_dicts) into NumPy arrays without torch.

Two on-disk formats exist and torchvision's download server serves both (see
shared/notes/checkpoint-formats.md): the **zip** format that ``torch.save`` writes since
PyTorch 1.6, and the older **legacy** stream. The format is detected from the first bytes,
never from the file name.

zip (``PK\\x03\\x04``)
    An uncompressed zip whose entries share one top folder (the saved file's stem, or
    ``archive``; taken from the entries, not assumed). ``<top>/data.pkl`` is the pickled
    object; storages it references live in ``<top>/data/<key>`` as raw bytes;
    ``<top>/byteorder`` says ``little`` or ``big`` (little when absent).
legacy (pickled magic number ``0x1950a86a20f9469cfc6c``)
    Pickles back to back: the magic number, the protocol version 1001, a ``sys_info`` dict,
    the object, the list of storage keys; then, for each key in that order, an int64 element
    count and the storage's raw little-endian bytes.

Safety. A pickle is a program: unpickled naively, a ``.pth`` file can call ``os.system``. Here
every pickle in the file (all five of a legacy stream, so a payload prepended before the magic
number is caught too) goes through two gates, and nothing from the file is ever called:

1. a scan with :func:`pickletools.genops` (which only parses) that rejects opcodes a
   state_dict never needs (``INST``, ``OBJ``, ``EXT*``, out-of-band buffers, ...), globals
   outside the allowlist, memo indices larger than the pickle itself, and any argument that
   claims more bytes than remain (so the C unpickler never pre-allocates a hostile size);
2. a :class:`pickle.Unpickler` whose ``find_class`` resolves only ``collections.OrderedDict``,
   ``torch._utils._rebuild_tensor``/``_rebuild_tensor_v2``/``_rebuild_parameter`` and the
   ``torch.*Storage`` classes — each to a local stand-in defined in this module that merely
   records its arguments — and whose ``persistent_load`` turns storage references into
   records. Any other global raises ``CheckpointError("unsafe pickle: global os.system is not
   allowed ...")`` before it is looked up.

Storages are then checked against what each tensor claims (size, stride, offset within the
storage's element count, element count against the bytes actually present) and returned as
read-only NumPy views of the memory-mapped file; device tags such as ``"cuda:0"`` are ignored.
No allocation is larger than the file could hold.
"""

import io
import math
import mmap
import os
import pickle
import pickletools
import warnings
import zipfile
from collections import OrderedDict

import numpy as np

from weights.errors import CheckpointError

__all__ = ["MAGIC_NUMBER", "PROTOCOL_VERSION", "load_pth", "sniff_format", "STORAGE_DTYPES"]

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
#: The legacy magic number exactly as torch pickles it (protocol 2, LONG1, STOP).
LEGACY_MAGIC_BYTES = b"\x80\x02\x8a\x0a" + MAGIC_NUMBER.to_bytes(10, "little") + b"."

#: torch storage class name -> NumPy dtype string ("bfloat16" is widened to float32 on read).
STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexFloatStorage": "<c8",
    "ComplexDoubleStorage": "<c16",
    "UntypedStorage": "u1",
}
_STORAGE_MODULES = ("torch", "torch.cuda")
_ALLOWED_TEXT = (
    "collections.OrderedDict, torch._utils._rebuild_tensor, torch._utils._rebuild_tensor_v2, "
    "torch._utils._rebuild_parameter and torch.*Storage"
)

# Opcodes a state_dict pickle can need (protocols 0-4, as written by torch.save or by Python 2).
_ALLOWED_OPCODES = frozenset(
    """PROTO STOP FRAME MARK POP POP_MARK DUP GLOBAL STACK_GLOBAL REDUCE BUILD NEWOBJ BINPERSID
    EMPTY_DICT EMPTY_LIST EMPTY_TUPLE EMPTY_SET ADDITEMS FROZENSET DICT LIST TUPLE TUPLE1 TUPLE2
    TUPLE3 APPEND APPENDS SETITEM SETITEMS INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT
    BINFLOAT NONE NEWTRUE NEWFALSE STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE
    SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES BINBYTES8 PUT BINPUT LONG_BINPUT MEMOIZE
    GET BINGET LONG_BINGET""".split()
)
_MEMO_PUTS = frozenset(["PUT", "BINPUT", "LONG_BINPUT"])
_MAX_LINE = 1 << 16  # longest text-opcode argument (a GLOBAL's "module name" line) we read


# --------------------------------------------------------------------------------------------
# Stand-ins for the few globals a state_dict pickle may name. They only record arguments.


class _Frozen:
    """Base of every stand-in: a pickle's BUILD opcode (``__setstate__``) cannot alter it.

    Without this, BUILD on a shared stand-in would update its ``__dict__`` and could change
    how a later, honest file in the same process is read."""

    __slots__ = ()

    def __setstate__(self, state):
        raise CheckpointError("unsafe pickle: BUILD on a tensor, storage or rebuild function is not allowed")


class _StorageType(_Frozen):
    """Stands for ``torch.FloatStorage`` etc.: nothing but a dtype tag."""

    __slots__ = ("name", "dtype", "itemsize")

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype
        self.itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize

    def __repr__(self):
        return f"torch.{self.name}"


_STORAGE_TYPES = {name: _StorageType(name, dt) for name, dt in STORAGE_DTYPES.items()}


class _StorageRef(_Frozen):
    """A persistent storage reference from the pickle: key, type, element count, view."""

    __slots__ = ("key", "stype", "numel", "view")

    def __init__(self, key, stype, numel, view=None):
        self.key, self.stype, self.numel, self.view = key, stype, numel, view


class _TensorRef(_Frozen):
    """What ``_rebuild_tensor(_v2)`` was asked to build; turned into an ndarray later."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _StateDict(OrderedDict):
    """Stands for ``collections.OrderedDict``; accepts (and drops) the ``_metadata`` that
    torch attaches through BUILD, and nothing else."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise CheckpointError("unexpected state for an OrderedDict in the pickle")


class _Function(_Frozen):
    """Wraps a stand-in function so BUILD cannot touch it (functions have a ``__dict__``)."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _int_tuple(v, what):
    if isinstance(v, (tuple, list)) and all(_is_int(d) for d in v):
        return tuple(v)
    raise CheckpointError(f"tensor {what} must be a tuple of integers, got a {type(v).__name__}")


def _rebuild_tensor(*args):
    """Stand-in for ``torch._utils._rebuild_tensor(storage, offset, size, stride)``."""
    if len(args) != 4:
        raise CheckpointError(f"_rebuild_tensor takes 4 arguments, the pickle gave {len(args)}")
    storage, offset, size, stride = args
    if not isinstance(storage, _StorageRef):
        raise CheckpointError("a tensor's storage is not a storage reference")
    if not _is_int(offset):
        raise CheckpointError("a tensor's storage offset is not an integer")
    return _TensorRef(storage, offset, _int_tuple(size, "size"), _int_tuple(stride, "stride"))


def _rebuild_tensor_v2(*args):
    """Stand-in for ``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
    backward_hooks[, metadata])``; gradients flags, hooks and metadata are dropped."""
    if len(args) not in (6, 7):
        raise CheckpointError(f"_rebuild_tensor_v2 takes 6 or 7 arguments, the pickle gave {len(args)}")
    return _rebuild_tensor(*args[:4])


def _rebuild_parameter(*args):
    """Stand-in for ``_rebuild_parameter(data, requires_grad, backward_hooks)``."""
    if len(args) != 3 or not isinstance(args[0], _TensorRef):
        raise CheckpointError("_rebuild_parameter expects (tensor, requires_grad, hooks)")
    return args[0]


_FUNCTIONS = {
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor"): _Function(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Function(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _Function(_rebuild_parameter),
}


def _resolve_global(module, name, source):
    """Map a pickle global to its local stand-in, or refuse it. Never imports anything."""
    found = _FUNCTIONS.get((module, name))
    if found is not None:
        return found
    if module in _STORAGE_MODULES and isinstance(name, str) and name.endswith("Storage"):
        if name in _STORAGE_TYPES:
            return _STORAGE_TYPES[name]
        if name.startswith("Q"):
            raise CheckpointError(f"{source}: quantized tensors ({module}.{name}) are not supported")
    raise CheckpointError(
        f"unsafe pickle: global {module}.{name} is not allowed in {source}. A checkpoint may only "
        f"refer to {_ALLOWED_TEXT}; refusing to load it (nothing from the file was run)"
    )


# --------------------------------------------------------------------------------------------
# Bounded reading and the two-gate unpickler.


class _Reader:
    """A file-like window ``buf[start:end]`` over bytes or an mmap whose reads never allocate
    more than remains in the window (Python's buffered files allocate ``n`` before reading)."""

    def __init__(self, buf, start, end):
        self.buf, self.start, self.pos, self.end = buf, start, start, end

    def read(self, n=-1):
        n = self.end - self.pos if n is None or n < 0 else min(n, self.end - self.pos)
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def readline(self, limit=-1):
        stop = min(self.end, self.pos + _MAX_LINE)
        i = self.buf.find(b"\n", self.pos, stop)
        if i < 0:
            if stop < self.end:
                raise CheckpointError(f"a text line in the pickle is longer than {_MAX_LINE} bytes")
            i = stop - 1
        return self.read(i + 1 - self.pos)

    def tell(self):
        return self.pos - self.start


def _scan(buf, start, end, source):
    """Gate 1: parse (never execute) the pickle at ``buf[start:]``; return the offset after its
    STOP. Rejects disallowed opcodes and globals, oversized memo indices and truncation."""
    reader = _Reader(buf, start, end)
    try:
        with warnings.catch_warnings():  # pickletools warns about odd escapes in STRING args
            warnings.simplefilter("ignore", DeprecationWarning)
            return _scan_ops(reader, start, end, source)
    except CheckpointError:
        raise
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError) as e:
        raise CheckpointError(f"{source}: corrupt or truncated pickle at byte {start}: {e}") from None


def _scan_ops(reader, start, end, source):
    for op, arg, pos in pickletools.genops(reader):
        name = op.name
        if name not in _ALLOWED_OPCODES:
            if name == "INST":
                mod, _, cls = arg.partition(" ")
                _resolve_global(mod, cls, source)  # names the class in the error
            raise CheckpointError(f"unsafe pickle: opcode {name} at byte {start + pos} is not allowed in {source}")
        if name == "GLOBAL":
            mod, _, cls = arg.partition(" ")
            _resolve_global(mod, cls, source)
        elif name in _MEMO_PUTS and arg > end - start:
            raise CheckpointError(f"{source}: pickle memo index {arg} at byte {start + pos} is out of range")
        elif name == "STOP":
            return start + reader.tell()
    raise CheckpointError(f"{source}: truncated pickle (no STOP) starting at byte {start}")


class _RestrictedUnpickler(pickle.Unpickler):
    """Gate 2: an Unpickler that resolves globals only to this module's stand-ins."""

    def __init__(self, data, source, persistent_load):
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self._source, self._persistent = source, persistent_load

    def find_class(self, module, name):
        return _resolve_global(module, name, self._source)

    def persistent_load(self, pid):
        if self._persistent is None:
            raise CheckpointError(f"{self._source}: unexpected storage reference in a header pickle")
        return self._persistent(pid)


def _unpickle(buf, start, end, source, persistent_load=None):
    """Scan, then unpickle, the pickle starting at ``buf[start]``; return ``(obj, end_offset)``."""
    stop = _scan(buf, start, end, source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            obj = _RestrictedUnpickler(bytes(buf[start:stop]), source, persistent_load).load()
    except CheckpointError:
        raise
    except Exception as e:  # only our own stand-ins ran; anything else is a malformed pickle
        raise CheckpointError(f"{source}: malformed pickle at byte {start}: {type(e).__name__}: {e}") from None
    return obj, stop


class _Storages:
    """Collects the storage references a pickle makes, one record per key, consistently typed."""

    def __init__(self, source, pid_len):
        self.source, self.pid_len, self.refs = source, pid_len, {}

    def __call__(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] in ("storage", b"storage")):
            raise CheckpointError(f"{self.source}: unsupported persistent id (only storages are allowed)")
        if len(pid) != self.pid_len:
            raise CheckpointError(
                f"{self.source}: storage reference has {len(pid)} fields, expected {self.pid_len}"
            )
        stype, key, _location, numel = pid[1:5]  # the location ('cpu', 'cuda:0', ...) is ignored
        if not isinstance(stype, _StorageType):
            raise CheckpointError(f"{self.source}: storage reference without a storage type")
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        if not isinstance(key, str) or not _is_int(numel) or numel < 0:
            raise CheckpointError(f"{self.source}: malformed storage reference for key {key!r}")
        view = None
        if self.pid_len == 6 and pid[5] is not None:  # legacy storage view: (view_key, offset, size)
            vm = pid[5]
            if not (isinstance(vm, tuple) and len(vm) == 3 and _is_int(vm[1]) and _is_int(vm[2])):
                raise CheckpointError(f"{self.source}: malformed storage view for key {key!r}")
            if vm[1] < 0 or vm[2] < 0 or vm[1] + vm[2] > numel:
                raise CheckpointError(
                    f"{self.source}: storage view [{vm[1]}, {vm[1] + vm[2]}) lies outside storage "
                    f"{key!r} of {numel} elements"
                )
            view = (vm[1], vm[2])
        known = self.refs.get(key)
        if known is None:
            self.refs[key] = (stype, numel)
        elif known != (stype, numel):
            raise CheckpointError(f"{self.source}: storage {key!r} is declared with two different types or sizes")
        return _StorageRef(key, stype, numel, view)


# --------------------------------------------------------------------------------------------
# Turning the records into arrays.


def _tensor_array(ref, storages, name, source):
    """Check ``ref`` against its storage and return a read-only ndarray view of it."""
    st = ref.storage
    data = storages[st.key]  # 1-D array of the whole storage, in its on-disk dtype
    if st.view is not None:
        data = data[st.view[0] : st.view[0] + st.view[1]]
    size, stride, offset = ref.size, ref.stride, ref.offset
    where = f"{source}: tensor {name!r}"
    if len(size) != len(stride):
        raise CheckpointError(f"{where} has {len(size)} sizes but {len(stride)} strides")
    if len(size) > 32:
        raise CheckpointError(f"{where} has {len(size)} dimensions")
    if any(d < 0 for d in size) or any(s < 0 for s in stride) or offset < 0:
        raise CheckpointError(f"{where} has a negative size, stride or offset")
    n = math.prod(size)
    if n == 0:
        out = np.empty(size, dtype=data.dtype)
    else:
        extent = offset + sum((d - 1) * s for d, s in zip(size, stride)) + 1
        if extent > data.size:
            raise CheckpointError(
                f"{where} (size {list(size)}, stride {list(stride)}, offset {offset}) reaches element "
                f"{extent} but its storage holds {data.size}"
            )
        if n > data.size - offset:
            raise CheckpointError(f"{where} has more elements than its storage (overlapping strides)")
        item = data.itemsize
        out = np.lib.stride_tricks.as_strided(
            data[offset:], shape=size, strides=[s * item for s in stride], writeable=False
        )
    if st.stype.dtype == "bfloat16":
        out = (out.astype(np.uint32) << 16).view(np.float32)
    elif not out.dtype.isnative or out.dtype.byteorder == ">":
        out = out.astype(out.dtype.newbyteorder("="))
    if out.flags.writeable:
        out.flags.writeable = False
    return out


def _collect(obj, storages, source):
    """Turn the unpickled object into ``{name: ndarray}`` (a state_dict, or a dict holding one
    under ``"state_dict"``); values that are not tensors (counters, epochs) are skipped."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{source} holds a {type(obj).__name__}, not a state_dict (a mapping of names to tensors); "
            f"save model.state_dict() instead of the model"
        )
    out = {}
    for key, value in obj.items():
        if isinstance(value, _TensorRef):
            if not isinstance(key, str):
                raise CheckpointError(f"{source}: a tensor is stored under a non-string key")
            out[key] = _tensor_array(value, storages, key, source)
    if not out:
        raise CheckpointError(f"{source} contains no tensors")
    return out


def _storage_array(buf, offset, stype, numel, byteorder):
    dt = "<u2" if stype.dtype == "bfloat16" else stype.dtype
    dt = np.dtype(dt)
    if byteorder == "big":
        dt = dt.newbyteorder(">")
    return np.frombuffer(buf, dtype=dt, count=numel, offset=offset)


# --------------------------------------------------------------------------------------------
# The two container formats.


def _load_zip(buf, size, source):
    try:
        zf = zipfile.ZipFile(_ZipWindow(buf, size))
        infos = {i.filename: i for i in zf.infolist()}
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{source}: damaged or truncated zip archive ({e})") from None
    except Exception as e:
        raise CheckpointError(f"{source}: damaged or truncated zip archive ({type(e).__name__}: {e})") from None
    if not infos:
        raise CheckpointError(f"{source}: the zip archive is empty")
    top = next(iter(infos)).split("/", 1)[0]
    if any(not n.startswith(top + "/") for n in infos):
        raise CheckpointError(f"{source}: zip entries are not all under one top folder ({top!r})")
    if f"{top}/constants.pkl" in infos or any(n.startswith(f"{top}/code/") for n in infos):
        raise CheckpointError(
            f"{source} is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; "
            f"save model.state_dict() with torch.save instead"
        )

    def record(name):
        info = infos.get(name)
        if info is None:
            return None
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise CheckpointError(f"{source}: zip entry {name} is compressed; torch.save never compresses")
        h = info.header_offset
        if h < 0 or h + 30 > size or bytes(buf[h : h + 4]) != b"PK\x03\x04":
            raise CheckpointError(f"{source}: zip entry {name} has a damaged local header")
        start = h + 30 + int.from_bytes(buf[h + 26 : h + 28], "little") + int.from_bytes(buf[h + 28 : h + 30], "little")
        if start + info.file_size > size:
            raise CheckpointError(
                f"{source} is truncated: zip entry {name} needs bytes up to {start + info.file_size} "
                f"but the file has {size}"
            )
        return start, info.file_size

    pkl = record(f"{top}/data.pkl")
    if pkl is None:
        raise CheckpointError(f"{source}: the zip archive has no {top}/data.pkl; not a torch.save checkpoint")
    byteorder = "little"
    bo = record(f"{top}/byteorder")
    if bo is not None:
        byteorder = bytes(buf[bo[0] : bo[0] + bo[1]]).decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise CheckpointError(f"{source}: unknown byteorder {byteorder!r}")

    refs = _Storages(source, 5)
    obj, _ = _unpickle(buf, pkl[0], pkl[0] + pkl[1], source, refs)
    storages = {}
    for key, (stype, numel) in refs.refs.items():
        rec = record(f"{top}/data/{key}")
        if rec is None:
            raise CheckpointError(f"{source}: storage {key!r} is referenced but {top}/data/{key} is missing")
        if rec[1] != numel * stype.itemsize:
            raise CheckpointError(
                f"{source}: storage {key!r} should hold {numel} x {stype.itemsize} bytes "
                f"but {top}/data/{key} has {rec[1]}"
            )
        storages[key] = _storage_array(buf, rec[0], stype, numel, byteorder)
    return _collect(obj, storages, source)


class _ZipWindow(io.RawIOBase):
    """A seekable read-only file over a buffer for :mod:`zipfile`, with bounded reads."""

    def __init__(self, buf, size):
        self.buf, self.size, self.pos = buf, size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        if base + offset < 0:
            raise OSError("seek before the start of the file")
        self.pos = base + offset
        return self.pos

    def tell(self):
        return self.pos

    def read(self, n=-1):
        end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        out = bytes(self.buf[self.pos : end]) if end > self.pos else b""
        self.pos += len(out)
        return out

    def readinto(self, b):
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def _load_legacy(buf, size, source):
    try:
        magic, pos = _unpickle(buf, 0, size, source)
    except CheckpointError as e:
        if str(e).startswith("unsafe pickle: global"):
            raise
        raise CheckpointError(
            f"{source}: unrecognised file format: neither a zip (PyTorch >= 1.6) nor a legacy "
            f"torch.save stream (first bytes {bytes(buf[:8]).hex(' ')})"
        ) from None
    if not _is_int(magic) or magic != MAGIC_NUMBER:
        raise CheckpointError(f"{source}: not a PyTorch checkpoint (the first pickle is not torch's magic number)")
    proto, pos = _unpickle(buf, pos, size, source)
    if not _is_int(proto) or proto != PROTOCOL_VERSION:
        raise CheckpointError(f"{source}: unsupported legacy protocol version {proto!r} (expected 1001)")
    sys_info, pos = _unpickle(buf, pos, size, source)
    if not isinstance(sys_info, dict):
        raise CheckpointError(f"{source}: malformed sys_info record")
    if sys_info.get("little_endian", True) is not True:
        raise CheckpointError(f"{source} was written on a big-endian machine; not supported")

    refs = _Storages(source, 6)
    obj, pos = _unpickle(buf, pos, size, source, refs)
    keys, pos = _unpickle(buf, pos, size, source)
    if not isinstance(keys, list) or not all(isinstance(k, (str, bytes)) for k in keys):
        raise CheckpointError(f"{source}: malformed storage key list")
    keys = [k.decode("utf-8", "replace") if isinstance(k, bytes) else k for k in keys]
    if len(set(keys)) != len(keys):
        raise CheckpointError(f"{source}: the storage key list repeats a key")
    missing = [k for k in refs.refs if k not in keys]
    if missing:
        raise CheckpointError(f"{source}: storages {missing[:5]} are referenced but have no data")

    storages = {}
    for key in keys:
        if key not in refs.refs:
            raise CheckpointError(f"{source}: storage {key!r} has data but no tensor refers to it")
        stype, numel = refs.refs[key]
        if pos + 8 > size:
            raise CheckpointError(f"{source} is truncated: the record of storage {key!r} is missing")
        count = int.from_bytes(buf[pos : pos + 8], "little", signed=True)
        if count != numel:
            raise CheckpointError(
                f"{source}: storage {key!r} is declared with {numel} elements but its data record says {count}"
            )
        pos += 8
        nbytes = count * stype.itemsize
        if pos + nbytes > size:
            raise CheckpointError(
                f"{source} is truncated: storage {key!r} needs {nbytes} bytes at byte {pos} "
                f"but only {size - pos} remain"
            )
        storages[key] = _storage_array(buf, pos, stype, numel, "little")
        pos += nbytes
    return _collect(obj, storages, source)


# --------------------------------------------------------------------------------------------
# Public entry points.


def sniff_format(head):
    """Name the container format from a file's first bytes (at least 264 for tar detection).

    Returns one of ``"zip"``, ``"legacy"``, ``"tar"`` (pre-2017 torch), ``"pytorch1"`` (an
    unreleased preview format), ``"safetensors"``, ``"empty"`` or ``"unknown"``.
    """
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(LEGACY_MAGIC_BYTES):
        return "legacy"
    if head.startswith(b"PYTORCH1"):
        return "pytorch1"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if len(head) >= 10 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= 100_000_000:
        return "safetensors"
    return "unknown"


def load_pth(path):
    """Read the torch checkpoint at ``path``; return ``{name: read-only ndarray}``.

    Arrays are views of the memory-mapped file (no copy) except where a conversion is needed
    (bfloat16 -> float32, big-endian -> native). Raises :class:`CheckpointError` for anything
    malformed, truncated, unsafe or unsupported; nothing from the file is ever executed.
    """
    path = os.fspath(path)
    source = os.path.basename(path) or path
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise CheckpointError(f"{path}: the file is empty")
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a checkpoint") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    fmt = sniff_format(bytes(buf[:264]))
    if fmt == "zip":
        return _load_zip(buf, size, source)
    if fmt == "tar":
        raise CheckpointError(f"{source}: the pre-2017 tar checkpoint format is not supported")
    if fmt == "pytorch1":
        raise CheckpointError(f"{source}: the PYTORCH1 preview format is not supported")
    if fmt == "safetensors":
        raise CheckpointError(f"{source} is a safetensors file, not a .pth checkpoint; load it directly")
    return _load_legacy(buf, size, source)
