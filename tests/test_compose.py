"""``pamdi compose``: the rendered project, and a real docker-compose run of it."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from orchestrator.compose import render_compose
from orchestrator.spec import parse_spec
from pamdi_node.agent.config import input_seed, task_id
from pamdi_node.models import zoo
from tests.docker_support import docker_cli, node_image  # noqa: F401  (fixtures)

SPEC = {
    "name": "compose3",
    "seed": 5,
    "nodes": [{"name": "a"}, {"name": "b", "threads": 1}, {"name": "c", "speed": 0.5}],
    "full_mesh": {"rate_mbit": 40},
    "links": [{"a": "a", "b": "c", "rate_mbit": 10}],
    "sources": [
        {"name": "ts", "node": "a", "model": "resnet56", "priority": 10, "samples": 12, "interval_ms": 10},
        {"name": "nts", "node": "c", "model": "resnet56", "priority": 1, "samples": 16, "interval_ms": 6},
    ],
    "policy": "pa-mdi",
    "beacon_period_ms": 50,
}


@pytest.mark.parametrize("device_time", ["quota", "profile"])
def test_rendered_project_is_consistent(tmp_path: Path, device_time: str) -> None:
    spec = parse_spec(SPEC)
    project = render_compose(spec, tmp_path, image="img:x", taken_subnets=["10.213.0.0/24"], device_time=device_time)
    compose = yaml.safe_load(project.compose_file.read_text())
    assert set(compose["services"]) == {"a", "b", "c", "coordinator"}
    assert set(compose["networks"]) == {"ctl", "a-b", "a-c", "b-c"}
    subnets = {name: ipaddress.ip_network(n["ipam"]["config"][0]["subnet"]) for name, n in compose["networks"].items()}
    assert ipaddress.ip_network("10.213.0.0/24") not in subnets.values()  # taken subnets are skipped
    assert len(set(subnets.values())) == 4 and all(n["internal"] for n in compose["networks"].values())
    job = json.loads((tmp_path / "pamdi/run.json").read_text())
    assert job["device_time"] == device_time
    k = job["time_stretch"]  # links are shaped stretched; the coordinator divides times by k again
    assert (k == 1.0) if device_time == "quota" else (k >= 1.0)
    for node in "abc":
        svc = compose["services"][node]
        assert svc["cap_add"] == ["NET_ADMIN"] and svc["image"] == "img:x"
        cfg = json.loads((tmp_path / f"pamdi/nodes/{node}.json").read_text())
        # Every address a peer dials is this node's address on their shared link network.
        for link in cfg["links"]:
            net = "-".join(sorted((node, link["peer"])))
            addr = svc["networks"][net]["ipv4_address"]
            assert ipaddress.ip_address(addr) in subnets[net] and link["subnet"] == str(subnets[net])
            assert job["endpoints"][node]["data"][link["peer"]] == f"tcp://{addr}:7000"
            assert link["rate_mbit"] == pytest.approx((10 if net == "a-c" else 40) / k)
        assert job["endpoints"][node]["control"] == f"tcp://{svc['networks']['ctl']['ipv4_address']}:7000"
        assert cfg["agent_args"][:2] == ["--listen", "tcp://0.0.0.0:7000"]
    if device_time == "quota":  # a CPU quota only where it is the device-time model
        assert compose["services"]["c"]["cpus"] == 0.5
    else:
        assert all("cpus" not in svc for svc in compose["services"].values())
    # The nominal spec, naming the shipped-along profiles the run holds and predicts with.
    shipped = parse_spec(yaml.safe_load((tmp_path / "pamdi/spec.yaml").read_text()))
    assert shipped == spec.model_copy(update={"profiles": "/pamdi/profiles"})
    assert (tmp_path / "pamdi/profiles/resnet56_b1_t1.json").is_file()
    # Curve: each container mounts only its own secret; the coordinator only the orchestrator's.
    assert job["keys"] == "/run/pamdi/keys"
    for svc, secret in (("a", "a"), ("c", "c"), ("coordinator", "orchestrator")):
        mounted = [v for v in compose["services"][svc]["volumes"] if v.endswith(":/run/pamdi/keys:ro")]
        folder = tmp_path / mounted[0].split(":")[0]
        assert [p.name for p in (folder / "private").iterdir()] == [f"{secret}.key_secret"]
        assert len(list((folder / "public").iterdir())) == 4
    assert "--keys" in json.loads((tmp_path / "pamdi/nodes/a.json").read_text())["agent_args"]
    assert not list((tmp_path / "traces").rglob("*key*"))
    # Current Compose conventions: no `version:`, the project named in .env, healthchecks that the
    # coordinator waits for.
    assert "version" not in compose
    assert (tmp_path / ".env").read_text() == "COMPOSE_PROJECT_NAME=pamdi-compose3\n"
    assert compose["services"]["coordinator"]["depends_on"] == {n: {"condition": "service_healthy"} for n in "abc"}
    for node in "abc":
        test = compose["services"][node]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python3"] and "7000" in test[-1]


def test_reserved_service_name(tmp_path: Path) -> None:
    spec = dict(SPEC, nodes=[{"name": "coordinator"}, {"name": "a"}, {"name": "c"}])
    with pytest.raises(ValueError, match="reserved"):
        render_compose(parse_spec(spec), tmp_path, taken_subnets=[])


@pytest.mark.docker
def test_compose_project_runs_with_docker_compose(docker_cli, node_image, tmp_path: Path) -> None:  # noqa: F811
    compose_bin = shutil.which("docker-compose")
    assert compose_bin, "docker-compose missing: scripts/bootstrap.d/docker.sh installs it"
    spec = parse_spec(SPEC)
    out = tmp_path / "proj"
    project = render_compose(spec, out, image=node_image, keep_outputs=True)
    name = f"pamditest{tmp_path.name[-8:].lower().replace('_', '')}"
    base = [compose_bin, "-p", name, "-f", str(project.compose_file)]
    try:
        up = subprocess.run([*base, "up", "--abort-on-container-exit", "--exit-code-from", "coordinator"],
                            capture_output=True, text=True, timeout=300)
        logs = subprocess.run([*base, "logs", "--no-color", "a", "c"], capture_output=True, text=True,
                              timeout=60).stdout
    finally:
        down = subprocess.run([*base, "down", "--remove-orphans"], capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert down.returncode == 0, down.stderr
    # The nodes shaped their own links from their config at start.
    shaped = [json.loads(line.split("|", 1)[1]) for line in logs.splitlines() if '"shaped"' in line]
    rates = {(s["node"], link["peer"]): link["rate_mbit"] for s in shaped for link in s["shaped"]}
    k = json.loads((out / "pamdi" / "run.json").read_text())["time_stretch"]  # shaped on the stretched time line
    assert rates == pytest.approx({("a", "b"): 40.0 / k, ("a", "c"): 10.0 / k, ("c", "a"): 10.0 / k,
                                   ("c", "b"): 40.0 / k})

    traces = out / "traces"
    summary = json.loads((traces / "summary.json").read_text())
    assert summary["curve"]["on"]  # the project ran under CurveZMQ with the keys rendered with it
    assert not [f for f in traces.rglob("*") if f.name.endswith("key_secret")]
    run = summary["runs"][0]
    assert {k: (v["completed"], v["failed"]) for k, v in run["sources"].items()} == {"ts": (12, 0), "nts": (16, 0)}
    for node in "abc":
        assert (traces / "agents" / f"{node}.spans.jsonl").stat().st_size > 0
    assert (traces / "pa-mdi" / "tasks.jsonl").exists()
    outputs = json.loads((traces / "outputs.json").read_text())["pa-mdi"]
    model = zoo.build_blocks("resnet56", 0, zoo.num_blocks("resnet56"), seed=spec.seed).eval()
    for src in spec.sources:
        for i in range(src.samples):
            x = zoo.example_input("resnet56", batch=src.batch, seed=input_seed(spec.seed, src.name, i))
            with torch.no_grad():
                ref = model(x).numpy()
            np.testing.assert_allclose(np.asarray(outputs[task_id(src.name, i)]).reshape(ref.shape), ref,
                                       rtol=1e-4, atol=1e-5)
    # The coordinator ran the one experiment lifecycle (a manifest); the report is written here.
    assert json.loads((traces / "manifest.json").read_text())["compose"]["project"] == "pamdi-compose3"
    from results.report import report

    rep = report(traces)
    assert Path(rep["report"]).is_file() and all(Path(p).is_file() for p in rep["svg"])
    # Nothing of the project is left.
    left = [c.name for c in docker_cli.containers.list(all=True, filters={"label": f"pamdi.run={project.run_id}"})]
    left += [n.name for n in docker_cli.networks.list(filters={"label": f"pamdi.run={project.run_id}"})]
    assert left == []
