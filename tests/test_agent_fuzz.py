"""A running agent (a real process) under malformed input, floods and oversized frames.

It must answer an error where it can, never crash, not grow its memory, and still run a valid task
afterwards with the right result.
"""

from __future__ import annotations

import time

import msgpack
import numpy as np
import pytest
import torch
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.backends.base import RunContext
from orchestrator.backends.local import LocalBackend
from orchestrator.runner import build_configs
from orchestrator.simulator import load_profiles, source_views
from orchestrator.spec import parse_spec
from pamdi_node import wire
from pamdi_node.agent.client import AgentClient
from pamdi_node.agent.config import input_seed, task_id
from pamdi_node.models import zoo
from tests.agent_support import rss_kb, wait_sources_done

SPEC = parse_spec({
    "name": "fuzz", "seed": 5, "nodes": [{"name": "a"}],
    "sources": [{"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 3}],
})


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp("fuzz")
    backend = LocalBackend()
    endpoints = backend.up(SPEC, RunContext("fuzz", run_dir))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 3000)
    sock.connect(endpoints["a"].control)
    yield backend, endpoints["a"].control, sock
    sock.close(0)
    ctx.term()
    backend.down()


def _error_reply(sock: zmq.Socket) -> str:
    msg = wire.decode(sock.recv_multipart())
    assert msg.type == wire.ERROR
    return msg.body["reason"]


def _drain(sock: zmq.Socket) -> None:
    while sock.poll(50):
        sock.recv_multipart()


def _alive(url: str) -> None:
    with AgentClient(url, timeout_s=5.0) as c:
        assert c.ping()["node"] == "a"


def _frames(msg_type: str = wire.PING, body: dict | None = None, tensors: list | None = None, **header: object):
    frames = [bytes(f) for f in wire.encode(msg_type, "fuzzer", body or {}, tensors or [], validate=False)]
    h = msgpack.unpackb(frames[0], raw=False)
    h.update(header)
    return [msgpack.packb(h), *frames[1:]]


@pytest.mark.parametrize(
    ("frames", "needle"),
    [
        ([b"\x85\xa1v\x01\xa1t"], "not a valid msgpack map"),  # truncated msgpack
        ([b"\xff" * 40], "frame 0"),
        (_frames(v=99), "protocol version 99"),
        (_frames(t="launch-missiles"), "unknown message type"),
        ([_frames(wire.PING, tensors=[np.zeros(3, np.float32)])[0], b"\x00" * 5], "needs 12 bytes but the frame has 5"),
        (_frames(wire.TASK, {"task": "t"}), "missing field"),
        (_frames(wire.BEACON, {"speed": 1.0, "queue_s": 0.0, "seq": 1}), None),  # before config: ignored
        (_frames(wire.STATS, {"unexpected": 1}), "unknown field(s) ['unexpected']"),
        (_frames(wire.START), "'start' refused"),
        (_frames(wire.CONFIG, {"config": {"node": "a", "config_id": "fuzz-config-1", "policy": "nope"}}), "policy"),
        (_frames(wire.CONFIG, {"config": {"node": "zz", "config_id": "fuzz-config-2", "policy": "local"}}),
         "this agent is 'a'"),
        ([_frames()[0], *([b"x"] * 40)], "frames exceed the maximum"),
    ],
)
def test_bad_messages_get_an_error_naming_the_fault(agent, frames: list, needle: str | None) -> None:
    _, url, sock = agent
    _drain(sock)
    sock.send_multipart(frames)
    if needle is None:
        assert not sock.poll(300)
    else:
        assert needle in _error_reply(sock)
    _alive(url)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=512), min_size=1, max_size=6))
def test_random_frames_never_hurt_the_agent(agent, frames: list[bytes]) -> None:
    _, _, sock = agent
    sock.send_multipart(frames)
    reason = _error_reply(sock)  # every one of these is malformed, and every one is answered
    assert reason


def test_oversized_frame_flood_and_memory(agent) -> None:
    backend, url, sock = agent
    pid = backend.pid("a")
    _drain(sock)
    # A frame above ZMQ_MAXMSGSIZE: ZeroMQ drops that connection before Python sees any of it.
    ctx = zmq.Context.instance()
    big = ctx.socket(zmq.DEALER)
    big.setsockopt(zmq.LINGER, 0)
    big.connect(url)
    big.send(b"\x00" * (wire.MAX_FRAME_BYTES + 1), copy=False)
    time.sleep(0.5)
    big.close(0)
    _alive(url)
    rss0 = rss_kb(pid)
    # A flood: 20 000 malformed messages as fast as we can send them, then one big frame count.
    flood = ctx.socket(zmq.DEALER)
    flood.setsockopt(zmq.LINGER, 0)
    flood.setsockopt(zmq.SNDHWM, 0)
    flood.connect(url)
    for i in range(20_000):
        flood.send_multipart([b"garbage-%d" % i, b"\x00" * 64])
    flood.send_multipart([b"x"] * 5000)
    with AgentClient(url, timeout_s=60.0) as c:
        deadline = time.time() + 60
        while c.stats()["bad_messages"] < 20_000 and time.time() < deadline:
            time.sleep(0.2)
        stats = c.stats()
    flood.close(0)
    assert stats["bad_messages"] >= 20_001
    grown_mb = (rss_kb(pid) - rss0) / 1024
    assert grown_mb < 40, f"agent memory grew by {grown_mb:.1f} MB under the flood"
    _alive(url)


def test_valid_run_after_the_abuse(agent) -> None:
    _, url, _ = agent
    views = source_views(SPEC, load_profiles(SPEC))
    from orchestrator.backends.base import AgentEndpoint

    cfg = build_configs(SPEC, "local", {"a": AgentEndpoint("a", url)}, views)["a"]
    cfg["keep_outputs"] = True
    with AgentClient(url, timeout_s=30.0) as c:
        c.configure(cfg)
        c.start()
        wait_sources_done(c, poll_s=0.1)
        records, spans, outputs = c.collect(outputs=True)
    assert sorted(r["task"] for r in records) == [task_id("ts", i) for i in range(3)]
    assert all(r["status"] == "completed" for r in records)
    assert {s["kind"] for s in spans} >= {"queue", "compute", "decide"}
    model = zoo.build_model("tiny", seed=SPEC.seed)
    for i in range(3):
        x = zoo.example_input("tiny", seed=input_seed(SPEC.seed, "ts", i))
        with torch.inference_mode():
            ref = model(x)
        torch.testing.assert_close(torch.from_numpy(outputs[task_id("ts", i)]), ref, rtol=1e-5, atol=1e-6)
