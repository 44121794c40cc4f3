"""Every hostile file of issue 12 (built by tests/weights/hostile.py) is refused, or read, within
bounded time and memory and with a short, clean message.

Each case runs in a child process limited to 30 CPU seconds and 2 GiB of address space, so a
reader that hangs or balloons (as the readers before this test did: a 2**40-leaf tuple hashed
for minutes, 3.9 GB for 400 views of a 10 MB storage, 112 s for 160,000 empty storages,
2.5 GB for a 99 MB header of ``{},{},...``, ``info /dev/zero`` forever) fails the test by
being killed instead of stalling the run. The limits are ten times what the cases take; the
memory bounds below are on the growth of the child's peak resident memory while reading.
"""

import pytest

from tests.weights.hostile import CASES, run_case

#: case -> (how it must end, a fragment of its message, most growth of peak memory in MB)
EXPECT = {
    "bomb-dict-key": ("CheckpointError", "a dict key or set member is <a tuple>", 16),
    "bomb-storage-key": ("CheckpointError", "a storage key must be a string, the pickle gives <a tuple>", 16),
    "bomb-frozenset": ("CheckpointError", "a dict key or set member is <a tuple>", 16),
    "bomb-set": ("CheckpointError", "a dict key or set member is <a tuple>", 16),
    "bomb-ordereddict-items": ("CheckpointError", "a dict key or set member is <a tuple>", 16),
    "bomb-legacy-version": ("CheckpointError", "unsupported legacy protocol version <a tuple>", 16),
    "deep-nesting": ("CheckpointError", "nested more than 100 deep", 100),
    "long-byteorder": ("CheckpointError", "unknown byteorder 'xxxxxxxxxxxxxxxx'", 16),
    "shared-bf16-views": ("loaded 400 tensors", "", 64),
    "shared-bigendian-views": ("loaded 400 tensors", "", 64),
    "overlapping-members": ("CheckpointError", "overlap in the file", 16),
    "legacy-many-storages": ("loaded 160000 tensors", "", 400),
    "safetensors-nested-header": ("CheckpointError", "an array holds something other than integers", 450),
    "safetensors-many-objects": ("CheckpointError", "more than one entry is not a tensor", 450),
    "safetensors-many-metadata": ("CheckpointError", "more than 65536 metadata entries", 450),
    "info-dev-zero": ("exit 1", "/dev/zero: is a character device, not a checkpoint file", 16),
    "convert-dev-zero": ("exit 1", "/dev/zero: is a character device, not a checkpoint file", 16),
    "info-fifo": ("exit 1", "is a FIFO (named pipe), not a checkpoint file", 16),
    "duplicate-data-pkl": ("CheckpointError", "two members named 'archive/data.pkl'", 16),
    "crc-mismatch": ("CheckpointError", "its CRC-32 does not match", 16),
    "pth-size-2**63": ("CheckpointError", "has a dimension of size 9223372036854775808, beyond 2**63 - 1", 16),
    "pth-stride-2**70": ("CheckpointError", "has a stride or offset beyond 2**63 - 1", 16),
    "safetensors-shape-2**63": ("CheckpointError", "has a dimension of size 9223372036854775808", 16),
    "info-escapes": ("exit 0", r"\x1b[2J\x1b]0;owned\x07evil", 16),
}
CI_CASES = [name for name, case in CASES.items() if case.ci]


def test_every_case_has_an_expectation():
    assert set(EXPECT) == set(CI_CASES)


@pytest.mark.parametrize("name", CI_CASES)
def test_hostile_file(name, tmp_path):
    outcome, fragment, max_growth_mb = EXPECT[name]
    r = run_case(CASES[name], tmp_path, cpu_s=30, mem_mb=2048)
    assert r["outcome"] == outcome, r
    text = r.get("message", "") + r.get("stderr", "") + r.get("stdout", "")
    assert fragment in text, text[:1000]
    assert all(len(line) <= 500 for line in text.splitlines()), max(map(len, text.splitlines()))
    assert r["peak_rss_mb"] - r["base_rss_mb"] <= max_growth_mb, r


def test_info_shows_hostile_names_escaped(tmp_path):
    r = run_case(CASES["info-escapes"], tmp_path, cpu_s=30, mem_mb=2048)
    out = r["stdout"]
    assert r["outcome"] == "exit 0" and r["stderr"] == ""
    # nothing reaches the terminal that it would act on, and nothing it cannot encode
    assert not any(c < " " and c != "\n" or "\x7f" <= c <= "\x9f" for c in out)
    assert not any("\ud800" <= c <= "\udfff" or c in "\u202e\u2028\u2029" for c in out)
    for shown in [r"\x1b[2J\x1b]0;owned\x07evil", r"lone\ud800surrogate", r"bidi\u202eexe.txt",
                  r"arch: \x1b]0;title\x07", r"\x1b[31mkey: v", "...(+99880 characters)"]:
        assert shown in out, shown
    assert max(map(len, out.splitlines())) <= 400
