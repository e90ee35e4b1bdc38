"""The lab inventory (``lab.yaml``): the user's own machines, validated with pydantic.

One entry per host: its ``name`` (spec nodes map to hosts by name, else in order), the SSH
``address`` (an address, a DNS name or a ``~/.ssh/config`` alias), ``user``, ``port``,
``proxy_jump`` (the name of an entry of ``jump_hosts``, or ``[user@]host[:port]``), ``key`` (a key
file; leave it out to use ssh-agent and ``~/.ssh/config``), how the agent runs there (``runtime:
python`` with the ``python`` of an environment that has the wheelhouse installed, or ``runtime:
docker`` with the node ``image``), its ``data_plane`` (``address``, ``interface`` or ``subnet``: the
agents exchange model data only there), its ``device`` (a named device profile of
``orchestrator/devices.py``, for the records and ``lab profile``), and ``shape``: whether pamdi
shapes the host's outgoing links with tc to the spec's rates (needs root or passwordless sudo for
tc there) or leaves them as they are (measured by ``lab check``). ``defaults`` fills every host's
unset fields. A bad field is refused in one line naming the file, the host and the field.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.specerror import format_validation_error

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
IFNAME = r"^[A-Za-z0-9_.:-]{1,15}$"  # a Linux interface name: what may reach a remote shell as one
_SECRET_KEYS = ("password", "passwd", "passphrase", "secret", "token")


class InventoryError(ValueError):
    """The inventory is wrong; one line naming the file and the field at fault."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataPlane(_Strict):
    """Where the host's agent exchanges model data: a given ``address`` (must be on the host), the
    IPv4 address of an ``interface`` (``wlan0``, a mesh interface), or the one inside ``subnet``."""

    address: str | None = None
    interface: str | None = Field(default=None, pattern=IFNAME)
    subnet: str | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None:
            ipaddress.IPv4Address(v)
        return v

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, v: str | None) -> str | None:
        if v is not None:
            ipaddress.IPv4Network(v, strict=False)
        return v

    @model_validator(mode="after")
    def _one(self) -> DataPlane:
        if self.address is None and self.interface is None and self.subnet is None:
            raise ValueError("give data_plane.address, data_plane.interface or data_plane.subnet")
        return self


class Endpoint(_Strict):
    """How to reach a machine over SSH (a lab host or a jump host)."""

    name: str = Field(pattern=NAME)
    address: str | None = Field(default=None, min_length=1, max_length=253)  # default: the name
    user: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
    port: int | None = Field(default=None, ge=1, le=65535)
    key: str | None = Field(default=None, min_length=1)
    proxy_jump: str | None = Field(default=None, min_length=1)
    # known_hosts file that checks the host key; null: not checked (a lab on a private network).
    known_hosts: str | None = "~/.ssh/known_hosts"

    @property
    def ssh_address(self) -> str:
        return self.address or self.name

    def key_path(self) -> Path | None:
        return Path(os.path.expanduser(self.key)) if self.key else None

    def known_hosts_path(self) -> Path | None:
        return Path(os.path.expanduser(self.known_hosts)) if self.known_hosts else None


class Host(Endpoint):
    runtime: Literal["python", "docker"] = "python"
    # The interpreter of an environment that has pamdi installed (``lab deploy`` installs it there).
    python: str = Field(default="python3", min_length=1)
    image: str = Field(default="pamdi-node:latest", pattern=r"^[A-Za-z0-9][A-Za-z0-9_./:@-]{0,199}$")
    data_plane: DataPlane
    device: str | None = None
    shape: bool = False
    # Where the run's files live on the host (relative paths: under the user's home).
    workdir: str = Field(default="pamdi-lab", min_length=1)
    agent_port: int = Field(default=5555, ge=1024, le=65535)
    # Extra environment of the agent (e.g. LD_LIBRARY_PATH for a JetPack torch).
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        from orchestrator.devices import DEVICES

        if v is not None and v not in DEVICES:
            raise ValueError(f"unknown device {v!r}; known: {', '.join(sorted(DEVICES))}")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
                raise ValueError(f"{k!r} is not an environment variable name")
        return v


