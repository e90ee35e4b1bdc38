"""SSH connections to the hosts of a lab inventory (async), over the shared layer ``orchestrator.sshlink``.

One connection per host, opened on first use and kept; a host with ``proxy_jump`` is reached
through its jump host's connection (asyncssh ``tunnel=``, what ``ssh -J`` does), and a
``~/.ssh/config`` entry for the address applies (HostName, Port, User, IdentityFile, ProxyJump).
Keys: the host's ``key`` file (passphrase from ssh-agent, ``$PAMDI_SSH_PASSPHRASE`` or a prompt),
else ssh-agent and the user's default keys. Every failure becomes one ``HostError`` naming the host,
its address and the cause: ``key`` (missing, unreadable, passphrase not at hand), ``auth`` (wrong
key), ``hostkey``, ``unreachable``, ``timeout``, ``command``. ``each`` fans out over hosts in
parallel and raises ``LabErrors`` with one line per host that failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeVar

import asyncssh

from orchestrator import sshlink
from orchestrator.lab.inventory import Endpoint, Inventory

T = TypeVar("T")


class LabError(RuntimeError):
    """Something went wrong with the lab; the message says what and where, in one line per host."""


class HostError(LabError):
    def __init__(self, host: str, address: str, kind: str, detail: str) -> None:
        self.host, self.address, self.kind, self.detail = host, address, kind, detail
        where = f"host {host}" if address == host else f"host {host} ({address})"
        super().__init__(f"{where}: {kind}: {detail}")


class LabErrors(LabError):
    def __init__(self, errors: list[HostError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def _literal_jump(spec: str) -> Endpoint:
    """``[user@]host[:port]`` as a jump endpoint (its key from ssh-agent / ~/.ssh/config)."""
    user, _, rest = spec.rpartition("@")
    host, _, port = rest.partition(":")
    return Endpoint(name=host, address=host, user=user or None, port=int(port) if port else None)


class LabSession:
    def __init__(self, inventory: Inventory) -> None:
        self.inv = inventory
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._order: list[str] = []  # connection names in the order opened (closed in reverse)

    def endpoint(self, name: str) -> Endpoint:
        found = self.inv.endpoint(name)
        return found if found is not None else _literal_jump(name)

    def error(self, name: str, kind: str, detail: str) -> HostError:
        return HostError(name, self.endpoint(name).ssh_address, kind, detail)

    async def conn(self, name: str) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self._conns:
                return self._conns[name]
            ep = self.endpoint(name)
            tunnel = None
            if ep.proxy_jump:
                try:
                    tunnel = await self.conn(ep.proxy_jump)
                except HostError as err:
                    raise self.error(name, "unreachable", f"jump host {ep.proxy_jump}: {err.kind}: {err.detail}"
                                     ) from None
            try:
                key, keys = sshlink.client_keys(ep.key_path(), ep.key is not None, f"host {name}")
            except sshlink.KeyProblem as err:
                raise self.error(name, "key", str(err).removeprefix(f"host {name}: ")) from None
            known = ep.known_hosts_path()
            if known is not None and not known.exists():
                # Fail closed: connecting would trust whichever machine answers.
                raise self.error(name, "hostkey", f"{known} does not exist, so the host key cannot be checked; "
                                 f"connect once with ssh and accept the key, or set known_hosts: null for {name}")
            try:
                conn = await sshlink.connect(
                    ep.ssh_address, port=ep.port or (), username=ep.user or (), client_keys=keys,
                    known_hosts=str(known) if known is not None else None, tunnel=tunnel,
                    connect_timeout=self.inv.connect_timeout_s, retries=self.inv.retries)
            except sshlink.SshFailure as err:
                if err.kind == "auth":
                    which = f"key {key}" if key is not None else "no key (ssh-agent, ~/.ssh/config) was"
                    raise self.error(name, "auth", f"{which} refused for user {ep.user or '(default)'} "
                                                   "(wrong key, or its public key not in authorized_keys)") from None
                via = f" through {ep.proxy_jump}" if ep.proxy_jump else ""
                raise self.error(name, err.kind, f"{err.detail}{via}") from None
            self._conns[name] = conn
            self._order.append(name)
            return conn

    async def run(self, name: str, command: str, *, timeout: float | None = None,
                  check: bool = False) -> sshlink.Output:
        conn = await self.conn(name)
        try:
            res = await sshlink.run_command(conn, command, timeout or self.inv.command_timeout_s)
        except sshlink.SshFailure as err:
            raise self.error(name, err.kind, err.detail) from None
        if check and res.exit_status != 0:
            why = (res.stderr.strip() or res.stdout.strip())[-300:]
            raise self.error(name, "command", f"`{command[:120]}` exited {res.exit_status}: {' '.join(why.split())}")
        return res

    async def each(self, fn: Callable[[str], Awaitable[T]], names: Iterable[str]) -> dict[str, T]:
        """``fn(name)`` on every host in parallel; one ``LabErrors`` listing every host that failed."""
        targets = list(names)
        results = await asyncio.gather(*(fn(n) for n in targets), return_exceptions=True)
        errors: list[HostError] = []
        out: dict[str, T] = {}
        for name, res in zip(targets, results, strict=True):
            if isinstance(res, LabErrors):
                errors += res.errors
            elif isinstance(res, HostError):
                errors.append(res)
            elif isinstance(res, BaseException):
                if not isinstance(res, Exception):
                    raise res  # KeyboardInterrupt, cancellation
                errors.append(self.error(name, "error", sshlink.reason(res)))
            else:
                out[name] = res
        if errors:
            raise LabErrors(errors)
        return out

    async def put(self, name: str, local: Path, remote: str, mode: int | None = None) -> None:
        await sshlink.put_file(await self.conn(name), local, remote, mode)

    async def put_bytes(self, name: str, data: bytes, remote: str, mode: int = 0o644) -> None:
        await sshlink.put_bytes(await self.conn(name), data, remote, mode)

    async def get_tree(self, name: str, remote: str, local: Path) -> list[Path]:
        return await sshlink.get_tree(await self.conn(name), remote, local)

    async def close(self) -> None:
        # Hosts before the jump hosts they were reached through.
        await sshlink.close_all([self._conns[n] for n in reversed(self._order)])
        self._conns.clear()
        self._order.clear()

    async def __aenter__(self) -> LabSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
