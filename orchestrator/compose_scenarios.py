"""Radio scenarios in a compose project: followed inside the node containers, not flattened.

The coordinator container cannot reach into the others (it drives agents over ZeroMQ only), so
each node follows its own links' scenarios, as the docker backend's ``drive_scenarios`` does from
the host: ``pamdi compose`` renders every scenario link's points into the node configs of both
ends, already on the run's stretched time line (time stretch k: times and delays x k, rates / k;
loops as a stretched ``period_s``, so a run of any length is covered), and the node image's entry
script (``pamdi-node-entry``) leaves a follower beside the agent that re-shapes the link in place
at each step. Rendered points keep the project folder self-contained: a user's own scenarios
(``$PAMDI_SCENARIOS_DIR``) exist only on the rendering host.

The scenario clock: t = 0 when the coordinator's backend comes up (``StaticBackend.up``, which the
runner calls once before the first policy; every node is healthy then, i.e. its agent listens),
the same moment as the docker backend, which starts its driver once its agents are ready. The
coordinator writes it to ``traces/scenario_clock.json`` (``t0_unix``, the host's wall clock, which
all containers share); the followers apply each step at ``t0 + t_s`` and log every change to
``traces/scenarios/<node>.jsonl``. The clock runs on across policies, as on the docker backend; the
simulator's prediction (each policy's scenario from t = 0, ``SimOptions.scenario_offset_s`` = 0) is
the same for both backends.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from orchestrator.backends.dockernet import TRACE_MOUNT
from orchestrator.spec import ExperimentSpec, LinkParams

SCENARIO_CLOCK = f"{TRACE_MOUNT}/scenario_clock.json"
SCENARIO_LOG_DIR = f"{TRACE_MOUNT}/scenarios"
# How often a follower looks for the clock file before the run starts (steps themselves are slept
# to exactly; see the entry script).
FOLLOW_TICK_S = 0.05


def render_schedule(scenario: Any, k: float) -> dict[str, Any]:
    """A scenario as a node container follows it: its points on the stretched time line."""
    return {
        "scenario": scenario.name,
        "points": [{"t_s": p.t_s * k, "rate_mbit": p.rate_mbit / k, "delay_ms": p.delay_ms * k, "loss": p.loss}
                   for p in scenario.points],
        # 0: the last point stays (Scenario.at without loop).
        "period_s": scenario.period * k if scenario.loop and scenario.period > 0 else 0.0,
        "time_stretch": k,
    }


def link_schedules(nominal: ExperimentSpec, k: float) -> dict[tuple[str, str], dict[str, Any]]:
    """Each scenario link's rendered schedule; a ValueError names a link that cannot be shaped."""
    from orchestrator.backends.scenarios import link_scenarios

    return {key: render_schedule(sc, k) for key, sc in link_scenarios(nominal).items()}


def first_point(schedule: dict[str, Any]) -> LinkParams:
    """What a scenario link is shaped with when its container starts (already stretched)."""
    p = schedule["points"][0]
    return LinkParams(rate_mbit=p["rate_mbit"], delay_ms=p["delay_ms"], loss=p["loss"])


def follower_config(node: str) -> dict[str, Any]:
    """The node config keys the entry script's follower reads."""
    return {"scenario_clock": SCENARIO_CLOCK, "scenario_log": f"{SCENARIO_LOG_DIR}/{node}.jsonl",
            "scenario_tick_s": FOLLOW_TICK_S}


def start_clock(path: str | Path) -> float:
    """Start the scenario clock now (the coordinator, when its backend comes up): written whole,
    then renamed, so a follower never reads half a file."""
    path = Path(path)
    t0 = time.time()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"t0_unix": t0}) + "\n")
    tmp.replace(path)
    return t0


def read_changes(traces: str | Path) -> list[dict[str, Any]]:
    """Every node's logged scenario events of a harvested compose run, in time order."""
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(traces, "scenarios").glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: r["unix"])
