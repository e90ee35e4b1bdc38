"""Batch mode: the batch JSON for a PA-MDI experiment and the per-node modem configs.

Format (reservations/batch_mode_format.rst; shared/reference/colosseum.md A.2 "Batch mode"):
``BatchName``, ``Duration`` (s), ``RFScenario``, ``TrafficScenario``, ``NodeData`` with one entry
per SRN: ``RFNode_ID`` (1..N, unique), ``ImageName``, ``ModemConfig`` (a file in
``/share/nas/<team>/config/`` that Colosseum copies to ``/root/radio_api/radio.conf``),
``isGateway``, ``TrafficNode_ID``, ``node_type`` ("competitor"). The JSON goes to
``/share/nas/<team>/batch/``.

Spec node i (in spec order) becomes RF node i+1. Its ``radio.conf`` is the pamdi node config the
image's ``/root/radio_api/start.sh`` reads: the node name, the whole spec, the data-plane and
control interface settings and the agent port; RF node 1 is the leader (``batch_lead``: it finds
the agents on the radio network, runs the experiment once every agent answers and writes the
results into its ``/logs``) and every node is a collaboration gateway so ``col0`` exists on all of
them (the docs: in batch mode only isGateway nodes get the collaboration network).
"""

from __future__ import annotations

import json
import re

from orchestrator.colosseum.config import ColosseumConfig
from orchestrator.colosseum.transport import ColosseumError
from orchestrator.spec import ExperimentSpec


def batch_name(spec: ExperimentSpec, run_id: str) -> str:
    base = re.sub(r"[^A-Za-z0-9-]+", "-", f"pamdi-{spec.name}-{run_id}").strip("-")
    return base[:60]


def modem_config_name(name: str, rf_node: int) -> str:
    return f"{name}-node{rf_node}.conf"


def node_configs(cfg: ColosseumConfig, spec: ExperimentSpec, name: str, *, keep_outputs: bool = False
                 ) -> dict[str, dict[str, object]]:
    """ModemConfig file name -> the radio.conf content for that RF node (``keep_outputs``: the leader
    also saves every result tensor, ``<policy>/outputs.npz``; see ``batch_lead``)."""
    out: dict[str, dict[str, object]] = {}
    for i, node in enumerate(spec.nodes):
        out[modem_config_name(name, i + 1)] = {
            "pamdi": 1,
            "batch": name,
            "rf_node": i + 1,
            "node": node.name,
            "leader": i == 0,
            "agent_port": cfg.agent_port,
            "agent_threads": node.threads,
            "agent_device": cfg.agent_device,
            "data_plane": cfg.data_plane.model_dump(),
            "control_interface": cfg.control_interface,
            "keep_outputs": keep_outputs,
            "spec": spec.model_dump(mode="json"),
        }
    return out


def batch_json(
    cfg: ColosseumConfig, spec: ExperimentSpec, name: str, *, duration_s: int | None = None
) -> dict[str, object]:
    if cfg.scenario is None:
        raise ColosseumError("scenario: batch mode needs an RF scenario ID in the config (`scenario:`)")
    return {
        "BatchName": name,
        "Duration": int(duration_s or cfg.batch_duration_s),
        "RFScenario": int(cfg.scenario),
        "TrafficScenario": int(cfg.traffic_scenario),
        "NodeData": [
            {
                "RFNode_ID": i + 1,
                "ImageName": cfg.image,
                "ModemConfig": modem_config_name(name, i + 1),
                "isGateway": True,
                "TrafficNode_ID": i + 1,
                "node_type": "competitor",
            }
            for i in range(len(spec.nodes))
        ],
    }


def validate_batch(data: dict[str, object]) -> None:
    """The checks of the documented format (types, unique RFNode_IDs 1..N, image names)."""
    for key, typ in (("BatchName", str), ("Duration", int), ("RFScenario", int), ("TrafficScenario", int),
                     ("NodeData", list)):
        if not isinstance(data.get(key), typ):
            raise ColosseumError(f"batch JSON: {key} must be {typ.__name__}")
    if data["Duration"] <= 0:  # type: ignore[operator]
        raise ColosseumError("batch JSON: Duration must be greater than 0")
    nodes = data["NodeData"]
    assert isinstance(nodes, list)
    ids = sorted(int(n["RFNode_ID"]) for n in nodes)
    if ids != list(range(1, len(nodes) + 1)):
        raise ColosseumError(f"batch JSON: RFNode_ID must be unique and numbered 1..{len(nodes)}, got {ids}")
    for n in nodes:
        if not re.match(r"^[A-Za-z0-9-]+$", str(n["ImageName"])):
            raise ColosseumError(f"batch JSON: ImageName {n['ImageName']!r}: alphanumerics and '-' only")
        if n["node_type"] not in ("competitor", "bot"):
            raise ColosseumError(f"batch JSON: node_type {n['node_type']!r} must be competitor or bot")
        if not isinstance(n["isGateway"], bool):
            raise ColosseumError("batch JSON: isGateway must be true or false")


def dumps(obj: object) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()
