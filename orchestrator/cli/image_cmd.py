"""``pamdi image ...``: build the node image, push it, export it for Colosseum (LXD)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from orchestrator.cli.common import fail
from orchestrator.cli.output import JsonOpt, emit

image_app = typer.Typer(help="Build, push and export the node image.", no_args_is_help=True)

_SYSTEM_PACKAGES = ("systemd-sysv", "openssh-server", "ifupdown", "isc-dhcp-client")


def _errors():  # type: ignore[no-untyped-def]
    from orchestrator.image.dockerutil import DockerError
    from orchestrator.image.lxd import LxdExportError
    from orchestrator.image.wheels import WheelhouseError

    return (DockerError, LxdExportError, WheelhouseError)


@image_app.command("wheels")
def wheels(
    out: Path = typer.Option(None, "--out", help="wheelhouse folder (default: .whl/ in the source tree)"),
    python_version: str = typer.Option("3.11", help="Python of the image (Debian bookworm: 3.11)"),
    platform: list[str] = typer.Option([], "--platform", help="pip platform tag (default: manylinux ≤ glibc 2.36)"),
    pip_arg: list[str] = typer.Option([], "--pip-arg", help="extra pip download argument, e.g. --index-url=URL"),
    force: bool = typer.Option(False, help="download again even when cached"),
    as_json: bool = JsonOpt,
) -> None:
    """Fetch the node's wheels (core dependencies, torch pinned) and build the pamdi wheel."""
    from orchestrator.image.wheels import build_wheelhouse

    try:
        res = build_wheelhouse(out, python_version=python_version, platforms=platform, pip_args=pip_arg,
                               force=force, out=sys.stderr)
    except _errors() as err:
        raise fail(str(err)) from None
    emit({"wheelhouse": str(res.path), "wheels": len(res.wheels), "downloaded": res.downloaded,
          "pamdi_rebuilt": res.pamdi_rebuilt, "size_mb": round(res.size_bytes / 1e6, 1),
          "seconds": round(res.seconds, 1)}, as_json)


@image_app.command("base")
def base(
    tag: str = typer.Option("pamdi-base:bookworm", help="tag of the base image"),
    suite: str = typer.Option("bookworm", help="Debian suite"),
    mirror: str = typer.Option(None, help="Debian mirror (default: debootstrap's default)"),
    include: list[str] = typer.Option([], "--include", help="extra Debian package (repeatable)"),
    system: bool = typer.Option(False, help="add an init system and sshd (for LXD/Colosseum system containers)"),
    force: bool = typer.Option(False, help="rebuild even when the image exists"),
    as_json: bool = JsonOpt,
) -> None:
    """Build a minimal Debian base (python3, iproute2) with debootstrap and docker import."""
    from orchestrator.image.base import build_base_image

    extra = tuple(include) + (_SYSTEM_PACKAGES if system else ())
    try:
        res = build_base_image(tag, suite=suite, mirror=mirror, extra_packages=extra, force=force, out=sys.stderr)
    except _errors() as err:
        raise fail(str(err)) from None
    emit({"image": res.tag, "built": res.built, "size_mb": round(res.size_bytes / 1e6, 1),
          "seconds": round(res.seconds, 1)}, as_json)


@image_app.command("build")
def build(
    tag: str = typer.Option("pamdi-node:latest", help="tag of the node image"),
    base_image: str = typer.Option("python:3.11-slim", help="BASE_IMAGE: an image with Python 3.11, pulled if "
                                   "missing; offline: `pamdi image base`, then --base-image pamdi-base:bookworm"),
    wheelhouse: Path = typer.Option(None, help="wheelhouse folder (default: .whl/)"),
    wheels: bool = typer.Option(True, help="refresh the wheelhouse first (cached)"),
    force: bool = typer.Option(False, help="rebuild even when the image matches its context"),
    network: str = typer.Option(None, help="build network mode (`none` proves no index is needed)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="do not relay the build log"),
    as_json: bool = JsonOpt,
) -> None:
    """Build the node image from the Dockerfile, installing only from the wheelhouse."""
    from orchestrator.image.build import build_node_image
    from orchestrator.image.wheels import build_wheelhouse

    try:
        if wheels:
            build_wheelhouse(wheelhouse, out=None if quiet else sys.stderr)
        res = build_node_image(tag, base_image=base_image, wheelhouse=wheelhouse, force=force,
                               network_mode=network, out=None if quiet else sys.stderr)
    except _errors() as err:
        raise fail(str(err)) from None
    emit({"image": res.tag, "built": res.built, "size_mb": round(res.size_bytes / 1e6, 1),
          "seconds": round(res.seconds, 1), "context_sha256": res.context_sha256}, as_json)


@image_app.command("push")
def push(
    registry: str = typer.Option(..., "--registry", "-r", help="HOST[:PORT] or HOST[:PORT]/NAMESPACE"),
    image: str = typer.Option("pamdi-node:latest", help="local image to push"),
    tag: str = typer.Option(None, help="remote tag (default: the local tag)"),
    as_json: bool = JsonOpt,
) -> None:
    """Tag the image for REGISTRY and push it (credentials from your docker config)."""
    from orchestrator.image.push import push_image

    try:
        res = push_image(registry, image=image, tag=tag, out=sys.stderr)
    except _errors() as err:
        raise fail(str(err)) from None
    emit({"pushed": res.remote_ref, "digest": res.digest, "seconds": round(res.seconds, 1)}, as_json)


@image_app.command("export-lxd")
def export_lxd_cmd(
    name: str = typer.Option(..., "--name", help="image name on Colosseum (letters, digits, '-', ≤31 chars)"),
    out: Path = typer.Option(..., "--out", help="output FILE.tar.gz"),
    image: str = typer.Option("pamdi-node:latest", help="Docker image to export"),
    compresslevel: int = typer.Option(6, min=1, max=9, help="gzip level"),
    as_json: bool = JsonOpt,
) -> None:
    """Write the image as an LXD unified tarball (metadata.yaml + rootfs/) and print its sha256."""
    from orchestrator.image.lxd import export_lxd

    try:
        res = export_lxd(name, out, image=image, compresslevel=compresslevel, out=sys.stderr)
    except _errors() as err:
        raise fail(str(err)) from None
    emit({"file": str(res.path), "sha256": res.sha256, "size_mb": round(res.size_bytes / 1e6, 1),
          "seconds": round(res.seconds, 1), "has_init": res.has_init,
          "verify": f"sha256sum {res.path.name}  # must print {res.sha256}"}, as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(image_app, name="image")
