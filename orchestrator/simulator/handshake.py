"""The RTC/CTC handshake in the simulator: requests, the receiver's grant window, reservations, replies."""

from __future__ import annotations

from orchestrator.simulator.state import _Node, _Task
from pamdi_node.policies.types import OffloadRequest, weight_of
from pamdi_node.worker import Reservation, Step, choose_grant, offload_request, reservation_expiry


class HandshakeModel:
    """Part of ``Simulator`` (``engine.py``), which it is mixed into: it uses the simulator's state."""

    def _send_rtc(self, task: _Task, here: str, step: Step) -> None:
        assert task.plan is not None
        self.token += 1
        task.waiting = self.token
        task.offered = step
        req = offload_request(task.plan, step, here, task.view.priority)
        self.at(self.now + self._ctrl_delay(here, step.node), self._on_rtc, req, task, self.token)
        self.at(self.now + self.opt.rtc_timeout_s, self._on_reply, task, here, self.token, False, task.attempt)

    def _on_rtc(self, req: OffloadRequest, task: _Task, token: int) -> None:
        node = self.nodes[req.receiver]
        if not node.alive:
            return  # the sender will time out
        if node.grants.add((req, task, token), self.now, self.opt.rtc_window_s):
            self.at(self.now + self.opt.rtc_window_s, self._close_window, node)

    def _close_window(self, node: _Node) -> None:
        pending = node.grants.close()
        if not node.alive or not pending:
            return
        granted = choose_grant(self.policy, [r for r, _, _ in pending], self.world(node.name), strict=True)
        for req, task, token in pending:
            ok = granted is req
            if ok:  # counts as queued here until it arrives (or the grant expires), as in the agent
                est = task.view.range_time_s(req.start, req.end) / node.speed
                node.reserved[token] = Reservation(est, weight_of(task.view), task.born,
                                                   reservation_expiry(self.now, self.opt.rtc_timeout_s))
                self.at(node.reserved[token].expires, self._expire_reservation, node, token)
            self.at(self.now + self._ctrl_delay(node.name, req.sender), self._on_reply, task, req.sender, token, ok,
                    task.attempt)

    def _expire_reservation(self, node: _Node, token: int) -> None:
        node.reserved.pop(token, None)

    def _on_reply(self, task: _Task, here: str, token: int, granted: bool, attempt: int) -> None:
        if task.waiting != token or task.attempt != attempt:
            return  # already answered (or timed out), or the task was restarted
        task.waiting = 0
        if not self.nodes[here].alive:
            self._lost(task, f"worker {here} failed")
            return
        step, task.offered = task.offered, None
        assert step is not None
        if granted:
            self._transfer(task, here, step.node, step.start, step.end, token)
        else:
            self._try_next(task, here)

    # ------------------------------------------------------------------ transfers
