"""Runner options resolved against the spec and the backend: the device-time model and the stretch."""

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
    ("backend", "asked", "spec_says", "model"),
    [
        (LocalBackend(), None, None, "profile"),  # agents share this host: hold to the modelled time
        (NetnsBackend(), None, None, "profile"),
        (DockerBackend(), None, None, "profile"),
        (NetnsBackend(), None, "quota", "quota"),  # the spec's choice beats the backend's default
        (NetnsBackend(), "native", "quota", "native"),  # an explicit option beats both
        (LocalBackend(), "quota", None, "quota"),
    ],
)
def test_device_time_follows_options_spec_backend(tmp_path: Path, backend: object, asked: str | None,
                                                  spec_says: str | None, model: str) -> None:
    spec = SPEC.model_copy(update={"device_time": spec_says})
    runner = Runner(spec, backend, tmp_path, RunOptions(device_time=asked))  # type: ignore[arg-type]
    assert runner.device_time == model
    cfgs = _configs(runner)
    assert {n: c["device_time"] for n, c in cfgs.items()} == {"a": model, "b": model}
    assert cfgs["a"]["speed"] == 0.25  # the speed itself still travels (views and policies use it)


def test_unknown_device_time_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="device_time: 'fast' is not one of profile, quota, native"):
        Runner(SPEC, LocalBackend(), tmp_path, RunOptions(device_time="fast"))
    from orchestrator.spec import SpecError

    with pytest.raises(SpecError, match="device_time"):
        parse_spec({**SPEC.model_dump(mode="json"), "device_time": "fast"})


def test_backend_without_a_default_runs_native(tmp_path: Path) -> None:
    class Remote(LocalBackend):
        default_device_time = "native"

    assert Runner(SPEC, Remote(), tmp_path, RunOptions()).device_time == "native"


def test_an_agent_counts_as_ready_once_it_has_heard_every_neighbour() -> None:
    from orchestrator.runconfig import peers_heard

    assert peers_heard({"peers": {"b": {"alive": True}, "c": {"alive": True}}})
    assert not peers_heard({"peers": {"b": {"alive": True}, "c": {"alive": False}}})
    assert not peers_heard({"state": "idle"}) and not peers_heard({"peers": ["b"]})
    assert peers_heard({"peers": {}})  # a node without neighbours has nobody to wait for
