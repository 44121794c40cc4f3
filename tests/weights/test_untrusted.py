"""weights.untrusted: how file-derived text is shown, which files are opened, which shapes pass."""

import os
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weights import CheckpointError
from weights.untrusted import MAX_DIMS, escaped, open_regular, shape_problem, shown, shown_shape


def is_safe(text):
    """Nothing a terminal would act on and nothing an encoder would refuse."""
    return all(" " <= c < "\x7f" or c > "\x9f" for c in text) and not any(
        "\ud800" <= c <= "\udfff" or c in "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2028\u2029\u2066\u2069\ufeff"
        for c in text
    )


@given(st.text(), st.integers(10, 300))
def test_escaped_is_safe_short_and_keeps_plain_text(text, limit):
    out = escaped(text, limit)
    assert is_safe(out)
    assert len(out) <= limit + len("...(+ characters)") + 20
    out.encode("utf-8")
    if len(text) <= limit and all(c.isprintable() and c != "\\" for c in text):
        assert out == text


def test_escaped_examples():
    assert escaped("\x1b[2J\x1b]0;owned\x07evil") == r"\x1b[2J\x1b]0;owned\x07evil"
    assert escaped("a\ud800b") == r"a\ud800b"
    assert escaped("bidi\u202eexe") == r"bidi\u202eexe"
    assert escaped("back\\slash") == r"back\\slash"  # unambiguous: a literal "\x1b" is not an ESC
    assert escaped("caf\u00e9 \u4e2d\u6587") == "caf\u00e9 \u4e2d\u6587"
    assert escaped("n" * 1000, 10) == "nnnnnnnnnn...(+990 characters)"


def test_shown_never_repr_s_containers():
    t = ()
    for _ in range(60):  # 2**60 leaves: repr() would never finish
        t = (t, t)
    assert shown(t) == "<a tuple>"
    assert shown([1, 2]) == "<a list>"
    assert shown("x\ny") == r"'x\ny'"
    assert shown(b"\x00ab") == r"b'\x00ab'"
    assert shown(12) == "12" and shown(True) == "True" and shown(None) == "None"
    assert shown(2**300) == "<a 301-bit integer>"
    assert shown_shape(list(range(20))) == "[0, 1, 2, 3, 4, 5, 6, 7, ... (20 dimensions)]"


def test_shape_problem_agrees_with_numpy():
    np = pytest.importorskip("numpy")
    cases = [((0, 2**63), 1), ((0, 2**63 - 1), 1), ((0, 2**63 - 1), 4), ((0, 2**60), 8), ((0, 2**61), 4),
             ((3, 0, 2**60), 8), ((2**62, 0, 4), 1), ((0,) * MAX_DIMS, 4), ((0,) * (MAX_DIMS + 1), 4)]
    for shape, itemsize in cases:  # no elements: NumPy allocates nothing, so it can be the judge
        try:
            np.empty(shape, f"V{itemsize}")
            numpy_ok = True
        except ValueError:
            numpy_ok = False
        assert (shape_problem(shape, itemsize) is None) == numpy_ok, (shape, itemsize)
    assert shape_problem((2**31, 2**30), 2) is None
    assert "more than 2**63 bytes" in shape_problem((2**31, 2**31), 2)
    assert shape_problem((), 8) is None


def test_open_regular_refuses_what_would_hang(tmp_path):
    (tmp_path / "f").write_bytes(b"data")
    with open_regular(tmp_path / "f") as f:
        assert f.read() == b"data"
    os.symlink(tmp_path / "f", tmp_path / "link")
    with open_regular(tmp_path / "link") as f:  # a link to a regular file is that file
        assert f.read() == b"data"
    os.mkfifo(tmp_path / "fifo")  # nobody writes: a blocking open would never return
    with pytest.raises(CheckpointError, match="is a FIFO"):
        open_regular(tmp_path / "fifo")
    with pytest.raises(CheckpointError, match="is a character device"):
        open_regular("/dev/zero")
    os.symlink("/dev/zero", tmp_path / "zero-link")
    with pytest.raises(CheckpointError, match="is a character device"):
        open_regular(tmp_path / "zero-link")
    with pytest.raises(CheckpointError, match="is a directory"):
        open_regular(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        open_regular(tmp_path / "missing")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock"))
        with pytest.raises(CheckpointError, match="socket|cannot read"):
            open_regular(tmp_path / "sock")
    finally:
        sock.close()
    with pytest.raises(CheckpointError) as info:
        open_regular(tmp_path / "\x1b[2Jevil")
    assert "\x1b" not in str(info.value) and r"\x1b[2Jevil" in str(info.value)
