"""Small helpers around the docker SDK shared by the image commands and the docker backend.

The SDK is an orchestrator-only dependency: import it lazily so that the node image (which has
only the core dependencies) can still import this package's siblings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import docker


class DockerError(RuntimeError):
    """Docker is missing, not running, or refused an operation; the message says which."""


def client() -> docker.DockerClient:
    """A client for the local engine (DOCKER_HOST etc. honoured), or a DockerError that says why not."""
    try:
        import docker
    except ImportError as err:  # pragma: no cover - the orchestrator extra brings it
        raise DockerError("the docker SDK is missing: pip install 'pamdi[orchestrator]'") from err
    try:
        cli = docker.from_env(timeout=600)
        cli.ping()
    except docker.errors.DockerException as err:
        raise DockerError(
            f"cannot reach the Docker engine ({err}); start dockerd (scripts/bootstrap.d/docker.sh does it as root)"
        ) from None
    return cli


def split_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a ``:`` in a registry host's port is not a tag."""
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


def image_labels(cli: docker.DockerClient, ref: str) -> Mapping[str, str] | None:
    """The labels of image ``ref``, or None when no such image exists locally."""
    import docker

    try:
        image = cli.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    return image.labels or {}


def image_size_bytes(cli: docker.DockerClient, ref: str) -> int:
    return int(cli.images.get(ref).attrs.get("Size", 0))


def print_build_stream(chunks: Iterable[Mapping[str, Any]], out: TextIO | None) -> str | None:
    """Relay a decoded build/push/import JSON stream; return the image id it announced.

    Raises DockerError on the first error record, with the engine's message.
    """
    image_id: str | None = None
    for chunk in chunks:
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            raise DockerError(str(detail).strip())
        aux = chunk.get("aux")
        if isinstance(aux, Mapping) and "ID" in aux:
            image_id = str(aux["ID"])
        if out is None:
            continue
        if "stream" in chunk:
            out.write(str(chunk["stream"]))
        elif "status" in chunk:
            line = str(chunk["status"])
            if chunk.get("id"):
                line = f"{chunk['id']}: {line}"
            if chunk.get("progress"):
                line += " " + str(chunk["progress"])
            out.write(line + "\n")
        out.flush()
    return image_id


def remove_if_untagged(cli: docker.DockerClient, image_id: str | None) -> None:
    """Drop an image a rebuild replaced (up to 1 GB) unless another tag or a container still uses it."""
    import docker

    if image_id is None:
        return
    try:
        if not cli.images.get(image_id).tags:
            cli.images.remove(image_id, noprune=False)
    except docker.errors.APIError:
        pass  # in use by a container, or already gone: keep it
