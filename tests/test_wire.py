"""The wire protocol: round trips without copies, and every malformed header refused with a named field."""

from __future__ import annotations

import contextlib

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
        (lambda f: _with(f, v=2), "field 'v': protocol version 2"),
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
    header = {"v": 1, "t": msg_type, "src": "a", "id": "x", "ts": 1.0, "body": body, "tensors": tensors}
    with contextlib.suppress(wire.WireError):
        wire.decode([msgpack.packb(header), b"\x00" * 16])
