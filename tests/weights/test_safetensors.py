"""Our safetensors reader and writer: round trips, the byte layout, and every header check."""

import json
import os
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from weights import CheckpointError, SafetensorsFile, load_file, save_file
from weights.safetensors import read_header


def raw_file(path, header, buffer=b"", length=None):
    """Write a safetensors file from a header dict (or raw bytes) and a data buffer."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(h) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + h + buffer)
    return path


DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64,
          np.uint8, np.uint16, np.uint32, np.uint64, np.bool_]


@given(arrays=st.lists(hnp.arrays(st.sampled_from(DTYPES), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0,
                                                                            max_side=5)), max_size=5))
def test_round_trip_any_dtypes_and_shapes(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("rt") / "t.safetensors"
    tensors = {f"t{i}": a for i, a in enumerate(arrays)}
    save_file(tensors, path, {"k": "v"})
    got, meta = load_file(path)
    assert meta == {"k": "v"}
    assert set(got) == set(tensors)
    for k, a in tensors.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape
        np.testing.assert_array_equal(got[k], a)
    header = read_header(path)
    assert header.data_start % 8 == 0


def test_exact_bytes_of_a_small_file(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"b": np.array([1, 2], "<i2"), "a": np.array([1.5], "<f8")}, path)
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    # 8-byte dtypes first, then by name; offsets packed from 0
    assert list(header) == ["a", "b"]
    assert header["a"] == {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}
    assert header["b"] == {"dtype": "I16", "shape": [2], "data_offsets": [8, 12]}
    assert data[8 + n :] == struct.pack("<d", 1.5) + struct.pack("<hh", 1, 2)
    assert (8 + n) % 8 == 0 and data[8:9] == b"{"


def test_reads_without_copying_and_read_only(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"w": np.arange(1000, dtype=np.float32)}, path)
    f = SafetensorsFile(path)
    w = f["w"]
    assert not w.flags.writeable and not w.flags.owndata
    base = w
    while base.base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)
    np.testing.assert_array_equal(w, np.arange(1000))


def test_writer_normalises_layout_and_byte_order(tmp_path):
    a = np.arange(12, dtype=">f4").reshape(3, 4).T  # big-endian, non-contiguous
    path = tmp_path / "x.safetensors"
    save_file({"a": a, "s": np.float64(2.5)}, path)
    got, _ = load_file(path)
    np.testing.assert_array_equal(got["a"], a)
    assert got["s"].shape == () and got["s"] == 2.5


def test_writer_refusals(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"a": np.zeros(2)}, path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="already exists"):
        save_file({"a": np.ones(2)}, path)
    assert path.read_bytes() == before
    save_file({"a": np.ones(2)}, path, overwrite=True)
    np.testing.assert_array_equal(load_file(path)[0]["a"], [1, 1])
    with pytest.raises(CheckpointError, match="reserved"):
        save_file({"__metadata__": np.zeros(1)}, tmp_path / "y.safetensors")
    with pytest.raises(CheckpointError, match="cannot store"):
        save_file({"c": np.zeros(2, np.complex128)}, tmp_path / "y.safetensors")
    with pytest.raises(CheckpointError, match="strings"):
        save_file({"a": np.zeros(1)}, tmp_path / "y.safetensors", {"n": 3})
    with pytest.raises(CheckpointError, match="does not exist"):
        save_file({"a": np.zeros(1)}, tmp_path / "no" / "such" / "dir.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["x.safetensors"]


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    import weights.safetensors as mod

    def boom(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(mod.os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        save_file({"a": np.zeros(10)}, tmp_path / "x.safetensors")
    assert os.listdir(tmp_path) == []


def test_bf16_is_widened_on_read(tmp_path):
    vals = np.array([1.0, -0.5, 256.0], np.float32)
    buf = (vals.view(np.uint32) >> 16).astype("<u2").tobytes()
    path = raw_file(tmp_path / "b.safetensors", {"b": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}, buf)
    np.testing.assert_array_equal(SafetensorsFile(path)["b"], vals)
    path = raw_file(tmp_path / "f8.safetensors", {"f": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}},
                    b"\0\0")
    with pytest.raises(CheckpointError, match="NumPy cannot represent"):
        SafetensorsFile(path)["f"]


def entry(dtype="F32", shape=(2,), offs=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offs)}


@pytest.mark.parametrize(
    "header, buffer, length, match",
    [
        (b"{}", b"", 10**9, "exceeds"),
        (b"{}", b"", 50, "truncated"),
        (b"", b"", None, "too short"),
        (b"[1, 2]", b"", None, "not a JSON object"),
        (b"{not json", b"", None, "not valid JSON"),
        (b'{"a": 1, "a": 2}', b"", None, "duplicate key"),
        (b"{\xff\xfe}", b"", None, "not UTF-8"),
        (b"[" * 50000 + b"]" * 50000, b"", None, "not a JSON object"),
        (b"{" + b'"a":{' * 3000 + b"}" * 3001, b"", None, "nested too deeply|wrong fields|not a JSON object"),
        ({"a": 5}, b"", None, "not a JSON object"),
        ({"a": {"dtype": "F32", "shape": [2]}}, b"", None, "missing"),
        ({"a": dict(entry(), extra=1)}, b"\0" * 8, None, "unexpected"),
        ({"a": entry(dtype="F128")}, b"\0" * 8, None, "unknown dtype"),
        ({"a": entry(shape=(-2,))}, b"\0" * 8, None, "non-negative"),
        ({"a": entry(shape=(2.0,))}, b"\0" * 8, None, "non-negative"),
        ({"a": entry(shape=(True,), offs=(0, 4))}, b"\0" * 4, None, "non-negative"),
        ({"a": entry(offs=(8, 0))}, b"\0" * 8, None, "begin <= end"),
        ({"a": entry(offs=(0, 8, 9))}, b"\0" * 8, None, "data_offsets"),
        ({"a": entry(offs=(0, 12))}, b"\0" * 12, None, "needs 8 bytes"),
        ({"a": entry(), "b": entry(offs=(4, 12))}, b"\0" * 12, None, "overlap"),
        ({"a": entry(), "b": entry(offs=(12, 20))}, b"\0" * 20, None, "gap"),
        ({"a": entry(offs=(4, 12))}, b"\0" * 12, None, "at the start"),
        ({"a": entry()}, b"\0" * 6, None, "truncated"),
        ({"a": entry()}, b"\0" * 9, None, "trailing"),
        ({"a": entry(shape=(2**40, 2**40), offs=(0, 2**82))}, b"", None, r"more than 2\*\*63 bytes"),
        ({"__metadata__": {"k": 1}}, b"", None, "strings"),
        ({"__metadata__": "x"}, b"", None, "strings"),
    ],
)
def test_header_validation(tmp_path, header, buffer, length, match):
    path = raw_file(tmp_path / "bad.safetensors", header, buffer, length)
    with pytest.raises(CheckpointError, match=match):
        SafetensorsFile(path)


def test_short_and_missing_files(tmp_path):
    (tmp_path / "short").write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="fewer than"):
        SafetensorsFile(tmp_path / "short")
    with pytest.raises(CheckpointError, match="no such file"):
        SafetensorsFile(tmp_path / "missing")


def test_zero_size_rank_zero_and_empty_files(tmp_path):
    path = tmp_path / "z.safetensors"
    save_file({"e": np.zeros((0, 3), np.float32), "s": np.array(7, np.int64)}, path)
    got, _ = load_file(path)
    assert got["e"].shape == (0, 3) and got["s"].shape == () and got["s"] == 7
    save_file({}, tmp_path / "none.safetensors")
    assert load_file(tmp_path / "none.safetensors") == ({}, {})


# ---------------------------------------------------------------------------------------------
# The shape check that runs before json builds anything (issue 12; full-size files in test_hostile.py)

NAMES = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)


@given(
    st.dictionaries(NAMES.filter(lambda n: n != "__metadata__"),
                    st.tuples(st.sampled_from(["F32", "U8", "BF16", "I64"]),
                              st.lists(st.integers(0, 2**40), max_size=64), st.integers(0, 2**63)), max_size=6),
    st.none() | st.dictionaries(NAMES, NAMES, max_size=6),
    st.booleans(), st.sampled_from([None, 0, 2]), st.sampled_from([(",", ":"), (", ", ": "), (" ,\t", " :\r\n")]),
)
def test_every_header_of_valid_form_passes_the_shape_check(entries, metadata, ascii_only, indent, separators):
    from weights.safetensors import _form_problem

    header = {name: {"dtype": d, "shape": shape, "data_offsets": [begin, begin]} for name, (d, shape, begin) in
              entries.items()}
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header, ensure_ascii=ascii_only, indent=indent, separators=separators).encode()
    assert _form_problem(raw) is None


@pytest.mark.parametrize(
    "raw, problem",
    [(b'{"a":[{},{}]}', "something other than integers"),
     (b'{"a":{"b":{"c":"d"}}}', "not a JSON object of tensor entries"),
     (b'{"a":{"shape":[' + b"1," * 64 + b'1],"dtype":"F32","data_offsets":[0,0]}}', "more than 64 elements"),
     (b'{"a":{"shape":[1.5],"dtype":"F32","data_offsets":[0,0]}}', "something other than integers"),
     (b'{"a":{"shape":true,"dtype":"F32","data_offsets":[0,0]}}', "not a JSON object of tensor entries"),
     (b'{"a":{"shape":[123456789012345678901],"dtype":"F32","data_offsets":[0,0]}}', "more than 20 digits"),
     (b'{"a":{},"b":{}}', "more than one entry is not a tensor"),
     (b'{"__metadata__":{"a":"b' + b'\\"' * 10 + b'}}', "not terminated"),
     (b'{"__metadata__":{' + b",".join(b'"%d":""' % i for i in range(65_537)) + b"}}", "more than 65536 metadata")],
)
def test_headers_of_other_forms_are_refused_by_the_shape_check(tmp_path, raw, problem, monkeypatch):
    from weights import safetensors

    assert problem in safetensors._form_problem(raw)
    big = raw[:-1] + b" " * (1 << 17) + raw[-1:]  # too big to parse for a precise message: json never runs
    monkeypatch.setattr(safetensors.json, "loads", lambda *a, **k: pytest.fail("json.loads ran"))
    path = raw_file(tmp_path / "bad.safetensors", big)
    with pytest.raises(CheckpointError, match=problem):
        SafetensorsFile(path)


def test_hostile_names_in_messages_are_escaped_and_cut(tmp_path):
    name = "\x1b[2J" + "n" * 100_000
    path = raw_file(tmp_path / "bad.safetensors", {name: entry(dtype="F99")}, b"\0" * 8)
    with pytest.raises(CheckpointError) as info:
        SafetensorsFile(path)
    assert r"tensor '\x1b[2Jnnn" in str(info.value) and "...(+" in str(info.value)
    assert "\x1b" not in str(info.value) and len(str(info.value)) < 500
