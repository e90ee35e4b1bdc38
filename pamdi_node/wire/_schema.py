"""The protocol's limits, message types and body schemas (``pamdi_node.wire`` is the module to import)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# 1: the first; 2: START carries the node's beacon phase (``beacon_at``), which a version-1 agent
# would refuse as an unknown field.
PROTOCOL_VERSION = 2

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
    START: {"offset": F(_NUM, required=False, lo=-1e9, hi=1e9), "t0": F(_NUM, required=False, lo=0),
            "beacon_at": F(_NUM, required=False, lo=0)},
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
    RTC: {**_TASK_FIELDS, "index": F(_NUM), "hop": F(_NAME), "fallback": F(_NUM, required=False),
          "scored": F(_NUM, required=False)},
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
