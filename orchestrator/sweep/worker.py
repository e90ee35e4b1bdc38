"""What a Dask worker runs for one cell: plain data in, plain data out.

The payload (``Cell.payload``) carries the resolved spec as data, so a worker on another host needs
only the same pamdi version, no files from the client. Any error becomes a failed record (its type
and message on one line) instead of an exception, so that one bad cell never stops the sweep.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from orchestrator.sweep.cache import FAILED, OK

MAX_ERROR_CHARS = 2000


def _one_line(err: BaseException) -> str:
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


def _simulate(payload: dict[str, Any]) -> dict[str, Any]:
    from orchestrator.simulator import run_policies
    from orchestrator.spec import parse_spec

    spec = parse_spec(payload["spec"], f"cell {payload['key']}")
    summary, _ = run_policies(spec, [payload["policy"]])  # the seed is the spec's own
    return summary["runs"][0]


def _emulate(payload: dict[str, Any]) -> dict[str, Any]:
    """As ``pamdi emulate`` does it: manifest first, then the run and the simulator's prediction."""
    from orchestrator.backends import get_backend
    from orchestrator.predict import run_and_compare
    from orchestrator.runner import RunOptions
    from orchestrator.spec import parse_spec
    from results.trace import write_manifest

    spec = parse_spec(payload["spec"], f"cell {payload['key']}", check_files=True)
    options = payload.get("options", {})
    run_dir = Path(payload["run_dir"])
    # A retried cell starts from an empty folder: the previous attempt's traces would be mixed in.
    shutil.rmtree(run_dir, ignore_errors=True)
    backend = get_backend(payload["backend"], **options.get("backend_options", {}))
    policies = [payload["policy"]]
    task_timeout = float(options.get("task_timeout_s", 60.0))
    write_manifest(run_dir, spec, backend=payload["backend"], policies=policies,
                   extra={"sweep": {"cell": payload["key"], "task_timeout_s": task_timeout,
                                    "backend_options": options.get("backend_options", {})}})
    summary, _ = run_and_compare(spec, backend, run_dir, RunOptions(policies=policies, task_timeout_s=task_timeout))
    # Plain JSON (numpy scalars, paths) so that the record survives the trip back and the cache file.
    return json.loads(json.dumps(summary["runs"][0], default=str))


def run_cell(payload: dict[str, Any]) -> dict[str, Any]:
    from pamdi_node import __version__

    t0 = time.perf_counter()
    record: dict[str, Any] = {"key": payload["key"], "version": __version__, "host": socket.gethostname()}
    try:
        run = _simulate(payload) if payload["mode"] == "sim" else _emulate(payload)
    except Exception as err:  # recorded, not raised: the sweep goes on (KeyboardInterrupt still stops it)
        record.update(status=FAILED, error=_one_line(err), run=None)
    else:
        record.update(status=OK, error=None, run=run)
    record["elapsed_s"] = round(time.perf_counter() - t0, 4)
    return record


def worker_version() -> str:
    """The pamdi version on a worker (checked against the client's before a sweep)."""
    from pamdi_node import __version__

    return __version__
