"""Radio scenario catalogue: validation, time-varying lookups, iperf3 import (real capture)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import radio_scenarios as rs
from radio_scenarios.iperf3 import import_iperf3

DATA = Path(__file__).parent / "data"
CAPTURE = DATA / "iperf3_shaped_20_8_15.json"  # real iperf3 -J over a netns link shaped 20 -> 8 -> 15 Mbit/s
PAMDI = str(Path(sys.executable).parent / "pamdi")


def test_catalogue_has_the_required_profiles() -> None:
    cat = rs.catalogue()
    assert cat["wifi-adhoc-20"].at(0).rate_mbit == 20
    assert cat["wifi-fluctuating"].time_varying and cat["lte-like"].time_varying
    ids = [s.colosseum_id for s in cat.values() if s.colosseum_id is not None]
    assert len(ids) == len(set(ids))
    for sid in (1009, 10009, 10024, 10011, 9971, 9972, 9973, 1017, 1018, 1028, 1035, 1019):
        assert rs.by_colosseum_id(sid) is not None, sid
    assert rs.by_colosseum_id(1009).shapeable is False


def test_time_varying_lookup_and_loop() -> None:
    s = rs.get("wifi-fluctuating")
    pts = s.points
    assert s.at(0) == pts[0]
    assert s.at(pts[3].t_s + 0.5) == pts[3]
    assert s.at(s.period + pts[3].t_s + 0.5) == pts[3]  # loops
    # time-weighted mean computed here from the points, independently of mean_rate_mbit
    edges = [p.t_s for p in pts] + [s.period]
    mean = sum(p.rate_mbit * (edges[i + 1] - edges[i]) for i, p in enumerate(pts)) / s.period
    assert s.mean_rate_mbit() == pytest.approx(mean)
    steps = s.changes(2 * s.period + 1)
    assert len(steps) == 2 * len(pts) + 1 and steps[len(pts)][0] == pytest.approx(s.period)


def test_invalid_profiles_name_the_field() -> None:
    bad = {"name": "x", "description": "d", "points": [{"t_s": 0, "rate_mbit": 5}, {"t_s": 0, "rate_mbit": 6}]}
    with pytest.raises(ValueError, match="t_s must increase"):
        rs.Scenario.model_validate(bad)
    with pytest.raises(ValueError, match="rate_mbit"):
        rs.Scenario.model_validate({"name": "x", "description": "d", "points": [{"t_s": 0, "rate_mbit": -1}]})
    with pytest.raises(rs.ScenarioError, match="unknown radio scenario 'nope'"):
        rs.get("nope")
    with pytest.raises(rs.ScenarioError, match="no link profile"):
        rs.get("colosseum-1009").at(0)


def test_import_iperf3_real_capture() -> None:
    raw = json.loads(CAPTURE.read_text())
    s = import_iperf3(CAPTURE, "captured")
    assert len(s.points) == len(raw["intervals"])
    for p, iv in zip(s.points, raw["intervals"], strict=True):
        assert p.rate_mbit == pytest.approx(iv["sum"]["bits_per_second"] / 1e6 * 1514 / 1448, rel=1e-3)
    min_rtt_ms = min([st["rtt"] for iv in raw["intervals"] for st in iv["streams"]]
                     + [raw["end"]["streams"][0]["sender"]["min_rtt"]]) / 1000
    assert s.points[0].delay_ms == pytest.approx(min_rtt_ms / 2, abs=1e-3)
    # The capture was shaped 20 -> 8 -> 15 Mbit/s: the profile shows the dip in the middle.
    rates = [p.rate_mbit for p in s.points]
    assert min(rates[2:4]) < 0.6 * rates[0] and rates[-1] > rates[3]


def test_import_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"start": {}}')
    with pytest.raises(rs.ScenarioError, match="intervals"):
        import_iperf3(bad, "bad")


def test_cli_import_then_show(tmp_path: Path) -> None:
    env = {"PAMDI_SCENARIOS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([PAMDI, "scenarios", "import-iperf3", str(CAPTURE), "--name", "my-capture", "--json"],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "my-capture.yaml").exists()
    shown = subprocess.run([PAMDI, "scenarios", "show", "my-capture", "--json"], capture_output=True, text=True,
                           env=env, timeout=60, check=False)
    assert json.loads(shown.stdout)["points"] == json.loads(out.stdout)["points"]
    again = subprocess.run([PAMDI, "scenarios", "import-iperf3", str(CAPTURE), "--name", "my-capture"],
                           capture_output=True, text=True, env=env, timeout=60, check=False)
    assert again.returncode != 0 and "exists" in again.stderr
