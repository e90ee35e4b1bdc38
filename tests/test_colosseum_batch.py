"""Batch mode end to end: a Colosseum batch job simulated in the namespace lab, without SSH.

What Colosseum does in a batch job is replayed step by step: `pamdi colosseum batch` writes the
batch JSON and one ModemConfig per RF node; each "SRN" (a namespace with col0 and a radio link)
gets the node image's Radio API scripts and its ModemConfig as radio.conf; the SRN controller's
calls are `start.sh` / `status.sh` / `stop.sh` run inside each namespace. Agents bind to their
radio addresses, RF node 1's leader finds them by pinging the radio subnet, runs PA-MDI with the
shared runner and writes the results into its /logs. Paths that cannot be the real ones on a
shared host (/root/radio_api, /logs, the state file) come from the scripts' environment variables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.colosseum_standin.lab import Lab, available, lab_pids

REPO = Path(__file__).resolve().parent.parent
PY = REPO / ".venv" / "bin" / "python"
PAMDI = str(REPO / ".venv" / "bin" / "pamdi")
RADIO_API = REPO / "node_image" / "radio_api"

SPEC = {
    "name": "colo3b",
    "seed": 11,
    # A slow source node makes PA-MDI offload partitions to b and c over the radio links.
    "nodes": [{"name": "a", "speed": 0.02}, {"name": "b"}, {"name": "c"}],
    "full_mesh": {"rate_mbit": 100},
    "sources": [
        {"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 6, "interval_ms": 20},
        {"name": "nts", "node": "b", "model": "tiny", "priority": 1, "samples": 6, "interval_ms": 20},
    ],
    "policy": ["pa-mdi"],
}


@pytest.fixture(scope="module")
def lab():
    why = available()
    if why:
        pytest.skip(why)
    if not PY.exists():
        pytest.skip("needs the project's .venv (the SRNs run its python)")
    lab = Lab(team="pamdi-batch", ssh=False).start()
    yield lab
    lab.close()


class Srn:
    """One SRN container of a job: its /root/radio_api, /logs and state file, and the API calls."""

    def __init__(self, lab: Lab, i: int, job: str, **env: str) -> None:
        self.lab, self.i, self.srn = lab, i, lab.srns[i]
        base = lab.tmp / f"srn-{self.srn:03d}" / job
        self.api, self.logs, self.state = base / "root" / "radio_api", base / "logs", base / "tmp" / "state"
        self.state.parent.mkdir(parents=True)
        shutil.copytree(RADIO_API, self.api)  # what the image carries at /root/radio_api
        self.env = dict(os.environ, PAMDI_RADIO_API_DIR=str(self.api), PAMDI_LOGS_DIR=str(self.logs),
                        PAMDI_STATE_FILE=str(self.state), PAMDI_PYTHON=str(PY),
                        PAMDI_AGENT_CMD=f"{PY} -m pamdi_node", PAMDI_RADIO_WAIT_S="20",
                        PAMDI_LAB=lab.tag, **env)  # PAMDI_LAB: lab.close() kills leftovers

    def call(self, script: str) -> tuple[subprocess.CompletedProcess, float]:
        t0 = time.perf_counter()
        r = subprocess.run(["ip", "netns", "exec", self.lab.srn_ns(self.srn), "bash", str(self.api / script)],
                           env=self.env, capture_output=True, text=True, timeout=10)
        return r, time.perf_counter() - t0

    def status(self) -> dict[str, str]:
        r, took = self.call("status.sh")
        assert r.returncode == 0 and took < 5, (r.stderr, took)
        return json.loads(r.stdout)

    def wait_status(self, done, timeout_s: float) -> dict[str, str]:
        deadline = time.time() + timeout_s
        while True:
            st = self.status()
            if done(st) or time.time() > deadline:
                return st
            time.sleep(0.3)

    def log(self) -> str:
        p = self.logs / "pamdi-node.log"
        return p.read_text() if p.exists() else ""


def write_batch(lab: Lab, tmp_path: Path, spec: dict) -> tuple[dict, Path]:
    """`pamdi colosseum batch SPEC --no-upload --out DIR --keep-outputs`: the files Colosseum would get."""
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    cfg = tmp_path / "c.yaml"  # no SSH in batch mode: the team, the SRNs, the scenario, the radio subnet
    cfg.write_text(yaml.safe_dump({"team": lab.team, "user": "someone", "srns": list(lab.srns), "scenario": 1009,
                                   "data_plane": {"subnet": "172.16.0.0/24"}}))
    out = tmp_path / "batch"
    r = subprocess.run([PAMDI, "colosseum", "batch", str(tmp_path / "spec.yaml"), "--no-upload", "--keep-outputs",
                        "--out", str(out), "-c", str(cfg), "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), out


def provision(lab: Lab, tmp_path: Path, job: str, spec: dict, **env: str) -> tuple[str, list[Srn]]:
    """Colosseum's step 5a: load the containers, push each node's ModemConfig as radio.conf."""
    result, out = write_batch(lab, tmp_path, spec)
    batch = json.loads((out / result["batch"]).read_text())
    srns = []
    for entry in sorted(batch["NodeData"], key=lambda e: e["RFNode_ID"]):
        s = Srn(lab, entry["RFNode_ID"] - 1, job, **env)
        shutil.copy(out / entry["ModemConfig"], s.api / "radio.conf")
        srns.append(s)
    return batch["BatchName"], srns


def stop_all(srns: list[Srn]) -> None:
    for s in srns:
        r, took = s.call("stop.sh")
        assert r.returncode == 0 and took < 5, (r.stderr, took)
    for s in srns:
        st = s.wait_status(lambda st: st["STATUS"] == "FINISHED", 60)
        assert st["STATUS"] == "FINISHED", (s.srn, st, s.log()[-2000:])


def node_pids(lab: Lab) -> list[int]:
    return lab_pids(lab.tag)


@pytest.mark.root
@pytest.mark.slow
def test_batch_job_runs_pamdi_and_writes_logs(lab: Lab, tmp_path: Path) -> None:
    import torch

    from orchestrator.spec import parse_spec
    from pamdi_node.agent.config import input_seed, task_id
    from pamdi_node.models import zoo

    name, srns = provision(lab, tmp_path, "ok", SPEC)
    leader = srns[0]
    assert leader.status() == {"STATUS": "READY", "INFO": "waiting for start.sh"}
    before = {s.srn: lab.counters(s.srn) for s in srns}
    t0 = time.time()
    try:
        # RF node 1 first: its leader must wait for agents that come up later.
        for k, s in enumerate(srns):
            r, took = s.call("start.sh")
            assert r.returncode == 0 and took < 5, (r.stderr, took)
            if k == 0:
                time.sleep(1.0)
        assert all(s.status()["STATUS"] == "ACTIVE" for s in srns)
        st = leader.wait_status(lambda st: st["STATUS"] != "ACTIVE" or st["INFO"].startswith("finished"), 120)
        took_s = time.time() - t0
        assert st["STATUS"] == "ACTIVE" and st["INFO"].startswith("finished: pa-mdi: ts 6, nts 6"), \
            (st, leader.log()[-3000:])
        for s in srns[1:]:  # the leader stopped their agents; the match itself goes on until stop.sh
            st = s.wait_status(lambda st: st["INFO"].startswith("finished"), 20)
            assert st["STATUS"] == "ACTIVE" and "stopped by the leader" in st["INFO"], (s.srn, st, s.log()[-2000:])
        after = {s.srn: lab.counters(s.srn) for s in srns}
    finally:
        stop_all(srns)
    assert node_pids(lab) == []

    # Results in the leader's /logs, as the runner writes them for every backend.
    run_dir = leader.logs / "runs" / name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["backend"] == "colosseum-batch" and summary["run_id"] == name
    run = summary["runs"][0]
    assert {k: (v["completed"], v["failed"]) for k, v in run["sources"].items()} == {"ts": (6, 0), "nts": (6, 0)}
    manifest = json.loads((run_dir / "batch.json").read_text())
    assert manifest["exit_code"] == 0 and manifest["candidates"] == 254
    assert manifest["addresses"] == {"a": "172.16.0.1", "b": "172.16.0.2", "c": "172.16.0.3"}
    # Every result equals the monolithic model on the same seeded input.
    spec = parse_spec(SPEC)
    model = zoo.build_blocks("tiny", 0, zoo.num_blocks("tiny"), seed=spec.seed).eval()
    outputs = np.load(run_dir / "pa-mdi" / "outputs.npz")
    assert len(outputs.files) == 12
    for src in spec.sources:
        for i in range(src.samples):
            x = zoo.example_input("tiny", batch=src.batch, seed=input_seed(spec.seed, src.name, i))
            with torch.no_grad():
                ref = model(x).numpy()
            np.testing.assert_allclose(outputs[task_id(src.name, i)].reshape(ref.shape), ref, rtol=1e-5, atol=1e-6)
    # Each SRN's own /logs: its agent's traces (Colosseum copies every container's /logs).
    for s, node in zip(srns, "abc", strict=True):
        assert (s.logs / "traces" / f"{node}.spans.jsonl").exists(), s.log()[-1000:]
        assert s.log().count("pamdi-agent ready") == 1

    # The model data crossed the radio links only (agents bind there; col0 idles).
    spans = [json.loads(line) for line in (run_dir / "pa-mdi" / "spans.jsonl").read_text().splitlines()]
    transfers = [sp for sp in spans if sp["kind"] == "transfer"]
    assert transfers, "PA-MDI offloaded nothing: the data-plane check would prove little"
    for s, node in zip(srns, "abc", strict=True):
        radio = lab.radio_ifname(s.i)
        d_radio = sum(after[s.srn][radio][k] - before[s.srn][radio][k] for k in ("rx", "tx"))
        d_col0 = sum(after[s.srn]["col0"][k] - before[s.srn]["col0"][k] for k in ("rx", "tx"))
        moved = sum(sp["bytes"] for sp in transfers if node in (sp["node"], sp.get("peer")))
        assert d_radio >= moved and d_col0 < 2_000, (s.srn, d_radio, moved, d_col0)
    print(f"\n[colosseum batch] start.sh -> finished in {took_s:.1f} s (discovery {manifest['discovery_s']:.1f} s, "
          f"leader run {manifest['run_s']:.1f} s); {len(transfers)} transfers, "
          f"{sum(sp['bytes'] for sp in transfers)} B over the radio")


@pytest.mark.root
@pytest.mark.slow
def test_batch_leader_names_missing_agent_and_stops_the_rest(lab: Lab, tmp_path: Path) -> None:
    name, srns = provision(lab, tmp_path, "missing", SPEC, PAMDI_DISCOVERY_TIMEOUT_S="8")
    started = srns[:2]  # RF node 3's container never starts its agent
    try:
        for s in started:
            r, _ = s.call("start.sh")
            assert r.returncode == 0, r.stderr
        st = started[0].wait_status(lambda st: st["STATUS"] == "ERROR", 60)
        assert st["STATUS"] == "ERROR", (st, started[0].log()[-3000:])
        assert "no agent answered for node(s) c within 8 s" in st["INFO"], st
        assert "found a=172.16.0.1, b=172.16.0.2" in st["INFO"], st
        # The leader stopped the agents it had found; their nodes end cleanly.
        st = started[1].wait_status(lambda st: "stopped by the leader" in st["INFO"], 20)
        assert "stopped by the leader" in st["INFO"], (st, started[1].log()[-2000:])
        manifest = json.loads((started[0].logs / "runs" / name / "batch.json").read_text())
        assert manifest["exit_code"] == 3 and manifest["addresses"] == {"a": "172.16.0.1", "b": "172.16.0.2"}
    finally:
        stop_all(started)
    assert node_pids(lab) == []


# ------------------------------------------------------------------------------ no root needed
def test_leader_rejects_bad_radio_conf(tmp_path: Path) -> None:
    from orchestrator.colosseum.batch_lead import LeadError, load_conf

    conf = tmp_path / "radio.conf"
    good = {"batch": "b1", "node": "a", "leader": True, "agent_port": 5555, "data_plane": {"subnet": "172.16.0.0/24"},
            "spec": SPEC}
    conf.write_text(json.dumps(good))
    assert load_conf(conf).spec.name == "colo3b"
    for bad, msg in (({"leader": False}, "not the batch's leader"), ({"agent_port": "x"}, "'agent_port'"),
                     ({"data_plane": {}}, "'data_plane'"), ({"data_plane": {"subnet": "300.1.0.0/24"}}, "subnet"),
                     ({"node": "b"}, "first node 'a'"), ({"spec": dict(SPEC, nodes=[])}, "spec")):
        conf.write_text(json.dumps(dict(good, **bad)))
        with pytest.raises(LeadError, match=msg):
            load_conf(conf)
    conf.write_text("{not json")
    with pytest.raises(LeadError, match="not JSON"):
        load_conf(conf)


def test_leader_runs_without_orchestrator_extras() -> None:
    """The node image carries only the core dependencies: the leader must not need asyncssh & co."""
    code = (
        "import sys, importlib.abc\n"
        "EXTRAS = {'asyncssh', 'simpy', 'scipy', 'pandas', 'pyarrow', 'scapy', 'pyroute2', 'docker', 'matplotlib'}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in EXTRAS: raise ImportError('not in the node image: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import orchestrator.colosseum.batch_lead, orchestrator.runner, orchestrator.simulator\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
