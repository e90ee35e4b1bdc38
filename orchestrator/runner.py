"""The experiment runner: drives a spec over any backend, one policy after another.

The runner is the same for every backend (local processes, netns, docker, Colosseum): the backend
only brings agents up and down (``Backend.up/down``, optionally ``kill/restart``) and shapes links;
the runner then

1. generates the run's Curve keys (when on) before ``up`` so the backend can hand ``--keys`` out,
2. waits for every agent to answer a ping and estimates its clock offset NTP-style,
3. per policy: sends each agent its run configuration (``build_configs``, with the run's device-time
   model), waits until each has heard its neighbours, starts them (sources last; each beacons from
   its own phase, the simulator's: ``pamdi_node.arrivals.beacon_phases``), applies the spec's
   ``failures`` (kill / restart through the backend), polls the source nodes until every task has
   completed or failed (or the run times out), collects records and spans from every agent, shifts
   spans onto the orchestrator clock, writes ``<run_dir>/<policy>/{tasks,spans}.jsonl``, ``agents.json``,
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
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from orchestrator.backends.base import AgentEndpoint, Backend, RunContext, SupportsFailures
from orchestrator.runconfig import (
    RunOptions,
    build_configs,
    expected_duration_s,
    resolve_device_time,
    stretch_options,
    wait_for_peers,
)
from orchestrator.runfailures import schedule_failures
from orchestrator.runrecords import (
    PolicyRun,
    align,
    policy_summary,
    records_on_disk,
    task_records,
    unstretch,
    write_policy_traces,
)
from orchestrator.spec import DEFAULT_POLICIES, ExperimentSpec
from orchestrator.workload import policy_params
from pamdi_node.agent.client import AgentClient, AgentError
from pamdi_node.arrivals import beacon_phases
from pamdi_node.policies.types import SourceView
from pamdi_node.records import COMPLETED, FAILED
from results.trace import merge_manifest

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0  # a ping to every agent at least this often during a policy (see AGENT_IDLE_EXIT_S)


class RunError(RuntimeError):
    """The run could not be carried out (agents unreachable, refused config, ...)."""


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
        self._beacon_at: dict[str, float] = {}  # each node's first beacon (orchestrator clock), this policy

    # ---------------------------------------------------------------------------------- helpers
    def policies(self) -> list[str]:
        pols = list(self.opts.policies or self.spec.policy)
        return list(DEFAULT_POLICIES) if pols == ["all"] else pols

    def _client(self, node: str, ep: AgentEndpoint) -> AgentClient:
        return AgentClient(ep.control, keys=str(self.keys_dir) if self.keys_dir else None, server=node, timeout_s=10.0)

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
        from orchestrator.gpuprofiles import check_gpu_nodes, resolve_gpu_speeds
        from orchestrator.hostprofiles import run_profiles
        from orchestrator.timescale import run_stretch, stretch_spec

        self.profiles, choice = run_profiles(self.nominal, self.device_time, self.base_dir)
        self.timing["profiles"] = choice.as_dict()
        try:  # GPU nodes: refused where no GPU can be had; without a speed, their GPU profile's
            check_gpu_nodes(self.nominal, self.backend.name, self.backend.gpu_check)
            self.nominal, gpu = resolve_gpu_speeds(self.nominal, self.profiles, self.base_dir)
        except ValueError as err:
            raise RunError(str(err)) from None
        if gpu:
            self.timing["gpu_speeds"] = gpu
        self.timing["device_types"] = {n.name: n.device_type for n in self.nominal.nodes}
        if self.device_time in ("profile", "quota"):
            # Quotas cap each node's CPU but guarantee nothing: their sum must fit the host too, so a
            # quota run is stretched by the same headroom rule (quotas / k, durations x k).
            self.stretch, why = run_stretch(self.nominal, self.policies(), self.profiles, self.opts.time_stretch)
            self.timing.update(why)
        if self.stretch < 1.0:
            raise RunError(f"time stretch must be >= 1, got {self.stretch}")
        if self.device_time == "quota" and self.backend.calibrates_quota:
            # Predictions of a quota run need each node's real speed under its quota (not linear):
            # measured at the quotas the run uses, then expressed on the nominal time line (x k).
            from orchestrator.netem.calibrate import calibrate_spec

            cal = calibrate_spec(stretch_spec(self.nominal, self.stretch), self.profiles)
            for entry in cal["nodes"].values():
                entry["stretched_speed"] = entry["speed"]
                entry["speed"] = entry["speed"] * self.stretch
            self.timing["quota_calibration"] = cal
        if self.stretch != 1.0:
            self.spec = stretch_spec(self.nominal, self.stretch)
            self.opts = stretch_options(self.opts, self.stretch)
        self.timing["time_stretch"] = self.stretch
        merge_manifest(self.run_dir, {"emulation": self.timing})
        return self.timing

    def run(self) -> dict[str, Any]:
        """Run every policy; returns ``{"runs": [...]}`` (partial after Ctrl-C, which is re-raised)."""
        from orchestrator.workload import source_views

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
        merge_manifest(self.run_dir, {"emulation": self.timing})
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
            if not self.backend.agents_outlive_run:
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
        self._configs, self._views = configs, views
        self._gone, self._killed = set(), set()
        nodes = [n.name for n in self.spec.nodes]
        try:
            self._parallel(lambda n: self.clients[n].configure(configs[n], timeout_s=self.opts.agent_timeout_s), nodes)
        except AgentError as err:
            raise RunError(f"policy {policy}: configuring the agents failed: {err}") from None
        time.sleep(max(0.3, 3 * (beacon_s := configs[nodes[0]]["beacon_period_s"])))  # a few beacons first,
        for n in wait_for_peers(self.clients, max(2.0, 20 * beacon_s)):  # and every agent's peers heard
            log.warning("policy %s: agent %s has not heard all its neighbours yet; starting anyway", policy, n)
        source_nodes = {v.node for v in views.values()}
        self._progress(policy, 0)
        self._beacon_at = {n: time.time() + p for n, p in beacon_phases(self.spec.seed, nodes, beacon_s).items()}
        for n in sorted(nodes, key=lambda n: n in source_nodes):  # sources last
            self.clients[n].start(offset_s=self.offsets.get(n, 0.0), beacon_at=self._beacon_at[n])
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
        if self.spec.failures and not isinstance(self.backend, SupportsFailures):
            log.warning("backend %s cannot kill agents: the spec's failures are ignored", self.backend.name)
            return []
        return schedule_failures(self.spec.failures, t0, self._fail, self._recover)

    def _fail(self, node: str, for_good: bool) -> None:
        log.info("failure: killing %s", node)
        self._killed.add(node)
        if for_good:
            self._gone.add(node)
        self.backend.kill(node)  # type: ignore[attr-defined]

    def _recover(self, node: str) -> None:
        log.info("failure: restarting %s", node)
        client = self._client(node, self.backend.restart(node))  # type: ignore[attr-defined]
        try:
            client.configure(self._configs[node], timeout_s=self.opts.agent_timeout_s)
            client.start(self.offsets.get(node, 0.0), resume_from=self._t_start, beacon_at=self._beacon_at.get(node))
        except AgentError as err:
            log.error("restarted agent %s could not rejoin: %s", node, err)
        with self._lock:  # the old client may be in use by the main thread: retire it
            self._retired.append(self.clients[node])
            self.clients[node] = client

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
                config_id = (self._configs.get(node) or {}).get("config_id")
                records_raw += records_on_disk(self.run_dir / "agents" / f"{node}.tasks.jsonl", config_id)
        records = task_records(records_raw, self.spec, self.offsets, self._killed,
                               why if incomplete else "no record at its source node")
        spans = [align(s, self.offsets) for s in spans]
        if self.stretch != 1.0:  # back onto the nominal time line
            records, spans = unstretch(records, spans, self.stretch, getattr(self, "_t_start", 0.0))
        write_policy_traces(self.run_dir / policy, policy, records, spans, stats)
        summary = policy_summary(policy, records, spans, stats, {name: v.priority for name, v in views.items()},
                                 self.device_time, self.stretch)
        for why in summary.get("unfaithful", ()):
            log.warning("policy %s: not faithful: %s", policy, why)
        return PolicyRun(policy, records, spans, outputs, summary, stats, timed_out=incomplete)
