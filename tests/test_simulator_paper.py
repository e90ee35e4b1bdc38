"""Shipped paper-like specs: PA-MDI cuts the TS source's mean time against AR-MDI and MS-MDI while
every task completes; with equal priorities PA-MDI is no worse than MS-MDI. NTS cost is printed."""

from __future__ import annotations

import pytest

from orchestrator.metrics import compare
from orchestrator.simulator import run_policies
from orchestrator.spec import load_spec
from orchestrator.specs import resolve_spec, shipped_specs

PAPER_SPECS = ("paper-5node-resnet50", "paper-5node-resnet56", "paper-5node-gpt2", "paper-multihop-resnet56")


def test_shipped_specs_resolve_by_name() -> None:
    assert set(PAPER_SPECS) | {"small"} <= set(shipped_specs())
    with pytest.raises(FileNotFoundError, match="shipped"):
        resolve_spec("no-such-spec")


@pytest.mark.parametrize("name", PAPER_SPECS)
def test_pa_mdi_cuts_ts_time_and_everything_completes(name: str) -> None:
    spec = load_spec(resolve_spec(name))
    summary, _ = run_policies(spec, ("ar-mdi", "ms-mdi", "pa-mdi"))
    for run in summary["runs"]:
        for src, stats in run["sources"].items():
            assert stats["failed"] == 0 and stats["completed"] == stats["samples"], (run["policy"], src)
    ts = max(spec.sources, key=lambda s: s.priority).name
    cut = compare(summary, "pa-mdi")
    print(f"{name}: TS reduction {cut[ts]}; other sources {[(k, v) for k, v in cut.items() if k != ts]}")
    assert cut[ts]["ar-mdi"] > 10.0
    assert cut[ts]["ms-mdi"] > 10.0


@pytest.mark.parametrize("name", ["paper-5node-resnet56", "small"])
def test_equal_priorities_pa_mdi_no_worse_than_ms_mdi(name: str) -> None:
    spec = load_spec(resolve_spec(name))
    equal = spec.model_copy(update={"sources": tuple(s.model_copy(update={"priority": 1.0}) for s in spec.sources)})
    summary, _ = run_policies(equal, ("ms-mdi", "pa-mdi"))
    w = {r["policy"]: r["weighted_mean_s"] for r in summary["runs"]}
    print(name, w)
    assert w["pa-mdi"] <= w["ms-mdi"] * 1.02
