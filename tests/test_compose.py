"""``pamdi compose``: the rendered project, and a real docker-compose run of it."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from orchestrator.compose import render_compose
from orchestrator.compose_scenarios import read_changes
from orchestrator.compose_up import up_project
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
        # 0.5 CPU with the netns backend's short CFS period, not `cpus:` (Docker's 100 ms period)
        svc = compose["services"]["c"]
        assert svc["cpu_quota"] == 2500 and svc["cpu_period"] == 5000 and "cpus" not in svc
    else:
        assert all("cpu_quota" not in svc and "cpus" not in svc for svc in compose["services"].values())
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


# The docker run's b-c link (c's tasks go to b over it): a user scenario (only on this host: the
# rendered project carries its points), 40 Mbit/s, then 4 Mbit/s from STEP_S on (nominal seconds;
# the run stretches them). The step comes before the first task (the runner waits for three beacons
# after the clock starts), so every activation c sends b crosses the stepped shaper.
STEP_S = 0.1
STEP = {"name": "pamdi-test-step", "description": "40 then 4 Mbit/s", "points": [
    {"t_s": 0, "rate_mbit": 40}, {"t_s": STEP_S, "rate_mbit": 4}]}


def _tc_mbit(rate: str) -> float:
    """tc's printed rate (``4Mbit``, ``2500Kbit``, ``800bit``) in Mbit/s."""
    value, unit = re.fullmatch(r"([\d.]+)([KMG]?)bit", rate).groups()  # type: ignore[union-attr]
    return float(value) * {"": 1e-6, "K": 1e-3, "M": 1.0, "G": 1e3}[unit]


@pytest.mark.docker
def test_compose_project_runs_with_docker_compose(docker_cli, node_image, tmp_path: Path,  # noqa: F811
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    compose_bin = shutil.which("docker-compose")
    assert compose_bin, "docker-compose missing: scripts/bootstrap.d/docker.sh installs it"
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "step.yaml").write_text(yaml.safe_dump(STEP))
    monkeypatch.setenv("PAMDI_SCENARIOS_DIR", str(tmp_path / "scenarios"))
    spec = parse_spec({**SPEC, "links": [*SPEC["links"], {"a": "b", "b": "c", "rate_mbit": 40,
                                                          "scenario": STEP["name"]}]})
    out = tmp_path / "proj"
    project = render_compose(spec, out, image=node_image, keep_outputs=True)
    name = f"pamditest{tmp_path.name[-8:].lower().replace('_', '')}"
    # From the host, as `pamdi compose --up`: up, every container's log saved, down, the report.
    done = up_project(out, cli=[compose_bin], project_name=name, capture=True, timeout_s=300)
    assert done.returncode == 0, done.output[-3000:]
    logs = "".join((out / "traces" / "logs" / f"{n}.log").read_text() for n in ("a", "c"))
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
    # The coordinator ran the one experiment lifecycle (a manifest); the report was written here.
    assert json.loads((traces / "manifest.json").read_text())["compose"]["project"] == "pamdi-compose3"
    assert done.report is not None, done.report_error
    assert Path(done.report["report"]).is_file() and all(Path(p).is_file() for p in done.report["svg"])
    assert (traces / "report.md").is_file() and list(traces.glob("*.parquet"))
    _check_scenario_followed(traces, k)
    # Nothing of the project is left.
    left = [c.name for c in docker_cli.containers.list(all=True, filters={"label": f"pamdi.run={project.run_id}"})]
    left += [n.name for n in docker_cli.networks.list(filters={"label": f"pamdi.run={project.run_id}"})]
    assert left == []


def _check_scenario_followed(traces: Path, k: float) -> None:
    """Both ends of b-c switched their tbf to 4/k Mbit/s at STEP_S x k after the coordinator's clock
    started (what the kernel reported then), in the containers, logged it under traces/, and the
    activations c sent b afterwards went at that rate, not at the 40/k it started with."""
    t0 = json.loads((traces / "scenario_clock.json").read_text())["t0_unix"]
    rows = read_changes(traces)
    print("scenario log:", json.dumps(rows, indent=1))
    assert {(r["node"], r["t0_unix"]) for r in rows if r["event"] == "clock"} == {("b", t0), ("c", t0)}
    changes = [r for r in rows if r["event"] == "change"]
    assert {(r["node"], r["peer"]) for r in changes} == {("b", "c"), ("c", "b")}
    for r in changes:
        assert "error" not in r, r
        assert r["step_t_s"] == pytest.approx(STEP_S * k)
        assert r["t_s"] == pytest.approx(STEP_S * k, abs=0.1)  # applied at its time (slept to, not polled)
        assert r["unix"] - t0 == pytest.approx(STEP_S * k, abs=0.15)
        assert _tc_mbit(r["tc_rate"]) == pytest.approx(4.0 / k, rel=0.02)  # the kernel's tbf, read back
    # Measured: c -> b transfers (c's serialize to b's receipt, queueing included) after the step.
    # A lone message can beat the rate by its token bucket (2 ms of traffic or two frames).
    spans = [json.loads(line) for line in (traces / "agents" / "b.spans.jsonl").read_text().splitlines()]
    moves = [s for s in spans if s["kind"] == "transfer" and s["peer"] == "c"]
    step_at = max(r["unix"] for r in changes)
    assert moves and all(s["start"] > step_at for s in moves)
    goodput = sorted(s["bytes"] * 8 / (s["end"] - s["start"]) / 1e6 for s in moves)
    print(f"k {k:.2f}: c->b goodput median {goodput[len(goodput) // 2]:.3f} Mbit/s, max {goodput[-1]:.3f}; "
          f"shaped {4 / k:.3f} (was {40 / k:.3f})")
    assert 0.3 * 4 / k < goodput[len(goodput) // 2] < 1.5 * 4 / k
    assert goodput[-1] < 0.2 * 40 / k
