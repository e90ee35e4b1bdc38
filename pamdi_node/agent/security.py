"""CurveZMQ encryption and authentication for agents and their clients (pyzmq ``zmq.auth``).

Key directory layout (written per run by ``orchestrator/keys.py``; every node gets the whole
``public/`` folder and only its own secret)::

    KEYS/public/<name>.key              public certificate of every node and of "orchestrator"
    KEYS/private/<name>.key_secret      secret certificate of <name> (mode 0600)

An agent with ``--keys KEYS`` serves Curve with its own secret key and accepts only clients whose
public key is in ``KEYS/public`` (checked by the ZAP handler ``NamedKeys``); a client without an
authorised key cannot complete the handshake, so none of its messages ever reaches the agent. The
ZAP handler also names every connection by the owner of its key (the file's stem: a node name or
``orchestrator``), and libzmq stamps that name on each message as its ``User-Id``: the agent takes a
peer to be that name, never the routing id or ``src`` it offers, so a node's key cannot pose as
another node or as the orchestrator. The same folder gives every client the server key of the node
it talks to.
"""

from __future__ import annotations

from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from pamdi_node import wire

ORCHESTRATOR = "orchestrator"


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


def key_names(public_dir: Path) -> dict[bytes, str]:
    """z85 public key -> owner, from ``public/<owner>.key``; one key per owner and one owner per key."""
    names: dict[bytes, str] = {}
    for path in sorted(public_dir.glob("*.key")):
        key = _load(path, secret=False)[0]
        if key in names:
            raise KeyError_(f"{path} holds the same public key as {names[key]}.key")
        names[key] = path.stem
    return names


class NamedKeys(ThreadAuthenticator):
    """ZAP handler: admits the run's keys only, and gives each connection its key's owner as User-Id."""

    def __init__(self, ctx: zmq.Context, names: dict[bytes, str]) -> None:
        super().__init__(ctx)
        self.names = dict(names)

    def callback(self, domain: str, z85_key: bytes) -> bool:  # the credentials provider's interface
        return z85_key in self.names

    def curve_user_id(self, client_public_key: bytes) -> str:  # called only for admitted keys
        return self.names[z85.encode(client_public_key)]


def secure_server(ctx: zmq.Context, sock: zmq.Socket, keys: str | Path, name: str) -> NamedKeys:
    """Make ``sock`` a Curve server with ``name``'s key that admits only keys in ``keys/public``,
    each connection named by its key's owner."""
    public_dir = Path(keys) / "public"
    if not public_dir.is_dir():
        raise KeyError_(f"{public_dir} does not exist (expected the run's public keys)")
    public, secret = keypair(keys, name)
    auth = NamedKeys(ctx, key_names(public_dir))
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=auth)
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


PEER_TYPES = frozenset({wire.BEACON, wire.RTC, wire.CTC, wire.DENY, wire.TASK, wire.RESULT, wire.ACK, wire.RELEASE})
# What only the orchestrator may send (under Curve); a ping is answered for any admitted key.
CONTROL_TYPES = frozenset({wire.CONFIG, wire.START, wire.STATS, wire.COLLECT, wire.STOP})


def user_of(frame: zmq.Frame) -> str:
    """Who sent ``frame``: its key's owner, as the ZAP handler (``security.NamedKeys``) named it."""
    try:
        return str(frame.get("User-Id"))
    except (zmq.ZMQError, ValueError, TypeError):
        return ""  # no name: authorised for nothing


def authorise(user: str | None, msg: wire.Message) -> None:
    """Under Curve, a message's sender is the owner of its key, whatever ``src`` it claims: only
    the orchestrator's key may control the agent, and a node's key speaks only as that node."""
    if user is None:  # plaintext (--insecure): nobody is authenticated, the neighbour checks remain
        return
    if msg.type in PEER_TYPES:
        if msg.src != user:
            raise wire.WireError(f"{msg.type!r} refused: sent with {user or 'an unnamed'} key as {msg.src!r}")
    elif msg.type in CONTROL_TYPES and user != ORCHESTRATOR:
        raise wire.WireError(f"{msg.type!r} refused: only the orchestrator's key may send it")
