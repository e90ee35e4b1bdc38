"""The ``ssh`` backend and ``pamdi lab`` against a lab of real OpenSSH servers in network namespaces
(tests/sshlab_support.py: key auth, h2's passphrase key only through a real ssh-agent, h3 only
through the jump host and on a link the lab itself holds to 40 Mbit/s; h1 and h2 shaped by pamdi).

What must hold: ``lab check`` sees every host, its versions, addresses, clock and tc rights and
measures h3's 40 Mbit/s link as such; every policy's results over the lab equal the monolithic
model, the model data crosses only the data-plane interfaces (pcaps and counters), control only the
SSH connections; bad hosts are refused in one line each, before or after agents started, leaving
none behind; ``lab deploy`` installs pamdi from a wheelhouse into hosts that lack it; ``lab
profile`` harvests every host's profile into a folder the simulator reads. (During a run: Ctrl-C,
reshaping, failures, ssh-config aliases: tests/test_sshlab_runtime.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.sshlab_support import (  # noqa: F401  (inventory_fixture, lab_fixture: the lab, inventory fixtures)
    HOSTS,
    REPO,
    SPEC,
    SshLab,
    inventory_fixture,
    lab_fixture,
    run_pamdi,
)

pytestmark = [pytest.mark.root]
def ip_packets(pcap: Path) -> list[tuple[str, str, int, int, int]]:
    from scapy.layers.inet import IP, TCP
    from scapy.utils import rdpcap

    assert pcap.exists(), pcap
    return [(p[IP].src, p[IP].dst, p[TCP].sport, p[TCP].dport, p[IP].len)
            for p in rdpcap(str(pcap)) if IP in p and TCP in p]


def test_lab_check_reports_every_host_and_measures_its_links(lab: SshLab, inventory: Path) -> None:
    import platform

    import torch

    from pamdi_node import __version__

    r = run_pamdi(lab, "lab", "check", str(inventory), "--json", "--duration", "1", "--cap-mbit", "200")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert json.loads(inventory.with_name("lab.check.json").read_text())["hosts"] == report["hosts"]
    hosts = {h["host"]: h for h in report["hosts"]}
    assert sorted(hosts) == list(HOSTS)
    for role, h in hosts.items():
        assert h["reachable"] and h["problems"] == [], h
        assert (h["python"], h["torch"], h["pamdi"]) == (platform.python_version(), torch.__version__, __version__)
        assert (h["data_interface"], h["data_address"]) == ("data0", lab.data_addr(role))
        assert h["mgmt_interface"] == "mgmt0" and h["can_shape"] and h["shape_via"] == "root"
        assert h["shape"] == (role != "h3")
        assert abs(h["clock_offset_s"]) < 0.5  # one machine, one clock: only the SSH round trip
    links = {(m["from"], m["to"]): m for m in report["links"]}
    assert len(links) == 6 and all(m["error"] is None and m["method"] == "iperf3" for m in links.values()), links
    for (a, b), m in links.items():
        print(f"[lab check] {a} -> {b}: {m['rate_mbit']:.1f} Mbit/s, RTT {m['rtt_ms']:.3f} ms")
        assert m["rtt_ms"] is not None and m["rtt_ms"] >= 0
        if a == "h3":  # the lab holds h3's outgoing link to 40 Mbit/s: TCP goodput is 95.6% of it
            assert 0.75 * 40 < m["rate_mbit"] <= 40, m
        else:  # unshaped veth, measured up to the cap
            assert m["rate_mbit"] > 100, m


def test_every_policy_over_ssh_matches_monolithic_with_planes_apart(lab: SshLab, inventory: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from orchestrator.backends.ssh import SshBackend
    from orchestrator.experiment import run_experiment
    from orchestrator.runner import RunOptions
    from orchestrator.spec import POLICY_NAMES, parse_spec
    from pamdi_node.agent.config import input_seed, task_id
    from pamdi_node.models import zoo

    for k, v in lab.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PAMDI_STATE_DIR", str(tmp_path / "state"))
    assert run_pamdi(lab, "lab", "check", str(inventory), "--no-links", "--json").returncode == 0
    spec = parse_spec(SPEC)
    run_dir = tmp_path / "run"
    before = {r: lab.counters(r) for r in HOSTS}
    exp = run_experiment(spec, SshBackend(inventory, pcap=True), run_dir,
                         RunOptions(policies=list(POLICY_NAMES), keep_outputs=True))
    after = {r: lab.counters(r) for r in HOSTS}
    assert exp.summary is not None and exp.report is not None, exp.report_error
    model = zoo.build_blocks("tiny", 0, zoo.num_blocks("tiny"), seed=spec.seed).eval()
    moved = dict.fromkeys(HOSTS, 0)
    outputs = {r.policy: r.outputs for r in exp.runner.results}
    assert sorted(outputs) == sorted(POLICY_NAMES)
    for run in exp.summary["runs"]:
        assert {k: v["completed"] for k, v in run["sources"].items()} == {"ts": 4, "nts": 4}, run["policy"]
        for src in spec.sources:
            for i in range(src.samples):
                x = zoo.example_input("tiny", batch=src.batch, seed=input_seed(spec.seed, src.name, i))
                with torch.no_grad():
                    ref = model(x).numpy()
                got = np.asarray(outputs[run["policy"]][task_id(src.name, i)])
                np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-5, atol=1e-6)
        for line in (run_dir / run["policy"] / "spans.jsonl").read_text().splitlines():
            s = json.loads(line)
            if s["kind"] == "transfer":
                moved[s["node"]] += s["bytes"]
                moved[s["peer"]] += s["bytes"]
    assert sum(moved.values()) > 0, "no policy offloaded anything: the data-plane checks would prove little"
    assert (run_dir / "tasks.parquet").exists() and (run_dir / "report.md").exists()
    assert (run_dir / "lab-check.json").exists()

    # Data plane: the model data crossed data0 only, between data-plane addresses (the backend's pcaps
    # of the agent port, and the interface counters read inside each namespace by the test).
    # Control: no packet of the agent port on the management interface: it rode inside SSH.
    data_addrs = {lab.data_addr(r) for r in HOSTS}
    for role in HOSTS:
        d_data = sum(after[role]["data0"][k] - before[role]["data0"][k] for k in ("rx", "tx"))
        d_mgmt = sum(after[role]["mgmt0"][k] - before[role]["mgmt0"][k] for k in ("rx", "tx"))
        pcaps = run_dir / "hosts" / role / "pcap"
        on_data = ip_packets(pcaps / "data-data0.pcap")
        print(f"[ssh run] {role}: data0 {d_data} B (activations {moved[role]} B), mgmt0 {d_mgmt} B")
        assert on_data and all({src, dst} <= data_addrs for src, dst, *_ in on_data), on_data[:3]
        assert d_data >= moved[role] and sum(n for *_, n in on_data) >= moved[role]
        assert ip_packets(pcaps / "mgmt-mgmt0.pcap") == []
        assert d_mgmt > 0  # the SSH connections (control, harvest) did cross it
        assert (run_dir / "hosts" / role / "traces" / f"{role}.spans.jsonl").exists()
        assert (run_dir / "hosts" / role / "agent.log").read_text().count("pamdi-agent ready") == 1

    # pamdi shaped h1's and h2's egress (tbf per peer, its counters in tc_stats.json) and removed it
    # afterwards; h3 (shape: false) keeps the lab's own tbf, untouched.
    stats = json.loads((run_dir / "tc_stats.json").read_text())
    down = {row["node"]: row for row in stats["down"]}
    assert sum(c["bytes"] for c in down["h1"]["tbf_to_peer"].values()) > 0
    assert "tbf_to_peer" not in down["h3"]
    assert "htb" not in lab.qdiscs("h1") and "htb" not in lab.qdiscs("h2")
    assert "tbf" in lab.qdiscs("h3") and "htb" not in lab.qdiscs("h3")
    topo = json.loads((run_dir / "topology.json").read_text())
    assert topo["nodes"]["h3"]["proxy_jump"] == "j"
    shaped = {(lk["a"], lk["b"]): (lk["shaped_a_to_b"], lk["shaped_b_to_a"]) for lk in topo["links"]}
    assert shaped == {("h1", "h2"): (True, True), ("h1", "h3"): (True, False), ("h2", "h3"): (True, False)}

    # Agents gone; the run's keys left the hosts before the harvest and never reached the run folder.
    assert lab.agent_pids() == []
    for root in (run_dir, *(lab.workdir(r) for r in HOSTS)):
        assert not [f for f in root.rglob("*") if f.name.endswith("key_secret")], root
    assert exp.summary["curve"]["on"]


def _hosts_with_faults(lab: SshLab, tmp_path: Path) -> list[dict[str, object]]:
    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    other = tmp_path / "other" / "pamdi_node"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text('__version__ = "0.0.0-other"\n')
    by_if = {"data_plane": {"interface": "data0"}}
    return [
        lab.host_entry("h1", name="a", key=str(wrong), **by_if),
        lab.host_entry("h1", name="b", port=2222, **by_if),  # no sshd there
        lab.host_entry("h2", name="c", python="/nonexistent/python3", **by_if),
        lab.host_entry("h3", name="d", env={"PYTHONPATH": str(other.parent)}, **by_if),
        lab.host_entry("h1", name="e", user=lab.plain_user, shape=True, **by_if),
    ]


def test_bad_hosts_are_refused_one_line_each_and_nothing_is_left(lab: SshLab, tmp_path: Path) -> None:
    inv = lab.write_inventory(tmp_path / "bad.yaml", _hosts_with_faults(lab, tmp_path))
    spec = dict(SPEC, nodes=[{"name": n} for n in "abcde"], sources=[dict(SPEC["sources"][0], node="a")])
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    r = run_pamdi(lab, "emulate", str(spec_path), "--backend", "ssh", "-i", str(inv), "--out", str(tmp_path / "run"))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    m, j = lab.mgmt_addr("h1"), lab.mgmt_addr("h3")
    for line in (f"host a ({m}): auth: key {tmp_path / 'wrong_key'} refused for user {lab.user}",
                 f"host b ({m}): unreachable: ",
                 f"host c ({lab.mgmt_addr('h2')}): missing-python: python /nonexistent/python3 did not run",
                 f"host d ({j}): version: python {sys.executable} has pamdi 0.0.0-other, this machine",
                 f"host e ({m}): tc: shape: true needs root on the device"):
        assert line in r.stderr, (line, r.stderr)
    assert "Connection refused" in r.stderr
    assert lab.agent_pids() == []

    # An agent that dies after the others started (h3 asked for a GPU it lacks): one line naming
    # the host, and the agents already running on h1 and h2 are stopped, their shaping removed.
    good = lab.write_inventory(tmp_path / "good.yaml")
    spec = dict(SPEC, nodes=[*SPEC["nodes"][:2], {"name": "h3", "device_type": "cuda", "speed": 1.0}])
    spec_path.write_text(yaml.safe_dump(spec))
    r = run_pamdi(lab, "emulate", str(spec_path), "--backend", "ssh", "-i", str(good), "--out", str(tmp_path / "run2"))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"host h3 ({j}): agent: agent h3 exited before it was ready: --device:" in r.stderr, r.stderr
    assert lab.agent_pids() == [] and "htb" not in lab.qdiscs("h1")

    # A bad inventory field: one line naming the host and the field, exit 2, before any connection.
    bad = lab.inventory()
    bad["hosts"][1]["port"] = 70000  # type: ignore[index]
    (tmp_path / "field.yaml").write_text(yaml.safe_dump(bad))
    r = run_pamdi(lab, "lab", "check", str(tmp_path / "field.yaml"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "hosts[1] (h2).port: Input should be less than or equal to 65535" in r.stderr


def _bare_env(lab: SshLab, where: Path, shared: Path) -> str:
    """A Python environment with pamdi's dependencies (this venv's site-packages, through a .pth
    file to a folder of links that leaves pamdi itself out) but not pamdi: what deploy starts from."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = next((where / "lib").glob("python*/site-packages"))
    (site / "lab-deps.pth").write_text(str(shared) + "\n")
    return str(where / "bin" / "python")


