#!/usr/bin/env python3
"""Entry point of the pamdi node image (installed as /usr/local/bin/pamdi-node-entry).

Standard library only: it runs before (and beside) the agent, inside the container.

  pamdi-node-entry [ARGS...]
      Start the agent: ``exec pamdi node ARGS``. When the environment variable
      PAMDI_NODE_CONFIG names a node config file (what ``pamdi compose`` renders), this node's
      links are shaped from it first and its ``agent_args`` come before ARGS. When some of its
      links carry a ``schedule`` (a radio scenario), a follower process is left beside the agent
      that re-shapes them in place at every step (below).
  pamdi-node-entry shape JSON
      Shape links (a JSON list of link objects, below); prints what was done as JSON.
      The docker backend runs this through ``docker exec`` so both paths share one shaper.
  pamdi-node-entry stats
      Print the counters of every shaped interface (``tc -s qdisc show``, the root tbf) as JSON.
  pamdi-node-entry tcp-sink PORT SECONDS / tcp-source HOST PORT SECONDS
      A bulk TCP transfer to check a link's goodput (iperf is not in the image); the sink prints
      ``{"bytes": .., "seconds": .., "mbit_s": ..}`` measured after the first second (slow start).

A link object: ``{"peer": "b", "subnet": "10.77.3.0/24", "rate_mbit": 20, "delay_ms": 0,
"jitter_ms": 0, "loss": 0}``. The interface is the one whose IPv4 address lies in ``subnet`` (each spec link is
its own Docker network, so each link has its own interface). Egress is shaped on both ends, so
each direction of a link crosses exactly one shaper. Rate: a root tbf, as the netns backend
(``qdisc change`` later changes it without rebuilding the queue; htb let messages of up to ~64 KB
through at line rate after an idle spell on this kernel). Delay and loss: a netem child when the
kernel has netem; otherwise they are reported as not emulated (the agents then apply the delay).
Jitter: netem ``delay D J`` (uniform, no distribution table) with a netem ``rate`` far above the
link's, which keeps netem's queue in order (orchestrator/netem/tc.py); without netem, like delay.

A link's ``schedule``: ``{"scenario": name, "points": [{"t_s", "rate_mbit", "delay_ms", "loss"},
...], "period_s": P}``, already on the run's stretched time line (``pamdi compose`` renders it:
times and delays x k, rates / k), repeating every ``period_s`` when that is > 0. The link starts at
its first point. The scenario clock starts when the coordinator's backend comes up (all agents
healthy), as the docker backend starts it when its agents are up: the coordinator writes
``{"t0_unix": ...}`` to the config's ``scenario_clock`` file (on the shared /traces mount; every
container reads the host's one wall clock). The follower waits for that file (one older than this
container is a previous run's and ignored), then applies each step at ``t0 + t_s`` with
``tc qdisc change`` (the queue and its backlog stay), and writes one JSON line per change, with
what the kernel then reports, to stderr and to the config's ``scenario_log`` (under /traces). A
failing change is logged and the follower goes on; it never touches the agent, and it ends when
the agent does (or with the container). Delay and loss changes without netem are logged as not
emulated.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from typing import Any

# tbf bucket as the netns backend sizes it (orchestrator/netem/tc.py: burst_bytes): 2 ms of
# traffic at the rate, at least two frames. A bigger bucket lets small messages (an activation
# of a few KB) leave at line rate, which makes transfers faster than the configured link.
_MTU = 1514
_QUEUE_LIMIT_BYTES = 1000 * _MTU


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def interface_for_subnet(subnet: str) -> str:
    net = ipaddress.ip_network(subnet, strict=False)
    for link in json.loads(_run(["ip", "-j", "addr", "show"]).stdout):
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet" and ipaddress.ip_address(addr["local"]) in net:
                return str(link["ifname"])
    raise RuntimeError(f"no interface has an address in {subnet}")


def netem_available() -> bool:
    """Whether this kernel can attach netem (probed on loopback, then removed)."""
    probe = _run(["tc", "qdisc", "add", "dev", "lo", "root", "handle", "9999:", "netem", "delay", "0ms"], check=False)
    if probe.returncode != 0:
        return False
    _run(["tc", "qdisc", "del", "dev", "lo", "root"], check=False)
    return True


def _rate_args(rate_mbit: float) -> list[str]:
    rate_bit = max(1, round(rate_mbit * 1e6))
    burst = max(2 * _MTU, int(rate_mbit * 1e6 / 8 * 0.002))
    return ["rate", f"{rate_bit}bit", "burst", str(burst), "limit", str(_QUEUE_LIMIT_BYTES)]


def netem_args(delay_ms: float, jitter_ms: float, loss: float) -> list[str]:
    """tc's netem options for one link end (as orchestrator/netem/tc.py's netem_params)."""
    delay = ["delay", f"{delay_ms}ms", *([f"{jitter_ms}ms", "rate", "32gbit"] if jitter_ms > 0 else [])]
    return ["netem", *delay, "loss", f"{loss * 100}%", "limit", "10000"]


def shape_link(link: dict[str, Any], have_netem: bool) -> dict[str, Any]:
    dev = interface_for_subnet(str(link["subnet"]))
    rate = float(link["rate_mbit"])
    delay_ms = float(link.get("delay_ms", 0.0) or 0.0)
    loss = float(link.get("loss", 0.0) or 0.0)
    jitter_ms = float(link.get("jitter_ms", 0.0) or 0.0)
    existing = _run(["tc", "qdisc", "show", "dev", dev], check=False).stdout
    if re.search(r"^qdisc tbf 1: root", existing, re.M):
        # Rate change during a run: the child queue and its backlog stay.
        _run(["tc", "qdisc", "change", "dev", dev, "root", "handle", "1:", "tbf", *_rate_args(rate)])
    else:
        _run(["tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "tbf", *_rate_args(rate)])
    emulated: dict[str, bool] = {"rate": True, "delay": delay_ms == 0, "jitter": jitter_ms == 0, "loss": loss == 0}
    # A netem child already there is updated even to zero: a scenario step back to no delay must
    # not leave the previous step's delay in place.
    if have_netem and (delay_ms or loss or re.search(r"^qdisc netem 10: ", existing, re.M)):
        _run(["tc", "qdisc", "replace", "dev", dev, "parent", "1:1", "handle", "10:",
              *netem_args(delay_ms, jitter_ms, loss)])
        emulated = {"rate": True, "delay": True, "jitter": True, "loss": True}
    return {"peer": link.get("peer"), "dev": dev, "rate_mbit": rate, "delay_ms": delay_ms, "jitter_ms": jitter_ms,
            "loss": loss, "emulated": emulated}


def shape(links: list[dict[str, Any]]) -> list[dict[str, Any]]:
    have_netem = any(float(link.get("delay_ms") or 0) or float(link.get("loss") or 0) for link in links) and (
        netem_available()
    )
    return [shape_link(link, have_netem) for link in links]


_SENT = re.compile(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)")
_BACKLOG = re.compile(r"backlog (\d+)b (\d+)p")


def stats() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for link in json.loads(_run(["ip", "-j", "link", "show"]).stdout):
        dev = str(link["ifname"])
        out = _run(["tc", "-s", "qdisc", "show", "dev", dev], check=False).stdout
        # One block per qdisc; ours is the root tbf 1: (its counters cover everything it shaped).
        for block in re.split(r"\n(?=qdisc )", out):
            if not block.startswith("qdisc tbf 1: root"):
                continue
            sent, backlog = _SENT.search(block), _BACKLOG.search(block)
            if sent is None:
                continue
            rows.append({"dev": dev, "bytes": int(sent[1]), "packets": int(sent[2]), "drops": int(sent[3]),
                         "overlimits": int(sent[4]), "backlog": int(backlog[1]) if backlog else 0})
    return rows


def tcp_sink(port: int, seconds: float, warmup_s: float = 1.0) -> dict[str, float]:
    import socket
    import time

    with socket.create_server(("0.0.0.0", port)) as srv:
        srv.settimeout(30)
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(5)
            start = time.monotonic()
            counted, t_first, t_last = 0, 0.0, 0.0
            while True:
                data = conn.recv(1 << 16)
                now = time.monotonic()
                if not data or now - start > seconds:
                    break
                if now - start >= warmup_s:
                    if not t_first:
                        t_first = now
                    else:
                        counted += len(data)
                    t_last = now
    span = max(t_last - t_first, 1e-9)
    return {"bytes": counted, "seconds": span, "mbit_s": counted * 8 / span / 1e6}


def tcp_source(host: str, port: int, seconds: float) -> None:
    import socket
    import time

    payload = b"\0" * (1 << 16)
    deadline = time.monotonic() + seconds
    for _ in range(100):  # the sink may not listen yet
        try:
            sock = socket.create_connection((host, port), timeout=5)
            break
        except OSError:
            time.sleep(0.1)
    else:
        raise RuntimeError(f"cannot connect to {host}:{port}")
    with sock:
        while time.monotonic() < deadline:
            try:
                sock.sendall(payload)
            except OSError:
                break


def point_at(schedule: dict[str, Any], t: float) -> int:
    """Index of the schedule's point in force ``t`` seconds after the scenario clock started."""
    points, period = schedule["points"], float(schedule.get("period_s") or 0.0)
    if period > 0:
        t %= period
    index = 0
    for i, p in enumerate(points):
        if float(p["t_s"]) <= t:
            index = i
    return index


