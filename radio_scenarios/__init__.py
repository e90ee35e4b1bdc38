"""Catalogue of radio scenarios: link profiles for local shaping and Colosseum RF scenario IDs.

``catalogue.yaml`` (package data) holds two kinds of entries:

- **link profiles** (``points``): rate / one-way delay / loss, constant (one point) or time-varying
  (step changes at ``t_s``, optionally looping). The netns backend shapes a spec link with them when
  the link names the scenario (``LinkParams.scenario``).
- **Colosseum scenarios** (``colosseum_id``): the RF scenario a Colosseum run starts with
  ``colosseumcli rf start <id>``, with its documented meaning. They carry a link profile only when
  one was measured there (import it with ``pamdi scenarios import-iperf3 --colosseum-id``).

User profiles (``pamdi scenarios import-iperf3``) are written to ``$PAMDI_SCENARIOS_DIR``
(default ``~/.config/pamdi/scenarios``) as one YAML file per scenario and merged into the catalogue.
"""

from __future__ import annotations

import itertools
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class ScenarioError(ValueError):
    """A scenario is unknown or invalid; the message names the entry and field."""


class LinkPoint(BaseModel):
    """From ``t_s`` on (until the next point) the link has these parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    t_s: float = Field(default=0.0, ge=0)
    rate_mbit: float = Field(gt=0, le=100_000)
    delay_ms: float = Field(default=0.0, ge=0, le=10_000)
    loss: float = Field(default=0.0, ge=0, lt=1)


class Scenario(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=NAME_PATTERN)
    description: str
    source: str = ""
    # Colosseum RF scenario ID (None for purely local profiles).
    colosseum_id: int | None = Field(default=None, ge=1)
    # Link profile for local shaping; empty when none has been measured (Colosseum entries).
    points: tuple[LinkPoint, ...] = ()
    loop: bool = False
    # Length of one period when looping (default: last point + the previous step).
    period_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Scenario:
        times = [p.t_s for p in self.points]
        if times and times[0] != 0:
            raise ValueError("points: the first point must be at t_s = 0")
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError("points: t_s must increase strictly")
        if self.period_s is not None and times and self.period_s <= times[-1]:
            raise ValueError("period_s must be longer than the last point's t_s")
        return self

    @property
    def shapeable(self) -> bool:
        return bool(self.points)

    @property
    def time_varying(self) -> bool:
        return len(self.points) > 1

    @property
    def period(self) -> float:
        if self.period_s is not None:
            return self.period_s
        if len(self.points) < 2:
            return 0.0
        t = [p.t_s for p in self.points]
        return t[-1] + (t[-1] - t[-2])

    def at(self, t: float) -> LinkPoint:
        """The link parameters in force ``t`` seconds after the start."""
        if not self.points:
            raise ScenarioError(f"scenario {self.name!r} has no link profile to shape a local link with")
        if self.loop and self.period > 0:
            t = t % self.period
        current = self.points[0]
        for p in self.points:
            if p.t_s <= t:
                current = p
            else:
                break
        return current

    def changes(self, horizon_s: float) -> list[tuple[float, LinkPoint]]:
        """Every (time, parameters) step from 0 up to ``horizon_s`` (loops unrolled)."""
        if not self.points:
            return []
        out: list[tuple[float, LinkPoint]] = []
        offset = 0.0
        while True:
            for p in self.points:
                t = offset + p.t_s
                if t > horizon_s:
                    return out
                out.append((t, p))
            if not (self.loop and self.period > 0):
                return out
            offset += self.period

    def mean_rate_mbit(self) -> float:
        """Time-averaged rate over one period (or the single rate)."""
        if not self.points:
            raise ScenarioError(f"scenario {self.name!r} has no link profile")
        if len(self.points) == 1:
            return self.points[0].rate_mbit
        ends = [p.t_s for p in self.points[1:]] + [self.period]
        total = sum(p.rate_mbit * (end - p.t_s) for p, end in zip(self.points, ends, strict=True))
        return total / self.period


def user_dir() -> Path:
    return Path(os.environ.get("PAMDI_SCENARIOS_DIR", Path.home() / ".config" / "pamdi" / "scenarios"))


def _parse(entry: object, origin: str) -> Scenario:
    try:
        return Scenario.model_validate(entry)
    except ValidationError as err:
        name = entry.get("name", "?") if isinstance(entry, dict) else "?"
        details = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or '(top level)'}: {e['msg'].removeprefix('Value error, ')}"
            for e in err.errors()
        )
        raise ScenarioError(f"{origin}: scenario {name!r}: {details}") from None


@lru_cache(maxsize=1)
def _shipped() -> tuple[Scenario, ...]:
    text = resources.files(__name__).joinpath("catalogue.yaml").read_text()
    data = yaml.safe_load(text)
    return tuple(_parse(e, "catalogue.yaml") for e in data["scenarios"])


def load_file(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ScenarioError(f"{path}: cannot read scenario: {err}") from None
    return _parse(data, str(path))


def catalogue() -> dict[str, Scenario]:
    """Shipped scenarios plus the user's (a user file may not reuse a shipped name)."""
    out = {s.name: s for s in _shipped()}
    d = user_dir()
    if d.is_dir():
        for path in sorted(d.glob("*.yaml")):
            s = load_file(path)
            if s.name in out and out[s.name] not in _shipped():
                raise ScenarioError(f"{path}: duplicate user scenario {s.name!r}")
            if s.name in {x.name for x in _shipped()}:
                raise ScenarioError(f"{path}: {s.name!r} is a shipped scenario name; pick another")
            out[s.name] = s
    return out


def get(name: str) -> Scenario:
    cat = catalogue()
    if name not in cat:
        raise ScenarioError(f"unknown radio scenario {name!r}; known: {', '.join(sorted(cat))}")
    return cat[name]


def by_colosseum_id(scenario_id: int) -> Scenario | None:
    for s in catalogue().values():
        if s.colosseum_id == scenario_id:
            return s
    return None


def save_user(s: Scenario, overwrite: bool = False) -> Path:
    d = user_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{s.name}.yaml"
    if s.name in {x.name for x in _shipped()}:
        raise ScenarioError(f"{s.name!r} is a shipped scenario name; pick another")
    if path.exists() and not overwrite:
        raise ScenarioError(f"{path} exists (use --force to overwrite)")
    path.write_text(yaml.safe_dump(s.model_dump(mode="json", exclude_none=True), sort_keys=False))
    return path
