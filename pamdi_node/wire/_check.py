"""Checking an untrusted header before and after msgpack builds it: item counts, depth, version,
type, and each body field against its schema (``pamdi_node.wire.decode`` calls these)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import msgpack

from pamdi_node.wire._schema import (
    _ANY,
    _BOOL,
    _INT,
    _LIST,
    _MAP,
    _NAME,
    _NUM,
    _OPENERS,
    _PLACEMENT,
    _SHOW_CHARS,
    _STR,
    _WEIGHT_PAIR,
    BODY_SCHEMAS,
    DTYPES,
    MAX_BLOCK,
    MAX_CONTAINERS,
    MAX_DEPTH,
    MAX_FRAME_BYTES,
    MAX_HEADER_BYTES,
    MAX_LIST,
    MAX_MAP,
    MAX_NAME,
    MAX_NDIM,
    MAX_STR,
    MSG_TYPES,
    PROTOCOL_VERSION,
    F,
    WireError,
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
