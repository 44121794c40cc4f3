"""The torch-free .pth reader: both containers, from hand-built bytes and (when installed) torch."""

import pickle
import struct

import numpy as np
import pytest

from tests.weights.fixtures import (
    P,
    T,
    legacy_checkpoint,
    small_legacy,
    small_state,
    small_zip,
    state_dict_pickle,
    zip_checkpoint,
)
from weights import CheckpointError, load_pth
from weights.torch_pth import sniff_format


def write(tmp_path, data, name="ckpt.pth"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def assert_same(got, expected):
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k].shape == v.shape, k
        assert got[k].dtype == v.dtype, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)
        assert not got[k].flags.writeable, k


# ---------------------------------------------------------------------------------------------
# Hand-built files (no torch needed)


@pytest.mark.parametrize("top", ["archive", "vgg16-397923af", "my model"])
def test_zip_handmade_any_top_folder(tmp_path, top):
    data, expected = small_zip(top)
    assert sniff_format(data[:264]) == "zip"
    assert_same(load_pth(write(tmp_path, data)), expected)


def test_legacy_handmade(tmp_path):
    data, expected = small_legacy()
    assert sniff_format(data[:264]) == "legacy"
    assert_same(load_pth(write(tmp_path, data)), expected)


def test_arrays_view_the_file_without_copying(tmp_path):
    data, _ = small_zip()
    got = load_pth(write(tmp_path, data))
    # conv.weight and transposed share one storage and therefore one buffer
    assert np.shares_memory(got["conv.weight"], got["transposed"])


def test_old_rebuild_tensor_and_parameter(tmp_path):
    w = np.arange(6, dtype=np.float64)
    spec = [T("a", "k", stype="DoubleStorage", numel=6, size=(2, 3), rebuild="_rebuild_tensor")]
    pkl = state_dict_pickle(spec, legacy=True)
    got = load_pth(write(tmp_path, legacy_checkpoint(pkl, {"k": w})))
    np.testing.assert_array_equal(got["a"], w.reshape(2, 3))

    # _rebuild_parameter(_rebuild_tensor_v2(...), requires_grad, hooks)
    p = P().glob("collections", "OrderedDict").op(b")R(").str("p").glob("torch._utils", "_rebuild_parameter")
    p.op(b"(").glob("torch._utils", "_rebuild_tensor_v2").op(b"((").str("storage").glob("torch", "FloatStorage")
    p.str("0").str("cpu").int(2).op(b"tQ").int(0).tuple_of((2,)).tuple_of((1,)).op(b"\x89")
    p.glob("collections", "OrderedDict").op(b")RtR").op(b"\x88").glob("collections", "OrderedDict").op(b")RtR")
    p.op(b"u")
    data = zip_checkpoint(p.stop(), {"0": np.array([1.5, 2.5], np.float32)})
    np.testing.assert_array_equal(load_pth(write(tmp_path, data, "p.pth"))["p"], [1.5, 2.5])


def test_legacy_storage_view(tmp_path):
    root = np.arange(10, dtype=np.float32)
    spec = [T("v", "root", numel=10, size=(2, 2), view=("view1", 3, 4))]
    data = legacy_checkpoint(state_dict_pickle(spec, legacy=True), {"root": root})
    np.testing.assert_array_equal(load_pth(write(tmp_path, data))["v"], root[3:7].reshape(2, 2))


def test_bfloat16_widened_and_big_endian_zip(tmp_path):
    vals = np.array([1.0, -2.5, 3.140625], np.float32)
    bf16 = (vals.view(np.uint32) >> 16).astype("<u2")
    spec = [T("b", "0", stype="BFloat16Storage", numel=3, size=(3,)),
            T("h", "1", stype="HalfStorage", numel=2, size=(2,))]
    half = np.array([0.5, 7.0], ">f2")
    data = zip_checkpoint(state_dict_pickle(spec), {"0": bf16.astype(">u2"), "1": half}, byteorder="big")
    got = load_pth(write(tmp_path, data))
    np.testing.assert_array_equal(got["b"], vals)
    assert got["b"].dtype == np.float32
    np.testing.assert_array_equal(got["h"], [0.5, 7.0])
    assert got["h"].dtype.isnative


