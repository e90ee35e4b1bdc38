"""What a lab host is, read over SSH in one round trip: user and uid, home, CPU architecture, the
Python, torch and pamdi of its agent environment, its IPv4 addresses and data-plane address,
whether it can shape (tc present; root, or passwordless sudo for tc), iperf3, docker; and the
problems that stop a run there, each one line naming the host and the cause.

``problems`` (refused before any agent starts): ``missing-python``, ``missing-pamdi``, ``version``
(pamdi differs from this machine's), ``data-plane`` (no such address on the host), ``tc`` (shape:
true without the rights or without tc), ``docker`` (runtime docker without docker or the image).
"""

from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import asdict, dataclass, field

from orchestrator.lab.inventory import Host
from orchestrator.lab.session import HostError, LabSession
from orchestrator.sshlink import q

# Printed by the host's Python: its version, and torch's and pamdi's (or why they do not import).
_PY_PROBE = r"""
import json, platform, sys
r = {"python": platform.python_version(), "executable": sys.executable}
for mod, attr in (("torch", "__version__"), ("pamdi_node", "__version__")):
    try:
        m = __import__(mod)
        r[mod] = getattr(m, attr, "?")
        if mod == "pamdi_node":
            r["pamdi_path"] = m.__file__
    except Exception as e:
        r[mod + "_error"] = f"{type(e).__name__}: {e}"[:200]
print("py=" + json.dumps(r))
"""


@dataclass
class HostFacts:
    host: str
    address: str
    user: str = ""
    uid: int = -1
    home: str = ""
    arch: str = ""
    python: str | None = None
    torch: str | None = None
    pamdi: str | None = None
    pamdi_path: str | None = None
    interfaces: dict[str, list[str]] = field(default_factory=dict)
    data_interface: str | None = None
    data_address: str | None = None
    # The interface the SSH connection arrived on (control rides it, inside SSH).
    mgmt_interface: str | None = None
    mgmt_address: str | None = None
    tc: bool = False
    shape_via: str | None = None  # "root", "sudo" or None (cannot shape)
    iperf3: bool = False
    docker: bool = False
    image: str | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @property
    def tc_prefix(self) -> str:
        return "tc" if self.shape_via == "root" else "sudo -n tc"

    def workdir(self, host: Host) -> str:
        return host.workdir if host.workdir.startswith("/") else f"{self.home.rstrip('/')}/{host.workdir}"


def parse_addrs(text: str) -> dict[str, list[str]]:
    """``ip -o -4 addr show`` lines -> {interface: ["a.b.c.d/len", ...]}."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "inet":
            out.setdefault(parts[1].split("@")[0], []).append(parts[3])
    return out


def find_data_plane(host: Host, addrs: dict[str, list[str]]) -> tuple[str, str] | None:
    """(interface, address) of the host's data plane among its addresses, or None."""
    dp = host.data_plane
    subnet = ipaddress.IPv4Network(dp.subnet, strict=False) if dp.subnet else None
    for ifname, cidrs in addrs.items():
        if dp.interface is not None and ifname != dp.interface:
            continue
        for cidr in cidrs:
            ip = str(ipaddress.IPv4Interface(cidr).ip)
            if (dp.address is None or ip == dp.address) and (subnet is None or ipaddress.IPv4Address(ip) in subnet):
                return ifname, ip
    return None


def _script(host: Host) -> str:
    lines = [
        "echo user=$(id -un); echo uid=$(id -u); echo home=$HOME; echo arch=$(uname -m)",
        "echo sshconn=$SSH_CONNECTION",
        "command -v tc >/dev/null 2>&1 && echo tc=1",
        "command -v iperf3 >/dev/null 2>&1 && echo iperf3=1",
        "command -v docker >/dev/null 2>&1 && echo docker=1",
        "[ \"$(id -u)\" = 0 ] || { sudo -n tc -V >/dev/null 2>&1 && echo sudo=1; }",
        "ip -o -4 addr show 2>/dev/null | sed 's/^/ip=/'",
    ]
    if host.runtime == "python":
        envs = " ".join(f"{k}={q(v)}" for k, v in host.env.items())  # what the agent will run with
        lines.append(f"env {envs} {q(host.python)} - <<'PAMDI_EOF' 2>&1\n{_PY_PROBE}\nPAMDI_EOF\necho pyexit=$?")
    else:
        img = q(host.image)
        lines.append(f"docker image inspect --format '{{{{.Id}}}}' {img} 2>/dev/null | sed 's/^/image=/'")
        lines.append(f"docker run --rm -i --network none --entrypoint python3 {img} - <<'PAMDI_EOF' 2>&1\n"
                     f"{_PY_PROBE}\nPAMDI_EOF\necho pyexit=$?")
    return "\n".join(lines)


