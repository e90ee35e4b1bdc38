"""Expansion of a sweep into cells: one per (axis point, policy, seed), each a fully resolved spec.

Every cell's spec is built and validated here, before anything runs, so that an unknown path or a
value the spec refuses stops the sweep with one line naming the study, the axis and the value.

Paths (``set_path``): the first part is a spec field. List fields are addressed by item: ``sources``
and ``nodes`` by name, ``links`` by ``a-b`` (either order), ``failures`` by index; mappings with free
keys (``policy_params``, ``accuracy``) take the rest of the path as one key, since policy parameter
names contain dots (``policy_params.pa-mdi.aging``); ``full_mesh`` by field.

A cell's key hashes what decides its result: the resolved spec (every field, defaults included,
plus which node speeds were given explicitly, since an explicit speed overrides a ``device``), the
policy, the seed, the mode, the backend with its options and the pamdi version.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.spec import ExperimentSpec, Failure, Link, LinkParams, Node, Source, SpecError, parse_spec
from orchestrator.specerror import show as _show
from orchestrator.sweep.spec import MAX_CELLS, NodesAxis, RatioAxis, Study, SweepError, SweepFile

_LISTS: dict[str, type] = {"sources": Source, "nodes": Node, "links": Link, "failures": Failure}
_FREE_KEYS = ("policy_params", "accuracy")


@dataclass(frozen=True, eq=False)
class Cell:
    study: str
    point: tuple[tuple[str, Any], ...]  # (axis column, value), in the study's axis order
    policy: str
    seed: int
    mode: str
    backend: str
    key: str
    spec: dict[str, Any] = field(repr=False)  # the resolved spec as set fields (what a worker validates)
    sources: tuple[tuple[str, float], ...] = ()  # (name, priority) in spec order, for failed cells' rows
    options: dict[str, Any] = field(default_factory=dict)  # emulation: backend options, task timeout

    def payload(self, out_dir: Path) -> dict[str, Any]:
        """What a worker needs to compute the cell (plain data: it may travel to another host)."""
        return {"key": self.key, "spec": self.spec, "policy": self.policy, "mode": self.mode,
                "backend": self.backend, "options": self.options,
                "run_dir": str((out_dir / "runs" / self.key).resolve())}


# ------------------------------------------------------------------------------------------ paths
def _item_index(items: list[dict[str, Any]], head: str, ident: str) -> int:
    for i, item in enumerate(items):
        if head == "links":
            if ident in (f"{item.get('a')}-{item.get('b')}", f"{item.get('b')}-{item.get('a')}"):
                return i
        elif head == "failures":
            if ident == str(i):
                return i
        elif item.get("name") == ident:
            return i
    known = [str(i) if head == "failures" else f"{x.get('a')}-{x.get('b')}" if head == "links" else str(x.get("name"))
             for i, x in enumerate(items)]
    raise SweepError(f"no {head} item {ident!r} (known: {', '.join(known) or 'none'})")


def _check_field(model: type, name: str, where: str) -> None:
    if name not in model.model_fields:  # type: ignore[attr-defined]
        raise SweepError(f"{where} has no field {name!r} (fields: {', '.join(model.model_fields)})")  # type: ignore[attr-defined]


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` in a spec given as data (``model_dump(exclude_unset=True)``); ``SweepError`` if unknown."""
    parts = path.split(".")
    head = parts[0]
    _check_field(ExperimentSpec, head, "the spec")
    if head in _FREE_KEYS:
        if len(parts) < 2:
            raise SweepError(f"{head}: name a key ({head}.KEY)")
        data.setdefault(head, {})[".".join(parts[1:])] = value
    elif head in _LISTS:
        if len(parts) != 3:
            raise SweepError(f"{head}: address a field of one item ({head}.ITEM.FIELD)")
        items = data.get(head) or []
        i = _item_index(items, head, parts[1])
        _check_field(_LISTS[head], parts[2], f"{head}.{parts[1]}")
        data[head] = [dict(x) for x in items]
        data[head][i][parts[2]] = value
    elif head == "full_mesh":
        if len(parts) != 2:
            raise SweepError("full_mesh: address one field (full_mesh.FIELD)")
        if not data.get("full_mesh"):
            raise SweepError("the spec has no full_mesh")
        _check_field(LinkParams, parts[1], "full_mesh")
        data["full_mesh"] = {**data["full_mesh"], parts[1]: value}
    else:
        if len(parts) != 1:
            raise SweepError(f"{head} is a plain field; it has no {'.'.join(parts[1:])!r}")
        data[head] = value


