"""The wire protocol: round trips without copies, and every malformed header refused with a named field."""

from __future__ import annotations

import contextlib
import math
import random
import tracemalloc

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamdi_node import wire


def _header(frames: list) -> dict:
    return msgpack.unpackb(bytes(frames[0]), raw=False)


def _with(frames: list, **changes: object) -> list:
    h = _header(frames)
    h.update(changes)
    return [msgpack.packb(h), *frames[1:]]


def _task_body(**kw: object) -> dict:
    body = {"task": "ts-000001", "source": "ts", "origin": "a", "model": "tiny", "priority": 10.0, "born": 1.0,
            "start": 1, "end": 3, "hop": "h1", "path": ["a"], "sent": 2.0}
    body.update(kw)
    return body


def test_round_trip_keeps_values_and_does_not_copy() -> None:
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    ids = np.array([5, 7], dtype=np.int64)
    frames = wire.encode(wire.TASK, "a", _task_body(), [x, ids])
    # The tensor frames are views of the arrays' memory, not copies.
    assert np.shares_memory(np.frombuffer(frames[1], dtype=np.float32), x)
    msg = wire.decode([bytes(frames[0]), bytearray(frames[1]), bytearray(frames[2])])
    assert msg.type == wire.TASK and msg.src == "a" and msg.body["start"] == 1
    np.testing.assert_array_equal(msg.tensors[0], x)
    assert msg.tensors[0].dtype == np.float32 and msg.tensors[1].dtype == np.int64
    buf = bytearray(frames[1])
    decoded = wire.decode([bytes(frames[0]), buf, bytes(frames[2])]).tensors[0]
    assert np.shares_memory(decoded, np.frombuffer(buf, dtype=np.uint8))  # decode is zero-copy too


def test_torch_tensors_are_accepted() -> None:
    torch = pytest.importorskip("torch")
    t = torch.randn(1, 16, 8, 8)
    msg = wire.decode([bytearray(f) for f in wire.encode(wire.RESULT, "b", {
        "task": "t", "source": "s", "origin": "a", "hop": "h", "ok": True, "path": ["a", "b"],
        "placements": [["b", 0, 4]], "done": 1.0}, [t])])
    assert torch.equal(torch.from_numpy(msg.tensors[0]), t)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda f: _with(f, v=wire.PROTOCOL_VERSION + 1), f"field 'v': protocol version {wire.PROTOCOL_VERSION + 1}"),
        (lambda f: _with(f, t="explode"), "field 't': unknown message type 'explode'"),
        (lambda f: _with(f, src=""), "field 'src'"),
        (lambda f: _with(f, src="x" * 65), "field 'src'"),
        (lambda f: _with(f, ts="yesterday"), "field 'ts'"),
        (lambda f: _with(f, extra=1), "unknown header field"),
        (lambda f: _with(f, body=[1, 2]), "field 'body'"),
        (lambda f: _with(f, body=_task_body(start="1")), "field 'start'"),
        (lambda f: _with(f, body=_task_body(start=-1)), "field 'start'"),
        (lambda f: _with(f, body=_task_body(priority=float("nan"))), "field 'priority'"),
        (lambda f: _with(f, body={k: v for k, v in _task_body().items() if k != "hop"}), "missing field 'hop'"),
        (lambda f: _with(f, body=_task_body(surprise=True)), "unknown field(s) ['surprise']"),
        (lambda f: _with(f, body=_task_body(path=["a", 3])), "field 'path'[1]"),
        (lambda f: _with(f, tensors=[{"dtype": "complex64", "shape": [4]}]), "dtype': 'complex64' is not allowed"),
        (lambda f: _with(f, tensors=[{"dtype": "float32", "shape": [5]}]), "shape [5] x float32 needs 20 bytes"),
        (lambda f: _with(f, tensors=[{"dtype": "float32", "shape": [-4]}]), "field 'shape'"),
        (lambda f: _with(f, tensors=[{"dtype": "float32", "shape": [1] * 9}]), "field 'shape'"),
        (lambda f: _with(f, tensors=[{"dtype": "float32", "shape": [4], "x": 1}]), "descriptor"),
        (lambda f: _with(f, tensors=[]), "describes 0 tensor(s) but 1 frame(s) follow"),
        (lambda f: [f[0]], "describes 1 tensor(s) but 0 frame(s) follow"),
        (lambda f: [b"\x93\x01"], "not a valid msgpack map"),
        (lambda f: [msgpack.packb([1, 2, 3])], "expected a msgpack map"),
        (lambda f: [f[0], f[1], *([b""] * wire.MAX_FRAMES)], "frames exceed the maximum"),
        (lambda f: [], "empty message"),
    ],
)
def test_malformed_messages_name_the_fault(mutate, needle: str) -> None:
    frames = [bytes(x) for x in wire.encode(wire.TASK, "a", _task_body(), [np.zeros(4, np.float32)])]
    with pytest.raises(wire.WireError) as err:
        wire.decode(mutate(frames))
    assert needle in str(err.value)


