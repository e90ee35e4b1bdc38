"""The run configuration an agent receives from the orchestrator (the ``config`` message).

It is validated with pydantic on arrival; a bad config is answered with an ``error`` message naming
the field, and the agent keeps serving (and keeps its previous configuration, if any).
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pamdi_node.policies.types import SourceView, dead_after_s


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PeerConfig(_Strict):
    address: str = Field(min_length=1, max_length=512, description="ZeroMQ URL where this node reaches the peer")
    rate_bps: float = Field(gt=0, description="goodput (the spec's rate x LINK_GOODPUT_FACTOR)")
    delay_s: float = Field(default=0.0, ge=0)
    loss: float = Field(default=0.0, ge=0, lt=1)
    # Spread of the delay: uniform in delay_s ± jitter_s, in order (``pamdi_node.jitter``).
    jitter_s: float = Field(default=0.0, ge=0)
    # Hold every message from this peer for delay_s (± jitter_s) before handling it: the link's delay
    # applied by the agent, where the emulated network shapes only the rate (no netem on the host).
    apply_delay: bool = False

    @model_validator(mode="after")
    def _jitter_within_delay(self) -> PeerConfig:
        if self.jitter_s > self.delay_s:
            raise ValueError(f"jitter_s {self.jitter_s:g} exceeds delay_s {self.delay_s:g}")
        return self


class AgentSource(_Strict):
    name: str = Field(min_length=1, max_length=64)
    node: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=64)
    priority: float = Field(gt=0)
    accuracy: float = Field(default=1.0, gt=0, le=1)
    samples: int = Field(ge=0)
    interval_s: float = Field(default=0.0, ge=0)
    arrival: Literal["periodic", "poisson"] = "periodic"
    start_s: float = Field(default=0.0, ge=0)
    batch: int = Field(default=1, ge=1)
    data: str | None = None
    # Profile of the model (reference host): drives the policies' estimates.
    block_time_s: tuple[float, ...]
    block_out_bytes: tuple[int, ...]
    input_bytes: int = Field(ge=0)
    result_bytes: int = Field(ge=0)
    bounds: tuple[int, ...]

    @model_validator(mode="after")
    def _consistent(self) -> AgentSource:
        n = len(self.block_time_s)
        if n == 0 or len(self.block_out_bytes) != n:
            raise ValueError("block_time_s and block_out_bytes must be non-empty and of equal length")
        b = self.bounds
        if len(b) < 2 or b[0] != 0 or b[-1] != n or any(x >= y for x, y in itertools.pairwise(b)):
            raise ValueError(f"bounds must rise strictly from 0 to {n}, got {list(b)}")
        return self

    def view(self) -> SourceView:
        return SourceView(
            name=self.name,
            node=self.node,
            model=self.model,
            priority=self.priority,
            accuracy=self.accuracy,
            block_time_s=self.block_time_s,
            block_out_bytes=self.block_out_bytes,
            input_bytes=self.input_bytes,
            result_bytes=self.result_bytes,
            bounds=self.bounds,
        )


class RunConfig(_Strict):
    node: str = Field(min_length=1, max_length=64)
    run_id: str = Field(default="run", min_length=1, max_length=128)
    # Unique per configuration sent (one per node and policy run): an agent applies each once, so a
    # replayed config cannot tear down a run and wipe its records.
    config_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    policy: str = Field(min_length=1, max_length=64)
    policy_params: dict[str, Any] = Field(default_factory=dict)  # pa-mdi-static: a nested plan
    # Relative compute speed of this node (1.0 = the profiled host): a block range's modelled time is
    # its profiled time / speed.
    speed: float = Field(default=1.0, gt=0)
    # How compute time is produced (pamdi_node/devicetime.py): "profile" holds each result until the
    # modelled time has passed, "quota" and "native" release it as soon as it is computed.
    device_time: Literal["profile", "quota", "native"] = "native"
    # Advertise a re-measured speed (EWMA of profiled / measured block time) instead of ``speed``.
    # Off by default so that agents and the simulator see the same speeds.
    measure_speed: bool = False
    threads: int | None = Field(default=None, ge=1, le=256)
    beacon_period_s: float = Field(default=0.1, gt=0, le=60)
    # A peer without a beacon for this long is dropped from the candidates (default: the simulator's
    # rule too, ``policies.types.dead_after_s``: 4 periods + 0.2 s).
    dead_after_s: float | None = Field(default=None, gt=0)
    ack_timeout_s: float = Field(default=3.0, gt=0)
    rtc_timeout_s: float = Field(default=0.25, gt=0)
    grant_window_s: float = Field(default=0.002, ge=0)
    task_timeout_s: float = Field(default=120.0, gt=0)
    peers: dict[str, PeerConfig] = Field(default_factory=dict)
    # Whole graph (adjacency) and every node's nominal speed, for chain planners (AR-MDI).
    graph: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # Every directed link of the graph: [a, b, goodput bps, one-way delay s].
    links: tuple[tuple[str, str, float, float], ...] = ()
    speeds: dict[str, float] = Field(default_factory=dict)
    sources: tuple[AgentSource, ...] = ()
    # Blocks this node may run, per model: [lo, hi). Default: every block of every source's model.
    blocks: dict[str, tuple[int, int]] | None = None
    weights: dict[str, str] = Field(default_factory=dict, description="model -> weights file on this node")
    keep_outputs: bool = False
    trace_dir: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.node in self.peers:
            raise ValueError(f"peers: node {self.node!r} lists itself")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError("sources: duplicate names")
        return self

    @property
    def dead_after(self) -> float:
        return self.dead_after_s if self.dead_after_s is not None else dead_after_s(self.beacon_period_s)

    def allowed_blocks(self) -> dict[str, tuple[int, int]]:
        if self.blocks is not None:
            return dict(self.blocks)
        out: dict[str, tuple[int, int]] = {}
        for s in self.sources:
            out[s.model] = (0, len(s.block_time_s))
        return out


def parse_config(data: object) -> RunConfig:
    """Validate a config map; raises ValueError naming the field at fault."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        parts = []
        for e in err.errors()[:5]:
            loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
            parts.append(f"{loc}: {e['msg'].removeprefix('Value error, ')}")
        raise ValueError("bad config: " + "; ".join(parts)) from None


def input_seed(run_seed: int, source: str, index: int) -> int:
    """Seed of the ``index``-th synthetic input of ``source`` (the orchestrator and tests rebuild it)."""
    digest = hashlib.sha256(f"pamdi-input|{run_seed}|{source}|{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def task_id(source: str, index: int) -> str:
    return f"{source}-{index:06d}"
