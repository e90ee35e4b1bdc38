"""The experiment runner: drives a spec over any backend, one policy after another.

The runner is the same for every backend (local processes, netns, docker, Colosseum): the backend
only brings agents up and down (``Backend.up/down``, optionally ``kill/restart``) and shapes links;
the runner then

1. generates the run's Curve keys (when on) before ``up`` so the backend can hand ``--keys`` out,
2. waits for every agent to answer a ping and estimates its clock offset NTP-style,
3. per policy: sends each agent its run configuration (``build_configs``, with the run's device-time
   model, ``pamdi_node/devicetime.py``), starts the agents
   (sources last), applies the spec's ``failures`` (kill / restart through the backend), polls the
   source nodes until every task has completed or failed (or the run times out), collects task
   records and spans from every agent, shifts spans onto the orchestrator clock, and writes
   ``<run_dir>/<policy>/{tasks,spans}.jsonl`` and ``agents.json``,
4. stops the agents and calls ``down`` (also after Ctrl-C: what was measured is kept).

The result is ``metrics.summarize``'s JSON (the same shape as ``pamdi simulate``); a task that never
came back is reported failed with a reason, never dropped.

Before ``up`` the runner settles how time is produced: the device-time model (the options', else
the spec's, else the backend's default), the profiles it predicts with (``hostprofiles``: this
host's own unless the spec names a folder) and, under ``profile``, the stretch factor ``k`` the
host needs (``timescale``): the agents then run the spec stretched ``k`` times and every time the
runner reports (records, spans) is divided by ``k`` again. Each policy's summary carries the
overrun fraction of its block ranges and whether the run was faithful.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.backends.base import AgentEndpoint, Backend, RunContext, SupportsFailures
from orchestrator.metrics import COMPLETED, FAILED, TaskRecord, summarize_run
from orchestrator.spec import DEFAULT_POLICIES, ExperimentSpec
from pamdi_node import devicetime
from pamdi_node.agent.client import AgentClient, AgentError
from pamdi_node.agent.config import task_id
from pamdi_node.policies.types import LINK_GOODPUT_FACTOR, SourceView

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0  # a ping to every agent at least this often during a policy (see AGENT_IDLE_EXIT_S)


class RunError(RuntimeError):
    """The run could not be carried out (agents unreachable, refused config, ...)."""


@dataclass
class RunOptions:
    policies: Sequence[str] | None = None  # None = the spec's; ("all",) = the paper's five
    curve: bool | None = None  # None = the backend's default (``backend.default_curve``)
    # Keys already on the agents (a compose project's, rendered with it): used, not generated, and
    # left in place at the end. None: the runner makes the run's keys and removes them after.
    keys_dir: str | Path | None = None
    keep_outputs: bool = False  # ship every result tensor back (identity tests)
    # Device-time model (pamdi_node/devicetime.py); None = the spec's, else the backend's default.
    device_time: str | None = None
    # Time stretch k (profile device time); None = what the host headroom needs (``timescale``).
    time_stretch: float | None = None
    task_timeout_s: float = 60.0
    run_timeout_s: float | None = None  # per policy; None = from the spec's arrival schedule
    agent_timeout_s: float = 90.0  # for agents to come up / build their blocks
    beacon_period_s: float | None = None  # None = the spec's
    extra_config: Mapping[str, Any] = field(default_factory=dict)  # merged into every agent config


@dataclass
class PolicyRun:
    policy: str
    records: list[TaskRecord]
    spans: list[dict[str, Any]]
    outputs: dict[str, Any]
    summary: dict[str, Any]
    stats: dict[str, Any]
    timed_out: bool = False


# ------------------------------------------------------------------------------ configurations
def resolve_device_time(asked: str | None, spec: ExperimentSpec, backend: Backend | None) -> str:
    """The run's device-time model: as asked, else the spec's, else the backend's default."""
    name = asked or spec.device_time or (backend.default_device_time if backend is not None else None) or "native"
    return devicetime.check(name)