class Inventory(_Strict):
    hosts: tuple[Host, ...] = Field(min_length=1, max_length=64)
    jump_hosts: tuple[Endpoint, ...] = ()
    connect_timeout_s: float = Field(default=15.0, gt=0)
    command_timeout_s: float = Field(default=120.0, gt=0)
    retries: int = Field(default=1, ge=0, le=10)

    @model_validator(mode="after")
    def _names(self) -> Inventory:
        names = [h.name for h in self.hosts] + [j.name for j in self.jump_hosts]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate host names: {', '.join(dup)}")
        data = [h.data_plane.address for h in self.hosts if h.data_plane.address]
        if len(set(data)) != len(data):
            raise ValueError("two hosts share a data_plane.address")
        return self

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def endpoint(self, name: str) -> Endpoint | None:
        for e in (*self.hosts, *self.jump_hosts):
            if e.name == name:
                return e
        return None

    def assign(self, nodes: list[str]) -> dict[str, Host]:
        """Spec node -> host: by name when every node names a host, else in order."""
        names = {h.name for h in self.hosts}
        if all(n in names for n in nodes):
            return {n: self.host(n) for n in nodes}
        if len(nodes) > len(self.hosts):
            raise InventoryError(f"the spec has {len(nodes)} nodes but the inventory lists {len(self.hosts)} hosts "
                                 f"({', '.join(names)}); name the hosts after the nodes or add hosts")
        return {n: self.hosts[i] for i, n in enumerate(nodes)}


def parse_inventory(data: object, origin: str = "<inventory>") -> Inventory:
    if not isinstance(data, dict):
        raise InventoryError(f"{origin}: an inventory must be a YAML mapping with `hosts:`")
    data = dict(data)
    defaults = data.pop("defaults", None) or {}
    if not isinstance(defaults, dict):
        raise InventoryError(f"{origin}: defaults: must be a mapping of host fields")

    def no_secrets(where: str, entry: dict[str, object]) -> None:
        for key in entry:
            if any(s in str(key).lower() for s in _SECRET_KEYS):
                raise InventoryError(f"{origin}: {where}.{key}: secrets are never read from a file; use ssh-agent "
                                     "or $PAMDI_SSH_PASSPHRASE for a passphrase-protected key")

    no_secrets("defaults", defaults)
    hosts = data.get("hosts")
    if isinstance(hosts, list):
        merged = []
        for i, h in enumerate(hosts):
            if isinstance(h, dict):
                no_secrets(f"hosts[{i}]", h)
                h = {**defaults, **h}
            merged.append(h)
        data["hosts"] = merged
    jumps = data.get("jump_hosts")
    if isinstance(jumps, list):
        # Jump hosts take the defaults that concern reaching a machine (user, key, known_hosts, ...).
        shared = {k: v for k, v in defaults.items() if k in Endpoint.model_fields and k not in ("name", "address")}
        data["jump_hosts"] = [{**shared, **j} if isinstance(j, dict) else j for j in jumps]
    try:
        return Inventory.model_validate(data)
    except ValidationError as err:
        raise InventoryError(_name_hosts(format_validation_error(err, origin), data)) from None


def _name_hosts(line: str, data: dict[str, object]) -> str:
    """``hosts[2].port`` -> ``hosts[2] (xavier3).port``: the line names the host as the user does."""
    def sub(m: re.Match[str]) -> str:
        entries = data.get(m.group(1))
        i = int(m.group(2))
        if isinstance(entries, list) and i < len(entries) and isinstance(entries[i], dict) and "name" in entries[i]:
            return f"{m.group(0)} ({entries[i]['name']})"
        return m.group(0)

    return re.sub(r"(hosts|jump_hosts)\[(\d+)\]", sub, line)


def load_inventory(path: str | Path) -> Inventory:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise InventoryError(f"{p}: no such inventory file") from None
    except yaml.YAMLError as err:
        raise InventoryError(f"{p}: not valid YAML: {' '.join(str(err).split())}") from None
    return parse_inventory(data, str(p))
