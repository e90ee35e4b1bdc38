"""Experiment specs: YAML validated with pydantic, refused before anything starts.

A spec names the nodes (devices), the links between them, the sources with their models and
priorities, and the policies to run. ``load_spec`` returns a frozen ``ExperimentSpec`` or raises
``SpecError`` whose message names the file and the field at fault.

Link rates are link-layer (tc) rates; the simulator and the emulators budget the measured
goodput factor on top of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pamdi_node.models import MODEL_NAMES
from pamdi_node.policies.base import DEFAULT_PARTITIONS, PER_BLOCK

POLICY_NAMES: tuple[str, ...] = ("local", "ar-mdi", "ms-mdi", "pa-mdi", "ddi", "pa-mdi-static")
# Policies the paper compares; "all" expands to these.
DEFAULT_POLICIES: tuple[str, ...] = ("local", "ar-mdi", "ms-mdi", "pa-mdi", "ddi")

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,14}$", description="lowercase, ≤15 chars")]


class SpecError(ValueError):
    """A spec is wrong; the message names the field at fault."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LinkParams(_Frozen):
    rate_mbit: float = Field(gt=0, le=100_000)
    delay_ms: float = Field(default=0.0, ge=0, le=10_000)
    loss: float = Field(default=0.0, ge=0, lt=1)
    # Name of a radio scenario (radio_scenarios catalogue) that drives the link over time.
    scenario: str | None = None


class Link(LinkParams):
    a: Name
    b: Name

    @model_validator(mode="after")
    def _distinct(self) -> Link:
        if self.a == self.b:
            raise ValueError(f"link joins node {self.a!r} to itself")
        return self

    @property
    def key(self) -> tuple[str, str]:
        return (self.a, self.b) if self.a < self.b else (self.b, self.a)


class Node(_Frozen):
    name: Name
    # Compute speed relative to the host the profiles were measured on (0.5 = half as fast).
    speed: float = Field(default=1.0, gt=0, le=1000)
    # Optional named device profile (e.g. "xavier-nx"); when set, its calibrated speed is used.
    device: str | None = None
    threads: int = Field(default=1, ge=1, le=256)
    memory_mb: int | None = Field(default=None, gt=0)


class Source(_Frozen):
    name: Name
    node: Name
    model: str
    priority: float = Field(default=1.0, gt=0, description="priority weight gamma")
    samples: int = Field(default=100, ge=1, le=10_000_000)
    interval_ms: float | None = Field(default=None, gt=0)
    rate_hz: float | None = Field(default=None, gt=0)
    # "periodic" submits every interval; "poisson" draws exponential gaps with that mean (seeded).
    arrival: Literal["periodic", "poisson"] = "periodic"
    start_ms: float = Field(default=0.0, ge=0)
    batch: int = Field(default=1, ge=1, le=4096)
    # Partitions the model is cut into for the per-boundary decision: a count of ~equal-compute
    # partitions (default 4, as the authors' PA-MDI demo and code; a model with fewer blocks gets
    # one per block), or "blocks" for one partition per block.
    partitions: int | Literal["blocks"] = DEFAULT_PARTITIONS
    # Optional input data (image folder, CIFAR-10 batch, token file); synthetic seeded inputs otherwise.
    data: str | None = None

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in MODEL_NAMES:
            raise ValueError(f"unknown model {v!r}; known: {', '.join(MODEL_NAMES)}")
        return v

    @field_validator("partitions", mode="before")
    @classmethod
    def _partitions(cls, v: object) -> object:
        if v == PER_BLOCK and isinstance(v, str):
            return v
        if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
            return v
        raise ValueError(f"partitions must be a whole number >= 1 or {PER_BLOCK!r} (one per block), got {v!r}")

    @model_validator(mode="after")
    def _one_rate(self) -> Source:
        if self.interval_ms is not None and self.rate_hz is not None:
            raise ValueError("give either interval_ms or rate_hz, not both")
        return self

    @property
    def interval_s(self) -> float:
        """Mean gap between submissions; 0 means 'submit all at once' (closed loop is not modelled)."""
        if self.interval_ms is not None:
            return self.interval_ms / 1000.0
        if self.rate_hz is not None:
            return 1.0 / self.rate_hz
        return 0.0


class Failure(_Frozen):
    node: Name
    at_s: float = Field(ge=0)
    # Seconds after which the node comes back (None = never).
    recover_after_s: float | None = Field(default=None, gt=0)


