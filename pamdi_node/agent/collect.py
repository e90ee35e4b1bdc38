"""``collect``: an agent's records, spans and kept outputs, paged into one reply's frames.

Records and spans travel once, as JSON lines in two uint8 frames at offset 0; kept outputs follow,
flattened to one tensor per name (``"<task>"``, or ``"<task>:<i>/<n>"`` for a tuple output such as
GPT-2's top-k head: the client puts tuples back together), at most ``wire.MAX_TENSORS - 2`` per
reply; ``next`` is the offset of the next page, -1 after the last.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pamdi_node import wire


def collect_page(offset: int, records: Sequence[Mapping[str, Any]], spans: Sequence[Mapping[str, Any]],
                 outputs: Mapping[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """(body, tensors) of the ``collect_reply`` for the page starting at ``offset``."""
    flat: list[tuple[str, Any]] = []
    for tid in sorted(outputs):
        out = outputs[tid]
        if isinstance(out, tuple | list):
            flat += [(f"{tid}:{i}/{len(out)}", t) for i, t in enumerate(out)]
        else:
            flat.append((tid, out))
    page = flat[offset: offset + wire.MAX_TENSORS - 2]
    tensors: list[Any] = []
    if offset == 0:
        for rows in (records, spans):
            raw = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
            tensors.append(np.frombuffer(raw, dtype=np.uint8))
    else:
        tensors += [np.empty(0, np.uint8), np.empty(0, np.uint8)]
    tensors += [t for _, t in page]
    nxt = offset + len(page) if offset + len(page) < len(flat) else -1
    body = {"records": len(records) if offset == 0 else 0, "spans": len(spans) if offset == 0 else 0,
            "outputs": [name for name, _ in page], "next": nxt}
    return body, tensors
