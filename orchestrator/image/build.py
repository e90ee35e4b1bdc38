"""``pamdi image build``: the node image from the repository's Dockerfile and the wheelhouse.

The build context is assembled in a temporary folder with exactly what the Dockerfile uses
(Dockerfile, ``.whl/`` wheels, ``node_image/``), so the rest of the tree (the venv, run data) is
never sent to the engine. The image carries a label with the hash of that context; a later
build with the same context and base is skipped (``force`` rebuilds anyway).

The default base is the official ``python:3.11-slim``, which a Docker user can pull (3.11: the
default wheelhouse's Python). A base that is not on this host is pulled first, so that an offline
host gets one line saying what to do instead: build the debootstrap base (``pamdi image base``,
``pamdi-base:bookworm``) and pass it as the base.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from orchestrator.image.base import DEFAULT_BASE_TAG
from orchestrator.image.dockerutil import (
    DockerError,
    client,
    image_labels,
    image_size_bytes,
    print_build_stream,
    remove_if_untagged,
)
from orchestrator.image.wheels import DEFAULT_WHEELHOUSE, project_root

DEFAULT_NODE_TAG = "pamdi-node:latest"
# What a Docker user can pull; DEFAULT_BASE_TAG (debootstrap, `pamdi image base`) is the offline one.
PULLABLE_BASE = "python:3.11-slim"
CONTEXT_LABEL = "pamdi.context-sha256"
BASE_LABEL = "pamdi.base-image"
# node_image/ files that go into the image (radio_api/ is Colosseum-only and added by its exporter).
_NODE_IMAGE_FILES = ("pamdi_node_entry.py",)


@dataclass(frozen=True)
class NodeImageResult:
    tag: str
    built: bool  # False when the cached image was kept
    seconds: float
    size_bytes: int
    context_sha256: str


def _context_files(root: Path, wheelhouse: Path) -> dict[str, Path]:
    """Context path -> source file, for everything the Dockerfile reads."""
    wheels = sorted(wheelhouse.glob("*.whl"))
    if not any(w.name.startswith("torch-") for w in wheels) or not any(w.name.startswith("pamdi-") for w in wheels):
        raise DockerError(f"wheelhouse {wheelhouse} lacks torch or pamdi wheels: run `pamdi image wheels` first")
    files = {"Dockerfile": root / "Dockerfile"}
    files.update({f".whl/{w.name}": w for w in wheels})
    for name in _NODE_IMAGE_FILES:
        files[f"node_image/{name}"] = root / "node_image" / name
    return files


def _context_hash(files: dict[str, Path], base_image: str) -> str:
    digest = hashlib.sha256(f"base={base_image}\0".encode())
    for rel in sorted(files):
        path = files[rel]
        digest.update(f"{rel}\0{path.stat().st_mode & 0o777:o}\0".encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _pull_base(cli: Any, base_image: str) -> None:
    """Pull a base image that is not on this host, or say in one line why not and what works offline."""
    import docker.errors

    offline = f"offline, build the local base with `pamdi image base` and pass --base-image {DEFAULT_BASE_TAG}"
    if base_image == DEFAULT_BASE_TAG:
        raise DockerError(f"base image {base_image} is missing: run `pamdi image base` (or pass --base-image)")
    try:
        cli.images.pull(base_image)
    except (docker.errors.APIError, docker.errors.DockerException) as err:
        why = getattr(err, "explanation", None) or str(err)
        raise DockerError(f"base image {base_image} is not on this host and could not be pulled "
                          f"({str(why).splitlines()[0][:160]}); {offline}") from None


def build_node_image(
    tag: str = DEFAULT_NODE_TAG,
    *,
    base_image: str = PULLABLE_BASE,
    wheelhouse: Path | None = None,
    root: Path | None = None,
    force: bool = False,
    network_mode: str | None = None,
    out: TextIO | None = None,
) -> NodeImageResult:
    """Build (or keep the cached) node image. ``network_mode="none"`` proves the build needs no index."""
    started = time.monotonic()
    root = root or project_root()
    wheelhouse = wheelhouse or root / DEFAULT_WHEELHOUSE
    files = _context_files(root, wheelhouse)
    context_hash = _context_hash(files, base_image)
    cli = client()
    labels = image_labels(cli, tag)
    if not force and labels is not None and labels.get(CONTEXT_LABEL) == context_hash:
        return NodeImageResult(tag, False, time.monotonic() - started, image_size_bytes(cli, tag), context_hash)
    previous_id = cli.images.get(tag).id if labels is not None else None
    if image_labels(cli, base_image) is None:
        _pull_base(cli, base_image)
    with tempfile.TemporaryDirectory(prefix="pamdi-ctx-") as tmp:
        for rel, src in files.items():
            dst = Path(tmp) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:  # hard links keep a 200 MB wheelhouse from being copied
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        stream = cli.api.build(
            path=tmp,
            tag=tag,
            buildargs={"BASE_IMAGE": base_image},
            labels={CONTEXT_LABEL: context_hash, BASE_LABEL: base_image},
            rm=True,
            forcerm=True,
            network_mode=network_mode,
            decode=True,
        )
        print_build_stream(stream, out)
    if (image_labels(cli, tag) or {}).get(CONTEXT_LABEL) != context_hash:
        raise DockerError(f"the build did not produce {tag}")
    remove_if_untagged(cli, previous_id)
    # The install stage's image (about 1 GB, untagged) only speeds up a rebuild with the very same
    # wheels, which the context hash above already skips.
    cli.images.prune(filters={"dangling": True, "label": "pamdi.stage=install"})
    return NodeImageResult(tag, True, time.monotonic() - started, image_size_bytes(cli, tag), context_hash)

