"""A lab of real OpenSSH servers in network namespaces, for the ``ssh`` backend's tests.

Layout (names carry a random tag so that concurrent test sessions never collide):

    root namespace (the experimenter's machine: pytest, `pamdi lab ...`, `pamdi emulate --backend ssh`)
        | veth, 10.241.T.1/24
    brmgmt (in <tag>-fab)    management network: j .5, h1 .11, h2 .12
    brback                   behind the jump host: j .1, h3 .13 (not reachable from the root namespace)
    brdata                   the data plane: h1 10.242.T.1, h2 .2, h3 .3 (`data0` in each host)

- ``j``: the jump host, sshd with key auth for an unprivileged user, forwarding only.
- ``h1``: key auth with a plain key, for the lab user (a uid-0 alias: may shape with tc) and for an
  unprivileged user (who may not: the "no tc rights" case).
- ``h2``: accepts only a passphrase-protected key, which the fixture loads into a real
  ``ssh-agent`` (``SSH_AUTH_SOCK`` of ``env()``); the tests never give the passphrase to pamdi.
- ``h3``: reachable only through ``j`` (``proxy_jump: j``), ``shape: false``: its outgoing data-plane
  traffic is held to ``h3_rate_mbit`` by a tbf the fixture installs (a link "as it is").

Hosts run agents with this machine's venv (same filesystem, no chroot) and ``PYTHONPATH`` = the
checkout, each with its own work folder. Every sshd session carries ``PAMDI_LAB=<tag>``, so the
processes it started are found (``tests.colosseum_standin.lab.lab_pids``) and killed by ``close()``,
which removes namespaces, users, the ssh-agent and the folder; nothing else on the machine changes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.colosseum_standin.lab import SSHD, available, kill_lab_processes, lab_pids, sh

REPO = Path(__file__).resolve().parent.parent
HOSTS = ("h1", "h2", "h3")
__all__ = ["HOSTS", "PAMDI", "REPO", "SPEC", "SshLab", "available", "lab_pids", "run_pamdi"]
# The CLI as a user runs it: the checkout's venv entry point where there is one.
PAMDI = [sys.executable, "-m", "orchestrator.cli"] if not (REPO / ".venv" / "bin" / "pamdi").exists() \
    else [str(REPO / ".venv" / "bin" / "pamdi")]

SPEC = {
    "name": "lab3",
    "seed": 7,
    # A slow source node makes the policies offload partitions to h2 and h3 over the data plane.
    "nodes": [{"name": "h1", "speed": 0.02}, {"name": "h2"}, {"name": "h3"}],
    "full_mesh": {"rate_mbit": 100},
    "sources": [
        {"name": "ts", "node": "h1", "model": "tiny", "priority": 10, "samples": 4, "interval_ms": 20},
        {"name": "nts", "node": "h2", "model": "tiny", "priority": 1, "samples": 4, "interval_ms": 20},
    ],
    "policy": ["pa-mdi"],
}



@dataclass
class SshLab:
    h3_rate_mbit: float = 40.0
    # Also "h4": a host in the root namespace (its sshd on the lab's root-side address, port 2222,
    # a veth into the data plane) whose agents run in the node image under Docker with the host's
    # network: the only namespace where dockerd's "host network" is the host's own.
    docker_host: bool = False
    # The node image h4's agent runs in (the tests pass the one built from this tree).
    docker_image: str = "pamdi-node:latest"
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    tmp: Path = field(init=False)
    user: str = field(init=False)  # the lab user (uid-0 alias)
    plain_user: str = field(init=False)  # unprivileged, on h1
    jump_user: str = field(init=False)
    key_plain: Path = field(init=False)
    key_pass: Path = field(init=False)
    passphrase: str = field(init=False)
    known_hosts: Path = field(init=False)
    agent_sock: Path = field(init=False)

    def __post_init__(self) -> None:
        self.third = int(self.tag[:2], 16) % 250 + 2
        self._procs: dict[str, subprocess.Popen] = {}
        self._namespaces: list[str] = []
        self._users: list[str] = []
        self._host_veth: str | None = None
        self._docker_veth: str | None = None
        self._agent: subprocess.Popen | None = None

    # ------------------------------------------------------------------ names and addresses
    def ns(self, role: str) -> str:
        return f"psl{self.tag}-{role}"

    def mgmt_addr(self, role: str) -> str:
        if role == "h4":
            return self.mgmt_addr("root")
        if role == "h3":
            return f"10.243.{self.third}.13"
        return f"10.241.{self.third}." + {"root": "1", "j": "5", "h1": "11", "h2": "12"}[role]

    def data_addr(self, role: str) -> str:
        return f"10.242.{self.third}.{(*HOSTS, 'h4').index(role) + 1}"

    @property
    def roles(self) -> tuple[str, ...]:
        return (*HOSTS, "h4") if self.docker_host else HOSTS

    def data_ifname(self, role: str) -> str:
        return f"psl{self.tag}d" if role == "h4" else "data0"

    def workdir(self, role: str) -> Path:
        return self.tmp / "hosts" / role / "work"

    # ------------------------------------------------------------------ build
    def start(self) -> SshLab:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"pamdi-sshlab-{self.tag}-"))
        os.chmod(self.tmp, 0o755)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        home = self.tmp / "home"
        home.mkdir()
        os.chmod(home, 0o755)
        self.user, self.plain_user, self.jump_user = f"psl{self.tag}r", f"psl{self.tag}n", f"psl{self.tag}j"
        for name in (self.user, self.plain_user, self.jump_user):
            if name == self.user:
                sh("useradd", "-o", "-u", "0", "-g", "0", "-N", "-M", "-d", str(home / name), "-s", "/bin/bash", name)
            else:
                sh("useradd", "-M", "-d", str(home / name), "-s", "/bin/bash", name)
            self._users.append(name)
            (home / name).mkdir()
            shutil.chown(home / name, name, 0 if name == self.user else name)
            # Key auth only, but OpenSSH refuses a locked account (no password hash) outright.
            sh("usermod", "-p", "*", name)
        for role in self.roles:
            self.workdir(role).parent.mkdir(parents=True)
        self.key_plain = self.tmp / "id_plain"
        self.key_pass = self.tmp / "id_pass"
        self.passphrase = secrets.token_urlsafe(12)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key_plain), "-C", "pamdi-sshlab")
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", self.passphrase, "-f", str(self.key_pass), "-C", "pamdi-pass")
        self._network()
        path = f"/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:{Path(sys.executable).parent}"
        env = {"PAMDI_LAB": self.tag, "PATH": path}
        plain = Path(str(self.key_plain) + ".pub").read_text()
        known = []
        known.append(self._sshd("j", [self.jump_user], plain, env, root=False))
        known.append(self._sshd("h1", [self.user, self.plain_user], plain, env, root=True))
        known.append(self._sshd("h2", [self.user], Path(str(self.key_pass) + ".pub").read_text(), env, root=True))
        known.append(self._sshd("h3", [self.user], plain, env, root=True))
        if self.docker_host:
            known.append(self._sshd("h4", [self.user], plain, env, root=True, port=2222))
        self.known_hosts = self.tmp / "known_hosts"
        self.known_hosts.write_text("\n".join(known) + "\n")
        # h3's link as it is: its outgoing data-plane traffic held to h3_rate_mbit by the lab itself.
        sh("tc", "qdisc", "add", "dev", "data0", "root", "tbf", "rate", f"{self.h3_rate_mbit:g}mbit", "burst", "8kb",
           "limit", "1514000", ns=self.ns("h3"))
        self._start_agent()

    def _network(self) -> None:
        fab = self.ns("fab")
        for n in (fab, *(self.ns(r) for r in ("j", *HOSTS))):
            sh("ip", "netns", "add", n)
            self._namespaces.append(n)
            # IPv4 only: no IPv6 chatter to blur the interface-counter checks.
            sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1", ns=n)
            sh("ip", "-n", n, "link", "set", "lo", "up")
        for br in ("brmgmt", "brback", "brdata"):
            sh("ip", "-n", fab, "link", "add", br, "type", "bridge")
            sh("ip", "-n", fab, "link", "set", br, "up")
        host_if = f"psl{self.tag}h"
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", f"q{self.tag}r", "netns", fab)
        self._host_veth = host_if
        sh("ip", "addr", "add", f"{self.mgmt_addr('root')}/24", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", fab, "link", "set", f"q{self.tag}r", "master", "brmgmt", "up")
        k = 0

        def attach(role: str, ifname: str, bridge: str, cidr: str) -> None:
            nonlocal k
            peer = f"q{self.tag}{k}"
            k += 1
            sh("ip", "-n", fab, "link", "add", peer, "type", "veth", "peer", "name", ifname, "netns", self.ns(role))
            sh("ip", "-n", fab, "link", "set", peer, "master", bridge, "up")
            sh("ip", "-n", self.ns(role), "addr", "add", cidr, "dev", ifname)
            sh("ip", "-n", self.ns(role), "link", "set", ifname, "up")

        attach("j", "mgmt0", "brmgmt", f"{self.mgmt_addr('j')}/24")
        attach("j", "mgmt1", "brback", f"10.243.{self.third}.1/24")
        attach("h1", "mgmt0", "brmgmt", f"{self.mgmt_addr('h1')}/24")
        attach("h2", "mgmt0", "brmgmt", f"{self.mgmt_addr('h2')}/24")
        attach("h3", "mgmt0", "brback", f"{self.mgmt_addr('h3')}/24")
        for role in HOSTS:
            attach(role, "data0", "brdata", f"{self.data_addr(role)}/24")
        if self.docker_host:
            dif = self.data_ifname("h4")
            sh("ip", "link", "add", dif, "type", "veth", "peer", "name", f"q{self.tag}d", "netns", fab)
            self._docker_veth = dif
            sh("sysctl", "-qw", f"net.ipv6.conf.{dif}.disable_ipv6=1")
            sh("ip", "addr", "add", f"{self.data_addr('h4')}/24", "dev", dif)
            sh("ip", "link", "set", dif, "up")
            sh("ip", "-n", fab, "link", "set", f"q{self.tag}d", "master", "brdata", "up")

    def _sshd(self, role: str, users: list[str], authorized: str, env: dict[str, str], *, root: bool,
              port: int = 22) -> str:
        d = self.tmp / f"sshd-{role}"
        d.mkdir()
        key = d / "ssh_host_ed25519_key"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        (d / "authorized_keys").write_text(authorized)
        cfg = [
            f"ListenAddress {self.mgmt_addr(role)}", f"Port {port}", f"HostKey {key}", f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}", "PasswordAuthentication no", "PubkeyAuthentication yes",
            "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            f"PermitRootLogin {'yes' if root else 'no'}", f"AllowUsers {' '.join(users)}", "AllowTcpForwarding yes",
            "X11Forwarding no", "MaxStartups 50", "MaxSessions 50", "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp", "SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()),
        ]
        (d / "sshd_config").write_text("\n".join(cfg) + "\n")
        log = open(d / "sshd.log", "w")  # noqa: SIM115 - closed with the process
        enter = [] if role == "h4" else ["ip", "netns", "exec", self.ns(role)]
        proc = subprocess.Popen([*enter, SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=log,
                                stderr=subprocess.STDOUT)
        self._procs[role] = proc
        deadline = time.time() + 10
        while "Server listening" not in (d / "sshd.log").read_text():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"sshd {role} did not start: {(d / 'sshd.log').read_text()}")
            time.sleep(0.05)
        pub = Path(str(key) + ".pub").read_text().split()
        where = self.mgmt_addr(role) if port == 22 else f"[{self.mgmt_addr(role)}]:{port}"
        return f"{where} {pub[0]} {pub[1]}"

    def _start_agent(self) -> None:
        """A real ssh-agent holding the passphrase key (added through SSH_ASKPASS, as a desktop would)."""
        self.agent_sock = self.tmp / "agent.sock"
        self._agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(self.agent_sock)], stdout=subprocess.DEVNULL)
        for _ in range(100):
            if self.agent_sock.exists():
                break
            time.sleep(0.05)
        askpass = self.tmp / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\necho '{self.passphrase}'\n")
        askpass.chmod(0o700)
        env = dict(os.environ, SSH_AUTH_SOCK=str(self.agent_sock), SSH_ASKPASS=str(askpass),
                   SSH_ASKPASS_REQUIRE="force", DISPLAY="none")
        subprocess.run(["ssh-add", str(self.key_pass)], env=env, check=True, capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
        askpass.unlink()

    # ------------------------------------------------------------------ for the tests
    def host_entry(self, role: str, **overrides: object) -> dict[str, object]:
        entry: dict[str, object] = {
            "name": role, "address": self.mgmt_addr(role), "user": self.user, "port": 22,
            "key": str(self.key_pass if role == "h2" else self.key_plain),
            "python": sys.executable, "env": {"PYTHONPATH": str(REPO)},
            "data_plane": {"address": self.data_addr(role)}, "device": "host",
            "shape": role != "h3", "workdir": str(self.workdir(role)),
        }
        if role == "h3":
            entry["proxy_jump"] = "j"
        if role == "h4":
            entry.update(port=2222, runtime="docker", image=self.docker_image, shape=False)
        entry.update(overrides)
        return entry

    def inventory(self, hosts: list[dict[str, object]] | None = None) -> dict[str, object]:
        return {
            "defaults": {"known_hosts": str(self.known_hosts)},
            "hosts": hosts if hosts is not None else [self.host_entry(r) for r in HOSTS],
            "jump_hosts": [{"name": "j", "address": self.mgmt_addr("j"), "user": self.jump_user,
                            "key": str(self.key_plain)}],
            "connect_timeout_s": 10, "retries": 0,
        }

    def write_inventory(self, path: Path, hosts: list[dict[str, object]] | None = None) -> Path:
        path.write_text(yaml.safe_dump(self.inventory(hosts), sort_keys=False))
        return path

    def env(self) -> dict[str, str]:
        e = {k: v for k, v in os.environ.items() if k != "PAMDI_SSH_PASSPHRASE"}
        e["SSH_AUTH_SOCK"] = str(self.agent_sock)
        e["PYTHONPATH"] = str(REPO)
        return e

    def counters(self, role: str) -> dict[str, dict[str, int]]:
        """rx/tx bytes of a host's interfaces, read inside its namespace by the test (h4: its data veth)."""
        ifs = {"data0": self.data_ifname(role)} if role == "h4" else {"mgmt0": "mgmt0", "data0": "data0"}
        out = {}
        for key, ifname in ifs.items():
            stats = f"/sys/class/net/{ifname}/statistics"
            r = sh("cat", f"{stats}/rx_bytes", f"{stats}/tx_bytes", ns=None if role == "h4" else self.ns(role))
            rx, tx = (int(x) for x in r.stdout.split())
            out[key] = {"rx": rx, "tx": tx}
        return out

    def containers(self) -> list[str]:
        """Node containers of this lab's runs (their run ids carry the lab's tag)."""
        r = sh("docker", "ps", "-a", "--format", "{{.Names}}", check=False)
        return [n for n in r.stdout.split() if n.startswith("pamdi-lab-") and self.tag in n]

    def qdiscs(self, role: str) -> str:
        return sh("tc", "qdisc", "show", "dev", "data0", ns=self.ns(role)).stdout

    def agent_pids(self) -> list[int]:
        out = []
        for pid in lab_pids(self.tag):
            with contextlib.suppress(FileNotFoundError):
                # The agent itself (`python -m pamdi_node ...`), not a shell whose script names it.
                if b"\0-m\0pamdi_node\0" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(pid)
        return out

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        kill_lab_processes(self.tag)
        if self.docker_host:
            for name in self.containers():
                sh("docker", "rm", "-f", name, check=False)
        for proc in [*self._procs.values(), *([self._agent] if self._agent else [])]:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in [*self._procs.values(), *([self._agent] if self._agent else [])]:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._procs.clear()
        self._agent = None
        for n in reversed(self._namespaces):
            sh("ip", "netns", "del", n, check=False)
        self._namespaces.clear()
        for veth in (self._host_veth, self._docker_veth):
            if veth:
                sh("ip", "link", "del", veth, check=False)
        self._host_veth = self._docker_veth = None
        for name in self._users:
            sh("userdel", "-f", name, check=False)
        self._users.clear()
        if hasattr(self, "tmp"):
            shutil.rmtree(self.tmp, ignore_errors=True)


def run_pamdi(lab: SshLab, *args: str, env: dict[str, str] | None = None, timeout: float = 240,
              cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``pamdi ARGS`` as a user runs it, with the lab's environment (its ssh-agent, this checkout)."""
    return subprocess.run([*PAMDI, *args], env=env or lab.env(), capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or REPO)


# The module-scoped fixtures ``lab`` and ``inventory`` of the lab tests (imported by them, as
# tests/docker_support.py's are): one lab per test module, and its inventory of every host.
@pytest.fixture(scope="module", name="lab")
def lab_fixture():  # type: ignore[no-untyped-def]
    why = available()
    if why:
        pytest.skip(why)
    built = SshLab().start()
    yield built
    built.close()


@pytest.fixture(scope="module", name="inventory")
def inventory_fixture(lab: SshLab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lab.write_inventory(tmp_path_factory.mktemp("inv") / "lab.yaml")
