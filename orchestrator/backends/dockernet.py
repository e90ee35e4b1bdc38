"""Container networking shared by the docker backend and docker-compose projects: one bridge
network (a /24 from a pool that overlaps nothing on this host) per link, the agents' port and
in-container paths, and the link object the node image's shaper reads."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.spec import LinkParams

AGENT_PORT = 7000
DEFAULT_IMAGE = "pamdi-node:latest"
DEFAULT_SUBNET_POOL = "10.213.0.0/16"
# In-container paths.
TRACE_MOUNT = "/traces"
KEYS_MOUNT = "/run/pamdi/keys"


@dataclass(frozen=True)
class LinkNet:
    a: str
    b: str
    name: str
    subnet: ipaddress.IPv4Network

    def address(self, node: str) -> str:
        hosts = list(self.subnet.hosts())
        return str(hosts[1] if node == self.a else hosts[2])  # .1 is the host's bridge end


def free_subnets(count: int, pool: str = DEFAULT_SUBNET_POOL, taken: Iterable[str] = ()) -> list[ipaddress.IPv4Network]:
    """``count`` /24s from ``pool`` that overlap neither Docker networks nor this host's routes."""
    busy = [ipaddress.ip_network(s, strict=False) for s in taken]
    out: list[ipaddress.IPv4Network] = []
    for net in ipaddress.ip_network(pool).subnets(new_prefix=24):
        if any(net.overlaps(b) for b in busy):
            continue
        out.append(net)  # type: ignore[arg-type]
        if len(out) == count:
            return out
    raise RuntimeError(f"no {count} free /24 subnets left in {pool}; pass subnet_pool=... or run `pamdi cleanup`")


def used_subnets(cli: Any) -> list[str]:
    """Subnets of every Docker network and every route of this host (so ours never shadow them)."""
    subnets: list[str] = []
    for net in cli.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet"):
                subnets.append(cfg["Subnet"])
    with contextlib.suppress(OSError, ValueError), open("/proc/net/route") as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            dest, mask = int(fields[1], 16), int(fields[7], 16)
            if dest == 0 and mask == 0:
                continue  # the default route overlaps everything; it is not a local subnet
            net = ipaddress.IPv4Network((dest.to_bytes(4, "little"), bin(mask).count("1")), strict=False)
            subnets.append(str(net))
    return subnets


def link_shaping(net: LinkNet, peer: str, params: LinkParams) -> dict[str, Any]:
    """The shaper's link object (node_image/pamdi_node_entry.py) for one end of a link."""
    return {"peer": peer, "subnet": str(net.subnet), "rate_mbit": params.rate_mbit, "delay_ms": params.delay_ms,
            "jitter_ms": params.jitter_ms, "loss": params.loss}
