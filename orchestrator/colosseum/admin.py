"""``check`` (what every SRN looks like) and ``upload-image`` (LXD tarball to the team's NAS).

``check`` runs, on every SRN in parallel: the interface list with IPv4 addresses (``ip -o -4 addr
show``: iproute2 in the Ubuntu 16.04-22.04 base images has no ``-j`` everywhere), ``colosseumcli
--version`` and ``colosseumcli usrp info``, and names the data-plane address found for the
configured radio interface / subnet and the control (``col0``) address.

``upload_image`` follows container_mgmt/upload_lxc_container.rst: the tarball goes to
``file-proxy:/share/nas/<team>/<images|resources>/<name>.tar.gz`` (over SFTP through the gateway,
written to a temporary name and renamed, so a half-written image never carries the real name),
then ``chmod 755``, then ``sha256sum`` on file-proxy must equal the local digest
(container_mgmt/verifying_integrity.rst: Colosseum does not report bad images).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.colosseum.cli_wrappers import CliOutputError, parse_usrp_info, parse_version
from orchestrator.colosseum.config import IMAGE_NAME_RE, ColosseumConfig
from orchestrator.colosseum.transport import ColosseumError, Session, SrnError, q

_ADDR_RE = re.compile(r"^\d+:\s+(\S+)\s+inet\s+(\d+\.\d+\.\d+\.\d+)/(\d+)")


def parse_ip_addr(text: str) -> dict[str, list[str]]:
    """``ip -o -4 addr show`` -> {interface: ["a.b.c.d/len", ...]}."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = _ADDR_RE.match(line.strip())
        if m:
            out.setdefault(m.group(1).split("@")[0], []).append(f"{m.group(2)}/{m.group(3)}")
    return out


def find_data_address(cfg: ColosseumConfig, addrs: dict[str, list[str]]) -> tuple[str, str] | None:
    """(interface, address) of the data plane on one SRN, or None when the radio is not up."""
    subnet = ipaddress.IPv4Network(cfg.data_plane.subnet, strict=False) if cfg.data_plane.subnet else None
    for ifname, cidrs in addrs.items():
        if cfg.data_plane.interface is not None and ifname != cfg.data_plane.interface:
            continue
        if ifname == cfg.control_interface:
            continue
        for cidr in cidrs:
            ip = ipaddress.IPv4Interface(cidr).ip
            if subnet is None or ip in subnet:
                return ifname, str(ip)
    return None


@dataclass
class SrnReport:
    srn: int
    host: str
    interfaces: dict[str, list[str]] = field(default_factory=dict)
    data_plane: tuple[str, str] | None = None
    control: str | None = None
    colosseumcli: str | None = None
    usrp: str | None = None
    usrp_message: str = ""
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "srn": self.srn,
            "host": self.host,
            "reachable": True,
            "interfaces": self.interfaces,
            "data_plane": {"interface": self.data_plane[0], "address": self.data_plane[1]} if self.data_plane else None,
            "control": self.control,
            "colosseumcli": self.colosseumcli,
            "usrp": self.usrp,
            "problems": self.problems,
        }


async def inspect_srn(session: Session, srn: int) -> SrnReport:
    cfg = session.cfg
    rep = SrnReport(srn, cfg.srn_host(srn))
    res = await session.run(srn, "ip -o -4 addr show", check=True)
    rep.interfaces = parse_ip_addr(res.stdout)
    rep.data_plane = find_data_address(cfg, rep.interfaces)
    ctrl = rep.interfaces.get(cfg.control_interface)
    rep.control = ctrl[0].split("/")[0] if ctrl else None
    if rep.data_plane is None:
        want = cfg.data_plane.interface or cfg.data_plane.subnet
        rep.problems.append(f"no data-plane address ({want}): is the radio stack up?")
    if rep.control is None:
        rep.problems.append(f"no {cfg.control_interface} address")
    try:
        ver = await session.colosseumcli(srn, "--version")
    except SrnError as err:
        if err.kind != "missing-cli":
            raise
        rep.problems.append(f"missing-cli: {err.detail}")
        return rep
    try:
        rep.colosseumcli = parse_version(ver.stdout + ver.stderr)
    except CliOutputError as err:
        rep.problems.append(str(err))
    usrp = await session.colosseumcli(srn, "usrp info")
    rep.usrp_message = usrp.stdout.strip()
    rep.usrp = parse_usrp_info(usrp.stdout)
    return rep


async def check(session: Session) -> tuple[list[SrnReport], list[SrnError]]:
    """Inspect every SRN; unreachable ones come back as errors instead of stopping the others."""
    import asyncio

    srns = session.cfg.require_srns()
    results = await asyncio.gather(*(inspect_srn(session, s) for s in srns), return_exceptions=True)
    reports, errors = [], []
    for srn, r in zip(srns, results, strict=True):
        if isinstance(r, SrnReport):
            reports.append(r)
        elif isinstance(r, SrnError):
            errors.append(r)
        elif isinstance(r, ColosseumError):
            raise r
        else:
            errors.append(SrnError(srn, session.cfg.srn_host(srn), "error", str(r)))
    return reports, errors


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def image_name_of(path: Path) -> str:
    name = path.name
    if not name.endswith(".tar.gz"):
        raise ColosseumError(f"{path}: an LXD image tarball ends in .tar.gz (lxc image export; no split tarballs)")
    stem = name[: -len(".tar.gz")]
    if not IMAGE_NAME_RE.match(stem):
        raise ColosseumError(f"{path}: image name {stem!r} must be letters, digits and '-' only, at most 31 characters")
    return stem


async def upload_image(session: Session, path: Path) -> dict[str, object]:
    cfg = session.cfg
    if not path.is_file():
        raise ColosseumError(f"{path}: no such file")
    name = image_name_of(path)
    folder = cfg.nas_image_dir
    probe = await session.run_file_proxy(
        f"for d in images resources; do test -d {q(cfg.nas_team_dir)}/$d && echo $d; done; true"
    )
    present = probe.stdout.split()
    if cfg.image_folder not in present:
        other = [d for d in present if d != cfg.image_folder]
        hint = f"; {cfg.nas_team_dir}/{other[0]} exists: set image_folder: {other[0]}" if other else ""
        raise ColosseumError(f"file-proxy: image folder {folder} does not exist{hint}")
    digest = sha256_file(path)
    final = f"{folder}/{name}.tar.gz"
    part = f"{folder}/.{name}.tar.gz.part"
    await session.put(None, path, part)
    await session.run_file_proxy(f"mv -f {q(part)} {q(final)} && chmod 755 {q(final)}")
    res = await session.run_file_proxy(f"sha256sum {q(final)} && stat -c %a {q(final)}")
    lines = res.stdout.split("\n")
    remote_digest = lines[0].split()[0] if lines and lines[0] else ""
    mode = lines[1].strip() if len(lines) > 1 else ""
    if remote_digest != digest:
        raise ColosseumError(
            f"file-proxy: {final}: checksum mismatch after upload (local {digest}, remote {remote_digest})"
        )
    if mode != "755":
        raise ColosseumError(f"file-proxy: {final}: mode is {mode}, expected 755")
    return {"image": name, "path": final, "sha256": digest, "bytes": path.stat().st_size, "mode": mode}
