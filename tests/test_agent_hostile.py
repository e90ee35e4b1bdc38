"""A configured, running agent under attack from a compromised neighbour, strangers and raw TCP.

Agent ``a`` runs a real source under Curve; ``m`` is a neighbour in its configuration whose key the
attacker holds. The attacker sends thousands of mutated peer and control messages (NaN and infinities
in every numeric field, wrong types, deep nesting, forged results and placements, unknown sources,
a priority that would jump every queue), replays one task hundreds of times, opens a storm of
connections with wrong keys, and speaks raw TCP (garbage, a ZMTP greeting with a frame that claims a
terabyte). Afterwards the agent answers, its memory grew by less than 100 MB, it ran the replayed
task once, and every task it recorded as completed without handing it to ``m`` has the monolithic
model's output: no forged result was taken for a real one.
"""

from __future__ import annotations

import math
import random
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zmq

from orchestrator.backends.base import AgentEndpoint, RunContext
from orchestrator.backends.local import LocalBackend
from orchestrator.keys import generate_run_keys
from orchestrator.runner import build_configs
from orchestrator.simulator import load_profiles, source_views
from orchestrator.spec import parse_spec
from pamdi_node import wire
from pamdi_node.agent.client import AgentClient
from pamdi_node.agent.config import input_seed, task_id
from pamdi_node.agent.security import public_key, secure_client
from pamdi_node.models import zoo
from tests.agent_support import rss_kb, wait_sources_done

SAMPLES = 300
RUN = parse_spec({
    "name": "hostile", "seed": 4,
    # m is slow and far: a has no reason to hand it work unless m's beacons lie about its speed.
    "nodes": [{"name": "a"}, {"name": "m", "speed": 0.05}],
    "links": [{"a": "a", "b": "m", "rate_mbit": 1}],
    "sources": [{"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": SAMPLES,
                 "interval_ms": 50}],
    "policy": "pa-mdi", "beacon_period_ms": 50,
})
ONLY_A = parse_spec({"name": "hostile", "nodes": [{"name": "a"}],
                     "sources": [{"name": "ts", "node": "a", "model": "tiny", "samples": 1}]})
NUM_BLOCKS = zoo.num_blocks("tiny")
WEIRD: list[Any] = [math.nan, math.inf, -math.inf, 1e300, -1e300, -1, 0, 2**63 - 1, 2**64 - 1, -(2**63), 1.5,
                    "", "x" * 5000, "../../../etc/passwd", "m", "a", "ts", None, True, False, [], {}, [[1, 2]],
                    [["m", 0, 99]], [["a", -1, 2]], [[math.nan, 1.0]], {"a": {"b": {"c": [1, [2, [3]]]}}},
                    b"\xff\xfe", [0] * 3000]


def _nested(depth: int) -> Any:
    out: Any = 1
    for _ in range(depth):
        out = [out]
    return out


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp("hostile")
    keys = generate_run_keys(tmp_path_factory.mktemp("keys") / "k", ["a", "m"])
    backend = LocalBackend()
    url = backend.up(ONLY_A, RunContext("hostile", run_dir, keys_dir=keys))["a"].control
    eps = {"a": AgentEndpoint("a", url, {"m": url}), "m": AgentEndpoint("m", "tcp://127.0.0.250:9", {"a": url})}
    cfg = build_configs(RUN, "pa-mdi", eps, source_views(RUN, load_profiles(RUN)))["a"]
    cfg["keep_outputs"] = True
    orch = AgentClient(url, keys=str(keys), server="a", timeout_s=30.0)
    orch.configure(cfg)
    orch.start()
    yield backend, url, keys, orch
    orch.close()
    backend.down()


def _mallory(ctx: zmq.Context, url: str, keys: Path, name: str = "m") -> zmq.Socket:
    from pamdi_node.agent.sockets import peer_routing_id

    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.IDENTITY, peer_routing_id(name))  # as the neighbour's own agent offers it
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)
    secure_client(s, keys, "m", "a")
    s.connect(url)
    return s


