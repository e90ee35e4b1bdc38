"""Emulation against simulation, task by task: where a gap comes from.

Emulates one spec (netns, ``profile`` device time, shortened to ``--max-seconds`` of arrivals) under
the given policies, then simulates the same schedule with the run's profiles and measured runtime
costs (as ``orchestrator.predict`` does) and pairs every task with its simulated twin. Printed per
policy and source: how many tasks took the simulator's placements, and the emulated / simulated
mean latency of those and of the others (a gap on identical placements is a missing cost; a gap on
different placements is a decision that went another way); then the emulated latency split by span
kind (queue, compute, transfer, serialize, recv, decide, result). Writes
``bench/out/fidelity_taskdiff.json``. Usage: ``python bench/fidelity_taskdiff.py SPEC
[--policy P ...] [--max-seconds 10] [--keep DIR]``. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _mean_ms(xs: list[float]) -> float | None:
    return round(1000 * statistics.fmean(xs), 2) if xs else None


def main() -> int:
    from orchestrator.backends import get_backend
    from orchestrator.predict import AGENT_DEFAULTS, runtime_costs, shorten
    from orchestrator.runner import Runner, RunOptions
    from orchestrator.simulator import SimOptions, simulate
    from orchestrator.spec import load_spec
    from orchestrator.specs import resolve_spec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--policy", action="append", help="policies (default: ms-mdi and pa-mdi)")
    ap.add_argument("--max-seconds", type=float, default=10.0)
    ap.add_argument("--keep", type=Path, help="keep the run folder here")
    ap.add_argument("--insecure", action="store_true", help="plaintext ZeroMQ (to see what Curve costs)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "fidelity_taskdiff.json")
    args = ap.parse_args()
    path = resolve_spec(args.spec)
    spec = shorten(load_spec(path), args.max_seconds)
    policies = args.policy or ["ms-mdi", "pa-mdi"]
    with tempfile.TemporaryDirectory(prefix="pamdi-taskdiff-") as tmp:
        run_dir = args.keep or Path(tmp) / "run"
        runner = Runner(spec, get_backend("netns"), run_dir, RunOptions(policies=policies, device_time="profile",
                                                                      curve=False if args.insecure else None),
                        base_dir=path.parent)
        runner.prepare()
        runner.run()
    result: dict[str, Any] = {"spec": spec.name, "stretch": runner.stretch, "policies": {}}
    for r in runner.results:
        c = runtime_costs(r.spans, runner.device_time)
        opts = SimOptions(beacon_period_s=spec.beacon_period_ms / 1000.0, decision_cost_s=c.decision_s,
                          message_cost_s=c.message_s, rtc_window_s=AGENT_DEFAULTS.grant_window_s,
                          rtc_timeout_s=AGENT_DEFAULTS.rtc_timeout_s, shaper_stretch=runner.stretch)
        sim = {rec.task_id.rsplit("-", 1)[0] + "-" + str(int(rec.task_id.rsplit("-", 1)[1])): rec
               for rec in simulate(spec, r.policy, profiles=dict(runner.profiles), options=opts).records}
        spans: dict[str, dict[str, float]] = {}
        for s in r.spans:
            kinds = spans.setdefault(str(s.get("task")), {})
            kinds[s["kind"]] = kinds.get(s["kind"], 0.0) + float(s["end"]) - float(s["start"])
        by_source: dict[str, dict[str, Any]] = {}
        for rec in r.records:
            src, i = rec.task_id.rsplit("-", 1)
            twin = sim.get(f"{src}-{int(i)}")
            if twin is None or rec.done_s is None or twin.done_s is None:
                continue
            same = tuple(tuple(p[:3]) for p in rec.placements) == tuple(twin.placements)
            row = by_source.setdefault(src, {"same": ([], []), "different": ([], []), "spans": []})
            row["same" if same else "different"][0].append(rec.done_s - rec.born_s)
            row["same" if same else "different"][1].append(twin.done_s - twin.born_s)
            row["spans"].append(spans.get(rec.task_id, {}))
        out: dict[str, Any] = {"costs": c.as_dict(), "sources": {}}
        print(f"== {r.policy} (stretch {runner.stretch}; decision {c.decision_s * 1e3:.3f} ms, "
              f"message {c.message_s * 1e3:.3f} ms)")
        for src, row in sorted(by_source.items()):
            kinds = sorted({k for sp in row["spans"] for k in sp})
            split = {k: _mean_ms([sp.get(k, 0.0) for sp in row["spans"]]) for k in kinds}
            entry = {part: {"tasks": len(row[part][0]), "emulated_ms": _mean_ms(row[part][0]),
                            "simulated_ms": _mean_ms(row[part][1])} for part in ("same", "different")}
            entry["emulated_split_ms"] = split
            out["sources"][src] = entry
            print(f"  {src}: same placements {entry['same']}; different {entry['different']}")
            print(f"       emulated split (ms per task): {split}")
        result["policies"][r.policy] = out
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
