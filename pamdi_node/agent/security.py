"""CurveZMQ encryption and authentication for agents and their clients (pyzmq ``zmq.auth``).

Key directory layout (written per run by ``orchestrator/keys.py``; every node gets the whole
``public/`` folder and only its own secret)::

    KEYS/public/<name>.key              public certificate of every node and of "orchestrator"
    KEYS/private/<name>.key_secret      secret certificate of <name> (mode 0600)

An agent with ``--keys KEYS`` serves Curve with its own secret key and accepts only clients whose
public key is in ``KEYS/public`` (checked by a ZAP ``ThreadAuthenticator``); a client without an
authorised key cannot complete the handshake, so none of its messages ever reaches the agent. The same
folder gives every client the server key of the node it talks to.
"""

from __future__ import annotations

from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


class KeyError_(ValueError):
    """A key file is missing or unreadable."""


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise KeyError_(f"{'secret' if secret else 'public'} key file {path} does not exist")
    try:
        public, sec = zmq.auth.load_certificate(str(path))
    except Exception as err:
        raise KeyError_(f"cannot read key file {path}: {err}") from None
    if secret and not sec:
        raise KeyError_(f"{path} holds no secret key")
    return public, sec


def public_key(keys: str | Path, name: str) -> bytes:
    return _load(Path(keys) / "public" / f"{name}.key", secret=False)[0]


def keypair(keys: str | Path, name: str) -> tuple[bytes, bytes]:
    public, secret = _load(Path(keys) / "private" / f"{name}.key_secret", secret=True)
    assert secret is not None
    return public, secret


def secure_server(ctx: zmq.Context, sock: zmq.Socket, keys: str | Path, name: str) -> ThreadAuthenticator:
    """Make ``sock`` a Curve server with ``name``'s key that admits only keys in ``keys/public``."""
    public_dir = Path(keys) / "public"
    if not public_dir.is_dir():
        raise KeyError_(f"{public_dir} does not exist (expected the run's public keys)")
    public, secret = keypair(keys, name)
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(public_dir))
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return auth


def secure_client(sock: zmq.Socket, keys: str | Path, me: str, server: str) -> None:
    """Make ``sock`` a Curve client as ``me`` talking to the agent ``server``."""
    public, secret = keypair(keys, me)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = public_key(keys, server)
