"""Hostile checkpoints: one small file per attack of issue 12, and a harness that runs a reader
on each in a child process under resource limits.

Each :class:`Case` builds its file (deterministically, in well under a second; the largest is
about 100 MB of mostly zeros) and names the interface it attacks: ``load_pth``,
``safetensors`` (open and read every tensor) or a ``python -m weights`` command (``info``,
``convert``, ``fetch``). ``tests/weights/test_hostile.py`` states what a correct reader must do
with each; :func:`run_case` is how both the tests and the measurements run them, so a reader
that hangs or balloons is killed by its limits instead of taking the test run down with it.

Measure every case (wall time, CPU time, peak resident memory from ``getrusage`` in the child)::

    python -m tests.weights.hostile                      # the weights package of this checkout
    python -m tests.weights.hostile --code DIR           # another copy (DIR holds weights/)
    python -m tests.weights.hostile --cpu 60 --mem 4096  # limits: CPU seconds, MiB of address space
"""

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from tests.weights.fixtures import (
    T,
    legacy_checkpoint,
    state_dict_pickle,
    zip_checkpoint,
)

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Pickle pieces


def tuple_bomb(levels):
    """Opcodes leaving one tuple on the stack whose expansion has ``2**levels`` empty-tuple leaves:
    each level is ``(prev, prev)`` built from two memo references (8 bytes a level). Hashing,
    comparing or printing it walks every leaf; building it costs nothing."""
    assert levels < 255
    out = bytearray(b")q\x00")  # EMPTY_TUPLE, BINPUT 0
    for i in range(levels):
        out += b"0h%ch%c\x86q%c" % (i, i, i + 1)  # POP, BINGET i, BINGET i, TUPLE2, BINPUT i+1
    return bytes(out)


def _glob(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s):
    data = s.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(data)) + data


def _int(v):
    return b"J" + struct.pack("<i", v) if -(2**31) <= v < 2**31 else b"\x8a\x09" + v.to_bytes(9, "little", signed=True)


def compact_state_pickle(names, keys, stype, numels, sizes, strides, legacy=False):
    """A state_dict pickle of many tensors with the repeated parts memoised, as ``torch.save``
    writes them (about 50 bytes a tensor): tensor ``i`` is ``names[i]`` viewing storage
    ``keys[i]`` of ``numels[i]`` elements with ``sizes[i]`` / ``strides[i]``."""
    out = bytearray(b"\x80\x02" + _glob("collections", "OrderedDict") + b"q\x00)R")
    out += _glob("torch._utils", "_rebuild_tensor_v2") + b"q\x01" + _str("storage") + b"q\x02"
    out += _glob("torch", stype) + b"q\x03" + _str("cpu") + b"q\x040000("  # memoised, then popped
    for name, key, numel, size, stride in zip(names, keys, numels, sizes, strides):
        out += _str(name) + b"h\x01((h\x02h\x03" + _str(key) + b"h\x04" + _int(numel)
        out += (b"Nt" if legacy else b"t") + b"QK\x00("
        out += b"".join(_int(d) for d in size) + b"t("
        out += b"".join(_int(s) for s in stride) + b"t\x89h\x00)RtR"
    return bytes(out + b"u.")


# ---------------------------------------------------------------------------------------------
# Containers built by hand where the fixtures' honest writers cannot go


def raw_zip(members):
    """Zip bytes with each stored ``(name, data)`` member in order, duplicates allowed (what
    :mod:`zipfile` will not write)."""
    body, entries = bytearray(), []
    for name, data in members:
        crc = zlib.crc32(data)
        entries.append((name, len(data), len(body), crc))
        body += _local_header(name, len(data), crc) + data
    return bytes(body) + _central_directory(entries, len(body))


def _local_header(name, size, crc):
    n = name.encode()
    return struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, size, size, len(n), 0) + n


def _central_directory(entries, offset):
    """Central directory and end record for ``entries`` ((name, size, header offset, crc))."""
    cd = bytearray()
    for name, size, header, crc in entries:
        n = name.encode()
        cd += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, size, size,
                          len(n), 0, 0, 0, 0, 0, header) + n
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(cd), offset, 0)
    return bytes(cd) + end


