"""A small Colosseum built from network namespaces and real OpenSSH servers, for the tests.

Layout (all names carry a random tag so that concurrent test sessions never collide):

    root namespace (the experimenter's machine: pytest, `pamdi colosseum ...`)
        |  veth, 10.231.T.0/30
    <tag>-gw   the SSH gateway: sshd, *key* auth for the Colosseum user; /etc/netns/<ns>/hosts
        |      maps `<team>-<NNN>` and `file-proxy` to management addresses (the docs: the SRN host
        |      names resolve only inside Colosseum, "cat /etc/hosts on the SSH gateway").
        |  br-mgmt (in <tag>-fab), 10.232.T.0/24
    <tag>-fp   file-proxy: sshd, *password* (LDAP) auth for the same user; NAS under <tmp>/nas
    <tag>-sN   one SRN each: sshd on its management address, *password* auth for the container
               user; interfaces `col0` (172.30.R.(100+SRN)/24, wired net between SRNs, br-col0) and a
               radio link on br-radio named like srsRAN's (`srs_spgw_sgi` on the first SRN, `tun_srsue`
               on the others) with 172.16.0.(i+1)/24 — so the data plane and control plane are
               separate links whose counters the tests read.

The SRNs are namespaces on this host without a chroot (same filesystem): each SRN's sshd gives
its user a different work directory through the config's ``srn_work_dir`` pattern, and puts the
stand-in ``colosseumcli`` on PATH (sshd_config ``SetEnv``). The SRN "container user" is a dedicated
unprivileged test user (Colosseum logs in as root; root's password is never touched here), so
tcpdump cannot capture there and pcaps are skipped with a warning; interface counters are used.
Users, namespaces, /etc/netns/<ns>/ and processes are removed by ``close()``; nothing else on the
machine changes (the machine's own sshd config and service are not touched).
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

import yaml

STANDIN_DIR = Path(__file__).resolve().parent
SSHD = "/usr/sbin/sshd"


def sh(*args: str, check: bool = True, ns: str | None = None, **kw: object) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


def lab_pids(tag: str) -> list[int]:
    """Processes started in the lab's SSH sessions: they carry PAMDI_LAB=<tag> (sshd SetEnv)."""
    marker = f"PAMDI_LAB={tag}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def kill_lab_processes(tag: str) -> None:
    """SIGKILL, by pid, every process the lab's SSH sessions left behind (agents, tcpdump)."""
    for pid in lab_pids(tag):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def available() -> str | None:
    """None when the lab can be built here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, test users)"
    for tool in (SSHD, "/usr/bin/ssh-keygen", "/usr/sbin/useradd", "/usr/sbin/chpasswd"):
        if not os.path.exists(tool):
            return f"{tool} missing (scripts/bootstrap.d/colosseum.sh installs openssh-server)"
    if shutil.which("ip") is None:
        return "iproute2 missing"
    return None


@dataclass
class Lab:
    team: str = "pamdi-lab"
    srns: tuple[int, ...] = (13, 15, 27)
    reservation_octet: int = 197
    cli_min_gap_s: float = 15.0
    cli_clear_s: float = 15.0
    cli_load_s: float = 1.0
    # The SRN user as a uid-0 alias with its own password (Colosseum logs in as root): lets agents run
    # the project's venv (under /root) and tcpdump capture. Removed with `userdel -f` by close().
    srn_root: bool = False
    # False: only the network (namespaces, col0 and radio links), no users, sshd or colosseumcli:
    # what a batch job sees (no SSH, no NAS; the Radio API scripts are called inside each SRN).
    ssh: bool = True
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    # Filled by start():
    tmp: Path = field(init=False)
    user: str = field(init=False)
    srn_user: str = field(init=False)
    ldap_password: str = field(init=False)
    srn_password: str = field(init=False)
    key_path: Path = field(init=False)
    known_hosts: Path = field(init=False)
    gw_addr: str = field(init=False)
    cli_socket: Path = field(init=False)
    nas: Path = field(init=False)

    def __post_init__(self) -> None:
        self._procs: dict[str, subprocess.Popen] = {}
        self._namespaces: list[str] = []
        self._users: list[str] = []
        self._host_veth: str | None = None
        self._netns_etc: list[Path] = []
        self._cli_server: subprocess.Popen | None = None
        third = int(self.tag[:2], 16) % 250 + 2
        self._third = third
        self.gw_addr = f"10.231.{third}.2"
        self._host_addr = f"10.231.{third}.1"
        self._mgmt = f"10.232.{third}"

    # ------------------------------------------------------------------ names
    def ns(self, role: str) -> str:
        return f"pcl{self.tag}-{role}"

    def srn_ns(self, srn: int) -> str:
        return self.ns(f"s{srn}")

    def srn_host(self, srn: int) -> str:
        return f"{self.team}-{srn:03d}"

    def mgmt_addr(self, i: int) -> str:
        return f"{self._mgmt}.{10 + i}"

    def col0_addr(self, srn: int) -> str:
        return f"172.30.{self.reservation_octet}.{100 + srn}"

    def radio_addr(self, i: int) -> str:
        return f"172.16.0.{i + 1}"

    def radio_ifname(self, i: int) -> str:
        return "srs_spgw_sgi" if i == 0 else "tun_srsue"

    def work_dir(self, srn: int) -> Path:
        return self.tmp / f"srn-{srn:03d}" / "root" / "pamdi"

    # ------------------------------------------------------------------ build
    def start(self) -> Lab:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"pamdi-colo-{self.tag}-"))
        os.chmod(self.tmp, 0o755)
        if not self.ssh:
            self._build_network()
            for srn in self.srns:
                (self.tmp / f"srn-{srn:03d}" / "root").mkdir(parents=True)
            return
        self.user = f"pcl{self.tag}u"
        self.srn_user = f"pcl{self.tag}r"
        self.ldap_password = secrets.token_urlsafe(18)
        self.srn_password = secrets.token_urlsafe(18)
        self.nas = self.tmp / "nas"
        for sub in ("images", "resources", "batch", "config"):
            (self.nas / self.team / sub).mkdir(parents=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

        # Users: the Colosseum (LDAP) user and the SRN container user.
        home = self.tmp / "home"
        home.mkdir()
        os.chmod(home, 0o755)
        for name, pw in ((self.user, self.ldap_password), (self.srn_user, self.srn_password)):
            if name == self.srn_user and self.srn_root:
                sh("useradd", "-o", "-u", "0", "-g", "0", "-N", "-M", "-d", str(home / name), "-s", "/bin/bash", name)
            else:
                sh("useradd", "-M", "-d", str(home / name), "-s", "/bin/bash", name)
            self._users.append(name)
            (home / name).mkdir()
            shutil.chown(home / name, name, 0 if name == self.srn_user and self.srn_root else name)
            sh("chpasswd", input=f"{name}:{pw}\n")
        shutil.chown(self.nas, self.user, self.user)
        for p in self.nas.rglob("*"):
            shutil.chown(p, self.user, self.user)

        # The user's key for the gateway (what the website's Accounts tab holds).
        self.key_path = self.tmp / "id_ed25519"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key_path), "-C", "pamdi-lab")
        (self.tmp / "authorized_keys").write_text((self.tmp / "id_ed25519.pub").read_text())

        self._build_network()

        # Stand-in colosseumcli server (the reservation's SRN controller) + per-SRN bin dirs.
        self.cli_socket = self.tmp / "clisocket"
        self._cli_server = subprocess.Popen(
            [sys.executable, str(STANDIN_DIR / "cli_server.py"), str(self.cli_socket),
             "--srns", ",".join(map(str, self.srns)), "--min-gap", str(self.cli_min_gap_s),
             "--clear", str(self.cli_clear_s), "--load", str(self.cli_load_s)],
            stdout=subprocess.PIPE, text=True,
        )
        assert self._cli_server.stdout is not None
        if self._cli_server.stdout.readline().strip() != "ready":
            raise RuntimeError("stand-in colosseumcli server did not start")

        known = []
        gw_key = self._sshd("gw", self.gw_addr, password=False, users=[self.user])
        known.append(f"{self.gw_addr} {gw_key}")
        self._sshd("fp", f"{self._mgmt}.2", password=True, users=[self.user])
        for i, srn in enumerate(self.srns):
            base = self.tmp / f"srn-{srn:03d}"
            (base / "bin").mkdir(parents=True)
            (base / "root").mkdir()
            # A copy, not a link into the checkout: a clone in a 0700 folder (mktemp -d) is not
            # readable by the SRN's container user (the stand-in needs only python3's stdlib).
            shutil.copy(STANDIN_DIR / "colosseumcli", base / "bin" / "colosseumcli")
            os.chmod(base / "bin" / "colosseumcli", 0o755)
            shutil.chown(base / "root", self.srn_user, 0 if self.srn_root else self.srn_user)
            env = {
                "PATH": f"{base / 'bin'}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                "COLOSSEUM_STANDIN_SOCKET": str(self.cli_socket),
                "HOME": str(base / "root"),
                "PAMDI_LAB": self.tag,
            }
            self._sshd(f"s{srn}", self.mgmt_addr(i), password=True, users=[self.srn_user], env=env,
                       root=self.srn_root)
        self.known_hosts = self.tmp / "known_hosts"
        self.known_hosts.write_text("\n".join(known) + "\n")

    def _build_network(self) -> None:
        fab, gw, fp = self.ns("fab"), self.ns("gw"), self.ns("fp")
        for n in (fab, gw, fp, *(self.srn_ns(s) for s in self.srns)):
            sh("ip", "netns", "add", n)
            self._namespaces.append(n)
            # IPv4 only, like Colosseum's col0 and radio stacks: no IPv6 router solicitations, MLD or
            # DAD chatter that would blur the tests' interface-counter checks.
            sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1", ns=n)
            sh("ip", "-n", n, "link", "set", "lo", "up")
        for br in ("brmgmt", "brcol0", "brradio"):
            sh("ip", "-n", fab, "link", "add", br, "type", "bridge")
            sh("ip", "-n", fab, "link", "set", br, "up")

        # Experimenter's machine <-> gateway.
        host_if = f"pcl{self.tag}h"
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", gw)
        self._host_veth = host_if
        sh("ip", "addr", "add", f"{self._host_addr}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", gw, "addr", "add", f"{self.gw_addr}/30", "dev", "eth0")
        sh("ip", "-n", gw, "link", "set", "eth0", "up")

        def attach(ns: str, ifname: str, bridge: str, addr: str, k: int) -> None:
            peer = f"p{self.tag}{k}"
            sh("ip", "-n", fab, "link", "add", peer, "type", "veth", "peer", "name", ifname, "netns", ns)
            sh("ip", "-n", fab, "link", "set", peer, "master", bridge, "up")
            sh("ip", "-n", ns, "addr", "add", addr, "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")

        k = 0
        attach(gw, "mgmt0", "brmgmt", f"{self._mgmt}.1/24", k)
        k += 1
        attach(fp, "mgmt0", "brmgmt", f"{self._mgmt}.2/24", k)
        k += 1
        for i, srn in enumerate(self.srns):
            ns = self.srn_ns(srn)
            attach(ns, "mgmt0", "brmgmt", f"{self.mgmt_addr(i)}/24", k)
            attach(ns, "col0", "brcol0", f"{self.col0_addr(srn)}/24", k + 1)
            attach(ns, self.radio_ifname(i), "brradio", f"{self.radio_addr(i)}/24", k + 2)
            k += 3

        # The gateway resolves SRN host names and file-proxy (ip netns exec bind-mounts this file).
        etc = Path("/etc/netns") / gw
        etc.mkdir(parents=True, exist_ok=True)
        self._netns_etc.append(etc)
        lines = ["127.0.0.1 localhost", f"{self._mgmt}.2 file-proxy"]
        lines += [f"{self.mgmt_addr(i)} {self.srn_host(s)}" for i, s in enumerate(self.srns)]
        (etc / "hosts").write_text("\n".join(lines) + "\n")

    def _sshd(
        self, role: str, addr: str, *, password: bool, users: list[str], env: dict[str, str] | None = None,
        root: bool = False,
    ) -> str:
        d = self.tmp / f"sshd-{role}"
        d.mkdir()
        key = d / "ssh_host_ed25519_key"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        cfg = [
            f"ListenAddress {addr}",
            "Port 22",
            f"HostKey {key}",
            f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.tmp / 'authorized_keys'}",
            f"PasswordAuthentication {'yes' if password else 'no'}",
            f"PubkeyAuthentication {'no' if password else 'yes'}",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            f"PermitRootLogin {'yes' if root else 'no'}",
            f"AllowUsers {' '.join(users)}",
            "AllowTcpForwarding yes",
            "X11Forwarding no",
            "MaxStartups 50",
            "MaxSessions 50",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
        ]
        if env:
            cfg.append("SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()))
        (d / "sshd_config").write_text("\n".join(cfg) + "\n")
        ns = self.ns(role)
        log = open(d / "sshd.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
            stdout=log, stderr=subprocess.STDOUT,
        )
        self._procs[role] = proc
        deadline = time.time() + 10
        while time.time() < deadline:
            if "Server listening" in (d / "sshd.log").read_text():
                break
            if proc.poll() is not None:
                raise RuntimeError(f"sshd {role} exited: {(d / 'sshd.log').read_text()}")
            time.sleep(0.05)
        else:
            raise RuntimeError(f"sshd {role} did not start: {(d / 'sshd.log').read_text()}")
        pub = Path(str(key) + ".pub").read_text().split()
        return f"{pub[0]} {pub[1]}"

    # ------------------------------------------------------------------ helpers for tests
    def stop_sshd(self, role: str) -> None:
        proc = self._procs.pop(role, None)
        if proc is not None:
            proc.terminate()
            proc.wait(5)

    def restart_sshd_srn(self, srn: int) -> None:
        """Start an SRN's sshd again after stop_sshd (same config)."""
        d = self.tmp / f"sshd-s{srn}"
        log = open(d / "sshd.log", "a")  # noqa: SIM115
        self._procs[f"s{srn}"] = subprocess.Popen(
            ["ip", "netns", "exec", self.srn_ns(srn), SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
            stdout=log, stderr=subprocess.STDOUT,
        )
        time.sleep(0.5)

    def counters(self, srn: int) -> dict[str, dict[str, int]]:
        """rx/tx byte counters of an SRN's interfaces (read inside its namespace)."""
        i = self.srns.index(srn)
        out = {}
        for ifname in ("mgmt0", "col0", self.radio_ifname(i)):
            r = sh("cat", f"/sys/class/net/{ifname}/statistics/rx_bytes",
                   f"/sys/class/net/{ifname}/statistics/tx_bytes", ns=self.srn_ns(srn))
            rx, tx = (int(x) for x in r.stdout.split())
            out[ifname] = {"rx": rx, "tx": tx}
        return out

    def config(self, **overrides: object) -> dict[str, object]:
        cfg: dict[str, object] = {
            "team": self.team,
            "user": self.user,
            "gateway": self.gw_addr,
            "ssh_key": str(self.key_path),
            "gateway_known_hosts": str(self.known_hosts),
            "srns": list(self.srns),
            "srn_user": self.srn_user,
            "srn_password_env": "PAMDI_LAB_SRN_PASSWORD",
            "ldap_password_env": "PAMDI_LAB_LDAP_PASSWORD",
            "nas_root": str(self.nas),
            "data_plane": {"subnet": "172.16.0.0/24"},
            "srn_work_dir": str(self.tmp / "srn-{srn:03d}" / "root" / "pamdi"),
            "connect_timeout_s": 8,
            "retries": 1,
            "pcap": False,
        }
        cfg.update(overrides)
        return cfg

    def write_config(self, path: Path, **overrides: object) -> Path:
        path.write_text(yaml.safe_dump(self.config(**overrides), sort_keys=False))
        return path

    def env(self) -> dict[str, str]:
        e = dict(os.environ)
        e["PAMDI_LAB_SRN_PASSWORD"] = self.srn_password
        e["PAMDI_LAB_LDAP_PASSWORD"] = self.ldap_password
        return e

    def cli_control(self, command: str) -> None:
        import json
        import socket

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.cli_socket))
        s.sendall(json.dumps({"command": command}).encode())
        s.recv(65536)
        s.close()

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        # Processes the SRN user left behind (agents) first, then the sshds.
        kill_lab_processes(self.tag)
        for proc in list(self._procs.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in list(self._procs.values()):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._procs.clear()
        if self._cli_server is not None:
            self._cli_server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._cli_server.wait(5)
        for n in reversed(self._namespaces):
            sh("ip", "netns", "del", n, check=False)
        self._namespaces.clear()
        if self._host_veth:
            sh("ip", "link", "del", self._host_veth, check=False)
            self._host_veth = None
        for etc in self._netns_etc:
            shutil.rmtree(etc, ignore_errors=True)
        self._netns_etc.clear()
        for name in self._users:
            # -f: a uid-0 alias shares its uid with running processes, which plain userdel refuses.
            sh("userdel", "-f", name, check=False) if name == self.srn_user and self.srn_root \
                else sh("userdel", name, check=False)
        self._users.clear()
        if hasattr(self, "tmp"):
            shutil.rmtree(self.tmp, ignore_errors=True)
