"""``pamdi profile`` and the shipped measured profiles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from orchestrator.cli import app
from pamdi_node.models import MODEL_NAMES
from pamdi_node.models.profile import (
    DEFAULT_HOST,
    SHIPPED_DIR,
    ModelProfile,
    ProfileNotFoundError,
    host_tag,
    load_profile_from,
    load_shipped_profile,
    profile_filename,
)
from pamdi_node.models.profiling import profile_model
from pamdi_node.models.zoo import model_profile

runner = CliRunner()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pamdi_profile_runs_for_every_model(name: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["profile", name, "--repeats", "1", "--warmup", "0", "--out", str(tmp_path) + "/"])
    assert result.exit_code == 0, result.output
    prof = ModelProfile.load(tmp_path / profile_filename(name, 1, 1))
    counted = model_profile(name)
    assert prof.model == name and prof.threads == 1 and prof.device == "cpu"
    assert [b.flops for b in prof.blocks] == [b.flops for b in counted.blocks]
    assert [b.out_bytes for b in prof.blocks] == [b.out_bytes for b in counted.blocks]
    assert all(b.time_s is not None and b.time_s > 0 for b in prof.blocks)
    assert prof.host["cpu"] and prof.host["torch"] == torch.__version__ and prof.host["repeats"] == 1
    assert prof.measured_at


def test_profile_times_scale_with_work_and_batch() -> None:
    small = profile_model("resnet56", batch=1, warmup=1, repeats=3)
    big = profile_model("resnet56-224", batch=1, warmup=1, repeats=3)
    # 49x the FLOPs: even on a busy machine the measured time must grow a lot.
    assert big.total_time_s > 10 * small.total_time_s
    batched = profile_model("resnet56", batch=8, warmup=1, repeats=3)
    assert batched.batch == 8 and batched.input_shape == (8, 3, 32, 32)
    assert batched.total_time_s > 2 * small.total_time_s


def test_profile_cli_errors_and_stdout(tmp_path: Path) -> None:
    result = runner.invoke(app, ["profile", "resnet18"])
    assert result.exit_code == 2 and "unknown model(s) resnet18" in result.output
    result = runner.invoke(app, ["profile", "tiny", "--device", "tpu"])
    assert result.exit_code == 2 and "--device must be cpu or cuda" in result.output
    if not torch.cuda.is_available():
        result = runner.invoke(app, ["profile", "tiny", "--device", "cuda"])
        assert result.exit_code == 2 and "CUDA is not available" in result.output
    result = runner.invoke(app, ["profile", "tiny", "-r", "2", "--threads", "2", "--batch", "3"])
    assert result.exit_code == 0, result.output
    prof = ModelProfile.model_validate(json.loads(result.stdout))
    assert prof.threads == 2 and prof.batch == 3 and prof.blocks[0].out_shape == (3, 16, 16, 16)


def test_console_script_profiles_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    pamdi = Path(sys.executable).parent / "pamdi"
    proc = subprocess.run(
        [str(pamdi), "profile", "tiny", "-r", "2", "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert ModelProfile.load(out).num_blocks == 4


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shipped_profiles_exist_load_and_are_current(name: str, threads: int) -> None:
    prof = load_shipped_profile(name, batch=1, threads=threads, host=DEFAULT_HOST)
    counted = model_profile(name)
    assert prof.model == name and prof.threads == threads and prof.batch == 1
    # Stale profiles (the model changed since measuring) would mislead the allocator.
    assert [b.flops for b in prof.blocks] == [b.flops for b in counted.blocks]
    assert [b.out_bytes for b in prof.blocks] == [b.out_bytes for b in counted.blocks]
    assert [b.param_bytes for b in prof.blocks] == [b.param_bytes for b in counted.blocks]
    assert all(b.time_s is not None and b.time_s > 0 for b in prof.blocks)
    assert prof.host["tag"] == DEFAULT_HOST and prof.host["repeats"] >= 20
    assert (SHIPPED_DIR / DEFAULT_HOST / profile_filename(name, 1, threads)).is_file()


def test_shipped_profile_timings_are_plausible() -> None:
    r50 = load_shipped_profile("resnet50", host=DEFAULT_HOST)
    r56 = load_shipped_profile("resnet56", host=DEFAULT_HOST)
    gpt = load_shipped_profile("gpt2", host=DEFAULT_HOST)
    assert r56.total_time_s < r50.total_time_s < gpt.total_time_s
    # Two threads do not make a model slower than one by much (allowing for machine noise).
    assert load_shipped_profile("resnet50", threads=2, host=DEFAULT_HOST).total_time_s < 1.2 * r50.total_time_s


def test_missing_profiles_list_what_exists(tmp_path: Path) -> None:
    with pytest.raises(ProfileNotFoundError, match=r"resnet50_b1_t1\.json"):
        load_shipped_profile("resnet50", batch=64, host=DEFAULT_HOST)
    with pytest.raises(ProfileNotFoundError, match=r"shipped hosts: .*" + DEFAULT_HOST):
        load_shipped_profile("resnet50", host="no-such-host")
    with pytest.raises(ProfileNotFoundError, match="available: none"):
        load_profile_from(tmp_path, "tiny")
    prof = profile_model("tiny", repeats=1, warmup=0)
    prof.save(tmp_path / profile_filename("tiny", 1, 1))
    assert load_profile_from(tmp_path, "tiny") == prof


def test_host_tag_is_filesystem_safe() -> None:
    assert host_tag("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", 12) == "intel-core-i7-8700k-12c"
    assert host_tag("AMD EPYC", 2) == "amd-epyc-2c"
    assert host_tag().endswith("c") and "/" not in host_tag()