def test_python2_style_strings_and_wrapped_state_dict(tmp_path):
    # SHORT_BINSTRING keys (Python 2 pickles) and {"state_dict": ..., "epoch": 3}
    p = P().op(b"}(").op(b"U\x05epoch").int(3).op(b"U\x0astate_dict")
    p.glob("collections", "OrderedDict").op(b")R(").op(b"U\x01w").glob("torch._utils", "_rebuild_tensor")
    p.op(b"((U\x07storage").glob("torch.cuda", "FloatStorage").op(b"U\x010U\x06cuda:0").int(1).op(b"NtQ")
    p.int(0).tuple_of((1,)).tuple_of((1,)).op(b"tRuu")
    data = legacy_checkpoint(p.stop(), {"0": np.array([4.0], np.float32)})
    got = load_pth(write(tmp_path, data))
    assert list(got) == ["w"] and got["w"][0] == 4.0


def test_protocol4_frames_and_stack_global(tmp_path):
    # Protocol 4 uses FRAME, SHORT_BINUNICODE, STACK_GLOBAL and MEMOIZE.
    def s(x):
        return b"\x8c" + bytes([len(x)]) + x.encode()

    body = (
        s("collections") + s("OrderedDict") + b"\x93\x94" + b")R\x94(" + s("w") + b"\x94"
        + s("torch._utils") + s("_rebuild_tensor_v2") + b"\x93\x94" + b"((" + s("storage")
        + s("torch") + s("FloatStorage") + b"\x93" + s("0") + s("cpu") + b"K\x02t\x94Q"
        + b"K\x00K\x02\x85K\x01\x85\x89" + s("collections") + s("OrderedDict") + b"\x93)RtRu."
    )
    pkl = b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body
    data = zip_checkpoint(pkl, {"0": np.array([1, 2], np.float32)})
    np.testing.assert_array_equal(load_pth(write(tmp_path, data))["w"], [1, 2])


# ---------------------------------------------------------------------------------------------
# Structural errors


def _err(tmp_path, data, match):
    with pytest.raises(CheckpointError, match=match):
        load_pth(write(tmp_path, data))


def test_missing_and_special_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_pth(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="directory"):
        load_pth(tmp_path)
    _err(tmp_path, b"", "empty")
    _err(tmp_path, b"hello world, not a checkpoint", "unrecognised file format")
    _err(tmp_path, b"PYTORCH1" + b"\0" * 40, "PYTORCH1")
    _err(tmp_path, b"\0" * 257 + b"ustar" + b"\0" * 300, "tar")
    _err(tmp_path, struct.pack("<Q", 2) + b"{}", "safetensors")
    _err(tmp_path, pickle.dumps(12345, protocol=2), "magic number")


def test_storage_too_small_for_tensor(tmp_path):
    spec = [T("w", "0", numel=4, size=(2, 3))]
    _err(tmp_path, zip_checkpoint(state_dict_pickle(spec), {"0": np.zeros(4, np.float32)}), "reaches element 6")


def test_zip_record_size_differs_from_declared_numel(tmp_path):
    spec = [T("w", "0", numel=6, size=(2, 3))]
    _err(tmp_path, zip_checkpoint(state_dict_pickle(spec), {"0": np.zeros(4, np.float32)}), "should hold 6 x 4")


def test_zip_missing_storage_record_and_data_pkl(tmp_path):
    spec = [T("w", "0", numel=2, size=(2,))]
    _err(tmp_path, zip_checkpoint(state_dict_pickle(spec), {}), "data/0 is missing")
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/other", b"x")
    _err(tmp_path, buf.getvalue(), "no archive/data.pkl")