def test_oversized_header_is_refused_before_parsing() -> None:
    with pytest.raises(wire.WireError, match="exceeds the maximum"):
        wire.decode([b"\x00" * (wire.MAX_HEADER_BYTES + 1)])


def test_shape_product_overflow_is_refused_without_allocating() -> None:
    frames = [bytes(x) for x in wire.encode(wire.TASK, "a", _task_body(), [np.zeros(4, np.float32)])]
    huge = _with(frames, tensors=[{"dtype": "float64", "shape": [1 << 20, 1 << 20, 1 << 20]}])
    with pytest.raises(wire.WireError, match="needs"):
        wire.decode(huge)


def test_encode_refuses_what_decode_would_refuse() -> None:
    with pytest.raises(wire.WireError, match="missing field 'hop'"):
        wire.encode(wire.ACK, "a", {})
    with pytest.raises(wire.WireError, match="complex64"):
        wire.encode(wire.PING, "a", {}, [np.zeros(2, np.complex64)])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=256), min_size=0, max_size=4))
def test_random_frames_only_ever_raise_wire_error(frames: list[bytes]) -> None:
    # Anything else (TypeError, KeyError, MemoryError...) would fail the test.
    with contextlib.suppress(wire.WireError):
        wire.decode(frames)


json_leaf = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.text(max_size=20)
json_tree = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                       max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(wire.MSG_TYPES)), st.dictionaries(st.text(max_size=10), json_tree, max_size=6),
       json_tree)
def test_random_headers_only_ever_raise_wire_error(msg_type: str, body: dict, tensors: object) -> None:
    header = {"v": wire.PROTOCOL_VERSION, "t": msg_type, "src": "a", "id": "x", "ts": 1.0, "body": body,
              "tensors": tensors}
    with contextlib.suppress(wire.WireError):
        wire.decode([msgpack.packb(header), b"\x00" * 16])


# ------------------------------------------------------------------------------ hostile headers
def _ping_header(**changes: object) -> dict:
    header = {"v": wire.PROTOCOL_VERSION, "t": wire.PING, "src": "a", "id": "x", "ts": 1.0, "body": {}, "tensors": []}
    header.update(changes)
    return header


def _nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("field", ["v", "t", "src", "id", "ts", "body", "tensors"])
def test_deeply_nested_header_field_is_a_wire_error(field: str) -> None:
    # The measured crash: ~1,000 levels in 'v' made repr() raise RecursionError past the agent's
    # WireError handler. 1,010 levels of fixarray are a 1,059-byte frame.
    frame = msgpack.packb(_ping_header(**{field: _nested(1010)}))
    assert len(frame) < 1100
    with pytest.raises(wire.WireError) as err:
        wire.decode([frame])
    assert len(str(err.value)) < 200


def test_deep_body_values_are_refused_beyond_max_depth() -> None:
    # Depth counts the header map itself: header -> body -> config -> nested lists.
    ok = _ping_header(t=wire.CONFIG, body={"config": {"x": _nested(wire.MAX_DEPTH - 3)}})
    assert wire.decode([msgpack.packb(ok)]).type == wire.CONFIG
    deep = _ping_header(t=wire.CONFIG, body={"config": {"x": _nested(wire.MAX_DEPTH - 2)}})
    with pytest.raises(wire.WireError, match=f"nested deeper than {wire.MAX_DEPTH} levels"):
        wire.decode([msgpack.packb(deep)])
    # Deeper than msgpack's own stack (1,024): its StackError is a WireError too.
    with pytest.raises(wire.WireError):
        wire.decode([b"\x91" * 2000 + b"\xc0"])


def test_many_containers_within_depth_still_decode() -> None:
    # More list/map bytes than MAX_DEPTH: the exact depth check runs, and a real config passes it.
    config = {"links": [["a", "b", 1e6, 0.001]] * 500, "sources": [{"bounds": [0, 1, 2], "t": [0.5] * 8}] * 20}
    msg = wire.decode([msgpack.packb(_ping_header(t=wire.CONFIG, body={"config": config}))])
    assert msg.body["config"] == config


