"""CurveZMQ: only clients with an authorised key reach the agent. Plus the agent CLI's exits."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from orchestrator.backends.base import AgentEndpoint, RunContext
from orchestrator.backends.local import LocalBackend
from orchestrator.keys import generate_run_keys, node_key_folder
from orchestrator.runner import build_configs
from orchestrator.simulator import load_profiles, source_views
from orchestrator.spec import parse_spec
from pamdi_node import wire
from pamdi_node.agent.client import AgentClient, AgentError
from tests.agent_support import wait_sources_done

SPEC = parse_spec({
    "name": "curve", "seed": 2, "nodes": [{"name": "a"}],
    "sources": [{"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 2}],
})
PY = sys.executable


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp("curve")
    keys = generate_run_keys(run_dir / "keys", ["a"])
    backend = LocalBackend()
    ep = backend.up(SPEC, RunContext("curve", run_dir, keys_dir=keys))["a"]
    yield backend, ep.control, keys, run_dir
    backend.down()


def test_key_layout(secured) -> None:
    _, _, keys, run_dir = secured
    assert sorted(p.name for p in (keys / "public").iterdir()) == ["a.key", "orchestrator.key"]
    secret = keys / "private" / "a.key_secret"
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    one = node_key_folder(keys, "a", run_dir / "for-a")
    assert [p.name for p in (one / "private").iterdir()] == ["a.key_secret"]


def test_authorised_client_gets_through(secured) -> None:
    _, url, keys, _ = secured
    with AgentClient(url, keys=str(keys), server="a", timeout_s=5.0) as c:
        assert c.ping()["node"] == "a"


def test_unauthorised_clients_cannot_submit_anything(secured, tmp_path: Path) -> None:
    _, url, keys, _ = secured
    # A stranger with its own (valid, but unknown) Curve key pair, who knows the server key.
    strangers = tmp_path / "stranger"
    (strangers / "private").mkdir(parents=True)
    (strangers / "public").mkdir()
    zmq.auth.create_certificates(str(strangers / "private"), "orchestrator")
    (strangers / "public" / "a.key").write_bytes((keys / "public" / "a.key").read_bytes())
    views = source_views(SPEC, load_profiles(SPEC))
    cfg = build_configs(SPEC, "local", {"a": AgentEndpoint("a", url)}, views)["a"]
    with AgentClient(url, keys=str(strangers), server="a", timeout_s=1.5) as c:
        with pytest.raises(AgentError, match="no answer"):
            c.ping()
        with pytest.raises(AgentError, match="no answer"):
            c.configure(cfg, timeout_s=1.5)
    # A plaintext client is refused as well, even with a raw peer message.
    with AgentClient(url, timeout_s=1.5) as c:
        with pytest.raises(AgentError, match="no answer"):
            c.ping()
        # ZeroMQ does not even accept the message: no handshake, no pipe (Again after the send timeout).
        with contextlib.suppress(zmq.Again):
            c.sock.send_multipart(wire.encode(wire.CONFIG, "orchestrator", {"config": cfg}))
    with AgentClient(url, keys=str(keys), server="a", timeout_s=5.0) as c:
        stats = c.stats()
    assert stats["state"] == "idle"  # neither config got in
    assert stats["bad_messages"] == 0  # nothing from them even reached the decoder


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([PY, "-m", "pamdi_node", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def test_cli_ping_and_refusals(secured) -> None:
    _, url, keys, _ = secured
    ok = subprocess.run([PY, "-m", "pamdi_node", "ping", url, "--keys", str(keys), "--server", "a"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "a (idle) answered" in ok.stdout
    plain = subprocess.run([PY, "-m", "pamdi_node", "ping", url, "--timeout", "1"], capture_output=True, text=True,
                           timeout=60)
    assert plain.returncode == 1
    nobody = subprocess.run([PY, "-m", "pamdi_node", "ping", "tcp://127.0.0.1:9", "--timeout", "0.5"],
                            capture_output=True, text=True, timeout=60)
    assert nobody.returncode == 1 and "no answer" in nobody.stderr
    # Plaintext on a non-loopback address is refused unless asked for explicitly.
    p = subprocess.run([PY, "-m", "pamdi_node", "--listen", "tcp://*:0", "--name", "x"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "not a loopback address" in p.stderr


def test_sigterm_stops_cleanly_and_flushes_traces(tmp_path: Path) -> None:
    proc = _spawn("--listen", "tcp://127.0.0.9:*", "--name", "a", "--trace-dir", str(tmp_path))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("pamdi-agent ready"), line + (proc.stderr.read() if proc.stderr else "")
    url = line.split("listen=")[1].strip()
    views = source_views(SPEC, load_profiles(SPEC))
    cfg = build_configs(SPEC, "local", {"a": AgentEndpoint("a", url)}, views)["a"]
    with AgentClient(url, timeout_s=30.0) as c:
        c.configure(cfg)
        c.start()
        wait_sources_done(c)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    tasks = (tmp_path / "a.tasks.jsonl").read_text().splitlines()
    spans = (tmp_path / "a.spans.jsonl").read_text().splitlines()
    assert len(tasks) == 2
    # "local" runs the whole model as one range: decide, queue, compute per task.
    kinds = sorted(json.loads(s)["kind"] for s in spans)
    assert kinds == ["compute", "compute", "decide", "decide", "queue", "queue"]


MESH = parse_spec({
    "name": "authz", "seed": 3, "nodes": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
    "full_mesh": {"rate_mbit": 100},
    "sources": [{"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 3, "interval_ms": 5}],
})


@pytest.fixture
def configured(tmp_path: Path):
    """Agent a of a three-node run, configured by the orchestrator, its three tasks done; b and c
    exist only as keys (their agents are not needed to test what a accepts from their keys)."""
    keys = generate_run_keys(tmp_path / "state" / "keys", ["a", "b", "c"])
    backend = LocalBackend()
    one = parse_spec({**MESH.model_dump(exclude={"full_mesh"}), "nodes": [{"name": "a"}], "links": []})
    url = backend.up(one, RunContext("authz", tmp_path, keys_dir=keys))["a"].control
    eps = {n: AgentEndpoint(n, url if n == "a" else f"tcp://127.0.0.1:{9 + i}") for i, n in enumerate("abc")}
    cfg = build_configs(MESH, "local", eps, source_views(MESH, load_profiles(MESH)))["a"]
    orch = AgentClient(url, keys=str(keys), server="a", timeout_s=30.0)
    orch.configure(cfg)
    orch.start()
    wait_sources_done(orch)
    try:
        yield url, keys, cfg, orch
    finally:
        orch.close()
        backend.down()


def _as_node(url: str, keys: Path, me: str, routing_id: str) -> zmq.Socket:
    """A raw DEALER holding node ``me``'s real key, offering ``routing_id`` (what a peer agent uses)."""
    from pamdi_node.agent.security import secure_client

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, routing_id.encode())
    sock.setsockopt(zmq.LINGER, 0)
    secure_client(sock, keys, me, "a")
    sock.connect(url)
    return sock