def _templates(rng: random.Random, now: float) -> list[tuple[str, dict[str, Any], list[np.ndarray]]]:
    tid = task_id("ts", rng.randrange(SAMPLES))
    x = np.zeros((1, 3, 32, 32), np.float32)
    task = {"task": tid, "source": "ts", "origin": "a", "model": "tiny", "priority": 10.0, "born": now,
            "start": 0, "end": 2, "hop": f"h{rng.getrandbits(40)}", "path": ["a"], "placements": [], "sent": now}
    result = {"task": tid, "source": "ts", "origin": "a", "hop": f"h{rng.getrandbits(40)}", "ok": True,
              "path": ["a", "m"], "placements": [["m", 0, NUM_BLOCKS]], "done": now}
    rtc = {k: v for k, v in task.items() if k not in ("path", "placements", "sent")} | {"index": 0.1}
    hop = {"hop": f"h{rng.getrandbits(40)}"}
    return [
        (wire.TASK, task, [x]), (wire.RESULT, result, [np.zeros((1, 10), np.float32)]), (wire.RTC, rtc, []),
        (wire.CTC, {**hop, "task": tid}, []), (wire.DENY, {**hop, "task": tid, "reason": "no"}, []),
        (wire.ACK, hop, []), (wire.RELEASE, hop, []),
        (wire.BEACON, {"speed": 1.0, "queue_s": 0.0, "seq": rng.randrange(10**6), "by_weight": [[10.0, 0.0]],
                       "residual_s": 0.0}, []),
        # Control from a node's key: never obeyed.
        (wire.STOP, {}, []), (wire.COLLECT, {"offset": 0}, []), (wire.START, {}, []),
        (wire.CONFIG, {"config": {"node": "a", "config_id": f"evil-{rng.getrandbits(32)}", "policy": "local",
                                  "trace_dir": "/tmp/evil"}}, []),
    ]


def _mutated(rng: random.Random, now: float) -> list[Any]:
    msg_type, body, tensors = rng.choice(_templates(rng, now))
    body = dict(body)
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        keys = [*body, "extra"]
        key = rng.choice(keys)
        if rng.random() < 0.1 and key in body:
            del body[key]
        else:
            body[key] = _nested(rng.choice((5, 40, 200))) if rng.random() < 0.05 else rng.choice(WEIRD)
    header: dict[str, Any] = {}
    if rng.random() < 0.05:
        header["ts"] = rng.choice(WEIRD)
    frames = [bytes(f) for f in wire.encode(msg_type, rng.choice(("m", "m", "m", "a", "orchestrator")), body,
                                             tensors, validate=False)]
    if header:
        import msgpack

        h = msgpack.unpackb(frames[0], raw=False)
        h.update(header)
        frames[0] = msgpack.packb(h)
    if rng.random() < 0.03 and len(frames) > 1:
        frames[1] = frames[1][: rng.randrange(len(frames[1]))]  # a tensor shorter than its header says
    return frames


