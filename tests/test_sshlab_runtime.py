"""The ``ssh`` backend during a run, on the lab of tests/sshlab_support.py: Ctrl-C, links reshaped
in place (``set_link`` and a radio scenario), a device that leaves and comes back, hosts given as
``~/.ssh/config`` aliases."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.sshlab_support import (  # noqa: F401  (inventory_fixture, lab_fixture: the lab, inventory fixtures)
    HOSTS,
    PAMDI,
    REPO,
    SPEC,
    SshLab,
    inventory_fixture,
    lab_fixture,
    run_pamdi,
)

pytestmark = [pytest.mark.root]


def test_ctrl_c_stops_the_agents_removes_keys_and_shaping_and_keeps_the_traces(lab: SshLab, inventory: Path,
                                                                               tmp_path: Path) -> None:
    import signal
    import time

    spec = dict(SPEC, sources=[dict(SPEC["sources"][0], samples=400, interval_ms=50)])
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([*PAMDI, "emulate", str(spec_path), "--backend", "ssh", "-i", str(inventory), "--out",
                             str(run_dir), "--json"], env=lab.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        deadline = time.time() + 120
        # Mid-run: every agent up (the backend writes topology.json then) and the first tasks' records
        # written at the source.
        topology = run_dir / "topology.json"

        def source_records() -> str:
            if not topology.exists():
                return ""
            trace = Path(json.loads(topology.read_text())["nodes"]["h1"]["workdir"]) / "traces" / "h1.tasks.jsonl"
            return trace.read_text() if trace.exists() else ""

        while not (source_records().strip() and len(lab.agent_pids()) == 3):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.2)
        assert "htb" in lab.qdiscs("h1") and list(lab.workdir("h2").glob("*/keys/private/*"))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: agents stopped" in err and "Traceback" not in err, err
    assert lab.agent_pids() == []
    assert "htb" not in lab.qdiscs("h1") and "htb" not in lab.qdiscs("h2")
    for role in HOSTS:
        assert not list(lab.workdir(role).glob("*/keys")), role
        assert (run_dir / "hosts" / role / "traces" / f"{role}.spans.jsonl").exists()
    assert (run_dir / "hosts" / "h1" / "traces" / "h1.tasks.jsonl").read_text().strip()


def test_links_are_reshaped_in_place_by_set_link_and_by_a_radio_scenario(lab: SshLab, inventory: Path,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from orchestrator.backends.base import RunContext
    from orchestrator.backends.ssh import SshBackend
    from orchestrator.spec import LinkParams, parse_spec

    monkeypatch.setenv("SSH_AUTH_SOCK", lab.env()["SSH_AUTH_SOCK"])
    spec = parse_spec(dict(SPEC, links=[{"a": "h1", "b": "h2", "rate_mbit": 20, "scenario": "wifi-fluctuating"}]))
    be = SshBackend(inventory, scenario_tick_s=0.2)
    try:
        be.up(spec, RunContext(run_id="reshape", run_dir=tmp_path / "run"))
        assert "rate 20Mbit" in lab.qdiscs("h1") and "rate 20Mbit" in lab.qdiscs("h2")
        # The scenario drops to 14 Mbit/s after 2 s: both shaped directions follow, in place.
        deadline = time.time() + 30
        while not ("rate 14Mbit" in lab.qdiscs("h1") and "rate 14Mbit" in lab.qdiscs("h2")):
            assert time.time() < deadline, (lab.qdiscs("h1"), lab.qdiscs("h2"))
            time.sleep(0.2)
        be.set_link("h1", "h3", LinkParams(rate_mbit=7))
        assert "rate 7Mbit" in lab.qdiscs("h1")
        assert "rate 40Mbit" in lab.qdiscs("h3") and "7Mbit" not in lab.qdiscs("h3")  # shape: false, untouched
    finally:
        be.down()
    assert "htb" not in lab.qdiscs("h1") and lab.agent_pids() == []
    assert json.loads((tmp_path / "run" / "topology.json").read_text())["links"][0]["scenario"] == "wifi-fluctuating"


# A restart that raised in the runner's timer thread would otherwise pass as a warning.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_device_that_leaves_and_comes_back_mid_run(lab: SshLab, inventory: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec's failures on real hosts: h3's agent is SIGKILLed over SSH at 0.5 s and started again
    1 s later (kill / restart of the backend); no task is lost silently."""
    from orchestrator.backends.ssh import SshBackend
    from orchestrator.experiment import run_experiment
    from orchestrator.runner import RunOptions
    from orchestrator.spec import parse_spec

    monkeypatch.setenv("SSH_AUTH_SOCK", lab.env()["SSH_AUTH_SOCK"])
    monkeypatch.setenv("PAMDI_STATE_DIR", str(tmp_path / "state"))
    spec = parse_spec(dict(SPEC, sources=[dict(SPEC["sources"][0], samples=60, interval_ms=50)],
                           failures=[{"node": "h3", "at_s": 0.5, "recover_after_s": 1.0}], beacon_period_ms=50))
    exp = run_experiment(spec, SshBackend(inventory), tmp_path / "run", RunOptions(task_timeout_s=20),
                         write_report=False)
    assert exp.summary is not None
    run = exp.runner.results[0]
    assert len({r.task_id for r in run.records}) == 60
    assert all(r.reason for r in run.records if r.status != "completed")
    assert exp.summary["runs"][0]["sources"]["ts"]["completed"] >= 50
    h3 = tmp_path / "run" / "hosts" / "h3"
    assert (h3 / "agent.previous.log").read_text().count("pamdi-agent ready") == 1  # the first agent
    assert (h3 / "agent.log").read_text().count("pamdi-agent ready") == 1  # the one started again
    assert lab.agent_pids() == []


