"""SSH to Colosseum: the gateway as jump host, then every SRN (and file-proxy) through it.

This is the official ``~/.ssh/config`` of the Colosseum docs (ProxyCommand ``ssh -W %h:%p
colosseum-gw``) done with asyncssh's ``tunnel=``: one key-authenticated connection to the gateway,
and one password-authenticated connection per SRN opened through it (the SRN host names resolve
only on the gateway). All SRNs are reached in parallel; every failure is turned into one
``SrnError`` naming the SRN, its host name and the cause:

- ``unreachable``: the gateway could not open a channel to the SRN (refused, no route, unknown
  host name, timeout) — retried ``retries`` times with a short back-off;
- ``auth``: wrong SRN password (or a refused gateway key) — never retried;
- ``missing-cli``: ``colosseumcli`` is not installed in the container (exit 127);
- ``command``: a command failed (non-zero exit) where success was required.

Secrets (passwords) are held only in memory and never appear in an error or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncssh

from orchestrator.colosseum.config import ColosseumConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


class ColosseumError(RuntimeError):
    """Something went wrong talking to Colosseum; the message says what and where."""


class GatewayError(ColosseumError):
    pass


PASSPHRASE_ENV = "PAMDI_SSH_PASSPHRASE"


def gateway_keys(cfg: ColosseumConfig) -> tuple[Path | None, object]:
    """(the key file, asyncssh's ``client_keys``) for the gateway, as ``ssh`` would pick them.

    ``ssh_key`` set in the config: that file, which must exist; a passphrase-protected one is
    opened with ``$PAMDI_SSH_PASSPHRASE``, else a prompt on a terminal, else (an ssh-agent running)
    left to the agent, else refused in one line saying how. Not set: the default key the same way
    when it exists, else whatever ssh-agent and ``~/.ssh/config``'s IdentityFile offer (asyncssh's
    defaults)."""
    import getpass
    import os
    import sys

    key = cfg.ssh_key_path()
    explicit = "ssh_key" in cfg.model_fields_set
    if not key.exists():
        if explicit:
            raise GatewayError(f"gateway {cfg.gateway}: SSH key {key} does not exist (ssh_key in the config)")
        return None, ()
    try:
        return key, [asyncssh.read_private_key(key)]
    except OSError as err:
        raise GatewayError(f"gateway {cfg.gateway}: SSH key {key} cannot be read: {err}") from None
    except (asyncssh.KeyEncryptionError, asyncssh.KeyImportError) as err:
        # asyncssh refuses an encrypted key without a passphrase as an import error; with one that is
        # wrong it says so by KeyEncryptionError: that tells a protected key from a broken one.
        try:
            asyncssh.read_private_key(key, "\0not-the-passphrase")
        except asyncssh.KeyEncryptionError:
            pass  # passphrase-protected
        except (OSError, asyncssh.KeyImportError):
            raise GatewayError(f"gateway {cfg.gateway}: SSH key {key} cannot be read: {err}") from None
    agent = bool(os.environ.get("SSH_AUTH_SOCK"))
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is None and sys.stdin.isatty() and not agent:
        passphrase = getpass.getpass(f"passphrase for {key}: ")
    if passphrase is None:
        if agent:
            return key, ()  # the agent holds it (ssh-add), or says no at the gateway
        raise GatewayError(f"gateway {cfg.gateway}: SSH key {key} is passphrase-protected: add it to ssh-agent "
                           f"(ssh-add {key}) or set {PASSPHRASE_ENV}")
    try:
        return key, [asyncssh.read_private_key(key, passphrase)]
    except (asyncssh.KeyEncryptionError, asyncssh.KeyImportError) as err:
        why = "wrong passphrase" if "ncorrect passphrase" in str(err) else f"cannot open ({err}) with the passphrase"
        raise GatewayError(f"gateway {cfg.gateway}: {why} for SSH key {key}") from None


class SrnError(ColosseumError):
    def __init__(self, srn: int | None, host: str, kind: str, detail: str) -> None:
        self.srn = srn
        self.host = host
        self.kind = kind
        self.detail = detail
        where = f"SRN {srn} ({host})" if srn is not None else host
        super().__init__(f"{where}: {kind}: {detail}")


class MultiSrnError(ColosseumError):
    def __init__(self, errors: list[SrnError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass(frozen=True)
class CommandResult:
    srn: int | None
    host: str
    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def _reason(err: BaseException) -> str:
    if isinstance(err, asyncssh.ChannelOpenError):
        return err.reason or "channel open failed"
    if isinstance(err, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    text = str(err) or type(err).__name__
    return text


class Session:
    """Connections to the gateway, the SRNs and file-proxy of one configuration (async)."""

    def __init__(self, cfg: ColosseumConfig, srn_password: str | None = None, ldap_password: str | None = None):
        self.cfg = cfg
        self._srn_password = srn_password
        self._ldap_password = ldap_password
        self._gateway: asyncssh.SSHClientConnection | None = None
        self._gateway_lock = asyncio.Lock()
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Whether this reservation's colosseumcli gives cliff's ``-f json`` (None: not asked yet).
        self.cli_json: bool | None = None

    # ------------------------------------------------------------------ connections
    async def gateway(self) -> asyncssh.SSHClientConnection:
        async with self._gateway_lock:
            if self._gateway is not None:
                return self._gateway
            cfg = self.cfg
            key, client_keys = gateway_keys(cfg)
            known = cfg.known_hosts_path()
            known_hosts: object = None
            if known is not None:
                if not known.exists():
                    # Fail closed: connecting would trust whichever host answers (and it gets the key).
                    raise GatewayError(f"gateway {cfg.gateway}: {known} does not exist, so its host key cannot be "
                                       f"checked; connect once with `ssh {cfg.user}@{cfg.gateway}` and accept the "
                                       "key, or set gateway_known_hosts: null in the config to skip the check")
                known_hosts = str(known)
            last: BaseException | None = None
            for attempt in range(cfg.retries + 1):
                try:
                    self._gateway = await asyncio.wait_for(
                        asyncssh.connect(
                            cfg.gateway,
                            # A port given in the config wins; else ~/.ssh/config's for that host
                            # (asyncssh reads it: Host aliases, HostName, Port, ProxyCommand), else 22.
                            port=cfg.gateway_port if "gateway_port" in cfg.model_fields_set else (),
                            username=cfg.user,
                            client_keys=client_keys,
                            known_hosts=known_hosts,
                            # ssh-agent when SSH_AUTH_SOCK is set (asyncssh's default), as ssh does.
                            preferred_auth="publickey",
                            connect_timeout=cfg.connect_timeout_s,
                            keepalive_interval=30,
                        ),
                        cfg.connect_timeout_s,
                    )
                    return self._gateway
                except asyncssh.PermissionDenied:
                    which = f"key {key}" if key is not None else "no key (ssh-agent, ~/.ssh/config) was"
                    raise GatewayError(
                        f"gateway {cfg.gateway}: {which} refused for user {cfg.user} "
                        "(is its public key uploaded on the Colosseum website, Accounts tab?)"
                    ) from None
                except asyncssh.HostKeyNotVerifiable as err:
                    raise GatewayError(f"gateway {cfg.gateway}: host key not verifiable: {err}") from None
                except (OSError, asyncssh.Error, asyncio.TimeoutError) as err:
                    last = err
                    if attempt < cfg.retries:
                        await asyncio.sleep(0.5 * (attempt + 1))
            raise GatewayError(
                f"gateway {cfg.gateway}:{cfg.gateway_port} unreachable: {_reason(last)} (is the Colosseum VPN up?)"
            )

    async def _through_gateway(
        self, host: str, port: int, username: str, password: str | None, srn: int | None
    ) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:
            if host in self._conns:
                return self._conns[host]
            gw = await self.gateway()
            if password is None:
                raise SrnError(srn, host, "auth", "no password given")
            cfg = self.cfg
            last: BaseException | None = None
            for attempt in range(cfg.retries + 1):
                try:
                    conn = await asyncio.wait_for(
                        asyncssh.connect(
                            host,
                            port=port,
                            tunnel=gw,
                            username=username,
                            password=password,
                            client_keys=None,
                            agent_path=None,
                            # SRN containers are recreated per reservation: the official ssh config
                            # turns host key checking off for them (StrictHostKeyChecking no).
                            known_hosts=None,
                            preferred_auth=("password", "keyboard-interactive"),
                            connect_timeout=cfg.connect_timeout_s,
                            keepalive_interval=30,
                        ),
                        cfg.connect_timeout_s,
                    )
                    self._conns[host] = conn
                    return conn
                except asyncssh.PermissionDenied:
                    raise SrnError(srn, host, "auth", f"wrong password for user {username}") from None
                except (OSError, asyncssh.Error, asyncio.TimeoutError) as err:
                    last = err
                    if attempt < cfg.retries:
                        await asyncio.sleep(0.5 * (attempt + 1))
            raise SrnError(srn, host, "unreachable", f"through gateway {cfg.gateway}: {_reason(last)}")

    async def srn(self, srn: int) -> asyncssh.SSHClientConnection:
        return await self._through_gateway(
            self.cfg.srn_host(srn), self.cfg.srn_port, self.cfg.srn_user, self._srn_password, srn
        )

    async def file_proxy(self) -> asyncssh.SSHClientConnection:
        return await self._through_gateway(
            self.cfg.file_proxy, self.cfg.file_proxy_port, self.cfg.user, self._ldap_password, None
        )

    # ------------------------------------------------------------------ commands
    async def _run_on(
        self, conn: asyncssh.SSHClientConnection, srn: int | None, host: str, command: str, timeout: float | None
    ) -> CommandResult:
        try:
            res = await asyncio.wait_for(
                conn.run(command, check=False), timeout if timeout is not None else self.cfg.command_timeout_s
            )
        except asyncio.TimeoutError:
            raise SrnError(srn, host, "timeout", f"command did not finish in time: {command}") from None
        except (OSError, asyncssh.Error) as err:
            raise SrnError(srn, host, "unreachable", f"connection lost: {_reason(err)}") from None
        out = res.stdout if isinstance(res.stdout, str) else (res.stdout or b"").decode(errors="replace")
        err_text = res.stderr if isinstance(res.stderr, str) else (res.stderr or b"").decode(errors="replace")
        status = res.exit_status if res.exit_status is not None else -1
        return CommandResult(srn, host, command, status, out, err_text)

    async def run(
        self, srn: int, command: str, *, timeout: float | None = None, check: bool = False
    ) -> CommandResult:
        conn = await self.srn(srn)
        host = self.cfg.srn_host(srn)
        res = await self._run_on(conn, srn, host, command, timeout)
        if check and not res.ok:
            raise SrnError(srn, host, "command", f"`{command}` exited {res.exit_status}: {res.stderr.strip()[-400:]}")
        return res

    async def run_file_proxy(self, command: str, *, timeout: float | None = None, check: bool = True) -> CommandResult:
        conn = await self.file_proxy()
        res = await self._run_on(conn, None, self.cfg.file_proxy, command, timeout)
        if check and not res.ok:
            detail = f"`{command}` exited {res.exit_status}: {res.stderr.strip()[-400:]}"
            raise SrnError(None, self.cfg.file_proxy, "command", detail)
        return res

    async def colosseumcli(self, srn: int, args: str, *, timeout: float | None = None) -> CommandResult:
        """Run ``colosseumcli ARGS`` on an SRN; a missing colosseumcli is an error of its own."""
        res = await self.run(srn, f"colosseumcli {args}", timeout=timeout)
        if res.exit_status == 127 or "colosseumcli: command not found" in res.stderr:
            raise SrnError(
                srn,
                self.cfg.srn_host(srn),
                "missing-cli",
                "colosseumcli is not installed in this container (install it from /common/colosseumcli, "
                "see the colosseumcli-public README)",
            )
        return res

    async def each(
        self, fn: Callable[[int], Awaitable[T]], srns: Iterable[int] | None = None
    ) -> dict[int, T]:
        """Run ``fn(srn)`` on every SRN in parallel; raise one error listing every SRN that failed."""
        targets = list(srns if srns is not None else self.cfg.require_srns())
        results = await asyncio.gather(*(fn(s) for s in targets), return_exceptions=True)
        errors: list[SrnError] = []
        out: dict[int, T] = {}
        for srn, res in zip(targets, results, strict=True):
            if isinstance(res, SrnError):
                errors.append(res)
            elif isinstance(res, GatewayError):
                raise res
            elif isinstance(res, BaseException):
                errors.append(SrnError(srn, self.cfg.srn_host(srn), "error", _reason(res)))
            else:
                out[srn] = res
        if errors:
            raise MultiSrnError(errors)
        return out

    async def run_all(self, command: str | Callable[[int], str], *, timeout: float | None = None,
                      check: bool = False, srns: Iterable[int] | None = None) -> dict[int, CommandResult]:
        async def one(srn: int) -> CommandResult:
            cmd = command(srn) if callable(command) else command
            return await self.run(srn, cmd, timeout=timeout, check=check)

        return await self.each(one, srns)

    # ------------------------------------------------------------------ files
    async def put(self, srn: int | None, local: Path, remote: str) -> None:
        conn = await (self.srn(srn) if srn is not None else self.file_proxy())
        async with conn.start_sftp_client() as sftp:
            await sftp.put(str(local), remote)

    async def put_bytes(self, srn: int | None, data: bytes, remote: str, mode: int = 0o644) -> None:
        conn = await (self.srn(srn) if srn is not None else self.file_proxy())
        async with conn.start_sftp_client() as sftp, sftp.open(remote, "wb", asyncssh.SFTPAttrs(permissions=mode)) as f:
            await f.write(data)

    async def get_tree(self, srn: int | None, remote: str, local: Path) -> list[Path]:
        """Copy a remote folder (recursively) into ``local``; returns the files copied."""
        conn = await (self.srn(srn) if srn is not None else self.file_proxy())
        local.parent.mkdir(parents=True, exist_ok=True)
        async with conn.start_sftp_client() as sftp:
            if not await sftp.exists(remote):
                return []
            if local.exists():
                # Copy into it: the remote folder's content lands under its own name, then is merged.
                stage = local.parent / f".{local.name}.part"
                await sftp.get(remote.rstrip("/"), str(stage), recurse=True, preserve=False)
                for p in stage.rglob("*"):
                    if p.is_file():
                        dest = local / p.relative_to(stage)
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        p.replace(dest)
                import shutil

                shutil.rmtree(stage, ignore_errors=True)
            else:
                await sftp.get(remote.rstrip("/"), str(local), recurse=True, preserve=False)
        return [p for p in local.rglob("*") if p.is_file()]

    async def close(self) -> None:
        for conn in list(self._conns.values()):
            conn.close()
        for conn in list(self._conns.values()):
            with contextlib.suppress(Exception):
                await conn.wait_closed()
        self._conns.clear()
        if self._gateway is not None:
            self._gateway.close()
            with contextlib.suppress(Exception):
                await self._gateway.wait_closed()
            self._gateway = None

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def q(value: str) -> str:
    """Shell-quote one argument for a remote command."""
    return shlex.quote(value)
