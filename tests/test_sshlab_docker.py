"""``runtime: docker`` lab hosts: the node image under Docker with the host's network. The lab's
"h4" lives in the root namespace (where dockerd's host network is the host's own; see
tests/sshlab_support.py) beside the namespace hosts h1 and h2; its agent runs in the
node image built from this tree (``tests/docker_support.py``), its facts are read from the image,
and its results must equal the monolithic model like everyone's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.docker_support import docker_cli, node_image  # noqa: F401 - fixtures
from tests.sshlab_support import PAMDI, REPO, SshLab, available

pytestmark = [pytest.mark.root, pytest.mark.docker]


@pytest.fixture(scope="module")
def lab(node_image):  # noqa: F811 - the fixture
    why = available()
    if why:
        pytest.skip(why)
    lab = SshLab(docker_host=True, docker_image=node_image).start()
    yield lab
    lab.close()


def test_a_docker_host_is_checked_from_its_image_and_runs_the_agent_there(lab: SshLab, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from orchestrator.backends.ssh import SshBackend
    from orchestrator.experiment import run_experiment
    from orchestrator.runner import RunOptions
    from orchestrator.spec import parse_spec
    from pamdi_node import __version__
    from pamdi_node.agent.config import input_seed, task_id
    from pamdi_node.models import zoo

    inv = lab.write_inventory(tmp_path / "lab.yaml", [lab.host_entry(r) for r in ("h1", "h2", "h4")])
    r = subprocess.run([*PAMDI, "lab", "check", str(inv), "--no-links", "--json"], env=lab.env(),
                       capture_output=True, text=True, timeout=180, cwd=REPO)
    assert r.returncode == 0, r.stderr
    h4 = next(h for h in json.loads(r.stdout)["hosts"] if h["host"] == "h4")
    assert h4["runtime"] == "docker" and h4["image"] and h4["pamdi"] == __version__ and h4["torch"], h4
    assert (h4["data_address"], h4["data_interface"]) == (lab.data_addr("h4"), lab.data_ifname("h4"))

    for k, v in lab.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PAMDI_STATE_DIR", str(tmp_path / "state"))
    # A source on h4 computes in the container whatever the others decide; slow h1 and h2 offload
    # there too once they have heard its beacons.
    spec = parse_spec({
        "name": "dock", "seed": 3, "full_mesh": {"rate_mbit": 100},
        "nodes": [{"name": "h1", "speed": 0.02}, {"name": "h2", "speed": 0.02}, {"name": "h4"}],
        "sources": [{"name": "ts", "node": "h1", "model": "tiny", "priority": 10, "samples": 4, "interval_ms": 20},
                    {"name": "nts", "node": "h4", "model": "tiny", "priority": 1, "samples": 4, "interval_ms": 20}],
        "policy": ["pa-mdi", "ddi"]})
    before = lab.counters("h4")
    exp = run_experiment(spec, SshBackend(inv), tmp_path / "run", RunOptions(keep_outputs=True),
                         run_id=f"dock-{lab.tag}")
    after = lab.counters("h4")
    assert exp.summary is not None
    model = zoo.build_blocks("tiny", 0, zoo.num_blocks("tiny"), seed=spec.seed).eval()
    at_h4 = 0
    for result in exp.runner.results:
        for src in spec.sources:
            for i in range(src.samples):
                x = zoo.example_input("tiny", batch=src.batch, seed=input_seed(spec.seed, src.name, i))
                with torch.no_grad():
                    ref = model(x).numpy()
                got = np.asarray(result.outputs[task_id(src.name, i)])
                np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=1e-5, atol=1e-6)
        for line in (tmp_path / "run" / result.policy / "spans.jsonl").read_text().splitlines():
            s = json.loads(line)
            at_h4 += s["kind"] == "compute" and s["node"] == "h4"
    assert at_h4 > 0, "nothing ran in the container"
    d_data = sum(after["data0"][k] - before["data0"][k] for k in ("rx", "tx"))
    assert d_data > 2_000, d_data  # the container's model data crossed h4's data-plane veth
    log = (tmp_path / "run" / "hosts" / "h4" / "agent.log").read_text()
    assert log.count("pamdi-agent ready") == 1, log
    assert lab.containers() == [] and lab.agent_pids() == []
