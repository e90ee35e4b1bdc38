"""The ``colosseum.yaml`` a new user starts from (``pamdi colosseum init``).

The template names every field a team edits, with the documented default and what it is for
(shared/reference/colosseum.md A.1); the rest stay at their defaults and are listed, commented
out, so that the file doubles as a reference. It parses to the same config as the defaults plus
what ``init`` was given (a test holds it to that), and passwords never appear in it: the SRN and
LDAP passwords come from the environment variables it names, or a prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from orchestrator.colosseum.config import ColosseumConfig, ConfigError, parse_config

TEMPLATE = """\
# pamdi's Colosseum configuration (pamdi colosseum init). Passwords never go here: the SRN
# (container) password comes from ${srn_password_env}, the Colosseum (LDAP) password from
# ${ldap_password_env}, or a prompt.

# Your team name (SRN host names are <team>-<NNN>) and your Colosseum (LDAP) user name.
team: {team}
user: {user}

# SSH gateway: key auth with the key whose public half is on the website (Accounts tab). A Host
# alias of ~/.ssh/config works here (HostName, Port, IdentityFile, ProxyCommand apply); a key with
# a passphrase is opened by ssh-agent, $PAMDI_SSH_PASSPHRASE or a prompt.
gateway: {gateway}
ssh_key: {ssh_key}
# Checked against this known_hosts file (connect once with `ssh USER@GATEWAY` to accept the key).
gateway_known_hosts: {gateway_known_hosts}

# SRN numbers of your reservation: `pamdi colosseum reservation ID --write -c colosseum.yaml`
# fills them from the website's API.
srns: {srns}

# Which interface carries the model data (never col0, the wired control network): the radio
# stack's subnet (srsRAN: 172.16.0.0/24) or its interface (e.g. interface: tap0).
data_plane:
  subnet: {subnet}

# The RF scenario `pamdi colosseum run` starts (colosseumcli rf start ID), and whether it repeats.
# scenario: 1009
cycle: false

# The node image on the team's NAS (pamdi image export, then pamdi colosseum upload-image).
image: {image}

# Capture the agents' port on the radio and col0 interfaces with tcpdump during a run.
pcap: true

# Other fields, at their defaults:
# srn_user: root
# srn_password_env: COLOSSEUM_SRN_PASSWORD
# ldap_password_env: COLOSSEUM_PASSWORD
# image_folder: images            # or resources: the docs name both NAS folders
# srn_work_dir: /root/pamdi
# agent_command: pamdi node
# agent_port: 5555
# control_interface: col0
# rf_stop_start_gap_s: 16         # the docs: wait more than 15 s between rf stop and rf start
# connect_timeout_s: 20
# retries: 2
# rest_verify: true               # false: what the docs' `curl -k` does
"""


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar that reads back as the same string (quoted only where needed)."""
    return value if yaml.safe_load(value) == value and ":" not in value and "#" not in value else json.dumps(value)


def render(team: str, user: str, srns: tuple[int, ...] = ()) -> str:
    """The template for ``team`` and ``user``; refused (ConfigError naming the option) when they
    would not make a valid config."""
    defaults = ColosseumConfig.model_fields
    try:
        ColosseumConfig(team=team, user=user, srns=srns)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"--{first['loc'][0]}: {first['msg'].removeprefix('Value error, ')}") from None
    text = TEMPLATE.format(
        team=_scalar(team), user=_scalar(user), srns="[" + ", ".join(str(s) for s in srns) + "]",
        gateway=defaults["gateway"].default, ssh_key=defaults["ssh_key"].default,
        gateway_known_hosts=defaults["gateway_known_hosts"].default,
        subnet=defaults["data_plane"].default.subnet, image=defaults["image"].default,
        srn_password_env=defaults["srn_password_env"].default,
        ldap_password_env=defaults["ldap_password_env"].default,
    )
    parse_config(yaml.safe_load(text), "colosseum init")
    return text


def write_template(path: Path, team: str, user: str, srns: tuple[int, ...] = (), *, force: bool = False) -> Path:
    if path.exists() and not force:
        raise FileExistsError(f"{path}: exists; pass --force to overwrite it")
    path.write_text(render(team, user, srns))
    return path
