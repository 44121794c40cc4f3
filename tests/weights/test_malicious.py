"""Malicious checkpoints are refused and their payloads never run.

Every payload here would create a marker file if it ran. Each test first proves the payload
is live (plain ``pickle`` in a child process does create the marker), then shows that
``load_pth`` refuses the file with a clear error and the marker does not exist.
"""

import os
import pickle
import struct
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from tests.weights.fixtures import (
    P,
    Payload,
    legacy_checkpoint,
    small_legacy,
    small_state,
    small_zip,
    state_dict_pickle,
    zip_checkpoint,
)
from weights import CheckpointError, load_pth


def plain_unpickle_in_child(data):
    """Run the stock unpickler on ``data`` in a child process (what an unsafe loader does)."""
    code = "import pickle, io, sys; f = io.BytesIO(sys.stdin.buffer.read()); pickle.load(f)"
    subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=30)


def refuse(path, match="unsafe pickle"):
    with pytest.raises(CheckpointError, match=match) as info:
        load_pth(path)
    return str(info.value)


def touch_payloads(marker):
    """(label, pickled payload object) pairs that each create ``marker`` when unpickled."""
    expr = f"open({str(marker)!r}, 'w').close()"
    return [
        ("os.system", Payload(os.system, f"touch '{marker}'")),
        ("builtins.eval", Payload(eval, expr)),
        ("builtins.exec", Payload(exec, expr)),
    ]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["os.system", "builtins.eval", "builtins.exec"])
@pytest.mark.parametrize("container", ["zip", "legacy", "bare"])
def test_payload_as_the_whole_object(tmp_path, which, container):
    marker = tmp_path / "pwned"
    label, payload = touch_payloads(marker)[which]
    pkl = pickle.dumps(payload, protocol=2)
    plain_unpickle_in_child(pkl)
    assert marker.exists(), "the payload should be live"
    marker.unlink()

    data = {"zip": lambda: zip_checkpoint(pkl, {}), "legacy": lambda: legacy_checkpoint(pkl, {}),
            "bare": lambda: pkl}[container]()
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    msg = refuse(path)
    module = {"os.system": "posix|os|nt", "builtins.eval": "builtins|__builtin__",
              "builtins.exec": "builtins|__builtin__"}[label]
    assert any(f"global {m}." in msg for m in module.split("|")), msg
    assert "is not allowed" in msg
    assert not marker.exists()


def test_message_names_the_global(tmp_path):
    pkl = P().op(b"(").str("echo hi").op(b"t").glob("os", "system").op(b"(").str("x").op(b"tR").stop()
    path = tmp_path / "e.pth"
    path.write_bytes(zip_checkpoint(pkl, {}))
    assert "unsafe pickle: global os.system is not allowed" in refuse(path)


def test_payload_prepended_before_legacy_magic(tmp_path):
    marker = tmp_path / "pwned"
    prefix = b"c__builtin__\neval\n(V" + f"open({str(marker)!r}, 'w').close()".encode() + b"\ntR0"
    data, _ = small_legacy()
    evil = prefix + data
    plain_unpickle_in_child(evil)  # torch's legacy loader reads the magic with a plain pickle.load
    assert marker.exists(), "the prepended payload should be live"
    marker.unlink()
    path = tmp_path / "evil.pth"
    path.write_bytes(evil)
    assert "global __builtin__.eval" in refuse(path)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["sys_info", "key list"])
def test_payload_in_later_legacy_pickles(tmp_path, where):
    marker = tmp_path / "pwned"
    spec, storages, _ = small_state()
    good = legacy_checkpoint(state_dict_pickle(spec, legacy=True), storages)
    evil = pickle.dumps(Payload(os.system, f"touch '{marker}'"), protocol=2)
    if where == "sys_info":
        info = pickle.dumps(dict(protocol_version=1001, little_endian=True,
                                 type_sizes=dict(short=2, int=4, long=4)), protocol=2)
        data = good.replace(info, evil)
    else:
        keys = pickle.dumps(list(storages), protocol=2)
        data = good.replace(keys, evil)
    assert data != good
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    refuse(path)
    assert not marker.exists()


