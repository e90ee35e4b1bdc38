"""The one SSH layer of pamdi (asyncssh): what the Colosseum backend and the SSH lab backend share.

- ``client_keys``: the key a connection offers, as ``ssh`` would pick it: a named key file (a
  passphrase-protected one opened with ``$PAMDI_SSH_PASSPHRASE``, a prompt on a terminal, or left
  to a running ssh-agent), else the default key, else whatever ssh-agent and ``~/.ssh/config``'s
  IdentityFile offer (asyncssh's defaults). Problems are ``KeyProblem`` in one line.
- ``connect``: one connection with retries for transient failures, optionally through another
  connection (``tunnel=``: a ProxyJump hop); ``~/.ssh/config`` applies (asyncssh reads it: Host
  aliases, HostName, Port, User, IdentityFile, ProxyJump/ProxyCommand) unless a value is given.
  Failures are ``SshFailure`` with a kind (``auth``, ``hostkey``, ``unreachable``) and a detail that
  callers prefix with the host they were talking to.
- ``run_command``, ``put_file``, ``put_bytes``, ``get_tree``: commands and files on a connection.
- ``LoopThread``: the backends' API is synchronous (the runner's), so asyncssh runs on a private
  event loop in a daemon thread.

Secrets (passwords, passphrases) are held only in memory and never appear in an error or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

log = logging.getLogger(__name__)

T = TypeVar("T")
PASSPHRASE_ENV = "PAMDI_SSH_PASSPHRASE"


class KeyProblem(ValueError):
    """A key that cannot be offered (missing, unreadable, passphrase not at hand or wrong)."""


class SshFailure(RuntimeError):
    """A connection or command failed; ``kind`` says how (auth, hostkey, unreachable, timeout, lost)."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}")


def q(value: str) -> str:
    """Shell-quote one argument for a remote command."""
    return shlex.quote(value)


