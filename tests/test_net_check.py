"""`pamdi net check` against the acceptance numbers: goodput within 3% of 0.956 x rate, RTT with delay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, tc)"),
    pytest.mark.timeout(120),
]

PAMDI = str(Path(sys.executable).parent / "pamdi")
GOODPUT = 1448 / 1514  # TCP payload per shaper-counted frame, computed independently of orchestrator.netem.tc


def _net_check(*args: str) -> dict:
    out = subprocess.run(
        [PAMDI, "net", "check", "--json", "--duration", "3", *args],
        capture_output=True, text=True, timeout=100, check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("rate", [10.0, 100.0])
def test_goodput_matches_configured_rate(rate: float) -> None:
    res = _net_check("--rate-mbit", str(rate))
    assert res["configured_mbit"] == rate
    expected = GOODPUT * rate
    assert res["measured_mbit"] == pytest.approx(expected, rel=0.03), res
    # The tbf shaper really carried the traffic (both directions are shaped; data went a -> b).
    sent = {row["src"]: row["bytes"] for row in res["tc"]}
    assert sent["a"] > 8 * res["measured_mbit"] * 1e6 / 8 * 0.5


def test_rtt_with_delay() -> None:
    res = _net_check("--rate-mbit", "10", "--delay-ms", "10")
    assert res["rtt_ms"] == pytest.approx(20.0, abs=2.0), res
    assert res["delay_stage"] in ("netem", "forwarder")
    assert res["measured_mbit"] == pytest.approx(GOODPUT * 10, rel=0.03), res


def test_bad_arguments_are_refused() -> None:
    out = subprocess.run([PAMDI, "net", "check", "--rate-mbit", "-1"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode != 0
    assert "--rate-mbit" in out.stderr