@pytest.mark.parametrize(
    "frame",
    [
        b"\xdd\x00\x01\x00\x00" * 1000,  # 1,000 nested arrays each declaring 65,536 items, in 5 KB
        b"\xdd\xff\xff\xff\xff",  # an array of 2**32-1 items, and nothing after
        b"\xdf\xff\xff\xff\xff",  # a map of 2**32-1 entries
        b"\xdb\x7f\xff\xff\xff" + b"x" * 100,  # a 2 GiB string
        b"\xc6\x00\x00\x00\x10" + b"x" * 16,  # bin is not allowed at all
        msgpack.packb([0] * 65537),  # an honest list above MAX_LIST
        msgpack.packb({str(i): 0 for i in range(4097)}),  # an honest map above MAX_MAP
        msgpack.packb([[[]] * 60_000] * 15),  # 900,000 empty lists: above MAX_CONTAINERS
        msgpack.packb(_ping_header()) + b"\x00",  # trailing bytes
    ],
    ids=["nested-lying-arrays", "array32", "map32", "str32", "bin", "long-list", "big-map", "many-lists", "extra"],
)
def test_oversized_or_lying_counts_are_refused_before_allocating(frame: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(wire.WireError):
            wire.decode([frame])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Without the checks the first frame made msgpack preallocate 1,000 x 512 KiB.
    assert peak < 16 << 20, peak


_NUMERIC: list[tuple[str, str]] = [
    (t, name) for t, schema in sorted(wire.BODY_SCHEMAS.items()) for name, f in sorted(schema.items())
    if f.kind in ("num", "int")
]


def _valid_body(msg_type: str) -> dict:
    """A body that passes the schema of ``msg_type``: every field present with a plain value."""
    values = {"str": "x", "name": "x", "int": 0, "num": 0.0, "bool": False, "list": [], "map": {}, "any": None}
    return {name: values[f.kind] for name, f in wire.BODY_SCHEMAS[msg_type].items()}


@pytest.mark.parametrize(("msg_type", "field"), _NUMERIC)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_in_numeric_fields_are_refused_naming_the_field(msg_type: str, field: str, bad: float) -> None:
    # Current semantics: numeric body fields take finite numbers only (ints take ints only).
    body = _valid_body(msg_type)
    wire.decode([msgpack.packb(_ping_header(t=msg_type, body=body))])  # the base body is valid
    body[field] = bad
    with pytest.raises(wire.WireError, match=f"field '{field}'"):
        wire.decode([msgpack.packb(_ping_header(t=msg_type, body=body))])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_timestamps_are_refused(bad: float) -> None:
    with pytest.raises(wire.WireError, match="field 'ts'"):
        wire.decode([msgpack.packb(_ping_header(ts=bad))])


def test_true_is_not_protocol_version_one() -> None:
    with pytest.raises(wire.WireError, match="field 'v'"):
        wire.decode([msgpack.packb(_ping_header(v=True))])


@pytest.mark.parametrize(
    "header",
    [
        _ping_header(src="\n" * 100_000),
        _ping_header(v="x" * 100_000),
        _ping_header(t="\x1b[2J" * 10_000),
        _ping_header(tensors=[{"dtype": "y" * 100_000, "shape": [1]}]),
        _ping_header(tensors=[{"dtype": "float32", "shape": [[1] * 10_000]}]),
        _ping_header(body={f"k{i}" * 50: 0 for i in range(1000)}),
        _ping_header(**{f"extra{i}" * 50: 0 for i in range(1000)}),
        _ping_header(v=1 << 63),
    ],
    ids=["src", "v", "t", "dtype", "shape", "body-keys", "header-keys", "big-int"],
)
def test_error_messages_describe_untrusted_values_without_repeating_them(header: dict) -> None:
    with pytest.raises(wire.WireError) as err:
        wire.decode([msgpack.packb(header), b"\x00" * 4] if header["tensors"] else [msgpack.packb(header)])
    text = str(err.value)
    assert len(text) < 400 and "\n" not in text and "\x1b" not in text, text


def test_random_garbage_frames_only_ever_raise_wire_error() -> None:
    rng = random.Random(11)
    valid = [bytes(x) for x in wire.encode(wire.TASK, "a", _task_body(placements=[["a", 1, 3]]),
                                           [np.zeros(4, np.float32)])]
    for i in range(2000):
        if i % 2:  # random bytes of random length, sometimes starting like a msgpack map
            frame = rng.choice([b"", b"\x87", b"\xde\x00\x07"]) + rng.randbytes(rng.randrange(0, 300))
        else:  # a valid header with a few bytes flipped, cut or repeated
            frame = bytearray(valid[0])
            for _ in range(rng.randrange(1, 4)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            frame = bytes(frame[: rng.randrange(1, len(frame) + 1)]) * rng.choice([1, 1, 2])
        frames = [frame, *([valid[1]] * rng.randrange(0, 3))]
        with contextlib.suppress(wire.WireError):
            wire.decode(frames)


@pytest.mark.parametrize("frames", [[object()], ["text"], [None], [b"\x80", 5], [memoryview(b"\x80").cast("c")]])
def test_frames_of_the_wrong_type_are_wire_errors(frames: list) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(frames)
