"""Agent building blocks in isolation: config errors, liveness, queue order, clocks, inputs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pamdi_node.agent.config import AgentSource, input_seed, parse_config
from pamdi_node.agent.executor import BlockStore, Executor
from pamdi_node.agent.peers import PeerTable
from pamdi_node.agent.sources import make_input
from pamdi_node.agent.tasks import Task, WorkItem
from pamdi_node.cli import is_loopback
from pamdi_node.models import zoo
from pamdi_node.telemetry import ntp_offset

SRC = {"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 2, "block_time_s": [0.001] * 4,
       "block_out_bytes": [16384, 8192, 8192, 40], "input_bytes": 12288, "result_bytes": 40, "bounds": [0, 2, 4]}


def _cfg(**kw: object) -> dict:
    cfg = {"node": "a", "config_id": "unit-test-config", "policy": "pa-mdi", "beacon_period_s": 0.1, "sources": [SRC],
           "peers": {"b": {"address": "tcp://127.0.0.3:1", "rate_bps": 1e7}}}
    cfg.update(kw)
    return cfg


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"beacon_period_s": 0}, "beacon_period_s"),
        ({"peers": {"a": {"address": "x", "rate_bps": 1}}}, "lists itself"),
        ({"peers": {"b": {"address": "x", "rate_bps": -1}}}, "peers.b.rate_bps"),
        ({"sources": [dict(SRC, bounds=[0, 3, 2, 4])]}, "bounds must rise"),
        ({"sources": [dict(SRC, block_out_bytes=[1])]}, "equal length"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_configs_name_the_field(change: dict, needle: str) -> None:
    with pytest.raises(ValueError, match="bad config") as err:
        parse_config(_cfg(**change))
    assert needle in str(err.value)


def test_peer_liveness_death_and_rejoin() -> None:
    cfg = parse_config(_cfg())
    assert cfg.dead_after == pytest.approx(0.6)
    t = 1000.0
    peers = PeerTable(cfg, t)
    assert not peers.alive("b", t)  # nothing heard yet
    assert peers.on_beacon("b", {"speed": 2.0, "queue_s": 0.5, "seq": 1, "by_weight": [[10.0, 0.5]]}, t)
    w = peers.world(t + 0.1, 1.0, (0.0, (), 0.0))
    assert w.peers["b"].alive and w.peers["b"].speed == 2.0 and w.peers["b"].queue_by_weight == ((10.0, 0.5),)
    assert peers.newly_dead(t + 0.5) == []
    assert peers.newly_dead(t + 0.7) == ["b"] and peers.newly_dead(t + 0.8) == []  # reported once
    assert not peers.world(t + 0.7, 1.0, (0.0, (), 0.0)).peers["b"].alive
    assert peers.on_beacon("b", {"speed": 2.0, "queue_s": 0.0, "seq": 2}, t + 5)  # rejoined
    assert peers.alive("b", t + 5.1)
    # Sender-side link backlog: 1 MB at 10 Mbit/s keeps the link busy for 0.8 s.
    peers.on_sent("b", 1_000_000, t + 5)
    assert peers.world(t + 5.3, 1.0, (0.0, (), 0.0)).peers["b"].link_backlog_s == pytest.approx(0.5)


def test_executor_serves_by_key_and_reports_its_queue() -> None:
    done: list[str] = []
    ex = Executor(BlockStore(0, "cpu"), lambda item, out, timing, err: done.append(item.task.id), 1.0, "native")
    x = zoo.example_input("tiny")
    for i, key in enumerate([(3.0,), (1.0,), (2.0,)]):
        task = Task(f"t{i}", "ts", "a", "tiny", 1.0, 0.0, 0, x)
        ex.submit(WorkItem(task, 0, 4, 0.0, i, est_s=0.5, weight=1.0 + i, after_s=0.25, key=key))
    total, by_weight, residual, waiting = ex.queue_detail(time.time())
    assert total == pytest.approx(2.25) and residual == 0.0 and dict(by_weight) == {1.0: 0.75, 2.0: 0.75, 3.0: 0.75}
    assert waiting == ()  # listed only when asked (the policies that use it)
    ex.start()
    deadline = time.time() + 30
    while len(done) < 3 and time.time() < deadline:
        time.sleep(0.01)
    ex.stop()
    assert done == ["t1", "t2", "t0"]


def test_ntp_offset_against_a_hand_computation() -> None:
    # The remote clock is 10 s ahead; 0.4 s out, 0.1 s in the remote, 0.5 s back.
    offset, delay = ntp_offset(100.0, 110.4, 110.5, 101.0)
    assert offset == pytest.approx(9.95) and delay == pytest.approx(0.9)


def test_inputs_are_seeded_and_data_files_are_used(tmp_path: Path) -> None:
    src = AgentSource.model_validate(SRC)
    a, b = make_input(src, 3, 0), make_input(src, 3, 0)
    assert torch.equal(a, b) and not torch.equal(a, make_input(src, 3, 1))
    assert torch.equal(a, zoo.example_input("tiny", seed=input_seed(3, "ts", 0)))
    data = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", data)
    src_data = AgentSource.model_validate(dict(SRC, data=str(tmp_path / "x.npy")))
    from pamdi_node.agent.sources import load_data

    got = make_input(src_data, 0, 7, load_data(src_data.data))  # type: ignore[arg-type]
    assert got.shape == (1, 3, 32, 32) and torch.equal(got[0], torch.from_numpy(data[2]))
    with pytest.raises(ValueError, match=r"only \.npy"):
        load_data("images/")


@pytest.mark.parametrize(("url", "loop"), [("tcp://127.0.0.5:1", True), ("tcp://localhost:*", True),
                                          ("tcp://[::1]:5", True), ("ipc:///tmp/x", True), ("tcp://*:5", False),
                                          ("tcp://10.0.0.1:5", False), ("tcp://eth0:5", False)])
def test_loopback_detection(url: str, loop: bool) -> None:
    assert is_loopback(url) is loop


def test_agent_runs_without_the_orchestrator_package(tmp_path: Path) -> None:
    """``python -m pamdi_node`` with ``orchestrator`` made unimportable still configures and computes."""
    import subprocess
    import sys

    from pamdi_node.agent.client import AgentClient

    code = ("import sys; sys.modules['orchestrator'] = None; sys.argv = ['pamdi-node', '--listen', "
            "'tcp://127.0.0.1:*', '--name', 'a']; from pamdi_node.cli import main; main()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "pamdi-agent ready" in line, proc.stderr.read() if proc.stderr else ""
        url = line.split("listen=")[1].strip()
        with AgentClient(url, timeout_s=30) as c:
            c.configure(_cfg(policy="local", peers={}, keep_outputs=True))
            c.start()
            deadline = time.time() + 30
            while not c.stats()["sources"]["ts"]["done"]:
                assert time.time() < deadline
                time.sleep(0.05)
            records, _, outputs = c.collect(outputs=True)
            c.stop()
        assert [r["status"] for r in records] == ["completed", "completed"]
        x = zoo.example_input("tiny", seed=input_seed(0, "ts", 1))
        with torch.inference_mode():
            ref = zoo.build_model("tiny", seed=0)(x)
        torch.testing.assert_close(torch.from_numpy(outputs["ts-000001"]), ref, rtol=1e-5, atol=1e-6)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
