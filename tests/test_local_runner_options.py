"""Runner options resolved against the backend: compute padding only where nothing else slows nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.backends.base import AgentEndpoint
from orchestrator.backends.docker import DockerBackend
from orchestrator.backends.local import LocalBackend
from orchestrator.backends.netns import NetnsBackend
from orchestrator.runner import Runner, RunOptions, build_configs
from orchestrator.simulator import load_profiles, source_views
from orchestrator.spec import parse_spec

SPEC = parse_spec({
    "name": "opts", "seed": 1,
    "nodes": [{"name": "a", "speed": 0.25}, {"name": "b"}],
    "full_mesh": {"rate_mbit": 100},
    "sources": [{"name": "s", "node": "a", "model": "tiny", "samples": 2, "interval_ms": 10}],
})


def _configs(runner: Runner) -> dict[str, dict]:
    views = source_views(SPEC, load_profiles(SPEC))
    eps = {n: AgentEndpoint(n, f"tcp://127.0.0.{i + 2}:7000") for i, n in enumerate("ab")}
    return build_configs(SPEC, "pa-mdi", eps, views, options=runner.opts)


@pytest.mark.parametrize(
    ("backend", "asked", "padded"),
    [
        (LocalBackend(), None, True),  # agents share one host: only padding makes a slow node slow
        (NetnsBackend(), None, False),  # the CPU quota slows it already: padding would slow it twice
        (DockerBackend(), None, False),
        (NetnsBackend(cpu_quota=False), None, True),  # no quota: padding is the only slow-down left
        (DockerBackend(cpu_quota=False), None, True),
        (NetnsBackend(), True, True),  # an explicit choice wins
        (LocalBackend(), False, False),
    ],
)
def test_compute_padding_follows_the_backend(tmp_path: Path, backend: object, asked: bool | None,
                                             padded: bool) -> None:
    runner = Runner(SPEC, backend, tmp_path, RunOptions(emulate_speed=asked))  # type: ignore[arg-type]
    assert runner.opts.emulate_speed is padded
    cfgs = _configs(runner)
    assert {n: c["emulate_speed"] for n, c in cfgs.items()} == {"a": padded, "b": padded}
    assert cfgs["a"]["speed"] == 0.25  # the speed itself still travels (views and policies use it)


def test_any_backend_that_slows_nodes_itself_gets_no_padding(tmp_path: Path) -> None:
    class QuotaBackend(LocalBackend):
        emulates_speed = True

    assert Runner(SPEC, QuotaBackend(), tmp_path, RunOptions()).opts.emulate_speed is False
    assert Runner(SPEC, LocalBackend(), tmp_path, RunOptions()).opts.emulate_speed is True