def _raw_tcp(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


@pytest.mark.timeout(300)
def test_a_running_agent_survives_a_compromised_neighbour_and_strangers(attacked) -> None:
    backend, url, keys, orch = attacked
    pid = backend.pid("a")
    rss0 = rss_kb(pid) / 1024
    ctx = zmq.Context()
    rng = random.Random(20261203)
    m = _mallory(ctx, url, keys)
    try:
        # 1. Thousands of mutated messages as the neighbour m, and as m pretending to be others.
        for _ in range(4000):
            m.send_multipart(_mutated(rng, time.time()))
        # 2. One well-formed task, replayed 300 times under one hand-off id.
        x = zoo.example_input("tiny", seed=7).numpy()
        body = {"task": "ts-000999", "source": "ts", "origin": "a", "model": "tiny", "priority": 10.0,
                "born": time.time(), "start": 0, "end": NUM_BLOCKS, "hop": "replayed-hop", "path": ["a"],
                "placements": [], "sent": time.time()}
        frames = wire.encode(wire.TASK, "m", body, [x])
        for _ in range(300):
            m.send_multipart([bytes(f) for f in frames])
        # 3. A connection storm: plaintext, unknown keys, m's key under other routing ids.
        storm = []
        for i in range(150):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            if i % 3 == 1:
                s.curve_serverkey = public_key(keys, "a")  # the right server, a key it does not know
                s.curve_publickey, s.curve_secretkey = zmq.curve_keypair()
            elif i % 3 == 2:
                secure_client(s, keys, "m", "a")
                s.setsockopt(zmq.IDENTITY, f"b{i}".encode())
            s.connect(url)
            s.send_multipart(wire.encode(wire.STOP, "orchestrator", {}), flags=zmq.NOBLOCK)
            storm.append(s)
        # 4. Raw TCP: garbage, a slow half greeting, and a ZMTP greeting whose first frame claims 2**40 bytes.
        host, port = _raw_tcp(url)
        raws = []
        for i in range(60):
            r = socket.create_connection((host, port), timeout=5)
            r.sendall(rng.randbytes(rng.randrange(1, 4096)) if i % 3 else b"\xff\x00\x00")
            raws.append(r)
        liar = socket.create_connection((host, port), timeout=5)
        greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
        liar.sendall(greeting + b"\x02" + (1 << 40).to_bytes(8, "big") + b"\x00" * 1024)
        liar.settimeout(5)
        try:
            while liar.recv(4096):  # the agent speaks CURVE: it hangs up on a NULL client, frames unread
                pass
        except OSError:
            pass
        time.sleep(1.0)
        for s in storm:
            s.close(0)
        for r in raws:
            r.close()
        liar.close()

        # The agent is alive, answers its orchestrator, and took none of that for orders.
        wait_sources_done(orch, timeout_s=60, poll_s=0.3)
        stats = orch.stats()
        assert stats["state"] == "running" and stats["node"] == "a"
        assert stats["bad_messages"] >= 1000
        assert stats["replays"] >= 299  # the replayed task ran once
        # Refused, every one, never a failure of the agent itself (that would make the run not faithful).
        assert stats["internal_errors"] == 0, stats["last_internal_error"]
        grown = rss_kb(pid) / 1024 - rss0
        print(f"\n[hostile] bad messages {stats['bad_messages']}, replays {stats['replays']}, forged results "
              f"{stats['forged_results']}, RSS +{grown:.1f} MB")
        assert grown < 100, f"agent memory grew by {grown:.1f} MB"
    finally:
        ctx.destroy(linger=0)  # every socket, also after a failure half-way

    # Every task recorded completed on a itself has the model's output: no forged result got in.
    records, spans, outputs = orch.collect(outputs=True)
    sent_to_m = {s["task"] for s in spans if s["kind"] == "serialize" and s.get("to") == "m"}
    ts = [r for r in records if r["source"] == "ts" and r["task"] != "ts-000999"]
    assert len({r["task"] for r in ts}) == len(ts) == SAMPLES  # one record per task, none twice
    model = zoo.build_model("tiny", seed=RUN.seed).eval()
    checked = 0
    for r in ts:
        if r["status"] != "completed" or r["task"] in sent_to_m:
            continue
        i = int(r["task"].rsplit("-", 1)[1])
        with torch.inference_mode():
            ref = model(zoo.example_input("tiny", seed=input_seed(RUN.seed, "ts", i)))
        torch.testing.assert_close(torch.from_numpy(np.asarray(outputs[r["task"]])), ref, rtol=1e-5, atol=1e-6)
        assert all(p[0] == "a" for p in r["placements"]), r
        checked += 1
    assert checked >= SAMPLES // 2, f"only {checked} tasks completed on a"