def policy_params(spec: ExperimentSpec, policy: str, views: Mapping[str, SourceView]) -> dict[str, Any]:
    """The parameters of ``policy`` from the spec (pa-mdi-static gets the allocator's plan)."""
    from pamdi_node.policies import params_for

    params: dict[str, Any] = params_for(policy, spec.policy_params)
    if policy == "pa-mdi-static" and "plan" not in params:
        from orchestrator.allocator import allocate

        params["plan"] = allocate(spec, views, rho_max=params.get("rho_max")).plan
    return params


def build_configs(
    spec: ExperimentSpec,
    policy: str,
    endpoints: Mapping[str, AgentEndpoint],
    views: Mapping[str, SourceView],
    *,
    run_id: str = "run",
    options: RunOptions | None = None,
    params: Mapping[str, Any] | None = None,
    agent_delayed: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
) -> dict[str, dict[str, Any]]:
    """One agent configuration per node (``pamdi_node.agent.config.RunConfig`` as a dict);
    ``agent_delayed``: links (sorted name pairs) whose delay the receiving agents apply."""
    from orchestrator.devices import node_speed

    opts = options or RunOptions()
    device_time = resolve_device_time(opts.device_time, spec, None)
    params = dict(params if params is not None else policy_params(spec, policy, views))
    graph = spec.neighbours()
    speeds = {n.name: node_speed(n) for n in spec.nodes}
    by_name = {s.name: s for s in spec.sources}
    sources = []
    for name, v in views.items():
        s = by_name[name]
        sources.append({
            "name": name, "node": v.node, "model": v.model, "priority": v.priority, "accuracy": v.accuracy,
            "samples": s.samples, "interval_s": s.interval_s, "arrival": s.arrival, "start_s": s.start_ms / 1000.0,
            "batch": s.batch, "data": s.data, "block_time_s": list(v.block_time_s),
            "block_out_bytes": list(v.block_out_bytes), "input_bytes": v.input_bytes,
            "result_bytes": v.result_bytes, "bounds": list(v.bounds),
        })
    links = [[u, v, lk.rate_mbit * 1e6 * LINK_GOODPUT_FACTOR, lk.delay_ms / 1000.0]
             for lk in spec.resolved_links() for u, v in ((lk.a, lk.b), (lk.b, lk.a))]
    beacon = opts.beacon_period_s if opts.beacon_period_s is not None else spec.beacon_period_ms / 1000.0
    configs: dict[str, dict[str, Any]] = {}
    for node in spec.nodes:
        n = node.name
        peers = {}
        for k in graph[n]:
            link = spec.link(n, k)
            assert link is not None
            ep = endpoints[k]
            peers[k] = {
                "address": ep.data.get(n, ep.control),
                # Views carry goodput (the policies never apply the factor themselves).
                "rate_bps": link.rate_mbit * 1e6 * LINK_GOODPUT_FACTOR,
                "delay_s": link.delay_ms / 1000.0,
                "loss": link.loss,
                "apply_delay": link.key in agent_delayed,
            }
        # Under "local" nobody else's model ever runs here: build only this node's own models.
        blocks = {v.model: (0, len(v.block_time_s)) for v in views.values() if policy != "local" or v.node == n}
        configs[n] = {
            "node": n, "run_id": run_id, "config_id": uuid.uuid4().hex, "seed": spec.seed, "policy": policy,
            "policy_params": params,
            "speed": speeds[n], "device_time": device_time, "threads": node.threads,
            "beacon_period_s": beacon, "task_timeout_s": opts.task_timeout_s, "peers": peers,
            "graph": {k: list(v) for k, v in graph.items()}, "speeds": speeds, "sources": sources,
            "links": links,
            "blocks": {m: list(r) for m, r in blocks.items()}, "keep_outputs": opts.keep_outputs,
            **dict(opts.extra_config),
        }
    return configs