def test_zip_compressed_record_and_torchscript(tmp_path):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", state_dict_pickle([]))
    _err(tmp_path, buf.getvalue(), "compressed")
    data = zip_checkpoint(state_dict_pickle([]), {}, extra_entries=[("constants.pkl", b"")])
    _err(tmp_path, data, "TorchScript")


def test_negative_or_overlapping_geometry(tmp_path):
    for t, match in [
        (T("w", "0", numel=4, size=(4, 4), stride=(0, 0)), "overlapping"),
        (T("w", "0", numel=4, size=(2,), stride=(1, 1)), "1 sizes but 2 strides"),
        (T("w", "0", numel=4, offset=5, size=(1,)), "reaches element"),
    ]:
        _err(tmp_path, zip_checkpoint(state_dict_pickle([t]), {"0": np.zeros(4, np.float32)}), match)


def test_huge_claimed_sizes_do_not_allocate(tmp_path):
    # a tensor claiming 2**40 elements of a 4-element storage, and a storage claiming 2**60
    t = T("w", "0", numel=4, size=(2**20, 2**20), stride=(0, 0))
    _err(tmp_path, zip_checkpoint(state_dict_pickle([t]), {"0": np.zeros(4, np.float32)}), "overlapping")
    t = T("w", "0", numel=2**60, size=(2,))
    _err(tmp_path, legacy_checkpoint(state_dict_pickle([t], legacy=True), {"0": np.zeros(2, np.float32)},
                                     counts={"0": 2**60}), "truncated")


def test_legacy_count_mismatch_key_list_and_truncation(tmp_path):
    spec, storages, _ = small_state()
    pkl = state_dict_pickle(spec, legacy=True)
    _err(tmp_path, legacy_checkpoint(pkl, storages, counts={"0": 23, "1": 4, "2": 5}), "declared with 24 elements")
    _err(tmp_path, legacy_checkpoint(pkl, storages, keys=["0", "1"]), "have no data")
    good = legacy_checkpoint(pkl, storages)
    _err(tmp_path, good[:-3], "truncated")
    _err(tmp_path, good[:200], "truncated|corrupt")


def test_inconsistent_storage_declarations(tmp_path):
    spec = [T("a", "0", numel=4, size=(4,)), T("b", "0", stype="IntStorage", numel=4, size=(4,))]
    _err(tmp_path, zip_checkpoint(state_dict_pickle(spec), {"0": np.zeros(4, np.float32)}), "two different")


def test_not_a_state_dict(tmp_path):
    _err(tmp_path, zip_checkpoint(pickle.dumps([1, 2, 3], protocol=2), {}), "not a state_dict")
    _err(tmp_path, zip_checkpoint(pickle.dumps({"epoch": 1}, protocol=2), {}), "no tensors")


def test_quantized_storage_is_refused_clearly(tmp_path):
    spec = [T("q", "0", stype="QInt8Storage", numel=2, size=(2,))]
    _err(tmp_path, zip_checkpoint(state_dict_pickle(spec), {"0": np.zeros(2, np.int8)}), "quantized")


# ---------------------------------------------------------------------------------------------
# torch as the oracle


