"""End-to-end `colosseum run` over the SSH path: 3 "SRNs" (namespaces with their own sshd) run real
agents bound to their radio links; results must equal the monolithic model, the model data must
cross only the radio links (not col0), and no secret may land in any file the run writes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.colosseum_standin.lab import Lab, available, lab_pids

pytestmark = [pytest.mark.root, pytest.mark.slow]
REPO = Path(__file__).resolve().parent.parent
PY = REPO / ".venv" / "bin" / "python"
PAMDI = str(REPO / ".venv" / "bin" / "pamdi")

SPEC = {
    "name": "colo3",
    "seed": 7,
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
    lab = Lab(team="pamdi-run", cli_clear_s=2.0, srn_root=True).start()
    yield lab
    lab.close()


def agent_pids(lab: Lab) -> list[int]:
    out = []
    for pid in lab_pids(lab.tag):
        try:
            if b"pamdi_node" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except FileNotFoundError:
            continue
    return out


def cfg_for(lab: Lab, **kw: object):
    from orchestrator.colosseum.config import parse_config

    return parse_config(lab.config(agent_command=f"{PY} -m pamdi_node", scenario=1009, pcap=True, **kw))


def test_run_over_ssh_matches_monolithic(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from orchestrator.colosseum.deploy import run_experiment
    from orchestrator.spec import parse_spec
    from pamdi_node.agent.config import input_seed, task_id
    from pamdi_node.models import zoo

    monkeypatch.setenv("PAMDI_STATE_DIR", str(tmp_path / "state"))
    spec = parse_spec(SPEC)
    before = {s: lab.counters(s) for s in lab.srns}
    run_dir = tmp_path / "results" / "runs" / "r1"
    summary = run_experiment(cfg_for(lab), spec, lab.srn_password, run_dir=run_dir, run_id="r1", keep_outputs=True)
    after = {s: lab.counters(s) for s in lab.srns}

    run = summary["runs"][0]
    assert run["policy"] == "pa-mdi"
    assert {k: v["completed"] for k, v in run["sources"].items()} == {"ts": 6, "nts": 6}
    # Every result equals the monolithic model on the same seeded input.
    outputs = summary["_outputs"]["pa-mdi"]
    model = zoo.build_blocks("tiny", 0, zoo.num_blocks("tiny"), seed=spec.seed).eval()
    for src in spec.sources:
        for i in range(src.samples):
            x = zoo.example_input("tiny", batch=src.batch, seed=input_seed(spec.seed, src.name, i))
            with torch.no_grad():
                ref = model(x).numpy()
            got = np.asarray(outputs[task_id(src.name, i)])
            np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-5, atol=1e-6)

    # Data plane on the radio links only: counters read inside each SRN namespace by the test must
    # cover at least the activation bytes the agents report moving to/from that node (beacons and
    # headers come on top), while col0 carries at most neighbour-discovery chatter.
    spans = [json.loads(line) for line in (run_dir / "pa-mdi" / "spans.jsonl").read_text().splitlines()]
    transfers = [s for s in spans if s["kind"] == "transfer"]
    assert transfers, "PA-MDI offloaded nothing: the data-plane check would prove little"
    for i, (srn, node) in enumerate(zip(lab.srns, "abc", strict=True)):
        radio = lab.radio_ifname(i)
        d_radio = sum(after[srn][radio][k] - before[srn][radio][k] for k in ("rx", "tx"))
        d_col0 = sum(after[srn]["col0"][k] - before[srn]["col0"][k] for k in ("rx", "tx"))
        moved = sum(s["bytes"] for s in transfers if node in (s["node"], s.get("peer")))
        assert d_radio > 2_000 and d_radio >= moved, (srn, d_radio, moved)
        assert d_col0 < 2_000, (srn, d_col0)
    print(f"\n[colosseum run] {len(transfers)} activation transfers, "
          f"{sum(s['bytes'] for s in transfers)} B over the radio links")

    # Scenario and radio map recorded; traces harvested from every SRN; agents gone.
    manifest = json.loads((run_dir / "colosseum.json").read_text())
    assert manifest["rf_info"]["scenario_id"] == 1009 and manifest["rf_info"]["status"] == "ACTIVE"
    assert [(e["node"], e["srn"]) for e in manifest["radiomap"][:3]] == [(1, 13), (2, 15), (3, 27)]
    nodes = json.loads((run_dir / "colosseum-nodes.json").read_text())["nodes"]
    assert {n: v["data_address"] for n, v in nodes.items()} == {"a": "172.16.0.1", "b": "172.16.0.2",
                                                                "c": "172.16.0.3"}
    for srn, node in zip(lab.srns, "abc", strict=True):
        got = run_dir / f"srn-{srn:03d}"
        assert (got / "agent.log").read_text().count("pamdi-agent ready") == 1
        assert (got / "traces" / f"{node}.spans.jsonl").exists()
        pcap = got / "pcap" / f"{node}_{lab.radio_ifname(lab.srns.index(srn))}.pcap"
        assert pcap.stat().st_size > 1000, pcap  # tcpdump on the radio interface saw the agent traffic
    assert agent_pids(lab) == []

    # No secret in anything the run wrote, here or on the SRNs.
    for root in (run_dir, lab.tmp / "srn-013", tmp_path / "state"):
        for f in root.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                assert lab.srn_password.encode() not in data, f
                assert lab.ldap_password.encode() not in data, f

    # `harvest` collects the same run again from the SRNs.
    cfg = lab.write_config(tmp_path / "c.yaml", agent_command=f"{PY} -m pamdi_node")
    r = subprocess.run([PAMDI, "colosseum", "harvest", "--run-id", "r1", "--results", str(tmp_path / "again"),
                        "-c", str(cfg)], env=lab.env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "again" / "r1" / "srn-015" / "traces" / "b.spans.jsonl").exists()


def _cli_run(lab: Lab, tmp_path: Path, env: dict[str, str], **cfg: object) -> subprocess.CompletedProcess:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    conf = lab.write_config(tmp_path / "c.yaml", agent_command=f"{PY} -m pamdi_node", **cfg)
    env = dict(env, PAMDI_STATE_DIR=str(tmp_path / "state"))
    return subprocess.run([PAMDI, "colosseum", "run", str(spec), "--results", str(tmp_path / "runs"), "-c",
                           str(conf)], env=env, capture_output=True, text=True, timeout=240)


def test_failed_scenario_start_leaves_nothing_running(lab: Lab, tmp_path: Path) -> None:
    # Stop the scenario of the previous test first (the rule then makes the next start wait > 15 s).
    lab.cli_control("_standin_fail_next_start")
    r = _cli_run(lab, tmp_path, lab.env(), scenario=10011)
    assert r.returncode == 1
    assert "SRN 13 (pamdi-run-013): rf start 10011 failed: Colosseum failed to schedule the scenario at the " \
           "Scenario Conductor" in r.stderr
    assert agent_pids(lab) == []


def test_wrong_password_run_names_srns_and_starts_nothing(lab: Lab, tmp_path: Path) -> None:
    env = dict(lab.env(), PAMDI_LAB_SRN_PASSWORD="nope-" + os.urandom(4).hex())
    r = _cli_run(lab, tmp_path, env, scenario=None)
    assert r.returncode == 1
    assert "auth: wrong password" in r.stderr and "SRN 13 (pamdi-run-013)" in r.stderr
    assert agent_pids(lab) == []