class ExperimentSpec(_Frozen):
    name: str = "experiment"
    description: str = ""
    seed: int = 0
    nodes: tuple[Node, ...] = Field(min_length=1)
    full_mesh: LinkParams | None = None
    links: tuple[Link, ...] = ()
    sources: tuple[Source, ...] = Field(min_length=1)
    accuracy: dict[str, float] = Field(default_factory=dict)
    policy: tuple[str, ...] = ("pa-mdi",)
    # Free-form parameters for the policies (see each policy module's docstring).
    policy_params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    beacon_period_ms: float = Field(default=100.0, gt=0)
    failures: tuple[Failure, ...] = ()
    # Profile set to use (a folder of profile JSON files); None = the shipped profiles for simulation,
    # this host's own (measured on first use, cached) for emulation.
    profiles: str | None = None
    # Device-time model of an emulation (pamdi_node/devicetime.py); None = the backend's default.
    device_time: Literal["profile", "quota", "native"] | None = None

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_list(cls, v: object) -> object:
        if isinstance(v, str):
            return DEFAULT_POLICIES if v == "all" else (v,)
        return v

    @field_validator("policy")
    @classmethod
    def _known_policies(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for p in v:
            if p not in POLICY_NAMES:
                raise ValueError(f"unknown policy {p!r}; known: {', '.join(POLICY_NAMES)}, all")
        return v

    @field_validator("accuracy")
    @classmethod
    def _accuracy_range(cls, v: dict[str, float]) -> dict[str, float]:
        for model, acc in v.items():
            if model not in MODEL_NAMES:
                raise ValueError(f"accuracy given for unknown model {model!r}")
            if not 0 < acc <= 1:
                raise ValueError(f"accuracy of {model!r} must be in (0, 1], got {acc}")
        return v

    @model_validator(mode="after")
    def _references(self) -> ExperimentSpec:
        names = [n.name for n in self.nodes]
        _no_duplicates("nodes", names)
        _no_duplicates("sources", [s.name for s in self.sources])
        known = set(names)
        for i, link in enumerate(self.links):
            for end in (link.a, link.b):
                if end not in known:
                    raise ValueError(f"links[{i}]: unknown node {end!r}")
        _no_duplicates("links", [f"{a}-{b}" for a, b in (link.key for link in self.links)])
        for i, src in enumerate(self.sources):
            if src.node not in known:
                raise ValueError(f"sources[{i}].node: unknown node {src.node!r}")
        for i, f in enumerate(self.failures):
            if f.node not in known:
                raise ValueError(f"failures[{i}].node: unknown node {f.node!r}")
        if self.full_mesh is None and not self.links and len(self.nodes) > 1:
            raise ValueError("no links: give `links:` or `full_mesh:`")
        return self

    # ----------------------------------------------------------------- derived views
    def resolved_links(self) -> tuple[Link, ...]:
        """Every link of the experiment: the full mesh (if any), overridden by explicit links."""
        by_key: dict[tuple[str, str], Link] = {}
        if self.full_mesh is not None:
            for a, b in itertools.combinations(sorted(n.name for n in self.nodes), 2):
                by_key[(a, b)] = Link(a=a, b=b, **self.full_mesh.model_dump())
        for link in self.links:
            by_key[link.key] = link
        return tuple(by_key[k] for k in sorted(by_key))

    def neighbours(self) -> dict[str, tuple[str, ...]]:
        adj: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for link in self.resolved_links():
            adj[link.a].append(link.b)
            adj[link.b].append(link.a)
        return {k: tuple(sorted(v)) for k, v in adj.items()}

    def link(self, a: str, b: str) -> Link | None:
        key = (a, b) if a < b else (b, a)
        for link in self.resolved_links():
            if link.key == key:
                return link
        return None

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def accuracy_of(self, model: str) -> float:
        return self.accuracy.get(model, 1.0)

    def with_policy(self, policy: str) -> ExperimentSpec:
        return self.model_copy(update={"policy": (policy,)})


def _no_duplicates(what: str, names: Iterable[str]) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"{what}: duplicate name {n!r}")
        seen.add(n)


def _format_error(err: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid experiment spec"]
    for e in err.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in e["loc"]).replace(".[", "[")
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_spec(data: object, origin: str = "<spec>") -> ExperimentSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: a spec must be a YAML mapping, got {type(data).__name__}")
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_format_error(err, origin)) from None


def load_spec(path: str | Path) -> ExperimentSpec:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise SpecError(f"{p}: cannot read spec ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"{p}: not valid YAML: {err}") from None
    return parse_spec(data, str(p))
