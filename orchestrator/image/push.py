"""``pamdi image push``: tag the node image for a registry and push it (docker SDK).

Credentials come from the user's Docker configuration (``~/.docker/config.json``, including
credential helpers), exactly as ``docker login`` left them; nothing is asked or stored here.
Progress lines from the engine are relayed as they come.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from orchestrator.image.build import DEFAULT_NODE_TAG
from orchestrator.image.dockerutil import DockerError, client, print_build_stream, split_ref

# host[:port][/namespace...]: what goes in front of the image name.
_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*$")


@dataclass(frozen=True)
class PushResult:
    remote_ref: str
    digest: str | None
    seconds: float


def remote_ref(registry: str, image: str, tag: str | None = None) -> str:
    """``registry/name:tag`` for local image ``image`` (its name without any registry part)."""
    registry = registry.rstrip("/")
    if not _REGISTRY.match(registry):
        raise DockerError(f"registry {registry!r} is not of the form host[:port][/namespace]")
    repo, local_tag = split_ref(image)
    name = repo.rsplit("/", 1)[-1]
    return f"{registry}/{name}:{tag or local_tag}"


def push_image(
    registry: str, *, image: str = DEFAULT_NODE_TAG, tag: str | None = None, out: TextIO | None = None
) -> PushResult:
    import docker

    started = time.monotonic()
    target = remote_ref(registry, image, tag)
    cli = client()
    try:
        local = cli.images.get(image)
    except docker.errors.ImageNotFound:
        raise DockerError(f"image {image} not found: run `pamdi image build` first") from None
    repo, version = split_ref(target)
    local.tag(repo, version)
    records: list[dict[str, Any]] = []

    def keep(stream: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for chunk in stream:
            records.append(chunk)
            yield chunk

    try:
        print_build_stream(keep(cli.api.push(repo, tag=version, stream=True, decode=True)), out)
    except docker.errors.APIError as err:
        raise DockerError(f"push to {target} failed: {err.explanation or err}") from None
    except DockerError as err:  # an error record in the progress stream (refused, unauthorized, ...)
        raise DockerError(f"push to {target} failed: {err}") from None
    digest = next(
        (str(c["aux"]["Digest"]) for c in records if isinstance(c.get("aux"), dict) and c["aux"].get("Digest")), None
    )
    return PushResult(target, digest, time.monotonic() - started)
