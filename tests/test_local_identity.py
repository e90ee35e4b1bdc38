"""Acceptance: agents on loopback (one process per node) give the monolithic model's outputs.

For every policy and every model, each result that comes back to a source is compared with
(1) the same blocks chained in this process (bit-identical: the distributed run must not change a
single bit) and (2) the monolithic model (``zoo.build_model``) within float tolerance. The runs must
really be distributed: the test also checks that blocks ran on other nodes than the source.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator.backends import get_backend
from orchestrator.runner import PolicyRun, Runner, RunOptions
from orchestrator.spec import POLICY_NAMES, ExperimentSpec, parse_spec
from pamdi_node.agent.config import input_seed, task_id
from pamdi_node.models import zoo


def _chained(model: str, seed: int, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        for i in range(zoo.num_blocks(model)):
            x = zoo.build_blocks(model, i, i + 1, seed=seed)(x)
    return x


def _monolithic(model: str, seed: int, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return zoo.build_model(model, seed=seed)(x)


def _as_tensors(out: object) -> list[torch.Tensor]:
    arrays = out if isinstance(out, tuple | list) else (out,)
    return [torch.from_numpy(np.asarray(a)) for a in arrays]


def check_outputs(spec: ExperimentSpec, runs: list[PolicyRun]) -> None:
    """Every source's every sample came back, bit-identical to the chained blocks, close to monolithic."""
    refs: dict[str, tuple[list[torch.Tensor], torch.Tensor]] = {}
    # The agents run one torch thread each (the spec's default): so does the reference, since the
    # reduction order of a convolution depends on the thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _references(spec, refs)
    finally:
        torch.set_num_threads(threads)
    _compare(spec, runs, refs)


def _references(spec: ExperimentSpec, refs: dict[str, tuple[list[torch.Tensor], torch.Tensor]]) -> None:
    for src in spec.sources:
        for i in range(src.samples):
            x = zoo.example_input(src.model, batch=src.batch, seed=input_seed(spec.seed, src.name, i))
            refs[task_id(src.name, i)] = (_as_tensors(_chained(src.model, spec.seed, x)),
                                          _monolithic(src.model, spec.seed, x))


def _compare(spec: ExperimentSpec, runs: list[PolicyRun], refs: dict[str, tuple[list[torch.Tensor], torch.Tensor]]
             ) -> None:
    models = {s.name: s.model for s in spec.sources}
    for run in runs:
        failed = [(r.task_id, r.reason) for r in run.records if r.status != "completed"]
        assert not failed, f"{run.policy}: {failed}"
        assert set(run.outputs) == set(refs), f"{run.policy}: missing outputs {set(refs) - set(run.outputs)}"
        for tid, out in run.outputs.items():
            chained, mono = refs[tid]
            got = _as_tensors(out)
            assert len(got) == len(chained)
            for g, c in zip(got, chained, strict=True):
                assert torch.equal(g, c), f"{run.policy} {tid}: differs from the chained blocks"
            model = models[tid.rsplit("-", 1)[0]]
            if model == "gpt2":  # the head returns the top-k of the last position
                values, indices = got
                top = torch.topk(mono[:, -1, :], values.shape[-1], dim=-1)
                torch.testing.assert_close(values, top.values, rtol=1e-4, atol=1e-4)
                assert torch.equal(indices, top.indices)
            else:
                torch.testing.assert_close(got[0], mono, rtol=1e-4, atol=1e-4)


def offloaded(run: PolicyRun, sources: Mapping[str, str]) -> int:
    """Tasks with at least one block range on another node than their source's."""
    return sum(any(p[0] != sources[r.source] for p in r.placements) for r in run.records)


TINY = parse_spec({
    "name": "identity-tiny", "seed": 11,
    # Slow sources, fast helpers, a fast network: every offloading policy has a reason to offload.
    "nodes": [{"name": "a", "speed": 0.05}, {"name": "b", "speed": 0.05}, {"name": "c"}, {"name": "d"}],
    "full_mesh": {"rate_mbit": 1000},
    "sources": [
        {"name": "ts", "node": "a", "model": "tiny", "priority": 10, "samples": 6, "interval_ms": 15},
        {"name": "nts", "node": "b", "model": "tiny", "priority": 1, "samples": 6, "interval_ms": 15},
    ],
    "beacon_period_ms": 50,
})


def test_every_policy_matches_the_monolithic_model(tmp_path: Path) -> None:
    runner = Runner(TINY, get_backend("local"), tmp_path,
                    # Curve (the default): every agent-to-agent and orchestrator-to-agent hop is encrypted
                    # and authenticated.
                    RunOptions(policies=list(POLICY_NAMES), keep_outputs=True, task_timeout_s=30, run_timeout_s=60))
    summary = runner.run()
    assert [r["policy"] for r in summary["runs"]] == list(POLICY_NAMES)
    check_outputs(TINY, runner.results)
    where = {s.name: s.node for s in TINY.sources}
    by_policy = {r.policy: r for r in runner.results}
    assert offloaded(by_policy["local"], where) == 0
    for policy in ("ar-mdi", "ms-mdi", "pa-mdi", "ddi", "pa-mdi-static"):
        assert offloaded(by_policy[policy], where) > 0, f"{policy} never left the source node"
    # The run folder holds what was measured, for every policy.
    for policy in POLICY_NAMES:
        assert len((tmp_path / policy / "tasks.jsonl").read_text().splitlines()) == 12
        assert (tmp_path / policy / "spans.jsonl").stat().st_size > 0
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "clocks.json").is_file()
    assert summary["curve"]["on"] and "orchestrator" in summary["curve"]["key_fingerprints"]
    assert not (tmp_path / "keys").exists()  # private keys never live in the run folder


REAL = parse_spec({
    "name": "identity-real", "seed": 4,
    "nodes": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
    "full_mesh": {"rate_mbit": 1000},
    "sources": [
        {"name": "r56", "node": "a", "model": "resnet56", "priority": 10, "samples": 3, "interval_ms": 30},
        {"name": "r50", "node": "b", "model": "resnet50", "priority": 1, "samples": 1},
        {"name": "lm", "node": "c", "model": "gpt2", "priority": 1, "samples": 1},
    ],
    "beacon_period_ms": 50,
})


@pytest.mark.slow
def test_real_models_match_across_three_agents(tmp_path: Path) -> None:
    # AR-MDI splits every model over a chain of all three agents, so every model crosses the wire.
    runner = Runner(REAL, get_backend("local"), tmp_path,
                    RunOptions(policies=["ar-mdi"], keep_outputs=True, task_timeout_s=120, run_timeout_s=240))
    runner.run()
    check_outputs(REAL, runner.results)
    run = runner.results[0]
    for r in run.records:
        assert len({p[0] for p in r.placements}) >= 2, f"{r.task_id} ran on {r.placements}"