def get_path(spec: ExperimentSpec, path: str) -> Any:
    """The value at ``path`` in a validated spec (defaults included)."""
    probe = spec.model_dump(mode="json")
    set_path(copy.deepcopy(probe), path, None)  # the same checks, the same messages
    parts = path.split(".")
    head = parts[0]
    if head in _FREE_KEYS:
        value = probe[head].get(".".join(parts[1:]))
        if value is None:
            raise SweepError(f"{path}: not set in the spec")
        return value
    if head in _LISTS:
        return probe[head][_item_index(probe[head], head, parts[1])][parts[2]]
    if head == "full_mesh":
        return probe["full_mesh"][parts[1]]
    return probe[head]


# -------------------------------------------------------------------------------------- derived
def _ratio_paths(axis: RatioAxis, base: ExperimentSpec) -> tuple[str, str]:
    ranked = sorted(base.sources, key=lambda s: -s.priority)  # stable: spec order among equals
    if axis.set is None or axis.of is None:
        if len(ranked) < 2:
            raise SweepError("a ratio axis without set/of needs two sources")
        return (axis.set or f"sources.{ranked[0].name}.priority", axis.of or f"sources.{ranked[-1].name}.priority")
    return axis.set, axis.of


def _with_nodes(data: dict[str, Any], axis: NodesAxis, count: int) -> None:
    if not data.get("full_mesh"):
        raise SweepError("a nodes axis needs a full_mesh spec (links of added nodes are not invented)")
    nodes = [dict(n) for n in data["nodes"]]
    template = nodes[-1] if axis.like is None else nodes[_item_index(nodes, "nodes", axis.like)]
    names = {n["name"] for n in nodes}
    i = 0
    while len(nodes) < count:
        i += 1
        if f"n{i}" not in names:
            nodes.append({**template, "name": f"n{i}"})
    data["nodes"] = nodes[:count]


# ------------------------------------------------------------------------------------ expansion
def _validate(data: dict[str, Any], where: str) -> ExperimentSpec:
    try:
        return parse_spec(data, where)
    except SpecError as err:
        raise SweepError(str(err)) from None


def _apply(data: dict[str, Any], path: str, value: Any, where: str) -> None:
    try:
        set_path(data, path, value)
    except SweepError as err:
        raise SweepError(f"{where}: {err}") from None


def _base_spec(study: Study, base_dir: Path) -> tuple[ExperimentSpec, Path]:
    from orchestrator.spec import load_spec
    from orchestrator.specs import resolve_spec

    candidate = base_dir / study.spec
    try:
        path = candidate if candidate.is_file() else resolve_spec(study.spec)
        return load_spec(path), path
    except (FileNotFoundError, SpecError) as err:
        raise SweepError(f"study {study.name}: spec: {err}") from None


def _seeds(seeds: int | tuple[int, ...], base_seed: int) -> list[int]:
    return [base_seed + i for i in range(seeds)] if isinstance(seeds, int) else list(seeds)


