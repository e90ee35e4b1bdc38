"""Import an ``iperf3 -J`` measurement as a time-varying link profile.

Each reporting interval becomes one step. iperf3 reports TCP *goodput*; an htb-shaped link carries
goodput = 0.956 x its configured rate (TCP/IP headers per 1514-byte frame), so the step's link rate
is goodput / 0.956, and shaping with the profile reproduces the measured goodput. The one-way delay
is half the smallest RTT iperf3 saw (the unloaded path; the queueing on top of it is produced by the
shaper itself) unless given. Loss comes from UDP tests' ``lost_percent``; TCP tests give none
(retransmissions are a consequence of loss and queue overflow, not an input).
"""

from __future__ import annotations

import json
from pathlib import Path

from radio_scenarios import LinkPoint, Scenario, ScenarioError

TCP_GOODPUT_FACTOR = 1448 / 1514
MIN_RATE_MBIT = 0.01


def import_iperf3(
    path: Path, name: str, *, description: str = "", delay_ms: float | None = None, loop: bool = True,
    colosseum_id: int | None = None,
) -> Scenario:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ScenarioError(f"{path}: not an iperf3 JSON file: {err}") from None
    if not isinstance(data, dict) or "intervals" not in data:
        raise ScenarioError(f"{path}: no 'intervals' (was it written by `iperf3 -J`?)")
    if data.get("error"):
        raise ScenarioError(f"{path}: iperf3 reported an error: {data['error']}")
    intervals = data["intervals"]
    if not intervals:
        raise ScenarioError(f"{path}: 'intervals' is empty")
    udp = data.get("start", {}).get("test_start", {}).get("protocol") == "UDP"
    rtts: list[float] = []
    points: list[LinkPoint] = []
    for i, iv in enumerate(intervals):
        s = iv.get("sum") if isinstance(iv, dict) else None
        if not isinstance(s, dict) or "bits_per_second" not in s or "start" not in s:
            raise ScenarioError(f"{path}: intervals[{i}].sum lacks start/bits_per_second")
        if s.get("omitted"):
            continue
        for st in iv.get("streams", []):
            if isinstance(st, dict) and st.get("rtt"):
                rtts.append(st["rtt"] / 1000.0)  # microseconds -> ms
        goodput_mbit = float(s["bits_per_second"]) / 1e6
        rate = max(MIN_RATE_MBIT, goodput_mbit if udp else goodput_mbit / TCP_GOODPUT_FACTOR)
        loss = min(0.99, float(s.get("lost_percent", 0.0)) / 100.0) if udp else 0.0
        points.append(LinkPoint(t_s=0.0, rate_mbit=round(rate, 4), loss=round(loss, 6)))
    if not points:
        raise ScenarioError(f"{path}: every interval is an omitted warm-up interval")
    for st in data.get("end", {}).get("streams", []):
        min_rtt = st.get("sender", {}).get("min_rtt") if isinstance(st, dict) else None
        if min_rtt:
            rtts.append(min_rtt / 1000.0)
    one_way = delay_ms if delay_ms is not None else (min(rtts) / 2 if rtts else 0.0)
    starts = [float(iv["sum"]["start"]) for iv in intervals if not iv["sum"].get("omitted")]
    t0 = starts[0]
    steps = [
        LinkPoint(t_s=round(t - t0, 6), rate_mbit=p.rate_mbit, delay_ms=round(one_way, 3), loss=p.loss)
        for t, p in zip(starts, points, strict=True)
    ]
    last_end = float(intervals[-1]["sum"]["end"]) - t0
    desc = description or f"imported from {Path(path).name} ({len(steps)} intervals, iperf3 {'UDP' if udp else 'TCP'})"
    return Scenario(
        name=name, description=desc, source=f"iperf3 -J: {Path(path).name}", colosseum_id=colosseum_id,
        points=tuple(steps), loop=loop, period_s=round(last_end, 6) if last_end > steps[-1].t_s else None,
    )
