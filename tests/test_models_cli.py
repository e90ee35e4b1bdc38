"""``pamdi models list|verify``."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import pamdi_node.models.verify as verify_mod
from orchestrator.cli import app

runner = CliRunner()


def test_verify_json_has_exactly_the_documented_shape() -> None:
    result = runner.invoke(app, ["models", "verify", "--json", "--model", "tiny", "--model", "resnet56"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"device": "cpu", "models": {
        "tiny": {"max_abs_diff": 0.0, "blocks": 4, "topk_equal": None, "ok": True},
        "resnet56": {"max_abs_diff": 0.0, "blocks": 29, "topk_equal": None, "ok": True}}}


def test_verify_detects_a_partition_that_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    real_build_blocks = verify_mod.build_blocks

    def corrupted(name: str, start: int, end: int, **kw):  # one weight of block 2 off by 1e-3
        chain = real_build_blocks(name, start, end, **kw)
        if start == 2:
            with torch.no_grad():
                chain.blocks[0].conv.weight[0, 0, 0, 0] += 1e-3
        return chain

    monkeypatch.setattr(verify_mod, "build_blocks", corrupted)
    result = runner.invoke(app, ["models", "verify", "--json", "-m", "tiny"])
    assert result.exit_code == 1
    diff = json.loads(result.stdout)["models"]["tiny"]["max_abs_diff"]
    assert 0 < diff < 1e-2
    assert "verification failed for tiny" in result.stderr


def test_verify_table_and_unknown_model() -> None:
    result = runner.invoke(app, ["models", "verify", "-m", "tiny"])
    assert result.exit_code == 0 and "exact" in result.stdout and "tiny" in result.stdout
    result = runner.invoke(app, ["models", "verify", "-m", "vgg16"])
    assert result.exit_code == 2 and "unknown model(s) vgg16" in result.stderr


def test_models_list() -> None:
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    models = json.loads(result.stdout)["models"]
    assert {k: v["blocks"] for k, v in models.items()} == {
        "tiny": 4, "resnet50": 18, "resnet56": 29, "resnet56-224": 29, "gpt2": 14,
    }  # fmt: skip
    assert 25.5e6 < models["resnet50"]["params"] < 25.6e6  # torchvision's 25,557,032
    assert 124.4e6 < models["gpt2"]["params"] < 124.5e6  # HF GPT-2 small: 124,439,808
    assert 0.85e6 < models["resnet56"]["params"] < 0.87e6
    table = runner.invoke(app, ["models", "list"])
    assert table.exit_code == 0 and "resnet56-224" in table.stdout