def cell_key(spec: ExperimentSpec, policy: str, seed: int, mode: str, backend: str, options: dict[str, Any]) -> str:
    from pamdi_node import __version__

    material = {"spec": spec.model_dump(mode="json"), "explicit_speed": [n.name for n in spec.nodes
                                                                          if "speed" in n.model_fields_set],
                "policy": policy, "seed": seed, "mode": mode, "backend": backend, "options": options,
                "version": __version__}
    return hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def expand_study(sweep: SweepFile, study: Study, base_dir: Path, origin: str = "<sweep>") -> list[Cell]:
    base, path = _base_spec(study, base_dir)
    data = base.model_dump(mode="json", exclude_unset=True)
    if base.profiles is not None:  # workers may run elsewhere: a relative profiles folder is made absolute
        data["profiles"] = str((path.parent / base.profiles).resolve())
    here = f"{origin}: study {study.name}"
    for p, v in study.overrides.items():
        _apply(data, p, v, f"{here}: override {p}={_show(v)}")
    base = _validate(data, f"{here}: overrides")
    # Each value alone first, so that a bad one is named by its own axis, not by a point.
    for p, values in study.axes.items():
        for v in values:
            trial = copy.deepcopy(data)
            _apply(trial, p, v, f"{here}: axis {p}={_show(v)}")
            _validate(trial, f"{here}: axis {p}={_show(v)}")
    ratio_paths = {name: _ratio_paths(ax, base) for name, ax in study.derived.items() if isinstance(ax, RatioAxis)}
    columns = [*study.axes, *study.derived]
    grids = [*study.axes.values(), *(ax.values for ax in study.derived.values())]
    policies = study.policies or sweep.policies
    seeds = _seeds(study.seeds if study.seeds is not None else sweep.seeds, base.seed)
    size = len(policies) * len(seeds)
    for g in grids:
        size *= len(g)
    if size > MAX_CELLS:
        raise SweepError(f"{here}: {size} cells; at most {MAX_CELLS}")
    options = ({"backend_options": sweep.backend_options, "task_timeout_s": sweep.task_timeout_s}
               if sweep.mode == "emulate" else {})
    cells: list[Cell] = []
    for values in itertools.product(*grids):
        point = tuple(zip(columns, values, strict=True))
        where = f"{here}: point {', '.join(f'{c}={_show(v)}' for c, v in point)}"
        cur = copy.deepcopy(data)
        for c, v in point[:len(study.axes)]:
            _apply(cur, c, v, where)
        spec = _validate(cur, where)
        for c, v in point[len(study.axes):]:
            axis = study.derived[c]
            if isinstance(axis, RatioAxis):
                target, of = ratio_paths[c]
                _apply(cur, target, float(v) * float(_checked_get(spec, of, where)), f"{where}: {c}")
            else:
                try:
                    _with_nodes(cur, axis, int(v))
                except SweepError as err:
                    raise SweepError(f"{where}: {c}: {err}") from None
        spec = _validate(cur, where)
        for seed in seeds:
            for policy in policies:
                run = spec.model_copy(update={"seed": seed, "policy": (policy,)})
                backend = sweep.backend_name
                cells.append(Cell(
                    study=study.name, point=point, policy=policy, seed=seed, mode=sweep.mode, backend=backend,
                    key=cell_key(run, policy, seed, sweep.mode, backend, options),
                    spec={**cur, "seed": seed, "policy": [policy]}, options=options,
                    sources=tuple((s.name, s.priority) for s in spec.sources)))
    return cells


def _checked_get(spec: ExperimentSpec, path: str, where: str) -> Any:
    try:
        value = get_path(spec, path)
    except SweepError as err:
        raise SweepError(f"{where}: {err}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SweepError(f"{where}: {path} is {_show(value)}, not a number to take a ratio of")
    return value


def expand(sweep: SweepFile, base_dir: Path, origin: str = "<sweep>") -> list[Cell]:
    """Every cell of the sweep, validated; ``SweepError`` (one line) at the first bad axis value."""
    cells: list[Cell] = []
    for study in sweep.studies:
        cells.extend(expand_study(sweep, study, base_dir, origin))
        if len(cells) > MAX_CELLS:
            raise SweepError(f"{origin}: more than {MAX_CELLS} cells")
    # Two cells may share a key (overlapping studies, axis values that change nothing, 1 and 1.0): the
    # engine computes such a run once and both rows show it.
    return cells


def sweep_hash(cells: list[Cell]) -> str:
    """A short hash of the set of cells, for the default output folder."""
    return hashlib.sha256("\n".join(sorted(c.key for c in cells)).encode()).hexdigest()[:8]