def test_reduce_nested_inside_the_state_dict_handmade(tmp_path):
    marker = tmp_path / "pwned"
    # {'w': tensor, 'evil': [(1, os.system('touch marker'))]} -- the call is deep inside a value
    extra = (P(proto=0).str("evil").op(b"]").int(1).glob("os", "system").op(b"(")
             .str(f"touch '{marker}'").op(b"tR\x86a").b)
    spec, storages, _ = small_state()
    for zipped in (True, False):
        pkl = state_dict_pickle(spec, legacy=not zipped, extra=bytes(extra))
        data = zip_checkpoint(pkl, storages) if zipped else legacy_checkpoint(pkl, storages)
        path = tmp_path / f"evil{zipped}.pth"
        path.write_bytes(data)
        assert "global os.system" in refuse(path)
        assert not marker.exists()


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_reduce_nested_inside_a_torch_saved_dict(tmp_path, zipped):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    obj = {"w": torch.ones(2), "nested": {"deeper": [Payload(os.system, f"touch '{marker}'")]}}
    path = tmp_path / "evil.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=zipped)
    assert not marker.exists()
    assert "global posix.system" in refuse(path) or "global os.system" in refuse(path)
    assert not marker.exists()


def test_protocol4_stack_global_and_inst_and_ext(tmp_path):
    marker = tmp_path / "pwned"
    cases = {
        "stack_global": pickle.dumps(Payload(os.system, f"touch '{marker}'"), protocol=4),
        "inst": b"(S'touch " + str(marker).encode() + b"'\nios\nsystem\n.",
        "ext": b"\x80\x02\x82\x01.",
        "obj": b"\x80\x02(cos\nsystem\nS'x'\no.",
    }
    for name, pkl in cases.items():
        path = tmp_path / f"{name}.pth"
        path.write_bytes(zip_checkpoint(pkl, {}))
        msg = refuse(path)
        assert ("os.system" in msg or "posix.system" in msg or "opcode EXT1" in msg), (name, msg)
        assert not marker.exists()


def test_build_cannot_tamper_with_the_stand_ins(tmp_path):
    # BUILD on torch.FloatStorage trying to set its itemsize to 0 for later files
    pkl = P().glob("torch", "FloatStorage").op(b"}").str("itemsize").int(0).op(b"sb").stop()
    path = tmp_path / "build.pth"
    path.write_bytes(zip_checkpoint(pkl, {}))
    refuse(path, "BUILD")
    pkl = P().glob("torch._utils", "_rebuild_tensor_v2").op(b"}").str("x").int(0).op(b"sb").stop()
    path.write_bytes(zip_checkpoint(pkl, {}))
    refuse(path, "BUILD")
    # an honest file still reads correctly afterwards
    data, expected = small_zip()
    path.write_bytes(data)
    got = load_pth(path)
    np.testing.assert_array_equal(got["conv.weight"], expected["conv.weight"])


def test_only_storage_persistent_ids(tmp_path):
    pkl = P().op(b"(").str("module").str("os").op(b"tQ").stop()
    path = tmp_path / "pid.pth"
    path.write_bytes(zip_checkpoint(pkl, {}))
    refuse(path, "persistent id")


def test_rebuild_with_garbage_arguments(tmp_path):
    pkl = P().glob("torch._utils", "_rebuild_tensor_v2").op(b"(").str("not a storage").int(0)
    pkl = pkl.op(b")").op(b")").op(b"\x89N").op(b"tR").stop()
    path = tmp_path / "g.pth"
    path.write_bytes(zip_checkpoint(pkl, {}))
    refuse(path, "storage")


@pytest.mark.parametrize(
    "pkl",
    [
        b"\x80\x02Nr\xf0\xff\xff\xff.",  # LONG_BINPUT at index 4 billion: the C unpickler would size its memo to it
        b"\x80\x02B\xff\xff\xff\xfftoo short.",  # BINBYTES claiming 4 GiB
        b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"x.",  # BINBYTES8 claiming 2**62 bytes
        b"\x80\x02X\xff\xff\xff\x7fabc.",  # BINUNICODE claiming 2 GiB
    ],
    ids=["memo", "binbytes", "binbytes8", "binunicode"],
)
def test_hostile_lengths_are_refused_without_allocating(tmp_path, pkl):
    path = tmp_path / "bomb.pth"
    path.write_bytes(zip_checkpoint(pkl, {}))
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError):
            load_pth(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak allocation {peak} bytes"
