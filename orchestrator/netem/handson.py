"""Hands-on mode, Mininet style: a spec's topology built and kept to poke at by hand.

``pamdi net up SPEC`` starts a holder process (``python -m orchestrator.netem.handson serve``, its
own session, so it outlives the command) that builds the namespaces and shaped links with the same
``EmulatedNetwork`` every netns run uses, publishes what it built in ``$PAMDI_STATE_DIR/net-<name>.json``
and answers requests on ``ipc://$PAMDI_STATE_DIR/net-<name>.sock``: ``show``, ``link`` (rate, delay,
loss, up/down, changed in place by the same code a scenario uses) and ``down``. ``pamdi net exec NODE
-- CMD`` needs no holder: it enters the node's namespace (``nsexec``). The holder owns the network's
record (its pid and start time), so no other run's sweep takes it away while it lives; if it is
killed, the next run or ``pamdi cleanup`` removes what it left, as for any dead run.

Every link gets a delay stage (netem, or the user-space forwarder where this kernel has no netem)
so that ``net link --delay/--loss`` works on any link later. Jitter (``--jitter``, a spec link's
``jitter_ms``) needs netem: the forwarder has none and a hands-on link has no agents to apply it, so
without netem it is refused, in one line, rather than pretended.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.netem import names

REQUEST_TIMEOUT_S = 10.0


class HandsOnError(RuntimeError):
    """A hands-on request failed; the message says why in one line."""


def state_path(name: str) -> Path:
    return names.STATE_DIR / f"net-{name}.json"


def socket_url(name: str) -> str:
    return f"ipc://{names.STATE_DIR / f'net-{name}.sock'}"


def read_state(name: str) -> dict[str, Any]:
    """What ``net up`` built, or HandsOnError when no network of that name is up."""
    try:
        state = json.loads(state_path(name).read_text())
    except (OSError, ValueError):
        up = sorted(p.name[4:-5] for p in names.STATE_DIR.glob("net-*.json"))
        raise HandsOnError(f"no network {name!r} is up (`pamdi net up SPEC`); up: {', '.join(up) or 'none'}") from None
    if not names.owner_alive(int(state["pid"]), state.get("pid_start")):
        raise HandsOnError(f"network {name!r}: its holder (pid {state['pid']}) is gone; `pamdi net down {name}` "
                           "removes what it left")
    return state


def request(name: str, body: dict[str, Any], timeout_s: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
    """One request to the holder of ``name``; its answer, or HandsOnError with its reason."""
    import zmq

    read_state(name)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(socket_url(name))
        sock.send_json(body)
        if not sock.poll(int(timeout_s * 1000)):
            raise HandsOnError(f"network {name!r}: its holder did not answer within {timeout_s:g} s")
        answer = sock.recv_json()
    finally:
        sock.close(0)
    if not isinstance(answer, dict):
        raise HandsOnError(f"network {name!r}: bad answer from its holder")
    if answer.get("error"):
        raise HandsOnError(str(answer["error"]))
    return answer


# ------------------------------------------------------------------------------------- client side
def up(spec_arg: str, name: str | None = None, timeout_s: float = 90.0) -> dict[str, Any]:
    """Start a holder for ``spec_arg`` (file or shipped name); returns the published state."""
    from orchestrator.spec import load_spec
    from orchestrator.specs import resolve_spec

    path = resolve_spec(spec_arg)
    spec = load_spec(path)
    name = name or spec.name
    if state_path(name).exists():
        try:
            read_state(name)
        except HandsOnError:
            down(name)  # a dead holder's leftovers: clear them and go on
        else:
            raise HandsOnError(f"network {name!r} is up already (`pamdi net down {name}` first, or --name)")
    names.STATE_DIR.mkdir(parents=True, exist_ok=True)
    log = names.STATE_DIR / f"net-{name}.log"
    with log.open("wb") as err:
        argv = [sys.executable, "-m", "orchestrator.netem.handson", "serve", str(path), "--name", name]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    assert proc.stdout is not None
    line = b""
    deadline = time.time() + timeout_s
    import select

    while time.time() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            break
    proc.stdout.close()
    if not line:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise HandsOnError(f"net up {name}: the network was not built ({tail[0] if tail else 'no reason given'}; "
                           f"log: {log})")
    return json.loads(line)


def down(name: str, timeout_s: float = 30.0) -> list[str]:
    """Tear ``name`` down through its holder, or (holder gone) from its record; returns what was removed."""
    try:
        state = json.loads(state_path(name).read_text())
    except (OSError, ValueError):
        raise HandsOnError(f"no network {name!r} is up") from None
    if names.owner_alive(int(state["pid"]), state.get("pid_start")):
        with contextlib.suppress(HandsOnError):
            request(name, {"op": "down"})
        deadline = time.time() + timeout_s
        while time.time() < deadline and names.owner_alive(int(state["pid"]), state.get("pid_start")):
            time.sleep(0.1)
        if names.owner_alive(int(state["pid"]), state.get("pid_start")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(state["pid"]), signal.SIGKILL)
    from orchestrator.netem.teardown import teardown_record

    # Whatever the holder did not take down itself (it was killed): by the run record, else by token.
    rec = names.RunRecord.load(names.STATE_DIR / f"{state['token']}.json")
    removed = teardown_record(rec or names.RunRecord(token=state["token"], owner_pid=0))
    for p in (state_path(name), names.STATE_DIR / f"net-{name}.sock"):
        with contextlib.suppress(OSError):
            p.unlink()
    return removed


# -------------------------------------------------------------------------------------- the holder
def _describe(net: Any, spec: Any, name: str, up_state: dict[tuple[str, str], bool]) -> dict[str, Any]:
    from orchestrator.netem import tc

    links = []
    for (a, b), lk in sorted(net.links.items()):
        ns_a, ns_b = net.nodes[lk.a].netns, net.nodes[lk.b].netns
        stage = "netem" if lk.netem else ("forwarder" if lk.forwarder is not None else "none")
        st = lk.state
        cmds = [f"ip netns exec {ns} tc qdisc replace dev {lk.if_a} root handle 1: tbf rate "
                f"{tc.rate_arg(st.rate_mbit)} burst {tc.burst_bytes(st.rate_mbit)} limit {tc.QUEUE_LIMIT_BYTES}"
                for ns in (ns_a, ns_b)]
        jitter = f" {st.jitter_ms:g}ms rate {tc.NETEM_ORDER_RATE}" if st.jitter_ms > 0 else ""
        if lk.netem:
            cmds += [f"ip netns exec {ns} tc qdisc replace dev {lk.if_a} parent 1:1 handle 10: netem delay "
                     f"{st.delay_ms:g}ms{jitter} loss {st.loss * 100:g}%" for ns in (ns_a, ns_b)]
        links.append({"a": lk.a, "b": lk.b, "if": lk.if_a, "addr_a": lk.addr_a, "addr_b": lk.addr_b,
                      "netns_a": ns_a, "netns_b": ns_b, "rate_mbit": st.rate_mbit, "delay_ms": st.delay_ms,
                      "jitter_ms": st.jitter_ms, "loss": st.loss, "up": up_state.get((a, b), True),
                      "delay_stage": stage, "jitter_stage": stage if st.jitter_ms > 0 else "none",
                      "middle_netns": lk.middle, "tc": cmds})
    return {"name": name, "spec": spec.name, "token": net.token, "pid": os.getpid(),
            "pid_start": names.process_start_time(os.getpid()),
            "netem": net.use_netem,
            "nodes": {n: {"netns": h.netns, "control": h.control_addr} for n, h in net.nodes.items()},
            "namespaces": list(net.record.namespaces), "links": links}


def _publish(name: str, state: dict[str, Any]) -> None:
    """The state file other commands read (written whole, then renamed: never half a file)."""
    path = state_path(name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def _set_state(net: Any, a: str, b: str, up_: bool) -> None:
    from orchestrator.netem import netns as nsops

    lk = net.link(a, b)
    for node in (lk.a, lk.b):
        with nsops.ns_handle(net.nodes[node].netns) as h:
            h.link("set", index=h.link_lookup(ifname=lk.if_a)[0], state="up" if up_ else "down")


def serve(spec_path: str, name: str) -> int:
    import zmq

    from orchestrator.netem.network import EmulatedNetwork
    from orchestrator.spec import load_spec

    spec = load_spec(spec_path)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    net = EmulatedNetwork(f"net up {name}", seed=spec.seed)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    up_state: dict[tuple[str, str], bool] = {}
    try:
        for node in spec.nodes:
            net.add_node(node.name)
        for lk in spec.resolved_links():
            net.add_link(lk.a, lk.b, lk.rate_mbit, lk.delay_ms, lk.loss, delay_line=True, jitter_ms=lk.jitter_ms)
        sock.bind(socket_url(name))
        state = _describe(net, spec, name, up_state)
        _publish(name, state)
        print(json.dumps(state), flush=True)
        while not stop:
            if not sock.poll(200):
                continue
            try:
                req = sock.recv_json()
                op = req.get("op")
                if op == "show":
                    answer: dict[str, Any] = _describe(net, spec, name, up_state)
                elif op == "down":
                    stop = True
                    answer = {"ok": True}
                elif op == "link":
                    a, b = str(req["a"]), str(req["b"])
                    lk = net.link(a, b)
                    st = lk.state
                    rate = float(req["rate_mbit"]) if req.get("rate_mbit") is not None else st.rate_mbit
                    delay = float(req["delay_ms"]) if req.get("delay_ms") is not None else st.delay_ms
                    loss = float(req["loss"]) if req.get("loss") is not None else st.loss
                    jitter = float(req["jitter_ms"]) if req.get("jitter_ms") is not None else st.jitter_ms
                    if not (rate > 0 and 0 <= jitter <= delay and 0 <= loss <= 1):
                        raise ValueError(f"link {a}-{b}: need rate > 0, 0 <= jitter <= delay, 0 <= loss <= 1")
                    net.set_link(a, b, rate, delay, loss, jitter)
                    if req.get("up") is not None:
                        _set_state(net, a, b, bool(req["up"]))
                        up_state[(lk.a, lk.b)] = bool(req["up"])
                    answer = _describe(net, spec, name, up_state)
                    _publish(name, answer)
                else:
                    answer = {"error": f"unknown request {op!r}"}
            except Exception as err:  # a bad request is answered, never ends the holder
                answer = {"error": f"{type(err).__name__}: {err}"}
            sock.send_json(answer)
    finally:
        sock.close(0)
        ctx.term()
        net.close()
        for p in (state_path(name), names.STATE_DIR / f"net-{name}.sock"):
            with contextlib.suppress(OSError):
                p.unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m orchestrator.netem.handson")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("spec")
    s.add_argument("--name", required=True)
    args = ap.parse_args(argv)
    try:
        return serve(args.spec, args.name)
    except Exception as err:
        print(f"net up {args.name}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
