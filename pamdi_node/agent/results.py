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

if TYPE_CHECKING:
    from pamdi_node.agent.flow import RunState

log = logging.getLogger(__name__)


class ResultsMixin:
    def deliver_result(self: RunState, task: Task, ok: bool, reason: str | None = None) -> None:
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
                log.warning("%s: no live route back to %s for %s yet; will retry", self.here, task.origin, task.id)
                self.stranded[task.id] = (task, ok, reason, now)
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
            self.deliver_result(task, ok, reason)
            return
        self.tel.span("serialize", task.id, task.source, t0, time.time(), to=nxt, result=True)
        self.peers.on_sent(nxt, sum(wire.frame_len(f) for f in frames[1:]), time.time())
        ack_by = self._ack_deadline(nxt, time.time())
        c = Custody(hop, nxt, task, "result", 0, 0, time.time(), ack_by=ack_by, ok=ok, reason=reason)
        self.custody[hop] = c

    def on_result(self: RunState, peer: str, msg: wire.Message, t_recv: float) -> None:
        b = msg.body
        self.send_peer(peer, wire.encode(wire.ACK, self.here, {"hop": b["hop"]}))
        self.tel.span("result", b["task"], b["source"], b["done"], t_recv, peer=peer)
        ok = bool(b["ok"]) and len(msg.tensors) >= 1
        tensor = activation(msg.tensors, bool(b.get("tuple"))) if ok else None
        if b["origin"] == self.here:
            out = self.outstanding.get(b["task"])
            if out is None:
                self.counters["duplicates"] += 1
                return
            self.complete(out[0], ok, b.get("reason"), tensor, b["placements"], t_recv)
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
        self.tel.record({
            "task": task.id, "source": task.source, "index": index, "model": task.model,
            "priority": task.priority, "status": "completed" if ok else "failed", "reason": reason,
            "born": born_local, "done": t_done, "latency_s": t_done - born_local,
            "placements": [list(p) for p in placements], "nodes": len({p[0] for p in placements}),
        })
