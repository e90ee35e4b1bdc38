"""Per-block model profiles: the contract between the profiler, the allocator, the simulator and the agent.

A profile describes one model at one batch size on one device: for every block (in order) its
FLOPs, parameter bytes, output activation shape/bytes and, when measured, its median forward time.
Profiles are plain JSON so that they can be shipped, diffed and edited by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class BlockProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0)
    name: str
    flops: int = Field(ge=0, description="floating-point operations of one forward pass (a MAC counts 2)")
    param_bytes: int = Field(ge=0)
    out_shape: tuple[int, ...]
    out_bytes: int = Field(ge=0)
    time_s: float | None = Field(default=None, ge=0, description="median measured forward time")


class ModelProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    batch: int = Field(ge=1)
    dtype: str = "float32"
    device: str = "cpu"
    threads: int | None = None
    input_shape: tuple[int, ...]
    input_bytes: int = Field(ge=0)
    result_bytes: int = Field(ge=0, description="bytes sent back to the source after the last block")
    blocks: tuple[BlockProfile, ...]
    host: dict[str, str | int | float] = Field(default_factory=dict)
    measured_at: str | None = None

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def total_time_s(self) -> float:
        """Sum of measured block times; raises if the profile has no timings."""
        if any(b.time_s is None for b in self.blocks):
            raise ValueError(f"profile of {self.model} has no timings (run `pamdi profile`)")
        return float(sum(b.time_s for b in self.blocks))  # type: ignore[misc]

    @property
    def total_flops(self) -> int:
        return sum(b.flops for b in self.blocks)

    def range_time_s(self, start: int, end: int) -> float:
        """Measured time of blocks [start, end) on the profiled device."""
        return float(sum(b.time_s or 0.0 for b in self.blocks[start:end]))

    def bytes_before(self, block: int) -> int:
        """Bytes of the activation that enters ``block`` (the model input for block 0)."""
        return self.input_bytes if block == 0 else self.blocks[block - 1].out_bytes

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelProfile:
        return cls.model_validate(json.loads(Path(path).read_text()))
