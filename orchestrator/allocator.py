"""Exact fluid (steady-state) priority-aware allocation, solved with HiGHS (scipy ``linprog``).

Formulation - a multi-commodity min-cost flow with shared capacities, one commodity per source m:

- States ``(b, n)``: a task of m whose first ``b`` blocks are done and whose activation sits on
  worker n (b = 0..N_m; ``(0, node_m)`` is the source, ``(N_m, node_m)`` the finished result).
- Variables: flows in tasks/s on the edges
  * compute ``(b, n) -> (b+1, n)``: service time ``t_{m,b} / speed_n``;
  * move ``(b, n) -> (b, k)`` for every directed link (n, k): service time
    ``bytes_{m,b} * 8 / (rate_nk * 0.956) + delay_nk`` (``bytes`` = activation entering block b, the
    result for b = N_m). A multi-hop move is a sequence of such edges.
- Conservation: λ_m = 1/interval_m enters at ``(0, node_m)`` and leaves at ``(N_m, node_m)``;
  inflow = outflow elsewhere.
- Capacity (shared by all sources): per worker Σ compute flow · t/speed ≤ ρ; per directed link
  Σ move flow · bytes·8/goodput ≤ ρ.
- Objective: the priority-weighted mean inference time Σ_m γ_m·T_m / Σ_m γ_m with
  T_m = (Σ_edges cost_e · f_e) / λ_m, the mean no-wait service time of m's tasks (γ_m·α_m when
  accuracies are set, matching the policies' weights).

Why (a) is a lower bound: every task's inference time is at least the sum of the service times of
the steps it takes (compute at the worker's speed, serialization at goodput, propagation), since
waiting, handshakes and beacons only add time. The long-run rates at which tasks take each step
form a feasible flow of this LP whenever the system is stable (no worker or link is busy more than
100% of the time, ρ = 1). So the LP optimum with ρ = 1 bounds from below the long-run
priority-weighted mean of any policy (PA-MDI, the baselines, any static or dynamic schedule) under
which every task completes. (A finite run's transient and the per-source weighting of means are
the only approximations.)

(b) The static allocation solves the same LP with headroom ``ρ = rho_max`` (default 0.8, so queues
stay short), then decomposes each source's flow into routes (path decomposition, largest flow
first); ``pa-mdi-static`` sends each task along one route in proportion to its flow.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from orchestrator.spec import ExperimentSpec
from pamdi_node.policies.types import SourceView, weight_of


class AllocationError(RuntimeError):
    """The allocation problem is infeasible (offered load above capacity) or malformed."""


@dataclass(frozen=True)
class Problem:
    """Everything the LP needs, independent of the spec format (so the benchmark can build one)."""

    speeds: Mapping[str, float]
    # directed links (a, b) -> (goodput_bps, delay_s)
    links: Mapping[tuple[str, str], tuple[float, float]]
    sources: Mapping[str, SourceView]
    rates: Mapping[str, float]  # tasks/s per source


@dataclass
class Solution:
    status: str
    objective_s: float  # priority-weighted mean time
    per_source_s: dict[str, float]
    plan: dict[str, list[list[Any]]]
    node_util: dict[str, float]
    link_util: dict[str, float]
    solve_s: float
    variables: int
    constraints: int


@dataclass
class Allocation:
    bound: Solution  # rho = 1: the lower bound
    static: Solution  # rho = rho_max: the static allocation
    rho_max: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def plan(self) -> dict[str, list[list[Any]]]:
        return self.static.plan

    def to_dict(self) -> dict[str, Any]:
        def sol(s: Solution) -> dict[str, Any]:
            return {
                "status": s.status, "weighted_mean_s": s.objective_s, "per_source_s": s.per_source_s,
                "node_util": s.node_util, "link_util": s.link_util, "solve_s": s.solve_s,
                "variables": s.variables, "constraints": s.constraints,
            }
        return {"lower_bound": sol(self.bound), "static": {**sol(self.static), "rho_max": self.rho_max,
                                                              "plan": self.static.plan}}


def problem_from_spec(spec: ExperimentSpec, views: Mapping[str, SourceView]) -> Problem:
    from orchestrator.devices import node_speed
    from orchestrator.goodput import goodput_links

    links = goodput_links(spec)
    rates: dict[str, float] = {}
    for s in spec.sources:
        if s.interval_s <= 0:
            raise AllocationError(f"sources.{s.name}: the fluid allocation needs an arrival rate (interval_ms/rate_hz)")
        rates[s.name] = 1.0 / s.interval_s
    return Problem({n.name: node_speed(n) for n in spec.nodes}, links, dict(views), rates)


def solve(problem: Problem, rho: float = 1.0) -> Solution:
    """Solve the fluid LP at utilization cap ``rho``; raise ``AllocationError`` if infeasible."""
    nodes = sorted(problem.speeds)
    node_ix = {n: i for i, n in enumerate(nodes)}
    dlinks = sorted(problem.links)
    link_ix = {lk: i for i, lk in enumerate(dlinks)}
    wsum = math.fsum(weight_of(v) for v in problem.sources.values())
    cols_cost: list[float] = []
    # edge list: (source, kind, b, from_node, to_node, service cost, resource row offset, resource use)
    edges: list[tuple[str, str, int, str, str]] = []
    eq_rows: list[int] = []
    eq_cols: list[int] = []
    eq_vals: list[float] = []
    ub_rows: list[int] = []
    ub_cols: list[int] = []
    ub_vals: list[float] = []
    b_eq: list[float] = []
    n_nodes = len(nodes)
    state_base = 0
    for sname in sorted(problem.sources):
        src = problem.sources[sname]
        lam = problem.rates[sname]
        if src.node not in node_ix:
            raise AllocationError(f"source {sname} sits on unknown node {src.node}")
        nb = src.num_blocks
        coef = weight_of(src) / (wsum * lam)

        def state(b: int, n: str, nb: int = nb, base: int = state_base) -> int:
            return base + b * n_nodes + node_ix[n]

        n_states = (nb + 1) * n_nodes
        supply = [0.0] * n_states
        supply[state(0, src.node) - state_base] += lam
        supply[state(nb, src.node) - state_base] -= lam
        for b in range(nb + 1):
            for n in nodes:
                if b < nb:  # compute edge
                    t = src.block_time_s[b] / problem.speeds[n]
                    col = len(edges)
                    edges.append((sname, "run", b, n, n))
                    cols_cost.append(coef * t)
                    eq_rows += [state(b, n), state(b + 1, n)]
                    eq_cols += [col, col]
                    eq_vals += [1.0, -1.0]
                    ub_rows.append(node_ix[n])
                    ub_cols.append(col)
                    ub_vals.append(t)
            nbytes = src.result_bytes if b == nb else src.bytes_into(b)
            for (a, k) in dlinks:
                gp, delay = problem.links[(a, k)]
                ser = nbytes * 8.0 / gp
                col = len(edges)
                edges.append((sname, "move", b, a, k))
                cols_cost.append(coef * (ser + delay))
                eq_rows += [state(b, a), state(b, k)]
                eq_cols += [col, col]
                eq_vals += [1.0, -1.0]
                ub_rows.append(n_nodes + link_ix[(a, k)])
                ub_cols.append(col)
                ub_vals.append(ser)
        b_eq += supply
        state_base += n_states
    n_vars = len(edges)
    a_eq = coo_matrix((eq_vals, (eq_rows, eq_cols)), shape=(state_base, n_vars)).tocsr()
    n_res = n_nodes + len(dlinks)
    a_ub = coo_matrix((ub_vals, (ub_rows, ub_cols)), shape=(n_res, n_vars)).tocsr()
    t0 = time.perf_counter()
    res = linprog(np.array(cols_cost), A_ub=a_ub, b_ub=np.full(n_res, rho), A_eq=a_eq, b_eq=np.array(b_eq),
                  bounds=(0, None), method="highs")
    solve_s = time.perf_counter() - t0
    if res.status != 0:
        raise AllocationError(f"fluid LP at rho={rho}: {res.message.strip()} (offered load above capacity?)")
    x = np.where(res.x > 1e-12, res.x, 0.0)
    per_source: dict[str, float] = {}
    flows: dict[str, dict[tuple[str, int, str, str], float]] = {s: {} for s in problem.sources}
    costs = np.array(cols_cost)
    for col, (sname, kind, b, a, k) in enumerate(edges):
        if x[col] > 0:
            flows[sname][(kind, b, a, k)] = float(x[col])
    for sname, src in problem.sources.items():
        coef = weight_of(src) / (wsum * problem.rates[sname])
        mask = [i for i, e in enumerate(edges) if e[0] == sname]
        lam = problem.rates[sname]
        per_source[sname] = float(np.dot(costs[mask], x[mask]) / (coef * lam)) if coef > 0 else 0.0
    usage = a_ub @ x
    node_util = {n: float(usage[node_ix[n]]) for n in nodes}
    link_util = {f"{a}->{k}": float(usage[n_nodes + link_ix[(a, k)]]) for (a, k) in dlinks
                 if usage[n_nodes + link_ix[(a, k)]] > 1e-9}
    plan = {s: _decompose(problem.sources[s], flows[s], problem.rates[s]) for s in sorted(problem.sources)}
    return Solution("optimal", float(res.fun), per_source, plan, node_util, link_util, solve_s, n_vars,
                    state_base + n_res)


def _decompose(src: SourceView, flow: dict[tuple[str, int, str, str], float], lam: float) -> list[list[Any]]:
    """Split one source's flow into routes ``[fraction, [[node, start, end], ...]]`` (largest first)."""
    out_edges: dict[tuple[int, str], list[tuple[str, int, str, str]]] = {}
    for e in flow:
        out_edges.setdefault((e[1], e[2]), []).append(e)
    nb = src.num_blocks
    routes: list[tuple[float, list[tuple[str, int, str, str]]]] = []
    remaining = lam
    for _ in range(10_000):
        if remaining <= lam * 1e-6:
            break
        state = (0, src.node)
        path: list[tuple[str, int, str, str]] = []
        seen = {state}
        while state != (nb, src.node):
            options = [e for e in out_edges.get(state, []) if flow.get(e, 0.0) > lam * 1e-9]
            if not options:
                break
            e = max(options, key=lambda e: (flow[e], e[0] == "run", e[3]))
            path.append(e)
            state = (e[1] + 1, e[3]) if e[0] == "run" else (e[1], e[3])
            if state in seen:  # zero-cost cycle: cancel it and start over
                i = next(i for i, p in enumerate(path) if ((p[1], p[2]) == state))
                cyc = path[i:]
                m = min(flow[c] for c in cyc)
                for c in cyc:
                    flow[c] -= m
                path, state, seen = [], (0, src.node), {(0, src.node)}
                continue
            seen.add(state)
        if state != (nb, src.node) or not path:
            break
        amount = min(flow[e] for e in path)
        for e in path:
            flow[e] -= amount
        remaining -= amount
        routes.append((amount, path))
    out: list[list[Any]] = []
    for amount, path in routes:
        steps: list[list[Any]] = [[src.node, 0, 0]]
        for kind, b, _a, k in path:
            if kind == "run":
                steps[-1][2] = b + 1
            elif b < nb:
                steps.append([k, b, b])
        out.append([amount / lam, steps])
    out.sort(key=lambda r: -r[0])
    return out


def allocate(spec: ExperimentSpec, views: Mapping[str, SourceView], rho_max: float | None = None) -> Allocation:
    """Lower bound (ρ = 1) and static allocation (ρ = rho_max, from ``policy_params`` key
    ``pa-mdi-static.rho_max`` / ``rho_max`` when not given, default 0.8) for a spec."""
    if rho_max is None:
        rho_max = float(spec.policy_params.get("pa-mdi-static.rho_max", spec.policy_params.get("rho_max", 0.8)))  # type: ignore[arg-type]
    if not 0 < rho_max <= 1:
        raise AllocationError(f"rho_max must be in (0, 1], got {rho_max}")
    problem = problem_from_spec(spec, views)
    bound = solve(problem, 1.0)
    try:
        static = solve(problem, rho_max)
        used = rho_max
    except AllocationError:
        static, used = bound, 1.0
    return Allocation(bound, static, used)
