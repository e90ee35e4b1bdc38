"""``pamdi image export-lxd``: the node image as an LXD unified image tarball (for Colosseum).

Colosseum imports custom SRN images as the tarballs ``lxc image export`` writes: one gzip'd tar
with ``metadata.yaml`` (architecture, creation date, properties, templates), ``templates/`` and
the root file system under ``rootfs/``. The root file system is the image's own (``docker
export`` of a created, never started container), plus what Docker set through ENV that a
system container would lose (a profile script and a ``pamdi`` link on the default PATH), plus
``node_image/radio_api/`` as ``/root/radio_api`` when present (Colosseum's batch-mode hooks).

Image names are checked against Colosseum's rules (letters, digits, ``-``; at most 31
characters). The tarball's sha256 is returned so the upload can be verified.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import re
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from string import Template
from typing import BinaryIO, TextIO

import yaml

from orchestrator.image.build import DEFAULT_NODE_TAG
from orchestrator.image.dockerutil import DockerError, client
from orchestrator.image.wheels import project_root

COLOSSEUM_NAME = re.compile(r"^[A-Za-z0-9-]{1,31}$")
# Files docker export always writes that make no sense in a system container.
_DROP = {".dockerenv"}


class LxdExportError(ValueError):
    pass


@dataclass(frozen=True)
class LxdExportResult:
    path: Path
    sha256: str
    size_bytes: int
    seconds: float
    has_init: bool
    metadata: dict[str, object]


def check_image_name(name: str) -> str:
    if not COLOSSEUM_NAME.match(name):
        raise LxdExportError(
            f"image name {name!r} is not accepted by Colosseum: use letters, digits and '-' only, at most 31 characters"
        )
    return name


def lxd_architecture() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def render_metadata(name: str, source_image: str, *, created: datetime | None = None, root: Path | None = None) -> str:
    root = root or project_root()
    created = created or datetime.now(timezone.utc)
    arch = lxd_architecture()
    template = Template((root / "node_image/lxd/metadata.yaml.in").read_text())
    # json.dumps gives quoted scalars that are valid YAML whatever they contain.
    text = template.substitute(
        architecture=json.dumps(arch),
        creation_date=int(created.timestamp()),
        description=json.dumps(f"pamdi node {name} ({source_image}, {created:%Y-%m-%d})"),
        name=json.dumps(name),
        release=json.dumps("bookworm"),
        serial=json.dumps(created.strftime("%Y%m%d_%H%M")),
        source_image=json.dumps(source_image),
    )
    yaml.safe_load(text)  # a template error fails here, not at import time on Colosseum
    return text


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (docker export's stream)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buf))
        target[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _HashingWriter(io.RawIOBase):
    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._sink.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644, mtime: float | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(mtime or time.time())
    tar.addfile(info, io.BytesIO(data))


def export_lxd(
    name: str,
    out_path: Path,
    *,
    image: str = DEFAULT_NODE_TAG,
    compresslevel: int = 6,
    root: Path | None = None,
    out: TextIO | None = None,
) -> LxdExportResult:
    check_image_name(name)
    if not str(out_path).endswith(".tar.gz"):
        raise LxdExportError(f"{out_path}: the output must be a single .tar.gz (Colosseum takes no split tarballs)")
    root = root or project_root()
    started = time.monotonic()
    created = datetime.now(timezone.utc)
    metadata_text = render_metadata(name, image, created=created, root=root)
    cli = client()
    import docker

    try:
        container = cli.containers.create(image, entrypoint=["/bin/true"], labels={"pamdi.export": name})
    except docker.errors.ImageNotFound:
        raise DockerError(f"image {image} not found: run `pamdi image build` first") from None
    has_init = False
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with out_path.open("wb") as raw:
            sink = _HashingWriter(raw)
            with tarfile.open(fileobj=sink, mode="w:gz", compresslevel=compresslevel, format=tarfile.PAX_FORMAT) as tar:
                _add_bytes(tar, "metadata.yaml", metadata_text.encode())
                for tpl in sorted((root / "node_image/lxd/templates").glob("*.tpl")):
                    _add_bytes(tar, f"templates/{tpl.name}", tpl.read_bytes())
                chunks = _ChunkReader(iter(container.export(chunk_size=1 << 20)))
                with tarfile.open(fileobj=chunks, mode="r|") as src:
                    has_init = _copy_rootfs(src, tar, out)
                _add_extras(tar, root)
    finally:
        container.remove(force=True)
    if out is not None and not has_init:
        out.write(
            "note: this image has no init system; an LXC system container (Colosseum SRN) boots /sbin/init.\n"
            "      build the image on a base with init: pamdi image base --system --tag pamdi-base:system\n"
        )
    seconds = time.monotonic() - started
    metadata = yaml.safe_load(metadata_text)
    return LxdExportResult(out_path, sink.digest.hexdigest(), sink.size, seconds, has_init, metadata)


def _copy_rootfs(src: tarfile.TarFile, tar: tarfile.TarFile, out: TextIO | None) -> bool:
    """Stream docker export's members under rootfs/; return whether an init system is there."""
    has_init = False
    for count, member in enumerate(src, start=1):
        rel = member.name.removeprefix("./").lstrip("/")
        if rel in _DROP:
            continue
        if rel in {"sbin/init", "usr/sbin/init", "lib/systemd/systemd"}:
            has_init = True
        member.name = f"rootfs/{rel}" if rel else "rootfs"
        if member.islnk():  # hard links name archive paths, which moved under rootfs/
            member.linkname = "rootfs/" + member.linkname.removeprefix("./").lstrip("/")
        tar.addfile(member, src.extractfile(member) if member.isreg() else None)
        if out is not None and count % 20000 == 0:
            out.write(f"  {count} files\n")
            out.flush()
    return has_init


def _add_extras(tar: tarfile.TarFile, root: Path) -> None:
    _add_bytes(tar, "rootfs/etc/profile.d/pamdi.sh", (root / "node_image/lxd/profile.sh").read_bytes())
    link = tarfile.TarInfo("rootfs/usr/local/bin/pamdi")
    link.type = tarfile.SYMTYPE
    link.linkname = "/opt/pamdi/bin/pamdi"
    link.mode = 0o777
    link.mtime = int(time.time())
    tar.addfile(link)
    radio_api = root / "node_image/radio_api"
    if radio_api.is_dir():
        for path in sorted(radio_api.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                _add_bytes(tar, f"rootfs/root/radio_api/{path.relative_to(radio_api)}", path.read_bytes(), mode)
