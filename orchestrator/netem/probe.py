"""ZeroMQ goodput and RTT probe, run inside two namespaces by ``pamdi net check``.

    server (node B): REP echo socket + PULL bulk socket; prints one JSON line with the goodput.
    client (node A): REQ pings (RTT median), then PUSH bulk frames for warm-up + duration.

Goodput is measured at the receiver over arrival times only: the first ``warmup`` seconds after the
first frame are excluded (TCP slow start, queue fill), then bytes of the frames that arrived after
the start mark, divided by the time from the mark to the last arrival. Frames are sized to ~50 ms
of the configured rate so that a few seconds give enough arrivals at low rates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import zmq

END = b"end"


def serve(host: str, echo_port: int, bulk_port: int, warmup: float, timeout: float) -> dict:
    ctx = zmq.Context.instance()
    rep = ctx.socket(zmq.REP)
    rep.bind(f"tcp://{host}:{echo_port}")
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 4)
    pull.bind(f"tcp://{host}:{bulk_port}")
    print(json.dumps({"ready": True}), flush=True)
    poller = zmq.Poller()
    poller.register(rep, zmq.POLLIN)
    poller.register(pull, zmq.POLLIN)
    arrivals: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = dict(poller.poll(200))
        if rep in events:
            rep.send(rep.recv(copy=False), copy=False)
        if pull in events:
            frame = pull.recv(copy=False)
            now = time.monotonic()
            if frame.bytes == END:
                break
            arrivals.append((now, len(frame)))
    return goodput(arrivals, warmup)


def goodput(arrivals: list[tuple[float, int]], warmup: float) -> dict:
    if len(arrivals) < 3:
        return {"measured_mbit": None, "frames": len(arrivals), "error": "too few frames arrived"}
    t_first = arrivals[0][0]
    marks = [i for i, (t, _) in enumerate(arrivals) if t >= t_first + warmup]
    start = marks[0] if marks and marks[0] < len(arrivals) - 2 else len(arrivals) // 2
    t0 = arrivals[start][0]
    t_last = arrivals[-1][0]
    nbytes = sum(n for _, n in arrivals[start + 1:])
    window = t_last - t0
    return {
        "measured_mbit": nbytes * 8 / window / 1e6,
        "window_s": window,
        "frames": len(arrivals) - start - 1,
        "bytes": nbytes,
    }


def client(peer: str, echo_port: int, bulk_port: int, rate_mbit: float, duration: float, warmup: float,
           pings: int) -> dict:
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(f"tcp://{peer}:{echo_port}")
    rtts = []
    payload = b"x" * 64
    for i in range(pings + 3):
        t = time.perf_counter()
        req.send(payload)
        if not req.poll(5000):
            req.close()
            return {"error": "no echo reply within 5 s"}
        req.recv()
        if i >= 3:  # the first exchanges include connection set-up and ARP
            rtts.append((time.perf_counter() - t) * 1000)
    req.close()
    frame_bytes = int(min(1 << 20, max(16 << 10, rate_mbit * 1e6 / 8 * 0.05)))
    frame = bytes(frame_bytes)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 2)
    push.setsockopt(zmq.SNDBUF, max(64 << 10, frame_bytes))
    push.setsockopt(zmq.LINGER, 10_000)
    push.connect(f"tcp://{peer}:{bulk_port}")
    end = time.monotonic() + warmup + duration
    sent = 0
    while time.monotonic() < end:
        push.send(frame, copy=False)
        sent += 1
    push.send(END)
    push.close()
    # Wait (up to LINGER) until the queued frames and the end marker left: exiting earlier would
    # free buffers the I/O thread still sends from.
    ctx.term()
    return {
        "rtt_ms": statistics.median(rtts),
        "rtt_min_ms": min(rtts),
        "rtt_max_ms": max(rtts),
        "pings": len(rtts),
        "frame_bytes": frame_bytes,
        "frames_sent": sent,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="probe")
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server")
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--echo-port", type=int, default=5601)
    s.add_argument("--bulk-port", type=int, default=5602)
    s.add_argument("--warmup", type=float, default=1.0)
    s.add_argument("--timeout", type=float, default=60.0)
    c = sub.add_parser("client")
    c.add_argument("--peer", required=True)
    c.add_argument("--echo-port", type=int, default=5601)
    c.add_argument("--bulk-port", type=int, default=5602)
    c.add_argument("--rate-mbit", type=float, required=True)
    c.add_argument("--duration", type=float, default=4.0)
    c.add_argument("--warmup", type=float, default=1.0)
    c.add_argument("--pings", type=int, default=30)
    args = p.parse_args(argv)
    if args.role == "server":
        out = serve(args.host, args.echo_port, args.bulk_port, args.warmup, args.timeout)
    else:
        out = client(args.peer, args.echo_port, args.bulk_port, args.rate_mbit, args.duration, args.warmup,
                     args.pings)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
