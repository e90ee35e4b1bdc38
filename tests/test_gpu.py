"""GPU nodes: what works without a GPU (checks, errors, the model of a GPU node) and, marked
``cuda``, what needs one (skipped here; ``scripts/gpu-check.sh`` runs them on a GPU machine).

Without CUDA: a GPU node is refused in one line before anything starts, by the spec (a bad
``device_type``), the runner (this host's torch sees no GPU), compose (CPU-only image), the agent
and the CLI; a GPU node is simulated from its GPU profile (the speed it implies is checked against
the profile's own total). With CUDA: blocks on the GPU against the CPU monolithic model, GPU
profiles, and a 3-agent loopback emulation with one GPU node under every policy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from orchestrator.backends import get_backend
from orchestrator.cli import app
from orchestrator.gpuprofiles import resolve_gpu_speeds
from orchestrator.runner import RunError, Runner, RunOptions
from orchestrator.simulator import SimulationError, load_profiles, run_policies
from orchestrator.spec import POLICY_NAMES, SpecError, parse_spec
from pamdi_node.models.profile import DEFAULT_HOST, SHIPPED_DIR, ModelProfile, load_shipped_profile, profile_filename

cli = CliRunner()
NO_CUDA = not torch.cuda.is_available()


def _spec(folder: Path | None, **gpu_node: object) -> dict:
    return {
        "name": "gpu-node", "seed": 3, **({"profiles": str(folder)} if folder else {}),
        "nodes": [{"name": "a", "speed": 0.5}, {"name": "g", "device_type": "cuda", **gpu_node}],
        "full_mesh": {"rate_mbit": 1000},
        "sources": [{"name": "s", "node": "g", "model": "resnet56", "samples": 4, "interval_ms": 1000}],
    }


def _stand_in_gpu_profile(folder: Path) -> tuple[ModelProfile, ModelProfile]:
    """The shipped CPU profile and a stand-in GPU profile of ResNet-56 in ``folder``: the CPU times
    divided by uneven per-block gains (5x-11x), as a GPU's are (no GPU here to measure one)."""
    ref = load_shipped_profile("resnet56")
    blocks = tuple(b.model_copy(update={"time_s": b.time_s / (5 + i % 7)}) for i, b in enumerate(ref.blocks))
    gpu = ref.model_copy(update={"device": "cuda", "blocks": blocks, "host": {**ref.host, "gpu": "stand-in"}})
    folder.mkdir(parents=True, exist_ok=True)
    ref.save(folder / profile_filename("resnet56", 1, 1))
    gpu.save(folder / profile_filename("resnet56", 1, device="cuda"))
    return ref, gpu


# ------------------------------------------------------------------------------- without a GPU
def test_device_type_is_checked_by_the_spec() -> None:
    bad = _spec(None)
    bad["nodes"][1]["device_type"] = "gpu0"
    with pytest.raises(SpecError, match=r"nodes.*device_type") as err:
        parse_spec(bad)
    assert "\n" not in str(err.value)
    assert parse_spec(_spec(None, speed=2.0)).node("g").device_type == "cuda"
    assert parse_spec(_spec(None, device_type="cuda:1", speed=2.0)).node("g").device_type == "cuda:1"


def test_a_gpu_node_is_simulated_from_its_gpu_profile(tmp_path: Path) -> None:
    ref, gpu = _stand_in_gpu_profile(tmp_path / "profiles")
    spec = parse_spec(_spec(tmp_path / "profiles"))
    resolved, info = resolve_gpu_speeds(spec, load_profiles(spec))
    # The speed is the reference total over the GPU total (one model in this spec).
    assert resolved.node("g").speed == pytest.approx(ref.total_time_s / gpu.total_time_s, rel=1e-12)
    assert info["nodes"] == ["g"] and info["per_model"]["resnet56_b1"]["gpu"] == "stand-in"
    assert resolved.node("a").speed == 0.5
    # Local on the GPU node: every task takes exactly the GPU profile's total (sources far apart).
    _, results = run_policies(spec, ["local"])
    times = [r.done_s - r.born_s for r in results["local"].records]
    assert len(times) == 4 and times == pytest.approx([gpu.total_time_s] * 4, rel=1e-9)
    # A speed given in the spec wins over the profile.
    _, results = run_policies(parse_spec(_spec(tmp_path / "profiles", speed=3.0)), ["local"])
    assert [r.done_s - r.born_s for r in results["local"].records] == pytest.approx([ref.total_time_s / 3] * 4)


