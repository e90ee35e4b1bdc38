"""The node image: wheelhouse, build without network, what is inside, LXD export, registry push."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from orchestrator.image.dockerutil import DockerError, split_ref
from orchestrator.image.lxd import LxdExportError, check_image_name, export_lxd, render_metadata
from orchestrator.image.push import push_image, remote_ref
from orchestrator.image.wheels import node_requirements, project_root
from tests.docker_support import docker_cli, node_image  # noqa: F401  (fixtures)

ROOT = project_root()


# ------------------------------------------------------------------ no Docker needed
@pytest.mark.parametrize("name", ["pamdi-node", "A1-b2", "x" * 31])
def test_colosseum_names_accepted(name: str) -> None:
    assert check_image_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 32, "pamdi_node", "pamdi.node", "pamdi node", "pamdi/node", "ü"])
def test_colosseum_names_refused(name: str) -> None:
    with pytest.raises(LxdExportError, match="letters, digits"):
        check_image_name(name)


def test_metadata_renders_valid_yaml_even_with_odd_image_names() -> None:
    meta = yaml.safe_load(render_metadata("pamdi-x", "reg.example:5000/a: b#c"))
    assert meta["architecture"] in {"x86_64", "aarch64"}
    assert isinstance(meta["creation_date"], int) and abs(meta["creation_date"] - time.time()) < 60
    assert meta["properties"]["name"] == "pamdi-x"
    assert meta["properties"]["pamdi.source_image"] == "reg.example:5000/a: b#c"
    assert meta["templates"]["/etc/hostname"]["template"] == "hostname.tpl"
    for tpl in meta["templates"].values():
        assert (ROOT / "node_image/lxd/templates" / tpl["template"]).is_file()


def test_node_requirements_are_core_only_with_torch_pinned() -> None:
    reqs = node_requirements(ROOT)
    assert "torch==2.13.0" in [r.replace(" ", "") for r in reqs]
    names = {r.split("=")[0].split(">")[0].split("<")[0].strip().lower() for r in reqs}
    # The orchestrator extra stays on the experimenter's machine.
    assert not names & {"docker", "pandas", "simpy", "asyncssh", "transformers", "scipy"}
    assert {"pyzmq", "msgpack"} <= names


def test_refs() -> None:
    assert split_ref("pamdi-node") == ("pamdi-node", "latest")
    assert split_ref("localhost:5000/team/pamdi-node:v1") == ("localhost:5000/team/pamdi-node", "v1")
    assert remote_ref("localhost:5000/team", "pamdi-node:latest") == "localhost:5000/team/pamdi-node:latest"
    assert remote_ref("ghcr.io/me/", "x/pamdi-node:a", "b") == "ghcr.io/me/pamdi-node:b"
    with pytest.raises(DockerError, match="host"):
        remote_ref("http://bad registry", "pamdi-node")


# ------------------------------------------------------------------ Docker
def _run_in_image(cli, image: str, script: str) -> str:  # type: ignore[no-untyped-def]
    out = cli.containers.run(image, ["-c", script], entrypoint=["sh"], remove=True, network_mode="none",
                             labels={"pamdi.test": "image"})
    return out.decode()


@pytest.mark.docker
def test_node_image_installs_core_from_wheelhouse(docker_cli, node_image) -> None:  # noqa: F811
    labels = docker_cli.images.get(node_image).labels
    assert labels["pamdi.base-image"] == "pamdi-base:bookworm"
    report = json.loads(_run_in_image(docker_cli, node_image, """
        python - <<'PY'
