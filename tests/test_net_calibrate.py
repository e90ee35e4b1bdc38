"""`pamdi calibrate`: a 0.2-CPU quota really makes the real model blocks ~5x slower."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups, namespaces)"),
    pytest.mark.timeout(180),
]


def test_calibrate_nano_quota(tmp_path: Path) -> None:
    from orchestrator.netem.calibrate import calibrate
    from orchestrator.netem.devices import load_calibration

    out = tmp_path / "calibration.json"
    res = calibrate("resnet56", seconds=1.5, devices=["nano"], out=out)
    speed = res["devices"]["nano"]["speed"]
    assert 0.1 < speed < 0.32, speed  # nominal 0.2 (quota 0.2 CPU); the host is shared and noisy
    assert load_calibration(out)["nano"] == pytest.approx(speed)
    assert json.loads(out.read_text())["model"] == "resnet56"
