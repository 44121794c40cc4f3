"""Checkpoint files built byte by byte, without torch, for the weights tests.

The pickles are written opcode by opcode (the same opcodes ``torch.save`` emits at protocol 2,
see shared/notes/checkpoint-formats.md §2), then wrapped in either container:

* :func:`zip_checkpoint` — an uncompressed zip with ``<top>/data.pkl``, ``<top>/data/<key>``,
  ``<top>/byteorder`` and ``<top>/version``;
* :func:`legacy_checkpoint` — magic, protocol, sys_info, object, key list, then per key an
  int64 element count and the raw bytes.

A tensor is described by :class:`T` (name, storage key, storage type, storage element count,
offset, size, stride); storage contents are given separately as NumPy arrays, so tests can make
storages too short, shared, misdeclared and so on.
"""

import io
import pickle
import struct
import zipfile

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C


class P:
    """A tiny pickle assembler: each method appends one opcode."""

    def __init__(self, proto=2):
        self.b = bytearray(b"\x80" + bytes([proto])) if proto >= 2 else bytearray()

    def raw(self, data):
        self.b += data
        return self

    def glob(self, module, name):
        self.b += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        return self

    def str(self, s):
        data = s.encode()
        self.b += b"X" + struct.pack("<I", len(data)) + data
        return self

    def int(self, v):
        if 0 <= v < 256:
            self.b += b"K" + bytes([v])
        elif 0 <= v < 65536:
            self.b += b"M" + struct.pack("<H", v)
        elif -(2**31) <= v < 2**31:
            self.b += b"J" + struct.pack("<i", v)
        else:
            data = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
            self.b += b"\x8a" + bytes([len(data)]) + data
        return self

    def tuple_of(self, items):
        self.b += b"("
        for v in items:
            self.int(v)
        self.b += b"t"
        return self

    def op(self, code):
        self.b += code
        return self

    def stop(self):
        self.b += b"."
        return bytes(self.b)


class T:
    """One tensor entry of a hand-made state_dict."""

    def __init__(self, name, key, stype="FloatStorage", numel=None, offset=0, size=(), stride=None,
                 rebuild="_rebuild_tensor_v2", location="cpu", view=None):
        self.name, self.key, self.stype, self.numel = name, key, stype, numel
        self.offset, self.size = offset, tuple(size)
        self.stride = tuple(stride) if stride is not None else _contiguous(self.size)
        self.rebuild, self.location, self.view = rebuild, location, view


def _contiguous(size):
    out, acc = [], 1
    for d in reversed(size):
        out.append(acc)
        acc *= d
    return tuple(reversed(out))


def state_dict_pickle(tensors, legacy=False, extra=b""):
    """The pickle of an OrderedDict of ``tensors`` (list of :class:`T`), as torch writes it.

    ``extra`` is spliced in as one more key/value pair (raw opcodes pushing a key then a value).
    """
    p = P().glob("collections", "OrderedDict").op(b")R").op(b"(")
    for t in tensors:
        p.str(t.name).glob("torch._utils", t.rebuild).op(b"(")
        # the persistent id tuple
        p.op(b"(").str("storage").glob("torch", t.stype).str(t.key).str(t.location).int(t.numel)
        if legacy:
            if t.view is None:
                p.op(b"N")
            else:
                p.op(b"(").str(t.view[0]).int(t.view[1]).int(t.view[2]).op(b"t")
        p.op(b"t").op(b"Q")
        p.int(t.offset).tuple_of(t.size).tuple_of(t.stride)
        if t.rebuild == "_rebuild_tensor_v2":
            p.op(b"\x89").glob("collections", "OrderedDict").op(b")R")
        p.op(b"t").op(b"R")
    p.raw(extra)
    p.op(b"u")
    return p.stop()


def zip_checkpoint(pkl, storages, top="archive", byteorder="little", extra_entries=()):
    """Bytes of a zip-format checkpoint: ``pkl`` plus ``storages`` ({key: ndarray})."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{top}/data.pkl", pkl)
        if byteorder is not None:
            z.writestr(f"{top}/byteorder", byteorder)
        for key, arr in storages.items():
            z.writestr(f"{top}/data/{key}", np.ascontiguousarray(arr).tobytes())
        z.writestr(f"{top}/version", "3\n")
        for name, data in extra_entries:
            z.writestr(f"{top}/{name}", data)
    return buf.getvalue()


def legacy_checkpoint(obj_pkl, storages, keys=None, counts=None, prefix=b""):
    """Bytes of a legacy checkpoint: the five pickles, then each storage's count and bytes."""
    keys = list(storages) if keys is None else keys
    sys_info = dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4, long=4))
    out = bytearray(prefix)
    out += b"\x80\x02\x8a\x0a" + MAGIC.to_bytes(10, "little") + b"."
    out += pickle.dumps(1001, protocol=2)
    out += pickle.dumps(sys_info, protocol=2)
    out += obj_pkl
    out += pickle.dumps(keys, protocol=2)
    for key in keys:
        arr = np.ascontiguousarray(storages[key])
        count = arr.size if counts is None else counts[key]
        out += struct.pack("<q", count) + arr.tobytes()
    return bytes(out)


def small_state():
    """A small, varied state_dict: (tensors spec, storages, expected arrays)."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal(24).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    idx = np.arange(5, dtype=np.int64)
    spec = [
        T("conv.weight", "0", numel=24, size=(2, 3, 2, 2)),
        T("conv.bias", "1", numel=4, size=(4,)),
        T("transposed", "0", numel=24, size=(4, 6), stride=(1, 4)),  # shares storage 0
        T("offset_view", "1", numel=4, offset=1, size=(3,)),
        T("scalar", "1", numel=4, offset=3, size=()),
        T("counter", "2", stype="LongStorage", numel=5, size=(5,), location="cuda:0"),
    ]
    storages = {"0": w, "1": b, "2": idx}
    expected = {
        "conv.weight": w.reshape(2, 3, 2, 2),
        "conv.bias": b,
        "transposed": w.reshape(6, 4).T,
        "offset_view": b[1:4],
        "scalar": b[3].reshape(()),
        "counter": idx,
    }
    return spec, storages, expected


def small_zip(top="archive"):
    spec, storages, expected = small_state()
    return zip_checkpoint(state_dict_pickle(spec), storages, top=top), expected


def small_legacy():
    spec, storages, expected = small_state()
    return legacy_checkpoint(state_dict_pickle(spec, legacy=True), storages), expected


class Payload:
    """An object whose unpickling calls ``func(*args)`` — the classic malicious pickle."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)