async def host_facts(session: LabSession, host: Host, local_pamdi: str) -> HostFacts:
    """The facts of one host; an unreachable host raises ``HostError``."""
    res = await session.run(host.name, _script(host))
    f = HostFacts(host.name, host.ssh_address)
    py: dict[str, str] = {}
    pyexit = None
    ip_lines = []
    other = []
    for line in res.stdout.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            other.append(line)
        elif key == "ip":
            ip_lines.append(value)
        elif key == "py":
            py = json.loads(value)
        elif key == "pyexit":
            pyexit = int(value or -1)
        elif key in ("user", "home", "arch"):
            setattr(f, key, value)
        elif key == "uid":
            f.uid = int(value) if value.isdigit() else -1
        elif key in ("tc", "iperf3", "docker"):
            setattr(f, key, True)
        elif key == "sudo":
            f.shape_via = "sudo"
        elif key == "sshconn":
            parts = value.split()
            f.mgmt_address = parts[2] if len(parts) == 4 else None
        elif key == "image":
            f.image = value
        else:
            other.append(line)
    if f.uid == 0:
        f.shape_via = "root"
    f.interfaces = parse_addrs("\n".join(ip_lines))
    for ifname, cidrs in f.interfaces.items():
        if any(c.split("/")[0] == f.mgmt_address for c in cidrs):
            f.mgmt_interface = ifname
    found = find_data_plane(host, f.interfaces)
    if found:
        f.data_interface, f.data_address = found
    else:
        want = host.data_plane.address or host.data_plane.interface or host.data_plane.subnet
        f.problems.append(f"data-plane: no IPv4 address {want} on the host (its addresses: "
                          f"{', '.join(a for v in f.interfaces.values() for a in v) or 'none'})")
    f.python, f.torch, f.pamdi, f.pamdi_path = py.get("python"), py.get("torch"), py.get("pamdi_node"), \
        py.get("pamdi_path")
    where = f"python {host.python}" if host.runtime == "python" else f"image {host.image}"
    if host.runtime == "docker" and not f.docker:
        f.problems.append("docker: runtime docker but no docker command on the host")
    elif host.runtime == "docker" and not f.image:
        f.problems.append(f"docker: image {host.image} is not on the host (run `pamdi lab deploy --image`)")
    elif not py:
        tail = " ".join(" ".join(other).split())[-200:]
        f.problems.append(f"missing-python: {where} did not run (exit {pyexit}): {tail or 'not found'}")
    elif f.pamdi is None:
        f.problems.append(f"missing-pamdi: pamdi is not installed for {where} ({py.get('pamdi_node_error')}); "
                          "run `pamdi lab deploy`")
    elif f.pamdi != local_pamdi:
        f.problems.append(f"version: {where} has pamdi {f.pamdi}, this machine {local_pamdi}; run `pamdi lab deploy`")
    if py and f.torch is None:
        f.problems.append(f"missing-torch: torch does not import for {where} ({py.get('torch_error')})")
    if host.shape:
        if not f.tc:
            f.problems.append("tc: shape: true but the host has no tc (iproute2); install it or set shape: false")
        elif f.shape_via is None:
            f.problems.append(f"tc: shape: true needs root on the device, or passwordless sudo for tc; user "
                              f"{f.user} is uid {f.uid} without it (or set shape: false to measure the links as they "
                              "are)")
    return f


async def clock_offset(session: LabSession, name: str, samples: int = 3) -> dict[str, float]:
    """The host's clock minus this machine's (s), from the sample with the shortest round trip."""
    best: tuple[float, float] | None = None
    for _ in range(samples):
        t0 = time.time()
        res = await session.run(name, "date +%s.%N")
        t1 = time.time()
        try:
            remote = float(res.stdout.strip())
        except ValueError:
            continue
        rtt = t1 - t0
        if best is None or rtt < best[1]:
            best = (remote - (t0 + t1) / 2, rtt)
    if best is None:
        raise HostError(name, session.endpoint(name).ssh_address, "clock", "date +%s.%N gave no time")
    return {"offset_s": round(best[0], 6), "uncertainty_s": round(best[1] / 2, 6)}