def overlapping_zip(count, payload_bytes):
    """A zip whose ``count`` storage members are nested: member ``i``'s data holds the local
    headers of members ``i+1 ...`` and then one shared payload, so ``count`` bfloat16 storages
    of about ``payload_bytes`` each come from one copy (the overlapping-file zip bomb). Their
    CRCs are left 0: a reader must refuse the overlap before it reads any data."""
    names = [f"archive/data/{i:05d}" for i in range(count)]  # 48-byte headers: even sizes
    hlen = len(_local_header(names[0], 0, 0))
    sizes = [(count - 1 - i) * hlen + payload_bytes for i in range(count)]
    spec = [T(f"t{i}", f"{i:05d}", stype="BFloat16Storage", numel=s // 2, size=(s // 2,))
            for i, s in enumerate(sizes)]
    pkl = state_dict_pickle(spec)
    body = bytearray(_local_header("archive/data.pkl", len(pkl), zlib.crc32(pkl)) + pkl)
    entries = [("archive/data.pkl", len(pkl), 0, zlib.crc32(pkl))]
    for name, size in zip(names, sizes):
        entries.append((name, size, len(body), 0))
        body += _local_header(name, size, 0)
    body += bytes(payload_bytes)
    return bytes(body) + _central_directory(entries, len(body))


def safetensors_bytes(header, buffer=b""):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + buffer


# ---------------------------------------------------------------------------------------------
# The cases


class Case:
    """One hostile input: ``build(folder) -> path``, the ``target`` it is fed to, the item of
    issue 12 it reproduces, and whether the test run includes it (``ci``; the two left out
    write or parse ~100 MB of valid data and are for measuring only)."""

    def __init__(self, name, item, target, build, note, ci=True):
        self.name, self.item, self.target, self.build, self.note, self.ci = name, item, target, build, note, ci


def _bytes_case(data_fn, suffix=".pth"):
    def build(folder):
        path = Path(folder) / f"case{suffix}"
        path.write_bytes(data_fn())
        return path
    return build


def _pkl(body, proto=2):
    return zip_checkpoint(b"\x80" + bytes([proto]) + body + b".", {})


def _legacy_version_bomb():
    good = legacy_checkpoint(state_dict_pickle([], legacy=True), {})
    version = b"\x80\x02M\xe9\x03."
    return good.replace(version, b"\x80\x02" + tuple_bomb(40) + b".", 1)


def _shared_views(stype, byteorder, count=400, nbytes=10 << 20):
    itemsize = 2 if stype == "BFloat16Storage" else 4
    numel = nbytes // itemsize
    spec = [T(f"view{i}", "0", stype=stype, numel=numel, size=(numel,)) for i in range(count)]
    storage = np.zeros(nbytes, np.uint8)
    return zip_checkpoint(state_dict_pickle(spec), {"0": storage}, byteorder=byteorder)


def _legacy_many_storages(count=160_000):
    keys = [str(i) for i in range(count)]
    pkl = compact_state_pickle(keys, keys, "FloatStorage", [0] * count, [(0,)] * count, [(1,)] * count,
                               legacy=True)
    return legacy_checkpoint(pkl, {k: np.zeros(0, np.float32) for k in keys})


def _deep_lists(levels=500_000):
    return _pkl(b"]" * levels + b"a" * (levels - 1))


def _duplicate_data_pkl():
    """Two ``data.pkl`` members: the first (read by torch) names os.system, the second is an
    honest empty state; a reader that keeps the last copy never sees the first."""
    evil = b"\x80\x02" + _glob("os", "system") + _str("echo pwned") + b"\x85R."
    honest = state_dict_pickle([T("w", "0", numel=1, size=(1,))])
    return raw_zip([("archive/data.pkl", evil), ("archive/data.pkl", honest),
                    ("archive/data/0", np.float32([1.0]).tobytes())])


def _crc_mismatch():
    data = zip_checkpoint(state_dict_pickle([T("w", "0", numel=4, size=(4,))]), {"0": np.float32([1, 2, 3, 4])})
    i = data.index(np.float32([1, 2, 3, 4]).tobytes())
    return data[:i] + np.float32([1, 2, 3, 5]).tobytes() + data[i + 16:]


def _pth_geometry(size, stride):
    return zip_checkpoint(state_dict_pickle([T("w", "0", numel=1, size=size, stride=stride)]),
                          {"0": np.float32([1.0])})


def _escapes_safetensors():
    names = ["\x1b[2J\x1b]0;owned\x07evil", "lone\ud800surrogate", "bidi\u202eexe.txt", "n" * 100_000]
    header, pos = {}, 0
    for n in names:
        header[n] = {"dtype": "F32", "shape": [1], "data_offsets": [pos, pos + 4]}
        pos += 4
    header["__metadata__"] = {"arch": "\x1b]0;title\x07", "long": "m" * 100_000, "\x1b[31mkey": "v"}
    raw = json.dumps(header).encode()  # ASCII with \u escapes; the lone surrogate survives
    return safetensors_bytes(raw, bytes(4 * len(names)))


def _fifo(folder):
    path = Path(folder) / "fifo.pth"
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


def _device(path):
    return lambda folder: Path(path)


def _big(data_fn):
    return _bytes_case(data_fn, ".safetensors")


def _nested_header(size=99_000_000):
    n = (size - 8) // 3
    return safetensors_bytes(b'{"a":[' + b"{}," * n + b"{}]}")


def _numbered_rows(prefix, suffix, size):
    """About ``size`` bytes of rows ``prefix + 8 hex digits (the row number) + suffix``, built
    with NumPy (ten million rows in a fraction of a second); the last byte (a separator) is cut."""
    width = len(prefix) + 8 + len(suffix)
    n = size // width
    rows = np.empty((n, width), np.uint8)
    rows[:, : len(prefix)] = np.frombuffer(prefix, np.uint8)
    rows[:, len(prefix) + 8 :] = np.frombuffer(suffix, np.uint8)
    numbers = np.arange(n, dtype=np.uint32)
    for k in range(8):
        rows[:, len(prefix) + 7 - k] = np.frombuffer(b"0123456789abcdef", np.uint8)[(numbers >> (4 * k)) & 15]
    return rows.tobytes()[:-1]


def _many_objects_header(size=99_000_000):
    return safetensors_bytes(b"{" + _numbered_rows(b'"', b'":{},', size) + b"}")


def _many_metadata_header(size=99_000_000):
    """A header of valid form that is all metadata: 7.6M tiny string pairs."""
    return safetensors_bytes(b'{"__metadata__":{' + _numbered_rows(b'"', b'":"",', size) + b"}}")


def _many_tensors_header(size=99_000_000):
    """A header of valid form: 1.6M zero-size tensors."""
    entry = b'":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},'
    return safetensors_bytes(b"{" + _numbered_rows(b'"', entry, size) + b"}")


CASES = {c.name: c for c in [
    Case("bomb-dict-key", 1, "load_pth", _bytes_case(lambda: _pkl(b"}" + tuple_bomb(40) + b"Ns")),
         "a 2**40-leaf tuple used as a dict key (hashing walks every leaf)"),
    Case("bomb-storage-key", 1, "load_pth",
         _bytes_case(lambda: _pkl(b"(" + _str("storage") + _glob("torch", "FloatStorage") + tuple_bomb(40)
                                  + _str("cpu") + b"K\x01tQ")),
         "a 2**40-leaf tuple as a storage key (an error message that repr()s it)"),
    Case("bomb-frozenset", 1, "load_pth", _bytes_case(lambda: _pkl(b"(" + tuple_bomb(40) + b"\x91", 4)),
         "a 2**40-leaf tuple in a frozenset"),
    Case("bomb-set", 1, "load_pth", _bytes_case(lambda: _pkl(b"\x8f(" + tuple_bomb(40) + b"\x90", 4)),
         "a 2**40-leaf tuple added to a set"),
    Case("bomb-ordereddict-items", 1, "load_pth",
         _bytes_case(lambda: _pkl(_glob("collections", "OrderedDict") + b"]" + tuple_bomb(40) + b"N\x86a\x85R")),
         "OrderedDict([(bomb, None)]): the key hashed inside the constructor"),
    Case("bomb-legacy-version", 1, "load_pth", _bytes_case(_legacy_version_bomb),
         "a legacy file whose protocol-version pickle is a 2**40-leaf tuple (printed in the error)"),
    Case("deep-nesting", 1, "load_pth", _bytes_case(_deep_lists), "500,000 nested lists (1 MB)"),
    Case("pickle-many-lists", 1, "load_pth", _bytes_case(lambda: _pkl(b"]" * 10_000_000)),
         "10 MB of EMPTY_LIST opcodes: the most objects per byte a pickle can build", ci=False),
    Case("long-byteorder", 12, "load_pth", _bytes_case(lambda: zip_checkpoint(
        state_dict_pickle([]), {}, byteorder="x" * 1_000_000)), "a 1 MB byteorder record (echoed in the error)"),
    Case("shared-bf16-views", 2, "load_pth", _bytes_case(lambda: _shared_views("BFloat16Storage", "little")),
         "400 tensors viewing one 10 MB bfloat16 storage"),
    Case("shared-bigendian-views", 2, "load_pth", _bytes_case(lambda: _shared_views("FloatStorage", "big")),
         "400 tensors viewing one 10 MB big-endian float32 storage"),
    Case("overlapping-members", 2, "load_pth", _bytes_case(lambda: overlapping_zip(400, 10 << 20)),
         "400 zip members nested in each other, each a ~10 MB bfloat16 storage"),
    Case("legacy-many-storages", 3, "load_pth", _bytes_case(_legacy_many_storages),
         "a legacy file with 160,000 empty storages"),
    Case("safetensors-nested-header", 4, "safetensors", _big(_nested_header),
         'a 99 MB header {"a":[{},{},...]}'),
    Case("safetensors-many-objects", 4, "safetensors", _big(_many_objects_header),
         'a 99 MB header {"0":{},"1":{},...}'),
    Case("safetensors-many-metadata", 4, "safetensors", _big(_many_metadata_header),
         "a 99 MB header of valid form: 7.6M tiny metadata pairs"),
    Case("safetensors-many-tensors", 4, "safetensors", _big(_many_tensors_header),
         "a 99 MB header of valid form: 1.6M zero-size tensors", ci=False),
    Case("info-dev-zero", 5, "info", _device("/dev/zero"), "python -m weights info /dev/zero"),
    Case("convert-dev-zero", 5, "convert", _device("/dev/zero"), "python -m weights convert /dev/zero"),
    Case("info-fifo", 5, "info", _fifo, "python -m weights info on a FIFO nobody writes to"),
    Case("fetch-dev-zero", 5, "fetch", _device("/dev/zero"),
         "python -m weights fetch vgg16 --url file:///dev/zero (registry size 553 MB)", ci=False),
    Case("duplicate-data-pkl", 7, "load_pth", _bytes_case(_duplicate_data_pkl),
         "two archive/data.pkl members, the first malicious"),
    Case("crc-mismatch", 7, "load_pth", _bytes_case(_crc_mismatch), "a storage byte changed after zipping"),
    Case("pth-size-2**63", 9, "load_pth", _bytes_case(lambda: _pth_geometry((0, 2**63), (1, 1))),
         ".pth tensor of size (0, 2**63)"),
    Case("pth-stride-2**70", 9, "load_pth", _bytes_case(lambda: _pth_geometry((1,), (2**70,))),
         ".pth tensor of stride (2**70,)"),
    Case("safetensors-shape-2**63", 9, "safetensors", _big(lambda: safetensors_bytes(
        {"w": {"dtype": "F32", "shape": [0, 2**63], "data_offsets": [0, 0]}})), "safetensors shape [0, 2**63]"),
    Case("info-escapes", 12, "info", _big(_escapes_safetensors),
         "tensor names and metadata with terminal escapes, a lone surrogate, a bidi override, 100 kB"),
]}


# ---------------------------------------------------------------------------------------------
# Running a case in a child process

_CHILD = r"""
import contextlib, io, json, os, resource, sys, time
target, path, out = sys.argv[1:4]
import numpy, weights, weights.__main__
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0, c0 = time.perf_counter(), time.process_time()
stdout, stderr = io.StringIO(), io.StringIO()
result = {}
try:
    if target == "load_pth":
        result["outcome"] = f"loaded {len(weights.load_pth(path))} tensors"
    elif target == "safetensors":
        f = weights.SafetensorsFile(path)
        for k in f.keys():
            numpy.asarray(f[k]).sum()
        result["outcome"] = f"loaded {len(f)} tensors"
    else:
        argv = {"info": ["info", path], "convert": ["convert", path, "-o", out],
                "fetch": ["fetch", "vgg16", "--url", "file://" + path, "-q"]}[target]
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = weights.__main__.main(argv)
        result["outcome"] = f"exit {code}"
except weights.CheckpointError as e:
    result["outcome"], result["message"] = "CheckpointError", str(e)
except BaseException as e:
    result["outcome"], result["message"] = type(e).__name__, str(e)
result["wall_s"] = time.perf_counter() - t0
result["cpu_s"] = time.process_time() - c0
result["base_rss_mb"] = base / 1024
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
result["stdout"], result["stderr"] = stdout.getvalue(), stderr.getvalue()
result["message_len"] = len(result.get("message", ""))
with open(os.environ["HOSTILE_RESULT"], "w", encoding="utf-8", errors="surrogatepass") as f:
    json.dump(result, f, ensure_ascii=True)
"""


def run_case(case, folder, code=ROOT, cpu_s=30, mem_mb=2048, wall_s=None, fsize_mb=1024):
    """Build ``case`` in ``folder`` and feed it to its target in a child process limited to
    ``cpu_s`` CPU seconds, ``mem_mb`` MiB of address space and ``fsize_mb`` MiB per written file;
    return the child's report (``outcome``, ``message``, ``stdout``, ``stderr``, ``wall_s``,
    ``cpu_s``, ``peak_rss_mb``, ``base_rss_mb``) or, when a limit killed it, ``outcome``
    ``"killed (...)"``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = case.build(folder)
    result_file = folder / f"{case.name}.result.json"
    env = dict(os.environ, PYTHONPATH=str(code), MINIGRAD_HOME=str(folder / "home"),
               HOSTILE_RESULT=str(result_file), OPENBLAS_NUM_THREADS="1")
    env.pop("MINIGRAD_DEBUG", None)

    def limits():
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
        resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_mb << 20, fsize_mb << 20))

    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, case.target, str(path), str(folder / "out.safetensors")],
                              env=env, cwd=folder, preexec_fn=limits, capture_output=True,
                              timeout=wall_s or 2 * cpu_s + 10)
    except subprocess.TimeoutExpired:
        return {"outcome": "killed (wall-clock limit: blocked)", "wall_s": time.perf_counter() - t0}
    if proc.returncode != 0 or not result_file.exists():
        why = {-9: "CPU or memory limit", -24: "CPU limit"}.get(proc.returncode, f"exit {proc.returncode}")
        return {"outcome": f"killed ({why})", "wall_s": time.perf_counter() - t0,
                "stderr": proc.stderr.decode(errors="replace")[-500:]}
    return json.loads(result_file.read_text())


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tests.weights.hostile", description=__doc__.split("\n\n")[0])
    p.add_argument("--code", default=str(ROOT), help="folder holding the weights package to measure")
    p.add_argument("--cases", help="comma-separated case names (default: all)")
    p.add_argument("--cpu", type=int, default=60, help="CPU seconds per case")
    p.add_argument("--mem", type=int, default=4096, help="MiB of address space per case")
    p.add_argument("--folder", default="/tmp/hostile-cases", help="where the files are built")
    args = p.parse_args(argv)
    names = args.cases.split(",") if args.cases else list(CASES)
    print(f"{'case':28} {'item':>4} {'wall s':>8} {'cpu s':>8} {'peak MB':>8} {'+MB':>7}  outcome")
    for name in names:
        case = CASES[name]
        r = run_case(case, Path(args.folder) / name, args.code, args.cpu, args.mem)
        peak, base = r.get("peak_rss_mb"), r.get("base_rss_mb")
        grown = f"{peak - base:7.0f}" if peak else "      -"
        outcome = r["outcome"] + (": " + r["message"] if r.get("message") else "")
        outcome += ("; stderr: " + r["stderr"].strip()) if r.get("stderr") else ""
        print(f"{name:28} {case.item:>4} {r['wall_s']:8.2f} {r.get('cpu_s', float('nan')):8.2f} "
              f"{peak or float('nan'):8.0f} {grown}  {outcome[:150]!a}", flush=True)
        for f in Path(args.folder, name).glob("*"):
            if not f.is_dir():
                f.unlink()


if __name__ == "__main__":
    main()