def test_hosts_may_be_aliases_of_the_users_ssh_config(lab: SshLab, tmp_path: Path) -> None:
    """`address: labh3` resolved as ssh would: HostName, User, IdentityFile and ProxyJump come from
    ~/.ssh/config (no user, key, port or proxy_jump in the inventory)."""
    import shutil

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(lab.known_hosts, home / ".ssh" / "known_hosts")
    (home / ".ssh" / "config").write_text(
        f"Host labh1\n  HostName {lab.mgmt_addr('h1')}\n  User {lab.user}\n  IdentityFile {lab.key_plain}\n"
        f"Host labjump\n  HostName {lab.mgmt_addr('j')}\n  User {lab.jump_user}\n  IdentityFile {lab.key_plain}\n"
        f"Host labh3\n  HostName {lab.mgmt_addr('h3')}\n  User {lab.user}\n  IdentityFile {lab.key_plain}\n"
        "  ProxyJump labjump\n")
    hosts = [{k: v for k, v in lab.host_entry(r, address=f"lab{r}").items() if k not in ("user", "key", "proxy_jump")}
             for r in ("h1", "h3")]
    inv = lab.inventory(hosts)
    del inv["defaults"]  # known_hosts: the default, ~/.ssh/known_hosts of that HOME
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(inv))
    env = {k: v for k, v in lab.env().items() if k != "SSH_AUTH_SOCK"} | {"HOME": str(home)}
    r = run_pamdi(lab, "lab", "check", str(tmp_path / "lab.yaml"), "--no-links", "--json", env=env)
    assert r.returncode == 0, r.stderr
    # sshd lets in only the lab user (AllowUsers): the login itself proves User came from the config
    # (`id -un` names the uid-0 alias "root").
    got = {h["host"]: (h["reachable"], h["uid"], h["data_address"]) for h in json.loads(r.stdout)["hosts"]}
    assert got == {"h1": (True, 0, lab.data_addr("h1")), "h3": (True, 0, lab.data_addr("h3"))}
