"""Simulator and exact-solver benchmark.

1. Simulate 200 nodes, 20 sources, 10,000 tasks (PA-MDI and MS-MDI): wall time and events/s
   (target: <= 2 s on the project's 2-core machine), and 1,000 nodes, 100 sources, 100,000 tasks
   (PA-MDI; target <= 60 s; ``--quick`` leaves it out).
2. Exact fluid LP (HiGHS) solve time for 5, 10 and 20 fully connected nodes, 2 sources.

Writes ``bench/out/bench_simulator.json`` and prints a summary. Usage: ``python bench/bench_simulator.py
[--quick]``.
"""

from __future__ import annotations

import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.allocator import allocate  # noqa: E402
from orchestrator.simulator import simulate, source_views  # noqa: E402
from orchestrator.spec import parse_spec  # noqa: E402
from pamdi_node.models.profile import load_shipped_profile  # noqa: E402


def big_spec(n_nodes: int = 200, n_sources: int = 20, tasks: int = 10_000, seed: int = 0) -> Any:
    rng = random.Random(seed)
    nodes = [{"name": f"n{i}", "speed": round(rng.uniform(0.3, 1.5), 2)} for i in range(n_nodes)]
    links: dict[tuple[int, int], dict[str, Any]] = {}
    for i in range(n_nodes):  # ring + 2 random chords per node: degree ~6, connected
        for j in ((i + 1) % n_nodes, rng.randrange(n_nodes), rng.randrange(n_nodes)):
            if j != i:
                a, b = sorted((i, j))
                links[(a, b)] = {"a": f"n{a}", "b": f"n{b}", "rate_mbit": rng.choice([10, 20, 50]),
                                 "delay_ms": rng.choice([1, 2, 5])}
    per = tasks // n_sources
    sources = [{"name": f"s{k}", "node": f"n{k * (n_nodes // n_sources)}", "model": "resnet56",
                "priority": 10 if k % 4 == 0 else 1, "samples": per, "interval_ms": 8.0,
                "arrival": "poisson", "partitions": 6} for k in range(n_sources)]
    return parse_spec({"name": "bench", "nodes": nodes, "links": list(links.values()), "sources": sources})


def mesh_spec(n: int) -> Any:
    return parse_spec({
        "name": f"mesh{n}", "nodes": [{"name": f"n{i}", "speed": 0.5 + (i % 3) * 0.25} for i in range(n)],
        "full_mesh": {"rate_mbit": 20, "delay_ms": 2},
        "sources": [{"name": "ts", "node": "n0", "model": "resnet56", "priority": 10, "interval_ms": 15},
                    {"name": "nts", "node": f"n{n - 1}", "model": "resnet56", "priority": 1, "interval_ms": 5}],
    })


def main() -> None:
    prof = load_shipped_profile("resnet56", 1, 1)
    out: dict[str, Any] = {"host": platform.node(), "python": platform.python_version(), "simulate": [], "solve": []}
    cases = [(200, 20, 10_000, "pa-mdi", 2.0), (200, 20, 10_000, "ms-mdi", 2.0)]
    if "--quick" not in sys.argv[1:]:
        cases.append((1000, 100, 100_000, "pa-mdi", 60.0))
    for nodes, n_sources, tasks, policy, target in cases:
        spec = big_spec(nodes, n_sources, tasks)
        t0 = time.perf_counter()
        res = simulate(spec, policy, profiles={s.name: prof for s in spec.sources})
        wall = time.perf_counter() - t0
        done = sum(r.status == "completed" for r in res.records)
        out["simulate"].append({"policy": policy, "nodes": nodes, "sources": n_sources, "tasks": len(res.records),
                                "completed": done, "events": res.events, "wall_s": wall,
                                "engine_s": res.wall_s, "events_per_s": res.events / res.wall_s,
                                "sim_end_s": res.end_s, "target_s": target})
    for n in (5, 10, 20):
        s = mesh_spec(n)
        views = source_views(s, {x.name: prof for x in s.sources})
        t0 = time.perf_counter()
        alloc = allocate(s, views)
        out["solve"].append({"nodes": n, "variables": alloc.bound.variables, "constraints": alloc.bound.constraints,
                             "lp_solve_s": alloc.bound.solve_s, "allocate_total_s": time.perf_counter() - t0,
                             "weighted_bound_s": alloc.bound.objective_s})
    dest = ROOT / "bench" / "out" / "bench_simulator.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    for r in out["simulate"]:
        ok = "OK" if r["wall_s"] <= r["target_s"] else "SLOW"
        print(f"simulate {r['policy']:7s} {r['nodes']} nodes/{r['sources']} sources/{r['tasks']} tasks: "
              f"{r['wall_s']:.2f} s wall ({r['events']} events, {r['events_per_s']:.0f} events/s, "
              f"{r['completed']} completed) [{ok}: <= {r['target_s']:g} s]")
    for r in out["solve"]:
        print(f"exact LP {r['nodes']:2d} nodes: {r['variables']} vars, solve {r['lp_solve_s'] * 1000:.0f} ms, "
              f"allocate (bound + static) {r['allocate_total_s'] * 1000:.0f} ms")
    print(f"wrote {dest.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
