"""The pamdi wire protocol, version 1: ZeroMQ multipart messages, one msgpack header + raw tensor frames.

Every message is ``[header, tensor_0, tensor_1, ...]`` (plus the routing identity a ROUTER socket
prepends). The header is a msgpack map::

    {"v": 1,                 # protocol version (PROTOCOL_VERSION)
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

This module imports neither torch nor anything from the orchestrator, so ``pamdi node ping`` and the
orchestrator's control plane stay light.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1

# Limits (all checked before allocation). A frame above MAX_FRAME_BYTES is refused by ZeroMQ itself
# (ZMQ_MAXMSGSIZE on the agent socket), so an oversized frame never reaches Python.
MAX_HEADER_BYTES = 1 << 20  # 1 MiB: configs with profiles of a few models fit comfortably
MAX_FRAME_BYTES = 256 << 20  # one tensor frame
MAX_MESSAGE_BYTES = 512 << 20  # all frames together
MAX_TENSORS = 16
MAX_FRAMES = 1 + MAX_TENSORS
MAX_NDIM = 8
MAX_STR = 4096
MAX_NAME = 64
MAX_LIST = 65536
MAX_MAP = 4096
# Containers nested in one header, the header map included. Real messages reach about 10 (a config
# carrying a pa-mdi-static plan); far below the interpreter's recursion limit, so nothing that walks
# a decoded header (formatting, validation, the agent's own code) can hit RecursionError.
MAX_DEPTH = 32
# Lists and maps in one header: far above any real message (a header is at most 1 MiB anyway), and
# it bounds the objects msgpack builds from a header of empty containers (~1M otherwise).
MAX_CONTAINERS = 1 << 16
# Longest prefix of an untrusted string quoted in an error message.
_SHOW_CHARS = 32
# msgpack type bytes that open a list or a map: fixmap, fixarray, array 16/32, map 16/32.
_OPENERS = bytes([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])

DTYPES: Mapping[str, np.dtype] = {
    name: np.dtype(name)
    for name in ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
}

# ----------------------------------------------------------------------------------- message types
CONFIG = "config"  # orchestrator -> agent: the run configuration (reply: config_ok / error)
CONFIG_OK = "config_ok"
START = "start"  # orchestrator -> agent: start the sources (reply: started)
STARTED = "started"
BEACON = "beacon"  # peer -> peer: speed and queue, also the liveness signal
RTC = "rtc"  # offload request (request-to-compute)
CTC = "ctc"  # offload clear (clear-to-compute)
DENY = "deny"  # offload refused
TASK = "task"  # activations of a task + the block range to run
RESULT = "result"  # final output (or failure) travelling back to the source
ACK = "ack"  # receiver took a task/result (stops the sender's re-send timer)
RELEASE = "release"  # receiver handed the task on: the sender may drop its copy
PING = "ping"
PONG = "pong"
STATS = "stats"  # orchestrator -> agent: counters and progress (reply: stats_reply)
STATS_REPLY = "stats_reply"
COLLECT = "collect"  # orchestrator -> agent: per-task records and spans (reply: collect_reply)
COLLECT_REPLY = "collect_reply"
STOP = "stop"  # orchestrator -> agent: stop (reply: stopped)
STOPPED = "stopped"
ERROR = "error"  # reply to a message that could not be processed

# Field kinds for the body schemas.
_STR, _NAME, _INT, _NUM, _BOOL, _LIST, _MAP, _ANY = "str", "name", "int", "num", "bool", "list", "map", "any"
# Structured list items: a beacon's [weight, queued seconds] and a placement [node, start, end].
_WEIGHT_PAIR, _PLACEMENT = "weight-pair", "placement"
MAX_BLOCK = 1 << 20  # block indices on the wire (no model here has more than a few hundred)


@dataclass(frozen=True)
class F:
    """One body field: its kind, whether it must be present, numeric bounds, element kind for lists."""

    kind: str
    required: bool = True
    lo: float = -math.inf
    hi: float = math.inf
    of: str | None = None
    max_len: int | None = None


_TASK_FIELDS: dict[str, F] = {
    "task": F(_NAME),
    "source": F(_NAME),
    "origin": F(_NAME),  # node of the source (where the result goes)
    "model": F(_NAME),
    "priority": F(_NUM, lo=0, hi=1e12),
    "born": F(_NUM),  # creation time on the origin's clock
    "start": F(_INT, lo=0, hi=MAX_BLOCK),
    "end": F(_INT, lo=0, hi=MAX_BLOCK),  # end == start: relay only (multi-hop move, no compute)
}

BODY_SCHEMAS: Mapping[str, Mapping[str, F]] = {
    CONFIG: {"config": F(_MAP)},
    CONFIG_OK: {"node": F(_NAME), "build_s": F(_NUM, lo=0)},
    # ``offset``: the agent's clock minus the orchestrator's (NTP estimate), so task ages line up.
    # ``t0`` (orchestrator clock): a restarted source node resumes the run's schedule from it, the
    # items due while it was down skipped, instead of replaying the schedule from the start.
    START: {"offset": F(_NUM, required=False, lo=-1e9, hi=1e9), "t0": F(_NUM, required=False, lo=0)},
    STARTED: {},
    BEACON: {
        "speed": F(_NUM, lo=0, hi=1e9),
        "queue_s": F(_NUM, lo=0, hi=1e9),
        "seq": F(_INT, lo=0),
        # Queued seconds per task weight (gamma*alpha) as [[weight, seconds], ...], and the seconds
        # left of the job in service: priority-aware policies count only the work ahead of a task.
        "by_weight": F(_LIST, of=_WEIGHT_PAIR, max_len=1024, required=False),
        "residual_s": F(_NUM, lo=0, hi=1e9, required=False),
    },
    RTC: {**_TASK_FIELDS, "index": F(_NUM), "hop": F(_NAME), "fallback": F(_NUM, required=False)},
    CTC: {"hop": F(_NAME), "task": F(_NAME)},
    DENY: {"hop": F(_NAME), "task": F(_NAME), "reason": F(_STR, required=False)},
    TASK: {
        **_TASK_FIELDS,
        "hop": F(_NAME),
        "path": F(_LIST, of=_NAME, max_len=1024),
        "placements": F(_LIST, of=_PLACEMENT, max_len=4096, required=False),  # [[node, start, end], ...] so far
        "sent": F(_NUM),  # sender clock when serialisation began (for transfer spans)
        "tuple": F(_BOOL, required=False),  # the activation is a tuple of the tensor frames
    },
    RESULT: {
        "task": F(_NAME),
        "source": F(_NAME),
        "origin": F(_NAME),
        "hop": F(_NAME),
        "ok": F(_BOOL),
        "reason": F(_STR, required=False),
        "path": F(_LIST, of=_NAME, max_len=1024),
        "placements": F(_LIST, of=_PLACEMENT, max_len=4096),  # [[node, start, end], ...]
        "done": F(_NUM),  # clock of the node that finished the last block
        "tuple": F(_BOOL, required=False),
    },
    ACK: {"hop": F(_NAME)},
    RELEASE: {"hop": F(_NAME)},
    PING: {},
    PONG: {"t_recv": F(_NUM), "t_send": F(_NUM), "node": F(_NAME), "state": F(_NAME)},
    STATS: {},
    STATS_REPLY: {"stats": F(_MAP)},
    # Records and spans travel as two uint8 frames of JSON lines (offset 0 only); kept outputs
    # (keep_outputs) follow as tensor frames, paged by ``offset``; ``next`` is -1 after the last page.
    COLLECT: {"offset": F(_INT, required=False, lo=0)},
    COLLECT_REPLY: {
        "records": F(_INT, lo=0),
        "spans": F(_INT, lo=0),
        "outputs": F(_LIST, of=_NAME, max_len=MAX_TENSORS),
        "next": F(_INT, lo=-1),
    },
    STOP: {},
    STOPPED: {},
    ERROR: {"reason": F(_STR), "in_reply_to": F(_STR, required=False)},
}
MSG_TYPES: frozenset[str] = frozenset(BODY_SCHEMAS)


class WireError(ValueError):
    """A message breaks the protocol; the message names the frame and field at fault."""


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


def _unpack_header(raw: bytes) -> Any:
    """The header frame unpacked, with its allocation bounded whatever it declares."""
    n = len(raw)
    # An item takes at least one byte, so a count above the frame length is a lie; tying the limits
    # to it bounds what msgpack preallocates for a declared container.
    limits: dict[str, int] = {"max_str_len": min(MAX_HEADER_BYTES, n), "max_bin_len": 0, "max_ext_len": 0,
                              "max_array_len": min(MAX_LIST, n), "max_map_len": min(MAX_MAP, n // 2)}
    # Every list or map starts with one of these bytes, so their count bounds both the number of
    # containers and their depth: the checks below run only where that bound is not already enough
    # (a peer's header has a handful; this costs one pass in C).
    openers = n - len(raw.translate(None, _OPENERS))
    hooks: dict[str, Any] = {}
    if openers > MAX_CONTAINERS:
        built = itertools.count(1)

        def count(container: Any) -> Any:  # called by msgpack for every list and map it has built
            if next(built) > MAX_CONTAINERS:
                raise WireError(f"frame 0 (header): more than {MAX_CONTAINERS} lists and maps")
            return container

        hooks = {"list_hook": count, "object_hook": count}
    try:
        # First a walk in C that builds nothing: it fails if any declared item is missing, so nested
        # lying counts (1,000 arrays of "65,536 items" in 5 KB) never reach the building pass.
        walk = msgpack.Unpacker(max_buffer_size=max(n, 1), **limits)
        walk.feed(raw)
        walk.skip()
        if walk.tell() != n:
            raise WireError(f"frame 0 (header): {n - walk.tell()} bytes after the header")
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True, **hooks, **limits)
    except WireError:
        raise
    except Exception as err:  # msgpack raises several unrelated types for bad input
        why = f"{type(err).__name__}: {_clip(str(err))}"
        raise WireError(f"frame 0 (header): not a valid msgpack map ({why})") from None
    if openers > MAX_DEPTH:
        _check_depth(header)
    return header


def _check_depth(header: Any) -> None:
    """Refuse containers nested deeper than ``MAX_DEPTH`` (msgpack itself allows 1,024), level by
    level without recursion, so that nothing walking the header later can hit RecursionError."""
    level = [header] if type(header) in (dict, list) else []
    for _ in range(MAX_DEPTH):
        if not level:
            return
        level = [c for o in level for c in (o.values() if type(o) is dict else o) if type(c) in (dict, list)]
    if level:
        raise WireError(f"frame 0 (header): lists and maps nested deeper than {MAX_DEPTH} levels")


def _check_header(header: Any, tensor_sizes: Sequence[int]) -> None:
    if not isinstance(header, dict):
        raise WireError(f"frame 0 (header): expected a msgpack map, got {type(header).__name__}")
    v = header.get("v")
    if type(v) is not int or v != PROTOCOL_VERSION:  # `type` so that True (== 1) is not version 1
        raise WireError(
            f"frame 0 field 'v': protocol version {_show(v)} not supported (this agent speaks {PROTOCOL_VERSION})"
        )
    unknown = set(header) - {"v", "t", "src", "id", "ts", "body", "tensors"}
    if unknown:
        raise WireError(f"frame 0: unknown header field(s) {_names(unknown)}")
    t = header.get("t")
    if not isinstance(t, str) or t not in MSG_TYPES:
        raise WireError(f"frame 0 field 't': unknown message type {_show(t)}")
    for key in ("src", "id"):
        _check_value(f"frame 0 field {key!r}", header.get(key), F(_NAME))
    _check_value("frame 0 field 'ts'", header.get("ts"), F(_NUM))
    body = header.get("body")
    if not isinstance(body, dict):
        raise WireError(f"frame 0 field 'body': expected a map, got {type(body).__name__}")
    schema = BODY_SCHEMAS[t]
    for name, spec in schema.items():
        if name not in body:
            if spec.required:
                raise WireError(f"frame 0 body of {t!r}: missing field {name!r}")
            continue
        _check_value(f"frame 0 body of {t!r} field {name!r}", body[name], spec)
    extra = set(body) - set(schema)
    if extra:
        raise WireError(f"frame 0 body of {t!r}: unknown field(s) {_names(extra)}")
    specs = header.get("tensors")
    if not isinstance(specs, list):
        raise WireError(f"frame 0 field 'tensors': expected a list, got {type(specs).__name__}")
    if len(specs) != len(tensor_sizes):
        raise WireError(
            f"frame 0 field 'tensors': describes {len(specs)} tensor(s) but {len(tensor_sizes)} frame(s) follow"
        )
    for i, spec in enumerate(specs):
        where = f"frame {i + 1} (tensors[{i}])"
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape"}:
            raise WireError(f"{where}: descriptor must be a map with exactly 'dtype' and 'shape'")
        dt = spec["dtype"]
        if not isinstance(dt, str) or dt not in DTYPES:
            raise WireError(f"{where} field 'dtype': {_show(dt)} is not allowed (allowed: {', '.join(DTYPES)})")
        shape = spec["shape"]
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_NDIM
            or not all(type(d) is int and 0 <= d <= MAX_FRAME_BYTES for d in shape)
        ):
            raise WireError(f"{where} field 'shape': expected up to {MAX_NDIM} non-negative ints, got {_short(shape)}")
        expected = math.prod(shape) * DTYPES[dt].itemsize
        if expected != tensor_sizes[i]:
            raise WireError(
                f"{where}: shape {shape} x {dt} needs {expected} bytes but the frame has {tensor_sizes[i]}"
            )
        if expected > MAX_FRAME_BYTES:
            raise WireError(f"{where}: {expected} bytes exceeds the maximum frame size {MAX_FRAME_BYTES}")


def _check_value(where: str, value: Any, spec: F) -> None:
    kind = spec.kind
    if kind == _ANY:
        return
    if kind in (_STR, _NAME):
        limit = MAX_NAME if kind == _NAME else MAX_STR
        if not isinstance(value, str) or not value or len(value) > limit:
            raise WireError(f"{where}: expected a non-empty string of at most {limit} characters, got {_short(value)}")
        return
    if kind == _BOOL:
        if not isinstance(value, bool):
            raise WireError(f"{where}: expected a bool, got {_short(value)}")
        return
    if kind in (_INT, _NUM):
        ok = (type(value) is int) if kind == _INT else (type(value) in (int, float))
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            raise WireError(f"{where}: expected {'an int' if kind == _INT else 'a finite number'}, got {_short(value)}")
        if not spec.lo <= value <= spec.hi:
            raise WireError(f"{where}: {value} is outside [{spec.lo}, {spec.hi}]")
        return
    if kind == _WEIGHT_PAIR:
        if not isinstance(value, list) or len(value) != 2:
            raise WireError(f"{where}: expected [weight, seconds], got {_short(value)}")
        _check_value(f"{where}[0] (weight)", value[0], F(_NUM, lo=0, hi=1e12))
        _check_value(f"{where}[1] (seconds)", value[1], F(_NUM, lo=0, hi=1e9))
        return
    if kind == _PLACEMENT:
        if not isinstance(value, list) or len(value) != 3:
            raise WireError(f"{where}: expected [node, start, end], got {_short(value)}")
        _check_value(f"{where}[0] (node)", value[0], F(_NAME))
        _check_value(f"{where}[1] (start)", value[1], F(_INT, lo=0, hi=MAX_BLOCK))
        _check_value(f"{where}[2] (end)", value[2], F(_INT, lo=value[1], hi=MAX_BLOCK))
        return
    if kind == _MAP:
        if not isinstance(value, dict):
            raise WireError(f"{where}: expected a map, got {_short(value)}")
        return
    if kind == _LIST:
        if not isinstance(value, list) or len(value) > (spec.max_len or MAX_LIST):
            limit = spec.max_len or MAX_LIST
            raise WireError(f"{where}: expected a list of at most {limit} items, got {_short(value)}")
        if spec.of is not None:
            for i, item in enumerate(value):
                _check_value(f"{where}[{i}]", item, F(spec.of))
        return
    raise AssertionError(kind)


def _show(value: Any) -> str:
    """A bounded description of an untrusted value: small scalars as they are, strings as a short
    escaped prefix, containers by their size only (never their contents, which may nest deeply)."""
    if value is None or isinstance(value, bool | float):
        return repr(value)  # bounded: at most ~25 characters
    if isinstance(value, int):
        return str(value) if abs(value) < 10**12 else f"an int of {value.bit_length()} bits"
    if isinstance(value, str):
        if len(value) <= _SHOW_CHARS:
            return repr(value)
        return f"{value[:_SHOW_CHARS]!r}... ({len(value)} characters)"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"{len(value)} bytes"
    if isinstance(value, list | tuple):
        return f"{len(value)} items"
    if isinstance(value, dict):
        return f"{len(value)} entries"
    return "a value"


def _short(value: Any) -> str:
    return f"{type(value).__name__} {_show(value)}"


def _names(keys: set[Any], limit: int = 4) -> str:
    """Unknown field names, sorted, at most ``limit`` of them, each shown bounded."""
    names = sorted(str(k) for k in keys)
    shown = ", ".join(_show(k) for k in names[:limit])
    return f"[{shown}{f', ... ({len(names)} in all)' if len(names) > limit else ''}]"


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def error_frames(src: str, reason: str, in_reply_to: str | None = None) -> list[Any]:
    body: dict[str, Any] = {"reason": reason[:MAX_STR]}
    if in_reply_to:
        body["in_reply_to"] = in_reply_to[:MAX_STR]
    # The error carries the id of the request it answers, so a waiting client matches it.
    return encode(ERROR, src, body, msg_id=in_reply_to[:MAX_NAME] if in_reply_to else None)