def test_a_gpu_node_without_a_gpu_profile_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(SimulationError, match=r"^nodes\.g: device_type cuda without a speed .* `profiles:`"):
        run_policies(parse_spec(_spec(None)), ["local"])
    folder = tmp_path / "cpu-only"
    folder.mkdir()
    shutil.copy(SHIPPED_DIR / DEFAULT_HOST / "resnet56_b1_t1.json", folder)
    with pytest.raises(SimulationError, match=r"^nodes\.g: device_type cuda: no profile resnet56_b1_cuda\.json in "
                                              r".*--device cuda") as err:
        run_policies(parse_spec(_spec(folder)), ["local"])
    assert "\n" not in str(err.value)


@pytest.mark.skipif(not NO_CUDA, reason="checks the refusal on a host without CUDA")
def test_a_gpu_node_on_a_host_without_cuda_is_refused_before_anything_starts(tmp_path: Path) -> None:
    backend = get_backend("local")
    runner = Runner(parse_spec(_spec(None, speed=2.0)), backend, tmp_path / "run", RunOptions(policies=["local"]))
    with pytest.raises(RunError, match=r"^nodes\.g: device_type cuda: .*CUDA is not available here") as err:
        runner.run()
    assert "\n" not in str(err.value)
    assert backend.procs == {} and not (tmp_path / "run" / "logs").exists()  # no agent was started


def test_compose_refuses_a_gpu_node(tmp_path: Path) -> None:
    from orchestrator.compose import render_compose

    with pytest.raises(ValueError, match=r"^nodes\.g: device_type cuda: .*CPU-only"):
        render_compose(parse_spec(_spec(None, speed=2.0)), tmp_path / "project")
    assert not (tmp_path / "project" / "docker-compose.yml").exists()


@pytest.mark.skipif(not NO_CUDA, reason="checks the errors on a host without CUDA")
def test_cuda_asked_without_cuda_is_one_line_everywhere() -> None:
    from pamdi_node.cli import node_app

    result = cli.invoke(app, ["models", "verify", "-m", "tiny", "--device", "cuda"])
    assert result.exit_code == 2 and "--device: device 'cuda' requested but CUDA is not available" in result.output
    result = cli.invoke(node_app, ["--listen", "tcp://127.0.0.1:0", "--device", "cuda:0"])
    assert result.exit_code == 2 and "--device: device 'cuda:0' requested but CUDA is not available" in result.output
    assert "Traceback" not in result.output


