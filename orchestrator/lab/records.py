"""What the ``ssh`` backend records about a lab run: the counters it samples on each host
(interface bytes of the data-plane and management interfaces, bytes per peer of its tbfs) and the
run folder's ``topology.json`` (hosts, addresses, which direction of each link was shaped)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from orchestrator.lab import agents, shaping
from orchestrator.lab.facts import HostFacts
from orchestrator.lab.inventory import Host
from orchestrator.spec import ExperimentSpec
from orchestrator.sshlink import q


def counters_script(facts: HostFacts, shaped: bool) -> str:
    ifs = [i for i in (facts.data_interface, facts.mgmt_interface) if i]
    script = agents.interface_counters(ifs)
    if shaped and facts.data_interface:
        script += f"; echo TC $({facts.tc_prefix} -s -j qdisc show dev {q(facts.data_interface)})"
    return script


def parse_counters(node: str, host: Host, facts: HostFacts, stdout: str,
                   peers: Mapping[str, object] | None) -> dict[str, object]:
    """One sample: ``{node, host, t, data: {interface, rx_bytes, tx_bytes}, mgmt: {...},
    tbf_to_peer: {peer: {bytes, packets, drops, backlog}}}`` (the last only where pamdi shapes)."""
    ifs = {"data": facts.data_interface, "mgmt": facts.mgmt_interface}
    out: dict[str, object] = {"node": node, "host": host.name, "t": time.time()}
    for line in stdout.splitlines():
        head = line.split(maxsplit=1)
        if head and head[0] == "TC" and len(head) == 2 and peers is not None:
            out["tbf_to_peer"] = shaping.parse_tbf_counters(head[1], shaping.peer_classes(peers))
            continue
        parts = line.split()
        for role, ifname in ifs.items():
            if len(parts) == 3 and parts[0] == ifname and role not in out:
                out[role] = {"interface": ifname, "rx_bytes": int(parts[1]), "tx_bytes": int(parts[2])}
    return out


def lab_topology(spec: ExperimentSpec, hosts: Mapping[str, Host], facts: Mapping[str, HostFacts],
                 shaped: Mapping[str, Mapping[str, object]], agent_delayed: set[tuple[str, str]],
                 workdirs: Mapping[str, str]) -> dict[str, Any]:
    links = [{"a": lk.a, "b": lk.b, "rate_mbit": lk.rate_mbit, "delay_ms": lk.delay_ms, "scenario": lk.scenario,
              "delay_stage": "agent" if lk.key in agent_delayed else "none", "jitter_ms": lk.jitter_ms,
              "jitter_stage": "agent" if lk.key in agent_delayed and lk.jitter_ms > 0 else "none",
              "shaped_a_to_b": lk.b in shaped.get(lk.a, {}), "shaped_b_to_a": lk.a in shaped.get(lk.b, {})}
             for lk in spec.resolved_links()]
    nodes = {n: {"host": h.name, "ssh": h.ssh_address, "proxy_jump": h.proxy_jump, "device": h.device,
                 "runtime": h.runtime, "data_interface": facts[n].data_interface,
                 "data_address": facts[n].data_address, "mgmt_interface": facts[n].mgmt_interface, "shape": h.shape,
                 "workdir": workdirs.get(n)}
             for n, h in hosts.items() if n in facts}
    return {"backend": "ssh", "nodes": nodes, "links": links}
