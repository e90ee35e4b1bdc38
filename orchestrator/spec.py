"""Experiment specs: YAML validated with pydantic, refused before anything starts.

A spec names the nodes (devices), the links between them, the sources with their models and
priorities, and the policies to run. ``load_spec`` returns a frozen ``ExperimentSpec`` or raises
``SpecError`` whose message names the file and the field at fault.

Link rates are link-layer (tc) rates; the simulator and the emulators budget the measured
goodput factor on top of them.

A spec may come from anyone, so every refusal happens here, before anything starts, as **one line**
``<file>: <field>: <why>`` (``SpecError``; the CLI prints it and exits 2). What is refused:

- YAML (``orchestrator/specfile.py``): a file over ``MAX_SPEC_BYTES`` or not a regular file,
  duplicate mapping keys (named with both lines), more than ``MAX_YAML_NODES`` nodes after alias
  expansion (billion laughs), nesting deeper than ``MAX_YAML_DEPTH``, a scalar over
  ``MAX_SCALAR_CHARS`` characters.
- Numbers: NaN and ±inf anywhere (``allow_inf_nan=False``, also in ``accuracy`` and
  ``policy_params``); every duration at most one day (``MAX_MS``/``MAX_S``; the beacon period at
  most the agents' 60 s); counts bounded (``MAX_SAMPLES`` samples, ``MAX_NODES`` nodes, ...);
  ``seed`` and integer policy parameters in what msgpack carries (0 <= seed < 2**63).
- Names: the spec ``name`` becomes a run folder and run id (``SPEC_NAME_PATTERN``, no ``..``);
  node and source names the stricter ``Name`` (namespace, container and file names); a link
  ``scenario`` the catalogue's name pattern.
- Link jitter: ``jitter_ms`` at most ``delay_ms`` and not on a ``scenario`` link (``pamdi_node.jitter``).
- Catalogues: a node ``device`` must be a known device profile; when loading a file
  (``load_spec``, or ``parse_spec(check_files=True)``) a link ``scenario`` must be in the radio
  scenario catalogue and a source's ``data`` an existing, readable ``.npy`` array of numbers with at
  least one sample. Those two are left to the caller otherwise: the scenario catalogue includes the
  user's own (``$PAMDI_SCENARIOS_DIR``, read at use) and a data path is opened by the agents, which may
  run elsewhere (a Colosseum SRN).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestrator.devices import DEVICES
from orchestrator.specerror import MAX_TEXT, SpecError, format_validation_error
from orchestrator.specerror import show as _show
from orchestrator.specfile import check_npy, read_spec_yaml
from pamdi_node.jitter import jitter_problem
from pamdi_node.models import MODEL_NAMES
from pamdi_node.policies.partition import DEFAULT_PARTITIONS, PER_BLOCK
from radio_scenarios import NAME_PATTERN as SCENARIO_NAME_PATTERN

POLICY_NAMES: tuple[str, ...] = ("local", "ar-mdi", "ms-mdi", "pa-mdi", "ddi", "pa-mdi-static")
# Policies the paper compares; "all" expands to these.
DEFAULT_POLICIES: tuple[str, ...] = ("local", "ar-mdi", "ms-mdi", "pa-mdi", "ddi")

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,14}$", description="lowercase, ≤15 chars")]
# The spec name becomes ``results/runs/<name>-<backend>-<time>`` and the run id: no separators, no
# leading dot or dash (hidden files, options), nothing a shell would interpret.
SPEC_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

# Upper bounds. Durations: one day is far beyond any experiment here and keeps every sum and product
# of them finite and exact enough; the beacon period matches the agents' own limit (60 s).
MAX_MS = 86_400_000.0  # one day in ms
MAX_S = 86_400.0  # one day in s
MAX_BEACON_MS = 60_000.0
MAX_SAMPLES = 1_000_000  # per source
MAX_PRIORITY = 1e6  # the wire accepts up to 1e12; ratios of 1e6 already saturate every policy
MAX_PARTITIONS = 1024  # a task's path is limited to 1,024 hops on the wire
# Simulated topologies go to 1,024 nodes (sweeps over large meshes); backends that run agents have
# their own, smaller limits (netns: 63 nodes per run).
MAX_NODES = 1024
MAX_LINKS = 256 * 255 // 2  # a full mesh of 256 nodes, or a sparse graph of MAX_NODES with degree ~64
MAX_SOURCES = 256
MAX_FAILURES = 1024
MAX_POLICIES = 16
MAX_POLICY_PARAMS = 64
MAX_MEMORY_MB = 1 << 20  # 1 TiB
SEED_LIMIT = 1 << 63  # seeds and integer parameters travel in msgpack: below 2**63 fits signed and unsigned 64 bits
_PARAM_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class _Frozen(BaseModel):
    # allow_inf_nan=False: a NaN or infinite number anywhere (e.g. `interval_ms: .inf`, which made
    # `simulate` wait forever) is refused as "Input should be a finite number".
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _checking_files(info: ValidationInfo) -> bool:
    """Whether this validation also checks what lies outside the spec (catalogue, data files)."""
    return bool(isinstance(info.context, dict) and info.context.get("check_files"))


class LinkParams(_Frozen):
    rate_mbit: float = Field(gt=0, le=100_000)
    delay_ms: float = Field(default=0.0, ge=0, le=10_000)
    loss: float = Field(default=0.0, ge=0, lt=1)
    # Delay variation: uniform in delay_ms ± jitter_ms per message, in order (``pamdi_node.jitter``).
    jitter_ms: float = Field(default=0.0, ge=0, le=10_000)
    # Name of a radio scenario (radio_scenarios catalogue) that drives the link over time.
    scenario: str | None = Field(default=None, pattern=SCENARIO_NAME_PATTERN)

    @model_validator(mode="after")
    def _jitter_fits(self) -> LinkParams:
        problem = jitter_problem(self.delay_ms, self.jitter_ms, self.scenario)
        if problem:  # a Link names itself; on full_mesh the error's location does
            raise ValueError(f"link {self.a}-{self.b}: {problem}" if isinstance(self, Link) else problem)
        return self

    @field_validator("scenario")
    @classmethod
    def _known_scenario(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None or not _checking_files(info):
            return v
        import radio_scenarios

        try:
            radio_scenarios.get(v)
        except radio_scenarios.ScenarioError as err:
            raise ValueError(str(err)) from None
        return v


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
    memory_mb: int | None = Field(default=None, gt=0, le=MAX_MEMORY_MB)
    # Where the node's agent runs its blocks: "cpu", or a GPU ("cuda", "cuda:N"). A GPU node
    # without an explicit speed is modelled from its GPU profile (orchestrator/gpuprofiles.py).
    device_type: str = Field(default="cpu", pattern=r"^(cpu|cuda(:[0-9]{1,2})?)$",
                             description="cpu, cuda or cuda:N")

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str | None) -> str | None:
        # Here, not when simulating: an unknown device used to surface as a 53-line traceback.
        if v is not None and v not in DEVICES:
            raise ValueError(f"unknown device {_show(v)}; known: {', '.join(sorted(DEVICES))}")
        return v


class Source(_Frozen):
    name: Name
    node: Name
    model: str
    priority: float = Field(default=1.0, gt=0, le=MAX_PRIORITY, description="priority weight gamma")
    samples: int = Field(default=100, ge=1, le=MAX_SAMPLES)
    interval_ms: float | None = Field(default=None, gt=0, le=MAX_MS)
    # At least one per day (the interval bound), at most one per microsecond.
    rate_hz: float | None = Field(default=None, ge=1000.0 / MAX_MS, le=1e6)
    # "periodic" submits every interval; "poisson" draws exponential gaps with that mean (seeded).
    arrival: Literal["periodic", "poisson"] = "periodic"
    start_ms: float = Field(default=0.0, ge=0, le=MAX_MS)
    batch: int = Field(default=1, ge=1, le=4096)
    # Partitions the model is cut into for the per-boundary decision: a count of ~equal-compute
    # partitions (default 4, as the authors' PA-MDI demo and code; a model with fewer blocks gets
    # one per block), or "blocks" for one partition per block.
    partitions: int | Literal["blocks"] = DEFAULT_PARTITIONS
    # Optional input data: a ``.npy`` array with samples on the first axis (e.g. a CIFAR-10 batch as
    # float32 NCHW, or token ids), opened by the source's agent as given (relative paths from its
    # working directory); synthetic seeded inputs otherwise.
    data: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in MODEL_NAMES:
            raise ValueError(f"unknown model {_show(v)}; known: {', '.join(MODEL_NAMES)}")
        return v

    @field_validator("partitions", mode="before")
    @classmethod
    def _partitions(cls, v: object) -> object:
        if v == PER_BLOCK and isinstance(v, str):
            return v
        if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_PARTITIONS:
            return v
        raise ValueError(f"partitions must be a whole number in 1..{MAX_PARTITIONS} or {PER_BLOCK!r} (one per block), "
                         f"got {_show(v)}")

    @field_validator("data")
    @classmethod
    def _data_file(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if "\0" in v or not v.endswith(".npy"):
            raise ValueError(f"{_show(v)} is not a .npy file (only .npy arrays, samples on the first axis, are read)")
        if _checking_files(info):
            check_npy(v)
        return v

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
    at_s: float = Field(ge=0, le=MAX_S)
    # Seconds after which the node comes back (None = never).
    recover_after_s: float | None = Field(default=None, gt=0, le=MAX_S)


class ExperimentSpec(_Frozen):
    name: str = Field(default="experiment", pattern=SPEC_NAME_PATTERN)
    description: str = Field(default="", max_length=MAX_TEXT)
    seed: int = Field(default=0, ge=0, lt=SEED_LIMIT)
    nodes: tuple[Node, ...] = Field(min_length=1, max_length=MAX_NODES)
    full_mesh: LinkParams | None = None
    links: tuple[Link, ...] = Field(default=(), max_length=MAX_LINKS)
    sources: tuple[Source, ...] = Field(min_length=1, max_length=MAX_SOURCES)
    accuracy: dict[str, float] = Field(default_factory=dict)
    policy: tuple[str, ...] = Field(default=("pa-mdi",), min_length=1, max_length=MAX_POLICIES)
    # Free-form parameters for the policies (see each policy module's docstring).
    policy_params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    beacon_period_ms: float = Field(default=100.0, gt=0, le=MAX_BEACON_MS)
    failures: tuple[Failure, ...] = Field(default=(), max_length=MAX_FAILURES)
    # Profile set to use (a folder of profile JSON files); None = the shipped profiles for simulation,
    # this host's own (measured on first use, cached) for emulation.
    profiles: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    # Device-time model of an emulation (pamdi_node/devicetime.py); None = the backend's default.
    device_time: Literal["profile", "quota", "native"] | None = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if ".." in v:
            raise ValueError(f"{_show(v)} contains '..' (the name becomes a folder name)")
        return v

    @field_validator("policy_params", mode="before")
    @classmethod
    def _plain_params(cls, v: object) -> object:
        # Checked before the union validation, which would report each failed member of
        # `float | int | str | bool` as a separate error; these values travel to the agents in msgpack.
        if not isinstance(v, dict):
            return v
        if len(v) > MAX_POLICY_PARAMS:
            raise ValueError(f"{len(v)} parameters; at most {MAX_POLICY_PARAMS}")
        for key, x in v.items():
            if not isinstance(key, str) or not _PARAM_KEY.fullmatch(key):
                raise ValueError(f"parameter name {_show(key)} is not a plain name (letters, digits, '_', '.', '-')")
            if isinstance(x, bool):
                continue
            if isinstance(x, int) and not -SEED_LIMIT <= x < SEED_LIMIT:
                raise ValueError(f"{key}: {_show(x)} does not fit in 64 bits")
            if isinstance(x, float) and not math.isfinite(x):
                raise ValueError(f"{key}: must be a finite number, got {x}")
            if isinstance(x, str) and len(x) > MAX_TEXT:
                raise ValueError(f"{key}: a string of {len(x)} characters; at most {MAX_TEXT}")
            if not isinstance(x, int | float | str):
                raise ValueError(f"{key}: must be a number, a string or a bool, got {type(x).__name__}")
        return v

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
                raise ValueError(f"unknown policy {_show(p)}; known: {', '.join(POLICY_NAMES)}, all")
        return v

    @field_validator("accuracy")
    @classmethod
    def _accuracy_range(cls, v: dict[str, float]) -> dict[str, float]:
        for model, acc in v.items():
            if model not in MODEL_NAMES:
                raise ValueError(f"accuracy given for unknown model {_show(model)}")
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


def parse_spec(data: object, origin: str = "<spec>", *, check_files: bool = False) -> ExperimentSpec:
    """Validate a spec given as data. ``check_files`` also checks what lies outside it: each link
    scenario against the radio scenario catalogue and each source's data file (``load_spec`` does)."""
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: a spec must be a YAML mapping, got {type(data).__name__}")
    try:
        return ExperimentSpec.model_validate(data, context={"check_files": check_files})
    except ValidationError as err:
        raise SpecError(format_validation_error(err, origin)) from None


def load_spec(path: str | Path, *, check_files: bool = True) -> ExperimentSpec:
    """Read, check and validate a spec file; ``SpecError`` otherwise. ``check_files=False`` skips the
    catalogue and data-file checks, for a copy of a spec already checked where it was written (e.g.
    inside a container, which lacks the user's own scenarios)."""
    return parse_spec(read_spec_yaml(Path(path)), str(path), check_files=check_files)
