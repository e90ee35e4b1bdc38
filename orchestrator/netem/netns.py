"""Network namespaces and veth pairs through pyroute2 (netlink; no shelling out to ``ip``)."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator

from pyroute2 import IPRoute, NetNS, netns
from pyroute2.netlink.exceptions import NetlinkError

NETNS_RUN_DIR = "/run/netns"
# Offloads that turn many MTU-sized segments into one large super-packet on a veth. With them on,
# a user-space forwarder would see (and drop) 64 KB chunks instead of packets, so per-packet loss
# would be unrealistic; shaping is unaffected either way.
SEGMENTATION_FEATURES = (
    "tx-tcp-segmentation",
    "tx-tcp6-segmentation",
    "tx-tcp-ecn-segmentation",
    "tx-tcp-mangleid-segmentation",
    "tx-generic-segmentation",
    "tx-udp-segmentation",
)


def list_netns() -> list[str]:
    return sorted(netns.listnetns())


def create_netns(name: str) -> None:
    """Create a named namespace with its loopback up."""
    if name in netns.listnetns():
        raise FileExistsError(f"network namespace {name!r} already exists")
    netns.create(name)
    with NetNS(name) as ns:
        lo = ns.link_lookup(ifname="lo")[0]
        ns.link("set", index=lo, state="up")


def delete_netns(name: str) -> bool:
    """Remove a namespace (its interfaces go with it). Returns False when it did not exist."""
    if name not in netns.listnetns():
        return False
    try:
        netns.remove(name)
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise
        return False
    return True


@contextlib.contextmanager
def ns_handle(name: str | None) -> Iterator[IPRoute]:
    """A netlink handle in the namespace ``name`` (None = the root namespace)."""
    handle = IPRoute() if name is None else NetNS(name)
    try:
        yield handle
    finally:
        handle.close()


def _index(ip: IPRoute, ifname: str) -> int:
    found = ip.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"interface {ifname!r} not found")
    return found[0]


def disable_segmentation_offload(ifname: str) -> None:
    """Turn TSO/GSO off on a root-namespace interface (call before moving it into a namespace)."""
    from pyroute2.ethtool import Ethtool

    eth = Ethtool()
    try:
        feats = eth.get_features(ifname)
        changed = False
        for name in SEGMENTATION_FEATURES:
            feat = feats.features.get(name)
            if feat is not None and feat.enable:
                feat.enable = False
                changed = True
        if changed:
            eth.set_features(ifname, feats)
    finally:
        eth.close()


def create_veth(
    name_a: str,
    ns_a: str | None,
    name_b: str,
    ns_b: str | None,
    *,
    no_offload: bool = True,
    mtu: int = 1500,
) -> None:
    """A veth pair with end ``name_a`` in ``ns_a`` and ``name_b`` in ``ns_b`` (None = root), both up."""
    with IPRoute() as ip:
        ip.link("add", ifname=name_a, kind="veth", peer={"ifname": name_b})
        try:
            if no_offload:
                disable_segmentation_offload(name_a)
                disable_segmentation_offload(name_b)
            for name, ns in ((name_a, ns_a), (name_b, ns_b)):
                idx = _index(ip, name)
                ip.link("set", index=idx, mtu=mtu)
                if ns is not None:
                    ip.link("set", index=idx, net_ns_fd=ns)
        except Exception:
            with contextlib.suppress(NetlinkError, LookupError):
                ip.link("del", index=_index(ip, name_a))
            raise
    for name, ns in ((name_a, ns_a), (name_b, ns_b)):
        with ns_handle(ns) as h:
            h.link("set", index=_index(h, name), state="up")


def add_address(ns: str | None, ifname: str, address: str, prefixlen: int) -> None:
    with ns_handle(ns) as h:
        h.addr("add", index=_index(h, ifname), address=address, prefixlen=prefixlen)


def set_up(ns: str | None, ifname: str) -> None:
    with ns_handle(ns) as h:
        h.link("set", index=_index(h, ifname), state="up")


def delete_link(ns: str | None, ifname: str) -> bool:
    with ns_handle(ns) as h:
        found = h.link_lookup(ifname=ifname)
        if not found:
            return False
        with contextlib.suppress(NetlinkError):
            h.link("del", index=found[0])
        return True


def root_links() -> list[str]:
    with IPRoute() as ip:
        return [link.get_attr("IFLA_IFNAME") for link in ip.get_links()]


def root_addresses() -> list[tuple[str, int]]:
    """(address, prefixlen) of every IPv4 address in the root namespace."""
    with IPRoute() as ip:
        return [(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ip.get_addr(family=2)]


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(os.path.join(NETNS_RUN_DIR, name)).st_ino
    except OSError:
        return None


def pids_in_netns(names: list[str]) -> list[int]:
    """Processes whose network namespace is one of ``names`` (matched by namespace inode)."""
    inodes = {ino for ino in (netns_inode(n) for n in names) if ino is not None}
    if not inodes:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until the pids have exited; return the ones still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if os.path.exists(f"/proc/{p}") and not _zombie(p)]
        if alive:
            time.sleep(0.05)
    return alive


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
