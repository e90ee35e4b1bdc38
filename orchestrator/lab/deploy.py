"""``pamdi lab deploy``: put pamdi on the lab's hosts, from a wheelhouse (no package index needed).

``runtime: python`` hosts: the wheelhouse's wheels go to ``<workdir>/wheelhouse/`` (a wheel the
host already has with the same size is not sent again), optionally into a new virtual environment
(``--venv PATH``: ``python -m venv --system-site-packages``, so a system torch such as JetPack's
stays visible), then ``<python> -m pip install --no-index --find-links`` installs the node's
requirements that the environment lacks and the pamdi wheel itself (``--force-reinstall
--no-deps``: the same version number built from another tree replaces the old build). A torch the
environment already has is kept (a Jetson's CUDA torch from NVIDIA must not be replaced by a CPU
build); without one, a torch wheel in the wheelhouse is installed as it is (the user's JetPack
wheel, whatever its version, rather than pamdi's pin); its version is reported. A wheel built for
another CPU architecture is refused in one line before anything is sent.

``runtime: docker`` hosts: an image tarball (``docker save``) is sent and ``docker load``-ed.
Afterwards every host's facts are read again: the versions must match this machine's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.lab.facts import HostFacts, host_facts
from orchestrator.lab.inventory import Host
from orchestrator.lab.session import LabSession
from orchestrator.sshlink import q

_ARCH_TAGS = {"x86_64": ("x86_64", "amd64"), "aarch64": ("aarch64", "arm64"), "armv7l": ("armv7l",)}


@dataclass
class DeployReport:
    host: str
    sent: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    installed: str = ""
    facts: HostFacts | None = None

    def as_dict(self) -> dict[str, object]:
        f = self.facts
        return {"host": self.host, "sent": self.sent, "kept": self.kept, "installed": self.installed,
                "python": f.python if f else None, "torch": f.torch if f else None,
                "pamdi": f.pamdi if f else None, "pamdi_path": f.pamdi_path if f else None,
                "problems": f.problems if f else []}


def wheel_arch_mismatch(wheels: list[Path], arch: str) -> list[str]:
    """Wheels whose platform tag names another CPU architecture than ``arch`` (``uname -m``)."""
    mine = _ARCH_TAGS.get(arch, (arch,))
    others = {t for a, tags in _ARCH_TAGS.items() if a != arch for t in tags}
    bad = []
    for w in wheels:
        plat = w.name[:-4].split("-")[-1]  # name-ver(-build)-py-abi-platform.whl
        if any(t in plat for t in others) and not any(t in plat for t in mine):
            bad.append(w.name)
    return bad


def requirement_names(wheelhouse: Path) -> list[str]:
    """The node's requirements (pyproject's core dependencies) by name, from the pamdi wheel's metadata."""
    import zipfile

    pamdi = sorted(wheelhouse.glob("pamdi-*.whl"))
    if not pamdi:
        raise ValueError(f"{wheelhouse}: no pamdi-*.whl in the wheelhouse (`pamdi image wheels` builds one)")
    with zipfile.ZipFile(pamdi[-1]) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    reqs = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Requires-Dist:")]
    return [r for r in reqs if "extra ==" not in r]


async def deploy_host(session: LabSession, host: Host, wheelhouse: Path | None, image: Path | None,
                      venv: str | None, local_pamdi: str) -> DeployReport:
    rep = DeployReport(host.name)
    facts = await host_facts(session, host, local_pamdi)
    base = facts.workdir(host)
    await session.run(host.name, f"mkdir -p {q(base)}", check=True)
    if host.runtime == "docker":
        if image is None:
            raise session.error(host.name, "deploy", "runtime docker: give the node image tarball, --image FILE "
                                                     "(docker save pamdi-node:latest | gzip > FILE)")
        remote = f"{base}/{image.name}"
        await session.put(host.name, image, remote)
        rep.sent.append(image.name)
        res = await session.run(host.name, f"docker load -i {q(remote)} && rm -f {q(remote)}", check=True)
        rep.installed = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else "loaded"
    else:
        if wheelhouse is None:
            raise session.error(host.name, "deploy", "give the wheelhouse, --wheelhouse DIR")
        wheels = sorted(wheelhouse.glob("*.whl"))
        bad = wheel_arch_mismatch(wheels, facts.arch)
        if bad:
            raise session.error(host.name, "wheelhouse", f"{len(bad)} wheels are for another CPU than the host's "
                                f"{facts.arch} (e.g. {bad[0]}): build one for it, `pamdi image wheels --platform ...`")
        remote = f"{base}/wheelhouse"
        have = await session.run(host.name, f"mkdir -p {q(remote)} && cd {q(remote)} && "
                                            "for f in *.whl; do [ -f \"$f\" ] && echo \"$f $(stat -c %s \"$f\")\"; "
                                            "done; true", check=True)
        sizes = dict(line.rsplit(" ", 1) for line in have.stdout.splitlines() if " " in line)
        for w in wheels:
            if sizes.get(w.name) == str(w.stat().st_size) and not w.name.startswith("pamdi-"):
                rep.kept.append(w.name)
                continue
            await session.put(host.name, w, f"{remote}/{w.name}")
            rep.sent.append(w.name)
        python = host.python
        if venv is not None:
            await session.run(host.name, f"[ -x {q(venv)}/bin/python ] || {q(host.python)} -m venv "
                                         f"--system-site-packages {q(venv)}", check=True, timeout=600)
            python = f"{venv}/bin/python"
        reqs = requirement_names(wheelhouse)
        pip = f"{q(python)} -m pip --disable-pip-version-check install --no-index --find-links {q(remote)}"
        envs = " ".join(f"{k}={q(v)}" for k, v in host.env.items())
        torch_wheels = sorted(w.name for w in wheels if w.name.startswith("torch-"))
        if facts.torch is None and torch_wheels:
            # The torch wheel the user put in the wheelhouse (JetPack's, whatever its version), not the pin.
            await session.run(host.name, f"env {envs} {pip} {q(remote + '/' + torch_wheels[-1])}", check=True,
                              timeout=1800)
        if facts.torch is not None or torch_wheels:
            # Keep the environment's torch (NVIDIA's JetPack build on a Jetson): only what it lacks.
            reqs = [r for r in reqs if not re.match(r"^torch\b", r)]
        await session.run(host.name, f"env {envs} {pip} {' '.join(q(r) for r in reqs)}", check=True, timeout=1800)
        pamdi_wheel = sorted(wheelhouse.glob("pamdi-*.whl"))[-1].name
        await session.run(host.name, f"env {envs} {pip} --force-reinstall --no-deps {q(remote + '/' + pamdi_wheel)}",
                          check=True, timeout=600)
        rep.installed = pamdi_wheel
        if venv is not None:
            host = host.model_copy(update={"python": python})
    rep.facts = await host_facts(session, host, local_pamdi)
    return rep
