"""The pamdi wire protocol, version 1: ZeroMQ multipart messages, one msgpack header + raw tensor frames.

Every message is ``[header, tensor_0, tensor_1, ...]`` (plus the routing identity a ROUTER socket
prepends). The header is a msgpack map::

    {"v": 2,                 # protocol version (PROTOCOL_VERSION)
     "t": "task",            # message type (MSG_TYPES)
     "src": "n1",            # sending node (or client) name
     "id": "ab12...",        # message / task id
     "ts": 1732.5,           # sender's time.time() when the message was built (for spans)
     "body": {...},          # type-specific fields, validated against BODY_SCHEMAS
     "tensors": [{"dtype": "float32", "shape": [1, 16, 32, 32]}, ...]}   # one entry per tensor frame

Tensor frames carry the raw C-contiguous bytes; they are sent with ``copy=False`` and received as
numpy arrays over the ZeroMQ frame buffer (no copy). ``decode`` validates everything before it
builds a single array: frame count, header size, msgpack limits, version, type, each body field's
type and bounds, the dtype whitelist, shape × itemsize == frame length and the total message size.
Errors raise ``WireError`` whose message names the frame and field at fault.

Hostile input: *every* decode failure is a ``WireError`` (a receiver needs one ``except``). Before
msgpack builds the header, a skip pass in C checks that every declared item is present, since
msgpack preallocates what an array declares (1,000 nested "65,536-item" arrays in 5 KB cost it
0.4 s and 66 MB); the build is capped at ``MAX_CONTAINERS`` lists and maps, and the result at
``MAX_DEPTH`` levels (msgpack itself allows 1,024, deep enough for ``repr`` to hit RecursionError).
Error messages describe untrusted values (type, size, a short escaped prefix) and never ``repr``
them whole: a deep or huge value cannot blow up the formatting or the logs.

The package (``wire/_schema.py``: limits, types and body schemas; ``wire/_check.py``: header
checks) imports neither torch nor anything from the orchestrator, so ``pamdi node ping`` and the
orchestrator's control plane stay light.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from pamdi_node.wire._check import _check_header, _unpack_header
from pamdi_node.wire._schema import (  # noqa: F401 - the protocol's names, as wire.NAME
    ACK,
    BEACON,
    BODY_SCHEMAS,
    COLLECT,
    COLLECT_REPLY,
    CONFIG,
    CONFIG_OK,
    CTC,
    DENY,
    DTYPES,
    ERROR,
    MAX_BLOCK,
    MAX_CONTAINERS,
    MAX_DEPTH,
    MAX_FRAME_BYTES,
    MAX_FRAMES,
    MAX_HEADER_BYTES,
    MAX_LIST,
    MAX_MAP,
    MAX_MESSAGE_BYTES,
    MAX_NAME,
    MAX_NDIM,
    MAX_STR,
    MAX_TENSORS,
    MSG_TYPES,
    PING,
    PONG,
    PROTOCOL_VERSION,
    RELEASE,
    RESULT,
    RTC,
    START,
    STARTED,
    STATS,
    STATS_REPLY,
    STOP,
    STOPPED,
    TASK,
    F,
    WireError,
)


@dataclass
class Message:
    type: str
    src: str
    id: str
    ts: float
    body: dict[str, Any] = field(default_factory=dict)
    tensors: list[np.ndarray] = field(default_factory=list)
    version: int = PROTOCOL_VERSION


def new_id() -> str:
    return uuid.uuid4().hex[:16]


# ------------------------------------------------------------------------------------------ encode
def encode(
    msg_type: str,
    src: str,
    body: Mapping[str, Any] | None = None,
    tensors: Sequence[Any] = (),
    *,
    msg_id: str | None = None,
    ts: float | None = None,
    validate: bool = True,
) -> list[Any]:
    """Frames of one message. ``tensors`` are numpy arrays or anything exposing ``numpy()``
    (CPU torch tensors). Frames reference the tensors' memory: send them with ``copy=False`` and do
    not mutate the tensors until ZeroMQ has sent them."""
    arrays = [_as_array(t, i) for i, t in enumerate(tensors)]
    header = {
        "v": PROTOCOL_VERSION,
        "t": msg_type,
        "src": src,
        "id": msg_id or new_id(),
        "ts": time.time() if ts is None else ts,
        "body": dict(body or {}),
        "tensors": [{"dtype": a.dtype.name, "shape": list(a.shape)} for a in arrays],
    }
    if validate:
        _check_header(header, [a.nbytes for a in arrays])
    raw = msgpack.packb(header, use_bin_type=True)
    if len(raw) > MAX_HEADER_BYTES:
        raise WireError(f"frame 0 (header): {len(raw)} bytes exceeds the maximum {MAX_HEADER_BYTES}")
    return [raw, *(memoryview(a.reshape(-1)).cast("B") if a.nbytes else b"" for a in arrays)]


def _as_array(t: Any, i: int) -> np.ndarray:
    if isinstance(t, np.ndarray):
        a = t
    elif hasattr(t, "numpy"):  # a CPU torch tensor; detach is harmless for plain tensors
        a = (t.detach() if hasattr(t, "detach") else t).numpy()
    else:
        raise WireError(f"tensor {i}: cannot send a {type(t).__name__}")
    if a.dtype.name not in DTYPES:
        raise WireError(f"tensor {i}: dtype {a.dtype.name} is not allowed (allowed: {', '.join(DTYPES)})")
    return np.ascontiguousarray(a)


# ------------------------------------------------------------------------------------------ decode
def frame_len(frame: Any) -> int:
    if isinstance(frame, bytes | bytearray):
        return len(frame)
    buf = getattr(frame, "buffer", None)
    if buf is not None:
        return buf.nbytes
    return memoryview(frame).nbytes


def _frame_view(frame: Any) -> memoryview:
    buf = getattr(frame, "buffer", None)
    return buf if buf is not None else memoryview(frame)


def decode(frames: Sequence[Any]) -> Message:
    """Validate and decode the frames of one message (without a routing identity). Anything wrong
    with the frames raises ``WireError`` and nothing else."""
    try:
        return _decode(frames)
    except WireError:
        raise
    except Exception as err:  # last resort: whatever slipped past the checks is still a malformed message
        raise WireError(f"malformed message ({type(err).__name__})") from None


def _decode(frames: Sequence[Any]) -> Message:
    if not frames:
        raise WireError("empty message: no header frame")
    if len(frames) > MAX_FRAMES:
        raise WireError(f"{len(frames)} frames exceed the maximum {MAX_FRAMES}")
    sizes = [frame_len(f) for f in frames]
    if sizes[0] > MAX_HEADER_BYTES:
        raise WireError(f"frame 0 (header): {sizes[0]} bytes exceeds the maximum {MAX_HEADER_BYTES}")
    if sum(sizes) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {sum(sizes)} bytes exceeds the maximum {MAX_MESSAGE_BYTES}")
    header = _unpack_header(bytes(_frame_view(frames[0])))  # one copy of at most MAX_HEADER_BYTES
    _check_header(header, sizes[1:])
    arrays: list[np.ndarray] = []
    for i, spec in enumerate(header["tensors"]):
        dt = DTYPES[spec["dtype"]]
        arr = np.frombuffer(_frame_view(frames[i + 1]), dtype=dt) if sizes[i + 1] else np.empty(0, dt)
        arrays.append(arr.reshape(spec["shape"]))
    return Message(
        type=header["t"],
        src=header["src"],
        id=header["id"],
        ts=float(header["ts"]),
        body=header["body"],
        tensors=arrays,
        version=header["v"],
    )


def error_frames(src: str, reason: str, in_reply_to: str | None = None) -> list[Any]:
    body: dict[str, Any] = {"reason": reason[:MAX_STR]}
    if in_reply_to:
        body["in_reply_to"] = in_reply_to[:MAX_STR]
    # The error carries the id of the request it answers, so a waiting client matches it.
    return encode(ERROR, src, body, msg_id=in_reply_to[:MAX_NAME] if in_reply_to else None)
