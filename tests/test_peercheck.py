"""Peer messages against the run (pamdi_node/agent/peercheck.py) and the wire's structured items:
every lie a well-formed message can tell about a run is refused with the field named; what agents
really send passes."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from pamdi_node import wire
from pamdi_node.agent.config import parse_config
from pamdi_node.agent.peercheck import RunFacts, check_peer_message

SRC = {"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 2, "block_time_s": [0.001] * 4,
       "block_out_bytes": [16384, 8192, 8192, 40], "input_bytes": 12288, "result_bytes": 40, "bounds": [0, 2, 4]}
CFG = parse_config({"node": "b", "config_id": "peercheck-test", "policy": "pa-mdi", "sources": [SRC],
                    "peers": {"a": {"address": "tcp://127.0.0.2:1", "rate_bps": 1e7},
                              "c": {"address": "tcp://127.0.0.4:1", "rate_bps": 1e7}},
                    "graph": {"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b"]}})
FACTS = RunFacts.of(CFG)
NOW = time.time()


def _task(**change: Any) -> dict[str, Any]:
    body = {"task": "ts-000001", "source": "ts", "origin": "a", "model": "tiny", "priority": 10.0, "born": NOW - 0.1,
            "start": 2, "end": 4, "hop": "h1", "path": ["a"], "placements": [["a", 0, 2]], "sent": NOW}
    body.update(change)
    return body


def _result(**change: Any) -> dict[str, Any]:
    body = {"task": "ts-000001", "source": "ts", "origin": "a", "hop": "h2", "ok": True, "path": ["a", "c"],
            "placements": [["a", 0, 2], ["c", 2, 4]], "done": NOW}
    body.update(change)
    return body


def _msg(msg_type: str, body: dict[str, Any], src: str = "c") -> wire.Message:
    tensors = [np.zeros(4, dtype=np.float32)] if msg_type in (wire.TASK, wire.RESULT) else []
    return wire.decode(wire.encode(msg_type, src, body, tensors))


def test_what_agents_send_passes() -> None:
    for t, body in ((wire.TASK, _task()), (wire.TASK, _task(start=0, end=2, placements=[])),
                    (wire.TASK, _task(start=2, end=2)),  # a relay move
                    (wire.RESULT, _result()), (wire.RESULT, _result(ok=False, placements=[["a", 0, 2]])),
                    (wire.RTC, {k: v for k, v in _task(index=0.5).items() if k not in ("path", "placements", "sent")})):
        check_peer_message(FACTS, _msg(t, body), NOW)


@pytest.mark.parametrize(("msg_type", "body", "field", "words"), [
    (wire.TASK, _task(source="ghost"), "source", "not a source of this run"),
    (wire.TASK, _task(origin="c"), "origin", "is on 'a'"),
    (wire.TASK, _task(model="resnet50"), "model", "runs 'tiny'"),
    (wire.TASK, _task(priority=1e9), "priority", "has 10.0"),  # jumping every queue
    (wire.TASK, _task(end=5), "end", "outside"),
    (wire.TASK, _task(born=NOW - 1e7), "born", "a day"),
    (wire.TASK, _task(sent=NOW + 1e7), "sent", "a day"),
    (wire.TASK, _task(placements=[["zz", 0, 2]]), "placements", "not a node of this run"),
    (wire.TASK, _task(placements=[["a", 1, 2]]), "placements", "do not follow block 0"),
    (wire.TASK, _task(placements=[["a", 0, 1]]), "placements", "expected [0,2)"),
    (wire.TASK, _task(path=["a", "../x"]), "path", "not a node of this run"),
    (wire.RESULT, _result(origin="b"), "origin", "is on 'a'"),
    (wire.RESULT, _result(placements=[["a", 0, 2]]), "placements", "expected [0,4)"),  # "done" with blocks missing
    (wire.RESULT, _result(placements=[["a", 0, 2], ["a", 0, 2], ["c", 2, 4]]), "placements", "do not follow"),
    (wire.RESULT, _result(done=NOW + 2e5), "done", "a day"),
])
def test_lies_about_the_run_are_refused(msg_type: str, body: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(wire.WireError) as err:
        check_peer_message(FACTS, _msg(msg_type, body), NOW)
    assert f"field {field!r}" in str(err.value) and words in str(err.value), str(err.value)


@pytest.mark.parametrize(("msg_type", "body", "words"), [
    (wire.BEACON, {"speed": 1.0, "queue_s": 0.1, "seq": 1, "by_weight": [[10.0, float("nan")]]}, "finite"),
    (wire.BEACON, {"speed": 1.0, "queue_s": 0.1, "seq": 1, "by_weight": [["10", 0.1]]}, "finite"),
    (wire.BEACON, {"speed": 1.0, "queue_s": 0.1, "seq": 1, "by_weight": [[10.0, 0.1, 3]]}, "[weight, seconds]"),
    (wire.BEACON, {"speed": 1.0, "queue_s": 0.1, "seq": 1, "by_weight": [[-1.0, 0.1]]}, "outside"),
    (wire.RESULT, _result(placements=[["a", "0", 2]]), "an int"),
    (wire.RESULT, _result(placements=[["a", 3, 2]]), "outside"),
    (wire.RESULT, _result(placements=[{"node": "a"}]), "[node, start, end]"),
    (wire.TASK, _task(placements=[[None, 0, 2]]), "non-empty string"),
])
def test_the_wire_checks_structured_items(msg_type: str, body: dict[str, Any], words: str) -> None:
    frames = wire.encode(msg_type, "c", body, [np.zeros(4, dtype=np.float32)] if msg_type != wire.BEACON else [],
                         validate=False)
    with pytest.raises(wire.WireError) as err:
        wire.decode(frames)
    assert words in str(err.value), str(err.value)
