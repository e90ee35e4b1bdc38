"""The task record types shared by agents, runner and simulator (pamdi_node/records.py)."""

from __future__ import annotations

import math

import pytest

from orchestrator.runrecords import task_records
from orchestrator.spec import parse_spec
from pamdi_node.records import COMPLETED, FAILED, AgentRecord, RecordError

GOOD = AgentRecord("ts-000001", "ts", 1, "resnet56", 10.0, COMPLETED, "", 100.25, 100.5,
                   (("a", 0, 10), ("b", 10, 29)))


def test_an_agent_record_goes_to_a_dict_and_back() -> None:
    d = GOOD.to_dict()
    assert d["latency_s"] == pytest.approx(0.25) and d["nodes"] == 2
    assert d["placements"] == [["a", 0, 10], ["b", 10, 29]]
    assert AgentRecord.from_dict(d) == GOOD
    # What the agent's telemetry adds (node, config id) and the wire's lists do not disturb it.
    assert AgentRecord.from_dict({**d, "node": "a", "config_id": "x"}) == GOOD


@pytest.mark.parametrize("field, value", [
    ("status", "done"), ("born", "soon"), ("done", math.nan), ("priority", True), ("task", 7),
    ("index", 1.5), ("placements", [["a", 0]]), ("placements", [["a", "0", 3]]), ("placements", "a"),
])
def test_a_malformed_record_is_refused_naming_its_field(field: str, value: object) -> None:
    with pytest.raises(RecordError, match=f"field '{field}'"):
        AgentRecord.from_dict({**GOOD.to_dict(), field: value})
    with pytest.raises(RecordError, match="not a mapping"):
        AgentRecord.from_dict(["ts-000001"])  # type: ignore[arg-type]


def test_the_runner_reads_records_back_onto_its_clock_and_counts_a_refused_one_as_missing() -> None:
    spec = parse_spec({"name": "r", "nodes": [{"name": "a"}, {"name": "b"}], "full_mesh": {"rate_mbit": 10},
                       "sources": [{"name": "ts", "node": "a", "model": "resnet56", "samples": 3}]})
    bad = {**AgentRecord("ts-000002", "ts", 2, "resnet56", 10.0, COMPLETED, "", 1.0, 2.0).to_dict(), "done": "x"}
    failed = AgentRecord("ts-000000", "ts", 0, "resnet56", 10.0, FAILED, "task timed out", 99.0, 160.0)
    out = {r.task_id: r for r in task_records([failed.to_dict(), GOOD.to_dict(), bad], spec, {"a": 0.25},
                                              frozenset(), "no record at its source node")}
    ok = out["ts-000001"]
    assert ok.status == COMPLETED and ok.born_s == pytest.approx(100.0) and ok.latency_s == pytest.approx(0.25)
    assert ok.placements == GOOD.placements and ok.hops == 2  # a -> b, then the result b -> a
    assert (out["ts-000000"].status, out["ts-000000"].reason, out["ts-000000"].done_s) == (FAILED, "task timed out",
                                                                                          None)
    assert (out["ts-000002"].status, out["ts-000002"].reason) == (FAILED, "no record at its source node")
