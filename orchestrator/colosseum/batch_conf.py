"""A batch job's ``radio.conf`` on the leader SRN (as ``orchestrator/colosseum/batch.py`` writes it),
read with errors that name the field; ``LeadError``: why the batch experiment cannot go on;
``StateFile``: what status.sh reports."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.spec import ExperimentSpec, SpecError, parse_spec

log = logging.getLogger("pamdi.batch_lead")

DEFAULT_STATE_FILE = "/tmp/pamdi_radio_state"
DEFAULT_DISCOVERY_TIMEOUT_S = 420.0


class LeadError(RuntimeError):
    """The batch experiment cannot go on; the message is the reason status.sh reports."""


@dataclass(frozen=True)
class BatchConf:
    path: Path
    batch: str
    node: str
    spec: ExperimentSpec
    agent_port: int
    data_interface: str | None
    data_subnet: str | None
    control_interface: str
    keep_outputs: bool
    raw: Mapping[str, Any] = field(repr=False)


def load_conf(path: str | Path) -> BatchConf:
    """radio.conf as ``orchestrator.colosseum.batch.node_configs`` writes it; errors name the field."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as err:
        raise LeadError(f"{p}: cannot read: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise LeadError(f"{p}: not JSON ({err})") from None
    if not isinstance(data, dict):
        raise LeadError(f"{p}: expected a JSON object")

    def need(key: str, typ: type | tuple[type, ...]) -> Any:
        if not isinstance(data.get(key), typ) or (isinstance(data.get(key), bool) and typ is int):
            raise LeadError(f"{p}: field {key!r} missing or not {getattr(typ, '__name__', typ)}")
        return data[key]

    if not data.get("leader"):
        raise LeadError(f"{p}: field 'leader' is not true: this node is not the batch's leader (RF node 1)")
    port = need("agent_port", int)
    if not 1 <= port <= 65535:
        raise LeadError(f"{p}: field 'agent_port' {port} is not a TCP port")
    dp = data.get("data_plane") or {}
    if not isinstance(dp, dict) or not (dp.get("interface") or dp.get("subnet")):
        raise LeadError(f"{p}: field 'data_plane' needs an 'interface' or a 'subnet'")
    if dp.get("subnet"):
        try:
            ipaddress.IPv4Network(dp["subnet"], strict=False)
        except ValueError as err:
            raise LeadError(f"{p}: field 'data_plane.subnet': {err}") from None
    try:
        spec = parse_spec(need("spec", dict), origin=f"{p}: spec")
    except SpecError as err:
        raise LeadError(str(err)) from None
    node = need("node", str)
    if node != spec.nodes[0].name:
        raise LeadError(f"{p}: field 'node' {node!r} should be the spec's first node {spec.nodes[0].name!r}")
    return BatchConf(path=p, batch=need("batch", str), node=node, spec=spec, agent_port=port,
                     data_interface=dp.get("interface"), data_subnet=dp.get("subnet"),
                     control_interface=str(data.get("control_interface") or "col0"),
                     keep_outputs=bool(data.get("keep_outputs", False)), raw=data)


class StateFile:
    """status.sh's state (same files as common.sh's ``set_state``); stop.sh's states are final."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or os.environ.get("PAMDI_STATE_FILE", DEFAULT_STATE_FILE)

    def current(self) -> str:
        try:
            return Path(self.path).read_text().strip()
        except OSError:
            return ""

    def set(self, state: str, info: str) -> None:
        log.info("%s: %s", state, info)
        if self.current() in ("STOPPING", "FINISHED"):
            return
        try:
            for suffix, text in ((".info", info), ("", state)):
                tmp = Path(f"{self.path}{suffix}.lead.tmp")
                tmp.write_text(text.replace("\n", " ") + "\n")
                os.replace(tmp, f"{self.path}{suffix}")
        except OSError as err:
            log.warning("cannot write the state file %s: %s", self.path, err)