def fidelity(spans: Sequence[Mapping[str, Any]], device_time: str, stretch: float) -> dict[str, Any]:
    """How faithfully the agents kept to the modelled device times (profile device time): the share of
    compute spans that overran by more than ``devicetime.OVERRUN_TOLERANCE_S`` (in real seconds), the
    overrun as a share of the modelled compute, and whether the run counts as faithful."""
    compute = [s for s in spans if s.get("kind") == "compute" and "model_s" in s]
    out: dict[str, Any] = {"device_time": device_time, "time_stretch": stretch}
    if device_time != "profile" or not compute:
        return out
    tol = devicetime.OVERRUN_TOLERANCE_S / stretch  # spans are back on the nominal time line
    over = [float(s.get("overrun_s") or 0.0) for s in compute]
    modelled = math.fsum(float(s["model_s"]) for s in compute)
    frac = sum(1 for o in over if o > tol) / len(compute)
    out.update({"compute_spans": len(compute), "overrun_fraction": round(frac, 4),
                "overrun_share": round(math.fsum(over) / modelled, 4) if modelled > 0 else 0.0,
                "faithful": frac <= devicetime.FAITHFUL_MAX_OVERRUN_FRACTION})
    return out


def _merge_manifest(run_dir: Path, extra: Mapping[str, Any]) -> None:
    """Add ``extra`` to the run folder's ``manifest.json`` (written by the CLI before the run), if any."""
    path = run_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    manifest.update(extra)
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def expected_duration_s(spec: ExperimentSpec) -> float:
    """When the last task is submitted (seconds after start), plus its mean gap."""
    return max(s.start_ms / 1000.0 + s.samples * s.interval_s for s in spec.sources)


