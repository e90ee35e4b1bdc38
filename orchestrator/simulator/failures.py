"""Node failures in the simulator: a node dies (its work is lost or taken back) and recovers."""

from __future__ import annotations

from orchestrator.simulator.state import _live, _Task
from pamdi_node.records import FAILED


class FailureModel:
    """Part of ``Simulator`` (``engine.py``), which it is mixed into: it uses the simulator's state."""

    def _fail_node(self, name: str, recover_after: float | None) -> None:
        node = self.nodes[name]
        if not node.alive:
            return
        node.alive = False
        node.epoch += 1
        lost = node.queue.clear()
        node.grants.close()
        node.reserved.clear()
        for job in lost:
            if _live(job):
                self._lost(job.task, f"worker {name} failed")
        if recover_after is not None:
            self.at(self.now + recover_after, self._recover_node, name)

    def _recover_node(self, name: str) -> None:
        node = self.nodes[name]
        node.alive = True
        node.epoch += 1
        self.at(self.now, self._beacon, node)

    def _lost(self, task: _Task, reason: str) -> None:
        """The task's state died with a worker: the source restarts it after noticing, or gives up."""
        task.attempt += 1
        task.waiting = 0
        home = task.view.node
        if task.retries >= self.opt.max_retries:
            self._finish(task, FAILED, f"{reason}; gave up after {task.retries} retries")
            return
        task.retries += 1
        detect = self.dead_after_s
        self.at(self.now + detect, self._restart, task, home, reason, task.attempt)

    def _restart(self, task: _Task, home: str, reason: str, attempt: int) -> None:
        if task.attempt != attempt:
            return
        if not self.nodes[home].alive:
            self._finish(task, FAILED, f"{reason}; source node down")
            return
        task.block = 0
        task.placements.append((home, 0, 0))  # restart marker
        self._decide(task, home)
