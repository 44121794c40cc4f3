"""Damaged files: truncations, bit flips and overwritten bytes of valid .pth and .safetensors
files give either the data or a clean CheckpointError — never another exception, a crash,
a hang or an allocation out of proportion to the file."""

import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.weights.fixtures import small_legacy, small_zip
from weights import CheckpointError, SafetensorsFile, load_pth, save_file

MAX_SECONDS = 5.0
MAX_PEAK = 16 << 20  # the seeds are ~1-3 KB; a sane reader never needs megabytes for them


def mutate(seed):
    """A strategy of damaged copies of the bytes ``seed``."""
    n = len(seed)

    def truncate(k):
        return seed[:k]

    def flip(flips):
        b = bytearray(seed)
        for pos, bit in flips:
            b[pos] ^= 1 << bit
        return bytes(b)

    def overwrite(args):
        pos, junk = args
        return seed[:pos] + junk + seed[pos + len(junk):]

    return st.one_of(
        st.integers(0, n - 1).map(truncate),
        st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 7)), min_size=1, max_size=6).map(flip),
        st.tuples(st.integers(0, n - 1), st.binary(min_size=1, max_size=8)).map(overwrite),
    )


def check_reader(read, data, folder):
    path = Path(folder) / "f.bin"
    path.write_bytes(data)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        try:
            out = read(path)
            # touch every array so lazily mapped data is really read
            for v in out.values():
                np.asarray(v).sum()
        except CheckpointError as e:
            assert str(e)
    finally:
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < MAX_SECONDS
    assert peak < MAX_PEAK, f"peak allocation {peak} bytes for a {len(data)}-byte file"


def read_safetensors(path):
    f = SafetensorsFile(path)
    return {k: f[k] for k in f.keys()}


def _safetensors_seed():
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.safetensors"
        rng = np.random.default_rng(0)
        save_file({"w": rng.standard_normal((4, 3, 3)).astype(np.float32), "b": np.arange(4, dtype=np.int64),
                   "s": np.float64(1.0), "e": np.zeros((0,), np.float16)}, path, {"arch": "test"})
        return path.read_bytes()


SEEDS = {
    "zip": (small_zip()[0], load_pth),
    "legacy": (small_legacy()[0], load_pth),
    "safetensors": (_safetensors_seed(), read_safetensors),
}


@pytest.mark.parametrize("kind", list(SEEDS))
def test_damaged_files_fail_cleanly(kind):
    seed, read = SEEDS[kind]
    with tempfile.TemporaryDirectory() as folder:
        check_reader(read, seed, folder)  # the undamaged seed reads

        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        @given(mutate(seed))
        def run(data):
            check_reader(read, data, folder)

        run()


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_damaged_torch_saved_files_fail_cleanly(zipped):
    torch = pytest.importorskip("torch")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "seed.pth"
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
        torch.save(net.state_dict(), path, _use_new_zipfile_serialization=zipped)
        seed = path.read_bytes()

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(mutate(seed))
        def run(data):
            check_reader(load_pth, data, folder)

        run()


def test_every_truncation_of_the_seeds_fails_cleanly():
    """Systematic rather than sampled: the first and last 32 prefixes of each seed and every
    17th in between are all refused."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.bin"
        for kind, (seed, read) in SEEDS.items():
            n = len(seed)
            for k in sorted(set(range(32)) | set(range(32, n - 32, 17)) | set(range(n - 32, n))):
                path.write_bytes(seed[:k])
                with pytest.raises(CheckpointError):
                    read(path)


def pickle_programs():
    """Random opcode sequences (arguments well formed or not): the unpickler must run each to a
    value or a CheckpointError, never another exception, and never do more than a little work."""
    from tests.weights.hostile import tuple_bomb

    pieces = [b"(", b")", b"]", b"}", b"N", b"\x88", b"t", b"l", b"d", b"a", b"e", b"s", b"u", b"0", b"1", b"2",
              b"\x85", b"\x86", b"\x87", b"\x8f", b"\x90", b"\x91", b"\x94", b"R", b"b", b"Q", b"\x81", b"\x93",
              b"K\x07", b"M\xff\xff", b"J\xff\xff\xff\xff", b"\x8a\x02\x00\x80", b"I01\n", b"L12L\n", b"F1.5\n",
              b"X\x01\x00\x00\x00k", b"\x8c\x03cpu", b"U\x01w", b"C\x01b", b"q\x00", b"q\x01", b"h\x00", b"h\x01",
              b"p0\n", b"g1\n", b"ccollections\nOrderedDict\n", b"ctorch._utils\n_rebuild_tensor_v2\n",
              b"ctorch\nFloatStorage\n", b"\x8c\x07storage", b"cos\nsystem\n", b"\x82\x01", b"X\xff\xff\xff\x7f",
              tuple_bomb(3)]
    return st.lists(st.sampled_from(pieces), max_size=40).map(lambda ops: b"\x80\x02" + b"".join(ops) + b".")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(pickle_programs())
def test_random_pickle_programs_end_cleanly(program):
    from weights.torch_pth import _Storages, _unpickle

    tracemalloc.start()
    try:
        try:
            _unpickle(program, 0, len(program), "fuzz.pth", _Storages("fuzz.pth", 5))
        except CheckpointError as e:
            assert 0 < len(str(e)) < 500
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
