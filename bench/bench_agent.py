"""Node agent benchmark (loopback, real agent processes).

1. Per-hop runtime overhead, compute excluded: a real agent ``b`` relays tasks (a ``pa-mdi-static``
   route whose step on ``b`` runs no block) from a bench peer ``a`` to a bench peer ``c``. Reported:
   - ``agent_s``: b's own receive → decide → send time (its ``decide`` span: from the decoded message
     to the frames handed to ZeroMQ),
   - ``hop_s``: a → b → c wall time seen by the bench, and ``direct_s``: a → c without b, so that
     ``hop_s - direct_s`` is what one extra hop costs (b's decode/decide/encode plus one transit),
   for 1 KB and 1 MB activations: median and p99 (target: under 1 ms median for 1 MB), and the relay
   rate for 1 KB messages sent back to back (messages/s).
2. End-to-end latency of a 3-node ResNet-50 chain (blocks split a → b → c, result back to a), one task
   at a time, against the bound: the compute the agents measured for that task plus bytes / rate
   (loopback: the transfer term is ~0). Target: within 10 % unloaded.

Writes ``bench/out/bench_agent.json`` and prints a summary. Usage: ``python bench/bench_agent.py``.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.backends.base import AgentEndpoint, RunContext  # noqa: E402
from orchestrator.backends.local import LocalBackend  # noqa: E402
from orchestrator.runner import Runner, RunOptions, build_configs  # noqa: E402
from orchestrator.simulator import load_profiles, source_views  # noqa: E402
from orchestrator.spec import parse_spec  # noqa: E402
from pamdi_node import wire  # noqa: E402
from pamdi_node.agent.client import AgentClient  # noqa: E402


def _stats(xs: list[float]) -> dict[str, float]:
    a = np.array(xs)
    return {"n": len(xs), "median_s": float(np.median(a)), "p99_s": float(np.percentile(a, 99)),
            "mean_s": float(a.mean())}


class BenchPeer:
    """A fake neighbour: a ROUTER the agent's DEALER connects to, and a DEALER into the agent."""

    def __init__(self, ctx: zmq.Context, name: str, host: str) -> None:
        self.name = name
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(f"tcp://{host}:*")
        self.address = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.dealer = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.IDENTITY, name.encode())
        self.dealer.setsockopt(zmq.LINGER, 0)

    def beacon(self, seq: int) -> None:
        self.dealer.send_multipart(wire.encode(wire.BEACON, self.name, {"speed": 1.0, "queue_s": 0.0, "seq": seq}))