# ------------------------------------------------------------------------------------ the runner
class Runner:
    def __init__(self, spec: ExperimentSpec, backend: Backend, run_dir: str | Path,
                 options: RunOptions | None = None, base_dir: str | Path | None = None,
                 on_progress: Callable[[str, int, int], None] | None = None) -> None:
        """``on_progress(policy, finished, total)`` is called while a policy runs (tasks completed or
        failed at their sources, out of all the spec's tasks), from the thread that calls ``run``."""
        self.spec = spec  # what the agents run: the nominal spec stretched by ``self.stretch``
        self.nominal = spec
        self.on_progress = on_progress
        self.total_tasks = sum(s.samples for s in spec.sources)
        self.backend = backend
        self.run_dir = Path(run_dir)
        opts = options or RunOptions()
        # Decided once per run (the stretch in ``run``, once the profiles are known).
        self.opts = dataclasses.replace(opts, device_time=resolve_device_time(opts.device_time, spec, backend))
        self.device_time: str = self.opts.device_time  # type: ignore[assignment]
        self.stretch = 1.0
        self.timing: dict[str, Any] = {"device_time": self.device_time, "time_stretch": 1.0}
        self.base_dir = base_dir
        self.run_id = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.clients: dict[str, AgentClient] = {}
        self.endpoints: dict[str, AgentEndpoint] = {}
        self.offsets: dict[str, float] = {}
        self.keys_dir: Path | None = None
        self.results: list[PolicyRun] = []
        self._lock = threading.Lock()
        self._retired: list[AgentClient] = []
        self._configs: dict[str, dict[str, Any]] = {}
        self._gone: set[str] = set()  # nodes the spec's failures killed with no recovery (this policy)
        self._killed: set[str] = set()  # nodes the spec's failures killed (this policy)
        self._views: Mapping[str, SourceView] = {}  # the policy's sources

    # ---------------------------------------------------------------------------------- helpers
    def policies(self) -> list[str]:
        pols = list(self.opts.policies or self.spec.policy)
        if pols == ["all"]:
            pols = list(DEFAULT_POLICIES)
        return pols

    def _client(self, node: str, ep: AgentEndpoint) -> AgentClient:
        return AgentClient(ep.control, keys=str(self.keys_dir) if self.keys_dir else None, server=node,
                           timeout_s=10.0)

    def _wait_agents(self) -> None:
        deadline = time.time() + self.opts.agent_timeout_s
        for node, c in self.clients.items():
            while True:
                try:
                    c.ping(timeout_s=1.0)
                    break
                except AgentError as err:
                    if time.time() > deadline:
                        raise RunError(f"agent {node} at {c.address} does not answer: {err}") from None
        for node, c in self.clients.items():
            self.offsets[node] = c.clock_offset()["offset_s"]

    def _parallel(self, fn: Any, nodes: Sequence[str]) -> dict[str, Any]:
        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            futs = {n: pool.submit(fn, n) for n in nodes}
            return {n: f.result() for n, f in futs.items()}

    # --------------------------------------------------------------------------------- lifecycle
    def prepare(self) -> dict[str, Any]:
        """Settle profiles and time stretch (before ``up``); returns what goes in the manifest."""
        from orchestrator.hostprofiles import run_profiles

        self.profiles, choice = run_profiles(self.nominal, self.device_time, self.base_dir)
        self.timing["profiles"] = choice.as_dict()
        self._check_devices()
        from orchestrator.gpuprofiles import resolve_gpu_speeds

        try:  # GPU nodes without a speed: the speed their GPU profile implies (the simulator's too)
            self.nominal, gpu = resolve_gpu_speeds(self.nominal, self.profiles, self.base_dir)
        except ValueError as err:
            raise RunError(str(err)) from None
        if gpu:
            self.timing["gpu_speeds"] = gpu
        self.timing["device_types"] = {n.name: n.device_type for n in self.nominal.nodes}
        if self.device_time in ("profile", "quota"):
            # Quotas cap each node's CPU but guarantee nothing: their sum must fit the host too, so a
            # quota run is stretched by the same headroom rule (quotas / k, durations x k).
            if self.opts.time_stretch is not None:
                self.stretch = float(self.opts.time_stretch)
                self.timing["headroom"] = {"stretch": self.stretch, "reason": "asked"}
            else:
                from orchestrator.hostprofiles import host_ratio
                from orchestrator.timescale import estimate_headroom

                seen: dict[tuple[str, int], float] = {}
                for p in self.profiles.values():
                    if (p.model, p.batch) not in seen:
                        seen[(p.model, p.batch)] = host_ratio(p)
                ratio = max(seen.values(), default=1.0)
                self.timing["host_ratio"] = {f"{m}_b{b}": round(r, 3) for (m, b), r in seen.items()}
                head = estimate_headroom(self.nominal, self.policies(), self.profiles, host_ratio=ratio)
                self.stretch = head.stretch
                self.timing["headroom"] = head.as_dict()
        if self.stretch < 1.0:
            raise RunError(f"time stretch must be >= 1, got {self.stretch}")
        if self.device_time == "quota" and self.backend.calibrates_quota:
            # Predictions of a quota run need each node's real speed under its quota (not linear):
            # measured at the quotas the run uses, then expressed on the nominal time line (x k).
            from orchestrator.netem.calibrate import calibrate_spec
            from orchestrator.timescale import stretch_spec

            cal = calibrate_spec(stretch_spec(self.nominal, self.stretch), self.profiles)
            for entry in cal["nodes"].values():
                entry["stretched_speed"] = entry["speed"]
                entry["speed"] = entry["speed"] * self.stretch
            self.timing["quota_calibration"] = cal
        if self.stretch != 1.0:
            from orchestrator.timescale import stretch_spec

            self.spec = stretch_spec(self.nominal, self.stretch)
            k = self.stretch
            extra = {"ack_timeout_s": 3.0 * k, "rtc_timeout_s": 0.25 * k, "grant_window_s": 0.002 * k}
            self.opts = dataclasses.replace(
                self.opts, task_timeout_s=self.opts.task_timeout_s * k,
                run_timeout_s=None if self.opts.run_timeout_s is None else self.opts.run_timeout_s * k,
                extra_config={**extra, **dict(self.opts.extra_config)})
        self.timing["time_stretch"] = self.stretch
        _merge_manifest(self.run_dir, {"emulation": self.timing})
        return self.timing

    def _check_devices(self) -> None:
        """Refuse, before anything starts, GPU nodes a backend cannot give a GPU."""
        gpu = [n for n in self.nominal.nodes if n.device_type != "cpu"]
        if not gpu:
            return
        where = self.backend.gpu_check
        if where == "none":
            raise RunError(f"nodes.{gpu[0].name}: device_type {gpu[0].device_type}: the {self.backend.name} backend "
                           "runs no GPU agents (its node image carries a CPU-only torch); use local or netns on a "
                           "GPU host, or Colosseum/ssh")
        if where == "host":  # the agents run on this machine: its torch must see the GPU
            from pamdi_node.models.device import check_device

            for n in gpu:
                try:
                    check_device(n.device_type)
                except ValueError as err:
                    raise RunError(f"nodes.{n.name}: device_type {n.device_type}: {err}") from None

    def run(self) -> dict[str, Any]:
        """Run every policy; returns ``{"runs": [...]}`` (partial after Ctrl-C, which is re-raised)."""
        from orchestrator.simulator import source_views

        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not hasattr(self, "profiles"):
            self.prepare()
        views = source_views(self.spec, self.profiles)
        curve = self.opts.curve if self.opts.curve is not None else self.backend.default_curve
        if curve:
            from orchestrator.keys import fingerprints, generate_run_keys, run_key_dir

            self.keys_dir = (Path(self.opts.keys_dir) if self.opts.keys_dir is not None
                             else generate_run_keys(run_key_dir(self.run_id), [n.name for n in self.spec.nodes]))
            self.timing["curve"] = {"on": True, "key_fingerprints": fingerprints(self.keys_dir)}
        else:
            log.warning("run %s: CurveZMQ is off (--insecure): any process that reaches the agents can "
                        "configure, stop or impersonate them", self.run_id)
            self.timing["curve"] = {"on": False}
        _merge_manifest(self.run_dir, {"emulation": self.timing})
        ctx = RunContext(self.run_id, self.run_dir, self.spec.seed, keys_dir=self.keys_dir,
                         trace_dir=self.run_dir / "agents", device_time=self.device_time, time_scale=self.stretch)
        try:
            self.endpoints = dict(self.backend.up(self.spec, ctx))
            self.clients = {n: self._client(n, ep) for n, ep in self.endpoints.items()}
            self._wait_agents()
            (self.run_dir / "clocks.json").write_text(json.dumps(self.offsets, indent=2) + "\n")
            for policy in self.policies():
                self.results.append(self._run_policy(policy, views))
                self._write_summary(views)  # policy by policy: a killed orchestrator keeps what it had
        finally:
            self._write_summary(views)
            self._stop_all()
            try:
                self.backend.down()
            finally:
                from orchestrator.keys import remove_run_keys

                if self.opts.keys_dir is None:
                    remove_run_keys(self.keys_dir)
        return self.summary(views)

    def summary(self, views: Mapping[str, SourceView]) -> dict[str, Any]:
        prios = {name: v.priority for name, v in views.items()}
        return {"runs": [dict(r.summary, **({"timed_out": True} if r.timed_out else {})) for r in self.results]
                if self.results else [], "run_id": self.run_id, "backend": self.backend.name,
                "priorities": prios, **self.timing}

    def _write_summary(self, views: Mapping[str, SourceView]) -> None:
        try:  # written whole, then renamed: a kill mid-write leaves the previous summary, not half of one
            tmp = self.run_dir / ".summary.json.tmp"
            tmp.write_text(json.dumps(self.summary(views), indent=2, default=str) + "\n")
            tmp.replace(self.run_dir / "summary.json")
        except OSError:
            log.exception("cannot write the summary")

    def _stop_all(self) -> None:
        for node, c in self.clients.items():
            try:
                c.stop(timeout_s=3.0)
            except Exception as err:  # a dead agent cannot be stopped; down() cleans it up
                log.debug("stop %s: %s", node, err)
            c.close()
        for c in self._retired:
            c.close()
        self.clients, self._retired = {}, []

    # ---------------------------------------------------------------------------------- a policy
    def _run_policy(self, policy: str, views: Mapping[str, SourceView]) -> PolicyRun:
        log.info("run %s: policy %s", self.run_id, policy)
        params = policy_params(self.spec, policy, views)
        configs = build_configs(self.spec, policy, self.endpoints, views, run_id=self.run_id, options=self.opts,
                                params=params, agent_delayed=self.backend.agent_delayed_links)
        self._configs = configs
        self._gone, self._killed = set(), set()
        self._views = views
        nodes = [n.name for n in self.spec.nodes]
        try:
            self._parallel(lambda n: self.clients[n].configure(configs[n], timeout_s=self.opts.agent_timeout_s), nodes)
        except AgentError as err:
            raise RunError(f"policy {policy}: configuring the agents failed: {err}") from None
        time.sleep(max(0.3, 3 * configs[nodes[0]]["beacon_period_s"]))  # a few beacons before the first task
        source_nodes = {v.node for v in views.values()}
        self._progress(policy, 0)
        for n in sorted(nodes, key=lambda n: n in source_nodes):  # sources last
            self.clients[n].start(offset_s=self.offsets.get(n, 0.0))
        t_start = self._t_start = time.time()
        failures = self._schedule_failures(t_start, views, policy)
        budget = self.opts.run_timeout_s
        if budget is None:
            budget = expected_duration_s(self.spec) * 1.5 + self.opts.task_timeout_s + 30.0
        timed_out = False
        interrupted: BaseException | None = None
        next_beat = time.time() + HEARTBEAT_S
        try:
            while True:
                if self._sources_done(source_nodes, policy):
                    break
                if time.time() >= next_beat:  # source nodes hear from us every poll; the others here
                    next_beat = time.time() + HEARTBEAT_S
                    self._heartbeat([n for n in nodes if n not in source_nodes])
                if time.time() - t_start > budget:
                    timed_out = True
                    log.warning("policy %s: run timed out after %.0fs", policy, budget)
                    break
                time.sleep(0.2)
        except KeyboardInterrupt as err:
            interrupted = err
        for t in failures:
            t.cancel()
            if t.is_alive():  # a restart in progress: let it finish before collecting
                t.join(timeout=self.opts.agent_timeout_s)
        result = self._collect(policy, views, timed_out or interrupted is not None,
                               "interrupted (Ctrl-C)" if interrupted else "run timed out")
        self._progress(policy, sum(1 for r in result.records if r.status in (COMPLETED, FAILED)))
        if interrupted is not None:
            self.results.append(result)
            raise interrupted
        return result

    def _heartbeat(self, nodes: list[str]) -> None:
        """A ping to each node: agents with ``--idle-exit`` take silence for a dead orchestrator."""
        def beat(n: str) -> None:
            with contextlib.suppress(AgentError):
                self.clients[n].ping(timeout_s=1.0)

        if nodes:
            self._parallel(beat, nodes)

    def _sources_done(self, source_nodes: set[str], policy: str | None = None) -> bool:
        done = True
        finished = 0
        for n in source_nodes:
            try:
                st = self.clients[n].stats()
            except AgentError:
                # Not answering is not done (it may be restarting, or just slow): wait for it, or
                # for the budget; only a node the spec kills for good is given up on.
                done = done and n in self._gone
                continue
            sources = st.get("sources") or {}
            # An agent that answers without this node's sources is not done either: a restarted one
            # (its address answers again before it is configured) or one configured for another run.
            expected = {v.name for v in self._views.values() if v.node == n}
            if not expected <= set(sources):
                done = False
            for s in sources.values():
                finished += int(s.get("completed", 0)) + int(s.get("failed", 0))
                done = done and bool(s["done"])
        if policy is not None:
            self._progress(policy, finished)
        return done

    def _progress(self, policy: str, finished: int) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(policy, min(finished, self.total_tasks), self.total_tasks)
        except Exception:  # a display problem must not stop the run
            log.exception("progress callback failed")

    def _schedule_failures(self, t0: float, views: Mapping[str, SourceView], policy: str) -> list[threading.Timer]:
        timers: list[threading.Timer] = []
        if not self.spec.failures:
            return timers
        if not isinstance(self.backend, SupportsFailures):
            log.warning("backend %s cannot kill agents: the spec's failures are ignored",
                        self.backend.name)
            return timers
        backend = self.backend
        for f in self.spec.failures:
            def fail(node: str = f.node, for_good: bool = f.recover_after_s is None) -> None:
                log.info("failure: killing %s", node)
                self._killed.add(node)
                if for_good:
                    self._gone.add(node)
                backend.kill(node)

            timers.append(threading.Timer(max(0.0, f.at_s - (time.time() - t0)), fail))
            if f.recover_after_s is not None:
                def recover(node: str = f.node) -> None:
                    log.info("failure: restarting %s", node)
                    ep = backend.restart(node)
                    client = self._client(node, ep)
                    try:
                        client.configure(self._configs[node], timeout_s=self.opts.agent_timeout_s)
                        client.start(offset_s=self.offsets.get(node, 0.0), resume_from=self._t_start)
                    except AgentError as err:
                        log.error("restarted agent %s could not rejoin: %s", node, err)
                    with self._lock:  # the old client may be in use by the main thread: retire it
                        self._retired.append(self.clients[node])
                        self.clients[node] = client

                timers.append(threading.Timer(f.at_s + f.recover_after_s, recover))
        for t in timers:
            t.daemon = True
            t.start()
        return timers

    # ---------------------------------------------------------------------------------- collect
    def _collect(self, policy: str, views: Mapping[str, SourceView], incomplete: bool, why: str) -> PolicyRun:
        records_raw: list[dict[str, Any]] = []
        spans: list[dict[str, Any]] = []
        outputs: dict[str, Any] = {}
        stats: dict[str, Any] = {}
        for node, c in self.clients.items():
            try:
                stats[node] = c.stats()
                recs, sp, outs = c.collect(outputs=self.opts.keep_outputs)
            except AgentError as err:
                stats[node] = {"error": str(err)}
                continue
            records_raw += recs
            spans += sp
            outputs.update(outs)
        # A source node that died (and maybe came back) lost its records in memory; it wrote each one
        # to its trace file as it happened. Those of this policy run fill in what collect missed. Only
        # for such nodes: otherwise collect had them all, and the file holds every earlier policy too.
        for node in sorted({v.node for v in views.values()}):
            if node in self._killed or "error" in stats.get(node, {}):
                records_raw += self._records_on_disk(node)
        records = self._records(records_raw, views, why if incomplete else "no record at its source node")
        spans = [self._align(s) for s in spans]
        if self.stretch != 1.0:  # back onto the nominal time line
            records, spans = self._unstretch(records, spans)
        out_dir = self.run_dir / policy
        out_dir.mkdir(parents=True, exist_ok=True)
        with (out_dir / "tasks.jsonl").open("w") as f:
            for r in records:
                f.write(json.dumps({"policy": policy, **r.to_dict()}) + "\n")
        with (out_dir / "spans.jsonl").open("w") as f:
            for s in spans:
                f.write(json.dumps({"policy": policy, **s}) + "\n")
        (out_dir / "agents.json").write_text(json.dumps(stats, indent=2, default=str) + "\n")
        prios = {name: v.priority for name, v in views.items()}
        summary = summarize_run(policy, records, prios)
        summary.update(fidelity(spans, self.device_time, self.stretch))
        cpu = [(float(st["cpu_s"]), float(st["wall_s"])) for st in stats.values()
               if isinstance(st.get("cpu_s"), int | float)]
        if cpu:  # how much of the host the agents really took (all their threads), since configured
            summary["agents_cpu_cores"] = round(sum(c for c, _ in cpu) / max(w for _, w in cpu), 3)
        return PolicyRun(policy, records, spans, outputs, summary, stats, timed_out=incomplete)

    def _records_on_disk(self, node: str) -> list[dict[str, Any]]:
        """This policy run's task records from ``node``'s own trace file (backends whose trace folder
        is on this host while the run lasts); a line cut short by a SIGKILL is skipped."""
        config_id = (self._configs.get(node) or {}).get("config_id")
        path = self.run_dir / "agents" / f"{node}.tasks.jsonl"
        if config_id is None or not path.is_file():
            return []
        out = []
        with path.open(errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and rec.get("config_id") == config_id and isinstance(rec.get("task"), str):
                    out.append(rec)
        return out

    def _unstretch(self, records: list[TaskRecord], spans: list[dict[str, Any]]
                   ) -> tuple[list[TaskRecord], list[dict[str, Any]]]:
        """Divide every time by the stretch factor around the policy's start (orchestrator clock)."""
        k, t0 = self.stretch, getattr(self, "_t_start", 0.0)

        def back(t: float) -> float:
            return t0 + (t - t0) / k

        recs = [dataclasses.replace(r, born_s=back(r.born_s) if not math.isnan(r.born_s) else r.born_s,
                                    done_s=None if r.done_s is None else back(r.done_s)) for r in records]
        out = []
        for sp in spans:
            sp = dict(sp, start=back(sp["start"]), end=back(sp["end"]))
            for key in ("model_s", "host_s", "overrun_s"):
                if isinstance(sp.get(key), int | float):
                    sp[key] = sp[key] / k
            out.append(sp)
        return recs, out

    def _align(self, span: dict[str, Any]) -> dict[str, Any]:
        """Shift a span onto the orchestrator clock (offset = agent clock - orchestrator clock)."""
        s = dict(span)
        end_off = self.offsets.get(s.get("node", ""), 0.0)
        start_off = self.offsets.get(s["peer"], 0.0) if s.get("kind") in ("transfer", "result") and "peer" in s \
            else end_off
        s["start"] = s["start"] - start_off
        s["end"] = s["end"] - end_off
        return s

    def _records(self, raw: list[dict[str, Any]], views: Mapping[str, SourceView], missing_reason: str
                 ) -> list[TaskRecord]:
        by_id: dict[str, dict[str, Any]] = {}
        for r in raw:
            by_id.setdefault(r["task"], r)
        out: list[TaskRecord] = []
        for src in self.spec.sources:
            off = self.offsets.get(src.node, 0.0)
            for i in range(src.samples):
                tid = task_id(src.name, i)
                r = by_id.get(tid)
                if r is None:
                    why = (f"source node {src.node} was down (killed by the spec's failures)"
                           if src.node in self._killed else missing_reason)
                    out.append(TaskRecord(src.name, tid, math.nan, None, FAILED, why, extra={"index": i}))
                    continue
                placements = tuple((str(p[0]), int(p[1]), int(p[2])) for p in r.get("placements", []))
                nodes = [src.node, *[p[0] for p in placements], src.node]
                hops = sum(1 for a, b in itertools.pairwise(nodes) if a != b)
                ok = r["status"] == "completed"
                out.append(TaskRecord(
                    src.name, tid, r["born"] - off, (r["done"] - off) if ok else None, COMPLETED if ok else FAILED,
                    r.get("reason") or "", placements, hops, extra={"index": i, "model": src.model},
                ))
        return out
