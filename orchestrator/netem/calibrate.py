"""``pamdi calibrate``: measure what each device profile's CPU quota really gives on this host.

For the host reference (no quota) and each device profile (quota + threads, ``devices.py``), a
process inside the node's cgroup runs the real model blocks (``pamdi_node.models.zoo``) back to back
for ``seconds`` and reports the mean time per forward pass. Throughput over a window (not one pass)
matters: a quota of 0.2 CPU lets a short pass run at full speed inside one CFS period.
speed = host time / device time; stored in ``devices.calibration_path()`` for the simulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.devices import DEVICES
from orchestrator.netem.devices import calibration_path

MEASURE = """
import json, sys, time, torch
from pamdi_node.models import zoo
model, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
torch.set_num_threads(threads)
net = zoo.build_blocks(model, 0, zoo.num_blocks(model)).eval()
x = zoo.example_input(model)
with torch.inference_mode():
    net(x)
    net(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        net(x); n += 1
    dt = time.perf_counter() - t0
print(json.dumps({"passes": n, "mean_ms": dt / n * 1000}))
"""


def _measure(net, node: str, model: str, threads: int, seconds: float) -> dict:  # type: ignore[no-untyped-def]
    proc = net.spawn(node, [sys.executable, "-c", MEASURE, model, str(threads), str(seconds)],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=seconds * 20 + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"calibration run on {node} failed: {err.decode()[-500:]}")
    return json.loads(out.decode().strip().splitlines()[-1])


def calibrate(model: str = "resnet56", seconds: float = 3.0, devices: list[str] | None = None,
              out: Path | None = None) -> dict:
    from orchestrator.netem.network import EmulatedNetwork

    names = devices or [d for d in DEVICES if d != "host"]
    for d in names:
        if d not in DEVICES:
            raise ValueError(f"unknown device {d!r}; known: {', '.join(DEVICES)}")
    result: dict = {"model": model, "seconds": seconds, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "devices": {}}
    with EmulatedNetwork("calibrate") as net:
        net.add_node("host", cpus=None)
        host = _measure(net, "host", model, 1, seconds)
        result["host_ms"] = host["mean_ms"]
        for name in names:
            prof = DEVICES[name]
            node = f"d{len(net.nodes)}"
            net.add_node(node, cpus=prof.cpus)
            m = _measure(net, node, model, prof.threads, seconds)
            result["devices"][name] = {"cpus": prof.cpus, "threads": prof.threads, "mean_ms": m["mean_ms"],
                                       "speed": host["mean_ms"] / m["mean_ms"], "nominal_speed": prof.speed}
    result["devices"]["host"] = {"cpus": None, "threads": 1, "mean_ms": host["mean_ms"], "speed": 1.0,
                                 "nominal_speed": 1.0}
    path = out or calibration_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    result["path"] = str(path)
    return result


def calibrate_spec(spec, profiles, seconds: float = 2.0) -> dict:  # type: ignore[no-untyped-def]
    """Each node's real speed under its CPU quota (``device_time: quota``), for the simulator.

    For every distinct (quota, threads) of the spec's nodes a process in a cgroup with that quota
    runs the heaviest source model back to back for ``seconds``; the node's calibrated speed is the
    profile's whole-model time over the measured mean pass (so the simulator's block time /
    speed is what the node really takes under its quota). Returns ``{"nodes": {node: {...}}}``.
    """
    from orchestrator.devices import node_speed
    from orchestrator.netem.devices import node_quota
    from orchestrator.netem.network import EmulatedNetwork

    prof = max(profiles.values(), key=lambda p: p.total_time_s)
    wanted = {n.name: node_quota(node_speed(n), n.threads, n.device) for n in spec.nodes}
    measured: dict[tuple[float, int], dict] = {}
    with EmulatedNetwork("calibrate") as net:
        for cpus, threads in sorted(set(wanted.values())):
            node = f"q{len(net.nodes)}"
            net.add_node(node, cpus=cpus)
            measured[(cpus, threads)] = _measure(net, node, prof.model, threads, seconds)
    out = {"model": prof.model, "profile_ms": prof.total_time_s * 1000, "seconds": seconds, "nodes": {}}
    for name, key in wanted.items():
        m = measured[key]
        out["nodes"][name] = {"cpus": key[0], "threads": key[1], "mean_ms": m["mean_ms"],
                              "speed": prof.total_time_s * 1000 / m["mean_ms"]}
    return out


def calibrated_spec(spec, calibration: dict):  # type: ignore[no-untyped-def]
    """``spec`` with every node's speed replaced by its calibrated speed under its quota."""
    nodes = tuple(n.model_copy(update={"speed": float(calibration["nodes"][n.name]["speed"])})
                  if n.name in calibration.get("nodes", {}) else n for n in spec.nodes)
    return spec.model_copy(update={"nodes": nodes})