def _reply(sock: zmq.Socket, timeout_ms: int = 3000) -> wire.Message | None:
    if not sock.poll(timeout_ms):
        return None
    return wire.decode(sock.recv_multipart())


def test_only_the_orchestrator_key_may_control_an_agent(configured) -> None:
    url, keys, cfg, orch = configured
    # Node b's real key, as its own agent would hold it: it may not stop, collect, configure or start.
    with AgentClient(url, name="b", keys=str(keys), server="a", timeout_s=3.0) as b:
        assert b.ping()["node"] == "a"  # admitted: pings are answered for every run key
        for call, kind in ((lambda: b.stop(), "stop"), (lambda: b.collect(), "collect"),
                           (lambda: b.configure(dict(cfg, config_id="forged-by-b-0001")), "config"),
                           (lambda: b.start(), "start"), (lambda: b.stats(), "stats")):
            with pytest.raises(AgentError, match=f"'{kind}' refused: only the orchestrator's key may send it"):
                call()
    # Nothing changed: still the same run, its records all there, collected by the orchestrator.
    stats = orch.stats()
    assert stats["state"] == "running" and stats["sources"]["ts"]["done"]
    records, _, _ = orch.collect()
    assert len(records) == 3


def test_a_node_key_cannot_pose_as_another_node(configured) -> None:
    url, keys, _, orch = configured
    before = orch.stats()["bad_messages"]
    # b's key, claiming to be c (both as the message's src and as the routing id): refused.
    forged = _as_node(url, keys, "b", "c")
    forged.send_multipart(wire.encode(wire.BEACON, "c", {"speed": 9.0, "queue_s": 0.0, "seq": 1}))
    err = _reply(forged)
    assert err is not None and err.type == wire.ERROR
    assert "sent with b key as 'c'" in err.body["reason"]
    # b's key as b with another routing id: the neighbour check still holds (routing id = src#token).
    mixed = _as_node(url, keys, "b", "x#0123abcd")
    mixed.send_multipart(wire.encode(wire.BEACON, "b", {"speed": 9.0, "queue_s": 0.0, "seq": 1}))
    err = _reply(mixed)
    assert err is not None and "is not a configured neighbour" in err.body["reason"]
    # b as itself is a peer: its beacon is taken, silently (beacons have no reply).
    real = _as_node(url, keys, "b", "b#0123abcd")
    real.send_multipart(wire.encode(wire.BEACON, "b", {"speed": 9.0, "queue_s": 0.0, "seq": 1}))
    assert _reply(real, 500) is None
    # Another connection offering b's routing id (c's key) does not take b's over (no ROUTER_HANDOVER):
    # libzmq refuses the duplicate, so nothing it sends arrives, and the real b still gets through.
    thief = _as_node(url, keys, "c", "b#0123abcd")
    thief.send_multipart(wire.encode(wire.BEACON, "c", {"speed": 9.0, "queue_s": 0.0, "seq": 2}))
    assert _reply(thief, 500) is None
    real.send_multipart(wire.encode(wire.BEACON, "b", {"speed": 9.0, "queue_s": 0.0, "seq": 3}))
    deadline = time.time() + 5
    while orch.stats()["peers"]["b"]["beacons"] < 2:
        assert time.time() < deadline, orch.stats()["peers"]
        time.sleep(0.05)
    stats = orch.stats()
    assert stats["peers"]["c"]["beacons"] == 0
    assert stats["bad_messages"] == before + 2
    # The orchestrator's key posing as a node is refused too: control and data are separate roles.
    boss = _as_node(url, keys, "orchestrator", "y")
    boss.send_multipart(wire.encode(wire.BEACON, "b", {"speed": 1.0, "queue_s": 0.0, "seq": 2}))
    err = _reply(boss)
    assert err is not None and "sent with orchestrator key as 'b'" in err.body["reason"]
    for s in (forged, mixed, real, thief, boss):
        s.close(0)


