"""Running cells on Dask distributed: a ``LocalCluster`` sized to the machine, or an existing cluster.

Only cells without a good cache file are submitted (``cache.py``), each as one task; results are
written by this process as they complete (``as_completed``), so an interrupted sweep loses only
the cells in flight. With nothing to compute no cluster is started at all (a cached rerun is fast).

Emulated cells ask for the worker resource ``emulation-host=1``: a host runs one emulation at a
time (they take the whole network stack and every core) while simulation cells, which ask for
nothing, fill every worker. On a cluster, start the emulation workers as root with
``dask worker tcp://SCHEDULER:8786 --nthreads 1 --resources emulation-host=1``. The local cluster
of an emulated sweep is one worker holding that resource. An emulated cell's run folder is written
by its worker at ``<out>/runs/<key>/`` (the client's absolute path), i.e. on the worker's host.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.sweep.cache import FAILED, CellCache
from orchestrator.sweep.cells import Cell
from orchestrator.sweep.worker import run_cell, worker_version

EMULATION_RESOURCE = "emulation-host"


class EngineError(RuntimeError):
    """The cluster cannot run this sweep (unreachable, version mismatch, no emulation worker)."""


@dataclass
class EngineStats:
    cells: int  # rows of the sweep (cells sharing a key count each)
    runs: int  # distinct keys
    cached: int  # distinct keys already done before this call
    computed: int  # distinct keys computed by this call (ok or failed)
    failed: int  # of those computed, how many failed
    wall_s: float
    workers: int = 0
    dashboard: str | None = None


def machine_cores() -> int:
    """The cores this process may use (affinity and cgroup-set masks included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _has_bokeh() -> bool:
    return importlib.util.find_spec("bokeh") is not None


@contextlib.contextmanager
def open_client(scheduler: str | None, workers: int | None, emulate: bool) -> Iterator[Any]:
    """A Dask client: on ``scheduler`` if given, else on a fresh LocalCluster torn down afterwards."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=30)
        except (OSError, TimeoutError) as err:
            raise EngineError(f"--scheduler {scheduler}: cannot connect ({err})") from None
        try:
            _check_cluster(client, emulate)
            yield client
        finally:
            client.close()
        return
    # One worker holding the resource in emulate mode: one emulation at a time on this host.
    n = 1 if emulate else (workers or machine_cores())
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           # A free port: the scheduler serves HTTP (health, metrics) even without bokeh,
                           # and a fixed 8787 would clash with any other cluster on this host.
                           dashboard_address=":0",
                           resources={EMULATION_RESOURCE: 1} if emulate else None,
                           silence_logs=logging.ERROR)
    try:
        client = Client(cluster)
        try:
            client.wait_for_workers(n, timeout=120)
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _check_cluster(client: Any, emulate: bool) -> None:
    from pamdi_node import __version__

    client.wait_for_workers(1, timeout=60)
    versions = client.run(worker_version)
    wrong = {w: v for w, v in versions.items() if v != __version__}
    if wrong:
        w, v = next(iter(wrong.items()))
        raise EngineError(f"worker {w} runs pamdi {v}, this client {__version__}: the cells' keys would not match")
    if emulate:
        workers = client.scheduler_info().get("workers", {})
        if not any(EMULATION_RESOURCE in (info.get("resources") or {}) for info in workers.values()):
            raise EngineError(f"no worker offers the {EMULATION_RESOURCE} resource; start one as root with "
                              f"`dask worker {client.scheduler.address} --nthreads 1 "
                              f"--resources {EMULATION_RESOURCE}=1`")


def dashboard_of(client: Any, local: bool) -> str | None:
    """The dashboard address, or None when there is none: a local scheduler without bokeh serves only
    health and metrics pages (a remote one's bokeh cannot be seen from here; its link is given)."""
    if local and not _has_bokeh():
        return None
    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return None
        return str(client.dashboard_link)
    except Exception:  # a client without scheduler info simply shows no dashboard
        return None


def _describe(cell: Cell) -> dict[str, Any]:
    # For whoever opens a cell file by hand; the tables are built from the cells, not from these.
    return {"study": cell.study, "point": dict(cell.point), "policy": cell.policy, "seed": cell.seed,
            "mode": cell.mode, "backend": cell.backend}


class Engine:
    """One sweep's use of the cluster: ``run`` computes the missing cells, ``map`` runs other work
    (the figures) on the same workers before the cluster goes. Without cells to compute there is no
    cluster and ``map`` runs here."""

    def __init__(self, cells: list[Cell], out_dir: Path, runs: int, todo: list[Cell], client: Any,
                 scheduler: str | None, t0: float) -> None:
        self.cells, self.out_dir, self.runs, self.todo, self.client, self.scheduler, self.t0 = (
            cells, out_dir, runs, todo, client, scheduler, t0)

    def map(self, fn: Callable[[Any], Any], jobs: list[Any]) -> list[Any]:
        if self.client is None or len(jobs) < 2:
            return [fn(j) for j in jobs]
        return list(self.client.gather(self.client.map(fn, jobs, pure=False)))

    def run(self, progress: bool = True, echo: Callable[[str], None] = print) -> EngineStats:
        """Compute every cell without a good cache file under ``out_dir``; return counts."""
        todo, cache, out_dir = self.todo, CellCache(self.out_dir), self.out_dir
        stats = EngineStats(cells=len(self.cells), runs=self.runs, cached=self.runs - len(todo), computed=0,
                            failed=0, wall_s=0.0)
        client = self.client
        if client is None:
            stats.wall_s = time.perf_counter() - self.t0
            return stats
        from distributed import as_completed

        stats.workers = len(client.scheduler_info().get("workers", {}))
        stats.dashboard = dashboard_of(client, local=self.scheduler is None)
        echo(f"dask: {stats.workers} worker(s); dashboard: "
             f"{stats.dashboard or 'off (pip install bokeh to get one)'}")
        futures = {}
        for c in todo:
            fut = client.submit(run_cell, c.payload(out_dir), key=f"pamdi-cell-{c.key[:12]}-{uuid.uuid4().hex[:8]}",
                                pure=False, resources={EMULATION_RESOURCE: 1} if c.mode == "emulate" else None)
            futures[fut] = c
        with _progress_bar(progress, len(todo), stats.cached) as advance:
            try:
                for fut in as_completed(futures):
                    cell = futures.pop(fut)
                    try:
                        record = fut.result()
                    except Exception as err:  # the worker died (KilledWorker) or the task could not run
                        record = {"key": cell.key, "status": FAILED, "error": f"{type(err).__name__}: {err}",
                                  "run": None}
                    record.update(_describe(cell))
                    cache.put(record)
                    stats.computed += 1
                    stats.failed += record["status"] == FAILED
                    advance(stats.failed)
            except BaseException:  # Ctrl-C: drop what is in flight; the finished cells are on disk
                client.cancel(list(futures))
                raise
        stats.wall_s = time.perf_counter() - self.t0
        return stats


@contextlib.contextmanager
def sweep_engine(cells: list[Cell], out_dir: Path, *, scheduler: str | None = None,
                 workers: int | None = None) -> Iterator[Engine]:
    """The cluster for the cells of ``cells`` not cached under ``out_dir`` (none when all are)."""
    t0 = time.perf_counter()
    cache = CellCache(out_dir)
    unique: dict[str, Cell] = {}
    for c in cells:
        unique.setdefault(c.key, c)
    todo = [c for k, c in unique.items() if not cache.done(k)]
    if not todo:
        yield Engine(cells, out_dir, len(unique), [], None, scheduler, t0)
        return
    with open_client(scheduler, workers, any(c.mode == "emulate" for c in todo)) as client:
        yield Engine(cells, out_dir, len(unique), todo, client, scheduler, t0)


def run_cells(cells: list[Cell], out_dir: Path, *, scheduler: str | None = None, workers: int | None = None,
              progress: bool = True, echo: Callable[[str], None] = print) -> EngineStats:
    """Compute every cell of ``cells`` that has no good cache file under ``out_dir``; return counts."""
    with sweep_engine(cells, out_dir, scheduler=scheduler, workers=workers) as engine:
        return engine.run(progress, echo)


@contextlib.contextmanager
def _progress_bar(show: bool, total: int, cached: int) -> Iterator[Callable[[int], None]]:
    if not show:
        yield lambda failed: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    label = f"cells ({cached} cached)" if cached else "cells"
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task(label, total=total)

        def advance(failed: int) -> None:
            bar.update(task, advance=1, description=f"{label}, {failed} failed" if failed else label)

        yield advance