def _torch_states(torch):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    return {
        "f32": torch.randn(3, 4, 2, 2, generator=g),
        "f64": torch.randn(7, generator=g, dtype=torch.float64),
        "f16": torch.randn(3, 3, generator=g).half(),
        "bf16": torch.randn(5, generator=g).bfloat16(),
        "i64": torch.arange(10),
        "i32": torch.arange(4, dtype=torch.int32),
        "u8": torch.arange(7, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "transposed": base.t(),
        "sliced": base[2:5, 1:4],
        "shared": base,
        "num_batches_tracked": torch.tensor(7),
    }


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_torch_saved_files_match(tmp_path, zipped):
    torch = pytest.importorskip("torch")
    from collections import OrderedDict

    states = OrderedDict(_torch_states(torch))
    path = tmp_path / "t.pth"
    torch.save(states, path, _use_new_zipfile_serialization=zipped)
    got = load_pth(path)
    assert list(got) == list(states)
    for k, t in states.items():
        want = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
        assert got[k].dtype == want.dtype, k
        np.testing.assert_array_equal(got[k], want, err_msg=k)
    assert np.shares_memory(got["transposed"], got["shared"])


def test_torch_saved_module_state_dict_and_parameters(tmp_path):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(2, 2))
    torch.save(net.state_dict(), tmp_path / "sd.pth")  # carries OrderedDict _metadata via BUILD
    got = load_pth(tmp_path / "sd.pth")
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(got[k], v.numpy())
    # a dict of Parameters (uses _rebuild_parameter)
    torch.save({k: p for k, p in net.named_parameters()}, tmp_path / "p.pth")
    got = load_pth(tmp_path / "p.pth")
    for k, p in net.named_parameters():
        np.testing.assert_array_equal(got[k], p.detach().numpy())


