"""The Colosseum configuration: a YAML file validated with pydantic.

Everything that differs between teams, reservations and radio stacks lives here, with the
documented defaults (reference: shared/reference/colosseum.md, section A.1):

- the SSH gateway ``gw.colosseum.net`` (key auth) and ``file-proxy`` behind it (LDAP password);
- SRN host names ``<team>-<NNN>`` (3-digit SRN number) — the docs also show ``teamname-srn###``,
  so the pattern is overridable (``srn_host_pattern``);
- the team's NAS image folder: the docs disagree between ``/share/nas/<team>/images/`` and
  ``/share/nas/<team>/resources/``, so ``image_folder`` picks one (``upload-image`` names the other
  when the chosen one is missing);
- the data plane (the radio stack's interface or subnet: srsRAN ``172.16.0.x``, ``tap0``, ...) versus
  the control network (``col0``, wired between SRNs, never to be used for model data).

Secrets are never read from this file: the SRN (container) password and the LDAP password come
from environment variables or an interactive prompt (``secret``), and a config that carries a
password-like key is refused with a message saying so.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import re
import sys
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# A Linux interface name (at most 15 characters): what may reach a remote shell as one.
IFNAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,15}$"

DEFAULT_GATEWAY = "gw.colosseum.net"
DEFAULT_REST_URL = "https://experiments.colosseum.net"
# Image names: letters, digits and '-', at most 31 characters (container_mgmt/upload_lxc_container.rst).
IMAGE_NAME_RE = re.compile(r"^[A-Za-z0-9-]{1,31}$")
_SECRET_KEYS = ("password", "passwd", "secret", "srn_password", "ldap_password", "token")


class ConfigError(ValueError):
    """The Colosseum config is wrong; the message names the file and the field at fault."""


class DataPlane(BaseModel):
    """Which interface carries the model data: the radio stack's, never ``col0``.

    Give the interface name (``tap0``), or the subnet the radio stack assigns (srsRAN's
    ``172.16.0.0/24``: the eNB side is ``srs_spgw_sgi``, UEs ``tun_srsue``, so the name differs per
    SRN while the subnet does not), or both (the address must then be on that interface).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    interface: str | None = Field(default=None, pattern=IFNAME_PATTERN)
    subnet: str | None = None

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, v: str | None) -> str | None:
        if v is not None:
            ipaddress.IPv4Network(v, strict=False)
        return v

    @model_validator(mode="after")
    def _one_of(self) -> DataPlane:
        if self.interface is None and self.subnet is None:
            raise ValueError("give data_plane.interface (e.g. tap0) or data_plane.subnet (e.g. 172.16.0.0/24)")
        return self


class ColosseumConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    team: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    # Colosseum (LDAP) user name: gateway login, file-proxy login and REST API basic auth.
    user: str = Field(min_length=1)
    gateway: str = DEFAULT_GATEWAY
    gateway_port: int = Field(default=22, ge=1, le=65535)
    ssh_key: str = "~/.ssh/id_rsa"
    # known_hosts file used to check the gateway's host key; null = do not check (not advised).
    gateway_known_hosts: str | None = "~/.ssh/known_hosts"
    file_proxy: str = "file-proxy"
    file_proxy_port: int = Field(default=22, ge=1, le=65535)
    # SRN numbers of the reservation (the website assigns them; `pamdi colosseum reservation ID
    # --write CONFIG` fills them from the REST API).
    srns: tuple[int, ...] = ()
    srn_host_pattern: str = "{team}-{srn:03d}"
    srn_port: int = Field(default=22, ge=1, le=65535)
    srn_user: str = "root"
    srn_password_env: str = "COLOSSEUM_SRN_PASSWORD"
    ldap_password_env: str = "COLOSSEUM_PASSWORD"
    image: str = "pamdi-node"
    nas_root: str = "/share/nas"
    image_folder: str = Field(default="images", pattern=r"^(images|resources)$")
    data_plane: DataPlane = DataPlane(subnet="172.16.0.0/24")
    control_interface: str = Field(default="col0", pattern=IFNAME_PATTERN)
    scenario: int | None = Field(default=None, ge=1)
    cycle: bool = False
    # Traffic scenario written into batch JSON files (the batch format makes the field mandatory).
    traffic_scenario: int = Field(default=1, ge=0)
    batch_duration_s: int = Field(default=600, gt=0)
    rest_url: str = DEFAULT_REST_URL
    # TLS check of the REST API: true, false (the docs use `curl -k`), or a CA bundle path.
    rest_verify: bool | str = True
    # Where the run lives on each SRN; `{srn}` may appear (formatted like the host pattern).
    srn_work_dir: str = "/root/pamdi"
    # Command that starts a node agent on an SRN (the image puts `pamdi` on PATH).
    agent_command: str = "pamdi node"
    agent_port: int = Field(default=5555, ge=1024, le=65535)
    agent_threads: int = Field(default=1, ge=1, le=256)
    agent_device: str = "cpu"
    connect_timeout_s: float = Field(default=20.0, gt=0)
    command_timeout_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    # Seconds between `rf stop` and `rf start`: the docs say wait more than 15 s.
    rf_stop_start_gap_s: float = Field(default=16.0, gt=15.0)
    # Capture the agent port on the data-plane and control interfaces with tcpdump on each SRN during a run
    # (needs root there).
    pcap: bool = True

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not IMAGE_NAME_RE.match(v):
            raise ValueError("image names are letters, digits and '-' only, at most 31 characters")
        return v

    @field_validator("srns")
    @classmethod
    def _srns(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        for s in v:
            if not 1 <= s <= 256:
                raise ValueError(f"SRN number {s} out of range 1..256")
        if len(set(v)) != len(v):
            raise ValueError("duplicate SRN numbers")
        return v

    @field_validator("srn_host_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            v.format(team="t", srn=1)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"pattern may use only {{team}} and {{srn}}: {err}") from None
        return v

    # ------------------------------------------------------------------ derived values
    def srn_host(self, srn: int) -> str:
        return self.srn_host_pattern.format(team=self.team, srn=srn)

    def work_dir(self, srn: int) -> str:
        return self.srn_work_dir.format(team=self.team, srn=srn)

    @property
    def nas_team_dir(self) -> str:
        return f"{self.nas_root.rstrip('/')}/{self.team}"

    @property
    def nas_image_dir(self) -> str:
        return f"{self.nas_team_dir}/{self.image_folder}"

    @property
    def nas_batch_dir(self) -> str:
        return f"{self.nas_team_dir}/batch"

    @property
    def nas_config_dir(self) -> str:
        return f"{self.nas_team_dir}/config"

    def ssh_key_path(self) -> Path:
        return Path(os.path.expanduser(self.ssh_key))

    def known_hosts_path(self) -> Path | None:
        if self.gateway_known_hosts is None:
            return None
        return Path(os.path.expanduser(self.gateway_known_hosts))

    def require_srns(self) -> tuple[int, ...]:
        if not self.srns:
            raise ConfigError(
                "srns: no SRN numbers in the config; run `pamdi colosseum reservation ID --write -c CONFIG` "
                "or list them under `srns:`"
            )
        return self.srns


def _format_error(err: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid Colosseum config"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        lines.append(f"  {loc or '(top level)'}: {e['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def parse_config(data: object, origin: str = "<config>") -> ColosseumConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: a Colosseum config must be a YAML mapping")
    for key in data:
        name = str(key).lower()
        if not name.endswith("_env") and any(s in name for s in _SECRET_KEYS):
            raise ConfigError(
                f"{origin}: {key}: passwords are never read from a file; set the environment variable named "
                "by srn_password_env / ldap_password_env, or answer the prompt"
            )
    try:
        return ColosseumConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, origin)) from None


def load_config(path: str | Path) -> ColosseumConfig:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such Colosseum config file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from None
    return parse_config(data, str(p))


_SRNS_LINE = re.compile(r"^srns:.*$", re.MULTILINE)


def write_srns(path: str | Path, srns: list[int]) -> None:
    """Set ``srns:`` in a config file, keeping its other keys (and their order). A file with one
    top-level flow-style ``srns:`` line (``pamdi colosseum init``'s) keeps its comments too: only
    that line changes."""
    p = Path(path)
    text = p.read_text()
    data = yaml.safe_load(text) or {}
    data["srns"] = sorted(srns)
    parse_config(data, str(p))
    line = "srns: [" + ", ".join(str(s) for s in sorted(srns)) + "]"
    if len(_SRNS_LINE.findall(text)) == 1:
        edited = _SRNS_LINE.sub(line, text)
        if yaml.safe_load(edited) == data:  # the line was the top-level key, in flow style
            p.write_text(edited)
            return
    p.write_text(yaml.safe_dump(data, sort_keys=False))


def secret(env_name: str, what: str) -> str:
    """A secret from the environment or a prompt on the terminal; never from a file."""
    value = os.environ.get(env_name)
    if value:
        return value
    if sys.stdin.isatty():
        value = getpass.getpass(f"{what} (or set ${env_name}): ")
        if value:
            return value
    raise ConfigError(f"{what} needed: set the environment variable {env_name} or run from a terminal to be prompted")
