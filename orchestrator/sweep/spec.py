"""Sweep files: a base spec, axes over its fields, policies, seeds; validated like specs.

A sweep file is YAML. One study (a base spec and its axes) may be written at the top level, or
several under ``studies:`` (one per base spec, e.g. the paper's three testbeds)::

    name: paper
    policies: all            # a name, a list, or all (the paper's five)
    seeds: 3                 # a count (the base spec's seed + 0, 1, ...) or a list of seeds
    mode: sim                # or emulate (then backend: netns|docker|local)
    studies:
      - name: resnet50
        spec: paper-5node-resnet50         # shipped name, or a path relative to the sweep file
        overrides: {sources.ts.samples: 60}  # axis-free changes to the base spec
        axes:
          sources.nts.interval_ms: [200, 100, 60]
        derived:
          ratio: {kind: ratio, values: [2, 10, 50]}   # TS priority = ratio x NTS priority
        paper: {ar-mdi: 75.3, ms-mdi: 73.2}           # the paper's "up to" TS reductions (%)

Paths address spec fields (``orchestrator/sweep/cells.py``): ``sources.nts.interval_ms``,
``nodes.a.speed``, ``full_mesh.rate_mbit``, ``links.a-b.delay_ms``, ``policy_params.pa-mdi.aging``.
Derived axes: ``ratio`` sets one field to the axis value times another (by default the priority of
the base spec's highest-priority source to the value times that of its lowest-priority one);
``nodes`` sets the node count of a full mesh (copies of ``like``, default the last node, named
``n<i>``; fewer nodes drop the last ones). ``load_sweep`` refuses a bad file with one line
(``SweepError``), as ``load_spec`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from orchestrator.spec import DEFAULT_POLICIES, POLICY_NAMES, SEED_LIMIT, SPEC_NAME_PATTERN, SpecError
from orchestrator.specerror import format_validation_error as _format_error

MAX_AXIS_VALUES = 1000
MAX_SEEDS = 1000
MAX_STUDIES = 64
# Cells (axis points x policies x seeds) of one sweep: beyond this a typo (a 10,000-value axis) would
# fill the disk with cell files before anyone notices.
MAX_CELLS = 200_000
# Columns of cells.parquet besides the axes (orchestrator/sweep/tables.py): no axis may take their names.
RESERVED_COLUMNS = frozenset({"study", "policy", "source", "role", "priority", "seed", "mode", "backend", "completed",
                              "failed", "mean_s", "p50_s", "p95_s", "weighted_mean_s", "status", "error", "cell"})


class SweepError(SpecError):
    """A sweep file or an axis is wrong; one line naming the file, the axis and the value."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class RatioAxis(_Frozen):
    kind: Literal["ratio"] = "ratio"
    values: tuple[float, ...] = Field(min_length=1, max_length=MAX_AXIS_VALUES)
    # Paths; None = the priority of the base spec's highest- (set) and lowest-priority (of) source.
    set: str | None = None
    of: str | None = None

    @field_validator("values")
    @classmethod
    def _positive(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(x <= 0 for x in v):
            raise ValueError("ratios must be positive")
        return v


class NodesAxis(_Frozen):
    kind: Literal["nodes"]
    values: tuple[int, ...] = Field(min_length=1, max_length=MAX_AXIS_VALUES)
    like: str | None = None  # template node for the added ones; None = the base spec's last node

    @field_validator("values")
    @classmethod
    def _counts(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(x < 1 for x in v):
            raise ValueError("node counts must be at least 1")
        return v


def _default_kind(v: Any) -> Any:
    # `kind` defaults to ratio, but a discriminated union needs it present to report one clean error.
    return {"kind": "ratio", **v} if isinstance(v, dict) and "kind" not in v else v


DerivedAxis = Annotated[RatioAxis | NodesAxis, Field(discriminator="kind")]


def _check_seeds(v: int | tuple[int, ...]) -> int | tuple[int, ...]:
    if isinstance(v, bool):
        raise ValueError("seeds must be a count or a list of seeds")
    if isinstance(v, int) and not 1 <= v <= MAX_SEEDS:
        raise ValueError(f"a seed count must be in 1..{MAX_SEEDS}")
    if isinstance(v, tuple):
        if not 1 <= len(v) <= MAX_SEEDS or len(set(v)) != len(v):
            raise ValueError(f"a seed list needs 1..{MAX_SEEDS} distinct seeds")
        if any(not 0 <= s < SEED_LIMIT for s in v):
            raise ValueError("seeds must be in 0 <= seed < 2**63")
    return v


def _check_policies(v: Any) -> Any:
    if not isinstance(v, str | list | tuple):
        return v  # the type check says what is wrong
    names = DEFAULT_POLICIES if v == "all" else (v,) if isinstance(v, str) else tuple(v)
    for p in names:
        if p not in POLICY_NAMES:
            raise ValueError(f"unknown policy {p!r}; known: {', '.join(POLICY_NAMES)}, all")
    if not names or len(set(names)) != len(names):
        raise ValueError("policies: give at least one, each once")
    return tuple(names)


Seeds = Annotated[int | tuple[int, ...], AfterValidator(_check_seeds)]
Policies = Annotated[tuple[str, ...], BeforeValidator(_check_policies)]


class Study(_Frozen):
    name: str = Field(pattern=SPEC_NAME_PATTERN)
    spec: str = Field(min_length=1, max_length=4096)
    overrides: dict[str, JsonValue] = Field(default_factory=dict)
    axes: dict[str, tuple[JsonValue, ...]] = Field(default_factory=dict)
    derived: dict[str, DerivedAxis] = Field(default_factory=dict)
    policies: Policies | None = None  # None = the sweep's
    seeds: Seeds | None = None
    # The paper's "up to" TS mean reduction of PA-MDI against each baseline, in percent (for the report).
    paper: dict[str, float] = Field(default_factory=dict)

    @field_validator("derived", mode="before")
    @classmethod
    def _kinds(cls, v: Any) -> Any:
        return {k: _default_kind(x) for k, x in v.items()} if isinstance(v, dict) else v

    @field_validator("axes")
    @classmethod
    def _axis_values(cls, v: dict[str, tuple[JsonValue, ...]]) -> dict[str, tuple[JsonValue, ...]]:
        import json

        for path, values in v.items():
            if not 1 <= len(values) <= MAX_AXIS_VALUES:
                raise ValueError(f"axis {path}: give 1..{MAX_AXIS_VALUES} values")
            seen = [json.dumps(x, sort_keys=True) for x in values]
            if len(set(seen)) != len(seen):
                raise ValueError(f"axis {path}: a value is listed twice")
        return v

    @model_validator(mode="after")
    def _names(self) -> Study:
        clash = set(self.axes) & set(self.derived)
        if clash:
            raise ValueError(f"axis {sorted(clash)[0]} is both a path axis and a derived axis")
        for path in self.axes:
            if path in ("seed", "policy"):
                raise ValueError(f"axis {path}: seeds and policies are set by `seeds:` and `policies:`")
        for name in self.derived:
            if name in RESERVED_COLUMNS or name in ("seed", "policy"):
                raise ValueError(f"derived axis {name}: the name of a table column; choose another")
        return self


class SweepFile(_Frozen):
    name: str = Field(pattern=SPEC_NAME_PATTERN)
    description: str = Field(default="", max_length=4096)
    mode: Literal["sim", "emulate"] = "sim"
    backend: str | None = None  # emulate only; None = netns
    backend_options: dict[str, JsonValue] = Field(default_factory=dict)
    task_timeout_s: float = Field(default=60.0, gt=0, le=86_400)
    policies: Policies = DEFAULT_POLICIES
    seeds: Seeds = 1
    notes: str = Field(default="", max_length=4096)  # written into report.md
    studies: tuple[Study, ...] = Field(min_length=1, max_length=MAX_STUDIES)

    @model_validator(mode="before")
    @classmethod
    def _single_study(cls, data: Any) -> Any:
        # The one-study shorthand: spec/axes/... at the top level become studies[0], named as the sweep.
        if not isinstance(data, dict) or "studies" in data:
            return data
        keys = ("spec", "overrides", "axes", "derived", "paper")
        study = {k: data[k] for k in keys if k in data}
        rest = {k: v for k, v in data.items() if k not in keys}
        if "spec" in study:
            study["name"] = data.get("name", "sweep")
            rest["studies"] = [study]
        return rest

    @field_validator("studies")
    @classmethod
    def _distinct(cls, v: tuple[Study, ...]) -> tuple[Study, ...]:
        names = [s.name for s in v]
        if len(set(names)) != len(names):
            raise ValueError("two studies share a name")
        return v

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str | None) -> str | None:
        from orchestrator.backends import BACKENDS

        if v is not None and v not in BACKENDS:
            raise ValueError(f"unknown backend {v!r}; known: {', '.join(BACKENDS)}")
        return v

    @model_validator(mode="after")
    def _emulation(self) -> SweepFile:
        if self.mode == "sim" and (self.backend is not None or self.backend_options):
            raise ValueError("backend: only for mode: emulate")
        return self

    @property
    def backend_name(self) -> str:
        """The backend of an emulated sweep ("netns" unless given); "sim" in simulation."""
        return "sim" if self.mode == "sim" else self.backend or "netns"


def parse_sweep(data: object, origin: str = "<sweep>") -> SweepFile:
    if not isinstance(data, dict):
        raise SweepError(f"{origin}: a sweep must be a YAML mapping, got {type(data).__name__}")
    try:
        return SweepFile.model_validate(data)
    except ValidationError as err:
        raise SweepError(_format_error(err, origin)) from None


def load_sweep(path: str | Path) -> SweepFile:
    from orchestrator.specfile import read_spec_yaml

    try:
        data = read_spec_yaml(Path(path))
    except SpecError as err:
        raise SweepError(str(err).replace("cannot read spec", "cannot read sweep")) from None
    return parse_sweep(data, str(path))


def is_sweep_data(data: object) -> bool:
    """Whether YAML data is a sweep rather than a spec (specs have neither key: extra fields are refused)."""
    return isinstance(data, dict) and ("studies" in data or "spec" in data)


def _scalar(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def parse_vary(item: str, option: str = "--vary") -> tuple[str, list[Any]]:
    """``PATH=V1,V2,...`` with each value read as a YAML scalar (``10`` a number, ``blocks`` text)."""
    path, sep, values = item.partition("=")
    if not sep or not path or not values:
        raise SweepError(f"{option}: expected PATH=V1,V2,..., got {item!r}")
    return path.strip(), [_scalar(v) for v in values.split(",")]


def inline_sweep(spec: str, *, vary: list[str], ratios: str | None = None, sets: list[str] | None = None,
                 seeds: int | None = None, policies: str | None = None, mode: str = "sim",
                 backend: str | None = None) -> SweepFile:
    """The sweep of ``pamdi sweep SPEC --vary ... [--ratio R1,R2] [--set PATH=V] --seeds N``."""
    axes: dict[str, list[Any]] = {}
    for item in vary:
        path, values = parse_vary(item)
        if path in axes:
            raise SweepError(f"--vary: {path} given twice")
        axes[path] = values
    overrides = {}
    for item in sets or []:
        path, values = parse_vary(item, "--set")
        if len(values) != 1:
            raise SweepError(f"--set: {path}: one value, got {len(values)}")
        overrides[path] = values[0]
    data: dict[str, Any] = {"name": f"{Path(spec).name.removesuffix('.yaml')}-sweep", "spec": spec, "axes": axes,
                            "overrides": overrides, "mode": mode}
    if ratios is not None:
        data["derived"] = {"ratio": {"kind": "ratio", "values": [_scalar(v) for v in ratios.split(",")]}}
    if seeds is not None:
        data["seeds"] = seeds
    if policies is not None:
        data["policies"] = policies if policies == "all" or "," not in policies else policies.split(",")
    if backend is not None:
        data["backend"] = backend
    return parse_sweep(data, "pamdi sweep")
