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
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncssh

from orchestrator import sshlink
from orchestrator.colosseum.config import ColosseumConfig
from orchestrator.sshlink import PASSPHRASE_ENV, q  # noqa: F401 - re-exported: callers import them from here

log = logging.getLogger(__name__)
T = TypeVar("T")


class ColosseumError(RuntimeError):
    """Something went wrong talking to Colosseum; the message says what and where."""


class GatewayError(ColosseumError):
    pass


def gateway_keys(cfg: ColosseumConfig) -> tuple[Path | None, object]:
    """(the key file, asyncssh's ``client_keys``) for the gateway, as ``ssh`` would pick them
    (``orchestrator.sshlink.client_keys``): ``ssh_key`` when the config names it (it must exist),
    else the default key when it exists, else ssh-agent and ``~/.ssh/config``'s IdentityFile."""
    try:
        return sshlink.client_keys(cfg.ssh_key_path(), "ssh_key" in cfg.model_fields_set, f"gateway {cfg.gateway}",
                                   missing_hint=" (ssh_key in the config)")
    except sshlink.KeyProblem as err:
        raise GatewayError(str(err)) from None


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
            try:
                self._gateway = await sshlink.connect(
                    cfg.gateway,
                    # A port given in the config wins; else ~/.ssh/config's for that host
                    # (asyncssh reads it: Host aliases, HostName, Port, ProxyCommand), else 22.
                    port=cfg.gateway_port if "gateway_port" in cfg.model_fields_set else (),
                    username=cfg.user, client_keys=client_keys, known_hosts=known_hosts,
                    # ssh-agent when SSH_AUTH_SOCK is set (asyncssh's default), as ssh does.
                    preferred_auth="publickey", connect_timeout=cfg.connect_timeout_s, retries=cfg.retries)
                return self._gateway
            except sshlink.SshFailure as err:
                if err.kind == "auth":
                    which = f"key {key}" if key is not None else "no key (ssh-agent, ~/.ssh/config) was"
                    raise GatewayError(
                        f"gateway {cfg.gateway}: {which} refused for user {cfg.user} "
                        "(is its public key uploaded on the Colosseum website, Accounts tab?)"
                    ) from None
                if err.kind == "hostkey":
                    raise GatewayError(f"gateway {cfg.gateway}: {err.detail}") from None
                raise GatewayError(f"gateway {cfg.gateway}:{cfg.gateway_port} unreachable: {err.detail} "
                                   "(is the Colosseum VPN up?)") from None

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
            try:
                conn = await sshlink.connect(
                    host, port=port, tunnel=gw, username=username, password=password, client_keys=None,
                    agent_path=None,
                    # SRN containers are recreated per reservation: the official ssh config
                    # turns host key checking off for them (StrictHostKeyChecking no).
                    known_hosts=None, preferred_auth=("password", "keyboard-interactive"),
                    connect_timeout=cfg.connect_timeout_s, retries=cfg.retries)
            except sshlink.SshFailure as err:
                if err.kind == "auth":
                    raise SrnError(srn, host, "auth", f"wrong password for user {username}") from None
                raise SrnError(srn, host, "unreachable", f"through gateway {cfg.gateway}: {err.detail}") from None
            self._conns[host] = conn
            return conn

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
            res = await sshlink.run_command(conn, command,
                                            timeout if timeout is not None else self.cfg.command_timeout_s)
        except sshlink.SshFailure as err:
            raise SrnError(srn, host, err.kind, err.detail) from None
        return CommandResult(srn, host, command, res.exit_status, res.stdout, res.stderr)

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
                errors.append(SrnError(srn, self.cfg.srn_host(srn), "error", sshlink.reason(res)))
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
    async def _conn(self, srn: int | None) -> asyncssh.SSHClientConnection:
        return await (self.srn(srn) if srn is not None else self.file_proxy())

    async def put(self, srn: int | None, local: Path, remote: str) -> None:
        await sshlink.put_file(await self._conn(srn), local, remote)

    async def put_bytes(self, srn: int | None, data: bytes, remote: str, mode: int = 0o644) -> None:
        await sshlink.put_bytes(await self._conn(srn), data, remote, mode)

    async def get_tree(self, srn: int | None, remote: str, local: Path) -> list[Path]:
        """Copy a remote folder (recursively) into ``local``; returns the files copied."""
        return await sshlink.get_tree(await self._conn(srn), remote, local)

    async def close(self) -> None:
        await sshlink.close_all(list(self._conns.values()))
        self._conns.clear()
        if self._gateway is not None:
            await sshlink.close_all([self._gateway])
            self._gateway = None

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