def next_step(schedule: dict[str, Any], t: float) -> float:
    """The first scenario time after ``t`` at which the point in force changes (inf: never)."""
    points, period = schedule["points"], float(schedule.get("period_s") or 0.0)
    base, local = (t - t % period, t % period) if period > 0 else (0.0, t)
    later = [float(p["t_s"]) for p in points if float(p["t_s"]) > local]
    if later:
        return base + later[0]
    return base + period if period > 0 and len(points) > 1 else float("inf")


def _tc_readback(dev: str) -> dict[str, Any]:
    """What the kernel's root tbf says now: its rate as tc prints it, and its counters."""
    out = _run(["tc", "-s", "qdisc", "show", "dev", dev], check=False).stdout
    rate = re.search(r"^qdisc tbf 1: root .*?\brate (\S+)", out, re.M)
    sent = _SENT.search(out)
    return {"tc_rate": rate[1] if rate else None, "tx_bytes": int(sent[1]) if sent else None}


def _read_clock(path: str, not_before: float) -> float | None:
    try:
        with open(path) as fh:
            t0 = float(json.load(fh)["t0_unix"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return t0 if t0 >= not_before else None  # older: a previous run's file in the same folder


def follow(config: dict[str, Any], agent_pid: int, started_unix: float) -> None:
    """Follow the links' schedules until the agent ends (module doc). Never raises on a tc error."""
    import time

    node = config.get("node")
    links = [link for link in config.get("links", []) if link.get("schedule")]
    tick = float(config.get("scenario_tick_s", 0.05))
    log_path = config.get("scenario_log")
    have_netem = any(float(p.get("delay_ms") or 0) or float(p.get("loss") or 0)
                     for link in links for p in link["schedule"]["points"]) and netem_available()

    def alive() -> bool:  # a zombie (exited, not yet reaped) counts as ended
        try:
            with open(f"/proc/{agent_pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False

    def record(row: dict[str, Any]) -> None:
        line = json.dumps({"node": node, "unix": time.time(), **row})
        print(f"pamdi-scenario {line}", file=sys.stderr, flush=True)
        if log_path:
            try:
                os.makedirs(os.path.dirname(log_path), exist_ok=True)
                with open(log_path, "a") as fh:
                    fh.write(line + "\n")
            except OSError as err:
                print(f"pamdi-scenario: cannot write {log_path}: {err}", file=sys.stderr, flush=True)

    t0 = None
    while t0 is None:
        if not alive():
            return
        t0 = _read_clock(str(config["scenario_clock"]), started_unix)
        if t0 is None:
            time.sleep(tick)
    record({"event": "clock", "t0_unix": t0,
            "links": {link["peer"]: link["schedule"]["scenario"] for link in links}})
    current = {link["peer"]: 0 for link in links}  # shaped at start with the first point
    while alive():
        t = time.time() - t0
        for link in links:
            sched, peer = link["schedule"], link["peer"]
            index = point_at(sched, t)
            if index == current[peer]:
                continue
            current[peer] = index  # a failed change is not retried every tick: it is logged once
            p = sched["points"][index]
            row: dict[str, Any] = {"event": "change", "peer": peer, "scenario": sched["scenario"], "t_s": t,
                                   "step_t_s": float(p["t_s"]), "rate_mbit": float(p["rate_mbit"]),
                                   "delay_ms": float(p.get("delay_ms") or 0), "loss": float(p.get("loss") or 0)}
            try:
                done = shape_link({**link, **p}, have_netem)
                row.update(dev=done["dev"], emulated=done["emulated"], **_tc_readback(done["dev"]))
                missing = [k for k in ("delay", "loss") if not done["emulated"][k]]
                if missing:
                    row["warning"] = f"{' and '.join(missing)} not emulated (no netem in this kernel); rate only"
            except Exception as err:  # the agent goes on with the previous shaping
                row["error"] = f"{type(err).__name__}: {err}"
            record(row)
        wake = min(next_step(link["schedule"], t) for link in links)
        time.sleep(max(0.0, min(wake - (time.time() - t0), 0.5)))  # 0.5 s at most: notice the agent end


def start_follower(config: dict[str, Any], started_unix: float) -> None:
    """Fork the follower off (twice: it is then the init's child, reaped by it, not the agent's)."""
    agent_pid = os.getpid()  # exec keeps the pid: the agent's
    first = os.fork()
    if first:
        os.waitpid(first, 0)
        return
    try:
        if os.fork() == 0:
            try:
                follow(config, agent_pid, started_unix)
            except BaseException as err:  # the follower's end is never the agent's
                print(f"pamdi-scenario: follower stopped: {err!r}", file=sys.stderr, flush=True)
    finally:
        os._exit(0)


def main(argv: list[str]) -> int:
    if argv[:1] == ["tcp-sink"] and len(argv) == 3:
        print(json.dumps(tcp_sink(int(argv[1]), float(argv[2]))))
        return 0
    if argv[:1] == ["tcp-source"] and len(argv) == 4:
        tcp_source(argv[1], int(argv[2]), float(argv[3]))
        return 0
    if argv[:1] == ["shape"]:
        if len(argv) != 2:
            print("usage: pamdi-node-entry shape JSON", file=sys.stderr)
            return 2
        print(json.dumps(shape(json.loads(argv[1]))))
        return 0
    if argv[:1] == ["stats"]:
        print(json.dumps(stats()))
        return 0
    agent_args: list[str] = []
    config_path = os.environ.get("PAMDI_NODE_CONFIG")
    if config_path:
        import time

        started = time.time()
        with open(config_path) as fh:
            config = json.load(fh)
        done = shape(list(config.get("links", [])))
        print(json.dumps({"node": config.get("node"), "shaped": done}), file=sys.stderr, flush=True)
        if config.get("scenario_clock") and any(link.get("schedule") for link in config.get("links", [])):
            start_follower(config, started)
        agent_args = [str(a) for a in config.get("agent_args", [])]
    os.execvp("pamdi", ["pamdi", "node", *agent_args, *argv])
    return 127  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
