"""Emulation against simulation: every shipped spec (or the given ones), every policy, every source.

For each spec (shortened to at most ``--max-seconds`` of arrivals per policy, at the same loads),
the spec runs on real agents (``netns`` when root: namespaces, tc-shaped links; else ``local``)
under the ``profile`` device-time model, with the stretch factor the host needs, and the simulator
predicts the same schedule with the run's own profiles and measured runtime costs
(``orchestrator.predict``). The gap is (emulated - simulated) / simulated per (spec, policy, source).

The prediction is the mean over ``--replicas`` beacon-phase draws of the same schedule
(``orchestrator.predict.predict_ensemble``): near saturation (the ``-loaded`` specs under the FIFO
multi-path policies) one draw's mean moves by up to 25% with the phases alone, so one draw predicts
a draw, not the run. Each row gives the draws' spread (``sim sd``) and the gap in those units
(``z``): a run with |z| <= 2 is as far from the prediction as another draw of the simulator would
be. ``--seeds N`` runs each spec with seeds 1..N and compares the means over seeds. ``bench/specs/``
holds two specs no fidelity work was tuned on (heterogeneous speeds 0.25-1.0, ResNet-56 full mesh
and ResNet-50 partial mesh).

Writes ``bench/out/bench_fidelity.json`` and prints a table. Usage:
``python bench/bench_fidelity.py [SPEC ...] [--backend netns|local|docker] [--max-seconds 60] [--seeds N]
[--policy P ...] [--device-time profile|quota] [--replicas R] [--out FILE] [--keep DIR]``. Run it with
nothing else on the machine: the agents need the host's CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_GAP = 0.10  # the acceptance: within 10% on netns
PLAUSIBLE_Z = 2.0  # |gap| in the simulated draws' sd: within this, the run is like another draw


def main() -> int:
    from orchestrator.backends import get_backend
    from orchestrator.predict import DEFAULT_REPLICAS, run_and_compare, shorten
    from orchestrator.runner import RunOptions
    from orchestrator.spec import DEFAULT_POLICIES, load_spec
    from orchestrator.specs import resolve_spec, shipped_specs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="*", help="spec files or shipped names (default: every shipped spec)")
    ap.add_argument("--backend", default="netns" if os.geteuid() == 0 else "local")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="arrivals per policy at most this long")
    ap.add_argument("--policy", action="append", help="policies (default: the paper's five)")
    ap.add_argument("--device-time", default="profile", choices=("profile", "quota"),
                    help="profile (the default model) or quota (cgroup quotas; predicted from the "
                         "calibrated speeds)")
    ap.add_argument("--seeds", type=int, default=1,
                    help="run each spec with seeds 1..N and compare the means over seeds (near saturation a "
                         "single run's mean is chaotic: both sides move with the exact schedule)")
    ap.add_argument("--replicas", type=int, default=DEFAULT_REPLICAS,
                    help="beacon-phase draws the prediction averages (1: the seed's own draw only)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "bench_fidelity.json")
    ap.add_argument("--keep", type=Path, help="keep each run's folder (traces, manifest) as KEEP/SPEC/seedN")
    args = ap.parse_args()
    names = args.specs or shipped_specs()
    policies = args.policy or list(DEFAULT_POLICIES)
    rows: list[dict] = []
    runs: dict[str, dict] = {}
    t_all = time.time()
    for name in names:
        path = resolve_spec(name)
        spec = shorten(load_spec(path), args.max_seconds)
        per_seed: list[list[dict]] = []
        t0 = time.time()
        for seed in range(1, args.seeds + 1) if args.seeds > 1 else [spec.seed]:
            with tempfile.TemporaryDirectory(prefix="pamdi-fidelity-") as tmp:
                run_dir = Path(tmp) / "run" if args.keep is None else args.keep / spec.name / f"seed{seed}"
                summary, spec_rows = run_and_compare(
                    spec.model_copy(update={"seed": seed}), get_backend(args.backend), run_dir,
                    RunOptions(policies=policies, device_time=args.device_time), base_dir=path.parent,
                    replicas=args.replicas)
            per_seed.append(spec_rows)
            if args.seeds > 1:
                _print(spec_rows, f"{spec.name} seed {seed}", summary.get("time_stretch"))
        spec_rows = per_seed[0] if len(per_seed) == 1 else _over_seeds(per_seed)
        runs[spec.name] = {"wall_s": round(time.time() - t0, 1), "time_stretch": summary.get("time_stretch"),
                           "headroom": summary.get("headroom"), "profiles": summary.get("profiles"),
                           "samples": {s.name: s.samples for s in spec.sources}, "seeds": len(per_seed)}
        for r in spec_rows:
            rows.append({"spec": spec.name, **r})
        title = spec.name + (f" (means over {len(per_seed)} seeds)" if len(per_seed) > 1 else "")
        _print(rows[-len(spec_rows):], title, summary.get("time_stretch"))
    worst = max((abs(r["gap"]) for r in rows if r["gap"] is not None), default=None)
    within = sum(1 for r in rows if r["gap"] is not None and abs(r["gap"]) <= TARGET_GAP)
    plausible = sum(1 for r in rows if r["gap"] is not None and (abs(r["gap"]) <= TARGET_GAP or (
        r.get("z") is not None and abs(r["z"]) <= PLAUSIBLE_Z)))
    result = {"backend": args.backend, "device_time": args.device_time, "max_seconds": args.max_seconds,
              "policies": policies, "replicas": args.replicas,
              "target_gap": TARGET_GAP, "plausible_z": PLAUSIBLE_Z, "rows": rows, "specs": runs, "worst_gap": worst,
              "within_target": within, "within_target_or_plausible": plausible,
              "compared": sum(1 for r in rows if r["gap"] is not None),
              "wall_s": round(time.time() - t_all, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{within}/{result['compared']} (spec, policy, source) means within {TARGET_GAP:.0%}; "
          f"worst gap {worst if worst is None else f'{worst:+.1%}'}; {plausible}/{result['compared']} within "
          f"{TARGET_GAP:.0%} or |z| <= {PLAUSIBLE_Z:g}; {result['wall_s']:.0f} s; -> {args.out}")
    return 0


def _over_seeds(per_seed: list[list[dict]]) -> list[dict]:
    """One row per (policy, source): the emulated and simulated means averaged over the seeds (each
    seed's schedule run and predicted alike), the gap between those averages, and the per-seed gaps."""
    import statistics

    out = []
    for rows in zip(*per_seed, strict=True):
        first = rows[0]
        emu = [r["emulated_mean_s"] for r in rows if r["emulated_mean_s"] is not None]
        sim = [r["sim_mean_s"] for r in rows if r["sim_mean_s"] is not None]
        e = statistics.fmean(emu) if len(emu) == len(rows) else None
        s = statistics.fmean(sim) if len(sim) == len(rows) else None
        sds = [r.get("sim_sd_s") for r in rows]
        # The sd of the mean of independent draws, one per seed.
        sd = (sum(x * x for x in sds) ** 0.5 / len(sds)) if all(x is not None for x in sds) else None
        out.append({**first, "emulated_mean_s": e, "sim_mean_s": s, "sim_sd_s": sd,
                    "gap": (e - s) / s if e is not None and s else None,
                    "z": (e - s) / sd if e is not None and s is not None and sd else None,
                    "completed": sum(r["completed"] or 0 for r in rows), "failed": sum(r["failed"] or 0 for r in rows),
                    "overrun_fraction": max((r.get("overrun_fraction") or 0.0) for r in rows),
                    "seed_gaps": [r["gap"] for r in rows],
                    "costs": {"decision_s": statistics.fmean(r["costs"]["decision_s"] for r in rows),
                              "message_s": statistics.fmean(r["costs"]["message_s"] for r in rows)}})
    return out


def _print(rows: list[dict], name: str, stretch: float | None) -> None:
    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1000:.1f}"

    print(f"\n{name} (stretch {stretch})")
    print(f"{'policy':8s} {'source':7s} {'done':>5s} {'fail':>4s} {'emulated':>9s} {'simulated':>9s} {'sim sd':>7s} "
          f"{'gap':>7s} {'z':>5s} {'overrun':>7s} {'decide ms':>9s}")
    for r in rows:
        gap = "-" if r["gap"] is None else f"{r['gap']:+.1%}"
        z = "-" if r.get("z") is None else f"{r['z']:+.1f}"
        over = "-" if r.get("overrun_fraction") is None else f"{r['overrun_fraction']:.1%}"
        print(f"{r['policy']:8s} {r['source']:7s} {r['completed']!s:>5s} {r['failed']!s:>4s} "
              f"{ms(r['emulated_mean_s']):>9s} {ms(r['sim_mean_s']):>9s} {ms(r.get('sim_sd_s')):>7s} {gap:>7s} {z:>5s} "
              f"{over:>7s} {r['costs']['decision_s'] * 1000:9.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