import importlib.util, json, shutil, sys, torch, pamdi_node
print(json.dumps({
  "torch": torch.__version__, "python": sys.version.split()[0],
  "tc": shutil.which("tc"), "ip": shutil.which("ip"), "pip": shutil.which("pip"),
  "docker_sdk": importlib.util.find_spec("docker") is not None,
  "pandas": importlib.util.find_spec("pandas") is not None,
  "entry": shutil.which("pamdi-node-entry"),
}))
PY"""))
    assert report["torch"].startswith("2.13.0")
    assert report["python"].startswith("3.11.")
    assert report["tc"] and report["ip"] and report["entry"]
    assert report["pip"] is None  # pip ran from its wheel at build time, not installed
    assert not report["docker_sdk"] and not report["pandas"]  # orchestrator extra not installed
    # The entrypoint is `pamdi node`: without --listen it explains what it needs.
    proc = subprocess.run(["docker", "run", "--rm", "--network", "none", "--label", "pamdi.test=image", node_image],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--listen" in proc.stderr


@pytest.mark.docker
def test_image_build_is_cached(docker_cli, node_image) -> None:  # noqa: F811
    from orchestrator.image.build import build_node_image
    from orchestrator.image.wheels import build_wheelhouse

    wheels = build_wheelhouse()
    assert not wheels.downloaded  # dependency wheels are kept while the requirements are the same
    torch_wheels = [w for w in wheels.wheels if w.startswith("torch-")]
    assert len(torch_wheels) == 1 and torch_wheels[0].startswith("torch-2.13.0") and "-cp311-" in torch_wheels[0]
    res = build_node_image(node_image, base_image="pamdi-base:bookworm")
    assert not res.built and res.seconds < 30


@pytest.mark.docker
def test_a_base_that_cannot_be_pulled_is_one_line_with_the_offline_way(docker_cli, node_image) -> None:  # noqa: F811
    """The default base is pulled when missing; when the pull fails (here: a registry on a closed
    loopback port, so nothing leaves this host) the build stops in one line naming the base, the
    cause and the offline option, before any build starts."""
    from typer.testing import CliRunner

    from orchestrator.cli import app
    from orchestrator.image.build import PULLABLE_BASE, build_node_image

    assert build_node_image.__kwdefaults__["base_image"] == PULLABLE_BASE == "python:3.11-slim"
    r = CliRunner().invoke(app, ["image", "build", "--no-wheels", "--tag", "pamdi-test-nobase:x",
                                 "--base-image", "127.0.0.1:1/pamdi-missing:1"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert "base image 127.0.0.1:1/pamdi-missing:1 is not on this host and could not be pulled" in lines[0]
    assert "pamdi image base" in lines[0] and "--base-image pamdi-base:bookworm" in lines[0]
    assert docker_cli.images.list(name="pamdi-test-nobase") == []


@pytest.mark.docker
def test_export_lxd_tarball(docker_cli, node_image, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "pamdi-node-ci.tar.gz"
    res = export_lxd("pamdi-node-ci", out, image=node_image, compresslevel=1)
    assert res.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert res.size_bytes == out.stat().st_size
    names: set[str] = set()
    with tarfile.open(out, "r:gz") as tar:
        for member in tar:
            names.add(member.name)
            if member.name == "metadata.yaml":
                meta = yaml.safe_load(tar.extractfile(member).read())  # type: ignore[union-attr]
            if member.name == "rootfs/usr/local/bin/pamdi-node-entry":
                assert member.mode & 0o111
    assert meta["architecture"] == "x86_64" or meta["architecture"] == "aarch64"
    assert abs(meta["creation_date"] - time.time()) < 3600
    assert meta["properties"]["name"] == "pamdi-node-ci" and meta["properties"]["os"] == "debian"
    for needed in ("rootfs/opt/pamdi/bin/pamdi", "rootfs/usr/sbin/tc", "rootfs/etc/profile.d/pamdi.sh",
                   "rootfs/usr/local/bin/pamdi", "templates/hostname.tpl"):
        assert needed in names, needed
    assert any(n.startswith("rootfs/opt/pamdi/lib/python3.11/site-packages/pamdi_node/agent/") for n in names)
    assert "rootfs/.dockerenv" not in names
    assert not [n for n in names if not n.startswith(("rootfs", "templates/", "metadata.yaml"))]
    assert not docker_cli.containers.list(all=True, filters={"label": "pamdi.export"})
    _lxd_import(out, res.sha256)


def _lxd_import(tarball: Path, sha256: str) -> None:
    """Import into Debian's LXD for real when bootstrap could start it (LXD validates the metadata)."""
    if shutil.which("lxc") is None or subprocess.run(["lxc", "info"], capture_output=True).returncode != 0:
        pytest.skip("LXD is not running here (scripts/bootstrap.d/docker.sh starts it as root)")
    alias = "pamdi-ci-import"

    def lxc(*args: str, check: bool = True) -> str:
        proc = subprocess.run(["lxc", *args], capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"lxc {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    lxc("image", "delete", alias, check=False)
    try:
        out = lxc("image", "import", str(tarball), "--alias", alias)
        # LXD's fingerprint of a unified tarball is its sha256: what Colosseum users verify.
        assert sha256 in out
        info = yaml.safe_load(lxc("image", "show", alias))
        assert info["properties"]["name"] == "pamdi-node-ci" and info["properties"]["architecture"] == "x86_64"
    finally:
        lxc("image", "delete", alias, check=False)


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.docker
def test_push_to_a_loopback_registry(docker_cli, tmp_path: Path) -> None:  # noqa: F811
    """Push through the docker SDK to Debian's registry on 127.0.0.1 (the engine allows plain HTTP there)."""
    from orchestrator.image.base import build_base_image

    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (scripts/bootstrap.d/docker.sh installs it as root)")
    image = build_base_image("pamdi-base:bookworm").tag  # small: pushing it exercises the same path
    port = _free_loopback_port()
    (tmp_path / "config.yml").write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "error"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))
    registry = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "config.yml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pushed_ref = f"127.0.0.1:{port}/ci/pamdi-base:pushtest"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        log = io.StringIO()
        res = push_image(f"127.0.0.1:{port}/ci", image=image, tag="pushtest", out=log)
        assert res.remote_ref == pushed_ref
        assert res.digest and res.digest.startswith("sha256:")
        assert "Pushed" in log.getvalue() or "exists" in log.getvalue()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/ci/pamdi-base/tags/list", timeout=5) as r:
            assert json.load(r)["tags"] == ["pushtest"]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/ci/pamdi-base/manifests/pushtest", headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.headers["Docker-Content-Digest"] == res.digest
    finally:
        registry.terminate()
        registry.wait(timeout=10)
        docker_cli.images.remove(pushed_ref, noprune=True)
    # A registry that is not there: a clear error, not a hang or a traceback.
    dead = f"127.0.0.1:{_free_loopback_port()}"
    try:
        with pytest.raises(DockerError, match=re.escape(f"push to {dead}/pamdi-base:nothing failed")):
            push_image(dead, image=image, tag="nothing")
    finally:
        docker_cli.images.remove(f"{dead}/pamdi-base:nothing", noprune=True)