def test_verify_reports_the_top_k_of_gpt2_against_the_cpu_reference() -> None:
    result = cli.invoke(app, ["models", "verify", "-m", "gpt2", "-m", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["device"] == "cpu"
    assert out["models"]["gpt2"]["topk_equal"] is True and out["models"]["gpt2"]["max_abs_diff"] == 0.0
    assert out["models"]["tiny"]["topk_equal"] is None and out["models"]["tiny"]["ok"] is True


# ------------------------------------------------------------------------------ with a GPU
@pytest.mark.cuda
@pytest.mark.slow
def test_gpu_blocks_match_the_cpu_monolithic_model() -> None:
    from pamdi_node.models import MODEL_NAMES
    from pamdi_node.models.verify import verify_model

    for name in MODEL_NAMES:
        r = verify_model(name, device="cuda", tolerance=1e-4)
        print(f"{name}: max |gpu blocks - cpu monolithic| = {r.max_abs_diff:.3g} (top-k same: {r.topk_equal})")
        assert r.ok, r.as_dict()


@pytest.mark.cuda
def test_gpu_profiles_are_synchronised_and_named(tmp_path: Path) -> None:
    for model in ("resnet50", "gpt2"):
        result = cli.invoke(app, ["profile", model, "--device", "cuda", "-r", "5", "--out", f"{tmp_path}/"])
        assert result.exit_code == 0, result.output
        prof = ModelProfile.load(tmp_path / profile_filename(model, 1, device="cuda"))
        assert prof.device == "cuda" and prof.host.get("gpu")
        assert all(b.time_s is not None and b.time_s > 0 for b in prof.blocks)
        print(f"{model} on {prof.host['gpu']}: {prof.total_time_s * 1e3:.2f} ms, per block (ms) "
              f"{[round(b.time_s * 1e3, 3) for b in prof.blocks]}")


@pytest.mark.cuda
@pytest.mark.slow
def test_three_agents_with_one_gpu_node_match_the_monolithic_model(tmp_path: Path) -> None:
    from pamdi_node.agent.config import input_seed, task_id
    from pamdi_node.models import zoo
    from pamdi_node.models.profiling import profile_model

    folder = tmp_path / "profiles"
    folder.mkdir()
    for model in ("tiny", "resnet56"):
        load_shipped_profile(model).save(folder / profile_filename(model, 1, 1))
        profile_model(model, device="cuda", repeats=5).save(folder / profile_filename(model, 1, device="cuda"))
    spec = parse_spec({
        "name": "gpu-three", "seed": 5, "profiles": str(folder),
        "nodes": [{"name": "a", "speed": 0.2}, {"name": "b", "speed": 0.2}, {"name": "g", "device_type": "cuda"}],
        "full_mesh": {"rate_mbit": 1000},
        "sources": [
            {"name": "ts", "node": "a", "model": "resnet56", "priority": 10, "samples": 6, "interval_ms": 40},
            {"name": "nts", "node": "b", "model": "tiny", "priority": 1, "samples": 6, "interval_ms": 20},
        ],
        "beacon_period_ms": 50,
    })
    runner = Runner(spec, get_backend("local"), tmp_path / "run",
                    RunOptions(policies=list(POLICY_NAMES), keep_outputs=True, task_timeout_s=60, run_timeout_s=120))
    summary = runner.run()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    gpu = manifest["emulation"]["gpu_speeds"]
    print("GPU node speed from its profile:", gpu)
    assert gpu["nodes"] == ["g"] and gpu["speed"] > 0
    sources = {s.name: s for s in spec.sources}
    on_gpu = 0
    for run in runner.results:
        agents = json.loads((tmp_path / "run" / run.policy / "agents.json").read_text())
        assert agents["g"]["device"] == "cuda" and agents["a"]["device"] == "cpu"
        assert all(r.status == "completed" for r in run.records), run.policy
        for tid, out in run.outputs.items():
            name, index = tid.rsplit("-", 1)
            src = sources[name]
            assert tid == task_id(src.name, int(index))
            x = zoo.example_input(src.model, batch=1, seed=input_seed(spec.seed, src.name, int(index)))
            with torch.inference_mode():
                mono = zoo.build_model(src.model, seed=spec.seed)(x)
            # Blocks on the GPU and the CPU, the reference on the CPU: equal within float noise.
            torch.testing.assert_close(torch.from_numpy(np.asarray(out)), mono, rtol=1e-4, atol=1e-4)
        on_gpu += sum(any(p[0] == "g" for p in r.placements) for r in run.records)
    print({r["policy"]: {s: round(v["mean_s"] * 1e3, 2) for s, v in r["sources"].items()} for r in summary["runs"]})
    assert on_gpu > 0  # the GPU node really computed