def test_a_replayed_config_is_refused_and_the_records_survive(configured) -> None:
    _, _, cfg, orch = configured
    with pytest.raises(AgentError, match="was applied already"):
        orch.configure(cfg, timeout_s=5.0)
    records, _, _ = orch.collect()
    assert len(records) == 3 and orch.stats()["state"] == "running"


def test_a_run_is_curve_by_default_and_leaves_no_private_key_behind(tmp_path: Path, monkeypatch) -> None:
    from orchestrator.backends import get_backend
    from orchestrator.runner import Runner, RunOptions

    state = tmp_path / "state"
    monkeypatch.setenv("PAMDI_STATE_DIR", str(state))
    from results.trace import write_manifest

    run_dir = tmp_path / "run"
    write_manifest(run_dir, SPEC, backend="local", policies=["local"])
    runner = Runner(SPEC, get_backend("local"), run_dir,
                    RunOptions(policies=["local"], run_timeout_s=60, time_stretch=1.0))
    summary = runner.run()
    assert summary["runs"][0]["sources"]["ts"]["completed"] == 2
    manifest = json.loads((run_dir / "manifest.json").read_text())
    curve = manifest["emulation"]["curve"]
    assert curve["on"] and sorted(curve["key_fingerprints"]) == ["a", "orchestrator"]
    # The keys lived in the private state folder while the run lasted, and are gone now.
    assert runner.keys_dir is not None and runner.keys_dir.is_relative_to(state) and not runner.keys_dir.exists()
    assert oct((state / "keys").stat().st_mode & 0o777) == "0o700"
    leaked = [p for p in run_dir.rglob("*") if p.is_file() and b"secret-key" in p.read_bytes()]
    assert not leaked
