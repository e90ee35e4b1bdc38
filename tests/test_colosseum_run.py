"""End-to-end `colosseum run` over the SSH path: 3 "SRNs" (namespaces with their own sshd) run real
agents; results must equal the monolithic model, the model data must cross only the radio links,
the orchestrator's control messages only col0 (relayed by the leader SRN, the first one), and no
secret may land in any file the run writes."""

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


def ip_packets(pcap: Path) -> list[tuple[str, str, int, int, int]]:
    """(src, dst, sport, dport, IP length) of every TCP/IPv4 packet in a pcap."""
    from scapy.layers.inet import IP, TCP
    from scapy.utils import rdpcap

    assert pcap.exists(), pcap
    return [(p[IP].src, p[IP].dst, p[TCP].sport, p[TCP].dport, p[IP].len)
            for p in rdpcap(str(pcap)) if IP in p and TCP in p]


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

    # Data plane on the radio links only, control plane on col0 only. Counters read inside each SRN
    # namespace by the test; pcaps the backend took on both interfaces (agent port) on every SRN.
    spans = [json.loads(line) for line in (run_dir / "pa-mdi" / "spans.jsonl").read_text().splitlines()]
    transfers = [s for s in spans if s["kind"] == "transfer"]
    assert transfers, "PA-MDI offloaded nothing: the data-plane check would prove little"
    port = cfg_for(lab).agent_port
    leader_col0 = lab.col0_addr(lab.srns[0])
    radio_addrs = {lab.radio_addr(i) for i in range(len(lab.srns))}
    col0_addrs = {lab.col0_addr(s) for s in lab.srns}
    report = []
    for i, (srn, node) in enumerate(zip(lab.srns, "abc", strict=True)):
        radio = lab.radio_ifname(i)
        d_radio = sum(after[srn][radio][k] - before[srn][radio][k] for k in ("rx", "tx"))
        d_col0 = sum(after[srn]["col0"][k] - before[srn]["col0"][k] for k in ("rx", "tx"))
        moved = sum(s["bytes"] for s in transfers if node in (s["node"], s.get("peer")))
        pcaps = run_dir / f"srn-{srn:03d}" / "pcap"
        on_radio = ip_packets(pcaps / f"{node}_{radio}.pcap")
        on_col0 = ip_packets(pcaps / f"{node}_col0.pcap")
        report.append(f"{node}@SRN{srn}: radio {d_radio} B (activations {moved} B), col0 {d_col0} B")
        # The radio carries the activations, only between radio addresses: no control from the
        # leader's col0 address and no col0 address at all.
        print(report[-1])
        assert d_radio >= moved and d_radio > 2_000, (srn, d_radio, moved)
        assert on_radio and all({src, dst} <= radio_addrs for src, dst, *_ in on_radio), on_radio[:3]
        assert sum(n for *_, n in on_radio) >= moved, (srn, moved)
        # col0 carries only the orchestrator's control connections: leader col0 address -> an agent
        # port on another SRN's col0 address (this one's, off the leader). The leader's own agent is
        # reached through its own col0 address, over lo.
        me = lab.col0_addr(srn)
        for src, dst, sport, dport, _ in on_col0:
            agent_side = (dst, dport) if src == leader_col0 else (src, sport)
            assert leader_col0 in (src, dst) and agent_side[1] == port, (srn, src, sport, dst, dport)
            assert agent_side[0] in col0_addrs - {leader_col0} and (i == 0 or agent_side[0] == me), (srn, src, dst)
        if i == 0:
            continue
        # A non-leader's col0 saw the whole control conversation with its agent (config, tasks,
        # results, traces): several KB, where the earlier design (a forward to each SRN's own
        # address) left col0 idle. Still well below the model data its radio carried.
        ctl = sum(n for *_, n in on_col0)
        assert ctl > 5_000 and d_col0 >= ctl, (srn, ctl, d_col0)
        assert d_col0 < d_radio, (srn, d_col0, d_radio)
    print(f"\n[colosseum run] {len(transfers)} activation transfers, "
          f"{sum(s['bytes'] for s in transfers)} B; " + "; ".join(report))

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
    assert agent_pids(lab) == []

    # No secret in anything the run wrote, here or on the SRNs: no password, and no private key (the
    # run's keys were removed from the SRNs before the harvest and from this host's state folder).
    assert manifest_keys_on(run_dir)
    for root in (run_dir, lab.tmp / "srn-013", tmp_path / "state"):
        for f in root.rglob("*"):
            if f.is_file():
                assert not f.name.endswith("key_secret"), f
                data = f.read_bytes()
                assert lab.srn_password.encode() not in data, f
                assert lab.ldap_password.encode() not in data, f

    # `harvest` collects the same run again from the SRNs.
    cfg = lab.write_config(tmp_path / "c.yaml", agent_command=f"{PY} -m pamdi_node")
    r = subprocess.run([PAMDI, "colosseum", "harvest", "--run-id", "r1", "--results", str(tmp_path / "again"),
                        "-c", str(cfg)], env=lab.env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "again" / "r1" / "srn-015" / "traces" / "b.spans.jsonl").exists()


def manifest_keys_on(run_dir: Path) -> bool:
    """The run was under Curve: its summary records key fingerprints (and only those)."""
    curve = json.loads((run_dir / "summary.json").read_text()).get("curve", {})
    return bool(curve.get("on")) and "orchestrator" in curve.get("key_fingerprints", {})


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
