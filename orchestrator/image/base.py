"""``pamdi image base``: a minimal Debian base image for hosts that cannot pull one.

debootstrap (Debian's default mirror, or ``mirror`` when given) builds a ``minbase`` root file
system with python3 and iproute2, caches and documentation are trimmed, and ``docker import``
turns it into an image. The result is cached: an existing image with the same tag is kept
unless ``force``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from orchestrator.image.dockerutil import (
    DockerError,
    client,
    image_labels,
    image_size_bytes,
    remove_if_untagged,
    split_ref,
)

DEFAULT_BASE_TAG = "pamdi-base:bookworm"
DEFAULT_SUITE = "bookworm"
# What a node needs from the OS: the interpreter (Debian's python3, 3.11 on bookworm) and
# ip/tc to shape its own links when given NET_ADMIN.
BASE_PACKAGES: tuple[str, ...] = ("python3", "iproute2")
# Trimmed after debootstrap: package caches and documentation (copyright files are kept).
_TRIM_GLOBS: tuple[str, ...] = (
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "var/log/*",
)


@dataclass(frozen=True)
class BaseImageResult:
    tag: str
    built: bool  # False when the cached image was kept
    seconds: float
    size_bytes: int


def build_base_image(
    tag: str = DEFAULT_BASE_TAG,
    *,
    suite: str = DEFAULT_SUITE,
    mirror: str | None = None,
    extra_packages: tuple[str, ...] = (),
    force: bool = False,
    out: TextIO | None = None,
) -> BaseImageResult:
    cli = client()
    started = time.monotonic()
    existing = image_labels(cli, tag) is not None
    if not force and existing:
        return BaseImageResult(tag, False, time.monotonic() - started, image_size_bytes(cli, tag))
    previous_id = cli.images.get(tag).id if existing else None
    if shutil.which("debootstrap") is None:
        raise DockerError("debootstrap is not installed (Debian package `debootstrap`; bootstrap installs it as root)")
    packages = (*BASE_PACKAGES, *extra_packages)
    with tempfile.TemporaryDirectory(prefix="pamdi-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(rootfs)]
        if mirror:
            cmd.append(mirror)
        _run(cmd, out)
        _trim(rootfs)
        if "openssh-server" in packages:
            _fresh_ssh_host_keys(rootfs)
        tarball = Path(tmp) / "rootfs.tar"
        # Numeric owners: the image must not depend on this host's user database.
        _run(
            ["tar", "--numeric-owner", "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
             "-C", str(rootfs), "-cf", str(tarball), "."],
            out,
        )
        repository, version = split_ref(tag)
        changes = [
            "ENV LANG=C.UTF-8",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["python3"]',
            f"LABEL pamdi.base.suite={suite}",
            f"LABEL pamdi.base.packages={','.join(packages)}",
        ]
        cli.api.import_image_from_file(str(tarball), repository=repository, tag=version, changes=changes)
    if image_labels(cli, tag) is None:
        raise DockerError(f"docker import did not produce {tag}")
    remove_if_untagged(cli, previous_id)
    return BaseImageResult(tag, True, time.monotonic() - started, image_size_bytes(cli, tag))


def _fresh_ssh_host_keys(rootfs: Path) -> None:
    """No shared SSH host keys: drop the ones debootstrap made; each container makes its own at boot."""
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    dropin = rootfs / "etc/systemd/system/ssh.service.d/pamdi-host-keys.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n")


def _trim(rootfs: Path) -> None:
    for pattern in _TRIM_GLOBS:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    doc = rootfs / "usr/share/doc"
    for path in doc.glob("*/*"):
        if path.name != "copyright":
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _run(cmd: list[str], out: TextIO | None) -> None:
    if out is not None:
        out.write("+ " + " ".join(cmd) + "\n")
        out.flush()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise DockerError(f"{cmd[0]} failed (exit {proc.returncode}):\n{tail}")