def relay_overhead(tmp: Path) -> dict[str, Any]:
    spec = parse_spec({
        "name": "relay", "seed": 0, "nodes": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "full_mesh": {"rate_mbit": 10000},
        "sources": [{"name": "ts", "node": "a", "model": "tiny", "samples": 1}],
    })
    backend = LocalBackend()
    # Only b is a real agent; a and c are played by this process.
    one = parse_spec({"name": "relay-b", "nodes": [{"name": "b"}],
                      "sources": [{"name": "ts", "node": "b", "model": "tiny", "samples": 1}]})
    url_b = backend.up(one, RunContext("relay", tmp))["b"].control
    ctx = zmq.Context()
    a, c = BenchPeer(ctx, "a", "127.0.0.10"), BenchPeer(ctx, "c", "127.0.0.11")
    for p in (a, c):
        p.dealer.connect(url_b)
    views = source_views(spec, load_profiles(spec))
    eps = {"a": AgentEndpoint("a", a.address), "b": AgentEndpoint("b", url_b), "c": AgentEndpoint("c", c.address)}
    plan = {"ts": [[1.0, [["a", 0, 0], ["b", 0, 0], ["c", 0, 0]]]]}  # b only relays
    cfg = build_configs(spec, "pa-mdi-static", eps, views, params={"plan": plan})["b"]
    cfg["trace_dir"] = None
    stop = threading.Event()
    client = AgentClient(url_b, timeout_s=30)
    client.configure(cfg)

    lock = threading.Lock()

    def beacons() -> None:
        seq = 0
        while not stop.is_set():
            seq += 1
            with lock:
                a.beacon(seq)
                c.beacon(seq)
            stop.wait(0.05)

    threading.Thread(target=beacons, daemon=True).start()
    time.sleep(0.5)
    client.start()

    def task(i: int, x: np.ndarray) -> list[Any]:
        body = {"task": f"ts-{i:06d}", "source": "ts", "origin": "a", "model": "tiny", "priority": 1.0,
                "born": time.time(), "start": 0, "end": 0, "hop": f"h{i}", "path": ["a"], "sent": time.time()}
        return wire.encode(wire.TASK, "a", body, [x])

    def recv_task(sock: zmq.Socket) -> wire.Message:
        while True:  # b also beacons to c: skip those
            msg = wire.decode(sock.recv_multipart(copy=False)[1:])
            if msg.type == wire.TASK:
                return msg

    def recv_at_c() -> wire.Message:
        msg = recv_task(c.router)
        with lock:  # ack the hand-off so b does not re-send
            c.dealer.send_multipart(wire.encode(wire.ACK, "c", {"hop": msg.body["hop"]}))
        return msg

    direct = ctx.socket(zmq.DEALER)
    direct.setsockopt(zmq.LINGER, 0)
    direct.connect(c.address)
    out: dict[str, Any] = {}
    seq = 0
    for label, nbytes, n in (("1KB", 1024, 400), ("1MB", 1 << 20, 150)):
        x = np.random.default_rng(0).standard_normal(nbytes // 4).astype(np.float32)
        hop, dir_ = [], []
        for _ in range(n):
            seq += 1
            t0 = time.perf_counter()
            with lock:
                a.dealer.send_multipart(task(seq, x), copy=False)
            recv_at_c()
            hop.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            direct.send_multipart(task(seq, x), copy=False)
            recv_task(c.router)
            dir_.append(time.perf_counter() - t0)
        out[label] = {"hop": _stats(hop), "direct": _stats(dir_),
                      "extra_hop_median_s": float(np.median(hop) - np.median(dir_))}
    # Back-to-back relay rate of 1 KB tasks.
    x = np.zeros(256, np.float32)
    burst = 3000
    got = [0]

    def sink() -> None:
        while got[0] < burst:
            recv_at_c()
            got[0] += 1

    th = threading.Thread(target=sink)
    th.start()
    t0 = time.perf_counter()
    for _ in range(burst):
        seq += 1
        with lock:
            a.dealer.send_multipart(task(seq, x))
    th.join(timeout=120)
    out["relay_rate_msgs_per_s"] = got[0] / (time.perf_counter() - t0)
    _, spans, _ = client.collect()
    decide = {}
    for s in spans:
        if s["kind"] == "decide":
            decide[s["task"]] = s["end"] - s["start"]
    ids = sorted(decide)
    # Tasks 1..400 were 1 KB, the next 150 were 1 MB (the burst follows).
    out["1KB"]["agent"] = _stats([decide[i] for i in ids[:400]])
    out["1MB"]["agent"] = _stats([decide[i] for i in ids[400:550]])
    stop.set()
    client.stop()
    client.close()
    for s in (a.router, a.dealer, c.router, c.dealer, direct):
        s.close(0)
    ctx.term()
    backend.down()
    return out


def chain_e2e(tmp: Path) -> dict[str, Any]:
    spec = parse_spec({
        "name": "chain", "seed": 0, "nodes": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "full_mesh": {"rate_mbit": 10000},
        "sources": [{"name": "ts", "node": "a", "model": "resnet50", "samples": 12, "interval_ms": 500}],
    })
    views = source_views(spec, load_profiles(spec))
    n = views["ts"].num_blocks
    k, m = n // 3, 2 * n // 3
    plan = {"ts": [[1.0, [["a", 0, k], ["b", k, m], ["c", m, n]]]]}
    spec = spec.model_copy(update={"policy_params": {"pa-mdi-static.plan": plan}})
    runner = Runner(spec, LocalBackend(), tmp / "chain", RunOptions(policies=["pa-mdi-static"]))
    runner.run()
    run = runner.results[0]
    compute: dict[str, float] = {}
    moved: dict[str, int] = {}
    for s in run.spans:
        if s["kind"] == "compute":
            compute[s["task"]] = compute.get(s["task"], 0.0) + s["end"] - s["start"]
        if s["kind"] == "transfer":
            moved[s["task"]] = moved.get(s["task"], 0) + int(s.get("bytes", 0))
    rate = 10000e6 * 0.956
    rows = []
    for r in run.records[2:]:  # the first tasks warm the caches
        bound = compute[r.task_id] + moved.get(r.task_id, 0) * 8 / rate
        rows.append({"task": r.task_id, "e2e_s": r.latency_s, "bound_s": bound,
                     "ratio": r.latency_s / bound, "placements": [list(p) for p in r.placements]})
    ratios = [x["ratio"] for x in rows]
    return {"model": "resnet50", "split": [k, m, n], "tasks": rows, "median_ratio": float(np.median(ratios)),
            "median_e2e_s": float(np.median([x["e2e_s"] for x in rows])),
            "median_bound_s": float(np.median([x["bound_s"] for x in rows])),
            "profiled_total_s": views["ts"].range_time_s(0, n)}


def main() -> None:
    out: dict[str, Any] = {"host": platform.node(), "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as tmp:
        out["relay"] = relay_overhead(Path(tmp))
        out["chain"] = chain_e2e(Path(tmp))
    dest = ROOT / "bench" / "out" / "bench_agent.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    for label in ("1KB", "1MB"):
        r = out["relay"][label]
        print(f"per-hop {label}: agent receive->decide->send median {r['agent']['median_s'] * 1e3:.3f} ms "
              f"p99 {r['agent']['p99_s'] * 1e3:.3f} ms; a->b->c {r['hop']['median_s'] * 1e3:.3f} ms vs a->c "
              f"{r['direct']['median_s'] * 1e3:.3f} ms (extra hop {r['extra_hop_median_s'] * 1e3:.3f} ms)")
    print(f"relay rate (1 KB, back to back): {out['relay']['relay_rate_msgs_per_s']:.0f} msgs/s")
    ch = out["chain"]
    print(f"3-node resnet50 chain: e2e median {ch['median_e2e_s'] * 1e3:.1f} ms vs bound "
          f"{ch['median_bound_s'] * 1e3:.1f} ms (ratio {ch['median_ratio']:.3f}; profiled total "
          f"{ch['profiled_total_s'] * 1e3:.1f} ms)")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
