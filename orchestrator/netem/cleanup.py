"""``pamdi cleanup``: remove what killed runs left (namespaces, veths, qdiscs, cgroups, processes).

Runs are found by their records in ``/run/pamdi`` and, for anything without a record, by the
project prefix in names (``pamdi-<token>-*`` namespaces, ``pm<token>*`` interfaces,
``<cpu cgroup>/pamdi/<token>``). A run whose owner process is still alive is left alone unless
``all_runs`` is set, so cleaning up never breaks an experiment running beside it.
"""

from __future__ import annotations

import contextlib

from orchestrator.netem import cgroups, names
from orchestrator.netem import netns as nsops
from orchestrator.netem.teardown import teardown_record


def leftover_tokens() -> set[str]:
    """Tokens of every run that still has a namespace, root link, cgroup or record."""
    tokens = {t for t in (names.token_of_netns(n) for n in nsops.list_netns()) if t}
    tokens |= {t for t in (names.token_of_ifname(n) for n in nsops.root_links()) if t}
    h = cgroups.detect()
    if h is not None:
        tokens |= {t for t in cgroups.run_groups(h) if names.TOKEN_RE.match(t)}
    tokens |= {r.token for r in names.all_records()}
    return tokens


def cleanup(all_runs: bool = False) -> dict[str, list[str]]:
    """Tear down dead runs (or every run with ``all_runs``). Returns removed items and skipped live runs."""
    records = {r.token: r for r in names.all_records()}
    removed: list[str] = []
    skipped: list[str] = []
    for token in sorted(leftover_tokens()):
        rec = records.get(token)
        if rec is not None and not all_runs and names.owner_alive(rec.owner_pid, rec.owner_start):
            skipped.append(token)
            continue
        removed += teardown_record(rec or names.RunRecord(token=token, owner_pid=0))
    h = cgroups.detect()
    if h is not None and not skipped:
        with contextlib.suppress(OSError):
            h.project.rmdir()
    return {"removed": removed, "live_runs_left_alone": skipped}


def project_leftovers() -> dict[str, list[str]]:
    """Everything of the project that exists now (for tests and ``pamdi cleanup --dry-run``)."""
    h = cgroups.detect()
    return {
        "namespaces": [n for n in nsops.list_netns() if n.startswith(names.NETNS_PREFIX)],
        "root_links": [n for n in nsops.root_links() if names.token_of_ifname(n)],
        "cgroups": [] if h is None else [str(h.project / t) for t in cgroups.run_groups(h)],
        "records": [r.token for r in names.all_records()],
    }