def reason(err: BaseException | None) -> str:
    if err is None:
        return "no attempt made"
    if isinstance(err, asyncssh.ChannelOpenError):
        return err.reason or "channel open failed"
    if isinstance(err, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(err, OSError) and err.errno and os.strerror(err.errno) not in str(err):
        # asyncio says "[Errno 111] Connect call failed (...)": name the cause as ssh would.
        return f"{os.strerror(err.errno)} ({err})"
    return str(err) or type(err).__name__


def client_keys(key: Path | None, explicit: bool, who: str, missing_hint: str = "") -> tuple[Path | None, object]:
    """(the key file, asyncssh's ``client_keys``) for a connection ``who`` names in messages.

    ``key`` given and ``explicit`` (named in a config file): that file, which must exist. Given but
    not explicit (a default such as ``~/.ssh/id_rsa``): used when it exists. A passphrase-protected
    key is opened with ``$PAMDI_SSH_PASSPHRASE``, else a prompt on a terminal, else (an ssh-agent
    running) left to the agent, else refused in one line saying how. No key: ``()``, asyncssh's
    defaults (ssh-agent, ``~/.ssh/config`` IdentityFile, ``~/.ssh/id_*``)."""
    import getpass
    import os
    import sys

    if key is None or not key.exists():
        if key is not None and explicit:
            raise KeyProblem(f"{who}: SSH key {key} does not exist{missing_hint}")
        return None, ()
    try:
        return key, [asyncssh.read_private_key(key)]
    except OSError as err:
        raise KeyProblem(f"{who}: SSH key {key} cannot be read: {err}") from None
    except (asyncssh.KeyEncryptionError, asyncssh.KeyImportError) as err:
        # asyncssh refuses an encrypted key without a passphrase as an import error; with one that is
        # wrong it says so by KeyEncryptionError: that tells a protected key from a broken one.
        try:
            asyncssh.read_private_key(key, "\0not-the-passphrase")
        except asyncssh.KeyEncryptionError:
            pass  # passphrase-protected
        except (OSError, asyncssh.KeyImportError):
            raise KeyProblem(f"{who}: SSH key {key} cannot be read: {err}") from None
    agent = bool(os.environ.get("SSH_AUTH_SOCK"))
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is None and sys.stdin.isatty() and not agent:
        passphrase = getpass.getpass(f"passphrase for {key}: ")
    if passphrase is None:
        if agent:
            return key, ()  # the agent holds it (ssh-add), or says no at the server
        raise KeyProblem(f"{who}: SSH key {key} is passphrase-protected: add it to ssh-agent "
                         f"(ssh-add {key}) or set {PASSPHRASE_ENV}")
    try:
        return key, [asyncssh.read_private_key(key, passphrase)]
    except (asyncssh.KeyEncryptionError, asyncssh.KeyImportError) as err:
        why = "wrong passphrase" if "ncorrect passphrase" in str(err) else f"cannot open ({err}) with the passphrase"
        raise KeyProblem(f"{who}: {why} for SSH key {key}") from None


async def connect(host: str, *, port: int | tuple[()] = (), username: str | tuple[()] = (),
                  client_keys: object = (), password: str | None = None, known_hosts: object = (),
                  tunnel: asyncssh.SSHClientConnection | None = None, agent_path: object = (),
                  preferred_auth: object = "publickey", connect_timeout: float = 20.0,
                  retries: int = 2) -> asyncssh.SSHClientConnection:
    """One SSH connection; ``()`` leaves a value to ``~/.ssh/config`` / asyncssh's default. Refused
    credentials and unverifiable host keys fail at once; network failures are retried ``retries``
    times with a short back-off. Raises ``SshFailure``."""
    options: dict[str, Any] = {"port": port, "username": username, "client_keys": client_keys,
                               "known_hosts": known_hosts, "agent_path": agent_path,
                               "preferred_auth": preferred_auth, "connect_timeout": connect_timeout,
                               "keepalive_interval": 30}
    if password is not None:
        options["password"] = password
    if tunnel is not None:
        options["tunnel"] = tunnel
    last: BaseException | None = None
    for attempt in range(retries + 1):
        try:
            return await asyncio.wait_for(asyncssh.connect(host, **options), connect_timeout)
        except asyncssh.PermissionDenied:
            raise SshFailure("auth", "refused") from None
        except asyncssh.HostKeyNotVerifiable as err:
            raise SshFailure("hostkey", f"host key not verifiable: {err}") from None
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as err:
            last = err
            if attempt < retries:
                await asyncio.sleep(0.5 * (attempt + 1))
    raise SshFailure("unreachable", reason(last))


@dataclass(frozen=True)
class Output:
    exit_status: int
    stdout: str
    stderr: str


async def run_command(conn: asyncssh.SSHClientConnection, command: str, timeout: float) -> Output:
    """Run ``command``; its exit status whatever it is. ``SshFailure`` (timeout, lost) otherwise."""
    try:
        res = await asyncio.wait_for(conn.run(command, check=False), timeout)
    except asyncio.TimeoutError:
        raise SshFailure("timeout", f"command did not finish in time: {command}") from None
    except (OSError, asyncssh.Error) as err:
        raise SshFailure("unreachable", f"connection lost: {reason(err)}") from None
    out = res.stdout if isinstance(res.stdout, str) else (res.stdout or b"").decode(errors="replace")
    err_text = res.stderr if isinstance(res.stderr, str) else (res.stderr or b"").decode(errors="replace")
    return Output(res.exit_status if res.exit_status is not None else -1, out, err_text)


async def put_file(conn: asyncssh.SSHClientConnection, local: Path, remote: str, mode: int | None = None) -> None:
    async with conn.start_sftp_client() as sftp:
        await sftp.put(str(local), remote)
        if mode is not None:
            await sftp.chmod(remote, mode)


async def put_bytes(conn: asyncssh.SSHClientConnection, data: bytes, remote: str, mode: int = 0o644) -> None:
    async with conn.start_sftp_client() as sftp, sftp.open(remote, "wb", asyncssh.SFTPAttrs(permissions=mode)) as f:
        await f.write(data)


async def get_tree(conn: asyncssh.SSHClientConnection, remote: str, local: Path) -> list[Path]:
    """Copy a remote folder (recursively) into ``local`` (merged when it exists); the files copied."""
    local.parent.mkdir(parents=True, exist_ok=True)
    async with conn.start_sftp_client() as sftp:
        if not await sftp.exists(remote):
            return []
        if local.exists():
            # Copy beside it first: the remote folder's content lands under its own name, then is merged.
            stage = local.parent / f".{local.name}.part"
            await sftp.get(remote.rstrip("/"), str(stage), recurse=True, preserve=False)
            for p in stage.rglob("*"):
                if p.is_file():
                    dest = local / p.relative_to(stage)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    p.replace(dest)
            shutil.rmtree(stage, ignore_errors=True)
        else:
            await sftp.get(remote.rstrip("/"), str(local), recurse=True, preserve=False)
    return [p for p in local.rglob("*") if p.is_file()]


async def close_all(conns: list[asyncssh.SSHClientConnection]) -> None:
    """Close connections, innermost (tunnelled) first as given, and wait for each."""
    for conn in conns:
        conn.close()
    for conn in conns:
        with contextlib.suppress(Exception):
            await conn.wait_closed()


class LoopThread:
    """An asyncio loop in a daemon thread; ``call(coro)`` runs a coroutine there and waits."""

    def __init__(self, name: str = "pamdi-ssh") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)

    def shut_down(self, cleanup: Callable[[], Coroutine[Any, Any, Any]] | None,
                  close: Callable[[], Coroutine[Any, Any, Any]], what: str) -> None:
        """A backend's way out: ``cleanup()`` (stop agents, harvest; up to 180 s, a failure logged
        as incomplete, never raised), then ``close()`` (the connections, 30 s) and the loop, whatever
        happened before."""
        try:
            if cleanup is not None:
                self.call(cleanup(), timeout=180)
        except Exception as err:
            log.error("%s: clean-up incomplete: %s", what, err)
        finally:
            with contextlib.suppress(Exception):
                self.call(close(), timeout=30)
            self.close()
