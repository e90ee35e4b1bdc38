"""``pamdi colosseum run`` and ``harvest``: a whole interactive experiment on the reserved SRNs.

``run_experiment``: (1) start the config's RF scenario unless it already runs (``rf.ensure_running``,
honouring the 15 s rule), (2) record ``rf info`` and ``rf radiomap`` in the run folder,
(3) drive the spec with the shared runner over the ``colosseum`` backend (model data between
agents over the radio interface, control over ``col0`` relayed by the leader SRN; traces, pcaps
and agent logs harvested into
``<run_dir>/srn-NNN/``), (4) write ``colosseum.json``: scenario, radio map, SRN map, image, config
(no secret: passwords are never stored in the config object) and the pamdi git revision.

``harvest_run`` copies an interactive run's folders from the SRNs again (e.g. after the
orchestrator lost its connection). ``harvest_batch`` copies a finished batch job's logs from the
NAS: Colosseum copies each container's ``/logs`` to the team folder after the job; the docs name
per-reservation folders ``RESERVATION-<id>`` for collaboration-network captures but do not give the
exact path of ``/logs`` copies, so every folder under the team's NAS folder whose name contains the
reservation ID is collected [inference, see shared/reference/colosseum.md A.2 / C].
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from orchestrator.backends.colosseum import ColosseumBackend
from orchestrator.colosseum import rf
from orchestrator.colosseum.config import ColosseumConfig
from orchestrator.colosseum.transport import Session, q
from orchestrator.spec import ExperimentSpec

log = logging.getLogger(__name__)


def run_experiment(cfg: ColosseumConfig, spec: ExperimentSpec, srn_password: str, *, run_dir: Path,
                   run_id: str, start_rf: bool = True, keep_outputs: bool = False,
                   runner_options: dict[str, Any] | None = None) -> dict[str, Any]:
    from orchestrator.experiment import run_experiment
    from orchestrator.runner import RunOptions
    from results.trace import git_commit

    run_dir.mkdir(parents=True, exist_ok=True)
    backend = ColosseumBackend(cfg, srn_password)
    manifest: dict[str, Any] = {
        "run_id": run_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "team": cfg.team,
        "srns": list(cfg.srns),
        "image": cfg.image,
        "scenario": cfg.scenario,
        "cycle": cfg.cycle,
        "data_plane": cfg.data_plane.model_dump(),
        "control_interface": cfg.control_interface,
        "pamdi_git": git_commit(),
        "config": cfg.model_dump(mode="json"),
    }
    try:
        if start_rf and cfg.scenario is not None:
            info, started = backend.call(rf.ensure_running(backend.session, cfg.scenario, cycle=cfg.cycle))
            manifest["rf_started"] = started
        else:
            info = backend.call(rf.info(backend.session))
        manifest["rf_info"] = info.as_dict()
        manifest["radiomap"] = [e.__dict__ for e in backend.call(rf.radiomap(backend.session))] \
            if info.scenario_id is not None else []
    except BaseException:
        backend.down()
        raise
    finally:
        (run_dir / "colosseum.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    opts = RunOptions(keep_outputs=keep_outputs, **(runner_options or {}))
    try:
        # The one run lifecycle (manifest.json, the runner, tables/plots/report.md); the runner calls
        # backend.down() in its finally, and again here: down is idempotent.
        exp = run_experiment(spec, backend, run_dir, opts, run_id=run_id,
                             manifest_extra={"colosseum": {"team": cfg.team, "srns": list(cfg.srns),
                                                           "scenario": cfg.scenario, "run_id": run_id}})
    finally:
        backend.down()
        manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest["node_srns"] = backend.node_srn
        (run_dir / "colosseum.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    if exp.interrupted or exp.summary is None:
        raise KeyboardInterrupt
    summary = exp.summary
    runner = exp.runner
    summary["run_dir"] = str(run_dir)
    if exp.report is not None:
        summary["report"] = exp.report["report"]
    summary["colosseum"] = {"scenario": cfg.scenario, "node_srns": backend.node_srn,
                            "radiomap": manifest.get("radiomap")}
    if keep_outputs:
        summary["_outputs"] = {r.policy: r.outputs for r in runner.results}
    return summary


async def harvest_run(session: Session, run_id: str, dest: Path) -> list[Path]:
    cfg = session.cfg

    async def one(srn: int) -> list[Path]:
        return await session.get_tree(srn, f"{cfg.work_dir(srn)}/{run_id}", dest / f"srn-{srn:03d}")

    per = await session.each(one)
    return [p for files in per.values() for p in files]


async def harvest_batch(session: Session, reservation_id: str, dest: Path) -> list[Path]:
    cfg = session.cfg
    res = await session.run_file_proxy(
        f"find {q(cfg.nas_team_dir)} -maxdepth 2 -type d -name {q('*' + str(reservation_id) + '*')}", check=False)
    files: list[Path] = []
    for remote in sorted(line.strip() for line in res.stdout.splitlines() if line.strip()):
        files += await session.get_tree(None, remote, dest / Path(remote).name)
    return files
