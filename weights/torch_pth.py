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

Safety. A pickle is a program: unpickled naively, a ``.pth`` file can call ``os.system``, and
even a pickle that calls nothing can make its reader hash or print a tuple with 2**40 leaves
built from a few hundred bytes of memo references. So no stock unpickler ever sees the file.
Every pickle in it (all five of a legacy stream, so a payload prepended before the magic
number is caught too) is executed by :class:`_Unpickler`, written here, which

* knows only the opcodes a state_dict needs (no ``INST``, ``OBJ``, ``EXT*``, out-of-band
  buffers, ...) and resolves a global only to a local stand-in for ``collections.OrderedDict``,
  ``torch._utils._rebuild_tensor``/``_rebuild_tensor_v2``/``_rebuild_parameter`` or a
  ``torch.*Storage`` class. The stand-ins merely record their arguments; any other global
  raises ``CheckpointError("unsafe pickle: global os.system is not allowed ...")`` and nothing
  is ever imported or called;
* does a bounded amount of work per byte: every opcode does constant work apart from reading
  its argument or moving stack items that earlier opcodes pushed, so the objects built and
  the sizes of containers are at most the number of opcodes, every length is checked against
  the bytes that remain before anything is read, and integers are limited to 2048 bits;
* allows only strings and integers below 2**61 as dict keys and set members (hashing them is
  cheap and collision-free), so no hash ever walks a tuple; bounds the nesting of containers
  (:data:`MAX_DEPTH`) exactly, by refusing to change a list or dict once it is inside another
  container (no cycles, no growth behind the bookkeeping's back); and never ``repr``s what it
  built: error messages show untrusted values through :func:`weights.untrusted.shown`.

Storages are then checked against what each tensor claims (sizes and strides NumPy can hold,
offsets within the storage's element count, element counts against the bytes actually
present); zip members must have distinct names, sit at disjoint places in the file and match
their CRC-32. Tensors are returned as read-only NumPy views of the memory-mapped file;
device tags such as ``"cuda:0"`` are ignored. A storage that needs converting (bfloat16 ->
float32, big-endian -> native) is converted once, over the span its tensors reach, and
shared by all of them, so the memory used is at most twice the file's size.
"""

import codecs
import math
import mmap
import os
import struct
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from weights.errors import CheckpointError
from weights.untrusted import (
    MAX_BYTES,
    escaped,
    open_regular,
    shape_problem,
    shown,
    shown_shape,
)

__all__ = ["MAGIC_NUMBER", "MAX_DEPTH", "PROTOCOL_VERSION", "load_pth", "sniff_format", "STORAGE_DTYPES"]

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
#: The legacy magic number exactly as torch pickles it (protocol 2, LONG1, STOP).
LEGACY_MAGIC_BYTES = b"\x80\x02\x8a\x0a" + MAGIC_NUMBER.to_bytes(10, "little") + b"."
#: How deeply containers may nest in a checkpoint's pickle (a state_dict needs about 5).
MAX_DEPTH = 100

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
_MAX_LINE = 1 << 16  # longest text-opcode argument (a GLOBAL's module line, an INT's digits)
_MAX_INT_BYTES = 256  # LONG4 arguments; LONG1 cannot exceed 255 bytes anyway
_MAX_KEY = 2**61 - 1  # integer keys below this hash to themselves: no collisions to exploit


# --------------------------------------------------------------------------------------------
# Stand-ins for the few globals a state_dict pickle may name. They only record arguments.


class _StorageType:
    """Stands for ``torch.FloatStorage`` etc.: nothing but a dtype tag."""

    __slots__ = ("name", "dtype", "itemsize")

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype
        self.itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


_STORAGE_TYPES = {name: _StorageType(name, dt) for name, dt in STORAGE_DTYPES.items()}


class _StorageRef:
    """A persistent storage reference from the pickle: key, type, element count, view."""

    __slots__ = ("key", "stype", "numel", "view")

    def __init__(self, key, stype, numel, view=None):
        self.key, self.stype, self.numel, self.view = key, stype, numel, view


class _TensorRef:
    """What ``_rebuild_tensor(_v2)`` was asked to build; turned into an ndarray later."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _List(list):
    """A list the unpickler built, with its nesting depth and whether it is inside another
    container (``sealed``: then it may no longer change)."""

    __slots__ = ("depth", "sealed")


class _Dict(dict):
    """A dict the unpickler built (see :class:`_List`)."""

    __slots__ = ("depth", "sealed")


class _StateDict(OrderedDict):
    """Stands for ``collections.OrderedDict`` (see :class:`_List`)."""

    __slots__ = ("depth", "sealed")


_MUTABLE = (_List, _Dict, _StateDict)


_INT_ONLY = {int}


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _int_tuple(v, what):
    if type(v) in (tuple, _List) and set(map(type, v)) <= _INT_ONLY:
        return tuple(v)
    raise CheckpointError(f"tensor {what} must be a tuple of integers, got {shown(v)}")


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
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
_CALLABLE = frozenset(map(id, _FUNCTIONS.values()))  # by identity: hashing a pickled object is what we avoid


def _resolve_global(module, name, source):
    """Map a pickle global to its local stand-in, or refuse it. Never imports anything."""
    found = _FUNCTIONS.get((module, name))
    if found is not None:
        return found
    if module in _STORAGE_MODULES and name.endswith("Storage"):
        if name in _STORAGE_TYPES:
            return _STORAGE_TYPES[name]
        if name.startswith("Q"):
            raise CheckpointError(f"{source}: quantized tensors ({escaped(module + '.' + name)}) are not supported")
    raise CheckpointError(
        f"unsafe pickle: global {escaped(module + '.' + name)} is not allowed in {source}. A checkpoint "
        f"may only refer to {_ALLOWED_TEXT}; refusing to load it (nothing from the file was run)"
    )


# --------------------------------------------------------------------------------------------
# The unpickler.


class _Unpickler:
    """Executes the pickle at ``buf[start:end]`` (bytes or an mmap) opcode by opcode.

    The semantics are Python's (``pickle._Unpickler``; byte strings of Python 2 decoded as
    UTF-8, as ``torch.load`` does), restricted as the module docstring says. Opcodes are the
    table :data:`_OPCODES`: each names how its argument is read (a struct, a text line, a
    length-prefixed string) and the method that acts on it. :meth:`run` returns the unpickled
    object and the offset just after its STOP opcode.
    """

    def __init__(self, buf, start, end, source, persistent_load=None):
        self.buf, self.start, self.end = buf, start, end
        self.source, self.persistent_load = source, persistent_load
        self.stack, self.marks, self.memo = [], [], []
        self.tuple_depth = {}  # id(tuple) -> (depth, tuple), for tuples that hold containers
        self.pos = start  # of the opcode being run, for messages

    def run(self):
        buf, end, unpack = self.buf, self.end, struct.unpack_from
        pos = self.start
        try:
            while True:
                if pos >= end:
                    raise self.error(f"truncated pickle (no STOP) starting at byte {self.start}")
                op = _TABLE[buf[pos]]
                if op is None:
                    self._refuse_opcode(pos)
                kind, fmt, n, action = op
                self.pos = pos
                pos += 1
                if kind is None:
                    arg = None
                elif kind is _BYTE:
                    if pos >= end:
                        raise self.error("truncated pickle")
                    arg = buf[pos]
                    pos += 1
                elif kind is _FIXED or kind is _COUNTED:
                    if n > end - pos:
                        raise self.error("truncated pickle")
                    arg = unpack(fmt, buf, pos)[0]
                    pos += n
                    if kind is _COUNTED:
                        if not 0 <= arg <= end - pos:
                            raise self.error(f"truncated pickle: a string claims {arg} bytes but {end - pos} remain")
                        arg, pos = buf[pos : pos + arg], pos + arg
                elif kind is _LINE:
                    arg, pos = self._line(pos)
                elif kind is _TWO_LINES:
                    first, pos = self._line(pos)
                    arg, pos = self._line(pos)
                    arg = (first, arg)
                else:  # STOP
                    return self.stack.pop(), pos
                action(self, arg)
        except CheckpointError:  # a ValueError too; keep its message
            raise
        except IndexError:
            raise self.error("malformed pickle: an opcode finds the stack empty") from None
        except (ValueError, UnicodeDecodeError, OverflowError) as e:
            raise self.error(f"corrupt pickle: {type(e).__name__}: {str(e)[:200]}") from None

    def error(self, what):
        return CheckpointError(f"{self.source}: {what} (pickle at byte {self.start}, opcode at byte {self.pos})")

    def _line(self, pos):
        stop = min(self.end, pos + _MAX_LINE)
        i = self.buf.find(b"\n", pos, stop)
        if i < 0:
            raise self.error(f"a text line in the pickle is longer than {_MAX_LINE} bytes" if stop < self.end
                             else "truncated pickle: unterminated text line")
        return self.buf[pos:i], i + 1

    def _refuse_opcode(self, pos):
        self.pos = pos
        name = _DISALLOWED.get(self.buf[pos])
        if name is None:
            raise self.error(f"corrupt pickle: unknown opcode 0x{self.buf[pos]:02x}")
        if name == "INST":  # name the class in the error
            module, after = self._line(pos + 1)
            cls, _ = self._line(after)
            _resolve_global(str(module, "utf-8", "replace"), str(cls, "utf-8", "replace"), self.source)
        raise CheckpointError(f"unsafe pickle: opcode {name} at byte {pos} is not allowed in {self.source}")

    # ---- the nesting bookkeeping

    def nest(self, items, container=None):
        """Record that ``items`` go inside a container (``container``, when it exists already):
        seal the mutable ones and return the depth the container then has."""
        depth = container.depth if container is not None else 1
        for x in items:
            t = type(x)
            if t in _FLAT:
                continue
            if t in _MUTABLE:
                if x is container:
                    raise self.error("the pickle puts a container inside itself")
                x.sealed = True
                d = x.depth + 1
            elif t is tuple:
                d = self.tuple_depth.get(id(x), _DEPTH_ONE)[0] + 1
            elif t is set or t is frozenset:
                d = 2
            else:
                continue
            if d > depth:
                depth = d
        if depth > MAX_DEPTH:
            raise self.error(f"containers in the pickle are nested more than {MAX_DEPTH} deep")
        return depth

    def new(self, cls, depth=1):
        obj = cls()
        obj.depth, obj.sealed = depth, False
        return obj

    def target(self, cls, what):
        """The container on top of the stack that the running opcode changes."""
        target = self.stack[-1]
        if not isinstance(target, cls):
            raise self.error(f"{what} on {shown(target)}")
        if isinstance(target, _MUTABLE) and target.sealed:
            raise self.error("the pickle changes a container after putting it inside another one "
                             "(a self-referencing structure, which a checkpoint never needs)")
        return target

    def key(self, k):
        if type(k) is str or (type(k) is int and -_MAX_KEY <= k <= _MAX_KEY):
            return k
        raise self.error(f"a dict key or set member is {shown(k)}; only strings and integers below 2**61 are allowed")

    def pop_mark(self, _=None):
        items = self.stack
        self.stack = self.marks.pop()
        return items

    # ---- actions, one per opcode or family (the argument as read by run())

    def push(self, value):
        self.stack.append(value)

    def push_int(self, line):
        self.stack.append(False if line == b"00" else True if line == b"01" else int(line, 0))

    def push_long_text(self, line):
        self.stack.append(int(line[:-1] if line.endswith(b"L") else line, 0))

    def push_long(self, data):
        if len(data) > _MAX_INT_BYTES:
            raise self.error(f"an integer of {len(data)} bytes; at most {_MAX_INT_BYTES} are allowed")
        self.stack.append(int.from_bytes(data, "little", signed=True))

    def push_float(self, line):
        self.stack.append(float(line))

    def push_quoted(self, line):
        if not (len(line) >= 2 and line[:1] == line[-1:] and line[:1] in (b'"', b"'")):
            raise self.error("the STRING argument is not quoted")
        self.stack.append(codecs.escape_decode(bytes(line[1:-1]))[0].decode("utf-8"))

    def push_str(self, data):
        self.stack.append(str(data, "utf-8"))

    def push_unicode(self, data):
        self.stack.append(str(data, "utf-8", "surrogatepass"))

    def push_raw_unicode(self, line):
        self.stack.append(str(line, "raw-unicode-escape"))

    def push_bytes(self, data):
        self.stack.append(bytes(data))

    def mark(self, _):
        self.marks.append(self.stack)
        self.stack = []

    def pop(self, _):
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def dup(self, _):
        self.stack.append(self.stack[-1])

    def tuple_of(self, items):
        t = tuple(items)
        depth = self.nest(t)
        if depth > 1:
            self.tuple_depth[id(t)] = (depth, t)
        self.stack.append(t)

    def tuple_from_mark(self, _):
        items = self.stack
        self.stack = self.marks.pop()
        self.tuple_of(items)

    def tuple_from_top(self, n):
        if len(self.stack) < n:
            raise IndexError
        items = self.stack[len(self.stack) - n :]
        del self.stack[len(self.stack) - n :]
        self.tuple_of(items)

    def empty_list(self, _):
        self.stack.append(self.new(_List))

    def list_from_mark(self, _):
        items = self.pop_mark()
        lst = self.new(_List, self.nest(items))
        lst.extend(items)
        self.stack.append(lst)

    def append(self, _):
        item = self.stack.pop()
        self.appends([item], "APPEND")

    def appends(self, items, what="APPENDS"):
        items = self.pop_mark() if items is None else items
        target = self.target(_List, what)
        target.depth = self.nest(items, target)
        target.extend(items)

    def empty_dict(self, _):
        self.stack.append(self.new(_Dict))

    def dict_from_mark(self, _):
        d = self.new(_Dict)
        self.setitems(d, self.pop_mark())
        self.stack.append(d)

    def setitem(self, _):
        value = self.stack.pop()
        key = self.stack.pop()
        self.setitems(self.target(dict, "SETITEM"), [key, value])

    def setitems_from_mark(self, _):
        items = self.pop_mark()
        self.setitems(self.target(dict, "SETITEMS"), items)

    def setitems(self, target, items):
        if len(items) % 2:
            raise self.error("odd number of items for a dict")
        target.depth = self.nest(items[1::2], target)
        for i in range(0, len(items), 2):
            target[self.key(items[i])] = items[i + 1]

    def empty_set(self, _):
        self.stack.append(set())

    def additems(self, _):
        items = self.pop_mark()
        self.target(set, "ADDITEMS").update(self.key(k) for k in items)

    def frozenset(self, _):
        items = self.pop_mark()
        self.stack.append(frozenset(self.key(k) for k in items))

    def put_text(self, line):
        self.put(int(line))

    def put(self, i):
        if not 0 <= i <= self.end - self.start:  # (the memo is a list: no index beyond the pickle's size)
            raise self.error(f"pickle memo index {i} is out of range")
        if i >= len(self.memo):
            self.memo.extend([_UNSET] * (i + 1 - len(self.memo)))
        self.memo[i] = self.stack[-1]

    def memoize(self, _):
        self.put(len(self.memo))

    def get_text(self, line):
        self.get(int(line))

    def get(self, i):
        value = self.memo[i] if 0 <= i < len(self.memo) else _UNSET
        if value is _UNSET:
            raise self.error(f"pickle memo index {i} is used before it is set")
        self.stack.append(value)

    def global_(self, names):
        self.stack.append(_resolve_global(str(names[0], "utf-8"), str(names[1], "utf-8"), self.source))

    def stack_global(self, _):
        name = self.stack.pop()
        module = self.stack.pop()
        if type(module) is not str or type(name) is not str:
            raise self.error("STACK_GLOBAL needs two strings")
        self.stack.append(_resolve_global(module, name, self.source))

    def reduce(self, _):
        args = self.stack.pop()
        func = self.stack.pop()
        if id(func) not in _CALLABLE:
            raise CheckpointError(f"unsafe pickle: calling {shown(func)} at byte {self.pos} is not allowed in {self.source}")
        if type(args) is not tuple:
            raise self.error("REDUCE needs a tuple of arguments")
        self.stack.append(self.ordered_dict(args) if func is _StateDict else func(*args))

    def ordered_dict(self, args):
        """``OrderedDict()`` or, as Python 2 pickled it, ``OrderedDict([[key, value], ...])``."""
        d = self.new(_StateDict)
        if args:
            if len(args) != 1 or type(args[0]) not in (_List, tuple):
                raise self.error("OrderedDict is called with unexpected arguments")
            items = []
            for pair in args[0]:
                if type(pair) not in (_List, tuple) or len(pair) != 2:
                    raise self.error("OrderedDict items must be (key, value) pairs")
                items.extend(pair)
            self.setitems(d, items)
        return d

    def newobj(self, _):
        args = self.stack.pop()
        cls = self.stack.pop()
        if cls is not _StateDict or type(args) is not tuple or args:
            raise CheckpointError(f"unsafe pickle: NEWOBJ on {shown(cls)} at byte {self.pos} is not allowed in {self.source}")
        self.stack.append(self.new(_StateDict))

    def build(self, _):
        state = self.stack.pop()
        if type(self.stack[-1]) is not _StateDict:
            raise CheckpointError(
                f"unsafe pickle: BUILD on {shown(self.stack[-1])} at byte {self.pos} is not allowed in {self.source} "
                f"(only an OrderedDict's _metadata may be set; tensors, storages and functions never)"
            )
        if not isinstance(state, dict) and state is not None:
            raise self.error("unexpected state for an OrderedDict")
        # torch's _metadata (module versions) is not needed: dropped

    def persistent_id(self, _):
        pid = self.stack.pop()
        if self.persistent_load is None:
            raise self.error("unexpected storage reference in a header pickle")
        self.stack.append(self.persistent_load(pid))


def _const(value, push=True):
    return (lambda u, _: u.stack.append(value)) if push else (lambda u, _: None)


_UNSET = object()
_DEPTH_ONE = (1,)
_FLAT = frozenset([str, int, float, bool, bytes, type(None), _StorageRef, _TensorRef, _StorageType])
# How an opcode's argument is read: none, one byte, a struct, a struct-counted string, text lines.
_BYTE, _FIXED, _COUNTED, _LINE, _TWO_LINES, _STOP = "byte", "fixed", "counted", "line", "two lines", "stop"
U = _Unpickler

# Opcodes a state_dict pickle can need (protocols 0-4, as written by torch.save or by Python 2):
# code -> (name, how the argument is read, its struct format, action).
_OPCODES = {
    0x80: ("PROTO", _BYTE, None, _const(None, push=False)),
    0x95: ("FRAME", _FIXED, "<Q", _const(None, push=False)),
    0x2E: ("STOP", _STOP, None, None),
    0x28: ("MARK", None, None, U.mark),
    0x30: ("POP", None, None, U.pop),
    0x31: ("POP_MARK", None, None, U.pop_mark),
    0x32: ("DUP", None, None, U.dup),
    0x4E: ("NONE", None, None, _const(None)),
    0x88: ("NEWTRUE", None, None, _const(True)),
    0x89: ("NEWFALSE", None, None, _const(False)),
    0x49: ("INT", _LINE, None, U.push_int),
    0x4A: ("BININT", _FIXED, "<i", U.push),
    0x4B: ("BININT1", _BYTE, None, U.push),
    0x4D: ("BININT2", _FIXED, "<H", U.push),
    0x4C: ("LONG", _LINE, None, U.push_long_text),
    0x8A: ("LONG1", _COUNTED, "<B", U.push_long),
    0x8B: ("LONG4", _COUNTED, "<i", U.push_long),
    0x46: ("FLOAT", _LINE, None, U.push_float),
    0x47: ("BINFLOAT", _FIXED, ">d", U.push),
    0x53: ("STRING", _LINE, None, U.push_quoted),
    0x54: ("BINSTRING", _COUNTED, "<i", U.push_str),
    0x55: ("SHORT_BINSTRING", _COUNTED, "<B", U.push_str),
    0x56: ("UNICODE", _LINE, None, U.push_raw_unicode),
    0x58: ("BINUNICODE", _COUNTED, "<I", U.push_unicode),
    0x8C: ("SHORT_BINUNICODE", _COUNTED, "<B", U.push_unicode),
    0x8D: ("BINUNICODE8", _COUNTED, "<Q", U.push_unicode),
    0x42: ("BINBYTES", _COUNTED, "<I", U.push_bytes),
    0x43: ("SHORT_BINBYTES", _COUNTED, "<B", U.push_bytes),
    0x8E: ("BINBYTES8", _COUNTED, "<Q", U.push_bytes),
    0x29: ("EMPTY_TUPLE", None, None, _const(())),
    0x85: ("TUPLE1", None, None, lambda u, _: u.tuple_from_top(1)),
    0x86: ("TUPLE2", None, None, lambda u, _: u.tuple_from_top(2)),
    0x87: ("TUPLE3", None, None, lambda u, _: u.tuple_from_top(3)),
    0x74: ("TUPLE", None, None, U.tuple_from_mark),
    0x5D: ("EMPTY_LIST", None, None, U.empty_list),
    0x6C: ("LIST", None, None, U.list_from_mark),
    0x61: ("APPEND", None, None, U.append),
    0x65: ("APPENDS", None, None, U.appends),
    0x7D: ("EMPTY_DICT", None, None, U.empty_dict),
    0x64: ("DICT", None, None, U.dict_from_mark),
    0x73: ("SETITEM", None, None, U.setitem),
    0x75: ("SETITEMS", None, None, U.setitems_from_mark),
    0x8F: ("EMPTY_SET", None, None, U.empty_set),
    0x90: ("ADDITEMS", None, None, U.additems),
    0x91: ("FROZENSET", None, None, U.frozenset),
    0x70: ("PUT", _LINE, None, U.put_text),
    0x71: ("BINPUT", _BYTE, None, U.put),
    0x72: ("LONG_BINPUT", _FIXED, "<I", U.put),
    0x94: ("MEMOIZE", None, None, U.memoize),
    0x67: ("GET", _LINE, None, U.get_text),
    0x68: ("BINGET", _BYTE, None, U.get),
    0x6A: ("LONG_BINGET", _FIXED, "<I", U.get),
    0x63: ("GLOBAL", _TWO_LINES, None, U.global_),
    0x93: ("STACK_GLOBAL", None, None, U.stack_global),
    0x52: ("REDUCE", None, None, U.reduce),
    0x81: ("NEWOBJ", None, None, U.newobj),
    0x62: ("BUILD", None, None, U.build),
    0x51: ("BINPERSID", None, None, U.persistent_id),
}
del U
_TABLE = [None] * 256
for _code, (_name, _kind, _fmt, _action) in _OPCODES.items():
    _TABLE[_code] = (_kind, _fmt, struct.calcsize(_fmt) if _fmt else 0, _action)
# Opcodes refused by name: they construct arbitrary objects or read outside the pickle.
_DISALLOWED = {
    0x69: "INST", 0x6F: "OBJ", 0x92: "NEWOBJ_EX", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x50: "PERSID",
    0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
}


def _unpickle(buf, start, end, source, persistent_load=None):
    """Run the pickle starting at ``buf[start]``; return ``(obj, end_offset)``."""
    return _Unpickler(buf, start, end, source, persistent_load).run()


class _Storages:
    """Collects the storage references a pickle makes, one record per key, consistently typed."""

    def __init__(self, source, pid_len):
        self.source, self.pid_len, self.refs = source, pid_len, {}

    def __call__(self, pid):
        if not (type(pid) is tuple and pid and type(pid[0]) in (str, bytes) and pid[0] in ("storage", b"storage")):
            raise CheckpointError(f"{self.source}: unsupported persistent id (only storages are allowed)")
        if len(pid) != self.pid_len:
            raise CheckpointError(
                f"{self.source}: storage reference has {len(pid)} fields, expected {self.pid_len}"
            )
        stype, key, _location, numel = pid[1:5]  # the location ('cpu', 'cuda:0', ...) is ignored
        if not isinstance(stype, _StorageType):
            raise CheckpointError(f"{self.source}: storage reference without a storage type")
        if type(key) is bytes:
            key = key.decode("utf-8", "replace")
        if type(key) is not str:
            raise CheckpointError(f"{self.source}: a storage key must be a string, the pickle gives {shown(key)}")
        if not _is_int(numel) or not 0 <= numel <= MAX_BYTES:
            raise CheckpointError(f"{self.source}: storage {shown(key)} has element count {shown(numel)}")
        view = None
        if self.pid_len == 6 and pid[5] is not None:  # legacy storage view: (view_key, offset, size)
            vm = pid[5]
            if not (type(vm) is tuple and len(vm) == 3 and _is_int(vm[1]) and _is_int(vm[2])):
                raise CheckpointError(f"{self.source}: malformed storage view for key {shown(key)}")
            if vm[1] < 0 or vm[2] < 0 or vm[1] + vm[2] > numel:
                raise CheckpointError(
                    f"{self.source}: storage view [{shown(vm[1])}, {shown(vm[1] + vm[2])}) lies outside storage "
                    f"{shown(key)} of {numel} elements"
                )
            view = (vm[1], vm[2])
        known = self.refs.get(key)
        if known is None:
            self.refs[key] = (stype, numel)
        elif known != (stype, numel):
            raise CheckpointError(f"{self.source}: storage {shown(key)} is declared with two different types or sizes")
        return _StorageRef(key, stype, numel, view)


# --------------------------------------------------------------------------------------------
# Turning the records into arrays.


def _state_refs(obj, source):
    """The ``{name: _TensorRef}`` of the unpickled object: a state_dict, or a dict holding one
    under ``"state_dict"``; values that are not tensors (counters, epochs) are skipped."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        kind = "list" if isinstance(obj, list) else type(obj).__name__.lstrip("_")
        raise CheckpointError(
            f"{source} holds a {kind}, not a state_dict (a mapping of names to tensors); "
            f"save model.state_dict() instead of the model"
        )
    refs = {}
    for key, value in obj.items():
        if isinstance(value, _TensorRef):
            if type(key) is not str:
                raise CheckpointError(f"{source}: a tensor is stored under a non-string key ({shown(key)})")
            refs[key] = value
    if not refs:
        raise CheckpointError(f"{source} contains no tensors")
    return refs


def _span(ref, name, source):
    """Check ``ref``'s geometry against its storage; return the element range ``(lo, hi)`` it
    reads in its storage's coordinates (``None`` for an empty tensor)."""
    st = ref.storage
    base, avail = st.view if st.view is not None else (0, st.numel)
    size, stride, offset = ref.size, ref.stride, ref.offset
    problem = None
    if len(size) != len(stride):
        problem = f"has {len(size)} sizes but {len(stride)} strides"
    elif any(d < 0 for d in size) or any(s < 0 for s in stride) or offset < 0:
        problem = "has a negative size, stride or offset"
    elif offset > MAX_BYTES or any(s > MAX_BYTES for s in stride):
        problem = "has a stride or offset beyond 2**63 - 1"
    else:
        problem = shape_problem(size, st.stype.itemsize)
    if problem is None and math.prod(size):
        extent = offset + sum((d - 1) * s for d, s in zip(size, stride)) + 1
        if extent > avail:
            problem = (f"(size {shown_shape(size)}, stride {shown_shape(stride)}, offset {offset}) reaches "
                       f"element {extent} but its storage holds {avail}")
        elif math.prod(size) > avail - offset:
            problem = "has more elements than its storage (overlapping strides)"
        else:
            return base + offset, base + extent
    if problem is not None:
        raise CheckpointError(f"{source}: tensor {shown(name)} {problem}")
    return None


def _arrays(obj, storages, byteorder, source):
    """``{name: read-only ndarray}`` for the tensors of ``obj``. ``storages`` maps each key to
    ``(buffer, byte offset, storage type, element count)``. Each storage is wrapped (or, if it
    needs converting, converted) once, over the element range its tensors reach together."""
    refs = _state_refs(obj, source)
    spans = {name: _span(ref, name, source) for name, ref in refs.items()}
    reach = {}
    for name, span in spans.items():
        if span is not None:
            key = refs[name].storage.key
            lo, hi = reach.get(key, span)
            reach[key] = (min(lo, span[0]), max(hi, span[1]))
    data = {key: (lo, _storage_array(*storages[key], byteorder, lo, hi)) for key, (lo, hi) in reach.items()}
    out = {}
    for name, ref in refs.items():
        stype, span = ref.storage.stype, spans[name]
        if span is None:
            arr = np.empty(ref.size, np.float32 if stype.dtype == "bfloat16" else np.dtype(stype.dtype))
            arr.flags.writeable = False
        else:
            lo, flat = data[ref.storage.key]
            item = flat.itemsize
            strides = [s * item if d > 1 else 0 for d, s in zip(ref.size, ref.stride)]
            arr = np.lib.stride_tricks.as_strided(flat[span[0] - lo :], shape=ref.size, strides=strides, writeable=False)
        out[name] = arr
    return out


def _storage_array(buf, offset, stype, numel, byteorder, lo, hi):
    """Elements ``lo:hi`` of a storage of ``numel`` elements at ``buf[offset:]``, read-only:
    a view when the bytes are already native, otherwise one converted copy."""
    raw_dtype = np.dtype("<u2" if stype.dtype == "bfloat16" else stype.dtype)
    if byteorder == "big":
        raw_dtype = raw_dtype.newbyteorder(">")
    raw = np.frombuffer(buf, dtype=raw_dtype, count=hi - lo, offset=offset + lo * raw_dtype.itemsize)
    if stype.dtype == "bfloat16":
        wide = raw.astype(np.uint32)
        wide <<= 16
        out = wide.view(np.float32)
    elif raw_dtype.byteorder == ">" and raw_dtype.itemsize > 1:
        out = raw.astype(raw_dtype.newbyteorder("="))
    else:
        return raw
    out.flags.writeable = False
    return out


# --------------------------------------------------------------------------------------------
# The two container formats.


def _zip_members(buf, size, source):
    """``{name: (data offset, data size)}`` of every member of the zip in ``buf``, after
    checking that names are unique, each local header matches the directory, members sit at
    disjoint places and every member's data matches its CRC-32."""
    try:
        infos = zipfile.ZipFile(_ZipWindow(buf, size)).infolist()
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{source}: damaged or truncated zip archive ({str(e)[:200]})") from None
    except Exception as e:
        raise CheckpointError(f"{source}: damaged or truncated zip archive ({type(e).__name__}: {str(e)[:200]})") from None
    if not infos:
        raise CheckpointError(f"{source}: the zip archive is empty")
    members, ranges = {}, []
    for info in infos:
        name = info.filename
        if name in members:
            raise CheckpointError(
                f"{source}: the zip archive has two members named {shown(name)}; refusing an ambiguous "
                f"archive (torch would read one copy, other tools the other)"
            )
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise CheckpointError(f"{source}: zip entry {shown(name)} is compressed; torch.save never compresses")
        h = info.header_offset
        if h < 0 or h + 30 > size or bytes(buf[h : h + 4]) != b"PK\x03\x04":
            raise CheckpointError(f"{source}: zip entry {shown(name)} has a damaged local header")
        name_len = int.from_bytes(buf[h + 26 : h + 28], "little")
        local_flags = int.from_bytes(buf[h + 6 : h + 8], "little")
        local_name = bytes(buf[h + 30 : h + 30 + name_len]).decode("utf-8" if local_flags & 0x800 else "cp437", "replace")
        if local_name != info.orig_filename:
            raise CheckpointError(
                f"{source}: zip entry {shown(name)} has the name {shown(local_name)} in its local header"
            )
        start = h + 30 + name_len + int.from_bytes(buf[h + 28 : h + 30], "little")
        if start + info.file_size > size:
            raise CheckpointError(
                f"{source} is truncated: zip entry {shown(name)} needs bytes up to {start + info.file_size} "
                f"but the file has {size}"
            )
        members[name] = (start, info.file_size)
        ranges.append((h, start + info.file_size, name, info.CRC))
    ranges.sort()
    for (_, end, name, _), (h, _, other, _) in zip(ranges, ranges[1:]):
        if h < end:
            raise CheckpointError(
                f"{source}: zip entries {shown(name)} and {shown(other)} overlap in the file; refusing the archive"
            )
    with memoryview(buf) as view:
        for _, end, name, crc in ranges:
            start, n = members[name]
            if zlib.crc32(view[start : start + n]) != crc:
                raise CheckpointError(f"{source}: zip entry {shown(name)} is damaged (its CRC-32 does not match)")
    return members


def _load_zip(buf, size, source):
    members = _zip_members(buf, size, source)
    top = next(iter(members)).split("/", 1)[0]
    if any(not n.startswith(top + "/") for n in members):
        raise CheckpointError(f"{source}: zip entries are not all under one top folder ({shown(top)})")
    if f"{top}/constants.pkl" in members or any(n.startswith(f"{top}/code/") for n in members):
        raise CheckpointError(
            f"{source} is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; "
            f"save model.state_dict() with torch.save instead"
        )
    pkl = members.get(f"{top}/data.pkl")
    if pkl is None:
        raise CheckpointError(f"{source}: the zip archive has no {escaped(top)}/data.pkl; not a torch.save checkpoint")
    byteorder = "little"
    bo = members.get(f"{top}/byteorder")
    if bo is not None:
        byteorder = bytes(buf[bo[0] : bo[0] + min(bo[1], 16)]).decode("ascii", "replace").strip()
        if bo[1] > 16 or byteorder not in ("little", "big"):
            raise CheckpointError(f"{source}: unknown byteorder {shown(byteorder)} (expected 'little' or 'big')")

    refs = _Storages(source, 5)
    obj, _ = _unpickle(buf, pkl[0], pkl[0] + pkl[1], source, refs)
    storages = {}
    for key, (stype, numel) in refs.refs.items():
        rec = members.get(f"{top}/data/{key}")
        if rec is None:
            raise CheckpointError(f"{source}: storage {shown(key)} is referenced but {escaped(top)}/data/{escaped(key)} is missing")
        if rec[1] != numel * stype.itemsize:
            raise CheckpointError(
                f"{source}: storage {shown(key)} should hold {numel} x {stype.itemsize} bytes "
                f"but {escaped(top)}/data/{escaped(key)} has {rec[1]}"
            )
        storages[key] = (buf, rec[0], stype, numel)
    return _arrays(obj, storages, byteorder, source)


class _ZipWindow:
    """A seekable read-only file over a buffer for :mod:`zipfile`, with bounded reads."""

    def __init__(self, buf, size):
        self.buf, self.size, self.pos = buf, size, 0

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
        raise CheckpointError(f"{source}: unsupported legacy protocol version {shown(proto)} (expected 1001)")
    sys_info, pos = _unpickle(buf, pos, size, source)
    if not isinstance(sys_info, dict):
        raise CheckpointError(f"{source}: malformed sys_info record")
    if sys_info.get("little_endian", True) is not True:
        raise CheckpointError(f"{source} was written on a big-endian machine; not supported")

    refs = _Storages(source, 6)
    obj, pos = _unpickle(buf, pos, size, source, refs)
    keys, pos = _unpickle(buf, pos, size, source)
    if not isinstance(keys, list) or not all(type(k) in (str, bytes) for k in keys):
        raise CheckpointError(f"{source}: malformed storage key list")
    keys = [k.decode("utf-8", "replace") if type(k) is bytes else k for k in keys]
    listed = set(keys)
    if len(listed) != len(keys):
        raise CheckpointError(f"{source}: the storage key list repeats a key")
    missing = [k for k in refs.refs if k not in listed]
    if missing:
        raise CheckpointError(
            f"{source}: {len(missing)} storage(s) are referenced but have no data: "
            + ", ".join(shown(k, 40) for k in missing[:5]) + (" ..." if len(missing) > 5 else "")
        )

    storages = {}
    for key in keys:
        if key not in refs.refs:
            raise CheckpointError(f"{source}: storage {shown(key)} has data but no tensor refers to it")
        stype, numel = refs.refs[key]
        if pos + 8 > size:
            raise CheckpointError(f"{source} is truncated: the record of storage {shown(key)} is missing")
        count = int.from_bytes(buf[pos : pos + 8], "little", signed=True)
        if count != numel:
            raise CheckpointError(
                f"{source}: storage {shown(key)} is declared with {numel} elements but its data record says {count}"
            )
        pos += 8
        nbytes = count * stype.itemsize
        if pos + nbytes > size:
            raise CheckpointError(
                f"{source} is truncated: storage {shown(key)} needs {nbytes} bytes at byte {pos} "
                f"but only {size - pos} remain"
            )
        storages[key] = (buf, pos, stype, numel)
        pos += nbytes
    return _arrays(obj, storages, "little", source)


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
    source = escaped(os.path.basename(os.fspath(path)) or os.fspath(path), 200)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise CheckpointError(f"{source}: the file is empty")
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise CheckpointError(f"{source}: cannot map the file ({e.strerror or e})") from None
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
