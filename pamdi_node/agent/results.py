"""Results: delivered at the source, or routed back to it hop by hop; stranded while no route is live.

A relay walks back along the nodes that held the task before it first did (each relay picks a
strictly earlier node, so results never loop); with no live route the result waits on the timer and
is dropped after ``task_timeout_s`` (the source then reports the task failed: timeout).

``ResultsMixin`` is one part of ``flow.RunState`` (the state it uses is set up there).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from pamdi_node import wire
from pamdi_node.agent.tasks import Custody, Task, activation, tensors_of
from pamdi_node.records import COMPLETED, FAILED, AgentRecord

if TYPE_CHECKING:
    from pamdi_node.agent.flow import RunState

log = logging.getLogger(__name__)


# Results held while no route back is live: bounded, so that results for an unreachable source
# (a dead node, or a peer sending junk for one) cannot take the agent's memory; the oldest go first.
MAX_STRANDED = 256
MAX_STRANDED_BYTES = 64 << 20


def _nbytes(tensor: Any) -> int:
    if tensor is None:
        return 0
    frames, _ = tensors_of(tensor)
    return int(sum(getattr(f, "nbytes", 0) for f in frames))


class ResultsMixin:
    def _strand(self: RunState, task: Task, ok: bool, reason: str | None, since: float | None) -> None:
        """Hold a result with no live route back; ``since`` is when it was first stranded (None: now)."""
        now = time.time()
        if since is None:
            self._log_stranded("%s: no live route back to %s for %s yet; will retry", self.here, task.origin, task.id)
            since = now
        self.stranded[task.id] = (task, ok, reason, since)
        self.stranded_bytes += _nbytes(task.tensor)
        while len(self.stranded) > MAX_STRANDED or self.stranded_bytes > MAX_STRANDED_BYTES:
            tid, (old, _, _, t0) = next(iter(self.stranded.items()))
            self._unstrand(tid)
            self.counters["stranded_dropped"] += 1
            self._log_stranded("%s: too many results held with no route back; dropped %s", self.here, tid)
            self.tel.span("lost", tid, old.source, t0, now, reason="stranded results over the limit")

    def _unstrand(self: RunState, tid: str) -> tuple[Task, bool, str | None, float]:
        entry = self.stranded.pop(tid)
        self.stranded_bytes -= _nbytes(entry[0].tensor)
        return entry

    def deliver_result(self: RunState, task: Task, ok: bool, reason: str | None = None,
                       stranded_since: float | None = None) -> None:
        if task.origin == self.here:
            self.complete(task, ok, reason, task.tensor if ok else None, task.placements, time.time())
            self._release_upstream(task)
            return
        t0 = time.time()
        now = t0
        nxt = None
        if task.origin in self.peers.peers and self.peers.alive(task.origin, now) and task.origin not in task.excluded:
            nxt = task.origin
        else:
            # Walk back along the nodes that held the task before this node first did: each relay
            # picks a strictly earlier node, so results never loop.
            first = task.path.index(self.here) if self.here in task.path else len(task.path)
            for node in reversed(task.path[:first]):
                if node not in task.excluded and self.peers.alive(node, now):
                    nxt = node
                    break
        if nxt is None:
            # Keep it and retry on the timer (a peer that just restarted may not have beaconed yet);
            # after task_timeout_s it is dropped and the source reports the task failed (timeout).
            if task.id not in self.stranded:
                self._strand(task, ok, reason, stranded_since)
            return
        hop = wire.new_id()
        body = {"task": task.id, "source": task.source, "origin": task.origin, "hop": hop, "ok": ok,
                "path": list(task.path), "placements": [list(p) for p in task.placements], "done": now}
        if reason:
            body["reason"] = reason[: wire.MAX_STR]
        tensors: list[Any] = []
        if ok:
            tensors, is_tuple = tensors_of(task.tensor)
            if is_tuple:
                body["tuple"] = True
        frames = wire.encode(wire.RESULT, self.here, body, tensors)
        if not self.send_peer(nxt, frames):
            task.excluded.add(nxt)
            self.deliver_result(task, ok, reason, stranded_since)
            return
        self.tel.span("serialize", task.id, task.source, t0, time.time(), to=nxt, result=True)
        self.peers.on_sent(nxt, sum(wire.frame_len(f) for f in frames[1:]), time.time())
        ack_by = self._ack_deadline(nxt, time.time())
        c = Custody(hop, nxt, task, "result", 0, 0, time.time(), ack_by=ack_by, ok=ok, reason=reason)
        self.custody[hop] = c

    def on_result(self: RunState, peer: str, msg: wire.Message, t_recv: float) -> None:
        b = msg.body
        self.send_peer(peer, wire.encode(wire.ACK, self.here, {"hop": b["hop"]}))
        if not self.first_time("result", peer, b["hop"]):
            if b["origin"] == self.here:  # the first copy was recorded: let the sender go again
                self.send_peer(peer, wire.encode(wire.RELEASE, self.here, {"hop": b["hop"]}))
            return
        self.tel.span("result", b["task"], b["source"], b["done"], t_recv, peer=peer)
        ok = bool(b["ok"]) and len(msg.tensors) >= 1
        tensor = activation(msg.tensors, bool(b.get("tuple"))) if ok else None
        if b["origin"] == self.here:
            out = self.outstanding.get(b["task"])
            if out is None:
                self.counters["duplicates"] += 1
            elif not out[0].sent_away:
                # This node never handed the task to anyone: no peer can have its result.
                self.counters["forged_results"] += 1
                self._log_stranded("%s: result for %s from %s, which never had it; dropped", self.here, b["task"], peer)
            else:
                self.complete(out[0], ok, b.get("reason"), tensor, b["placements"], t_recv)
            # Recorded (or already had): the sender may let go of its copy.
            self.send_peer(peer, wire.encode(wire.RELEASE, self.here, {"hop": b["hop"]}))
            return
        src = self.sources.get(b["source"])
        if src is None:
            return
        self.counters["results_relayed"] += 1
        task = Task(id=b["task"], source=b["source"], origin=b["origin"], model=src.model, priority=src.priority,
                    born=0.0, next_block=len(src.block_time_s), tensor=tensor, path=list(b["path"]),
                    placements=list(b["placements"]), upstream=(peer, b["hop"]))
        self.deliver_result(task, ok, b.get("reason"))

    def complete(self: RunState, task: Task, ok: bool, reason: str | None, tensor: Any, placements: list[Any],
                 t_done: float) -> None:
        entry = self.outstanding.pop(task.id, None)
        if entry is None:
            self.counters["duplicates"] += 1
            return
        _, born_local, index = entry
        st = self.stats[task.source]
        if ok:
            st.completed += 1
            if self.cfg.keep_outputs and tensor is not None:
                self.outputs[task.id] = tensor
        else:
            st.failed += 1
        self.completed_ids.add(task.id)
        self.tel.record(AgentRecord(task.id, task.source, index, task.model, float(task.priority),
                                    COMPLETED if ok else FAILED, reason or "", born_local, t_done,
                                    tuple((str(p[0]), int(p[1]), int(p[2])) for p in placements)))
