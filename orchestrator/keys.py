"""Per-run CurveZMQ keys (the layout ``pamdi_node/agent/security.py`` reads).

``generate_run_keys(folder, nodes)`` writes::

    folder/public/<name>.key              every node and "orchestrator"
    folder/private/<name>.key_secret      mode 0600

``node_key_folder(folder, node, dest)`` copies what one device needs (all public keys, its own
secret) for backends that ship keys to remote machines (docker volumes, Colosseum SRNs).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import zmq.auth

ORCHESTRATOR = "orchestrator"


def generate_run_keys(folder: str | Path, nodes: Iterable[str]) -> Path:
    root = Path(folder)
    public, private = root / "public", root / "private"
    for d in (public, private):
        d.mkdir(parents=True, exist_ok=True)
    private.chmod(0o700)
    for name in [*nodes, ORCHESTRATOR]:
        pub, sec = zmq.auth.create_certificates(str(private), name)
        shutil.move(pub, public / f"{name}.key")
        os.chmod(sec, 0o600)
    return root


def node_key_folder(folder: str | Path, node: str, dest: str | Path) -> Path:
    """A key folder for one device: every public key, and only ``node``'s secret."""
    src, out = Path(folder), Path(dest)
    (out / "private").mkdir(parents=True, exist_ok=True)
    shutil.copytree(src / "public", out / "public", dirs_exist_ok=True)
    secret = out / "private" / f"{node}.key_secret"
    shutil.copy2(src / "private" / f"{node}.key_secret", secret)
    os.chmod(secret, 0o600)
    return out
