"""Synthetic profiles and tiny specs for the simulator/allocator tests (no torch needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.spec import ExperimentSpec, parse_spec
from pamdi_node.models.profile import BlockProfile, ModelProfile


def synthetic_profile(model: str, times: Sequence[float], out_bytes: Sequence[int], input_bytes: int,
                      result_bytes: int = 40) -> ModelProfile:
    blocks = tuple(
        BlockProfile(index=i, name=f"b{i}", flops=int(t * 1e9), param_bytes=0, out_shape=(ob // 4,), out_bytes=ob,
                     time_s=t)
        for i, (t, ob) in enumerate(zip(times, out_bytes, strict=True))
    )
    return ModelProfile(model=model, batch=1, input_shape=(input_bytes // 4,), input_bytes=input_bytes,
                        result_bytes=result_bytes, blocks=blocks)


def spec(**over: Any) -> ExperimentSpec:
    data: dict[str, Any] = {"nodes": [{"name": "a"}], "sources": [{"name": "s", "node": "a", "model": "tiny"}]}
    data.update(over)
    return parse_spec(data)