def test_deploy_from_a_wheelhouse_then_run(lab: SshLab, tmp_path: Path) -> None:
    import sysconfig

    shared = tmp_path / "deps"
    shared.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("pamdi", "__editable__", "_pamdi")) and entry.suffix != ".pth":
            (shared / entry.name).symlink_to(entry)
    hosts = [lab.host_entry(r, python=_bare_env(lab, tmp_path / f"env-{r}", shared), env={}) for r in HOSTS]
    inv = lab.write_inventory(tmp_path / "deploy.yaml", hosts)
    env = {k: v for k, v in lab.env().items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(REPO)}
    r = run_pamdi(lab, "lab", "check", str(inv), "--no-links", env=env)
    assert r.returncode == 1
    for role in HOSTS:
        assert f"host {role} ({lab.mgmt_addr(role)}): missing-pamdi: pamdi is not installed" in r.stderr, r.stderr

    r = run_pamdi(lab, "lab", "deploy", str(inv), "--wheelhouse", str(tmp_path / "wheels"), "--pamdi-only", "--json",
              env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    from pamdi_node import __version__

    for rep in json.loads(r.stdout)["hosts"]:
        assert rep["pamdi"] == __version__ and rep["problems"] == [], rep
        assert rep["pamdi_path"].startswith(str(tmp_path / f"env-{rep['host']}")), rep
        assert rep["sent"] == [next((tmp_path / "wheels").glob("pamdi-*.whl")).name]

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    r = run_pamdi(lab, "emulate", str(spec_path), "--backend", "ssh", "-i", str(inv), "--json", "--out",
              str(tmp_path / "run"), env=env)
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)["runs"][0]
    assert {k: v["completed"] for k, v in run["sources"].items()} == {"ts": 4, "nts": 4}
    facts = json.loads((tmp_path / "run" / "lab-nodes.json").read_text())
    assert all(f["facts"]["pamdi_path"].startswith(str(tmp_path)) for f in facts.values())


def test_lab_profile_feeds_the_simulator(lab: SshLab, inventory: Path, tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    out, lab_spec = tmp_path / "profiles", tmp_path / "lab-spec.yaml"
    r = run_pamdi(lab, "lab", "profile", str(inventory), "--model", "tiny", "--out", str(out), "--repeats", "3",
              "--warmup", "1", "--spec", str(spec_path), "--write-spec", str(lab_spec), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["reference"] == "h1" and summary["speeds"]["h1"] == 1.0
    for role in HOSTS:
        prof = json.loads((out / role / "tiny_b1_t1.json").read_text())
        assert prof["model"] == "tiny" and all(b["time_s"] > 0 for b in prof["blocks"])
    assert json.loads((out / "tiny_b1_t1.json").read_text()) == json.loads((out / "h1" / "tiny_b1_t1.json").read_text())
    written = yaml.safe_load(lab_spec.read_text())
    assert written["profiles"] == str(out.resolve()) and written["device_time"] == "native"
    assert [n["speed"] for n in written["nodes"]] == [summary["speeds"][r] for r in HOSTS]
    r = run_pamdi(lab, "simulate", str(lab_spec), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["runs"][0]["sources"]["ts"]["completed"] == 4
    assert os.path.isdir(out)