def test_torch_cuda_location_tag_is_ignored(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "c.pth"
    torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    raw = path.read_bytes()
    # rewrite the BINUNICODE 'cpu' location into 'cuda:0' (length-prefixed, so rebuild the record)
    old = b"X\x03\x00\x00\x00cpu"
    assert old in raw
    path.write_bytes(raw.replace(old, b"X\x06\x00\x00\x00cuda:0"))
    np.testing.assert_array_equal(load_pth(path)["w"], np.ones(3, np.float32))


# ---------------------------------------------------------------------------------------------
# Hostile containers and geometry (issue 12; the full-size files are in test_hostile.py)


@pytest.mark.parametrize("stype, byteorder", [("BFloat16Storage", "little"), ("FloatStorage", "big")])
def test_a_storage_is_converted_once_for_all_its_views(tmp_path, stype, byteorder):
    vals = np.arange(20, dtype=np.float32) - 5.5
    raw = (vals.view(np.uint32) >> 16).astype("<u2") if stype == "BFloat16Storage" else vals
    raw = raw.astype(raw.dtype.newbyteorder(">" if byteorder == "big" else "<"))
    spec = [T(f"v{i}", "0", stype=stype, numel=20, offset=i, size=(3, 2), stride=(4, 1)) for i in range(3)]
    spec.append(T("empty", "0", stype=stype, numel=20, size=(0, 7)))
    got = load_pth(write(tmp_path, zip_checkpoint(state_dict_pickle(spec), {"0": raw}, byteorder=byteorder)))
    for i in range(3):
        np.testing.assert_array_equal(got[f"v{i}"], vals[i : i + 10].reshape(-1)[[[0, 1], [4, 5], [8, 9]]])
        assert got[f"v{i}"].dtype == np.float32 and not got[f"v{i}"].flags.writeable
        assert root(got[f"v{i}"]) is root(got["v0"])  # one converted copy, viewed by all
    assert got["empty"].shape == (0, 7) and got["empty"].dtype == np.float32
    assert root(got["v0"]).nbytes == 12 * 4  # the copy covers what the views reach (elements 0..11 of 20)


def root(a):
    while a.base is not None:
        a = a.base
    return a


def test_a_torch_saved_bfloat16_storage_with_many_views(tmp_path):
    torch = pytest.importorskip("torch")
    base = torch.randn(40, generator=torch.Generator().manual_seed(3)).bfloat16()
    views = {f"v{i}": base[i : i + 20].view(4, 5) for i in range(20)}
    torch.save(views, tmp_path / "v.pth")
    got = load_pth(tmp_path / "v.pth")
    for k, t in views.items():
        np.testing.assert_array_equal(got[k], t.float().numpy())
    assert all(root(got[k]) is root(got["v0"]) for k in got)


def test_legacy_many_storages_all_read(tmp_path):
    from tests.weights.hostile import compact_state_pickle

    n = 2000
    keys = [f"k{i}" for i in range(n)]
    pkl = compact_state_pickle(keys, keys, "FloatStorage", [2] * n, [(2,)] * n, [(1,)] * n, legacy=True)
    storages = {k: np.float32([i, -i]) for i, k in enumerate(keys)}
    got = load_pth(write(tmp_path, legacy_checkpoint(pkl, storages)))
    assert list(got) == keys
    assert all(got[k][0] == i and got[k][1] == -i for i, k in enumerate(keys))
    spec = [T(f"t{i}", f"k{i}", numel=1, size=(1,)) for i in range(300)]
    pkl = state_dict_pickle(spec, legacy=True)
    data = legacy_checkpoint(pkl, {f"k{i}": np.float32([i]) for i in range(300)}, keys=[f"k{i}" for i in range(290)])
    with pytest.raises(CheckpointError, match=r"10 storage\(s\) are referenced but have no data: 'k290', 'k291'"):
        load_pth(write(tmp_path, data))


def test_zip_members_must_be_unique_disjoint_and_intact(tmp_path):
    from tests.weights.hostile import overlapping_zip, raw_zip

    pkl = state_dict_pickle([T("w", "0", numel=2, size=(2,))])
    two = np.float32([1, 2]).tobytes()
    assert load_pth(write(tmp_path, raw_zip([("archive/data.pkl", pkl), ("archive/data/0", two)])))["w"][1] == 2
    dup = raw_zip([("archive/data.pkl", pkl), ("archive/data/0", np.float32([6, 6]).tobytes()), ("archive/data/0", two)])
    _err(tmp_path, dup, "two members named 'archive/data/0'")
    _err(tmp_path, overlapping_zip(3, 64), "zip entries 'archive/data/00000' and 'archive/data/00001' overlap")
    good = raw_zip([("archive/data.pkl", pkl), ("archive/data/0", two)])
    renamed = good.replace(b"PK\x03\x04", b"PK\x03\x04", 1)
    i = renamed.index(b"archive/data/0")  # the local header's copy of the name, not the directory's
    _err(tmp_path, renamed[:i] + b"archive/data/9" + renamed[i + 14 :], "has the name 'archive/data/9' in its local header")
    j = good.index(two)
    _err(tmp_path, good[:j] + np.float32([1, 3]).tobytes() + good[j + 8 :], "'archive/data/0' is damaged")


@pytest.mark.parametrize(
    "size, stride, match",
    [((0, 2**63), (1, 1), "a dimension of size 9223372036854775808"),
     ((1,), (2**70,), "stride or offset beyond 2\\*\\*63"),
     ((2**40, 2**40), (0, 0), "more than 2\\*\\*63 bytes"),
     ((1,) * 70, (1,) * 70, "70 dimensions"),
     ((2,), (-1,), "negative")],
)
def test_crafted_geometry_is_a_checkpoint_error(tmp_path, size, stride, match):
    spec = [T("w" * 10_000, "0", numel=4, size=size, stride=stride)]
    with pytest.raises(CheckpointError, match=match) as info:
        load_pth(write(tmp_path, zip_checkpoint(state_dict_pickle(spec), {"0": np.zeros(4, np.float32)})))
    assert len(str(info.value)) < 400  # the 10,000-character name is cut


def test_size_one_dimensions_ignore_their_stride(tmp_path):
    # torch may store any stride for a dimension of size 1; only its elements matter
    spec = [T("w", "0", numel=3, size=(1, 3), stride=(2**40, 1))]
    got = load_pth(write(tmp_path, zip_checkpoint(state_dict_pickle(spec), {"0": np.float32([1, 2, 3])})))
    np.testing.assert_array_equal(got["w"], [[1, 2, 3]])
