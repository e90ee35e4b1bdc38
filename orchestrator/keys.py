"""Per-run CurveZMQ keys (the layout ``pamdi_node/agent/security.py`` reads).

``generate_run_keys(folder, nodes)`` writes::

    folder/public/<name>.key              every node and "orchestrator"
    folder/private/<name>.key_secret      mode 0600

``node_key_folder(folder, node, dest)`` copies what one device needs (all public keys, its own
secret) for backends that ship keys to remote machines (docker volumes, Colosseum SRNs).

Private keys never live in a run folder (run folders are shared, archived and published): a run's
keys go in ``run_key_dir(run_id)``, a private state folder (``$PAMDI_STATE_DIR/keys/<run id>``,
default ``~/.cache/pamdi``) made 0700 before any secret is written, and are removed when the run
ends (``remove_run_keys``). Manifests hold only ``fingerprints``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import zmq.auth

from pamdi_node.agent.security import ORCHESTRATOR

__all__ = ["ORCHESTRATOR", "generate_run_keys", "node_key_folder"]


def state_root() -> Path:
    return Path(os.environ.get("PAMDI_STATE_DIR", Path.home() / ".cache" / "pamdi"))


def run_key_dir(run_id: str) -> Path:
    """Where a run's keys live while it runs: private, outside every run folder."""
    return state_root() / "keys" / run_id


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # also when it existed already, or a parent's umask widened it


def generate_run_keys(folder: str | Path, nodes: Iterable[str]) -> Path:
    root = Path(folder)
    public, private = root / "public", root / "private"
    _private_dir(root.parent)
    _private_dir(root)
    # The secret is written before it can be chmod-ed: the 0700 folder keeps it private meanwhile.
    _private_dir(private)
    public.mkdir(exist_ok=True)
    for name in [*nodes, ORCHESTRATOR]:
        pub, sec = zmq.auth.create_certificates(str(private), name)
        shutil.move(pub, public / f"{name}.key")
        os.chmod(sec, 0o600)
    return root


def node_key_folder(folder: str | Path, node: str, dest: str | Path) -> Path:
    """A key folder for one device: every public key, and only ``node``'s secret."""
    src, out = Path(folder), Path(dest)
    (out / "private").mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out / "private", 0o700)  # before the secret lands: copy2 then chmod leaves it 0644 a moment
    shutil.copytree(src / "public", out / "public", dirs_exist_ok=True)
    secret = out / "private" / f"{node}.key_secret"
    shutil.copy2(src / "private" / f"{node}.key_secret", secret)
    os.chmod(secret, 0o600)
    return out


def remove_run_keys(folder: str | Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def fingerprints(folder: str | Path) -> dict[str, str]:
    """Owner -> SHA-256 (first 16 hex digits) of its public key: what a manifest records of the keys."""
    out = {}
    for path in sorted((Path(folder) / "public").glob("*.key")):
        public, _ = zmq.auth.load_certificate(str(path))
        out[path.stem] = hashlib.sha256(public).hexdigest()[:16]
    return out
