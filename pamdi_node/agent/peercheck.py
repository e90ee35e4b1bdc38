"""Peer messages checked against the run's configuration, before any of them is acted on.

``wire.decode`` checks a message's shape (types, ranges, sizes); a well-formed message from an
authenticated neighbour can still lie about the run: a source that does not exist, an origin that
is not its source's node, a priority other than the spec's (a way to jump every queue), a block
range outside the model, placements on nodes outside the run or with gaps (records that would be
wrong or could not be written), timestamps a day away. ``check_peer_message`` refuses those with a
``WireError`` naming the field, so the agent counts the message as malformed and drops it, and a
forged result can never be counted completed.

Placements are what the agents write: one ``[node, start, end]`` per computed block range, from block
0, each starting where the previous ended; a task in flight ends where its next range starts, a
successful result at the model's last block. Relays add nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pamdi_node import wire
from pamdi_node.agent.config import AgentSource, RunConfig

# Timestamps from another node's clock (born, sent, done): clocks are NTP-aligned to well under a
# second; a day is far beyond any skew or run, and keeps every difference of them finite and sane.
MAX_CLOCK_SKEW_S = 86_400.0


@dataclass(frozen=True)
class RunFacts:
    """What peers' messages are checked against: the run's nodes and sources."""

    nodes: frozenset[str]
    sources: Mapping[str, AgentSource]

    @classmethod
    def of(cls, cfg: RunConfig) -> RunFacts:
        nodes = {cfg.node, *cfg.peers, *cfg.graph}
        for targets in cfg.graph.values():
            nodes.update(targets)
        return cls(frozenset(nodes), {s.name: s for s in cfg.sources})


def _field(msg: wire.Message, name: str) -> str:
    return f"{msg.type!r} from {msg.src} field {name!r}"


def _check_time(msg: wire.Message, name: str, now: float) -> None:
    value = msg.body.get(name)
    if value is not None and abs(float(value) - now) > MAX_CLOCK_SKEW_S:
        raise wire.WireError(f"{_field(msg, name)}: {value} is more than a day from this node's clock")


def _check_placements(msg: wire.Message, facts: RunFacts, num_blocks: int, ends_at: int | None) -> None:
    placements: list[Any] = msg.body.get("placements", [])
    at = 0
    for i, (node, start, end) in enumerate(placements):
        where = f"{_field(msg, 'placements')}[{i}]"
        if node not in facts.nodes:
            raise wire.WireError(f"{where}: {node!r} is not a node of this run")
        if start != at or end <= start or end > num_blocks:
            raise wire.WireError(f"{where}: blocks [{start},{end}) do not follow block {at} of {num_blocks}")
        at = end
    if ends_at is not None and at != ends_at:
        raise wire.WireError(f"{_field(msg, 'placements')}: cover blocks [0,{at}), expected [0,{ends_at})")


def _source(msg: wire.Message, facts: RunFacts) -> AgentSource:
    b = msg.body
    src = facts.sources.get(b["source"])
    if src is None:
        raise wire.WireError(f"{_field(msg, 'source')}: {b['source']!r} is not a source of this run")
    if b["origin"] != src.node:
        raise wire.WireError(f"{_field(msg, 'origin')}: {b['origin']!r}, but source {src.name!r} is on {src.node!r}")
    return src


def check_peer_message(facts: RunFacts, msg: wire.Message, now: float) -> None:
    """Raise ``WireError`` if ``msg`` (a decoded peer message) contradicts the run."""
    t, b = msg.type, msg.body
    if t in (wire.TASK, wire.RTC):
        src = _source(msg, facts)
        n = len(src.block_time_s)
        if b["model"] != src.model:
            raise wire.WireError(f"{_field(msg, 'model')}: {b['model']!r}, but source {src.name!r} runs {src.model!r}")
        if b["priority"] != src.priority:
            raise wire.WireError(f"{_field(msg, 'priority')}: {b['priority']}, but source {src.name!r} has "
                                 f"{src.priority}")
        if not b["start"] <= b["end"] <= n:
            raise wire.WireError(f"{_field(msg, 'end')}: blocks [{b['start']},{b['end']}) are outside "
                                 f"{src.model}'s {n}")
        _check_time(msg, "born", now)
        if t == wire.TASK:
            _check_time(msg, "sent", now)
            _check_placements(msg, facts, n, b["start"])
            _check_path(msg, facts)
    elif t == wire.RESULT:
        src = _source(msg, facts)
        n = len(src.block_time_s)
        _check_time(msg, "done", now)
        _check_placements(msg, facts, n, n if b["ok"] else None)
        _check_path(msg, facts)


def _check_path(msg: wire.Message, facts: RunFacts) -> None:
    for i, node in enumerate(msg.body["path"]):
        if node not in facts.nodes:
            raise wire.WireError(f"{_field(msg, 'path')}[{i}]: {node!r} is not a node of this run")
