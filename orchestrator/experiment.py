"""One experiment's lifecycle, in one place: the run folder's manifest (spec, git revision, host,
packages) before anything starts, the runner over every policy on a backend, and the Parquet
tables, plots and ``report.md`` after it. Ctrl-C stops the agents, removes the network (the runner
does both in its ``finally``) and keeps what was measured: the report is written from it. Used by
``pamdi emulate`` and ``pamdi demo``; Colosseum runs go through it too
(``orchestrator/colosseum/deploy.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.backends.base import Backend
from orchestrator.runconfig import RunOptions
from orchestrator.spec import ExperimentSpec


@dataclass
class Experiment:
    run_dir: Path
    summary: dict[str, Any] | None  # the runner's; None after Ctrl-C (summary.json holds the policies done)
    interrupted: bool = False
    report: dict[str, Any] | None = None  # results.report.report's answer, None when it failed
    report_error: str | None = None
    compare: list[dict[str, Any]] | None = None  # emulated vs simulated rows (``predict=True``)
    runner: Any = None


def run_experiment(spec: ExperimentSpec, backend: Backend, run_dir: str | Path, options: RunOptions, *,
                   base_dir: str | Path | None = None, manifest_extra: Mapping[str, Any] | None = None,
                   predict: bool = False, on_progress: Callable[[str, int, int], None] | None = None,
                   run_id: str | None = None, write_report: bool = True) -> Experiment:
    """Run ``spec`` on ``backend`` under every policy of ``options`` into ``run_dir``. ``predict``:
    the simulator's prediction for the same schedule beside every measured mean (``sim_mean_s`` in
    the summary, ``compare`` rows). Errors of the run itself (``RunError``, a refused spec) propagate
    after the manifest is written; the caller says them in one line."""
    from orchestrator.predict import run_and_compare
    from orchestrator.runner import Runner
    from results.trace import write_manifest

    run_dir = Path(run_dir)
    write_manifest(run_dir, spec, backend=backend.name, policies=list(options.policies or spec.policy),
                   extra=dict(manifest_extra or {}))
    runner = Runner(spec, backend, run_dir, options, base_dir=base_dir, on_progress=on_progress)
    if run_id is not None:
        runner.run_id = run_id
    out = Experiment(run_dir=run_dir, summary=None, runner=runner)
    try:
        if predict:
            out.summary, out.compare = run_and_compare(spec, backend, run_dir, options, runner=runner)
        else:
            out.summary = runner.run()
    except KeyboardInterrupt:  # the runner stopped the agents and took the network down already
        out.interrupted = True
    if write_report:
        try:
            from results.report import report

            out.report = report(run_dir)
        except Exception as err:  # the measured data stays in the folder; `pamdi report` can retry
            out.report_error = f"{type(err).__name__}: {err}"
    return out
