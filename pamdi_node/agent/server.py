"""The agent process: one ZeroMQ ROUTER socket, an I/O loop that never waits on compute.

Its sockets (``sockets.py``): the ROUTER where every message arrives, one DEALER per neighbour, and
an ``inproc`` PULL that wakes the loop when the executor or a source thread posts an event. Every
frame list is decoded by ``wire.decode`` inside a guard: a malformed message is counted, answered
with an ``error`` when it came with a routing id, and never stops the loop.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
import time
from typing import Any

import zmq

from pamdi_node import __version__, wire
from pamdi_node.agent.collect import collect_page
from pamdi_node.agent.config import RunConfig
from pamdi_node.agent.configure import accept_config, build_store
from pamdi_node.agent.delayline import DelayLine
from pamdi_node.agent.flow import RunState
from pamdi_node.agent.peercheck import RunFacts, check_peer_message
from pamdi_node.agent.ratelog import RateLimitedLog
from pamdi_node.agent.security import ORCHESTRATOR, PEER_TYPES, authorise, user_of
from pamdi_node.agent.sockets import control_router, drain, peer_socket, recv_frames, routing_name
from pamdi_node.telemetry import Telemetry

log = logging.getLogger(__name__)

MAX_APPLIED_CONFIGS = 4096  # config ids remembered against replays (one per policy run)
MAX_BATCH = 256  # messages drained from one socket before the loop looks at the others


class Agent:
    def __init__(
        self,
        listen: str,
        name: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
        keys: str | None = None,
        trace_dir: str | None = None,
        parent_pid: int | None = None,
        idle_exit_s: float | None = None,
    ) -> None:
        self.listen = listen
        # Exit after this long without a message from the orchestrator (its heartbeat comes every
        # few seconds during a run): covers agents no parent process can take down with it (docker
        # containers, SRNs) when the orchestrator died.
        self.idle_exit_s = idle_exit_s
        self._last_orchestrator = time.time()
        # Exit once this process is no longer our parent (the launcher died, even by SIGKILL: we are
        # re-parented). Polled by the loop rather than PR_SET_PDEATHSIG, which fires when the
        # launching *thread* ends, and launchers start agents from worker threads.
        self.parent_pid = parent_pid
        self.name = name
        self.device = device
        self.threads = threads
        self.keys = keys
        self.trace_dir = trace_dir
        self.ctx = zmq.Context()
        self.router, self.auth = control_router(self.ctx, listen, keys, name)
        self.endpoint = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        wake = f"inproc://pamdi-wake-{id(self)}"
        self.wake_pull = self.ctx.socket(zmq.PULL)
        self.wake_pull.bind(wake)
        self._wake_push = self.ctx.socket(zmq.PUSH)
        self._wake_push.connect(wake)
        self._wake_lock = threading.Lock()
        self.events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.poller = zmq.Poller()
        self.poller.register(self.router, zmq.POLLIN)
        self.poller.register(self.wake_pull, zmq.POLLIN)
        self.state = "idle"  # idle -> building -> ready -> running -> (stopped)
        self.run: RunState | None = None
        self.run_facts: RunFacts | None = None  # what peer messages are checked against (peercheck.py)
        self._log_refused = RateLimitedLog(log, logging.INFO)  # a flood of bad messages is a few lines
        self.cfg: RunConfig | None = None
        self.peer_socks: dict[str, zmq.Socket] = {}
        self.telemetry: Telemetry | None = None
        self.bad_messages, self.last_error = 0, ""
        # This agent's own failures (a timer or handler that raised) since its configuration: any
        # makes the policy run not faithful (a node that stopped beaconing leaves a smaller network).
        self.internal_errors, self.last_internal_error = 0, ""
        self._stop = threading.Event()
        self._next_beacon = math.inf
        self._next_tick = 0.0
        self._next_flush = 0.0
        self._config_gen = 0
        self._applied: dict[str, None] = {}  # config ids accepted so far, oldest first (bounded)
        self._delayed = DelayLine()  # peer messages held for their link's delay ± jitter (PeerConfig.apply_delay)
        if threads:
            import torch

            torch.set_num_threads(threads)

    # --------------------------------------------------------------------------- thread interface
    def post(self, event: tuple[Any, ...]) -> None:
        """Hand an event to the I/O loop (safe from any thread)."""
        self.events.put(event)
        # A full wake queue means the loop is awake already; a closed one means it is gone.
        with self._wake_lock, contextlib.suppress(zmq.ZMQError):
            self._wake_push.send(b"", flags=zmq.NOBLOCK)

    def request_stop(self) -> None:
        self._stop.set()
        self.post(("wake",))

    # --------------------------------------------------------------------------------- main loop
    def serve_forever(self) -> None:
        log.info("agent %s listening on %s (curve %s)", self.name or "?", self.endpoint,
                 "on" if self.keys else "off")
        try:
            while not self._stop.is_set():
                now = time.time()
                due = min(self._next_beacon, self._next_tick, self.run.next_deadline() if self.run else math.inf,
                          self._delayed.next_due())
                timeout_ms = max(0, min(50, int((due - now) * 1000) + 1))
                for sock, _ in self.poller.poll(timeout_ms):
                    if sock is self.router:
                        self._drain_router()
                    elif sock is self.wake_pull:
                        self._drain_events()
                    else:
                        self._drain_peer(sock)
                self._drain_events()
                self._release_delayed()
                self._timers()
        finally:
            self._shutdown()

    def _release_delayed(self) -> None:
        for run, msg, due in self._delayed.release(time.time(), self.run):
            try:
                self._on_peer(run, msg, due)
            except Exception as err:
                self._internal_error(f"handling delayed {msg.type!r} from {msg.src!r}: {type(err).__name__}: {err}")

    def _timers(self) -> None:
        now = time.time()
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            log.warning("agent %s: parent process %d is gone; stopping", self.name, self.parent_pid)
            self._stop.set()
            return
        if self.idle_exit_s is not None and now - self._last_orchestrator > self.idle_exit_s:
            log.warning("agent %s: no message from the orchestrator for %.0f s; stopping", self.name, self.idle_exit_s)
            self._stop.set()
            return
        run = self.run
        if run is not None and self.state in ("ready", "running"):
            if now >= self._next_beacon:
                self._next_beacon = run.next_beacon(now)
                self._guard(run.beacon)
            if now >= self._next_tick or run.next_deadline() <= now:
                self._next_tick = now + 0.02
                self._guard(run.tick)
        else:
            self._next_tick = now + 0.05
        if now >= self._next_flush and self.telemetry is not None:
            self._next_flush = now + 1.0
            self.telemetry.flush()

    def _guard(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as err:
            self._internal_error(f"{type(err).__name__}: {err}")

    def _internal_error(self, what: str) -> None:
        """Count and log (with its traceback: call it from an ``except``) a failure of the agent itself."""
        log.exception("agent %s: internal error: %s", self.name, what)
        self.last_error = self.last_internal_error = what
        self.internal_errors += 1

    def _drain_events(self) -> None:
        drain(self.wake_pull)
        while True:
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                return
            kind = ev[0]
            if kind == "built":
                try:
                    self._finish_config(*ev[1:])
                except Exception as err:
                    log.exception("agent %s: configuration failed", self.name)
                    self.state = "idle"
                    self._bad(ev[2], f"configuration failed: {type(err).__name__}: {err}", ev[3].id)
            elif self.run is not None and kind == "computed":
                self._guard(self.run.computed, *ev[1:])
            elif self.run is not None and kind == "new" and self.state == "running":
                self._guard(self.run.new_task, *ev[1:])

    def _drain_router(self) -> None:
        for _ in range(MAX_BATCH):
            try:
                parts, dropped = recv_frames(self.router)
            except zmq.Again:
                return
            t_recv = time.time()
            ident = parts[0].bytes
            if dropped:
                self._bad(ident, f"{len(parts) - 1 + dropped} frames exceed the maximum {wire.MAX_FRAMES}", None)
                continue
            try:
                msg = wire.decode(parts[1:])
            except wire.WireError as err:
                self._bad(ident, str(err), None)
                continue
            user = user_of(parts[1]) if self.auth is not None else None
            try:
                self._dispatch(ident, msg, t_recv, user)
            except wire.WireError as err:
                self._bad(ident, str(err), msg.id)
            except Exception as err:
                self._internal_error(f"handling {msg.type!r} from {msg.src!r}: {type(err).__name__}: {err}")
                self._bad(ident, f"internal error handling {msg.type!r}: {type(err).__name__}: {err}", msg.id)

    def _drain_peer(self, sock: zmq.Socket) -> None:
        # Peers answer on their own DEALER -> our ROUTER; only error replies come back here.
        for _ in range(MAX_BATCH):
            try:
                parts, _ = recv_frames(sock)
            except zmq.Again:
                return
            try:
                msg = wire.decode(parts)
                if msg.type == wire.ERROR:
                    log.warning("agent %s: peer %s reports: %s", self.name, msg.src, msg.body.get("reason"))
            except wire.WireError:
                self.bad_messages += 1

    def _bad(self, ident: bytes, reason: str, in_reply_to: str | None) -> None:
        self.bad_messages += 1
        self.last_error = reason
        self._log_refused("agent %s: refused a message: %s", self.name, reason)
        self._reply(ident, wire.error_frames(self.name or "agent", reason, in_reply_to))

    def _reply(self, ident: bytes, frames: list[Any]) -> None:
        # A client that is gone or unreachable gets nothing: there is nobody to tell.
        with contextlib.suppress(zmq.ZMQError):
            self.router.send_multipart([ident, *frames], flags=zmq.NOBLOCK, copy=False)

    def _reply_msg(self, ident: bytes, req: wire.Message, msg_type: str, body: dict[str, Any],
                   tensors: list[Any] | None = None) -> None:
        self._reply(ident, wire.encode(msg_type, self.name or "agent", body, tensors or [], msg_id=req.id))

    # ---------------------------------------------------------------------------------- dispatch
    def _dispatch(self, ident: bytes, msg: wire.Message, t_recv: float, user: str | None = None) -> None:
        authorise(user, msg)
        t = msg.type
        if t not in PEER_TYPES and (user is None or user == ORCHESTRATOR):
            self._last_orchestrator = t_recv  # (peers keep each other alive; only the orchestrator counts)
        if t in PEER_TYPES:
            run = self.run
            if run is None or self.state not in ("ready", "running"):
                if t == wire.BEACON:
                    return  # a peer configured before us: normal during start-up
                raise wire.WireError(f"{t!r} refused: this agent has no run configuration yet")
            if msg.src not in run.peers.peers or routing_name(ident) != msg.src:
                raise wire.WireError(f"{t!r} refused: {msg.src!r} is not a configured neighbour of {self.name}")
            if self.run_facts is not None:
                check_peer_message(self.run_facts, msg, time.time())
            if self._delayed.holds(msg.src):
                self._delayed.hold_from(msg.src, t_recv, run, msg)
                return
            self._on_peer(run, msg, t_recv)
            return
        if t == wire.PING:
            self._reply_msg(ident, msg, wire.PONG, {"t_recv": t_recv, "t_send": time.time(),
                                                    "node": self.name or "agent", "state": self.state})
        elif t == wire.CONFIG:
            self._start_config(ident, msg)
        elif t == wire.START:
            if self.run is None or self.state != "ready":
                raise wire.WireError(f"'start' refused: agent is {self.state}, not ready")
            self.run.start(msg.body)
            self._next_beacon, self.state = self.run.next_beacon(time.time()), "running"
            self._reply_msg(ident, msg, wire.STARTED, {})
        elif t == wire.STATS:
            self._reply_msg(ident, msg, wire.STATS_REPLY, {"stats": self.stats()})
        elif t == wire.COLLECT:
            self._collect(ident, msg)
        elif t == wire.STOP:
            if self.run is not None:
                self.run.stop()
            if self.telemetry is not None:
                self.telemetry.flush()
            self._reply_msg(ident, msg, wire.STOPPED, {})
            self._stop.set()
        else:
            raise wire.WireError(f"message type {t!r} is not accepted by an agent")

    def _on_peer(self, run: RunState, msg: wire.Message, t_recv: float) -> None:
        if run.on_peer(msg, t_recv):
            log.info("agent %s: peer %s is up", self.name, msg.src)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.name, "state": self.state, "version": __version__,
                               "bad_messages": self.bad_messages, "last_error": self.last_error[:500],
                               "internal_errors": self.internal_errors,
                               "last_internal_error": self.last_internal_error[:500], "device": self.device}
        if self.run is not None:
            out.update(self.run.stats_dict())
        return out

    # ------------------------------------------------------------------------------ configuration
    def _start_config(self, ident: bytes, msg: wire.Message) -> None:
        cfg, policy = accept_config(msg.body["config"], self.name, self._applied)
        self._applied[cfg.config_id] = None
        while len(self._applied) > MAX_APPLIED_CONFIGS:
            self._applied.pop(next(iter(self._applied)))
        self._teardown_run()
        self.name = cfg.node
        self.state = "building"
        self._config_gen += 1
        gen = self._config_gen

        def build() -> None:  # off the I/O loop: building GPT-2 blocks takes seconds
            t0 = time.time()
            try:
                store = build_store(cfg, self.device)
                self.post(("built", gen, ident, msg, cfg, policy, store, None, time.time() - t0))
            except Exception as err:
                log.exception("building blocks failed")
                self.post(("built", gen, ident, msg, cfg, policy, None, f"{type(err).__name__}: {err}", 0.0))

        threading.Thread(target=build, name="pamdi-build", daemon=True).start()

    def _finish_config(self, gen: int, ident: bytes, msg: wire.Message, cfg: RunConfig, policy: Any, store: Any,
                       err: str | None, build_s: float) -> None:
        if gen != self._config_gen:
            return  # superseded by a newer config
        if err is not None:
            self.state = "idle"
            self._bad(ident, f"bad config: cannot build the model blocks: {err}", msg.id)
            return
        self.cfg = cfg
        if self.telemetry is not None:
            self.telemetry.close()
        trace_dir = cfg.trace_dir or self.trace_dir
        self.telemetry = Telemetry(cfg.node, trace_dir, config_id=cfg.config_id)
        for name, peer in cfg.peers.items():
            self.peer_socks[name] = self._connect_peer(name, peer.address)
        self._delayed.configure(cfg.peers, seed=cfg.seed, here=cfg.node)
        self.run = RunState(cfg, policy, store, self.telemetry, self._send_peer, self.post)
        self.run_facts = RunFacts.of(cfg)
        self.internal_errors, self.last_internal_error = 0, ""
        self.state = "ready"
        self._next_beacon = time.time()
        self._reply_msg(ident, msg, wire.CONFIG_OK, {"node": cfg.node, "build_s": build_s})

    def _connect_peer(self, name: str, address: str) -> zmq.Socket:
        s = peer_socket(self.ctx, self.name, name, address, self.keys)  # type: ignore[arg-type]
        self.poller.register(s, zmq.POLLIN)
        return s

    def _send_peer(self, name: str, frames: list[Any]) -> bool:
        s = self.peer_socks.get(name)
        if s is None:
            return False
        try:
            s.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.ZMQError:
            return False  # not connected (dead peer) or its queue is full

    def _teardown_run(self) -> None:
        if self.run is not None:
            self.run.stop("superseded by a new configuration")
            self.run = None
        for s in self.peer_socks.values():
            self.poller.unregister(s)
            s.close(0)
        self.peer_socks = {}
        self._next_beacon = math.inf
        self._delayed.clear()

    # ------------------------------------------------------------------------------------ collect
    def _collect(self, ident: bytes, msg: wire.Message) -> None:
        records, spans = self.telemetry.snapshot() if self.telemetry is not None else ([], [])
        body, tensors = collect_page(int(msg.body.get("offset", 0)), records, spans,
                                     self.run.outputs if self.run is not None else {})
        self._reply_msg(ident, msg, wire.COLLECT_REPLY, body, tensors)

    def _shutdown(self) -> None:
        self._teardown_run()
        if self.telemetry is not None:
            self.telemetry.close()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.destroy(linger=0)
        log.info("agent %s stopped", self.name)
