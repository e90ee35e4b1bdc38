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
        deadline = time.time() + 30
        while not c.stats()["sources"]["ts"]["done"]:
            assert time.time() < deadline
            time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    tasks = (tmp_path / "a.tasks.jsonl").read_text().splitlines()
    spans = (tmp_path / "a.spans.jsonl").read_text().splitlines()
    assert len(tasks) == 2
    # "local" runs the whole model as one range: decide, queue, compute per task.
    kinds = sorted(json.loads(s)["kind"] for s in spans)
    assert kinds == ["compute", "compute", "decide", "decide", "queue", "queue"]
