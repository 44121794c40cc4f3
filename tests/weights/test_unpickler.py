"""The pickle interpreter of weights.torch_pth: Python's semantics on plain data (checked
against ``pickle`` itself, every protocol), and the budget: keys, nesting, integers, memo."""

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.weights.hostile import tuple_bomb
from weights import CheckpointError
from weights.torch_pth import MAX_DEPTH, _unpickle

KEYS = st.one_of(st.text(max_size=8), st.integers(-(2**61) + 1, 2**61 - 1))


def plain_data(protocol):
    """Nested plain data as a checkpoint may hold it, limited to what ``protocol`` pickles with
    opcodes alone (older protocols pickle bytes and sets through globals, which are refused)."""
    scalars = [st.none(), st.booleans(), st.integers(-(2**200), 2**200), st.floats(allow_nan=False),
               st.text(max_size=12)]
    if protocol >= 3:
        scalars.append(st.binary(max_size=12))
    containers = [lambda inner: st.lists(inner, max_size=4), lambda inner: st.lists(inner, max_size=4).map(tuple),
                  lambda inner: st.dictionaries(KEYS, inner, max_size=4)]
    if protocol >= 4:
        containers += [lambda inner: st.frozensets(KEYS, max_size=4), lambda inner: st.sets(KEYS, max_size=4)]
    return st.recursive(st.one_of(scalars), lambda inner: st.one_of([c(inner) for c in containers]), max_leaves=20)


def run(data):
    return _unpickle(data, 0, len(data), "test.pth")[0]


@given(st.data())
def test_plain_data_unpickles_as_pickle_does(draw):
    protocol = draw.draw(st.integers(0, pickle.HIGHEST_PROTOCOL), label="protocol")
    pkl = pickle.dumps(draw.draw(plain_data(protocol), label="obj"), protocol=protocol)
    assert run(pkl) == pickle.loads(pkl)


def test_shared_references_stay_shared():
    inner = [1, 2]
    got = run(pickle.dumps({"a": inner, "b": inner, "t": (inner, inner)}, protocol=2))
    assert got["a"] is got["b"] and got["t"][0] is got["a"]


def test_python2_strings_decode_as_utf8():
    assert run(b"U\x03abc.") == "abc"
    assert run(b"S'caf\\xc3\\xa9'\n.") == "caf\u00e9"
    assert run(b"T\x02\x00\x00\x00\xc3\xa9.") == "\u00e9"
    with pytest.raises(CheckpointError, match="corrupt pickle"):
        run(b"U\x01\xff.")


@pytest.mark.parametrize(
    "key, shown",
    [(b")", "<a tuple>"), (b"G?\xf0\x00\x00\x00\x00\x00\x00", "1.0"), (b"C\x01a", "b'a'"),
     (b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x20", "2305843009213693952"), (b"N", "None"), (b"\x88", "True")],
    ids=["tuple", "float", "bytes", "int 2**61", "None", "bool"],
)
def test_only_strings_and_small_integers_are_keys(key, shown):
    for pkl in [b"\x80\x02}" + key + b"Ns.", b"\x80\x04(" + key + b"\x91.", b"\x80\x04\x8f(" + key + b"\x90.",
                b"\x80\x02(" + key + b"Nd."]:
        with pytest.raises(CheckpointError, match=f"a dict key or set member is {shown}"):
            run(pkl)


def test_tuple_bomb_is_harmless_until_refused():
    # built (cheaply) and dropped: fine; used as a key, a storage key or printed: refused at once
    assert run(b"\x80\x02" + tuple_bomb(60) + b"0N.") is None
    with pytest.raises(CheckpointError, match="<a tuple>"):
        run(b"\x80\x02}" + tuple_bomb(60) + b"Ns.")


def nested_lists(depth):
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def test_nesting_depth_is_bounded_exactly():
    got = run(nested_lists(MAX_DEPTH))
    for _ in range(MAX_DEPTH - 1):
        assert len(got) == 1
        got = got[0]
    assert got == []
    with pytest.raises(CheckpointError, match=f"nested more than {MAX_DEPTH} deep"):
        run(nested_lists(MAX_DEPTH + 1))
    deep_tuples = b"\x80\x02)" + b"\x85" * MAX_DEPTH + b"."  # ((((),),),)...
    with pytest.raises(CheckpointError, match="nested more than"):
        run(deep_tuples)


def test_containers_cannot_change_once_inside_another():
    # a = []; b = [a]; a.append([]) -- would let depth grow unseen
    with pytest.raises(CheckpointError, match="changes a container after putting it inside another"):
        run(b"\x80\x02]q\x00h\x00\x850]a.")
    # a chain built back to front through the memo: each list is filled after it is nested
    chain = b"\x80\x02" + b"".join(b"]q%c0" % i for i in range(5))
    chain += b"".join(b"h%ch%ca0" % (i, i + 1) for i in range(4)) + b"h\x00."
    with pytest.raises(CheckpointError, match="changes a container"):
        run(chain)
    with pytest.raises(CheckpointError, match="inside itself"):
        run(b"\x80\x02]q\x00h\x00a.")  # l.append(l)


@pytest.mark.parametrize(
    "pkl, message",
    [
        (b"\x80\x02\x8b" + (300).to_bytes(4, "little") + b"\x01" * 300 + b".", "an integer of 300 bytes"),
        (b"\x80\x02Nr\x00\xf0\xff\xff.", "memo index 4294963200 is out of range"),
        (b"\x80\x02h\x07.", "memo index 7 is used before it is set"),
        (b"\x80\x02X\xff\xff\xff\xffabc.", "claims 4294967295 bytes"),
        (b"\x80\x02a.", "stack empty"),
        (b"\x80\x02N", "no STOP"),
        (b"\x80\x02\x82\x01.", "opcode EXT1 at byte 2 is not allowed"),
        (b"\x80\x02P1\n.", "opcode PERSID"),
        (b"\x80\x02\xff.", "unknown opcode 0xff"),
        (b"\x80\x02))R.", "calling <a tuple> at byte 4 is not allowed"),
        (b"\x80\x02]}b.", "BUILD on <a list>"),
        (b"\x80\x02ctorch\nFloatStorage\n)\x81.", "NEWOBJ on <a StorageType>"),
        (b"\x80\x04\x8c\x02os\x8c\x06system\x93.", "global os.system"),
    ],
    ids=["long4", "memo-range", "memo-unset", "length", "underflow", "no-stop", "ext1", "persid", "unknown",
         "call", "build", "newobj", "stack-global"],
)
def test_budget_and_refusals_are_named(pkl, message):
    with pytest.raises(CheckpointError, match=message):
        run(pkl)


def test_the_longest_integer_allowed():
    assert run(b"\x80\x02\x8a\xff" + b"\x01" * 255 + b".") == int.from_bytes(b"\x01" * 255, "little")
